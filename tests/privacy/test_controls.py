"""The privacy check on real training (slow): the positive control proves it can see
memorisation, the negative control that scrubbed canaries look like never-seen ones.

Both train SmolLM2-135M-Instruct with QLoRA on 36 short records (batch 4, 6 epochs, 54
steps, lr 1e-3; canaries repeated 1, 4 and 16 times), then measure 9 planted and 9 control
canaries against 31 sampled candidates each. The positive control passed in 7 min (419 s,
model import included) on the 2-core machine; up to 25 min under heavy load.
Figures: docs/privacy.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.errors import PolicyViolation
from appliance.passphrase import read_passphrase
from appliance.resources import shipped_policy
from tests.privacy import control
from tests.train.conftest import PASSPHRASE, make_home, place_model

pytestmark = pytest.mark.slow
EPOCHS = 6


def _home(root: Path, converted_model: Path, *, enforce: bool, plant: bool = False):  # type: ignore[no-untyped-def]
    text = control.policy_text(shipped_policy("demo").read_text(), enforce=enforce)
    if plant:
        text = text.replace("plant_canaries = false", "plant_canaries = true")
    home = make_home(root / "home", text)
    place_model(home, converted_model)
    pass_file = root / "pass"
    pass_file.write_text(PASSPHRASE)
    return home, pass_file


def test_positive_control_unscrubbed_canaries_are_seen_and_signing_is_refused(
        tmp_path, converted_model):
    """Canaries trained on unscrubbed: exposure of the 16-times canaries clearly above the
    controls (significant), the verdict fails, and nothing is signed."""
    home, pass_file = _home(tmp_path, converted_model, enforce=True)
    control.store_unscrubbed(home, PASSPHRASE.strip().encode(), "pos", control.base_records())
    recipe = control.write_recipe(tmp_path / "recipe.toml", "pos", EPOCHS)
    result, _, error = control.run_control(home, pass_file, recipe)
    assert isinstance(error, PolicyViolation) and "not signed" in str(error)
    assert result["verdict"] == "fail"
    groups = result["groups"]
    assert groups["by_repeats"]["16"]["mean"] > groups["controls"]["mean"] + 1.5
    assert result["test_top_repeats"]["significant"]
    assert groups["planted"]["mean"] > groups["controls"]["mean"]
    assert not any(home.artifacts_dir.glob("*/model.sig"))
    events = [json.loads(line) for line in home.audit_log.read_text().splitlines()]
    checks = [e for e in events if e.get("action", e.get("event")) == "privacy.check"]
    assert checks and checks[-1]["outcome"] == "failed"


def test_negative_control_scrubbed_canaries_look_like_controls(tmp_path, converted_model,
                                                                run_cli):
    """The same canaries imported through the scrubber: planted exposure is not above the
    controls, no secret is extracted, the adapter is signed with the result in its
    provenance, and `appliance privacy-check` on the artifact agrees."""
    from appliance.service.scrub import import_dataset

    home, pass_file = _home(tmp_path, converted_model, enforce=True, plant=True)
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in control.base_records()))
    import_dataset(home, data, "neg", passphrase=read_passphrase(pass_file), workers=1)
    recipe = control.write_recipe(tmp_path / "recipe.toml", "neg", EPOCHS)
    result, _, error = control.run_control(home, pass_file, recipe)
    assert error is None, error
    assert result["verdict"] == "pass", result["reasons"]
    assert not result["test"]["significant"] and not result["test_top_repeats"]["significant"]
    assert result["extraction"]["hits"] == 0
    (artifact,) = [p for p in home.artifacts_dir.iterdir() if not p.name.startswith(".")]
    provenance = json.loads((artifact / "provenance.json").read_text())
    assert provenance["privacy"]["canary_set"]["digest"] == result["canary_set"]["digest"]
    done = run_cli("privacy-check", str(artifact), "--json", "--home", str(home.root),
                   "--passphrase-file", str(pass_file), timeout=900)
    assert done.returncode == 0, done.stderr
    again = json.loads(done.stdout.strip().splitlines()[-1])
    assert again["verdict"] == "pass"
    assert [c["exposure_bits"] for c in again["canaries"]] == \
        pytest.approx([c["exposure_bits"] for c in result["canaries"]], abs=1e-6)
