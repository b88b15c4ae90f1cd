"""Benchmark of the privacy check (docs/privacy.md): positive and negative control on real training.

Positive control: canaries planted 1, 4 and 16 times into records that go to training
unscrubbed (test path only). Negative control: the same records and canaries imported
through the scrubber. Same recipe (QLoRA, SmolLM2-135M-Instruct, batch 4, 6 epochs, lr 1e-3), same
check (9 planted + 9 control canaries, 31 candidates each). Headline: mean planted exposure
(bits, lower is better) with scrubbing (ours) against without (baseline); ratio = baseline /
ours. Also the check's own run time. The last stdout line is one JSON object.

Usage: scripts/bench.sh privacy [EPOCHS]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchhome import import_default_model  # noqa: E402

from appliance.passphrase import read_passphrase  # noqa: E402
from appliance.resources import shipped_policy  # noqa: E402
from appliance.service.models import record_model  # noqa: E402
from tests.privacy import control  # noqa: E402
from tests.train.conftest import PASSPHRASE, make_home  # noqa: E402


def _home(root: Path, model: Path, plant: bool) -> tuple[Any, Path]:
    text = control.policy_text(shipped_policy("demo").read_text(), enforce=False)
    if plant:
        text = text.replace("plant_canaries = false", "plant_canaries = true")
    home = make_home(root / "home", text)
    shutil.copytree(model, home.models_dir / model.name, copy_function=os.link)
    # a model placed by hand is trained on only once the manifest records it
    record_model(home, model.name, PASSPHRASE.strip().encode())
    pass_file = root / "pass"
    pass_file.write_text(PASSPHRASE)
    pass_file.chmod(0o600)  # a passphrase file others can read is refused
    return home, pass_file


def _brief(result: dict[str, Any], wall: float) -> dict[str, Any]:
    return {"verdict": result["verdict"], "p_value": result["test"]["p_value"],
            "u": result["test"]["u"], "planted": result["groups"]["planted"],
            "controls": result["groups"]["controls"],
            "by_repeats": result["groups"]["by_repeats"],
            "extraction_hits": result["extraction"]["hits"],
            "mean_prefix_match_planted": result["extraction"]["mean_prefix_match_planted"],
            "check_s": result["timing_s"], "train_and_check_s": wall}


def main() -> int:
    """Run both controls; print the details, then the JSON line."""
    from appliance.service.scrub import import_dataset

    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = make_home(root / "model-home")
        record = import_default_model(base)
        home, pass_file = _home(root / "pos", record.path, plant=False)
        control.store_unscrubbed(home, PASSPHRASE.strip().encode(), "pos",
                                 control.base_records())
        recipe = control.write_recipe(root / "pos" / "recipe.toml", "pos", epochs)
        positive, wall_pos, _ = control.run_control(home, pass_file, recipe)
        home, pass_file = _home(root / "neg", record.path, plant=True)
        data = root / "neg" / "data.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in control.base_records()))
        report = import_dataset(home, data, "neg", passphrase=read_passphrase(pass_file), workers=1)
        recipe = control.write_recipe(root / "neg" / "recipe.toml", "neg", epochs)
        negative, wall_neg, _ = control.run_control(home, pass_file, recipe)
    details = {"positive_unscrubbed": _brief(positive, wall_pos),
               "negative_scrubbed": _brief(negative, wall_neg),
               "secrets_surviving_scrub": report["canaries"]["secrets_surviving_scrub"],
               "candidates": control.CANDIDATES, "epochs": epochs}
    print(json.dumps(details, indent=2))
    ours = negative["groups"]["planted"]["mean"]
    baseline = positive["groups"]["planted"]["mean"]
    print(json.dumps({"name": "privacy", "ours": round(ours, 3), "baseline": round(baseline, 3),
                      "unit": "mean planted canary exposure, bits (lower is better)",
                      "ratio": round(baseline / max(ours, 1e-9), 3),
                      "p_scrubbed": negative["test"]["p_value"],
                      "p_unscrubbed": positive["test"]["p_value"],
                      "check_s": round(negative["timing_s"]["total"], 1),
                      "wall_s": round(time.monotonic() - START, 1)}))
    return 0


START = time.monotonic()

if __name__ == "__main__":
    sys.exit(main())
