"""Intake: reading, validation, shape detection, deduplication, split."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.errors import DatasetFormatError
from appliance.intake.dedupe import dedupe
from appliance.intake.reader import read_items
from appliance.intake.split import eval_indices
from appliance.intake.validate import validate

ALPACA = {"instruction": "Say hi", "input": "", "output": "Hi"}
CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}


def _jsonl(tmp_path: Path, lines: list[object | bytes]) -> Path:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\n".join(x if isinstance(x, bytes) else json.dumps(x).encode()
                                for x in lines) + b"\n")
    return path


def test_reader_reports_each_bad_line_with_its_number(tmp_path: Path) -> None:
    """Bad JSON, invalid UTF-8 and oversize records are kept as problems with line numbers."""
    path = _jsonl(tmp_path, [ALPACA, b"{not json", b'{"instruction": "\xff\xfe"}',
                             {"instruction": "x" * 500, "output": "y"}])
    kind, items = read_items(path, max_record_bytes=200)
    assert kind == "jsonl"
    problems = {i.line: i.problem for i in items}
    assert problems[1] is None
    assert problems[2] is not None and problems[2].startswith("bad JSON")
    assert problems[3] is not None and "invalid UTF-8" in problems[3]
    assert problems[4] is not None and "exceeds the limit" in problems[4]


def test_reader_reads_a_json_array(tmp_path: Path) -> None:
    """A JSON array file yields one item per element, numbered from 1."""
    path = tmp_path / "data.json"
    path.write_text(json.dumps([ALPACA, CHAT]))
    kind, items = read_items(path, 10_000)
    assert kind == "json" and [i.line for i in items] == [1, 2]


@pytest.mark.parametrize("content", [b"", b"  \n", b"[1, 2"])
def test_reader_refuses_unreadable_files(tmp_path: Path, content: bytes) -> None:
    """Empty files and malformed JSON arrays are refused as a whole."""
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(DatasetFormatError):
        read_items(path, 10_000)


def test_validation_reasons_and_canonical_records(tmp_path: Path) -> None:
    """Wrong schema and empty content are rejected with reasons; valid ones kept."""
    path = _jsonl(tmp_path, [ALPACA, {"instruction": "  ", "output": "x"},
                             {"prompt": "x"}, {"instruction": "a", "output": 3},
                             {**ALPACA, "id": 7}])
    _, items = read_items(path, 10_000)
    checked = validate(items, where=str(path))
    assert checked.shape == "alpaca"
    assert [r.line for r in checked.records] == [1, 5]
    assert dict(checked.rejected).keys() == {2, 3, 4}
    assert "empty content" in dict(checked.rejected)[2]
    assert checked.ignored_keys == {"id"}
    assert checked.reasons() == {"empty content": 1, "wrong schema": 2}


def test_chat_validation_requires_roles_and_an_assistant_turn(tmp_path: Path) -> None:
    """Unknown roles and chats without an assistant message are rejected."""
    bad_role = {"messages": [{"role": "bot", "content": "x"}]}
    no_assistant = {"messages": [{"role": "user", "content": "x"}]}
    path = _jsonl(tmp_path, [CHAT, bad_role, no_assistant])
    _, items = read_items(path, 10_000)
    checked = validate(items, where=str(path))
    assert checked.shape == "chat" and len(checked.records) == 1
    assert len(checked.rejected) == 2


def test_mixed_shapes_are_refused_naming_lines(tmp_path: Path) -> None:
    """A file mixing Alpaca and chat records is refused with the lines of each shape."""
    path = _jsonl(tmp_path, [ALPACA, CHAT, ALPACA])
    _, items = read_items(path, 10_000)
    with pytest.raises(DatasetFormatError) as info:
        validate(items, where=str(path))
    assert "alpaca at line 1, 3" in info.value.message and "chat at line 2" in info.value.message
    assert info.value.exit_code == 2


def test_dedupe_counts_exact_and_normalized(tmp_path: Path) -> None:
    """Exact copies and white-space/case variants are removed and counted separately."""
    variant = {"instruction": "say  HI", "input": "", "output": "hi"}
    path = _jsonl(tmp_path, [ALPACA, ALPACA, variant, {**ALPACA, "output": "Bye"}])
    _, items = read_items(path, 10_000)
    records = validate(items, where="x").records
    normalized = dedupe(records, "normalized")
    assert (len(normalized.records), normalized.exact, normalized.normalized) == (2, 1, 1)
    exact = dedupe(records, "exact")
    assert (len(exact.records), exact.exact, exact.normalized) == (3, 1, 0)


def test_split_is_deterministic_seeded_and_order_independent() -> None:
    """The same keys and seed give the same eval set in any order; another seed differs."""
    keys = [bytes([i]) * 32 for i in range(100)]
    first = eval_indices(keys, 0.1, seed=0)
    assert len(first) == 10
    again = eval_indices(list(reversed(keys)), 0.1, seed=0)
    assert {keys[i] for i in first} == {list(reversed(keys))[i] for i in again}
    assert eval_indices(keys, 0.1, seed=1) != first
    assert eval_indices(keys[:1], 0.1, seed=0) == set()
    assert len(eval_indices(keys[:3], 0.1, seed=0)) == 1
