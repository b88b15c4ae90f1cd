"""The privacy check's side of the isolated child (`appliance.train.child` hands it jobs
that carry `"privacy": true`): load the base model and the adapter, measure every canary,
send numbers back. Canary secrets arrive over stdin with the job and never leave."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from appliance.privacy.canaries import CanarySet

Emit = Callable[..., None]


def run(job: dict[str, Any], emit: Emit) -> int:
    """Measure the job's canaries on its adapter; emits `privacy_canary` per canary and
    `privacy_measured` with every result. Returns 0, or 1 after an `error` event."""
    return _run(job, emit)  # a failure is reported by appliance.train.child as `error`


def _run(job: dict[str, Any], emit: Emit) -> int:
    from appliance.privacy.check import measure
    from appliance.privacy.scoring import load_scorer, secret_tokens

    started = time.monotonic()
    canaries = CanarySet.from_dict(job["canaries"])
    scorer = load_scorer(job["model_dir"], job.get("adapter_dir"), method=job["method"],
                         compute_dtype=job["compute_dtype"],
                         double_quant=job.get("double_quant", True),
                         threads=job.get("threads", 0))
    loaded = time.monotonic()
    emit("privacy_loaded", seconds=loaded - started, canaries=len(canaries.canaries))
    results = measure(
        scorer, canaries.canaries, candidates=int(job["candidates"]), seed=canaries.seed,
        train_repeats=canaries.train_repeats,
        tokens_for=lambda c: secret_tokens(scorer, c.prefix, c.secret),
        progress=lambda r: emit("privacy_canary", id=r.id, exposure_bits=r.exposure_bits))
    emit("privacy_measured", results=[r.as_dict() for r in results],
         load_s=loaded - started, measure_s=time.monotonic() - loaded)
    return 0
