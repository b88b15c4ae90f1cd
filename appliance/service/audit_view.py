"""Browsing the audit log for the console: events newest first, filtered, as stored.

Values are shown exactly as the log holds them: the audit chain redacts before it writes,
so nothing here needs to (or may) un-redact anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.home import Home
from appliance.service.overview import AuditEvent, audit_lines, parse_event

DEFAULT_LIMIT = 500


@dataclass(frozen=True)
class EventPage:
    """Matching events, newest first, at most `limit` of them."""

    total: int
    matched: int
    events: list[AuditEvent]


def _matches(event: AuditEvent, terms: list[str]) -> bool:
    """Every term appears (case-insensitively) in the action, outcome, actor or details;
    `key=value` terms must match that field exactly."""
    text = " ".join((event.action, event.outcome, event.actor, event.details())).lower()
    for term in terms:
        key, sep, want = term.partition("=")
        if sep and key in ("action", "outcome", "actor"):
            if getattr(event, key).lower() != want:
                return False
        elif sep and key in event.fields:
            if str(event.fields[key]).lower() != want:
                return False
        elif term not in text:
            return False
    return True


def read_events(home: Home, query: str = "", limit: int = DEFAULT_LIMIT) -> EventPage:
    """Events of the home's audit log, newest first, matching every word of `query`."""
    lines = audit_lines(home)
    terms = query.lower().split()
    events: list[AuditEvent] = []
    matched = 0
    for number in range(len(lines), 0, -1):
        event = parse_event(number, lines[number - 1])
        if terms and not _matches(event, terms):
            continue
        matched += 1
        if len(events) < limit:
            events.append(event)
    return EventPage(len(lines), matched, events)
