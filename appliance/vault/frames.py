"""The plaintext inside a vault body: JSON lines with split markers (docs/vault-format.md).

    ["appliance-dataset",1,{"dataset_id":ID,"metadata":{...}}]
    ["split","train"]
    [{record}           each split's records form one JSON array, one record per line,
    ,{record}           so a split is parsed with a single json.loads and no copying
    ]
    ["split","eval"]
    []                  (an empty split)
    ["end",{"digest":"sha256:...","eval":M,"train":N}]

Records are stored as compact key-sorted JSON (Python values round-trip exactly) and digested
in their RFC 8785 form, a standard any language can recompute. Compact JSON never holds a
raw newline and records are objects, so a line starting with `["split"` is always a marker
and is found with a byte search. The dataset digest is the
sha256 of the train marker line, each train record as an RFC 8785 canonical JSON line, the
eval marker line and each eval record likewise (the array punctuation is not hashed).
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


def record_lines(record: object, split: str, index: int) -> tuple[bytes, bytes]:
    """One record as (the stored line, the digested line): compact sorted JSON that
    round-trips Python values exactly, and its RFC 8785 (JCS) canonical form. Raises
    DatasetFormatError if it is not a JSON object of JSON values within JCS's domain."""
    import rfc8785

    if not isinstance(record, dict):
        raise DatasetFormatError(f"{split} record {index} is not a JSON object",
                                 hint="every record must be a JSON object")
    try:
        return canonical_json(record) + b"\n", rfc8785.dumps(record) + b"\n"
    except (TypeError, ValueError) as exc:  # CanonicalizationError is a ValueError
        raise DatasetFormatError(f"{split} record {index} cannot be canonicalised: "
                                 f"{type(exc).__name__}",
                                 hint="records must hold only JSON values (strings, numbers "
                                      "within +/-2^53, booleans, null, lists, objects)") from None


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
            line, canonical = record_lines(record, split, count)
            batch += b"[" if count == 1 else b","
            batch += line
            totals._hash.update(canonical)
            if len(batch) >= BATCH_BYTES:
                totals.plaintext_bytes += len(batch)
                yield bytes(batch)
                batch.clear()
        batch += b"]\n" if count else b"[]\n"
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


def digest_of(train: Iterable[dict[str, Any]], eval_: Iterable[dict[str, Any]]) -> str:
    """The dataset digest of records (the definition in the module docstring); equal to
    what `write_dataset` returns for the same records, so an importer can put it in its
    report before writing."""
    digest = hashlib.sha256(TRAIN_MARK)
    for index, record in enumerate(train, 1):
        digest.update(record_lines(record, "train", index)[1])
    digest.update(EVAL_MARK)
    for index, record in enumerate(eval_, 1):
        digest.update(record_lines(record, "eval", index)[1])
    return "sha256:" + digest.hexdigest()


def locate(buf: bytearray) -> Sections:
    """Find the sections of a verified plaintext (its end frame, digest included, is
    authenticated by the AEAD with everything else)."""
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
    # Only marker lines start with `["split"`; the backwards search reads only the (small)
    # eval section.
    eval_mark = buf.rfind(b"\n" + EVAL_MARK, train_at + len(TRAIN_MARK) - 1, end_start) + 1
    if eval_mark <= 0:
        raise _bad()
    return Sections(str(head.get("dataset_id")), dict(head.get("metadata") or {}),
                    (train_at + len(TRAIN_MARK), eval_mark),
                    (eval_mark + len(EVAL_MARK), end_start), summary)


def parse_records(buf: bytearray, span: tuple[int, int]) -> list[dict[str, Any]]:
    """The records of one section: one JSON array, decoded straight from the buffer."""
    start, end = span
    try:
        with memoryview(buf) as view:
            records = json.loads(str(view[start:end], "utf-8"))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise _bad() from None
    if not isinstance(records, list):
        raise _bad()
    return records


def records_of(buf: bytearray, sections: Sections, split: str) -> list[dict[str, Any]]:
    """The records of `split` ("train", "eval" or "all"), checked against the counts."""
    train = parse_records(buf, sections.train) if split in ("train", "all") else []
    eval_ = parse_records(buf, sections.eval) if split in ("eval", "all") else []
    if split in ("train", "all") and len(train) != sections.summary.get("train"):
        raise _bad()
    if split in ("eval", "all") and len(eval_) != sections.summary.get("eval"):
        raise _bad()
    return train + eval_
