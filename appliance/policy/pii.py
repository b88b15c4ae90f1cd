"""Policy for PII detection and scrubbing of fine-tuning data."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from appliance.policy._base import Digest, Section

Operator = Literal["placeholder", "pseudonym", "surrogate", "mask", "redact", "hash"]

DIRECT_IDENTIFIERS = (
    "PERSON",
    "STREET_ADDRESS",
    "PHONE_NUMBER",
    "EMAIL_ADDRESS",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "US_DRIVER_LICENSE",
)

KNOWN_ENTITIES = (
    *DIRECT_IDENTIFIERS,
    "LOCATION",
    "DATE_TIME",
    "NRP",
    "ORGANIZATION",
    "US_BANK_NUMBER",
    "US_ITIN",
    "US_PASSPORT",
    "UK_NHS",
    "MEDICAL_LICENSE",
    "CRYPTO",
    "MAC_ADDRESS",
    "URL",
    "SECRET",
    "USERNAME",
    "PASSWORD",
    "AGE",
    "ZIP_CODE",
    "UUID",
)
"""Entity types the appliance's scrubber knows how to detect."""


class NerModel(Section):
    """The spaCy NER pipeline Presidio uses for names and places, pinned by content digest."""

    name: str = "en_core_web_sm"
    """Importable package name of the spaCy pipeline (loaded from disk, never downloaded)."""
    digest: Digest | None = None
    """sha256 over the pipeline's files (sorted paths); the scrubber refuses a model that differs.
    None disables the check (only for development policies)."""
    required: bool = True
    """Refuse to scrub when the model is missing. When false and missing, the report states
    that names and places are not detected."""


class FailClosed(Section):
    """What happens to a record the scrubber cannot fully analyse."""

    max_record_chars: int = Field(default=20_000, ge=1, le=1_000_000)
    """A record with a text (an Alpaca field or a chat message) longer than this is
    quarantined rather than analysed."""
    analysis_timeout_s: float = Field(default=10.0, gt=0, le=600)
    """A record whose analysis takes longer than this (or whose regex times out) is quarantined."""
    on_error: Literal["quarantine"] = "quarantine"
    """A record whose analysis raises is quarantined: never passed through unscrubbed."""


class PiiPolicy(Section):
    """PII detection and anonymisation of every record before it is stored."""

    entities: list[str] = Field(
        default_factory=lambda: [
            *DIRECT_IDENTIFIERS, "LOCATION", "US_BANK_NUMBER", "US_ITIN", "US_PASSPORT",
            "UK_NHS", "MEDICAL_LICENSE", "CRYPTO", "SECRET", "USERNAME", "PASSWORD", "UUID",
        ],
        min_length=1,
    )
    """Entity types to detect and anonymise."""
    score_threshold: float = Field(default=0.35, ge=0.0, le=1.0)
    """Detections scoring below this are ignored."""
    default_operator: Operator = "placeholder"
    """Operator for entity types not listed in `operators`."""
    operators: dict[str, Operator] = Field(
        default_factory=lambda: dict[str, Operator](
            {"PERSON": "pseudonym", "EMAIL_ADDRESS": "pseudonym"})
    )
    """Operator per entity type: placeholder (`<PERSON>`), pseudonym (keyed HMAC surrogate,
    stable within a dataset), surrogate (a realistic fake name, street address or place,
    chosen by the same key: one value keeps one fake within a dataset; other types get the
    pseudonym, since the residual pass would count a realistic fake phone or e-mail), mask
    (`*`), redact (removed), hash (keyed sha256)."""
    keep_pseudonym_key: bool = False
    """Keep the per-dataset pseudonym key (encrypted in the vault) after import; otherwise it
    is destroyed so surrogates cannot be linked back."""
    ner_model: NerModel = Field(default_factory=NerModel)
    """The NER model for names and places."""
    fail_closed: FailClosed = Field(default_factory=FailClosed)
    """Limits beyond which a record is quarantined."""
    max_residual: dict[str, int] = Field(default_factory=dict)
    """Allowed residual detections per entity type after scrubbing (independent second pass);
    types not listed allow 0. Above the limit the import is refused."""
    max_residual_share: float = Field(default=0.0, ge=0.0, le=1.0)
    """Allowed share of records with any residual detection (0 = none)."""
