"""Keep Presidio and spaCy offline, and find the NER model pinned by digest in the policy."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from appliance.digests import tree_digest
from appliance.errors import ScrubError
from appliance.policy.pii import NerModel

OFFLINE_ENV = {
    "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}
"""Set before presidio/tldextract/spaCy are imported: no suffix-list fetch, no hub calls."""


SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""The scrubber parallelises over processes; one BLAS thread each avoids oversubscription
(only effective before numpy is first imported; an operator's explicit setting wins)."""


def force_offline() -> None:
    """Set every offline switch in this process's environment (idempotent)."""
    for key, value in OFFLINE_ENV.items():
        os.environ[key] = value


@contextmanager
def single_blas_thread() -> Iterator[None]:
    """Within the block, numpy/BLAS first imported here start with one thread; the
    environment is restored afterwards so child processes (the trainer) are unaffected."""
    saved = {key: os.environ.get(key) for key in SINGLE_THREAD_ENV}
    for key, value in SINGLE_THREAD_ENV.items():
        os.environ.setdefault(key, value)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


@dataclass(frozen=True)
class ModelLocation:
    """Where the NER pipeline is on disk, and its digest; `path` None when not installed."""

    name: str
    path: Path | None
    digest: str | None
    problem: str | None = None


def locate_model(model: NerModel) -> ModelLocation:
    """Find the pipeline directory of the installed package `model.name` and digest it.

    Never imports the package (its __init__ could run code) and never downloads."""
    try:
        spec = importlib.util.find_spec(model.name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        return ModelLocation(model.name, None, None, f"{model.name} is not installed")
    package = Path(spec.origin).parent
    data = [p for p in package.iterdir() if p.is_dir() and (p / "meta.json").is_file()]
    if len(data) != 1:
        return ModelLocation(model.name, None, None, f"no pipeline directory in {package}")
    digest = tree_digest(data[0])
    if model.digest is not None and digest != model.digest:
        return ModelLocation(model.name, data[0], digest,
                             f"digest {digest} differs from the policy's {model.digest}")
    return ModelLocation(model.name, data[0], digest)


def require_model(model: NerModel) -> ModelLocation:
    """The verified model location; None path when absent and the policy allows that.

    A model that is present but differs from the pinned digest is always refused."""
    where = locate_model(model)
    if where.problem is not None and where.path is not None:
        raise ScrubError(f"NER model {model.name}: {where.problem}", where="policy pii.ner_model",
                         hint="reinstall the model from the locked wheel or fix the digest")
    if where.path is None and model.required:
        raise ScrubError(f"NER model {model.name}: {where.problem}",
                         where="policy pii.ner_model",
                         hint="install it with scripts/install.sh, or set required = false to "
                              "scrub without name and place detection")
    return where
