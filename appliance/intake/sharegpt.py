"""ShareGPT records (`{"conversations": [{"from": "human", "value": ...}, ...]}`) mapped to
the appliance's chat shape (`{"messages": [{"role": "user", "content": ...}, ...]}`).

The column names and the speaker names are a `ColumnMap`, so variants (`turns` with
`speaker`/`text`, a `bot` speaker...) import with a mapping instead of a conversion script.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SPEAKERS: Mapping[str, str] = {
    "system": "system", "human": "user", "user": "user", "gpt": "assistant",
    "assistant": "assistant", "chatgpt": "assistant", "model": "assistant",
    "function_call": "assistant", "tool": "tool", "function": "tool",
    "function_response": "tool", "observation": "tool",
}
"""ShareGPT speaker names in the wild and the chat role each becomes (`function_call` is
the assistant calling a tool; `observation`/`function_response` the tool's answer)."""


@dataclass(frozen=True)
class ColumnMap:
    """Where a ShareGPT-like record keeps its turns, and how speakers map to roles."""

    turns: str = "conversations"
    speaker: str = "from"
    text: str = "value"
    speakers: Mapping[str, str] = field(default_factory=lambda: dict(SPEAKERS))


DEFAULT = ColumnMap()


def applies(value: Any, columns: ColumnMap = DEFAULT) -> bool:
    """True for an object holding the mapped turns column and no `messages`."""
    return isinstance(value, dict) and columns.turns in value and "messages" not in value


def to_chat(value: dict[str, Any], columns: ColumnMap = DEFAULT) -> dict[str, Any]:
    """The record in chat shape (other keys kept, so they are reported as ignored);
    ValueError naming the turn for a malformed one."""
    turns = value[columns.turns]
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"wrong schema: {columns.turns} must be a non-empty list")
    messages = []
    for i, turn in enumerate(turns):
        where = f"{columns.turns}[{i}]"
        if not isinstance(turn, dict):
            raise ValueError(f"wrong schema: {where} must be an object")
        speaker = turn.get(columns.speaker)
        role = columns.speakers.get(speaker) if isinstance(speaker, str) else None
        if role is None:
            raise ValueError(f"wrong schema: {where}.{columns.speaker} must be one of "
                             f"{', '.join(sorted(columns.speakers))}")
        extra = {k: v for k, v in turn.items() if k not in (columns.speaker, columns.text)}
        messages.append({**extra, "role": role, "content": turn.get(columns.text)})
    rest = {k: v for k, v in value.items() if k != columns.turns}
    return {**rest, "messages": messages}


def parse_columns(spec: str) -> ColumnMap:
    """A ColumnMap from `turns=COL,from=KEY,value=KEY,SPEAKER=ROLE,...` (any subset; the
    rest default). ValueError naming the bad entry."""
    names = {"turns": DEFAULT.turns, "from": DEFAULT.speaker, "value": DEFAULT.text}
    speakers = dict(SPEAKERS)
    roles = {"system", "user", "assistant", "tool"}
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, target = (s.strip() for s in entry.partition("="))
        if not sep or not key or not target:
            raise ValueError(f"column mapping entry {entry!r} is not KEY=VALUE")
        if key in names:
            names[key] = target
        elif target in roles:
            speakers[key] = target
        else:
            raise ValueError(f"column mapping entry {entry!r}: KEY is turns, from or value, "
                             f"or a speaker mapped to one of {', '.join(sorted(roles))}")
    return ColumnMap(names["turns"], names["from"], names["value"], speakers)
