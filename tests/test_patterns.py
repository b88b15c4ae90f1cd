"""The pure-regex catalogue shared by audit redaction and the scrubber."""

from __future__ import annotations

import hashlib

import pytest

from appliance.patterns import find, luhn_ok, redact

AUDIT_VALUES = [
    "sha256:" + hashlib.sha256(b"x").hexdigest(),
    "sha256:" + "1234567890" * 6 + "abcd",
    "run-20261122-061206-3f9a1c", "20261122T081206Z-3f9a1c",
    "sha256:" + "ab" + "4111111111111111" + "cd" * 23, "size_1234567890123",
    "/root/.local/share/appliance/artifacts/run-20261122-061206/adapter.safetensors",
    "2026-11-22T06:12:06.358675+00:00",
    "dataset.import", "smollm2-135m-instruct", "records_out=300 eval=45",
]


@pytest.mark.parametrize("value", AUDIT_VALUES)
def test_audit_values_survive(value: str) -> None:
    """Digests, run ids, paths and timestamps are not mistaken for PII."""
    assert redact(value) == value


@pytest.mark.parametrize(("text", "entity"), [
    ("card 4111 1111 1111 1111 ok", "CREDIT_CARD"),
    ("mail jo.lee@example.org now", "EMAIL_ADDRESS"),
    ("ssn 123-45-6789", "US_SSN"),
    ("key AKIAIOSFODNN7EXAMPLE", "SECRET"),
    ("password: hunter22", "PASSWORD"),
    ("db postgres://admin:s3cret@db.internal/prod", "SECRET"),
    ("call 001-598-305-0234x31655", "PHONE_NUMBER"),
    ("iban GB82 WEST 1234 5698 7654 32", "IBAN_CODE"),
    ("from 192.168.10.4", "IP_ADDRESS"),
    ("patient_id_219-09-9999", "US_SSN"),
    ("card_4111111111111111", "CREDIT_CARD"),
    ("ref 12 4111 1111 1111 1111 today", "CREDIT_CARD"),
    ("order 99 4111111111111111", "CREDIT_CARD"),
])
def test_identifiers_and_secrets_are_found(text: str, entity: str) -> None:
    """Each planted identifier is found and redacted."""
    assert entity in {s.entity for s in find(text)}
    assert "[REDACTED:" in redact(text)


def test_luhn() -> None:
    """The Luhn check accepts valid card numbers and rejects one-digit changes."""
    assert luhn_ok("4111 1111 1111 1111") and not luhn_ok("4111 1111 1111 1112")
    assert not luhn_ok("4111")


def test_card_after_other_digits_redacts_the_card_itself() -> None:
    """A card written after other digits is found as the card, not lost with them."""
    text = "ref 12 4111 1111 1111 1111 today"
    spans = [s for s in find(text) if s.entity == "CREDIT_CARD"]
    assert [text[s.start:s.end] for s in spans] == ["4111 1111 1111 1111"]
    assert "4111" not in redact(text)
