"""docs/verifying.md is executable: its DSSE provenance check accepts a signed artifact with
the exported key and refuses a changed file, an added file and another key; the build-type
and builder URIs name documents that exist in the repository."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import keys
from appliance.home import Home
from appliance.signing import PROVENANCE, SIGNATURE, provenance, sign_artifact
from tests.trust.test_trust_signing import PROVENANCE_INFO, _make_adapter

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "verifying.md"


def _script(tmp_path: Path) -> Path:
    text = DOC.read_text()
    block = re.search(r"<!-- check_provenance.py.*?-->\n```python\n(.*?)```", text, re.S)
    assert block, "docs/verifying.md lost its check_provenance.py block"
    path = tmp_path / "check_provenance.py"
    path.write_text(block.group(1))
    return path


def _check(script: Path, artifact: Path, key: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(script), str(artifact), str(key)],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def exported(initialised_home: Home, passphrase: bytes, tmp_path: Path) -> tuple[Path, Path]:
    """A signed artifact and the signing key from `keys export`."""
    artifact = _make_adapter(initialised_home.artifacts_dir / "run-0001")
    sign_artifact(initialised_home, artifact, passphrase, PROVENANCE_INFO)
    keys.export_public(initialised_home, tmp_path)
    return artifact, tmp_path / keys.SIGNING_PUBLIC


def test_provenance_subjects_are_each_file_by_its_sha256(exported: tuple[Path, Path]) -> None:
    """Every content file is a subject with its own sha256 (what sha256sum prints)."""
    import base64
    import hashlib
    import json

    artifact, _ = exported
    bundle = json.loads((artifact / PROVENANCE).read_bytes())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    files = {p.relative_to(artifact).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in artifact.rglob("*") if p.is_file()}
    del files[SIGNATURE], files[PROVENANCE]
    assert subjects == files and "a/b" in subjects


def test_documented_dsse_check_accepts_then_refuses(exported: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    """The doc's script says OK with the exported key; a flipped byte, an added file or
    the key of another home make it fail."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    artifact, key = exported
    script = _script(tmp_path)
    ok = _check(script, artifact, key)
    assert ok.returncode == 0 and ok.stdout.startswith("OK " + provenance.BUILD_TYPE), ok.stderr
    other = tmp_path / "other.pem"
    other.write_bytes(ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    assert _check(script, artifact, other).returncode != 0
    (artifact / "extra.txt").write_text("added\n")
    assert _check(script, artifact, key).returncode != 0
    (artifact / "extra.txt").unlink()
    data = bytearray((artifact / "adapter_config.json").read_bytes())
    data[0] ^= 0x01
    (artifact / "adapter_config.json").write_bytes(bytes(data))
    assert "changed since signing" in _check(script, artifact, key).stderr


def test_build_type_and_builder_uris_name_files_in_the_repository() -> None:
    """The URIs in every statement resolve to documents at the paths they name."""
    from appliance.export.signed import GGUF_BUILD_TYPE, MERGED_BUILD_TYPE

    for uri in (provenance.BUILD_TYPE, provenance.BUILDER_ID, MERGED_BUILD_TYPE,
                GGUF_BUILD_TYPE):
        assert uri.startswith(provenance.DOCS_URI)
        path = REPO / uri.removeprefix(provenance.DOCS_URI)
        assert path.is_file(), uri
        assert uri in path.read_text(), f"{path} does not state its own URI"


def test_artifacts_signed_with_one_root_subject_still_verify(
        initialised_home: Home, passphrase: bytes, exported: tuple[Path, Path]) -> None:
    """An artifact signed before per-file subjects (one subject: the content root digest)
    verifies; the same form with a wrong root digest does not."""
    from appliance.digests import root_digest, tree_manifest
    from appliance.policy import load_policy
    from appliance.service.artifacts import verify
    from appliance.signing import dsse, model_statement

    artifact, _ = exported
    policy = load_policy(initialised_home.policy_file)
    key = keys.load_signing_key(initialised_home, passphrase, policy)
    statement = dsse.open_bundle((artifact / PROVENANCE).read_bytes(), key.public_key())
    content = root_digest(tree_manifest(artifact, exclude=[SIGNATURE, PROVENANCE]))
    for digest, ok in ((content.removeprefix("sha256:"), True), ("00" * 32, False)):
        statement["subject"] = [{"name": artifact.name, "digest": {"sha256": digest}}]
        (artifact / PROVENANCE).write_bytes(dsse.sign_statement(statement, key))
        (artifact / SIGNATURE).unlink()
        (artifact / SIGNATURE).write_bytes(dsse.sign_statement(
            model_statement(artifact.name, tree_manifest(artifact)), key))
        assert verify(initialised_home, artifact)["ok"] is ok
