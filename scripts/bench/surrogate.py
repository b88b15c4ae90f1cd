"""What the surrogate operator does to training: the demo's data, policy and recipe, once
with the demo policy's operators (PERSON pseudonym `<PERSON_1f3a9c02b7>`, STREET_ADDRESS and
LOCATION placeholder `<STREET_ADDRESS>`) and once with `surrogate` (a realistic keyed fake)
for PERSON, STREET_ADDRESS and LOCATION. Same base model (imported once), same seed, same
recipe (the demo's, `max_steps` shortened to keep it to a few minutes of CPU); each run's
held-out records are scrubbed by its own policy, as in production. Reports held-out loss
before and after, general-text perplexity and training time per run. The last stdout line
is one JSON object (ours: surrogate run's final held-out loss; baseline: the default's).

Usage: scripts/bench.sh surrogate [STEPS]    (default 12; the demo trains 36)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts" / "bench"))

from benchhome import PASSPHRASE, import_default_model, make_home  # noqa: E402

from appliance.passphrase import read_passphrase  # noqa: E402
from appliance.resources import shipped_policy  # noqa: E402
from appliance.service.demo import DATASET, RECIPE  # noqa: E402
from appliance.service.models import record_model  # noqa: E402

SURROGATE = ('\n[pii.operators]\nPERSON = "surrogate"\nSTREET_ADDRESS = "surrogate"\n'
             'LOCATION = "surrogate"\nEMAIL_ADDRESS = "pseudonym"\n')


def _policy(surrogate: bool) -> str:
    text = shipped_policy("demo").read_text()
    if surrogate:
        assert "[pii.operators]" not in text  # the demo policy takes the default's operators
        text += SURROGATE
    return text


def _recipe(root: Path, steps: int) -> Path:
    text = RECIPE.read_text()
    data = tomllib.loads(text)
    text = text.replace(f"max_steps = {data['train']['max_steps']}", f"max_steps = {steps}")
    text = text.replace(f"every = {data['eval']['every']}", f"every = {steps}")
    text = text.replace(f"generations = {data['eval']['generations']}", "generations = 0")
    path = root / "recipe.toml"
    path.write_text(text)
    return path


def _run(root: Path, model: Path, surrogate: bool, steps: int) -> dict[str, Any]:
    from appliance.service.scrub import import_dataset
    from appliance.service.train import train

    root.mkdir(parents=True)
    home = make_home(root / "home", _policy(surrogate))
    shutil.copytree(model, home.models_dir / model.name, copy_function=os.link)
    record_model(home, model.name, PASSPHRASE.strip().encode())
    pass_file = root / "pass"
    pass_file.write_text(PASSPHRASE)
    pass_file.chmod(0o600)
    passphrase = read_passphrase(pass_file)
    report = import_dataset(home, DATASET, "demo", passphrase=passphrase, workers=1,
                            canaries=False)
    start = time.monotonic()
    result = train(home, _recipe(root, steps), passphrase=passphrase)
    wall = time.monotonic() - start
    return {"operators": "surrogate" if surrogate else "demo default",
            "records_out": report["records_out"], "pii": report["pii"],
            "residual": report["residual"],
            "eval_loss_before": result.eval_before.get("loss"),
            "eval_loss_after": result.eval_after.get("loss"),
            "eval_before": result.eval_before, "eval_after": result.eval_after,
            "signed": result.signed,
            "train_s": round(wall, 1)}


def main() -> int:
    """Both runs; details, then the JSON line."""

    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = make_home(root / "model-home")
        record = import_default_model(base)
        default = _run(root / "default", record.path, surrogate=False, steps=steps)
        fake = _run(root / "surrogate", record.path, surrogate=True, steps=steps)
    print(json.dumps({"default": default, "surrogate": fake, "steps": steps}, indent=2))
    print(json.dumps({"name": "surrogate", "ours": fake["eval_loss_after"],
                      "baseline": default["eval_loss_after"],
                      "unit": "held-out loss after training (each on its own scrubbed split)",
                      "ratio": round(default["eval_loss_after"] / fake["eval_loss_after"], 3),
                      "before_ours": fake["eval_loss_before"],
                      "before_baseline": default["eval_loss_before"], "steps": steps,
                      "wall_s": round(time.monotonic() - START, 1)}))
    return 0


START = time.monotonic()

if __name__ == "__main__":
    sys.exit(main())
