"""`appliance privacy-check` refuses what does not verify, before any parser opens a file;
the privacy result rides in the signed provenance and comes back from verification."""

from __future__ import annotations

from pathlib import Path

from appliance.home import Home
from tests.trust.conftest import FAST_POLICY, PASSPHRASE, initialised_home, passphrase

__all__ = ["initialised_home", "passphrase"]

PRIVACY = {"verdict": "pass", "candidates": 31, "method": "exposure",
           "test": {"name": "mann-whitney-u", "p_value": 0.42, "u": 30.0},
           "groups": {"planted": {"n": 9, "mean": 1.3}}, "extraction": {"hits": 0},
           "threshold": {"max_exposure_bits": 3.0}}


def _artifact(home: Home, name: str, info: dict) -> Path:  # type: ignore[type-arg]
    from appliance.signing import sign_artifact

    root = home.artifacts_dir / name
    root.mkdir(parents=True)
    (root / "adapter_config.json").write_text('{"r": 8}\n')
    (root / "adapter_model.safetensors").write_bytes(b"not really weights")
    sign_artifact(home, root, PASSPHRASE, info)
    return root


def test_privacy_result_is_a_signed_provenance_byproduct(initialised_home):
    """The privacy section is signed with the provenance and verify returns its numbers."""
    from appliance.service.artifacts import trusted_keys
    from appliance.signing import verify_artifact

    root = _artifact(initialised_home, "run-p", {"run_id": "run-p", "privacy": PRIVACY})
    result = verify_artifact(root, trusted_keys(initialised_home))
    assert result.ok, result.reason
    assert result.provenance["privacy"]["verdict"] == "pass"
    assert result.provenance["privacy"]["test"]["p_value"] == 0.42


def test_privacy_check_refuses_a_tampered_artifact(initialised_home, run_cli, tmp_path):
    """A changed adapter fails verification: exit 1, one line, nothing measured."""
    root = _artifact(initialised_home, "run-t", {"run_id": "run-t"})
    (root / "adapter_model.safetensors").write_bytes(b"swapped")
    done = run_cli("privacy-check", str(root), "--home", str(initialised_home.root))
    assert done.returncode == 1
    assert "does not verify" in done.stderr and "changed since signing" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert '"privacy.check"' in initialised_home.audit_log.read_text() or \
        "privacy.check" in initialised_home.audit_log.read_text()


def test_privacy_check_needs_training_provenance(initialised_home, run_cli):
    """A verified artifact without a dataset and base model in its provenance: exit 1."""
    root = _artifact(initialised_home, "run-n", {"run_id": "run-n"})
    done = run_cli("privacy-check", str(root), "--home", str(initialised_home.root))
    assert done.returncode == 1 and "no usable training provenance" in done.stderr
    last = [line for line in initialised_home.audit_log.read_text().splitlines()
            if "privacy.check" in line][-1]
    assert "refused" in last and "SigningError" in last


def test_privacy_check_on_a_missing_directory_is_one_line(initialised_home, run_cli, tmp_path):
    """A path that is not an artifact directory: exit 1 and one line."""
    done = run_cli("privacy-check", str(tmp_path / "nope"), "--home",
                   str(initialised_home.root))
    assert done.returncode == 1 and "not an artifact directory" in done.stderr
    assert FAST_POLICY.is_file()
