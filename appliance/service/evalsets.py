"""Eval-only datasets (`dataset import --eval-only`): the sacred evaluation set a recipe
names as `eval.dataset`. The vault refuses them to training reads (appliance.vault.store);
this reads one for evaluation, after checking it is eval-only."""

from __future__ import annotations

from typing import Any, TypedDict

from appliance.errors import PolicyViolation
from appliance.home import Home
from appliance.train.recipe import Recipe

EVALUATE = "evaluate"
"""The vault read purpose of the sacred set (audited as such)."""


class SacredSet(TypedDict):
    """The recipe's eval-only dataset, decrypted in memory for evaluation."""

    name: str
    digest: str
    records: list[dict[str, Any]]
    """Its held-out records (never written, never trained on)."""


def sacred_set(home: Home, master_key: bytes, recipe: Recipe) -> SacredSet | None:
    """`{"name", "digest", "records"}` of the recipe's eval.dataset (None when it names
    none); PolicyViolation when that dataset is not eval-only or is the training dataset."""
    from appliance.vault import store

    name = recipe.eval.dataset
    if not name:
        return None
    store.check_name(name)
    if name == recipe.dataset:
        raise PolicyViolation("eval.dataset names the training dataset",
                              where="recipe eval.dataset",
                              hint="import the sacred set with dataset import --eval-only")
    loaded = store.load_dataset(home, master_key, name, purpose=EVALUATE)
    if not store.is_eval_only(loaded.metadata):
        raise PolicyViolation(f"eval.dataset {name!r} is not an eval-only dataset: training "
                              "could read it", where="recipe eval.dataset",
                              hint="import the sacred set with dataset import --eval-only")
    if not loaded.eval:
        raise PolicyViolation(f"eval.dataset {name!r} has no records",
                              where="recipe eval.dataset")
    return {"name": name, "digest": loaded.digest, "records": loaded.eval}
