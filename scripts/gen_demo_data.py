#!/usr/bin/env python3
"""Generate the embedded demo dataset: chat and support-ticket records with planted PII and a
few deliberately broken records, as JSONL (seeded, reproducible).

    python scripts/gen_demo_data.py --out appliance/data/demo/dataset.jsonl

The planted identifiers are what `appliance demo` shows being scrubbed; the broken lines
(bad JSON, empty content, wrong schema, a duplicate) show validation with
`intake.on_invalid = "drop"`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from faker import Faker

SYSTEM = "You are a helpful support assistant for Acme Networks."
ISSUES = [
    ("my router keeps dropping the connection every evening",
     "Please restart the router, then update its firmware from the admin page; if drops "
     "continue, we will send a replacement."),
    ("I was charged twice for this month's bill",
     "I'm sorry about that. I have refunded the duplicate charge; it appears within 5 "
     "business days."),
    ("I can't log in to the customer portal",
     "I've sent a password reset link to the address on file. It expires in one hour."),
    ("I need to move my service to a new address",
     "Done: the move is scheduled. A technician will confirm the time by phone."),
    ("the download speed is much lower than my plan",
     "Run a wired speed test; if it stays below 80% of the plan we will open a line check."),
    ("how do I change the Wi-Fi password",
     "Open the admin page, choose Wireless, then Security, and enter a new passphrase."),
]


def _chat(fake: Faker, rng: random.Random) -> dict[str, object]:
    issue, answer = rng.choice(ISSUES)
    name = f"{fake.first_name()} {fake.last_name()}"
    contact = rng.choice([f"my email is {fake.email()}", f"call me on {fake.phone_number()}",
                          f"I live at {fake.street_address()}, {fake.city()}",
                          f"my card {fake.credit_card_number(card_type='visa16')} was used"])
    user = f"Hi, this is {name}. {issue.capitalize()}; {contact}."
    first = name.split(maxsplit=1)[0]
    return {"messages": [{"role": "system", "content": SYSTEM},
                         {"role": "user", "content": user},
                         {"role": "assistant", "content": f"Thanks {first}. {answer}"}]}


def _ticket(fake: Faker, rng: random.Random) -> dict[str, object]:
    issue, answer = rng.choice(ISSUES)
    name = f"{fake.first_name()} {fake.last_name()}"
    user = (f"Ticket #{rng.randrange(10_000, 99_999)} from {name} ({fake.email()}, "
            f"{fake.phone_number()}), account IP {fake.ipv4()}: {issue}.")
    return {"messages": [{"role": "system", "content": SYSTEM},
                         {"role": "user", "content": user},
                         {"role": "assistant", "content": answer}]}


def generate(n: int, seed: int) -> list[str]:
    """`n` good JSONL lines plus a few broken ones, reproducibly."""
    Faker.seed(seed)
    fake = Faker("en_US")
    rng = random.Random(seed)
    lines = [json.dumps(_chat(fake, rng) if rng.random() < 0.6 else _ticket(fake, rng))
             for _ in range(n)]
    broken = ['{"messages": [{"role": "user", "content": "unterminated',
              json.dumps({"messages": [{"role": "user", "content": "   "},
                                       {"role": "assistant", "content": "ok"}]}),
              json.dumps({"prompt": "wrong schema", "completion": "x"}),
              lines[0]]  # an exact duplicate
    for line in broken:
        lines.insert(rng.randrange(len(lines)), line)
    return lines


def main(argv: list[str] | None = None) -> int:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("appliance/data/demo/dataset.jsonl"))
    args = parser.parse_args(argv)
    lines = generate(args.n, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    sys.stdout.write(f"{len(lines)} lines -> {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
