"""The structlog processor chain every audit event goes through.

Each processor has structlog's signature `(logger, method_name, event_dict) -> event_dict`.
`redact` is the last processor before the sink and there is no other path to the log file:
every key and string value (exception texts and tracebacks included) passes the scrubber's
pattern detectors (`appliance.patterns`, those `patterns.redact` applies) and a conservative
person-name heuristic, because pure regular expressions do not find names.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import re
import traceback
from collections.abc import MutableMapping
from typing import Any

from appliance.patterns import find

MAX_TEXT = 2048
_PERSON = re.compile(
    r"\b[A-Z\u00C0-\u00DE][a-z\u00DF-\u00FF]+(?:[ _-][A-Z\u00C0-\u00DE][a-z\u00DF-\u00FF']+)+\b")

EventDict = MutableMapping[str, Any]


def _spans(text: str) -> list[tuple[int, int, str]]:
    # Underscores join words in file names (`Jane_Doe_219-09-9999.txt`) and defeat `\b` in
    # the detectors; detect on a same-length copy with spaces, replace in the original.
    spaced = text.replace("_", " ")
    found = [(s.start, s.end, s.entity) for s in find(spaced)]
    found += [(m.start(), m.end(), "PERSON") for m in _PERSON.finditer(spaced)]
    return sorted(found, key=lambda s: (s[0], -s[1]))


def _redact_once(text: str) -> str:
    out, pos = [], 0
    for start, end, entity in _spans(text):
        if start < pos:  # overlaps the previous redaction: extend it
            pos = max(pos, end)
            continue
        out += [text[pos:start], f"[REDACTED:{entity}]"]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def scrub_text(text: str) -> str:
    """`text` with identifiers, secrets and name-like word runs redacted, length-capped.

    Runs to a fixed point (at most three passes): a detector can miss an identifier glued to
    digits that another detector then removes (a card number right after a phone number).
    """
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + "...[truncated]"
    for _ in range(3):
        cleaned = _redact_once(text)
        if cleaned == text:
            break
        text = cleaned
    return text


def add_action(_logger: Any, _method: str, event: EventDict) -> EventDict:
    """structlog's positional `event` becomes the audit `action`."""
    event["action"] = event.pop("event")
    return event


def add_time(_logger: Any, _method: str, event: EventDict) -> EventDict:
    """UTC time of the event, ISO 8601 with microseconds."""
    event["time"] = _dt.datetime.now(_dt.UTC).isoformat()
    return event


def add_actor(_logger: Any, _method: str, event: EventDict) -> EventDict:
    """The OS user the process runs as."""
    try:
        event["actor"] = getpass.getuser()
    except (KeyError, OSError):
        event["actor"] = "uid:unknown"
    return event


def format_errors(_logger: Any, _method: str, event: EventDict) -> EventDict:
    """Exceptions (as values or `exc_info`) become `Type: message` text, to be redacted next."""
    info = event.pop("exc_info", None)
    if isinstance(info, BaseException):
        event["traceback"] = "".join(traceback.format_exception(info))
    for key, value in list(event.items()):
        if isinstance(value, BaseException):
            event[key] = f"{type(value).__name__}: {value}"
    return event


def _clean(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, dict):
        return {scrub_text(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    if isinstance(value, BaseException):
        value = f"{type(value).__name__}: {value}"
    text = value if isinstance(value, str) else str(value)
    cleaned = scrub_text(text)
    # numbers stay numbers unless they look like an identifier (a card number as an int)
    return value if isinstance(value, int | float) and cleaned == text else cleaned


def redact(_logger: Any, _method: str, event: EventDict) -> EventDict:
    """Redact every key and value; nothing reaches the sink without passing here."""
    return {scrub_text(str(k)): _clean(v) for k, v in event.items()}


CHAIN = (add_action, add_time, add_actor, format_errors, redact)
"""The processors, in order. `redact` must stay last (the sink receives its dict)."""
