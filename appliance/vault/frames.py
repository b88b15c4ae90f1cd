"""The plaintext inside a vault body: JSON lines with split markers (docs/vault-format.md).

    ["appliance-dataset",1,{"dataset_id":ID,"metadata":{...}}]
    ["split","train"]
    {record}            one canonical JSON object per line
    ["split","eval"]
    {record}
    ["end",{"digest":"sha256:...","eval":M,"train":N}]

Records are JSON objects, so a line starting with `[` is always a marker, and canonical JSON
never holds a raw newline, so markers are found with a byte search. The dataset digest is the
sha256 of everything from the train marker to the end of the last eval record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from appliance.errors import DatasetFormatError, IntegrityError
from appliance.vault.layout import canonical_json

KIND = "appliance-dataset"
VERSION = 1
TRAIN_MARK = b'["split","train"]\n'
EVAL_MARK = b'["split","eval"]\n'
END_START = b'["end",'
BATCH_BYTES = 1 << 20
SPLITS = ("train", "eval", "all")


@dataclass
class Totals:
    """Counts and digest gathered while framing."""

    train: int = 0
    eval: int = 0
    plaintext_bytes: int = 0
    digest: str = ""
    _hash: Any = field(default_factory=hashlib.sha256, repr=False)


def record_line(record: object, split: str, index: int) -> bytes:
    """One record as a canonical JSON line (DatasetFormatError if it is not a JSON object)."""
    if not isinstance(record, dict):
        raise DatasetFormatError(f"{split} record {index} is not a JSON object",
                                 hint="every record must be a JSON object")
    try:
        return canonical_json(record) + b"\n"
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise DatasetFormatError(f"{split} record {index} is not JSON-serialisable: "
                                 f"{type(exc).__name__}",
                                 hint="records must hold only JSON values") from None


def frame(dataset_id: str, metadata: dict[str, Any], train: Iterable[object],
          eval_: Iterable[object], totals: Totals) -> Iterator[bytes]:
    """Yield the plaintext in batches of about BATCH_BYTES, filling `totals` as it goes."""
    try:
        head = canonical_json([KIND, VERSION, {"dataset_id": dataset_id,
                                               "metadata": metadata}]) + b"\n"
    except (TypeError, ValueError):
        raise DatasetFormatError("the dataset metadata is not JSON-serialisable") from None
    batch = bytearray(head)
    totals.plaintext_bytes = len(head)
    for split, records in (("train", train), ("eval", eval_)):
        mark = TRAIN_MARK if split == "train" else EVAL_MARK
        batch += mark
        totals._hash.update(mark)
        count = 0
        for count, record in enumerate(records, 1):
            line = record_line(record, split, count)
            batch += line
            totals._hash.update(line)
            if len(batch) >= BATCH_BYTES:
                totals.plaintext_bytes += len(batch)
                yield bytes(batch)
                batch.clear()
        setattr(totals, split, count)
    totals.digest = "sha256:" + totals._hash.hexdigest()
    batch += canonical_json(["end", summary_of(totals)]) + b"\n"
    totals.plaintext_bytes += len(batch)
    yield bytes(batch)


def summary_of(totals: Totals) -> dict[str, Any]:
    """The counts and digest, as stored in the end frame and the public trailer."""
    return {"digest": totals.digest, "eval": totals.eval, "train": totals.train}


@dataclass(frozen=True)
class Sections:
    """Where each part of a verified plaintext lies."""

    dataset_id: str
    metadata: dict[str, Any]
    train: tuple[int, int]
    eval: tuple[int, int]
    summary: dict[str, Any]


def _bad() -> IntegrityError:
    return IntegrityError("verification failed")


def locate(buf: bytearray, *, recompute_digest: bool = False) -> Sections:
    """Find the sections of a verified plaintext. The end frame's digest is authenticated
    by the AEAD with everything else; `recompute_digest` also re-hashes the records."""
    first = buf.find(b"\n")
    if first < 0 or not buf.endswith(b"\n"):
        raise _bad()
    try:
        kind, version, head = json.loads(bytes(buf[:first]))
        end_start = buf.rfind(b"\n", 0, len(buf) - 1) + 1
        tag, summary = json.loads(bytes(buf[end_start:]))
    except (ValueError, TypeError):
        raise _bad() from None
    train_at = first + 1
    if (kind, version, tag) != (KIND, VERSION, "end") or not isinstance(head, dict) \
            or not isinstance(summary, dict) \
            or buf[train_at:train_at + len(TRAIN_MARK)] != TRAIN_MARK:
        raise _bad()
    # Records are objects, so the last line that is the eval marker is the only one; the
    # backwards search reads only the (small) eval section.
    eval_mark = buf.rfind(b"\n" + EVAL_MARK, train_at + len(TRAIN_MARK) - 1, end_start) + 1
    if eval_mark <= 0:
        raise _bad()
    if recompute_digest:
        digest = "sha256:" + hashlib.sha256(memoryview(buf)[train_at:end_start]).hexdigest()
        if digest != summary.get("digest"):
            raise _bad()
    return Sections(str(head.get("dataset_id")), dict(head.get("metadata") or {}),
                    (train_at + len(TRAIN_MARK), eval_mark),
                    (eval_mark + len(EVAL_MARK), end_start), summary)


def parse_records(buf: bytearray, span: tuple[int, int]) -> list[dict[str, Any]]:
    """The records in one section, parsed in a single pass."""
    start, end = span
    if end <= start:
        return []
    text = bytes(buf[start:end - 1]).replace(b"\n", b",")
    try:
        records = json.loads(b"[" + text + b"]")
    except ValueError:
        raise _bad() from None
    return list(records)


def records_of(buf: bytearray, sections: Sections, split: str) -> list[dict[str, Any]]:
    """The records of `split` ("train", "eval" or "all"), checked against the counts."""
    train = parse_records(buf, sections.train) if split in ("train", "all") else []
    eval_ = parse_records(buf, sections.eval) if split in ("eval", "all") else []
    if split in ("train", "all") and len(train) != sections.summary.get("train"):
        raise _bad()
    if split in ("eval", "all") and len(eval_) != sections.summary.get("eval"):
        raise _bad()
    return train + eval_
