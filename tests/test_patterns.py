"""The pure-regex catalogue shared by audit redaction and the scrubber."""

from __future__ import annotations

import hashlib

import pytest

from appliance.patterns import find, luhn_ok, redact

AUDIT_VALUES = [
    "sha256:" + hashlib.sha256(b"x").hexdigest(),
    "sha256:" + "1234567890" * 6 + "abcd",
    "run-20261122-061206-3f9a1c",
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
])
def test_identifiers_and_secrets_are_found(text: str, entity: str) -> None:
    """Each planted identifier is found and redacted."""
    assert entity in {s.entity for s in find(text)}
    assert "[REDACTED:" in redact(text)


def test_luhn() -> None:
    """The Luhn check accepts valid card numbers and rejects one-digit changes."""
    assert luhn_ok("4111 1111 1111 1111") and not luhn_ok("4111 1111 1111 1112")
    assert not luhn_ok("4111")
