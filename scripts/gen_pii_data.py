#!/usr/bin/env python3
"""Generate labeled PII sets (presidio-research format) shaped like fine-tuning data.

Records are chat turns, support tickets, clinical-style notes and Alpaca instructions filled
with Faker values; every planted identifier is a gold span. Two template families exist:
`dev` (tune on it) and `test` (held out: different templates, different seed, a broader mix
of English locales for names and addresses; never tune on it).

    python scripts/gen_pii_data.py --set dev --n 600 --seed 1 --out tests/data/pii_dev.json
    python scripts/gen_pii_data.py --set test --n 400 --seed 2 --out tests/data/pii_test.json
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path

from faker import Faker

DEV_TEMPLATES = [
    # chat turns
    "Hi, my name is {PERSON} and I can't log in. My email is {EMAIL_ADDRESS}.",
    "Hello! This is {PERSON}. Could you call me back at {PHONE_NUMBER}? Thanks.",
    "I moved to {STREET_ADDRESS}, {LOCATION} last month, please update my shipping address.",
    "Can you charge my card {CREDIT_CARD} for the renewal? It expires next year.",
    "My SSN is {US_SSN}, I need it for the tax form.",
    "The server at {IP_ADDRESS} keeps rejecting my connection since this morning.",
    "Please wire the refund to {IBAN_CODE}, account holder {PERSON}.",
    "user: what's the status of my order?\nassistant: Could you confirm your phone number?\n"
    "user: sure, it's {PHONE_NUMBER}",
    "Write a polite reply to {PERSON} who complained that the parcel sent to {STREET_ADDRESS}"
    " never arrived.",
    # support tickets
    "Ticket #{NUM}: Customer {PERSON} ({EMAIL_ADDRESS}) reports a failed payment with card "
    "ending {CARD4}. Callback: {PHONE_NUMBER}.",
    "Ticket #{NUM} - login failures from {IP_ADDRESS}. Account owner: {PERSON}.",
    "Escalation: {PERSON} says the technician never came to {STREET_ADDRESS}. Reach her at "
    "{PHONE_NUMBER} or {EMAIL_ADDRESS}.",
    "Identity check for {PERSON}: driver's license {US_DRIVER_LICENSE}, SSN {US_SSN}.",
    "Refund approved for {PERSON}; IBAN {IBAN_CODE}. Notify by email ({EMAIL_ADDRESS}).",
    # clinical-style notes
    "Patient {PERSON}, seen today for follow-up. Lives at {STREET_ADDRESS}, {LOCATION}. "
    "Contact: {PHONE_NUMBER}.",
    "Pt: {PERSON}. SSN {US_SSN}. Referred by Dr. {PERSON}. BP stable, continue current meds.",
    "Discharge summary for {PERSON}. Emergency contact {PERSON}, tel. {PHONE_NUMBER}.",
    "Mr. {PERSON} reports chest pain since Tuesday. Insurance card {CREDIT_CARD} on file.",
    # Alpaca instructions
    "Summarise this message from {PERSON}: 'Please send the contract to {EMAIL_ADDRESS} "
    "before Friday.'",
    "Extract the phone number from: 'Call {PERSON} on {PHONE_NUMBER} after 5pm.'",
    "Translate to French: My address is {STREET_ADDRESS}.",
    "Classify the sentiment: '{PERSON} was extremely helpful on the phone today.'",
    "Draft an email to {PERSON} confirming the meeting; cc {EMAIL_ADDRESS}.",
    "Explain why the login from {IP_ADDRESS} was blocked for user {PERSON}.",
]

TEST_TEMPLATES = [
    # chat turns
    "hey there, {PERSON} here. reach me on {PHONE_NUMBER} whenever you get a sec",
    "Good morning. I'm writing on behalf of {PERSON}; her mailing address is {STREET_ADDRESS}, "
    "{LOCATION}.",
    "assistant: I can help with that. What's the card number?\nuser: {CREDIT_CARD}",
    "Is it safe to send my social security number ({US_SSN}) over chat?",
    "The VPN assigned me {IP_ADDRESS} but nothing loads. — {PERSON}",
    "I'd like to update the payout account to {IBAN_CODE} please.",
    "You can email {EMAIL_ADDRESS} or ring {PHONE_NUMBER}, ask for {PERSON}.",
    "system: You are a helpful assistant.\nuser: Remind me what {PERSON} said about the "
    "invoice?",
    # support tickets
    "[{NUM}] Subject: Address change\nFrom: {PERSON} <{EMAIL_ADDRESS}>\nNew address: "
    "{STREET_ADDRESS}, {LOCATION}",
    "Case {NUM} opened by {PERSON}. Device IP {IP_ADDRESS}; phone {PHONE_NUMBER}.",
    "Chargeback on {CREDIT_CARD} disputed by cardholder {PERSON}.",
    "KYC documents received: DL# {US_DRIVER_LICENSE}, SSN {US_SSN}, name {PERSON}.",
    "Agent note: spoke to {PERSON} at {PHONE_NUMBER}, will ship to {STREET_ADDRESS}.",
    "Beneficiary {PERSON}, IBAN: {IBAN_CODE}, reference {NUM}.",
    # clinical-style notes
    "HPI: {PERSON} is a patient presenting with headache. Address on file {STREET_ADDRESS}.",
    "Consult requested by {PERSON}, MD. Patient SSN {US_SSN}; phone {PHONE_NUMBER}.",
    "Nursing note: daughter {PERSON} visited; contact at {EMAIL_ADDRESS}.",
    "Mrs. {PERSON} was admitted overnight; next of kin {PERSON} ({PHONE_NUMBER}).",
    # Alpaca instructions
    "Rewrite more formally: 'yo {PERSON}, send the files to {EMAIL_ADDRESS} asap'",
    "Given the note 'Customer {PERSON} lives at {STREET_ADDRESS}', what city is implied?",
    "Fix the grammar: '{PERSON} have went to the store and call {PHONE_NUMBER} later'",
    "Validate this card number format: {CREDIT_CARD}",
    "Write a short bio for {PERSON}, a nurse from {LOCATION}.",
    "Which subnet contains {IP_ADDRESS}? Answer briefly.",
]


def _driver_licence(rng: random.Random) -> str:
    """A US-style driver licence number in one of a few state formats."""
    kind = rng.randrange(4)
    letters = "ABCDEFGHJKLMNPRSTWXYZ"
    if kind == 0:
        return rng.choice(letters) + "".join(str(rng.randrange(10)) for _ in range(7))
    if kind == 1:
        return rng.choice(letters) + "".join(str(rng.randrange(10)) for _ in range(12))
    if kind == 2:
        digits = "".join(str(rng.randrange(10)) for _ in range(12))
        return f"{rng.choice(letters)}{digits[:3]}-{digits[3:7]}-{digits[7:11]}"
    return "".join(str(rng.randrange(10)) for _ in range(9))


def _phone(fake: Faker, rng: random.Random, variant: str) -> str:
    """A phone number in the formats people type."""
    if variant == "test" and rng.random() < 0.3:
        area, mid, last = rng.randrange(201, 990), rng.randrange(200, 999), rng.randrange(10000)
        return rng.choice([f"+1 {area} {mid} {last:04d}", f"{area}-{mid}-{last:04d}",
                           f"+44 20 7{mid} {last:04d}", f"({area}) {mid}-{last:04d}"])
    return str(fake.phone_number())


def _address(fake: Faker) -> str:
    """A street address (one line)."""
    return str(fake.street_address())


def _person(fake: Faker, rng: random.Random, variant: str) -> str:
    """A person's name: mostly first and last, sometimes only one of them."""
    roll = rng.random()
    if roll < (0.7 if variant == "dev" else 0.8):
        return f"{fake.first_name()} {fake.last_name()}"
    if variant == "dev" and roll > 0.85:
        return str(fake.last_name())
    return str(fake.first_name())


