"""A dataset's scrub report and its scrubbed sample records, rendered for reading.

The report holds counts, reasons, digests and settings only (never record text). Sample
records are scrubbed text decrypted in memory: they are rendered as Rich Text (never markup,
so a record cannot style or hide anything) and placeholders are highlighted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

PLACEHOLDER = re.compile(r"<[A-Z][A-Z0-9_]*>")
"""What the scrubber puts where an identifier was: <TYPE> or <TYPE_pseudonym>."""


def _row(table: Table, *cells: RenderableType) -> None:
    """Add a row; strings are data, shown as they are (never parsed as Rich markup)."""
    table.add_row(*(Text(c) if isinstance(c, str) else c for c in cells))


def _grid() -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim", no_wrap=True)
    table.add_column()
    return table


def _counts(counts: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def entity_table(report: Mapping[str, Any]) -> Table | Text:
    """Per entity type: replaced, residual after scrubbing, and what the policy allows."""
    pii = dict(report.get("pii") or {})
    residual = dict(report.get("residual") or {})
    allowed = report.get("residual_allowed")
    types = sorted(set(pii) | set(residual) | set(allowed or {}))
    if not types:
        return Text("no identifier found", style="green")
    table = Table(box=None, padding=(0, 2), show_edge=False, header_style="bold")
    table.add_column("entity")
    table.add_column("replaced", justify="right")
    table.add_column("residual", justify="right")
    table.add_column("allowed", justify="right")
    for entity in types:
        left = int(residual.get(entity, 0))
        limit = "?" if allowed is None else str(allowed.get(entity, 0))
        _row(table, entity, str(pii.get(entity, 0)),
                      Text(str(left), style="yellow" if left else ""), limit)
    return table


def _records_line(report: Mapping[str, Any]) -> str:
    return (f"{report.get('records_in', '?')} read -> {report.get('records_out', '?')} "
            f"stored: {report.get('train', '?')} train, {report.get('eval', '?')} eval "
            f"(eval share {report.get('eval_fraction', '?')}, split seed "
            f"{report.get('split_seed', '?')})")


def _rejected(report: Mapping[str, Any]) -> Text:
    count = int(report.get("rejected", 0))
    text = Text(str(count), style="yellow" if count else "")
    if count:
        text.append(f": {_counts(report.get('rejected_reasons') or {})}")
        lines = list(report.get("rejected_lines") or [])
        if lines:
            shown = ", ".join(str(n) for n in lines[:10])
            more = f" and {count - 10} more" if count > 10 else ""
            text.append(f" (line {shown}{more})", style="dim")
    return text


def _quarantined(report: Mapping[str, Any]) -> Text:
    count = int(report.get("quarantined", 0))
    text = Text(str(count), style="yellow" if count else "")
    if count:
        text.append(f": {_counts(report.get('quarantined_reasons') or {})} (withheld, never "
                    "passed through)")
    return text


def _names(report: Mapping[str, Any]) -> Text:
    ner = report.get("ner") or {}
    if ner.get("detects_names_and_places"):
        return Text(f"NER model {ner.get('model')}: names and places detected")
    warning = ner.get("warning") or "no NER model: names and places are NOT detected"
    return Text(warning, style="bold red")


def _residual_line(report: Mapping[str, Any]) -> Text:
    residual = report.get("residual") or {}
    share = report.get("residual_share_allowed")
    if residual:
        text = Text(f"{sum(residual.values())} left after scrubbing (within the policy's "
                    "limits, or nothing would have been imported)", style="yellow")
    else:
        text = Text("none found by the independent second pass", style="green")
    if share is not None:
        text.append(f"; allowed share of texts {share}", style="dim")
    return text


def _canaries(counts: Mapping[str, Any]) -> str:
    repeats = ", ".join(f"x{r}" for r in counts.get("repeats", []))
    return (f"{counts.get('planted')} planted ({repeats}), {counts.get('controls')} "
            f"controls; {counts.get('secrets_surviving_scrub')} secret(s) survived "
            f"scrubbing verbatim; set {counts.get('digest')}")


def scrub_report(report: Mapping[str, Any], stored: Mapping[str, Any] | None = None
                 ) -> RenderableType:
    """The whole report: records, rejections, duplicates, quarantine, entities, names,
    canaries, key, digests; with `stored` (dataset show), the vault's verified facts."""
    grid = _grid()
    shape = report.get("shape")
    _row(grid, "dataset", f"{report.get('name')}" + (f" ({shape} records)" if shape else ""))
    if stored:
        _row(grid, "stored", f"{stored.get('created')}; {stored.get('size_bytes')} bytes, "
                     f"{stored.get('cipher')}, verified with the passphrase")
    _row(grid, "records", _records_line(report))
    _row(grid, "rejected", _rejected(report))
    _row(grid, "duplicates", f"{report.get('duplicates', 0)} (exact "
                 f"{report.get('duplicates_exact', 0)}, after normalising "
                 f"{report.get('duplicates_normalized', 0)})")
    _row(grid, "quarantined", _quarantined(report))
    _row(grid, "residual", _residual_line(report))
    _row(grid, "names", _names(report))
    limits = report.get("scrubber_limits")
    if limits:
        _row(grid, "can still miss", Text("; ".join(limits.get("can_miss", [])), style="yellow"))
        _row(grid, "measured", f"{limits.get('measured')} ({limits.get('details')})")
    undetectable = report.get("undetectable_entities") or []
    if undetectable:
        _row(grid, "not detectable", Text(", ".join(undetectable), style="yellow"))
    if report.get("canaries"):
        _row(grid, "canaries", _canaries(report["canaries"]))
    _row(grid, "pseudonym key", str(report.get("pseudonym_key", "?")))
    _row(grid, "digest", str(report.get("digest")))
    _row(grid, "policy", str(report.get("policy_digest")))
    return Group(grid, Text(""), Text("entities (replaced before storing; residual: found "
                                      "again afterwards)", style="bold"),
                 entity_table(report))


def scrubbed_text(value: str) -> Text:
    """Record text as plain Text with the scrubber's placeholders highlighted."""
    text = Text(value)
    text.highlight_regex(PLACEHOLDER, "bold magenta")
    return text


def _turns(record: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """(role, text) of a chat record, or (field, text) of an Alpaca one."""
    messages = record.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                yield str(message.get("role", "?")), str(message.get("content", ""))
        return
    for key, value in record.items():
        if isinstance(value, str) and value:
            yield key, value


ROLE_STYLES = {"system": "yellow", "user": "cyan", "assistant": "green",
               "instruction": "cyan", "input": "cyan", "output": "green"}


def samples(records: Sequence[Mapping[str, Any]]) -> RenderableType:
    """Scrubbed records, one block each, with chat roles (or Alpaca fields) in colour."""
    if not records:
        return Text("no records in this split")
    parts: list[RenderableType] = []
    for number, record in enumerate(records, 1):
        parts.append(Text(f"record {number}", style="bold underline"))
        table = Table.grid(padding=(0, 2))
        table.add_column(no_wrap=True, min_width=10)
        table.add_column(ratio=1)
        for role, value in _turns(record):
            table.add_row(Text(role, style=f"bold {ROLE_STYLES.get(role, '')}".strip()),
                          scrubbed_text(value))
        parts.extend((table, Text("")))
    return Group(*parts)
