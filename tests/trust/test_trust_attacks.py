"""Attacks by someone who can write the home but does not know the passphrase (SECURITY.md).

Each runs the real command against the attacked home and expects one clear refusal line;
where the protection is `appliance.trust`, the same attack is shown to succeed with the
test-only switch `trust._DISABLED`, so the test can fail.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from appliance import keys, trust
from appliance.audit import logfile, merkle, notes
from appliance.cli.main import main
from appliance.home import Home
from appliance.signing import sign_artifact

FAST_POLICY = Path(__file__).resolve().parent / "fast-policy.toml"
PASSPHRASE = b"correct horse battery staple"
PROVENANCE_INFO = {"run_id": "run-0001", "policy_digest": "sha256:" + "11" * 32,
                   "base_model": {"name": "m", "digest": "sha256:" + "22" * 32},
                   "dataset": {"name": "d", "digest": "sha256:" + "33" * 32},
                   "recipe": {"lora_r": 8}, "seeds": {"torch": 0}}


@pytest.fixture(autouse=True)
def _passphrase_env(passphrase_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator's passphrase file, as $APPLIANCE_PASSPHRASE_FILE."""
    passphrase_file.chmod(0o600)
    monkeypatch.setenv("APPLIANCE_PASSPHRASE_FILE", str(passphrase_file))


def _home(tmp_path: Path, name: str = "home") -> Home:
    from appliance.service.home import init_home

    home = Home(tmp_path / name)
    init_home(home, PASSPHRASE, FAST_POLICY)
    trust.close(home)  # what init's process does at exit
    trust.forget(home)
    return home


