"""`appliance generate`: prompts files are checked line by line, answers pass the real PII
detector before they are shown, and a signed adapter answers (beside the base model) in
the isolated child; a tampered artifact is refused before any model loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.errors import DatasetFormatError, IntegrityError, UsageError
from appliance.home import Home
from appliance.passphrase import read_passphrase
from appliance.policy import load_policy
from appliance.resources import shipped_policy
from appliance.scrub.mask import Masker
from appliance.service.generate import generate, read_prompts
from appliance.service.train import train
from tests.train.conftest import memory_records, write_recipe

REPO = Path(__file__).resolve().parents[2]


def _chat_in_tmux(home: Home, artifact: Path, tmp_path: Path) -> None:
    """`appliance chat` in a real terminal: two typed questions get base and adapter answers
    from one model process (one audited session of two prompts), an empty line ends it."""
    from tests.tui.test_tui_terminal import TMUX, Terminal

    if TMUX is None:
        pytest.skip("tmux is not installed")
    term = Terminal(tmp_path / "tmux.sock", "chat")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    term.start(f"{sys.executable} -m appliance --home {home.root} chat {artifact} "
               "--compare-base --max-tokens 6", REPO, env)
    try:
        term.wait_for(lambda t: "you>" in t, "the chat prompt", timeout=300)
        term.keys("What colour is item 5?", literal=True)
        term.keys("Enter")
        screen = term.wait_for(lambda t: "adapter>" in t, "the answer", timeout=900)
        assert "base>" in screen  # tmux drops trailing blanks
        term.keys("And item 6?", literal=True)  # the same model process answers
        term.keys("Enter")
        term.wait_for(lambda t: t.count("adapter>") == 2, "the second answer", timeout=300)
        term.keys("Enter")
        end = time.monotonic() + 60
        while term.alive() and time.monotonic() < end:
            time.sleep(0.2)
        assert not term.alive()
    finally:
        term.close()
    audit = [json.loads(x) for x in home.audit_log.read_text().splitlines()]
    session = [e for e in audit if e["action"] == "generate"][-1]
    assert session["prompts"] == 2 and session["answers"] == 2  # one child, two turns


def test_prompts_file_errors_name_the_line(tmp_path: Path) -> None:
    """Bad JSON, a record of neither shape, and a conversation ending with the assistant
    are refused naming FILE:LINE; a missing file is bad usage."""
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "hi"}\n{oops\n')
    with pytest.raises(DatasetFormatError, match="not valid JSON") as exc:
        read_prompts(path)
    assert exc.value.line().startswith(f"{path}:2")
    path.write_text('{"prompt": "hi"}\n\n{"text": "x"}\n')
    with pytest.raises(DatasetFormatError) as exc:
        read_prompts(path)
    assert exc.value.line().startswith(f"{path}:3: each line needs")
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "a"},
                                             {"role": "assistant", "content": "b"}]}) + "\n")
    with pytest.raises(DatasetFormatError, match="ending with a user message"):
        read_prompts(path)
    with pytest.raises(UsageError, match="not found"):
        read_prompts(tmp_path / "missing.jsonl")
    path.write_text('{"prompt": "hi"}\n' + json.dumps({"messages": [
        {"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}) + "\n")
    assert [len(c) for c in read_prompts(path)] == [1, 2]


def test_masker_masks_identifiers_and_counts_them() -> None:
    """The policy's detector (real Presidio) masks an e-mail address and an SSN in an
    answer, counting each type; text without identifiers passes unchanged."""
    masker = Masker(load_policy(shipped_policy("demo")))
    out = masker("Write to jane.doe@example.org, SSN 078-05-1120, today.")
    assert "jane.doe@example.org" not in out and "078-05-1120" not in out
    assert "<EMAIL_ADDRESS>" in out and "<US_SSN>" in out
    assert masker.counts["EMAIL_ADDRESS"] == 1 and masker.counts["US_SSN"] == 1
    assert masker("The sky is blue.") == "The sky is blue."


@pytest.mark.slow
def test_generate_compare_base_in_the_child_and_tampered_refused(
        train_home: Home, pass_file: Path, tmp_path: Path) -> None:
    """A trained, signed adapter answers each prompt with and without the adapter through
    the CLI (--json: prompt, adapter, base); the audit counts the answers; the CLI process
    never imports spaCy, Presidio or torch (masking runs in the child); chat keeps one
    child; an artifact with one flipped byte is refused before any model loads."""
    result = train(train_home, write_recipe(tmp_path / "r.toml", steps=2, ckpt=10),
                   passphrase=read_passphrase(pass_file), records=memory_records())
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "What colour is item 3?"}\n'
                       '{"messages": [{"role": "user", "content": "Add 2 and 3."}]}\n')
    proc = subprocess.run(
        [sys.executable, "-m", "appliance", "--home", str(train_home.root), "generate",
         str(result.artifact_dir), "--prompts", str(prompts), "--compare-base", "--json",
         "--max-tokens", "8"], capture_output=True, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["prompt"] for r in rows] == ["What colour is item 3?", "Add 2 and 3."]
    assert all(set(r) == {"prompt", "adapter", "base"} and r["adapter"] for r in rows)
    audit = [json.loads(x) for x in train_home.audit_log.read_text().splitlines()]
    event = [e for e in audit if e["action"] == "generate"][-1]
    assert event["answers"] == 2 and event["compare_base"] is True
    assert "What colour" not in json.dumps(event)

    # the PII detector (Presidio, spaCy) and the model run in the sandboxed child only
    probe = ("import sys; from appliance.cli.main import main; rc = main(sys.argv[1:]); "
             "print('HEAVY', sorted({'spacy', 'presidio_analyzer', 'torch', 'transformers'}"
             " & set(sys.modules)))")
    proc = subprocess.run(
        [sys.executable, "-c", probe, "--home", str(train_home.root), "generate",
         str(result.artifact_dir), "--prompts", str(prompts), "--max-tokens", "4"],
        capture_output=True, text=True, cwd=REPO, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout

    _chat_in_tmux(train_home, result.artifact_dir, tmp_path)

    target = result.artifact_dir / "adapter_config.json"
    target.write_text(target.read_text().replace('"r": 4', '"r": 5'))
    with pytest.raises(IntegrityError, match="does not verify"):
        generate(train_home, result.artifact_dir, read_prompts(prompts))
