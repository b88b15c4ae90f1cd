"""Real QLoRA training on the real base model (tiny data, few steps, seq len 64): the
artifact loads with PeftModel, evals and samples are reported, no record text leaks,
runs are bit-reproducible, and kill -9 / SIGTERM followed by resume gives the same adapter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.digests import file_sha256
from appliance.home import Home
from appliance.passphrase import read_passphrase
from appliance.service.train import TrainResult, train
from tests.train.conftest import CHAT, memory_records, write_recipe

REPO = Path(__file__).resolve().parents[2]
CANARY = "ZEBRA-CANARY-4471"


def _canary_records() -> list[dict[str, object]]:
    train = [dict(r) for r in CHAT[:8]]
    train[0] = {"messages": [{"role": "user", "content": "What is the vault code?"},
                             {"role": "assistant", "content": f"The code is {CANARY}."}]}
    return train


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()
            and p.stat().st_size < 50_000_000 and needle in p.read_bytes()]


def _start(home: Home, recipe: Path, pass_file: Path, resume: str | None = None
           ) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "tests.train.run_train_helper", str(home.root), str(recipe),
            str(pass_file), *([resume] if resume else [])]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            start_new_session=True)


def _run_until(proc: subprocess.Popen[str], kind: str, step: int) -> str:
    """Read events until one of `kind` at `step`; returns the run id seen in the audit."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{"):
            event = json.loads(line)
            if event["type"] == kind and event.get("step") == step:
                return line
    raise AssertionError(f"the run ended before {kind} at step {step}: "
                         f"{proc.stderr.read() if proc.stderr else ''}")


def _run_id(home: Home) -> str:
    (run,) = [p.name for p in home.runs_dir.iterdir()]
    return run


def test_train_artifact_report_and_no_leak(train_home: Home, pass_file: Path,
                                           tmp_path: Path) -> None:
    """A full tiny run: PEFT adapter that PeftModel loads, report with eval before/after and
    samples, provenance, audit events, and the training canary nowhere on disk in clear."""
    events: list[dict[str, object]] = []
    result = train(train_home, write_recipe(tmp_path / "r.toml", steps=2, ckpt=1),
                   passphrase=read_passphrase(pass_file),
                   records=memory_records(train=_canary_records()), on_event=events.append)
    art = result.artifact_dir
    assert art == train_home.artifacts_dir / result.run_id
    assert {p.name for p in art.iterdir()} >= {"adapter_config.json",
                                                "adapter_model.safetensors", "report.json",
                                                "metrics.jsonl", "provenance.json",
                                                "README.md"}
    report = json.loads((art / "report.json").read_text())
    assert report["eval"]["before"]["loss"] > 0 and report["eval"]["after"]["loss"] > 0
    assert report["eval"]["before"]["perplexity"] > 1
    assert len(report["samples"]) == 1 and report["samples"][0]["prompt"]
    prov = json.loads((art / "provenance.json").read_text())
    assert prov["base_model"]["source_digest"].startswith("sha256:b179c952")
    assert prov["adapter_sha256"] == result.adapter_sha256
    assert prov["isolation"]["network"].startswith("bubblewrap")
    assert prov["libraries"]["bitsandbytes"] != "absent" and prov["seeds"]["seed"] == 7
    # portable (docs/verifying.md): the base by name, its GGUF origin, tokenizer and model card
    assert json.loads((art / "adapter_config.json").read_text())[
        "base_model_name_or_path"] == "smollm2-135m-instruct"
    assert prov["base_model"]["origin"]["file_type"] == "MOSTLY_Q4_1"
    assert (art / "chat_template.jinja").is_file() and (art / "tokenizer.json").is_file()
    assert (art / "README.md").read_text().startswith("---\nbase_model: ")
    steps = [e for e in events if e["type"] == "step"]
    assert [e["step"] for e in steps] == [1, 2]
    assert all({"loss", "lr", "tokens_per_s", "eta_s", "epoch"} <= set(e) for e in steps)
    actions = [json.loads(x)["action"] for x in train_home.audit_log.read_text().splitlines()]
    assert actions[-2:] == ["train.start", "train.finish"] or "train.finish" in actions
    assert "network.attempt" not in actions
    assert _files_containing(train_home.root, CANARY.encode()) == []

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(
        str(train_home.models_dir / "smollm2-135m-instruct" / "weights"), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(art))
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(float(p.abs().sum()) > 0 for p in lora_b)


