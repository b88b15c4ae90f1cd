"""The console's Train page, driven with Textual's Pilot on a real home: the choices it
offers, a refused recipe shown as one line, quitting during a run, and one real QLoRA run
started, watched, cancelled and resumed from the page (the default base model, a vault
dataset, the CLI's trainer in its network namespace)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Select

from appliance import trust
from appliance.home import Home
from appliance.tui.app import ApplianceConsole
from appliance.tui.screens.train import TrainScreen
from appliance.tui.widgets.dialogs import ConfirmModal
from appliance.tui.widgets.lineplot import LinePlot
from appliance.tui.widgets.passphrase import PassphraseModal
from tests.train.conftest import (  # noqa: F401 - fixtures used by name
    ALPACA,
    CHAT,
    PASSPHRASE,
    converted_model,
    train_home,
)
from tests.tui.pilot import banner, drive, screen_text, settle, type_text, wait_until

REPO = Path(__file__).resolve().parents[2]

TINY = """# a tiny run: two epochs of 10 records cut at 6 steps, short sequences
name = "tiny"
base_model = "smollm2-135m-instruct"
dataset = "tiny"
seed = 7
threads = 2

[lora]
rank = 4
alpha = 8
target_modules = ["q_proj", "v_proj"]

[optim]
learning_rate = 0.0005

[train]
epochs = 2
max_steps = 6
batch_size = 2
seq_len = 64
checkpoint_every = 100

