"""The Train page's service: recipe choices, the effective recipe checked against the real
policy and written atomically, interrupted runs, run history, and folding events."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from appliance import trust
from appliance.errors import ModelFormatError, PolicyViolation, RecipeError, UsageError
from appliance.home import Home
from appliance.resources import demo_recipe
from appliance.service.train_progress import TrainProgress, eta_text
from appliance.service.training_jobs import (
    effective_recipe,
    recipe_choices,
    recipe_toml,
    resumable_runs,
    resume_job,
    run_history,
    train_job,
    write_effective_recipe,
)
from tests.train.conftest import CHAT, make_home

REPO = Path(__file__).resolve().parents[2]


def _home_with_dataset(tmp_path: Path, train: int = 10) -> Home:
    """A real initialised home (demo policy) with one encrypted dataset named `tiny`."""
    from appliance.policy import load_policy
    from appliance.vault.store import write_dataset

    home = make_home(tmp_path / "home")
    policy = load_policy(home.policy_file)
    key = trust.unlock(home, b"correct horse battery staple", policy)
    records = (CHAT * (train // len(CHAT) + 1))[:train]
    write_dataset(home, policy, key, "tiny", records, CHAT[:2], {})
    return home


def _model_manifest(home: Home, name: str = "smollm2-135m-instruct",
                       digest: str | None = None) -> None:
    """A model manifest in the importer's format: these checks read only the manifest (the
    real import is exercised by the Train page tests)."""
    from appliance.policy import load_policy

    allowed = load_policy(home.policy_file).models.allowed[0].digest
    path = home.models_dir / name
    path.mkdir(parents=True)
    (path / "model.json").write_text(json.dumps({
        "name": name, "kind": "safetensors", "root_digest": "sha256:" + "0" * 64,
        "source_digest": digest or allowed, "files": {}, "imported_at": "2026-11-22"}))


def test_recipe_choices_list_the_shipped_recipe_then_the_homes(tmp_path: Path) -> None:
    """The demo recipe comes first; HOME/recipes/*.toml follow by name (symlinks and other
    files are not offered); each names the dataset and model it was written for."""
    home = Home(tmp_path / "home")
    folder = home.root / "recipes"
    folder.mkdir(parents=True)
    (folder / "b.toml").write_text('dataset = "mine"\nbase_model = "m"\n')
    (folder / "a.toml").write_text("not toml [")
    (folder / "notes.txt").write_text("")
    (folder / "link.toml").symlink_to(folder / "b.toml")
    choices = recipe_choices(home)
    assert [(c.label, c.source) for c in choices] == [
        ("demo (shipped)", "shipped"), ("a.toml", "home"), ("b.toml", "home")]
    assert choices[0].path == str(demo_recipe())
    assert (choices[0].dataset, choices[0].base_model) == ("demo", "smollm2-135m-instruct")
    assert (choices[1].dataset, choices[2].dataset) == ("", "mine")


def test_effective_recipe_replaces_dataset_and_model_and_writes_atomically(
        tmp_path: Path) -> None:
    """The shipped recipe for dataset `tiny` passes the demo policy; the file written reads
    back as the same recipe, has every default filled in, and the same content always gets
    the same file name."""
    from appliance.train.recipe import load_recipe

    home = _home_with_dataset(tmp_path)
    _model_manifest(home)
    effective = effective_recipe(home, demo_recipe(), "tiny", "smollm2-135m-instruct")
    assert effective.data["dataset"] == "tiny"
    assert effective.total_steps == 3  # 10 records, batch 4, one epoch (max_steps is 36)
    assert "3 steps over 10 records" in effective.summary
    path = write_effective_recipe(home, effective)
    assert path.parent == home.root / "recipes" / "effective"
    assert path.name.startswith("demo-tiny-smollm2-135m-instruct-")
    assert load_recipe(path).model_dump() == effective.data
    assert tomllib.loads(path.read_text())["eval"]["generations"] == 2
    assert write_effective_recipe(home, effective) == path
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_effective_recipe_refusals_name_the_key_and_the_limit(tmp_path: Path) -> None:
    """Over-limit values are refused by the real policy check with the recipe key and the
    policy limit; a malformed recipe lists its keys; a missing model or dataset is named;
    a model the policy does not allow is refused."""
    home = _home_with_dataset(tmp_path)
    _model_manifest(home)
    big = tmp_path / "big.toml"
    big.write_text(demo_recipe().read_text().replace("rank = 8", "rank = 64")
                   .replace("seq_len = 256", "seq_len = 4096"))
    with pytest.raises(PolicyViolation) as refused:
        effective_recipe(home, big, "tiny", "smollm2-135m-instruct")
    line = refused.value.line()
    assert "lora.rank = 64 is over the policy limit training.limits.max_rank = 16" in line
    assert "train.seq_len = 4096 is over the policy limit training.limits.max_seq_len" in line
    bad = tmp_path / "bad.toml"
    bad.write_text('base_model = "x"\ndataset = "y"\nwarp = 9\n')
    with pytest.raises(RecipeError, match="warp: unknown key"):
        effective_recipe(home, bad, "tiny", "smollm2-135m-instruct")
    with pytest.raises(ModelFormatError, match="no imported model named 'other'"):
        effective_recipe(home, demo_recipe(), "tiny", "other")
    with pytest.raises(Exception, match="nosuch"):
        effective_recipe(home, demo_recipe(), "nosuch", "smollm2-135m-instruct")
    _model_manifest(home, "stranger", digest="sha256:" + "9" * 64)
    with pytest.raises(PolicyViolation, match="not allowed by the policy"):
        effective_recipe(home, demo_recipe(), "tiny", "stranger")


def test_a_recipe_making_more_steps_than_the_policy_allows_is_refused(tmp_path: Path) -> None:
    """Steps follow from the dataset's size: 3 epochs of 400 records at batch 1 is over the
    demo policy's 400 steps, refused before any passphrase is asked."""
    home = _home_with_dataset(tmp_path, train=400)
    _model_manifest(home)
    many = tmp_path / "many.toml"
    many.write_text(demo_recipe().read_text().replace("max_steps = 36", "max_steps = 0")
                    .replace("batch_size = 4", "batch_size = 1")
                    .replace("epochs = 1", "epochs = 3"))
    with pytest.raises(PolicyViolation, match=re.escape(
            "makes 1200 optimizer steps, over the policy limit training.limits.max_steps = 400")):
        effective_recipe(home, many, "tiny", "smollm2-135m-instruct")


def test_recipe_toml_round_trips_every_value_kind() -> None:
    """Strings with quotes, floats, booleans, lists and tables read back unchanged."""
    data = {"name": 'a "quoted" name', "seed": 3, "flag": True, "lr": 1e-05,
            "t": {"xs": ["q_proj", "v\\proj"], "f": 0.5}}
    assert tomllib.loads(recipe_toml(data, "two\nlines")) == data


def _run(home: Home, run_id: str, status: str, step: int | None, total: int = 8) -> Path:
    run_dir = home.runs_dir / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({
        "status": status, "recipe": {"name": "tiny"}, "dataset": {"name": "d"},
        "base_model": {"name": "m"}, "total_steps": total,
        "started": "2026-11-22T08:00:00+00:00"}))
    if step is not None:
        (run_dir / "checkpoints").mkdir()
        (run_dir / "checkpoints" / "latest.json").write_text(json.dumps({"step": step}))
    return run_dir


def test_resumable_runs_are_the_unfinished_ones_newest_first(tmp_path: Path) -> None:
    """Finished and unreadable runs are left out; a run with no checkpoint yet restarts at
    step 0."""
    home = Home(tmp_path / "home")
    _run(home, "20261122T080000Z-aaaaaa", "running", 4)
    _run(home, "20261122T090000Z-bbbbbb", "done", None)
    _run(home, "20261122T100000Z-cccccc", "running", None)
    (home.runs_dir / "20261122T110000Z-dddddd").mkdir()
    (home.runs_dir / "20261122T110000Z-dddddd" / "run.json").write_text("{torn")
    runs = resumable_runs(home)
    assert [(r.run_id[-6:], r.checkpoint_step, r.total_steps) for r in runs] == [
        ("cccccc", None, 8), ("aaaaaa", 4, 8)]
    assert runs[1].started == "2026-11-22 08:00:00"
    assert resumable_runs(Home(tmp_path / "empty")) == []


def test_run_history_keeps_numbers_up_to_the_checkpoint(tmp_path: Path) -> None:
    """Steps after the newest checkpoint (they are trained again) and every field that is not
    a number of the curves are dropped."""
    home = Home(tmp_path / "home")
    run_dir = _run(home, "r1", "running", 2)
    lines = [{"type": "eval", "phase": "before", "loss": 3.0, "perplexity": 20.0,
              "records": 4},
             *({"type": "step", "step": s, "total_steps": 8, "loss": 3.0 - s / 10,
                "lr": 1e-3, "eta_s": 9.0} for s in (1, 2, 3)),
             {"type": "generations", "samples": [{"prompt": "record text"}]}]
    (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\nxx\n")
    history = run_history(home, "r1")
    assert [h.get("step") for h in history] == [None, 1, 2]
    assert "records" not in history[0] and "eta_s" not in history[1]
    progress = TrainProgress()
    progress.preload(history)
    assert progress.losses == [2.9, 2.8] and progress.eval_before["loss"] == 3.0
    assert progress.phase == "starting"


def test_progress_folds_a_run_a_stop_and_keeps_no_text() -> None:
    """Events of a run that is stopped: numbers and phases follow; generations are not kept."""
    p = TrainProgress()
    for event in ({"type": "run", "run_id": "r", "total_steps": 4},
                  {"type": "started", "pid": 1},
                  {"type": "eval", "phase": "before", "loss": 2.5, "perplexity": 12.2},
                  {"type": "step", "step": 1, "total_steps": 4, "loss": 2.4, "lr": 5e-4,
                   "tokens_per_s": 300.0, "eta_s": 61.0},
                  {"type": "tripwire", "via": "socket"}):
        p.apply(event)
    assert (p.run_id, p.phase, p.step, p.losses, p.eval_losses) == ("r", "training", 1,
                                                                    [2.4], [2.5])
    assert p.cancellable and p.blocked == 1 and eta_text(p.eta_s) == "1m01s"
    p.apply({"type": "signal", "signal": "SIGTERM"})
    assert p.phase == "stopping" and not p.cancellable
    p.apply({"type": "step", "step": 2, "total_steps": 4, "loss": 2.3, "lr": 4e-4,
             "tokens_per_s": 310.0, "eta_s": 40.0})
    assert p.phase == "stopping"
    p.apply({"type": "checkpoint", "step": 2})
    p.apply({"type": "stopped", "step": 2, "total_steps": 4})
    assert (p.phase, p.checkpoints) == ("stopped", [2])
    done = TrainProgress()
    for event in ({"type": "saved", "step": 4}, {"type": "eval", "phase": "after",
                                                  "loss": 1.0, "perplexity": 2.7},
                  {"type": "generations", "samples": [{"completion": "text"}]},
                  {"type": "done", "step": 4}):
        done.apply(event)
    assert done.phase == "finishing" and "text" not in repr(done)
    assert eta_text(None) == "-" and eta_text(3725) == "1h02m"


def test_jobs_are_the_cli_command_with_the_passphrase_in_a_pipe(tmp_path: Path) -> None:
    """The child is `appliance train RECIPE --json-events` / `--resume RUN`; the passphrase
    is never in argv; a run id with a path in it is refused."""
    home = Home(tmp_path / "home")
    job = train_job(home, tmp_path / "r.toml", b"secret passphrase")
    argv = job.command(7)
    assert argv[-3:] == ["train", str(tmp_path / "r.toml"), "--json-events"]
    assert "/dev/fd/7" in argv and not any("secret" in a for a in argv)
    assert resume_job(home, "20261122T080000Z-aaaaaa", b"x").args == [
        "train", "--resume", "20261122T080000Z-aaaaaa", "--json-events"]
    with pytest.raises(UsageError):
        resume_job(home, "../elsewhere", b"x")


def test_the_service_imports_no_torch_pydantic_or_textual() -> None:
    """The console imports these modules at start-up: they must stay light."""
    code = ("import sys, appliance.service.training_jobs, appliance.service.train_progress\n"
            "print(sorted({'torch', 'pydantic', 'textual', 'cryptography'} & "
            "{m.split('.')[0] for m in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                          check=True)
    assert done.stdout.strip() == "[]"


def test_recipe_toml_writes_a_json_schema_as_an_inline_table() -> None:
    """A recipe's eval.format_schema (a nested table with keys such as `$schema`) is written
    so that it reads back unchanged: the console's effective recipe keeps it."""
    from appliance.service.training_jobs import recipe_toml

    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
              "required": ["answer"], "properties": {"answer": {"type": "string"}}}
    data = {"name": "r", "eval": {"every": 2, "format_schema": schema}}
    assert tomllib.loads(recipe_toml(data)) == data
