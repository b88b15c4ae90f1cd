"""Signed artifacts: model-signing v1.0 bundles, provenance, and the sign-mutate-verify loop."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance import keys
from appliance.digests import tree_digest
from appliance.errors import SigningError
from appliance.home import Home
from appliance.policy import load_policy
from appliance.service import artifacts as service
from appliance.signing import PROVENANCE, SIGNATURE, SIGNER_KEY, sign_artifact, verify_artifact

REPO = Path(__file__).resolve().parents[2]
PROVENANCE_INFO = {
    "run_id": "run-0001",
    "policy_digest": "sha256:" + "11" * 32,
    "base_model": {"name": "smollm2-135m", "digest": "sha256:" + "22" * 32},
    "dataset": {"name": "support-tickets", "digest": "sha256:" + "33" * 32},
    "recipe": {"lora_r": 8, "learning_rate": 0.0002, "steps": 20},
    "seeds": {"torch": 0, "split": 0},
    "eval": {"eval_loss_before": 3.1, "eval_loss_after": 2.4},
    "isolation": "unshare --net",
}


def _make_adapter(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "adapter_model.safetensors").write_bytes(os.urandom(4096))
    (root / "adapter_config.json").write_text('{"r": 8}\n')
    (root / "a").mkdir()
    (root / "a" / "b").write_bytes(b"nested\n")
    (root / "a.txt").write_bytes(b"sorted after a/b\n")
    (root / "empty").write_bytes(b"")
    return root


@pytest.fixture
def signed(initialised_home: Home, passphrase: bytes, tmp_path: Path) -> Path:
    """A signed artifact inside the home."""
    artifact = _make_adapter(initialised_home.artifacts_dir / "run-0001")
    sign_artifact(initialised_home, artifact, passphrase, PROVENANCE_INFO)
    return artifact


def _trusted(home: Home) -> set[str]:
    return service.trusted_keys(home)


def test_signed_artifact_verifies_and_reports_contract_fields(initialised_home, signed):
    """A fresh signature verifies; root digest and signer are reported."""
    result = service.verify(initialised_home, signed)
    assert result["ok"], result["reason"]
    assert result["root_digest"] == tree_digest(signed, exclude=[SIGNATURE])
    assert result["signer"] == keys.fingerprint(keys.signing_public_key(initialised_home))
    assert {"ok", "reason", "root_digest", "signer"} <= set(result)


def test_upstream_model_signing_accepts_our_bundle_with_the_same_digest(initialised_home,
                                                                        signed, tmp_path):
    """The OpenSSF model_signing verifier accepts our signature and computes our root digest."""
    import model_signing
    from model_signing._signing import sign_ec_key, sign_sigstore_pb

    pub = tmp_path / "key.pub"
    keys.export_public(initialised_home, tmp_path)
    shutil.copy(tmp_path / keys.SIGNING_PUBLIC, pub)
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(
        signed, signed / SIGNATURE)
    manifest = sign_ec_key.Verifier(pub).verify(
        sign_sigstore_pb.Signature.read(signed / SIGNATURE))
    upstream = model_signing.hashing.Config().set_ignored_paths(paths=[SIGNATURE]).hash(signed)
    assert manifest == upstream
    ours = verify_artifact(signed, _trusted(initialised_home)).root_digest
    payload = json.loads(base64.b64decode(json.loads(
        (signed / SIGNATURE).read_bytes())["dsseEnvelope"]["payload"]))
    assert ours == "sha256:" + payload["subject"][0]["digest"]["sha256"]
    from model_signing._hashing import memory

    hasher = memory.SHA256()
    for rd in upstream.resource_descriptors():
        hasher.update(rd.digest.digest_value)
    assert ours == "sha256:" + hasher.compute().digest_hex


def test_upstream_model_signing_rejects_our_bundle_after_a_change(initialised_home, signed,
                                                                  tmp_path):
    """The cross-check is not vacuous: upstream fails once a byte changes."""
    import model_signing

    keys.export_public(initialised_home, tmp_path)
    (signed / "a" / "b").write_bytes(b"Nested\n")
    with pytest.raises(ValueError):
        model_signing.verifying.Config().use_elliptic_key_verifier(
            public_key=tmp_path / keys.SIGNING_PUBLIC).verify(signed, signed / SIGNATURE)


def test_provenance_binds_inputs_checkpoint_and_environment(initialised_home, signed):
    """The provenance statement is SLSA v1 shaped and names every input by digest."""
    from appliance.signing import dsse

    statement = dsse.open_bundle((signed / PROVENANCE).read_bytes(),
                                 keys.signing_public_key(initialised_home))
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    build = statement["predicate"]["buildDefinition"]
    assert build["externalParameters"]["policy_digest"] == PROVENANCE_INFO["policy_digest"]
    assert build["externalParameters"]["recipe"]["lora_r"] == 8
    assert build["internalParameters"]["audit_checkpoint"]["size"] >= 2
    assert build["internalParameters"]["library_versions"]["cryptography"]
    names = {d["name"] for d in build["resolvedDependencies"]}
    assert {"smollm2-135m", "support-tickets", "requirements.lock", "appliance"} <= names
    from appliance.digests import tree_manifest

    files = tree_manifest(signed, exclude=[SIGNATURE, PROVENANCE])
    assert [(s["name"], s["digest"]["sha256"]) for s in statement["subject"]] == files


def test_signing_is_audited(initialised_home, signed):
    """`artifact.signed` is recorded with digests, and the log still verifies."""
    from appliance.service.audit import verify_home

    lines = initialised_home.audit_log.read_text().splitlines()
    event = json.loads(lines[-1])
    assert event["action"] == "artifact.signed" and event["root_digest"].startswith("sha256:")
    assert verify_home(initialised_home)["ok"]


def test_provenance_with_pii_is_refused_and_nothing_is_left(initialised_home, passphrase,
                                                            tmp_path):
    """Provenance holds digests only: an email in it refuses signing; no signature files stay."""
    artifact = _make_adapter(tmp_path / "run-x")
    before = sorted(p.name for p in artifact.iterdir())
    with pytest.raises(SigningError, match="EMAIL"):
        sign_artifact(initialised_home, artifact, passphrase,
                      {**PROVENANCE_INFO, "note": "contact jane.doe@example.com"})
    assert sorted(p.name for p in artifact.iterdir()) == before


def test_signing_refuses_symlinks_and_double_signing(initialised_home, passphrase, signed,
                                                     tmp_path):
    """A symlink in the directory, or an already signed directory, is refused."""
    with pytest.raises(SigningError):
        sign_artifact(initialised_home, signed, passphrase, PROVENANCE_INFO)
    other = _make_adapter(tmp_path / "run-y")
    (other / "link").symlink_to(other / "a.txt")
    with pytest.raises(Exception, match="symbolic link"):
        sign_artifact(initialised_home, other, passphrase, PROVENANCE_INFO)


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


def _mutations(root: Path) -> dict[str, Callable[[Path], None]]:
    """Every file: flip first/last byte, truncate, append; plus tree-level changes."""
    out: dict[str, Callable[[Path], None]] = {}
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    for rel in files:
        if rel != SIGNATURE:
            out[f"append to {rel}"] = lambda d, r=rel: (d / r).open("ab").write(b"\0")
        if (root / rel).stat().st_size:
            out[f"flip first byte of {rel}"] = lambda d, r=rel: _flip(d / r, 0)
            out[f"flip last byte of {rel}"] = lambda d, r=rel: _flip(d / r, -1)
            out[f"truncate {rel}"] = lambda d, r=rel: os.truncate(d / r, (d / r).stat().st_size
                                                                  // 2)
        out[f"remove {rel}"] = lambda d, r=rel: (d / r).unlink()
        out[f"rename {rel}"] = lambda d, r=rel: (d / r).rename(d / (r + ".renamed"))
        out[f"symlink swap {rel}"] = lambda d, r=rel: _symlink_swap(d / r)
    out["add a file"] = lambda d: (d / "extra.bin").write_bytes(b"x")
    out["add an empty file in a subdirectory"] = lambda d: (d / "a" / "new").write_bytes(b"")
    out["add a .git directory"] = lambda d: ((d / ".git").mkdir(),
                                             (d / ".git" / "HEAD").write_bytes(b"x"))
    out["add a symlink"] = lambda d: (d / "link").symlink_to(d / "a.txt")
    out["swap two files"] = _swap
    out["edit provenance and keep it valid JSON"] = _edit_provenance
    out["replace the provenance with one signed by another key"] = _resign_provenance
    out["re-sign everything with another key"] = _resign_all
    out["keep our key file, sign with another key"] = _resign_keep_pem
    return out


def _symlink_swap(path: Path) -> None:
    target = path.with_name(path.name + ".real")
    path.rename(target)
    path.symlink_to(target.name)


def _swap(d: Path) -> None:
    a, b = d / "a.txt", d / "adapter_config.json"
    data = a.read_bytes()
    a.write_bytes(b.read_bytes())
    b.write_bytes(data)


def _edit_provenance(d: Path) -> None:
    bundle = json.loads((d / PROVENANCE).read_bytes())
    payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    payload["predicate"]["buildDefinition"]["externalParameters"]["seeds"]["torch"] = 1
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    (d / PROVENANCE).write_text(json.dumps(bundle))


def _other_key():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _resign_provenance(d: Path) -> None:
    from appliance.signing import dsse

    statement = dsse.open_bundle((d / PROVENANCE).read_bytes(),
                                 keys.load_public_pem(d / SIGNER_KEY))
    (d / PROVENANCE).write_bytes(dsse.sign_statement(statement, _other_key()))


def _resign(d: Path, key, pem: bytes) -> None:  # type: ignore[no-untyped-def]
    from appliance.digests import tree_manifest
    from appliance.signing import dsse, model_statement

    (d / SIGNER_KEY).write_bytes(pem)
    (d / SIGNATURE).unlink(missing_ok=True)
    statement = model_statement(d.name, tree_manifest(d))
    (d / SIGNATURE).write_bytes(dsse.sign_statement(statement, key))


def _resign_all(d: Path) -> None:
    key = _other_key()
    _resign(d, key, keys.public_pem(key.public_key()))


def _resign_keep_pem(d: Path) -> None:
    _resign(d, _other_key(), (d / SIGNER_KEY).read_bytes())


def test_sign_mutate_verify_loop(initialised_home, signed, tmp_path):
    """Every mutation of a signed artifact fails verification with a reason; none passes."""
    trusted = _trusted(initialised_home)
    mutations = _mutations(signed)
    assert len(mutations) > 40
    for name, mutate in mutations.items():
        copy = tmp_path / "m" / signed.name
        shutil.rmtree(copy.parent, ignore_errors=True)
        shutil.copytree(signed, copy, symlinks=True)
        assert verify_artifact(copy, trusted).ok, "the copy verifies before mutation"
        mutate(copy)
        result = verify_artifact(copy, trusted)
        assert not result.ok, f"{name} was not detected"
        assert result.reason, name


def test_a_key_trusted_by_fingerprint_in_the_policy_verifies(initialised_home, signed,
                                                             tmp_path):
    """signing.trusted_keys admits another key; without it, the same artifact is untrusted."""
    from appliance.digests import root_digest, tree_manifest
    from appliance.signing import dsse, provenance

    other = _make_adapter(tmp_path / "foreign")
    key = _other_key()
    fingerprint = keys.fingerprint(key.public_key())
    (other / SIGNER_KEY).write_bytes(keys.public_pem(key.public_key()))
    content = root_digest(tree_manifest(other))
    statement = provenance.build(other.name, content, PROVENANCE_INFO, checkpoint={},
                                 signer=fingerprint)
    (other / PROVENANCE).write_bytes(dsse.sign_statement(statement, key))
    _resign(other, key, keys.public_pem(key.public_key()))
    assert "does not trust" in verify_artifact(other, _trusted(initialised_home)).reason
    policy = tmp_path / "trusting.toml"
    policy.write_text(initialised_home.policy_file.read_text()
                      + f'\n[signing]\ntrusted_keys = ["{fingerprint}"]\n')
    assert service.verify(initialised_home, other, policy)["ok"]
    assert service.verify(initialised_home, signed, policy)["ok"]  # trust_home_key still on


def test_verification_opens_no_model_parser(initialised_home, signed):
    """Verifying imports no safetensors, torch, transformers or gguf (bytes only)."""
    code = ("import sys; from pathlib import Path; from appliance.home import Home; "
            "from appliance.service.artifacts import verify; "
            "r = verify(Home(Path(sys.argv[1])), sys.argv[2]); assert r['ok'], r; "
            "bad = [m for m in ('safetensors', 'torch', 'transformers', 'gguf', 'peft') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code, str(initialised_home.root), str(signed)],
                   check=True, env={"PYTHONPATH": str(REPO)})


def test_provenance_about_other_content_fails_even_when_signed_by_the_home_key(
        initialised_home, passphrase, signed):
    """A provenance whose subject is not this content fails, though every signature is good."""
    from appliance.digests import tree_manifest
    from appliance.signing import dsse, model_statement

    policy = load_policy(initialised_home.policy_file)
    key = keys.load_signing_key(initialised_home, passphrase, policy)
    statement = dsse.open_bundle((signed / PROVENANCE).read_bytes(), key.public_key())
    statement["subject"][0]["digest"]["sha256"] = "00" * 32
    (signed / PROVENANCE).write_bytes(dsse.sign_statement(statement, key))
    (signed / SIGNATURE).unlink()
    (signed / SIGNATURE).write_bytes(dsse.sign_statement(
        model_statement(signed.name, tree_manifest(signed)), key))
    result = verify_artifact(signed, _trusted(initialised_home))
    assert not result.ok and "provenance" in result.reason


@pytest.fixture
def signed_file(initialised_home: Home, passphrase: bytes, tmp_path: Path) -> Path:
    """A single signed file (the form of `export gguf --out NAME.gguf`) with a companion."""
    from appliance.signing import sign_file

    folder = tmp_path / "exports"
    folder.mkdir()
    path = folder / "smol.gguf"
    path.write_bytes(b"GGUF" + os.urandom(8192))
    (folder / "smol.gguf.Modelfile").write_text("FROM ./smol.gguf\n")
    sign_file(initialised_home, path, passphrase, PROVENANCE_INFO,
              companions=(folder / "smol.gguf.Modelfile",),
              build_type="https://appliance.local/docs/buildtypes/gguf-export/v1.md")
    return path


def test_a_single_signed_file_verifies_here_and_upstream(initialised_home, signed_file,
                                                          tmp_path):
    """The file and its companion verify with `appliance verify`; upstream model_signing's
    CLI verifies the file alone with the exported key (as it verifies a file it signed
    itself: one resource "."), and refuses it after a byte flip."""
    from appliance.digests import file_sha256

    folder = signed_file.parent
    assert sorted(p.name for p in folder.iterdir()) == [
        "smol.gguf", "smol.gguf.Modelfile", "smol.gguf.provenance.sigstore.json",
        "smol.gguf.sig", "smol.gguf.signer.pub.pem"]
    result = service.verify(initialised_home, signed_file)
    assert result["ok"] and result["files"] == 2, result["reason"]
    assert result["provenance"]["build_type"].endswith("gguf-export/v1.md")
    payload = json.loads(base64.b64decode(json.loads(
        (folder / "smol.gguf.provenance.sigstore.json").read_bytes())["dsseEnvelope"]["payload"]))
    assert {s["name"]: s["digest"]["sha256"] for s in payload["subject"]} == {
        "smol.gguf": file_sha256(signed_file),
        "smol.gguf.Modelfile": file_sha256(folder / "smol.gguf.Modelfile")}
    keys.export_public(initialised_home, tmp_path / "keys")
    cli = [str(Path(sys.executable).with_name("model_signing")), "verify", "key",
           str(signed_file), "--signature", str(folder / "smol.gguf.sig"), "--public_key",
           str(tmp_path / "keys" / keys.SIGNING_PUBLIC)]
    upstream = subprocess.run(cli, capture_output=True, text=True, timeout=120, check=False)
    assert upstream.returncode == 0, upstream.stdout + upstream.stderr
    with open(signed_file, "r+b") as handle:
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0x01]))
    assert subprocess.run(cli, capture_output=True, timeout=120, check=False).returncode != 0
    refused = service.verify(initialised_home, signed_file)
    assert not refused["ok"] and refused["reason"] == "file changed since signing: smol.gguf"


def test_every_mutation_of_a_single_signed_file_is_refused(initialised_home, signed_file,
                                                           tmp_path):
    """A flipped byte in the file, its companion, its signature or its provenance; a removed
    companion, signature, provenance or key; a key replaced by another: each is refused
    with a reason."""
    trusted = _trusted(initialised_home)
    other = _other_key()
    base = signed_file.name

    def flip(name: str) -> Callable[[Path], None]:
        def run(folder: Path) -> None:
            data = bytearray((folder / name).read_bytes())
            data[len(data) // 2] ^= 0x01
            (folder / name).write_bytes(bytes(data))
        return run

    mutations: dict[str, Callable[[Path], None]] = {
        "file byte": flip(base), "Modelfile byte": flip(f"{base}.Modelfile"),
        "signature byte": flip(f"{base}.sig"), "provenance byte": flip(
            f"{base}.provenance.sigstore.json"),
        "Modelfile removed": lambda f: (f / f"{base}.Modelfile").unlink(),
        "signature removed": lambda f: (f / f"{base}.sig").unlink(),
        "provenance removed": lambda f: (f / f"{base}.provenance.sigstore.json").unlink(),
        "key removed": lambda f: (f / f"{base}.signer.pub.pem").unlink(),
        "key replaced": lambda f: (f / f"{base}.signer.pub.pem").write_bytes(
            keys.public_pem(other.public_key())),
    }
    for name, mutate in mutations.items():
        copy = tmp_path / "m"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(signed_file.parent, copy)
        assert verify_artifact(copy / base, trusted).ok, "the copy verifies before mutation"
        mutate(copy)
        result = verify_artifact(copy / base, trusted)
        assert not result.ok and result.reason, f"{name} was not detected"


def test_a_directory_signature_does_not_pass_for_a_file(initialised_home, signed, tmp_path):
    """An artifact's model.sig (many resources) placed beside a file as its signature, with
    the artifact's key and provenance, is refused: a file's signature names it alone."""
    folder = tmp_path / "f"
    folder.mkdir()
    target = folder / "adapter_model.safetensors"
    shutil.copy(signed / "adapter_model.safetensors", target)
    shutil.copy(signed / SIGNATURE, folder / "adapter_model.safetensors.sig")
    shutil.copy(signed / SIGNER_KEY, folder / "adapter_model.safetensors.signer.pub.pem")
    shutil.copy(signed / PROVENANCE,
                folder / "adapter_model.safetensors.provenance.sigstore.json")
    result = verify_artifact(target, _trusted(initialised_home))
    assert not result.ok and result.reason == "the signature is not over a single file"


def test_a_single_file_export_never_overwrites_and_leaves_nothing_half_placed(
        initialised_home, passphrase, tmp_path):
    """If NAME.gguf appears while an export runs, placing the signed file refuses with one
    usage error, the file already there is untouched and none of the export's other files
    (Modelfile, signature files) stay behind."""
    from appliance.errors import UsageError
    from appliance.export.signed import sign_and_place_file

    staging, out = tmp_path / "staging", tmp_path / "out"
    staging.mkdir()
    out.mkdir()
    (staging / "smol.gguf").write_bytes(b"GGUF new")
    (staging / "smol.gguf.Modelfile").write_text("FROM ./smol.gguf\n")
    (out / "smol.gguf").write_bytes(b"someone else's")
    with pytest.raises(UsageError, match="already exists") as caught:
        sign_and_place_file(initialised_home, staging, out / "smol.gguf", (".Modelfile",),
                            PROVENANCE_INFO, passphrase, "https://appliance.local/x")
    assert caught.value.exit_code == 2
    assert sorted(p.name for p in out.iterdir()) == ["smol.gguf"]
    assert (out / "smol.gguf").read_bytes() == b"someone else's"
