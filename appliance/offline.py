"""Offline switches for the Hugging Face stack, set before any of it is imported.

transformers, huggingface_hub and datasets read these at import time; tldextract (used by
Presidio's email recognizer) would otherwise fetch the public suffix list.
"""

from __future__ import annotations

import os

OFFLINE_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "DO_NOT_TRACK": "1",
    "DISABLE_TELEMETRY": "1",
    "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "",
    "TOKENIZERS_PARALLELISM": "false",
    "BITSANDBYTES_NOWELCOME": "1",
}


def apply(environ: dict[str, str] | os._Environ[str] | None = None) -> None:
    """Set every offline switch in `environ` (default: this process's environment)."""
    target = os.environ if environ is None else environ
    target.update(OFFLINE_ENV)
