#!/usr/bin/env python3
"""Hand-written prose dev sets: tests/data/pii_prose/*.txt (inline markup) -> *.json.

Each non-comment line of a .txt file is one record; `\\n` in it is a line break. A labeled
value is written `{TYPE:value}` (TYPE: P person, A street address, T phone, E e-mail,
C card, B IBAN, S US SSN, IP, D US driver licence, L location). The output is the
presidio-research format that `appliance scrub eval` reads. No generator, no list: every
sentence and value was written by hand (see tests/data/pii_prose/README.md).

    .venv/bin/python scripts/build_pii_prose.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIR = ROOT / "tests" / "data" / "pii_prose"
TYPES = {"P": "PERSON", "A": "STREET_ADDRESS", "T": "PHONE_NUMBER", "E": "EMAIL_ADDRESS",
         "C": "CREDIT_CARD", "B": "IBAN_CODE", "S": "US_SSN", "IP": "IP_ADDRESS",
         "D": "US_DRIVER_LICENSE", "L": "LOCATION"}
MARK = re.compile(r"\{(" + "|".join(sorted(TYPES, key=len, reverse=True)) + r"):([^{}]+)\}")


def parse(line: str, where: str) -> dict[str, object]:
    """One marked-up line -> {full_text, spans}."""
    line = line.replace("\\n", "\n")
    text, spans, pos = "", [], 0
    for m in MARK.finditer(line):
        text += line[pos:m.start()]
        start = len(text)
        text += m.group(2)
        spans.append({"entity_type": TYPES[m.group(1)], "entity_value": m.group(2),
                      "start_position": start, "end_position": len(text)})
        pos = m.end()
    text += line[pos:]
    if "{" in text or "}" in text:
        raise SystemExit(f"{where}: unbalanced or unknown markup")
    return {"full_text": text, "spans": spans}


def main() -> int:
    """Write one JSON file per .txt file."""
    for src in sorted(DIR.glob("*.txt")):
        records = [parse(line, f"{src.name}:{i}")
                   for i, line in enumerate(src.read_text(encoding="utf-8").splitlines(), 1)
                   if line.strip() and not line.startswith("#")]
        out = src.with_suffix(".json")
        out.write_text(json.dumps(records, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"{out.relative_to(ROOT)}: {len(records)} records, "
              f"{sum(len(r['spans']) for r in records)} spans")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
