"""Validate raw items as Alpaca or chat records (ShareGPT `conversations` become chat
records, `appliance.intake.sharegpt`), detect the file's shape, refuse mixtures."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from appliance.errors import DatasetFormatError
from appliance.intake import sharegpt
from appliance.intake.reader import RawItem

Shape = Literal["alpaca", "chat"]
ROLES = ("system", "user", "assistant", "tool")
ALPACA_KEYS = ("instruction", "input", "output")


@dataclass(frozen=True)
class Record:
    """One valid record in canonical form, with where it came from."""

    line: int
    shape: Shape
    data: dict[str, Any]

    def texts(self) -> list[str]:
        """The text fields to scrub, in a fixed order."""
        if self.shape == "alpaca":
            return [self.data[k] for k in ALPACA_KEYS]
        return [m["content"] for m in self.data["messages"]]

    def with_texts(self, texts: list[str]) -> dict[str, Any]:
        """The record's canonical form with its text fields replaced (structure kept)."""
        if self.shape == "alpaca":
            return dict(zip(ALPACA_KEYS, texts, strict=True))
        return {"messages": [{"role": m["role"], "content": t}
                             for m, t in zip(self.data["messages"], texts, strict=True)]}


@dataclass
class Validated:
    """Valid records, the rejected ones with reasons, and the keys ignored."""

    shape: Shape | None
    records: list[Record]
    rejected: list[tuple[int, str]] = field(default_factory=list)
    ignored_keys: set[str] = field(default_factory=set)

    def reasons(self) -> dict[str, int]:
        """Rejection counts per reason (reasons carry no record text)."""
        return dict(Counter(_reason_kind(r) for _, r in self.rejected))


def _reason_kind(reason: str) -> str:
    return reason.partition(":")[0].partition(" of ")[0]


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"wrong schema: {what} must be a string")
    if not value.strip():
        raise ValueError(f"empty content: {what} is empty")
    if "\x00" in value:
        raise ValueError(f"wrong schema: {what} contains a NUL character")
    return value


def check(value: Any, columns: sharegpt.ColumnMap = sharegpt.DEFAULT
          ) -> tuple[Shape, dict[str, Any], set[str]]:
    """(shape, canonical record, ignored keys) or ValueError with the reason."""
    if sharegpt.applies(value, columns):
        value = sharegpt.to_chat(value, columns)
    if not isinstance(value, dict):
        raise ValueError(f"wrong schema: expected an object, got {type(value).__name__}")
    if "messages" in value and ("instruction" in value or "output" in value):
        raise ValueError("wrong schema: both chat (messages) and Alpaca keys")
    if "messages" in value:
        messages = value["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError("wrong schema: messages must be a non-empty list")
        out = []
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES:
                raise ValueError(f"wrong schema: messages[{i}].role must be one of "
                                 f"{', '.join(ROLES)}")
            out.append({"role": m["role"], "content": _text(m.get("content"),
                                                            f"messages[{i}].content")})
        if not any(m["role"] == "assistant" for m in out):
            raise ValueError("wrong schema: no assistant message to train on")
        extra = {f"messages[].{k}" for m in messages for k in m if k not in ("role", "content")}
        return "chat", {"messages": out}, extra | (set(value) - {"messages"})
    if "instruction" in value or "output" in value:
        record = {"instruction": _text(value.get("instruction"), "instruction"),
                  "input": value.get("input", "") or "",
                  "output": _text(value.get("output"), "output")}
        if not isinstance(record["input"], str):
            raise ValueError("wrong schema: input must be a string")
        return "alpaca", record, set(value) - set(ALPACA_KEYS)
    raise ValueError("wrong schema: neither Alpaca (instruction, output) nor chat (messages)")


def validate(items: list[RawItem], *, where: str,
             columns: sharegpt.ColumnMap = sharegpt.DEFAULT) -> Validated:
    """Check every item; refuse a file mixing shapes (naming lines of each)."""
    records: list[Record] = []
    rejected: list[tuple[int, str]] = []
    ignored: set[str] = set()
    for item in items:
        if item.problem is not None:
            rejected.append((item.line, item.problem))
            continue
        try:
            shape, data, extra = check(item.value, columns)
        except ValueError as exc:
            rejected.append((item.line, str(exc)))
            continue
        ignored |= extra
        records.append(Record(item.line, shape, data))
    shapes = {r.shape for r in records}
    if len(shapes) > 1:
        lines = {s: [r.line for r in records if r.shape == s][:5] for s in sorted(shapes)}
        detail = "; ".join(f"{s} at line {', '.join(map(str, ls))}" for s, ls in lines.items())
        raise DatasetFormatError(f"the file mixes Alpaca and chat records ({detail}); "
                                 "import each shape as its own dataset", where=where)
    return Validated(next(iter(shapes)) if shapes else None, records, rejected, ignored)
