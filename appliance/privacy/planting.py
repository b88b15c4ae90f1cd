"""Canaries planted into a dataset at import, before scrubbing, and what became of them.

Planting happens after deduplication (so a canary's repeats are never collapsed) and
before scrubbing (so canaries meet the scrubber like every other identifier). After the
split, `finish` counts how many training records each canary reached and how many of its
secrets survived scrubbing verbatim; the report gets counts only.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from appliance.intake.validate import Record
from appliance.policy.privacy import PrivacyPolicy
from appliance.privacy.canaries import Canary, CanarySet, make_canaries, placements, plant


@dataclass(frozen=True)
class Planting:
    """The canaries planted into one import and where they went."""

    seed: int
    canaries: tuple[Canary, ...]
    where: dict[str, list[int]]

    def finish(self, train_indices: set[int],
               scrubbed: Sequence[Sequence[str]]) -> tuple[CanarySet, dict[str, Any]]:
        """The canary set (with training repeat counts) and the report's counts, given
        which record indices went to training and every record's scrubbed texts."""
        train_repeats = {cid: sum(1 for i in idx if i in train_indices)
                         for cid, idx in self.where.items()}
        texts = [t for record in scrubbed for t in record]
        surviving = sum(1 for c in self.canaries if c.repeats > 0
                        and any(c.secret in t for t in texts))
        canary_set = CanarySet(self.seed, self.canaries, train_repeats)
        report = {**canary_set.summary(), "records_with_canaries":
                  len({i for idx in self.where.values() for i in idx}),
                  "secrets_surviving_scrub": surviving}
        return canary_set, report


def plant_intake(records: list[Record], policy: PrivacyPolicy,
                 seed: int | None = None) -> tuple[list[Record], Planting]:
    """Records with the policy's canaries planted (copies; originals untouched)."""
    if seed is None:
        seed = policy.canary_seed if policy.canary_seed is not None \
            else secrets.randbits(63)
    canaries = make_canaries(seed, repeats=tuple(policy.canary_repeats),
                             kinds=tuple(policy.canary_kinds),
                             controls_per_kind=policy.canary_controls)
    data = [r.data for r in records]
    where = placements(data, canaries, seed)
    planted = plant(data, canaries, seed)
    out = [dataclasses.replace(r, data=d) for r, d in zip(records, planted, strict=True)]
    return out, Planting(seed, tuple(canaries), where)


class NoPlanting:
    """Stands for "no canaries were planted": finishing yields nothing."""

    def finish(self, train_indices: set[int],  # noqa: ARG002 - Planting.finish's signature
               scrubbed: Sequence[Sequence[str]]) -> tuple[None, None]:  # noqa: ARG002
        """Nothing planted, nothing to report."""
        return None, None


def maybe_plant(records: list[Record], policy: PrivacyPolicy,
                requested: bool | None) -> tuple[list[Record], Planting | NoPlanting]:
    """Plant when `requested` (None: when the policy's plant_canaries says so)."""
    if not (policy.plant_canaries if requested is None else requested):
        return records, NoPlanting()
    return plant_intake(records, policy)
