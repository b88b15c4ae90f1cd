"""The privacy check's controls on the real model (shared by the slow tests and
scripts/bench/privacy.py).

Positive control: canaries are planted into records that go straight into the vault and
on to training, bypassing the scrubber (test code only: no product switch weakens the
policy), repeated 1, 4 and 16 times; the check must see memorisation. Negative control: the
same records and canaries go through `dataset import` (Presidio scrubbing) and the same
training; planted exposure must not be above the controls.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from appliance import trust
from appliance.home import Home
from appliance.passphrase import read_passphrase

SEED = 20261122
CANDIDATES = 31
METHOD = "qlora"
"""The product's method (NF4 base weights, bitsandbytes); on this CPU it also trained
faster than full precision (about 18 against 9 tokens/s under load)."""
LEARNING_RATE = 0.001
"""The shipped limit (3e-3 diverged in a 45-step trial: training loss rose to 6.3)."""
COLOURS = ("red", "blue", "green", "amber", "violet", "teal", "grey", "olive", "navy", "pink",
           "gold", "white")

PRIVACY_SECTION = f"""
[privacy]
check_before_signing = true
enforce = {{enforce}}
alpha = 0.01
candidates = {CANDIDATES}
plant_canaries = false
canary_seed = {SEED}
canary_repeats = [1, 4, 16]
canary_kinds = ["ssn", "email", "name"]
canary_controls = 3
"""

RECIPE = """
name = "privacy-control"
base_model = "smollm2-135m-instruct"
dataset = "{dataset}"
seed = 3
threads = 2
method = "{method}"

[lora]
rank = 8
alpha = 16
dropout = 0.0
target_modules = ["q_proj", "k_proj", "v_proj", "o_proj"]

[optim]
learning_rate = {lr}
warmup_steps = 2
schedule = "constant"

[train]
epochs = {epochs}
batch_size = 4
seq_len = 128
checkpoint_every = 1000
log_every = 5

[eval]
max_records = 4
generations = 0
"""


def base_records(n: int = 40) -> list[dict[str, Any]]:
    """Short, distinct chat records (no PII of their own)."""
    return [{"messages": [{"role": "user", "content": f"What colour is item {i}?"},
                          {"role": "assistant",
                           "content": f"Item {i} is {COLOURS[i % len(COLOURS)]}."}]}
            for i in range(n)]


def policy_text(demo_policy: str, *, enforce: bool) -> str:
    """The demo policy with the privacy check switched on, and the training limits the
    controls need (more epochs; full-precision LoRA allowed too)."""
    head = demo_policy[:demo_policy.index("[privacy]")]
    tail = demo_policy[demo_policy.index("[export]"):]
    head = head.replace("max_epochs = 3", "max_epochs = 8")
    head = head.replace("[training]\n", '[training]\nmethods = ["qlora", "lora"]\n')
    # the positive control over-trains on purpose; the evaluation gates (docs/training.md) would
    # refuse to sign it, so here they record their verdict only
    gates = "[evaluation]\nenforce = false\n"
    return head + PRIVACY_SECTION.format(enforce=str(enforce).lower()) + "\n" + gates + "\n" \
        + tail


def write_recipe(path: Path, dataset: str, epochs: int, *, method: str = METHOD,
                 lr: float = LEARNING_RATE) -> Path:
    """The control's recipe."""
    path.write_text(RECIPE.format(dataset=dataset, epochs=epochs, method=method, lr=lr))
    return path


def store_unscrubbed(home: Home, passphrase: bytes, name: str,
                     records: list[dict[str, Any]]) -> dict[str, Any]:
    """Plant the policy's canaries and write the records to the vault WITHOUT scrubbing
    (the positive control); every planted record trains, a few unplanted ones evaluate."""
    from appliance.policy import load_policy
    from appliance.privacy.canaries import CanarySet, make_canaries, placements, plant
    from appliance.privacy.sealing import seal
    from appliance.service.privacy import SEALED_KEY
    from appliance.vault.store import write_dataset

    policy = load_policy(home.policy_file)
    privacy = policy.privacy
    key = trust.unlock(home, passphrase, policy)
    canaries = make_canaries(SEED, tuple(privacy.canary_repeats), tuple(privacy.canary_kinds),
                             privacy.canary_controls)
    where = placements(records, canaries, SEED)
    planted = plant(records, canaries, SEED)
    used = {i for idx in where.values() for i in idx}
    spare = [i for i in range(len(records)) if i not in used]
    evals = [planted[i] for i in spare[:4]]
    train = [r for i, r in enumerate(planted) if i not in set(spare[:4])]
    canary_set = CanarySet(SEED, tuple(canaries), {k: len(v) for k, v in where.items()})
    write_dataset(home, policy, key, name, train, evals,
                  {"report": {"note": "positive control: not scrubbed"},
                   SEALED_KEY: seal(key, name, canary_set)})
    return canary_set.summary()


def run_control(home: Home, pass_file: Path, recipe: Path) -> tuple[dict[str, Any], float,
                                                                     Exception | None]:
    """Train; return the privacy result the check wrote, the wall time, and the refusal
    (or other error) training ended with, if any."""
    from appliance.service.train import train

    started = time.monotonic()
    error: Exception | None = None
    try:
        train(home, recipe, passphrase=read_passphrase(pass_file))
    except Exception as exc:  # the refusal is part of what is measured
        error = exc
    elapsed = time.monotonic() - started
    found = sorted(home.runs_dir.glob("*/privacy.json"))
    if not found:
        raise AssertionError(f"the privacy check did not run: {error!r}")
    return json.loads(found[-1].read_text()), elapsed, error
