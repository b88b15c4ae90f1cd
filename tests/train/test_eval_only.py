"""Eval-only datasets (`dataset import --eval-only`): every record held out, the vault's
encrypted metadata marks them, every training read is refused with one line (and audited),
and a recipe's `eval.dataset` reads one as the sacred evaluation set, refusing a dataset
that training could read."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import trust
from appliance.errors import EXIT_BAD_INPUT, PolicyViolation
from appliance.home import Home
from appliance.passphrase import read_passphrase
from appliance.policy import load_policy
from appliance.service.evalsets import sacred_set
from appliance.service.train import vault_records
from appliance.train.recipe import Recipe
from tests.train.conftest import CHAT, PASSPHRASE, make_home

REPO = Path(__file__).resolve().parents[2]
KEY = PASSPHRASE.strip().encode()


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """A real home and vault with `sacred` marked eval-only as `import --eval-only` marks
    it (every record in eval) and `plain` with both splits."""
    from appliance.vault.store import EVAL_ONLY_KEY, write_dataset

    home = make_home(tmp_path_factory.mktemp("eval-only") / "home")
    policy = load_policy(home.policy_file)
    key = trust.unlock(home, KEY, policy)
    write_dataset(home, policy, key, "sacred", [], CHAT, {EVAL_ONLY_KEY: True})
    write_dataset(home, policy, key, "plain", CHAT[:8], CHAT[8:], {})
    return home


def _recipe(**evals: object) -> Recipe:
    return Recipe.model_validate({"name": "r", "base_model": "m", "dataset": "plain",
                                  "eval": evals})


@pytest.mark.slow
def test_import_holds_every_record_out_and_marks_it(tmp_path: Path) -> None:
    """The real import (scrubber, vault) with eval_only: no training split, all records in
    eval, and training's reader refuses it."""
    from appliance.service.datasets import list_datasets
    from appliance.service.scrub import import_dataset

    home = make_home(tmp_path / "home")
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in CHAT))
    (tmp_path / "pass").write_text(PASSPHRASE)
    report = import_dataset(home, data, "sacred",
                            passphrase=read_passphrase(str(tmp_path / "pass")),
                            workers=1, eval_only=True)
    assert report["eval_only"] is True and report["train"] == 0
    assert report["eval"] == len(CHAT)
    listed = {d["name"]: d for d in list_datasets(home)}
    assert listed["sacred"]["train_count"] == 0
    assert listed["sacred"]["eval_count"] == len(CHAT)
    policy = load_policy(home.policy_file)
    with pytest.raises(PolicyViolation, match="eval-only"):
        vault_records(home, policy, trust.unlock(home, KEY, policy), "sacred", "eval")


def test_training_reads_are_refused_and_audited(vault: Home) -> None:
    """The training reader refuses both splits of the eval-only dataset with one line
    naming it; the audit log records the refused read; a normal dataset reads."""
    home = vault
    policy = load_policy(home.policy_file)
    key = trust.unlock(home, KEY, policy)
    for split in ("train", "eval"):
        with pytest.raises(PolicyViolation, match="'sacred' is eval-only") as exc:
            vault_records(home, policy, key, "sacred", split)
        assert "training can never read it" in exc.value.line()
    assert vault_records(home, policy, key, "plain", "train")
    events = [json.loads(line) for line in home.audit_log.read_text().splitlines()]
    refused = [e for e in events if e["action"] == "dataset.read"
               and e.get("dataset", e.get("name")) == "sacred" and e["outcome"] != "ok"]
    assert refused and all(e.get("purpose") == "train" for e in refused)


def test_recipe_eval_dataset_is_the_sacred_set(vault: Home) -> None:
    """eval.dataset = the eval-only dataset gives its records; naming the training dataset
    or a dataset training could read is refused; no eval.dataset gives None."""
    home = vault
    key = trust.unlock(home, KEY, load_policy(home.policy_file))
    found = sacred_set(home, key, _recipe(dataset="sacred"))
    assert found is not None and found["name"] == "sacred"
    assert len(found["records"]) == len(CHAT) and found["digest"].startswith("sha256:")
    assert sacred_set(home, key, _recipe()) is None
    with pytest.raises(PolicyViolation, match="is not an eval-only dataset"):
        sacred_set(home, key, Recipe.model_validate(
            {"name": "r", "base_model": "m", "dataset": "sacred", "eval": {"dataset": "plain"}}))
    with pytest.raises(PolicyViolation, match="names the training dataset"):
        sacred_set(home, key, Recipe.model_validate(
            {"name": "r", "base_model": "m", "dataset": "plain", "eval": {"dataset": "plain"}}))


def test_cli_canaries_with_eval_only_is_bad_usage(tmp_path: Path) -> None:
    """`--canaries --eval-only` is one line and the usage exit code, nothing imported."""
    home = make_home(tmp_path / "home")
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(CHAT[0]) + "\n")
    (tmp_path / "pass").write_text(PASSPHRASE)
    proc = subprocess.run(
        [sys.executable, "-m", "appliance", "--home", str(home.root), "--passphrase-file",
         str(tmp_path / "pass"), "dataset", "import", str(data), "--name", "x", "--eval-only",
         "--canaries"], capture_output=True, text=True, cwd=REPO, check=False,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert proc.stderr.count("\n") == 1 and "do not go together" in proc.stderr
