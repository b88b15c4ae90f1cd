"""The trust commands as docs/interface.md describes them: init, keys, audit, verify."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

FAST_POLICY = Path(__file__).resolve().parent / "fast-policy.toml"


@pytest.fixture
def cli_home(tmp_path, run_cli, passphrase_file):  # type: ignore[no-untyped-def]
    """Runs `appliance init` through the command line; returns (home, env)."""
    home = tmp_path / "home"
    env = {"APPLIANCE_HOME": str(home), "APPLIANCE_PASSPHRASE_FILE": str(passphrase_file)}
    done = run_cli("init", "--policy", str(FAST_POLICY), "--json", env=env)
    assert done.returncode == 0, done.stderr
    return home, env


def test_init_creates_the_contract_layout_and_marker(cli_home):
    """init makes audit/log.jsonl, vault/, artifacts/, sealed keys and a marker written last."""
    home, _ = cli_home
    for path in ("audit/log.jsonl", "vault", "artifacts", "policy/active.toml",
                 "keys/vault-master.sealed.json", "keys/signing-ecdsa-p256.sealed.json",
                 "keys/checkpoint-ed25519.sealed.json", "home.json"):
        assert (home / path).exists(), path
    marker = json.loads((home / "home.json").read_text())
    assert marker["keys"]["signing"].startswith("sha256:") and marker["policy_digest"]
    assert stat.S_IMODE((home / "keys/signing-ecdsa-p256.sealed.json").stat().st_mode) == 0o600
    sealed = json.loads((home / "keys/signing-ecdsa-p256.sealed.json").read_text())
    assert sealed["kdf"] == "argon2id" and sealed["memory_kib"] == 8192
    assert b"PRIVATE KEY" not in (home / "keys/signing-ecdsa-p256.sealed.json").read_bytes()


def test_init_refuses_an_existing_or_partial_home(cli_home, run_cli):
    """A second init, or one over an interrupted init, refuses with exit 1 and one line."""
    home, env = cli_home
    done = run_cli("init", "--policy", str(FAST_POLICY), env=env)
    assert done.returncode == 1 and "already initialised" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    (home / "home.json").unlink()
    done = run_cli("init", "--policy", str(FAST_POLICY), env=env)
    assert done.returncode == 1 and "interrupted" in done.stderr


def test_init_with_a_bad_policy_exits_2_and_writes_nothing(tmp_path, run_cli, passphrase_file):
    """A malformed policy is bad input: exit 2, and the home is not created."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[meta]\nname = "x"\n[audit]\ncheckpoint_interval = 0\n')
    home = tmp_path / "home"
    done = run_cli("--home", str(home), "--passphrase-file", str(passphrase_file), "init",
                   "--policy", str(bad))
    assert done.returncode == 2 and "audit.checkpoint_interval" in done.stderr
    assert not home.exists()


def test_keys_export_writes_pem_with_the_marker_fingerprints(cli_home, run_cli, tmp_path):
    """Exported public keys hash to the fingerprints the marker records."""
    from appliance import keys

    home, env = cli_home
    out = tmp_path / "pub"
    assert run_cli("keys", "export", "--out", str(out), env=env).returncode == 0
    marker = json.loads((home / "home.json").read_text())
    assert keys.fingerprint(keys.load_public_pem(out / keys.SIGNING_PUBLIC)) == \
        marker["keys"]["signing"]
    assert keys.fingerprint(keys.load_public_pem(out / keys.CHECKPOINT_PUBLIC)) == \
        marker["keys"]["checkpoint"]


def test_audit_verify_passes_then_names_the_first_bad_line(cli_home, run_cli):
    """`audit verify` exits 0 on an intact log and 1 naming the line after an edit."""
    home, env = cli_home
    done = run_cli("audit", "verify", env=env)
    assert done.returncode == 0 and "intact" in done.stdout
    log = home / "audit/log.jsonl"
    lines = log.read_bytes().split(b"\n")
    lines[0] = lines[0].replace(b"home.created", b"home.cleared")
    log.write_bytes(b"\n".join(lines))
    done = run_cli("audit", "verify", "--json", env=env)
    assert done.returncode == 1 and json.loads(done.stdout)["first_bad_line"] == 1
    assert "line 1" in done.stderr and "Traceback" not in done.stderr


def test_bundle_and_anchor_round_trip_without_the_home(cli_home, run_cli, tmp_path):
    """An exported bundle and anchor verify with no home; a rolled-back bundle fails."""
    _, env = cli_home
    anchor = tmp_path / "anchor.note"
    assert run_cli("audit", "checkpoint", "--out", str(anchor), env=env).returncode == 0
    bundle = tmp_path / "bundle"
    assert run_cli("audit", "export", "--out", str(bundle), env=env).returncode == 0
    elsewhere = {"APPLIANCE_HOME": str(tmp_path / "nowhere")}
    done = run_cli("audit", "verify", "--bundle", str(bundle), "--anchor", str(anchor),
                   "--json", env=elsewhere)
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["uncovered"] == 0 and report["anchor"]["size"] >= 3
    log = bundle / "log.jsonl"
    log.write_bytes(b"".join(line + b"\n" for line in log.read_bytes().split(b"\n")[:2]))
    for note in (bundle / "checkpoints").iterdir():
        if int(note.name[:12]) > 2:
            note.unlink()
    done = run_cli("audit", "verify", "--bundle", str(bundle), "--anchor", str(anchor),
                   env=elsewhere)
    assert done.returncode == 1 and "rollback" in done.stderr


def test_wrong_passphrase_is_refused_with_exit_1(cli_home, run_cli, tmp_path):
    """Unsealing the checkpoint key with a wrong passphrase fails cleanly."""
    _, env = cli_home
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    done = run_cli("audit", "checkpoint", "--passphrase-file", str(wrong), env=env)
    assert done.returncode == 1 and "wrong passphrase" in done.stderr


def test_verify_command_json_fields_and_exit_codes(cli_home, run_cli):
    """`verify DIR --json` reports the promised fields; exit 0 signed, 1 once altered."""
    from appliance import trust
    from appliance.home import Home
    from appliance.signing import sign_artifact

    home, env = cli_home
    artifact = home / "artifacts" / "run-1"
    artifact.mkdir()
    (artifact / "adapter_model.safetensors").write_bytes(b"\x00" * 128)
    sign_artifact(Home(home), artifact, b"correct horse battery staple", {"run_id": "run-1"})
    trust.forget(Home(home))
    done = run_cli("verify", str(artifact), "--json", env=env)
    result = json.loads(done.stdout)
    assert done.returncode == 0 and result["ok"] is True
    assert result["root_digest"].startswith("sha256:") and result["signer"].startswith("sha256:")
    (artifact / "adapter_model.safetensors").write_bytes(b"\x01" * 128)
    done = run_cli("verify", str(artifact), "--json", env=env)
    result = json.loads(done.stdout)
    assert done.returncode == 1 and result["ok"] is False
    assert "adapter_model.safetensors" in result["reason"]
    actions = [json.loads(x)["action"] for x in (home / "audit/log.jsonl").read_text().splitlines()]
    assert actions.count("artifact.verified") == 2