def _run(home: Home, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The real command line in this process (so the test-only switch reaches it)."""
    capsys.readouterr()
    try:
        code = main(["--home", str(home.root), *args])
        trust.close(home)  # the exit checkpoint and manifest update of a real process
    finally:
        trust.forget(home)
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def _artifact(home: Home, tmp_path: Path, name: str) -> Path:
    art = home.artifacts_dir / name
    art.mkdir()
    (art / "adapter_model.safetensors").write_bytes(os.urandom(256))
    sign_artifact(home, art, PASSPHRASE, PROVENANCE_INFO)
    trust.close(home)
    trust.forget(home)
    return art


def test_forged_artifact_with_a_swapped_signing_key_is_refused(tmp_path, capsys, monkeypatch):
    """Another home's signing key copied over this one's: its artifacts no longer verify."""
    home, other = _home(tmp_path), _home(tmp_path, "other")
    forged = _artifact(other, tmp_path, "run-forged")
    pem = other.keys_dir / keys.SIGNING_PUBLIC
    (home.keys_dir / keys.SIGNING_PUBLIC).write_bytes(pem.read_bytes())
    code, _, err = _run(home, capsys, "verify", str(forged))
    assert code == 1 and "signing public key" in _one_line(err)
    marker = json.loads(home.marker.read_text())  # also edit the unsigned home.json
    marker["keys"]["signing"] = keys.fingerprint(keys.load_public_pem(pem))
    home.marker.write_text(json.dumps(marker))
    code, _, err = _run(home, capsys, "verify", str(forged))
    assert code == 1 and "signing public key" in _one_line(err)
    code, _, err = _run(home, capsys, "keys", "export", "--out", str(tmp_path / "exp"))
    assert code == 1 and not (tmp_path / "exp").exists()  # never handed to auditors
    monkeypatch.setattr(trust, "_DISABLED", True)
    assert _run(home, capsys, "verify", str(forged))[0] == 0  # the attack, unprotected


def test_trusted_key_is_honoured_on_a_home(tmp_path, capsys):
    """--trusted-key is not ignored on a home: an all-zero pin refuses, the right one passes,
    and without one the report says the trust is unanchored."""
    home = _home(tmp_path)
    art = _artifact(home, tmp_path, "run-0001")
    code, out, _ = _run(home, capsys, "audit", "verify", "--json")
    assert code == 0 and json.loads(out)["trust"] == trust.UNANCHORED
    code, out, _ = _run(home, capsys, "verify", str(art))
    assert code == 0 and trust.UNANCHORED in out
    zero = "sha256:" + "0" * 64
    code, out, err = _run(home, capsys, "audit", "verify", "--trusted-key", zero)
    assert code == 1 and "not the trusted" in _one_line(err)
    code, out, err = _run(home, capsys, "verify", str(art), "--trusted-key", zero)
    assert code == 1 and "verification failed" in _one_line(err)
    code, out, _ = _run(home, capsys, "keys", "export", "--out", str(tmp_path / "exp"))
    root = tmp_path / "exp" / trust.TRUST_ROOT_FILE
    assert code == 0 and "write these fingerprints down" in out and root.is_file()
    for args in (("audit", "verify", "--json"), ("verify", str(art), "--json")):
        code, out, _ = _run(home, capsys, *args, "--trusted-key", str(root))
        assert code == 0 and json.loads(out)["anchored"] is True, out


def _replace_checkpoint_key_and_resign(home: Home, drop: int) -> None:
    """The attacker's own Ed25519 key, home.json edited, entries dropped, history re-signed,
    and the manifest re-signed with the new key (its MAC cannot be redone)."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from appliance import manifest

    new = ed25519.Ed25519PrivateKey.generate()
    fp = keys.fingerprint(new.public_key())
    (home.keys_dir / keys.CHECKPOINT_PUBLIC).write_bytes(keys.public_pem(new.public_key()))
    marker = json.loads(home.marker.read_text())
    marker["keys"]["checkpoint"] = fp
    home.marker.write_text(json.dumps(marker))
    lines = home.audit_log.read_bytes().splitlines(keepends=True)
    home.audit_log.write_bytes(b"".join(lines[:-drop]))
    for note in logfile.checkpoints_dir(home).iterdir():
        note.unlink()
    kept = [line.rstrip(b"\n") for line in lines[:-drop]]
    cp = notes.Checkpoint(notes.origin_for(fp), len(kept),
                          merkle.root_of([merkle.leaf_hash(x) for x in kept]))
    logfile.store_note(home, cp.size, notes.sign(cp, new))
    sealed = manifest.read(home)
    body = sealed.body
    body.checkpoint_key, body.checkpoint_size = fp, cp.size
    doc = json.loads(manifest.path_of(home).read_text())
    doc["body"]["checkpoint_key"], doc["body"]["checkpoint_size"] = fp, cp.size
    import base64

    doc["signature"] = base64.b64encode(new.sign(manifest.SIGNED_PREFIX + body.canonical())
                                        ).decode()
    manifest.path_of(home).write_text(json.dumps(doc))


def test_rewritten_audit_log_under_a_new_key_is_refused(tmp_path, capsys, monkeypatch):
    """New checkpoint key + home.json + manifest signature: a pinned verifier refuses, and
    so does every command holding the passphrase (the manifest's MAC)."""
    home = _home(tmp_path)
    trusted = keys.fingerprint(keys.checkpoint_public_key(home))
    for _ in range(4):
        _run(home, capsys, "audit", "verify")
    _run(home, capsys, "audit", "checkpoint")
    _replace_checkpoint_key_and_resign(home, drop=2)
    code, out, _ = _run(home, capsys, "audit", "verify", "--json")
    assert code == 0 and json.loads(out)["trust"] == trust.UNANCHORED  # said, not hidden
    code, _, err = _run(home, capsys, "audit", "verify", "--trusted-key", trusted)
    assert code == 1 and "not the trusted" in _one_line(err)
    code, _, err = _run(home, capsys, "audit", "checkpoint")
    assert code == 1 and "rewritten outside the appliance" in _one_line(err)
    monkeypatch.setattr(trust, "_DISABLED", True)
    assert _run(home, capsys, "audit", "checkpoint")[0] == 0  # the attack, unprotected


def test_edited_entry_with_fixed_links_and_deleted_notes_is_refused(tmp_path, capsys,
                                                                      monkeypatch):
    """Edit a covered entry, recompute every prev link, delete the notes: refused, because
    the signed manifest records the newest checkpoint's size."""
    home = _home(tmp_path)
    _run(home, capsys, "audit", "checkpoint")
    entries = [json.loads(x) for x in home.audit_log.read_text().splitlines()]
    entries[0]["policy_digest"] = "sha256:" + "ab" * 32
    prev, out = logfile.GENESIS_PREV, []
    for entry in entries:
        entry["prev"] = prev
        line = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
        prev = merkle.leaf_hash(line).hex()
        out.append(line)
    home.audit_log.write_bytes(b"\n".join(out) + b"\n")
    for note in logfile.checkpoints_dir(home).iterdir():
        note.unlink()
    code, _, err = _run(home, capsys, "audit", "verify")
    assert code == 1 and "deleted or rolled back" in _one_line(err)
    code, _, err = _run(home, capsys, "audit", "checkpoint")
    assert code == 1 and "deleted or rolled back" in _one_line(err)
    monkeypatch.setattr(trust, "_DISABLED", True)
    assert _run(home, capsys, "audit", "checkpoint")[0] == 0  # the attack, unprotected


def test_a_command_holding_the_passphrase_leaves_nothing_uncovered(tmp_path, capsys,
                                                                  monkeypatch):
    """Every command that unseals the master key signs a checkpoint at exit."""
    home = _home(tmp_path)
    for _ in range(2):
        _run(home, capsys, "dataset", "list")
    code, _, _ = _run(home, capsys, "policy", "apply", str(FAST_POLICY))
    assert code == 0
    code, out, _ = _run(home, capsys, "audit", "verify", "--json")
    assert code == 0 and json.loads(out)["uncovered"] == 0


def test_swapped_active_policy_is_refused_until_applied(tmp_path, capsys, monkeypatch):
    """A look-alike policy (same name, no PII entities) is refused by every command, with
    the way to apply it properly; `policy apply` then records both digests."""
    home = _home(tmp_path)
    text = FAST_POLICY.read_text()
    lookalike = text + "\n[pii]\nentities = [\"URL\"]\n[pii.operators]\n"  # no cards, no e-mail
    old = trust.active_digest(home)
    home.policy_file.write_text(lookalike)
    assert trust.active_digest(home) != old
    for args in (("dataset", "list"), ("model", "list"), ("audit", "verify"),
                 ("dataset", "import", str(tmp_path / "x.jsonl"), "--name", "x")):
        code, _, err = _run(home, capsys, *args)
        assert code == 1 and "policy apply" in _one_line(err), args
    code, out, _ = _run(home, capsys, "doctor", "--json")
    assert code == 1 and not next(c for c in json.loads(out)["checks"]
                                  if c["name"] == "home")["ok"]
    candidate = tmp_path / "new.toml"
    candidate.write_text(lookalike)
    code, out, _ = _run(home, capsys, "policy", "apply", str(candidate))
    assert code == 0 and f"{old} -> " in out and "edited by hand" in out
    applied = [json.loads(x) for x in home.audit_log.read_text().splitlines()
               if '"policy.applied"' in x]
    assert applied[-1]["old_digest"] == old
    assert applied[-1]["new_digest"] == trust.active_digest(home)
    assert _run(home, capsys, "dataset", "list")[0] == 0
    home.policy_file.write_text(text)
    monkeypatch.setattr(trust, "_DISABLED", True)
    assert _run(home, capsys, "dataset", "list")[0] == 0  # the attack, unprotected


def test_open_home_keys_or_policy_directories_are_refused(tmp_path, capsys, passphrase_file):
    """init tightens an existing 0777 directory to 0700; a group/world-writable home, keys/
    or policy/ is refused by every command with the chmod that fixes it."""
    from appliance.service.home import init_home

    root = tmp_path / "open"
    root.mkdir()
    root.chmod(0o777)
    init_home(Home(root), PASSPHRASE, FAST_POLICY)
    trust.forget(Home(root))
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    home = Home(root)
    for path in (home.root, home.keys_dir, home.policy_file.parent):
        path.chmod(0o777)
        code, _, err = _run(home, capsys, "dataset", "list")
        assert code == 1 and f"chmod go-w {path}" in _one_line(err)
        path.chmod(0o700)
    assert _run(home, capsys, "dataset", "list")[0] == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory away needs root")
def test_init_refuses_a_home_directory_owned_by_another_user(tmp_path):
    """A directory someone else owns (and so can replace keys in) is not a home."""
    from appliance.errors import HomeError
    from appliance.service.home import init_home

    root = tmp_path / "theirs"
    root.mkdir(mode=0o700)
    os.chown(root, 65534, 65534)
    with pytest.raises(HomeError, match="belongs to another user"):
        init_home(Home(root), PASSPHRASE, FAST_POLICY)
    assert not any(root.iterdir())


def test_check_then_use_swap_does_not_reach_the_user(tmp_path):
    """The verified copy is what callers read: swapping the original after verification
    changes nothing they see."""
    from appliance.service.artifacts import verified_copy

    home = _home(tmp_path)
    art = _artifact(home, tmp_path, "run-0001")
    signed = (art / "adapter_model.safetensors").read_bytes()
    with verified_copy(home, art) as (copy, result):
        (art / "adapter_model.safetensors").write_bytes(b"swapped after verification")
        assert result["ok"] and copy != art
        assert (copy / "adapter_model.safetensors").read_bytes() == signed
    trust.forget(home)
    (art / "link").symlink_to(art / "adapter_model.safetensors")
    from appliance.errors import IntegrityError

    with pytest.raises(IntegrityError, match="symbolic link"), verified_copy(home, art):
        pass


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real (tiny, random) Llama model saved by transformers as safetensors."""
    from transformers import LlamaConfig, LlamaForCausalLM

    source = tmp_path_factory.mktemp("model") / "tiny"
    LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                 num_hidden_layers=1, num_attention_heads=2,
                                 num_key_value_heads=1)).save_pretrained(source)
    return source


def test_swapped_base_model_weights_and_record_are_refused(tmp_path, capsys, monkeypatch,
                                                           tiny_model):
    """Converted weights edited and model.json rewritten to match: the manifest's recorded
    root digest refuses every command holding the passphrase (training among them)."""
    from appliance.digests import root_digest, tree_manifest
    from appliance.models import store

    home = _home(tmp_path)
    code, out, err = _run(home, capsys, "model", "import", str(tiny_model), "--name", "tiny",
                          "--json")
    assert code == 0 and json.loads(out)["recorded"] is True, err
    record = store.read_record(home, "tiny")
    weights = record.weights_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    doc = json.loads((record.path / store.MANIFEST).read_text())
    files = dict(tree_manifest(record.weights_dir))
    doc.update(files=files, root_digest=root_digest(tree_manifest(record.weights_dir)))
    (record.path / store.MANIFEST).write_text(json.dumps(doc))
    store.verify_weights(store.read_record(home, "tiny"))  # the old pre-training check passes
    code, _, err = _run(home, capsys, "audit", "checkpoint")
    assert code == 1 and "base model 'tiny'" in _one_line(err)
    monkeypatch.setattr(trust, "_DISABLED", True)
    assert _run(home, capsys, "audit", "checkpoint")[0] == 0  # the attack, unprotected


def _tamper_weights(home: Home, name: str) -> None:
    """Edit the converted weights and rewrite model.json to match (source digest kept)."""
    from appliance.digests import root_digest, tree_manifest
    from appliance.models import store

    record = store.read_record(home, name)
    weights = record.weights_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    doc = json.loads((record.path / store.MANIFEST).read_text())
    doc.update(files=dict(tree_manifest(record.weights_dir)),
               root_digest=root_digest(tree_manifest(record.weights_dir)))
    (record.path / store.MANIFEST).write_text(json.dumps(doc))


def test_training_refuses_weights_no_authenticated_record_names(tmp_path, capsys,
                                                                 monkeypatch, tiny_model):
    """A model the policy allows by its source digest, imported without the passphrase and
    then swapped (weights and model.json): `train` refuses the weights, which nothing
    authenticated names; a model imported with the passphrase is recorded and accepted."""
    from appliance import manifest
    from appliance.models import store
    from appliance.policy import load_policy

    home = _home(tmp_path)
    monkeypatch.delenv("APPLIANCE_PASSPHRASE_FILE")
    code, out, err = _run(home, capsys, "model", "import", str(tiny_model), "--name", "tiny",
                          "--json")
    assert code == 0 and json.loads(out)["recorded"] is False
    assert "not recorded in the home manifest" in _one_line(err)
    monkeypatch.setenv("APPLIANCE_PASSPHRASE_FILE", str(tmp_path / "passphrase"))
    source = store.read_record(home, "tiny").source_digest
    policy = tmp_path / "allow.toml"
    policy.write_text(FAST_POLICY.read_text() + f'\n[[models.allowed]]\nname = "tiny"\n'
                      f'digest = "{source}"\n')
    assert _run(home, capsys, "policy", "apply", str(policy))[0] == 0
    _dataset(home)
    _tamper_weights(home, "tiny")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('base_model = "tiny"\ndataset = "ds"\n'
                      '[lora]\ntarget_modules = ["q_proj"]\n')
    code, _, err = _run(home, capsys, "train", str(recipe))
    assert code == 1 and "no authenticated record names its converted weights" in _one_line(err)
    assert _run(home, capsys, "model", "import", str(tiny_model), "--name", "tiny2")[0] == 0
    record = store.read_record(home, "tiny2")
    recorded = manifest.read(home).body.models["tiny2"]
    assert recorded["root_digest"] == record.root_digest
    store.require_pinned(load_policy(home.policy_file), record, recorded)  # accepted


def _dataset(home: Home) -> None:
    from appliance.policy import load_policy
    from appliance.vault.store import write_dataset

    chat = {"messages": [{"role": "user", "content": "hi"},
                         {"role": "assistant", "content": "hello"}]}
    policy = load_policy(home.policy_file)
    write_dataset(home, policy, trust.unlock(home, PASSPHRASE, policy), "ds", [chat] * 4,
                  [chat], {})
    trust.close(home)
    trust.forget(home)


def test_a_home_recording_the_earlier_digest_form_opens_and_still_refuses_an_edit(
        tmp_path, capsys):
    """A manifest that records the digest earlier builds computed (every default filled
    in) is accepted after the upgrade, and a hand edit of the policy is still refused."""
    from appliance.policy import legacy_digest, load_policy

    home = _home(tmp_path)
    policy = load_policy(home.policy_file)
    assert legacy_digest(policy) != trust.active_digest(home)
    trust.unlock(home, PASSPHRASE, policy)
    trust.update(home, policy_digest=legacy_digest(policy))  # what an earlier build wrote
    trust.close(home)
    trust.forget(home)
    assert _run(home, capsys, "dataset", "list")[0] == 0
    code, _, _ = _run(home, capsys, "audit", "verify")
    assert code == 0
    home.policy_file.write_text(home.policy_file.read_text()
                                + "\n[pii]\nentities = [\"URL\"]\n[pii.operators]\n")
    code, _, err = _run(home, capsys, "dataset", "list")
    assert code == 1 and "policy apply" in _one_line(err), err
