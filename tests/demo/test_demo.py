"""The embedded demo, end to end (minutes: marked slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_ends_in_a_verified_artifact_with_lower_eval_loss(run_cli, tmp_path: Path):
    """`appliance demo` runs every stage and ends with the promised JSON line: a verified
    artifact whose held-out loss is below the base model's."""
    home = tmp_path / "demo-home"
    done = run_cli("demo", "--home", str(home), "--no-tui", timeout=3600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["verified"] is True
    assert result["eval_loss_after"] < result["eval_loss_before"]
    artifact = Path(result["artifact"])
    assert (artifact / "adapter_model.safetensors").is_file()
    verify = run_cli("verify", str(artifact), "--home", str(home), "--json")
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"] is True
    stages = [line for line in done.stderr.splitlines() if line.startswith("[")]
    for stage in ("init", "model", "dataset", "train", "eval", "gate", "privacy", "verify",
                  "try"):
        assert any(f"{stage}]" in line for line in stages), stage
    assert result["evaluation"]["passed"] is True
    assert "evaluation.max_eval_loss_rise" in result["evaluation"]["checks"]
    assert len(result["samples"]) == 2
    assert all(s["base"] and s["adapter"] and s["base"] != s["adapter"]
               for s in result["samples"])
    report = json.loads((artifact / "report.json").read_text())
    assert report["evaluation"]["best"]["step"] >= 12
    # canaries planted at import, exposure measured before signing, signed in the artifact
    assert result["privacy"]["verdict"] == "pass"
    assert report["privacy"]["verdict"] == "pass"
    assert json.loads((artifact / "provenance.json").read_text())["privacy"]["verdict"] == \
        "pass"


def test_demo_init_reads_its_own_passphrase_file_before_setting_it_aside(tmp_path: Path):
    """Without --passphrase-file the demo keeps a random passphrase in its workspace; init
    wants an empty directory, so the file is set aside and put back: the passphrase (read
    lazily, as the CLI passes it) is read before that, and the home opens with it."""
    from appliance import trust
    from appliance.home import Home
    from appliance.passphrase import read_passphrase
    from appliance.service.demo import _init, demo_passphrase_file

    home = Home(tmp_path / "demo-home")
    path = demo_passphrase_file(home, None)
    try:
        _init(home, lambda: read_passphrase(path), lambda stage, detail: None)
    finally:
        trust.close(home)
        trust.forget(home)
    assert home.is_initialised()
    from appliance.policy import load_policy

    try:  # the file is back, holding the passphrase init sealed the keys with
        trust.unlock(home, read_passphrase(path), load_policy(home.policy_file))
    finally:
        trust.close(home)
        trust.forget(home)
