"""Pattern detectors for identifiers and secrets: pure regular expressions with checksums,
no NLP, no imports beyond the standard library.

They serve two places: the audit log's redaction processor (every value that looks like
PII or a secret is redacted before it is written) and the scrubber, which wraps them as
Presidio recognizers beside its NER model. Keep them conservative enough for audit values
(ids, digests and paths must survive) and broad enough that a planted identifier cannot.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Detector:
    """One entity type found by a regular expression, optionally confirmed by a check."""

    entity: str
    pattern: re.Pattern[str]
    check: Callable[[str], bool] | None = None


@dataclass(frozen=True)
class Span:
    """A detected span of text."""

    entity: str
    start: int
    end: int


def luhn_ok(text: str) -> bool:
    """True when the digits of `text` pass the Luhn checksum (payment cards)."""
    digits = [int(c) for c in text if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, digit in enumerate(reversed(digits)):
        value = digit * 2 if i % 2 else digit
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    """True when `text` passes the ISO 13616 mod-97 check."""
    compact = re.sub(r"[\s-]", "", text).upper()
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    try:
        number = int("".join(str(int(c, 36)) for c in moved))
    except ValueError:
        return False
    return number % 97 == 1


def ssn_ok(text: str) -> bool:
    """Exclude SSNs that the SSA never issues (000, 666, 9xx area; 00 group; 0000 serial)."""
    digits = re.sub(r"\D", "", text)
    if len(digits) != 9:
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


_I = re.IGNORECASE
_B = r"(?<![^\W_])"
"""Start boundary for number patterns: like `\\b`, but `_` counts as a separator (so
`id_219-09-9999` is found), while a letter or digit before still blocks (hex digests)."""
_E = r"(?![^\W_])"
"""The matching end boundary."""
DETECTORS: tuple[Detector, ...] = (
    Detector("SECRET", re.compile(
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)")),
    Detector("SECRET", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    Detector("SECRET", re.compile(
        r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{30,}\b|\bxox[abposr]-[A-Za-z0-9-]{10,}"
        r"|\bsk-[A-Za-z0-9_-]{20,}\b|\bAIza[0-9A-Za-z_-]{35}\b|\bglpat-[A-Za-z0-9_-]{20}\b")),
    Detector("SECRET", re.compile(
        r"\b[a-z][a-z0-9+.-]{1,20}://[^\s:/@]+:[^\s@/]+@[^\s/]+", _I)),
    Detector("PASSWORD", re.compile(
        r"(?<=\b)(?:password|passwd|pwd|passcode|secret|api[_-]?key|access[_-]?token|token)"
        r"\s*(?:[:=]|\bis\b)\s*[\"']?[^\s\"',;]{4,}", _I)),
    Detector("EMAIL_ADDRESS", re.compile(
        r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")),
    Detector("CREDIT_CARD", re.compile(_B + r"(?:\d[ -]?){12,18}\d" + _E), luhn_ok),
    Detector("IBAN_CODE", re.compile(
        r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?\b"),
             iban_ok),
    Detector("US_SSN", re.compile(_B + r"(?:\d{3}-\d{2}-\d{4}|\d{3} \d{2} \d{4})" + _E), ssn_ok),
    Detector("IP_ADDRESS", re.compile(
        r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")),
    Detector("IP_ADDRESS", re.compile(
        r"(?<![\w:])(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}(?![\w:])"
        r"|(?<![\w:])(?:[0-9a-f]{1,4}:){1,6}:(?:[0-9a-f]{1,4}:){0,5}[0-9a-f]{1,4}(?![\w:])", _I)),
    Detector("PHONE_NUMBER", re.compile(
        r"(?<![\w+])(?:\+?1[ .-]?)?\(?\d{3}\)?[ .-]?\d{3}[ .-]\d{4}(?:\s*(?:x|ext\.?)\s*\d{1,5})?\b"
        r"|(?<![\w+])\+\d{1,3}[ .-]?(?:\(?\d{1,4}\)?[ .-]?){2,5}\d{2,4}\b")),
)


def _card_window(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The longest run of 13-19 digits inside a failed card match, cut at its separators
    or digit groups, that passes Luhn: a card number written after other digits
    (`ref 12 4111 1111 1111 1111`) is matched greedily with them and fails the check."""
    starts = [i for i in range(start, end) if text[i].isdigit()
              and (i == start or not text[i - 1].isdigit())]
    ends = [i + 1 for i in range(start, end) if text[i].isdigit()
            and (i + 1 == end or not text[i + 1].isdigit())]
    best: tuple[int, int] | None = None
    for a in starts:
        for b in ends:
            digits = sum(c.isdigit() for c in text[a:b])
            if 13 <= digits <= 19 and (best is None or b - a > best[1] - best[0]) \
                    and luhn_ok(text[a:b]):
                best = (a, b)
    return best


def find(text: str) -> list[Span]:
    """Every detector's matches in `text` (overlaps allowed), in order of position."""
    spans = []
    for detector in DETECTORS:
        for match in detector.pattern.finditer(text):
            if detector.check is None or detector.check(match.group()):
                spans.append(Span(detector.entity, match.start(), match.end()))
            elif detector.entity == "CREDIT_CARD":
                window = _card_window(text, match.start(), match.end())
                if window:
                    spans.append(Span(detector.entity, *window))
    return sorted(spans, key=lambda s: (s.start, -s.end))


def redact(text: str) -> str:
    """`text` with every detected span replaced by `[REDACTED:<ENTITY>]`."""
    spans = find(text)
    if not spans:
        return text
    out, pos = [], 0
    for span in spans:
        if span.start < pos:  # overlapping: extend the current redaction
            continue
        out.append(text[pos:span.start])
        out.append(f"[REDACTED:{span.entity}]")
        pos = span.end
    out.append(text[pos:])
    return "".join(out)
