"""`train.gradient_checkpointing`: on the real NF4 base model (CPU), the LoRA gradients of
one batch are the same with and without it, and the option reaches the model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.train.recipe import parse_recipe

REPO = Path(__file__).resolve().parents[2]
GRADS = r"""
import json, sys
import torch
from appliance.train.recipe import parse_recipe
from appliance.train.trainer import load_model, token_loss_sum

model_dir = sys.argv[1]
out = {}
for flag in (False, True):
    recipe = parse_recipe({"base_model": "m", "dataset": "d", "seed": 3,
                           "lora": {"rank": 4, "alpha": 8, "dropout": 0.0},
                           "train": {"gradient_checkpointing": flag}})
    tok, model = load_model(model_dir, recipe, torch.device("cpu"))
    model.train()
    ids = tok("The quick brown fox jumps over the lazy dog", return_tensors="pt").input_ids
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    token_loss_sum(model, batch).backward()
    # lora_B: A gets no gradient in the first step, B starts at zero
    grads = [p.grad.flatten() for n, p in model.named_parameters() if "lora_B" in n]
    out[str(flag)] = {"on": bool(model.base_model.model.is_gradient_checkpointing),
                      "grad": torch.cat(grads).tolist()[:4000]}
diff = max(abs(a - b) for a, b in zip(out["False"]["grad"], out["True"]["grad"]))
scale = max(abs(a) for a in out["False"]["grad"])
print(json.dumps({"off": out["False"]["on"], "on": out["True"]["on"], "max_diff": diff,
                  "scale": scale}))
"""


def test_recipe_option_defaults_off() -> None:
    """The option is off unless a recipe sets it."""
    recipe = parse_recipe({"base_model": "m", "dataset": "d"})
    assert recipe.train.gradient_checkpointing is False


@pytest.mark.slow
def test_gradients_are_the_same_with_checkpointing(converted_model: Path) -> None:
    """One backward pass through the NF4 model: identical LoRA gradients (to float noise)
    with gradient checkpointing, which is really switched on."""
    done = subprocess.run([sys.executable, "-c", GRADS, str(converted_model / "weights")],
                          capture_output=True, text=True, timeout=900, check=False, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["on"] and not result["off"]
    assert result["scale"] > 0 and result["max_diff"] <= 1e-4 * result["scale"]
