#!/usr/bin/env python3
"""Dev sets of other shapes than the shared file and pii_dev/pii_test, labeled by construction.

Five shapes, 120 records each, Faker values from several locales (seeded, reproducible):
legal prose, clinical notes, e-mail signatures, chat in lower case, addresses over several
lines. Written here from scratch (no sentence or value of any evaluation set is used).
Output: tests/data/pii_shapes/<shape>.json in the presidio-research format.

    .venv/bin/python scripts/gen_pii_shapes.py
    .venv/bin/python scripts/gen_pii_shapes.py --seed 7100 --out tests/data/pii_shapes_heldout
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Callable
from pathlib import Path

from faker import Faker

ROOT = Path(__file__).resolve().parents[1]
LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "it_IT", "nl_NL", "es_ES", "pl_PL", "sv_SE"]
N = 120


class Builder:
    """Concatenates literal text and labeled values, recording the spans."""

    def __init__(self) -> None:
        self.text = ""
        self.spans: list[dict[str, object]] = []

    def lit(self, s: str) -> Builder:
        self.text += s
        return self

    def val(self, entity: str, s: str) -> Builder:
        start = len(self.text)
        self.text += s
        self.spans.append({"entity_type": entity, "entity_value": s, "start_position": start,
                           "end_position": len(self.text)})
        return self

    def record(self, lower: bool = False) -> dict[str, object]:
        text = self.text.lower() if lower else self.text
        assert len(text) == len(self.text)
        return {"full_text": text, "spans": self.spans}


def _fake(rng: random.Random) -> Faker:
    fake = Faker(rng.choice(LOCALES))
    fake.seed_instance(rng.randrange(2**31))
    return fake


def _address(fake: Faker, one_line: bool) -> str:
    lines = fake.address().splitlines()
    return ", ".join(lines) if one_line else "\n".join(lines)


def legal(rng: random.Random) -> dict[str, object]:
    f = _fake(rng)
    b = Builder().lit("THIS AGREEMENT is made between ").val("PERSON", f.name())
    b.lit(" (the \"Lessor\"), residing at ").val("STREET_ADDRESS", _address(f, True))
    b.lit(", and ").val("PERSON", f.name()).lit(" (the \"Lessee\"). ")
    choice = rng.randrange(3)
    if choice == 0:
        b.lit("Rent shall be paid by transfer to account ").val("IBAN_CODE", f.iban())
        b.lit(" no later than the fifth day of each month.")
    elif choice == 1:
        b.lit("Notices to the Lessee shall be sent by e-mail to ").val("EMAIL_ADDRESS", f.email())
        b.lit(" or by telephone on ").val("PHONE_NUMBER", f.phone_number()).lit(".")
    else:
        b.lit("Witnessed by ").val("PERSON", f.name()).lit(", Notary Public, who verified "
                                                         "the identity of ")
        b.val("PERSON", f.last_name()).lit(" on the date first written above.")
    return b.record()


def clinical(rng: random.Random) -> dict[str, object]:
    f = _fake(rng)
    b = Builder().lit(rng.choice(["Pt ", "Patient ", "PATIENT: "])).val("PERSON", f.name())
    b.lit(f", {rng.randint(18, 90)}yo, seen in clinic. ")
    choice = rng.randrange(3)
    if choice == 0:
        b.lit("Referred by Dr. ").val("PERSON", f.last_name()).lit(" for chest pain. ")
        b.lit("Lives at ").val("STREET_ADDRESS", _address(f, True)).lit(" with spouse.")
    elif choice == 1:
        us = Faker("en_US")
        us.seed_instance(rng.randrange(2**31))
        b.lit("SSN on file ").val("US_SSN", us.ssn()).lit("; emergency contact ")
        b.val("PERSON", f.first_name()).lit(" (daughter), ").val("PHONE_NUMBER", f.phone_number())
        b.lit(". BP 128/82, HR 74.")
    else:
        b.lit("Discussed results with ").val("PERSON", f.first_name())
        b.lit(". Follow-up with ").val("PERSON", f.name()).lit(" in 2 weeks; portal login "
                                                             "sent to ")
        b.val("EMAIL_ADDRESS", f.email()).lit(".")
    return b.record()


def signature(rng: random.Random) -> dict[str, object]:
    f = _fake(rng)
    b = Builder().lit(rng.choice(["Thanks,\n", "Best regards,\n", "Kind regards\n", "--\n"]))
    b.val("PERSON", f.name()).lit("\n").lit(f.job() + "\n").lit(f.company() + "\n")
    b.val("STREET_ADDRESS", _address(f, False)).lit("\n")
    b.lit(rng.choice(["Tel: ", "T ", "Mobile: ", "Phone "])).val("PHONE_NUMBER", f.phone_number())
    b.lit("\n").val("EMAIL_ADDRESS", f.email())
    if rng.random() < 0.3:
        b.lit("\nVPN gateway ").val("IP_ADDRESS", f.ipv4())
    return b.record()


def chat(rng: random.Random) -> dict[str, object]:
    f = _fake(rng)
    b = Builder()
    choice = rng.randrange(4)
    if choice == 0:
        b.lit("hey ").val("PERSON", f.first_name()).lit(" can u send the file to ")
        b.val("EMAIL_ADDRESS", f.email()).lit(" thx")
    elif choice == 1:
        b.lit("my card ").val("CREDIT_CARD", f.credit_card_number()).lit(" got declined again, ")
        b.lit("name on it is ").val("PERSON", f.name())
    elif choice == 2:
        b.lit("ok so ").val("PERSON", f.first_name()).lit(" said to ring her on ")
        b.val("PHONE_NUMBER", f.phone_number()).lit(" after 6")
    else:
        b.lit("im at ").val("STREET_ADDRESS", _address(f, True)).lit(" now, tell ")
        b.val("PERSON", f.first_name()).lit(" to come over")
    return b.record(lower=True)


def multiline(rng: random.Random) -> dict[str, object]:
    f = _fake(rng)
    b = Builder().lit(rng.choice(["Please ship the order to:\n", "Billing address\n",
                                  "New address for my account:\n\n", "Deliver to\n"]))
    if rng.random() < 0.5:
        b.val("PERSON", f.name()).lit("\n")
    b.val("STREET_ADDRESS", _address(f, False))
    b.lit(rng.choice(["\nThank you.", "\n\nCheers", "", "\nLeave it with the neighbour."]))
    return b.record()


SHAPES: dict[str, Callable[[random.Random], dict[str, object]]] = {
    "legal": legal, "clinical": clinical, "signature": signature, "chat_lower": chat,
    "multiline_address": multiline}


def main() -> int:
    """Write every shape."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=1100, help="first seed (one per shape)")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "pii_shapes")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for i, (name, make) in enumerate(SHAPES.items()):
        rng = random.Random(args.seed + i)
        records = [make(rng) for _ in range(N)]
        (out / f"{name}.json").write_text(json.dumps(records, ensure_ascii=False, indent=1))
        print(f"{name}: {len(records)} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
