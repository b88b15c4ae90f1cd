"""What the scrubber can still miss, with measured figures and where they come from.

Shown in every import report (`scrubber_limits`), by `appliance dataset import` and on the
console's scrub report, so that no operator reads "residual: none" as "no identifier left".
Figures: docs/benchmarks.md, section "scrub" (commands and data for each)."""

from __future__ import annotations

from typing import Any

MEASURED = (
    "direct identifiers fully masked / leaked (scrub eval --baseline presidio, 2026-12-02): "
    "presidio-research generated_large, 2,109 sentences not written here: 98.4% / 0.1% "
    "(raw Presidio 60.2% / 25.5%); hand-written prose sets (tests/data/pii_prose, 330 "
    "records, 553 spans, names of many origins, development sets): news 99.0% / 0.0%, "
    "legal, clinical, chat, letters, e-mail threads, lower-case support tickets, form "
    "records and tokenised newswire 100% / 0.0%; first measurement of the four newest sets, "
    "before any change for them: e-mail 96.6% / 2.2%, tickets 89.1% / 3.6%, forms "
    "95.6% / 0.0%, newswire 96.5% / 3.5%; a mixed probe written after every change, "
    "measured once: 100% / 0.0% (56 spans); own held-out Faker sets of other shapes (seed "
    "7100): 98.8-100%, nothing leaked")
"""The measured figures, with their data sources (docs/benchmarks.md has every command)."""

CAN_MISS = (
    "on data not written here about 1 identifier in 70 is only partly masked and 1 in 1,000 "
    "not at all, mostly the ends of addresses in unusual formats (a street name and number "
    "with no street type in running text, \"Bygget 91\", \"Unter den Linden 77\"; a lone "
    "postcode line after the country) or a part of a name",
    "on a new kind of text expect more: each new hand-written set leaked 2-4% of its names "
    "before the detectors were changed for it (lower-case chat and tickets worst)",
    "in text without capitals, a name missing from the census-derived name lists whose "
    "words are also English words (\"jillian capon\"), and a surname particle in lower "
    "case (\"starring de vaan\"): without those lists lower-case chat drops from 98% to "
    "89% masked",
    "a name that is an English word, alone and without a cue, in the middle of a sentence",
    "identifiers spelled out, split over records, or in images and attachments",
    "quasi-identifiers (dates, ages, employers, job titles, rare conditions): the default "
    "policy does not scrub DATE_TIME, ORGANIZATION or URLs/domain names (add DATE_TIME "
    "and URL to pii.entities for HIPAA Safe Harbor)",
    "the residual pass counts cards, e-mail, IBAN, IP, SSN, phones and secrets only: a name "
    "or address it misses is not counted",
)
"""Known misses, in plain words."""


def scrubber_limits() -> dict[str, Any]:
    """The report field: measured figures and known misses."""
    return {"measured": MEASURED, "can_miss": list(CAN_MISS),
            "details": "docs/benchmarks.md#scrub and SECURITY.md#pii-scrubbing"}