@pytest.mark.slow
def test_checkpoints_are_sealed_without_pickle(train_home: Home, pass_file: Path,
                                               tmp_path: Path) -> None:
    """SIGTERM stops at a step boundary with an encrypted checkpoint and an audit event;
    the checkpoint holds no pickle and no readable safetensors; resume finishes the run."""
    recipe = write_recipe(tmp_path / "r.toml", steps=3, ckpt=100)
    proc = _start(train_home, recipe, pass_file)
    _run_until(proc, "step", 1)
    os.kill(proc.pid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the helper and its trainer, not left behind
        proc.communicate()
        raise
    assert proc.returncode == 1
    run_id = _run_id(train_home)
    assert f"appliance train --resume {run_id}" in err or "stopped" in err
    ckpt = train_home.runs_dir / run_id / "checkpoints"
    (step_dir,) = [p for p in ckpt.iterdir() if p.is_dir()]
    names = sorted(p.name for p in step_dir.iterdir())
    assert names == ["state.json.sealed", "tensors.safetensors.sealed"]
    for path in step_dir.iterdir():
        assert path.read_bytes().startswith(b"APCK1\n")
        assert b"lora_A" not in path.read_bytes()
    audit = [json.loads(x) for x in train_home.audit_log.read_text().splitlines()]
    assert next(e for e in audit if e["action"] == "train.cancelled")["step"] >= 1
    result = train(train_home, resume=run_id, passphrase=read_passphrase(pass_file),
                   records=memory_records())
    assert result.run_id == run_id and (result.artifact_dir / "report.json").is_file()
    with pytest.raises(Exception, match="already finished"):
        train(train_home, resume=run_id, passphrase=read_passphrase(pass_file),
              records=memory_records())


def _uninterrupted(home: Home, recipe: Path, pass_file: Path) -> TrainResult:
    return train(home, recipe, passphrase=read_passphrase(pass_file), records=memory_records())


def test_reproducible_and_kill9_resume_gives_identical_adapter(
        train_home: Home, pass_file: Path, tmp_path: Path) -> None:
    """Same inputs, seed and threads: the same adapter digest, whether the run went
    straight through or was killed with SIGKILL after a checkpoint and resumed; the resumed
    run's metrics hold each step once (the step after the checkpoint is not repeated)."""
    recipe = write_recipe(tmp_path / "r.toml", steps=4, ckpt=2)
    straight = _uninterrupted(train_home, recipe, pass_file)

    other = train_home.root.parent / "second"
    train_home.runs_dir.rename(tmp_path / "first-runs")
    del other
    proc = _start(train_home, recipe, pass_file)
    _run_until(proc, "step", 3)  # logged after the step-2 checkpoint
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    run_id = _run_id(train_home)
    assert not (train_home.artifacts_dir / run_id).exists()
    partial = (train_home.runs_dir / run_id / "metrics.jsonl").read_text()
    assert '"step": 3' in partial
    resumed = train(train_home, resume=run_id, passphrase=read_passphrase(pass_file),
                    records=memory_records())
    assert resumed.adapter_sha256 == straight.adapter_sha256
    assert file_sha256(resumed.artifact_dir / "adapter_model.safetensors") == \
        file_sha256(straight.artifact_dir / "adapter_model.safetensors")
    metrics = [json.loads(x) for x in
               (resumed.artifact_dir / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in metrics if e["type"] == "step"] == [1, 2, 3, 4]
    assert [e["step"] for e in metrics if e["type"] == "resumed"] == [2]


@pytest.mark.slow
def test_resume_refuses_changed_dataset(train_home: Home, pass_file: Path,
                                        tmp_path: Path) -> None:
    """Resuming with different records than the run started with is refused."""
    recipe = write_recipe(tmp_path / "r.toml", steps=2, ckpt=1)
    proc = _start(train_home, recipe, pass_file)
    _run_until(proc, "checkpoint", 1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    changed = [dict(r) for r in CHAT[1:9]]
    with pytest.raises(Exception, match="dataset changed"):
        train(train_home, resume=_run_id(train_home), passphrase=read_passphrase(pass_file),
              records=memory_records(train=changed))


def test_malformed_records_refused_before_the_child_starts(train_home: Home, pass_file: Path,
                                                           tmp_path: Path) -> None:
    """Malformed records are refused (exit 2 class, naming the record) before any run."""
    from appliance.errors import DatasetFormatError

    with pytest.raises(DatasetFormatError, match="needs messages") as caught:
        train(train_home, write_recipe(tmp_path / "r.toml"), passphrase=read_passphrase(pass_file),
              records=memory_records(train=[{"text": "no shape"}]))
    assert caught.value.where == "record 0" and caught.value.exit_code == 2
    assert not train_home.runs_dir.exists() or not any(train_home.runs_dir.iterdir())
