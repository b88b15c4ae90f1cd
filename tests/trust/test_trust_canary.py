"""Canary PII planted in every path that records must never reach the log, a checkpoint,
the provenance, a signature or any other file in the home."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from appliance import audit, trust
from appliance.errors import ApplianceError, HomeError
from appliance.service import artifacts
from appliance.service import audit as audit_service

NAME = "Jonathan Quixote"
EMAIL = "jonathan.quixote@example.org"
SSN = "219-09-9999"
CARD = "4111 1111 1111 1111"
PHONE = "(415) 555-0132"
SECRET = "password=Hunter2Hunter2"
CANARIES = [NAME, EMAIL, SSN, CARD, PHONE, SECRET]
# fragments that must not survive in any form
FRAGMENTS = ["Quixote", "quixote@", "219-09-9999", "4111111111111111", "4111 1111",
             "555-0132", "Hunter2Hunter2"]


def _assert_clean(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            text = path.read_bytes().decode("utf-8", "replace")
            for fragment in FRAGMENTS:
                assert fragment not in text, f"{fragment!r} leaked into {path}"
            if path.suffix in (".json", ".sig") and "dsseEnvelope" in text:
                import base64

                payload = base64.b64decode(json.loads(text)["dsseEnvelope"]["payload"]).decode()
                for fragment in FRAGMENTS:
                    assert fragment not in payload, f"{fragment!r} leaked into {path} payload"


def test_canaries_in_fields_keys_numbers_and_nesting_are_redacted(initialised_home):
    """Canaries as values, keys, list items, nested values and a card number as an int."""
    audit.record(initialised_home, "dataset.imported", name=NAME, owner=EMAIL,
                 file=f"/data/{NAME.replace(' ', '_')}_{SSN}.jsonl",
                 contact={"phone": PHONE, EMAIL: "key is an email"},
                 notes=[CARD, SECRET], card_as_int=4111111111111111)
    _assert_clean(initialised_home.root)


def test_canaries_in_exceptions_and_tracebacks_are_redacted(initialised_home):
    """Exception objects, error lines and exc_info tracebacks pass the redaction processor."""
    try:
        raise HomeError(f"cannot read /home/{NAME}/{EMAIL}", where=f"{SSN} {PHONE}")
    except ApplianceError as exc:
        audit.record(initialised_home, "dataset.import", outcome="failed", error=exc,
                     line=exc.line(), exc_info=exc)
    try:
        raise ValueError(f"record {CARD} for {NAME} {SECRET}")
    except ValueError as exc:
        audit.record(initialised_home, "train.failed", outcome="failed", error=exc,
                     exc_info=exc)
    lines = initialised_home.audit_log.read_text().splitlines()
    assert "REDACTED" in lines[-1] and "traceback" in json.loads(lines[-1])
    _assert_clean(initialised_home.root)


def test_canaries_in_artifact_names_and_files_stay_out_of_signatures_and_log(
        initialised_home, passphrase, tmp_path):
    """An artifact directory and files named with canaries: signing, verifying and a
    failed verification leave no canary in the log, provenance or signature files."""
    from appliance.signing import sign_artifact

    artifact = initialised_home.artifacts_dir / f"{NAME} {EMAIL}"
    artifact.mkdir()
    (artifact / "adapter_model.safetensors").write_bytes(os.urandom(64))
    sign_artifact(initialised_home, artifact, passphrase, {"run_id": "run-1"})
    assert artifacts.verify(initialised_home, artifact)["ok"]
    (artifact / f"{NAME}_{SSN}.txt").write_text("x")
    result = artifacts.verify(initialised_home, artifact)
    assert not result["ok"]
    artifacts.verify(initialised_home, tmp_path / f"{PHONE} {CARD}")  # missing directory
    (artifact / f"{NAME}_{SSN}.txt").unlink()
    audit_service.checkpoint_now(initialised_home, passphrase)
    trust.forget(initialised_home)
    _assert_clean(initialised_home.root)
    assert audit_service.verify_home(initialised_home)["ok"]


@pytest.mark.parametrize("canary", CANARIES)
def test_every_canary_alone_is_redacted(initialised_home, canary):
    """Each canary type is caught on its own, inside ordinary text."""
    audit.record(initialised_home, "probe", text=f"value: {canary} end")
    last = json.loads(initialised_home.audit_log.read_text().splitlines()[-1])
    assert canary not in last["text"] and "REDACTED" in last["text"]


def test_cli_paths_with_canaries_leave_nothing_in_the_home(initialised_home, run_cli, tmp_path):
    """The verify and audit commands, given canary paths, record nothing of them."""
    env = {"APPLIANCE_HOME": str(initialised_home.root)}
    missing = tmp_path / f"{NAME} {EMAIL}"
    done = run_cli("verify", str(missing), "--json", env=env)
    assert done.returncode == 1 and json.loads(done.stdout)["ok"] is False
    done = run_cli("audit", "verify", "--anchor", str(tmp_path / f"{SSN}.note"), env=env)
    assert done.returncode == 1
    _assert_clean(initialised_home.root)
    assert sys.executable  # the child ran with this interpreter