def _fillers(fake: Faker, us: Faker, rng: random.Random,
             variant: str) -> dict[str, Callable[[], str]]:
    return {
        "PERSON": lambda: _person(fake, rng, variant),
        "EMAIL_ADDRESS": lambda: str(fake.email()),
        "PHONE_NUMBER": lambda: _phone(fake, rng, variant),
        "STREET_ADDRESS": lambda: _address(fake),
        "LOCATION": lambda: str(fake.city()),
        "CREDIT_CARD": lambda: str(us.credit_card_number(
            card_type=rng.choice(["visa16", "mastercard", "amex", "discover"]))),
        "US_SSN": lambda: str(us.ssn()),
        "IP_ADDRESS": lambda: str(fake.ipv4() if rng.random() < 0.8 else fake.ipv6()),
        "IBAN_CODE": lambda: str(fake.iban()),
        "US_DRIVER_LICENSE": lambda: _driver_licence(rng),
    }


def generate(variant: str, n: int, seed: int) -> list[dict[str, object]]:
    """`n` labeled records from the `variant` template family, reproducibly from `seed`."""
    templates = DEV_TEMPLATES if variant == "dev" else TEST_TEMPLATES
    locales = ["en_US", "en_GB", "en_CA", "en_AU"]
    Faker.seed(seed)
    fake = Faker(locales)
    rng = random.Random(seed)
    fill = _fillers(fake, fake["en_US"], rng, variant)
    records: list[dict[str, object]] = []
    for _ in range(n):
        template = rng.choice(templates)
        text, spans, pos = [], [], 0
        for part in re.split(r"(\{[A-Z_0-9]+\})", template):
            if part.startswith("{") and part.endswith("}"):
                key = part[1:-1]
                if key == "NUM":
                    value = str(rng.randrange(10_000, 999_999))
                elif key == "CARD4":
                    value = f"{rng.randrange(10_000):04d}"
                else:
                    value = fill[key]().replace("\n", ", ")
                    spans.append({"entity_type": key, "entity_value": value,
                                  "start_position": pos, "end_position": pos + len(value)})
                text.append(value)
                pos += len(value)
            else:
                text.append(part)
                pos += len(part)
        records.append({"full_text": "".join(text), "spans": spans})
    return records


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=["dev", "test"], required=True)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    records = generate(args.set, args.n, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n")
    sys.stdout.write(f"{len(records)} records -> {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