[eval]
max_records = 4
generations = 0
"""


@pytest.fixture
def ready_home(train_home: Home) -> Home:  # noqa: F811 - the imported fixture
    """A real home (demo policy, the default model imported) with an encrypted dataset
    `tiny` and three recipes in HOME/recipes: tiny, one over the policy, one malformed."""
    from appliance.policy import load_policy
    from appliance.vault.store import write_dataset

    policy = load_policy(train_home.policy_file)
    key = trust.unlock(train_home, PASSPHRASE.strip().encode(), policy)
    write_dataset(train_home, policy, key, "tiny", CHAT[:8] + ALPACA[:2], CHAT[8:] + ALPACA[2:],
                  {})
    recipes = train_home.root / "recipes"
    recipes.mkdir()
    (recipes / "tiny.toml").write_text(TINY)
    (recipes / "big.toml").write_text(TINY.replace("rank = 4", "rank = 64"))
    (recipes / "broken.toml").write_text("warp = 9\n" + TINY)
    return train_home


async def choose(pilot: Pilot[int], select_id: str, downs: int) -> None:
    """Pick an option with the keyboard: focus the list, open it, move, enter."""
    pilot.app.screen.query_one(f"#{select_id}", Select).focus()
    await pilot.press("enter", *(["down"] * downs), "enter")
    await settle(pilot)


async def start_tiny_run(pilot: Pilot[int], app: ApplianceConsole) -> TrainScreen:
    """On the Train page: choose the tiny recipe, press s, type the passphrase, enter."""
    await settle(pilot)
    screen = app.screen
    assert isinstance(screen, TrainScreen)
    await choose(pilot, "recipe", 3)
    await pilot.press("s")
    await wait_until(pilot, lambda: isinstance(app.screen, PassphraseModal), "the modal")
    await type_text(pilot, PASSPHRASE.strip())
    await pilot.press("enter")
    return screen


def test_train_page_offers_datasets_models_recipes_and_checks_the_choice(
        ready_home: Home) -> None:
    """Key 5 opens Train; it lists the vault's datasets, the imported model and the recipes
    (shipped first), preselects what fits, and shows the effective recipe within the policy;
    choosing another recipe with the keyboard re-checks it."""
    app = ApplianceConsole(ready_home, start="train")

    async def script(pilot: Pilot[int]) -> None:
        await settle(pilot)
        assert isinstance(app.screen, TrainScreen)
        screen = app.screen
        assert screen.query_one("#dataset", Select).value == "tiny"
        assert screen.query_one("#model", Select).value == "smollm2-135m-instruct"
        text = screen_text(app)
        for expected in ("tiny  (10 train / 6 eval)", "demo (shipped)", "✓ within the policy",
                         "3 steps over 10 records", "s Start", "c Cancel run",
                         "R Resume selected", "5 Train"):
            assert expected in text, expected
        await choose(pilot, "recipe", 3)
        assert str(screen.query_one("#recipe", Select).value).endswith("tiny.toml")
        assert "6 steps over 10 records" in screen_text(app)
        assert "batch 2 x 1 · seq 64 · rank 4" in screen_text(app), screen_text(app)

    drive(app, script)


def test_a_recipe_over_the_policy_is_one_readable_line_and_cannot_start(
        ready_home: Home) -> None:
    """Choosing a recipe over the policy's rank limit shows the real policy check's refusal
    (recipe key and policy limit) as one line; s then asks for no passphrase. A malformed
    recipe names its bad key the same way."""
    app = ApplianceConsole(ready_home, start="train")

    async def script(pilot: Pilot[int]) -> None:
        await settle(pilot)
        await choose(pilot, "recipe", 1)
        line = banner(app)
        assert line.startswith("✗ recipe: lora.rank = 64 is over the policy limit "
                               "training.limits.max_rank = 16"), line
        assert "ask an admin" in line and "\n" not in line
        assert "✗ refused" in screen_text(app) and "Traceback" not in screen_text(app)
        await pilot.press("s")
        await settle(pilot)
        assert not isinstance(app.screen, PassphraseModal)
        assert "max_rank" in banner(app)
        await choose(pilot, "recipe", 1)  # broken.toml, next in the list
        assert "broken.toml: warp: unknown key" in banner(app)

    drive(app, script)


def test_quitting_during_a_run_asks_then_stops_it_cleanly(ready_home: Home,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """q while a run is in progress asks first; n keeps it running; y asks the page to stop
    the run cleanly (no force) and the console closes once it has stopped."""
    stops: list[bool] = []
    state = {"running": True}
    monkeypatch.setattr(TrainScreen, "busy", lambda self: "training run r is at step 2 of 6"
                        if state["running"] else None)
    monkeypatch.setattr(TrainScreen, "stop_work",
                        lambda self, force=False: stops.append(force))
    app = ApplianceConsole(ready_home, start="train")

    async def script(pilot: Pilot[int]) -> None:
        await settle(pilot)
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        assert "Training run r is at step 2 of 6" in screen_text(app)
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, TrainScreen) and stops == []
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("y")
        await pilot.pause(0.5)
        assert stops == [False] and app.is_running
        state["running"] = False
        await pilot.pause(0.5)
        assert not app.is_running

    drive(app, script)


def test_the_console_with_the_train_page_imports_no_torch() -> None:
    """Importing the console (every page, the Train page's services) loads no torch,
    transformers or pydantic."""
    code = ("import sys, appliance.tui.app\n"
            "print(sorted({'torch', 'transformers', 'pydantic'} & "
            "{m.split('.')[0] for m in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                          check=True)
    assert done.stdout.strip() == "[]"


def test_a_wrong_passphrase_is_the_commands_one_line(ready_home: Home) -> None:
    """Started with a wrong passphrase, the real `appliance train` child refuses; the page
    shows its one error line, marks the run failed and leaves no interrupted run."""
    app = ApplianceConsole(ready_home, start="train")

    async def script(pilot: Pilot[int]) -> None:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TrainScreen)
        await choose(pilot, "recipe", 3)
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, PassphraseModal), "the modal")
        await type_text(pilot, "not the passphrase")
        await pilot.press("enter")
        await wait_until(pilot, lambda: screen.running, "the run to start", 10)
        await wait_until(pilot, lambda: not screen.running, "the child to exit", 120)
        line = banner(app)
        assert line.startswith("✗ ") and "passphrase" in line.lower() and "\n" not in line
        assert not line.startswith("✗ appliance:")
        assert screen.progress is not None and screen.progress.phase == "failed"
        assert "failed" in screen_text(app) and "Traceback" not in screen_text(app)
        await settle(pilot)
        assert screen.query_one("#runs", DataTable).row_count == 0

    drive(app, script)


def _audit(home: Home) -> list[dict[str, object]]:
    return [json.loads(line) for line in home.audit_log.read_text().splitlines() if line]


def test_a_real_run_from_the_page_plots_cancels_resumes_and_signs(ready_home: Home) -> None:
    """Start the tiny recipe with s and a passphrase typed into the modal: the real trainer
    runs in its child, the loss plot receives points, c stops it at a step boundary with a
    checkpoint and an audited cancellation; R resumes it from the checkpoint and the run ends
    in a signed artifact, eval before/after shown and audited."""
    home = ready_home
    app = ApplianceConsole(home, start="train")

    async def start_with_passphrase(pilot: Pilot[int], key: str) -> None:
        await pilot.press(key)
        await wait_until(pilot, lambda: isinstance(app.screen, PassphraseModal), "the modal")
        await type_text(pilot, PASSPHRASE.strip())
        assert PASSPHRASE.strip() not in screen_text(app)
        await pilot.press("enter")

    async def script(pilot: Pilot[int]) -> None:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TrainScreen)
        await choose(pilot, "recipe", 3)
        await start_with_passphrase(pilot, "s")
        plot = screen.query_one("#loss-plot", LinePlot)
        await wait_until(pilot, lambda: bool(plot.series.get("train")), "a loss point")
        assert screen.progress is not None and screen.progress.eval_before["loss"] > 0
        run_id = screen.progress.run_id
        assert run_id and run_id in screen_text(app)
        await pilot.press("c")
        await wait_until(pilot, lambda: not screen.running, "the run to stop")
        assert screen.progress is not None and screen.progress.phase == "stopped", banner(app)
        stopped_at = screen.progress.step
        assert 1 <= stopped_at < 6
        assert banner(app).startswith(f"✓ run {run_id} stopped at step {stopped_at} of 6")
        latest = json.loads((home.runs_dir / run_id / "checkpoints" / "latest.json")
                            .read_text())
        assert latest["step"] == stopped_at
        assert any(e["action"] == "train.cancelled" and e.get("run_id") == run_id
                   and e.get("step") == stopped_at for e in _audit(home))
        await settle(pilot)
        runs = screen.query_one("#runs", DataTable)
        assert runs.row_count == 1 and str(runs.get_row_at(0)[0]) == run_id

        await start_with_passphrase(pilot, "R")
        await wait_until(pilot, lambda: screen.running, "the resumed run to start", 10)
        await wait_until(pilot, lambda: not screen.running, "the resumed run to finish")
        assert screen.progress is not None and screen.progress.phase == "done", banner(app)
        artifact = home.artifacts_dir / run_id
        assert banner(app).startswith(f"✓ run {run_id} finished; eval loss ")
        assert str(artifact) in banner(app)
        assert (artifact / "adapter_model.safetensors").is_file()
        assert len(plot.series["train"]) == 6  # the steps before the stop, then the rest
        assert screen.progress.eval_after["loss"] > 0
        actions = [(e["action"], e.get("run_id")) for e in _audit(home)]
        assert ("train.resume", run_id) in actions and ("train.finish", run_id) in actions
        assert "after" in screen_text(app) and "Traceback" not in screen_text(app)
        await settle(pilot)
        assert screen.query_one("#runs", DataTable).row_count == 0

    started = time.monotonic()
    drive(app, script)
    print(f"train page end to end: {time.monotonic() - started:.0f} s")


@pytest.mark.slow
def test_quitting_during_a_real_run_stops_it_cleanly_then_closes(ready_home: Home) -> None:
    """q during a real run, then y: the trainer stops at a step boundary with a checkpoint
    and an audited cancellation, and the console closes once it has (no kill)."""
    home = ready_home
    app = ApplianceConsole(home, start="train")

    async def script(pilot: Pilot[int]) -> None:
        screen = await start_tiny_run(pilot, app)
        await wait_until(pilot, lambda: bool(screen.progress and screen.progress.losses),
                         "the first step")
        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal), "the question")
        await pilot.press("y")
        end = time.monotonic() + 300
        while app.is_running:
            assert time.monotonic() < end, "the console did not close"
            await asyncio.sleep(0.2)

    drive(app, script)
    (run_dir,) = home.runs_dir.iterdir()
    step = json.loads((run_dir / "checkpoints" / "latest.json").read_text())["step"]
    assert any(e["action"] == "train.cancelled" and e.get("run_id") == run_dir.name
               and e.get("step") == step for e in _audit(home))


@pytest.mark.slow
def test_closing_the_console_cancels_the_training_child(ready_home: Home) -> None:
    """The Train page's child is one of the app's child jobs: the console closing without
    the quit question (the app exits under it) sends it SIGTERM, and the real `appliance
    train` child ends with an audited cancellation instead of training on alone."""
    home = ready_home
    app = ApplianceConsole(home, start="train")
    children = []

    async def script(pilot: Pilot[int]) -> None:
        screen = await start_tiny_run(pilot, app)
        await wait_until(pilot, lambda: screen.child_started, "the trainer to start", 120)
        assert screen.job is not None and screen.job in app.child_jobs
        children.append(screen.job)
        app.exit()

    drive(app, script)
    (child,) = children
    assert child.proc is not None and child.proc.wait(timeout=120) != 0
    (run_dir,) = home.runs_dir.iterdir()
    assert any(e["action"] == "train.cancelled" and e.get("run_id") == run_dir.name
               for e in _audit(home))
    assert not (home.artifacts_dir / run_dir.name).exists()
