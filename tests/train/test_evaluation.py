"""Evaluation that decides what gets signed, on real QLoRA runs of the real base model: an
injected NaN stops a run at once with the reason audited; a recipe that over-trains (20x
the demo's learning rate) is refused at signing by the [evaluation] limits, and the same
recipe with early stopping signs its best checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from appliance.errors import PolicyViolation, TrainingError
from appliance.home import Home
from appliance.passphrase import read_passphrase
from appliance.resources import shipped_policy
from appliance.service.train import INJECT_NAN_ENV, train
from tests.train.conftest import make_home, memory_records, place_model, write_recipe

DEMO_LR = 0.001
OVERTRAIN = """
name = "overtrain"
base_model = "smollm2-135m-instruct"
dataset = "demo"
seed = 7
threads = 2

[lora]
rank = 8
alpha = 16
dropout = 0.0
target_modules = ["q_proj", "v_proj"]

[optim]
learning_rate = {lr}
warmup_steps = 0
schedule = "constant"

[train]
epochs = 3
max_steps = {steps}
batch_size = 2
seq_len = 64
checkpoint_every = 100

[eval]
max_records = 6
generations = 2
generation_tokens = 12
general_paragraphs = 8
every = {every}
early_stopping = {early}
"""


def _audit(home: Home) -> list[dict[str, Any]]:
    return [json.loads(x) for x in home.audit_log.read_text().splitlines()]


def _lenient_home(root: Path, general_rise: float | None = None) -> Home:
    """A home whose policy allows the over-training learning rate (the gates decide)."""
    text = shipped_policy("demo").read_text().replace(
        "[training.limits]\n", "[training.limits]\nmax_learning_rate = 0.05\n")
    if general_rise is not None:
        text = text.replace("[evaluation]", "[evaluation]\nmax_general_perplexity_rise = "
                            f"{general_rise}", 1)
        text = text.replace("max_general_perplexity_rise = 1.0", "", 1)
    return make_home(root, text)



def test_injected_nan_stops_the_run_within_one_step(train_home: Home, pass_file: Path,
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The test-only switch makes step 2's loss NaN: the run stops at step 2 (not later),
    nothing is signed, and the audit log names the reason."""
    monkeypatch.setenv(INJECT_NAN_ENV, "2")
    events: list[dict[str, Any]] = []
    with pytest.raises(TrainingError, match="stopped by a guard at step 2: the training loss "
                                            "is nan"):
        train(train_home, write_recipe(tmp_path / "r.toml", steps=5, ckpt=10),
              passphrase=read_passphrase(pass_file), records=memory_records(),
              on_event=events.append)
    assert max(e["step"] for e in events if e["type"] == "step") == 2
    guard = [e for e in _audit(train_home) if e["action"] == "train.guard"]
    assert len(guard) == 1 and guard[0]["reason"] == "non_finite_loss"
    assert guard[0]["step"] == 2 and guard[0]["outcome"] == "stopped"
    assert not any(train_home.artifacts_dir.glob("2*"))


@pytest.mark.slow
def test_overtraining_is_refused_at_signing(tmp_path: Path, pass_file: Path,
                                            converted_model: Path) -> None:
    """20x the demo's learning rate without early stopping: the held-out loss rises and the
    run is refused at signing naming the limit and the numbers; its adapter stays."""
    home = place_model(_lenient_home(tmp_path / "over"), converted_model)
    recipe = tmp_path / "over.toml"
    recipe.write_text(OVERTRAIN.format(lr=20 * DEMO_LR, steps=8, every=0, early="false"))
    with pytest.raises(PolicyViolation, match=r"not signed: evaluation\.max_eval_loss_rise: "
                                              r"held-out loss \d\.\d{4} -> \d+\.\d{4}") as exc:
        train(home, recipe, passphrase=read_passphrase(pass_file), records=memory_records())
    (run,) = home.runs_dir.iterdir()
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((run / "run.json").read_text())["status"] == "refused"
    assert not [p for p in home.artifacts_dir.iterdir() if not p.name.startswith(".")]
    refused = [e for e in _audit(home) if e["action"] == "train.evaluation"]
    assert refused[-1]["outcome"] == "refused"
    assert "evaluation.max_eval_loss_rise" in refused[-1]["failed"]
    print("refused:", exc.value)


@pytest.mark.slow
def test_early_stopping_signs_the_best_checkpoint(tmp_path: Path, pass_file: Path,
                                                  converted_model: Path) -> None:
    """The same recipe with early stopping signs the best checkpoint, its held-out loss
    within 1% of the best seen during training. (Even that checkpoint raises general-text
    perplexity about 3.6x at this learning rate, so this test allows 10x: it is about the
    held-out gate and early stopping; the perplexity gate refuses the run above.)"""
    home = place_model(_lenient_home(tmp_path / "early", general_rise=9.0), converted_model)
    recipe = tmp_path / "early.toml"
    recipe.write_text(OVERTRAIN.format(lr=20 * DEMO_LR, steps=8, every=1, early="true"))
    events: list[dict[str, Any]] = []
    result = train(home, recipe, passphrase=read_passphrase(pass_file), records=memory_records(),
                   on_event=events.append)
    during = [e["loss"] for e in events if e["type"] == "eval" and e["phase"] == "during"]
    best_seen = min(during)
    assert result.eval_after["loss"] <= best_seen * 1.01
    assert result.eval_after["loss"] < result.eval_before["loss"]
    report = json.loads((result.artifact_dir / "report.json").read_text())
    evaluation = report["evaluation"]
    assert evaluation["passed"] is True
    assert evaluation["best"]["loss"] == pytest.approx(best_seen)
    assert evaluation["early_stop"]["step"] < 8
    prov = json.loads((result.artifact_dir / "provenance.json").read_text())
    assert prov["evaluation"]["best"]["step"] == evaluation["best"]["step"]
    assert any(e["action"] == "train.early_stop" for e in _audit(home))
    print("early stop:", evaluation["best"], during, result.eval_before, result.eval_after)
