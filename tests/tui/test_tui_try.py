"""The Try page: pick a signed artifact, type a prompt, read base and adapter answers side by
side. The answer comes from the real `appliance generate --prompts -` run as a niced child
over the real services: the prompt goes over its stdin (never argv), a bad artifact is one
line in the banner, and a real trained adapter answers beside the base model while the
console's keys keep working."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static

from appliance.home import Home
from appliance.tui.app import ApplianceConsole
from appliance.tui.screens.overview import OverviewScreen
from appliance.tui.screens.tryout import TryScreen, generate_job
from tests.train.conftest import converted_model, pass_file, train_home
from tests.tui.pilot import banner, drive, settle, type_text, wait_until
from tests.tui.test_tui_pages import child_env

__all__ = ["child_env", "converted_model", "pass_file", "train_home"]  # fixtures

PROMPT = "What colour is item 5?"


def test_prompt_goes_over_stdin_not_argv(home: Home) -> None:
    """The child's command line names the artifact and `--prompts -`; the prompt is in the
    bytes written to its stdin only."""
    job = generate_job(home, "run-0001", PROMPT)
    argv = job.command(None)
    assert "--prompts" in argv and argv[argv.index("--prompts") + 1] == "-"
    assert not any(PROMPT in part for part in argv)
    assert str(home.artifacts_dir / "run-0001") in argv


def test_try_page_lists_signed_artifacts_and_shows_the_refusal(
        home: Home, fixed_doctor: object, child_env: None) -> None:
    """Only the signed artifact is offered; asking runs the real generate child, which
    refuses this fake home (no signed manifest, an empty signature): one line in the
    banner, no answer, and the page's keys answered while the child works."""
    app = ApplianceConsole(home)

    async def script(pilot: Pilot[int]) -> None:
        await pilot.press("8")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TryScreen)
        select = screen.query_one("#try-artifact", Select)
        assert select.value == "run-0001"
        assert [v for _, v in select._options if isinstance(v, str)] == ["run-0001"]
        await pilot.press("p")
        await type_text(pilot, PROMPT)
        await pilot.press("enter")
        assert screen.generating and screen.query_one("#try-prompt", Input).value == ""
        await pilot.press("escape")
        start = time.monotonic()
        await pilot.press("1")  # another page while the child runs
        assert isinstance(app.screen, OverviewScreen)
        assert time.monotonic() - start < 5
        await pilot.press("8")
        await wait_until(pilot, lambda: not screen.generating, "the generate child", 120)
        line = banner(app)
        assert line.startswith("✗ ") and "internal error" not in line, line
        # the fake home has no signed manifest: the child's trust check refuses first
        assert "manifest" in line or "does not verify" in line, line
        assert screen.exchanges == []
        status = str(screen.query_one("#try-job", Static).content)
        assert "no answer" in status

    drive(app, script)


def test_no_artifact_chosen_is_one_line(tmp_path: Path, fixed_doctor: object) -> None:
    """A home without signed artifacts says so; enter asks for a choice first."""
    from tests.tui.conftest import build_home

    home = build_home(tmp_path / "bare")
    for run in home.artifacts_dir.iterdir():
        for child in run.iterdir():
            child.unlink()
    app = ApplianceConsole(home)

    async def script(pilot: Pilot[int]) -> None:
        await pilot.press("8")
        await settle(pilot)
        assert "no signed artifacts yet" in banner(app)
        await pilot.press("p")
        await type_text(pilot, "hello")
        await pilot.press("enter")
        await pilot.pause()
        assert "choose a signed artifact first" in banner(app)

    drive(app, script)


@pytest.mark.slow
def test_real_adapter_answers_beside_the_base_model(
        train_home: Home, pass_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        child_env: None) -> None:
    """A real trained, signed adapter: the page shows the base model's and the adapter's
    answers to a typed prompt side by side; page switches are answered while it generates."""
    from appliance.passphrase import read_passphrase
    from appliance.service.train import train
    from tests.train.conftest import memory_records, write_recipe

    result = train(train_home, write_recipe(tmp_path / "r.toml", steps=2, ckpt=10),
                   passphrase=read_passphrase(str(pass_file)), records=memory_records())
    assert result.signed
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("appliance.tui.screens.overview.doctor", lambda home: [])
    app = ApplianceConsole(train_home)

    async def script(pilot: Pilot[int]) -> None:
        await pilot.press("8")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TryScreen)
        assert screen.query_one("#try-artifact", Select).value == result.run_id
        await pilot.press("p")
        await type_text(pilot, PROMPT)
        await pilot.press("enter")
        await pilot.press("escape")
        slowest = 0.0
        while screen.generating:
            start = time.monotonic()
            await pilot.press("1")
            await pilot.press("8")
            slowest = max(slowest, time.monotonic() - start)
            await pilot.pause(0.5)
        assert not banner(app).startswith("✗"), banner(app)
        assert len(screen.exchanges) == 1
        row = screen.exchanges[0]
        assert row["prompt"] == PROMPT and row["adapter"] and row["base"]
        for side in ("base", "adapter"):
            shown = str(screen.query_one(f"#try-{side}", Static).content)
            assert PROMPT in shown and row[side].split()[0] in shown
        assert slowest < 2.0  # (the benchmark measures the latency itself)

    drive(app, script)
