"""Signed artifacts: OpenSSF model-signing v1.0 bundles (key mode) plus signed provenance.

An artifact directory, once signed, holds:
- its content files (adapter weights, config, metrics...),
- `signer.pub.pem`: the signer's public key (the policy pins its fingerprint),
- `provenance.sigstore.json`: a DSSE bundle over the SLSA provenance statement, whose
  subjects are every file except the two signature files, each by its own sha256 (their
  model-signing root digest is the *content digest*),
- `model.sig`: the model-signing v1.0 bundle over every file except itself (provenance
  included). Its subject digest is the artifact's *root digest*, equal to what the upstream
  `model_signing` verifier computes.

A single signed file (`appliance export gguf ... --out NAME.gguf`) carries the same three
beside it instead: `NAME.gguf.sig` (the model-signing v1.0 bundle over the file alone, the
form upstream `model_signing sign key NAME.gguf` writes: one resource named "."),
`NAME.gguf.provenance.sigstore.json` (subjects: the file and its companions such as
`NAME.gguf.Modelfile`, each by sha256) and `NAME.gguf.signer.pub.pem`.

Verification reads bytes and JSON only; no model parser opens a file, and nothing but
`model.sig` is left out of the check.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.digests import root_digest, tree_manifest
from appliance.errors import ApplianceError, IntegrityError, SigningError
from appliance.fsutil import atomic_write_bytes
from appliance.home import Home

if TYPE_CHECKING:
    from appliance.audit.notes import CheckpointSummary

SIGNATURE = "model.sig"
PROVENANCE = "provenance.sigstore.json"
SIGNER_KEY = "signer.pub.pem"
MODEL_SIGNING_PREDICATE = "https://model_signing/signature/v1.0"
SERIALIZATION = {"method": "files", "hash_type": "sha256", "allow_symlinks": False,
                 "ignore_paths": [SIGNATURE]}
FILE_SERIALIZATION = {**SERIALIZATION, "ignore_paths": []}
MAX_SIGNATURE_BYTES = 64 * 1024 * 1024
SIDECARS = {"signature": ".sig", "provenance": ".provenance.sigstore.json",
            "signer": ".signer.pub.pem"}
"""The signature files beside a signed single file, by suffix to its name."""

__all__ = [
    "SignResult",
    "VerifyResult",
    "sidecars",
    "sign_artifact",
    "sign_file",
    "verify_artifact",
]


@dataclass(frozen=True)
class SignResult:
    """What signing produced."""

    artifact: str
    root_digest: str
    content_digest: str
    signer: str
    files: int
    checkpoint: CheckpointSummary


@dataclass
class VerifyResult:
    """The outcome of verifying an artifact directory (docs/interface.md's fields first)."""

    ok: bool
    reason: str
    root_digest: str = ""
    signer: str = ""
    content_digest: str = ""
    files: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for --json."""
        return asdict(self)


def sidecars(path: Path) -> dict[str, Path]:
    """The signature files of the single signed file `path` (SIDECARS' keys)."""
    return {k: path.with_name(path.name + suffix) for k, suffix in SIDECARS.items()}


def model_statement(name: str, manifest: list[tuple[str, str]],
                    serialization: dict[str, Any] | None = None) -> dict[str, Any]:
    """The in-toto statement model-signing v1.0 signs for a manifest."""
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": name,
                     "digest": {"sha256": root_digest(manifest).removeprefix("sha256:")}}],
        "predicateType": MODEL_SIGNING_PREDICATE,
        "predicate": {
            "serialization": serialization or SERIALIZATION,
            "resources": [{"name": p, "algorithm": "sha256", "digest": d} for p, d in manifest],
        },
    }


def _check_dir(artifact: Path) -> None:
    if artifact.is_symlink() or not artifact.is_dir():
        raise SigningError("not an artifact directory", where=str(artifact))


def sign_artifact(home: Home, artifact_dir: str | Path, passphrase: bytes,
                  provenance: dict[str, Any], build_type: str | None = None) -> SignResult:
    """Sign every file of `artifact_dir` and a provenance statement about it.

    Writes `signer.pub.pem`, `provenance.sigstore.json` and `model.sig` atomically (removed
    again if signing fails), signs an audit checkpoint first so provenance can name it, and
    records `artifact.signed`.
    """
    from appliance import audit

    artifact = Path(artifact_dir)
    _check_dir(artifact)
    for name in (SIGNATURE, PROVENANCE, SIGNER_KEY):
        if (artifact / name).exists() or (artifact / name).is_symlink():
            raise SigningError(f"already holds {name}", where=str(artifact),
                               hint="an artifact is signed once")
    written: list[Path] = []
    try:
        return _sign(home, artifact, passphrase, provenance, written, build_type)
    except BaseException as exc:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        if isinstance(exc, ApplianceError):
            audit.record(home, "artifact.signed", outcome="failed", artifact=artifact.name,
                         error=exc.line())
        raise


def _sign(home: Home, artifact: Path, passphrase: bytes, info: dict[str, Any],
          written: list[Path], build_type: str | None) -> SignResult:
    from appliance import audit, keys
    from appliance.audit.processors import scrub_text
    from appliance.signing import dsse
    from appliance.signing import provenance as prov

    build_type = build_type or prov.BUILD_TYPE
    tree_manifest(artifact)  # refuses symlinks and special files before anything is written
    subject = scrub_text(artifact.name)  # a directory name could carry PII; keep it out
    key, signer, checkpoint = _signing_key(home, passphrase)
    written.append(artifact / SIGNER_KEY)
    atomic_write_bytes(artifact / SIGNER_KEY, keys.public_pem(key.public_key()), 0o644)
    files = tree_manifest(artifact, exclude=(SIGNATURE, PROVENANCE))
    content = root_digest(files)
    statement = prov.build(subject, content, info, checkpoint=checkpoint, signer=signer,
                           files=files, build_type=build_type)
    written.append(artifact / PROVENANCE)
    atomic_write_bytes(artifact / PROVENANCE, dsse.sign_statement(statement, key), 0o644)
    manifest = tree_manifest(artifact, exclude=(SIGNATURE,))
    written.append(artifact / SIGNATURE)
    atomic_write_bytes(artifact / SIGNATURE,
                       dsse.sign_statement(model_statement(subject, manifest), key), 0o644)
    result = SignResult(str(artifact), root_digest(manifest), content, signer, len(manifest),
                        checkpoint)
    audit.record(home, "artifact.signed", artifact=artifact.name, root_digest=result.root_digest,
                 content_digest=content, signer=signer, files=len(manifest))
    return result


def _signing_key(home: Home, passphrase: bytes) -> tuple[Any, str, CheckpointSummary]:
    """(the home's signing key, its fingerprint, a fresh signed audit checkpoint)."""
    from appliance import audit, keys
    from appliance.policy import load_policy

    policy = load_policy(home.policy_file)
    key = keys.load_signing_key(home, passphrase, policy)
    if not audit.unlocked(home):
        audit.unlock(home, passphrase, policy)
    return key, keys.fingerprint(key.public_key()), audit.checkpoint(home).as_dict()


def _regular(path: Path, what: str) -> None:
    if path.is_symlink() or not path.is_file():
        raise SigningError(f"{what} is missing or not a regular file: {path.name}")


def sign_file(home: Home, path: str | Path, passphrase: bytes, provenance: dict[str, Any],
              *, companions: tuple[Path, ...] = (), build_type: str) -> SignResult:
    """Sign the single file `path` and a provenance statement about it and its `companions`
    (files beside it named `path`'s name + a suffix, such as NAME.gguf.Modelfile): writes
    the three SIDECARS beside it atomically (removed again if signing fails) and records
    `artifact.signed`. Upstream `model_signing verify key PATH --signature PATH.sig`
    verifies the file."""
    from appliance import audit, keys
    from appliance.audit.processors import scrub_text
    from appliance.digests import file_sha256
    from appliance.signing import dsse
    from appliance.signing import provenance as prov

    path = Path(path)
    targets = sidecars(path)
    for item in (path, *companions):
        _regular(item, "a file to sign")
        if item.parent != path.parent or not item.name.startswith(path.name):
            raise SigningError(f"a companion must lie beside the file and start with its "
                               f"name: {item.name}", where=str(path))
    for target in targets.values():
        if target.exists() or target.is_symlink():
            raise SigningError(f"already holds {target.name}", where=str(path.parent),
                               hint="a file is signed once")
    written: list[Path] = []
    try:
        subject = scrub_text(path.name)
        key, signer, checkpoint = _signing_key(home, passphrase)
        files = sorted((item.name, file_sha256(item)) for item in (path, *companions))
        content = root_digest(files)
        statement = prov.build(subject, content, provenance, checkpoint=checkpoint,
                               signer=signer, files=files, build_type=build_type)
        for name, data in (("signer", keys.public_pem(key.public_key())),
                           ("provenance", dsse.sign_statement(statement, key))):
            written.append(targets[name])
            atomic_write_bytes(targets[name], data, 0o644)
        manifest = [(".", dict(files)[path.name])]
        written.append(targets["signature"])
        atomic_write_bytes(targets["signature"], dsse.sign_statement(
            model_statement(subject, manifest, FILE_SERIALIZATION), key), 0o644)
    except BaseException as exc:
        for item in written:
            with contextlib.suppress(OSError):
                item.unlink()
        if isinstance(exc, ApplianceError):
            audit.record(home, "artifact.signed", outcome="failed", artifact=path.name,
                         error=exc.line())
        raise
    result = SignResult(str(path), root_digest(manifest), content, signer, len(files),
                        checkpoint)
    audit.record(home, "artifact.signed", artifact=path.name, root_digest=result.root_digest,
                 content_digest=content, signer=signer, files=len(files))
    return result


def _read_small(path: Path, what: str) -> bytes:
    if path.is_symlink() or not path.is_file():
        raise SigningError(f"{what} is missing or not a regular file: {path.name}")
    with open(path, "rb") as handle:
        data = handle.read(MAX_SIGNATURE_BYTES + 1)
    if len(data) > MAX_SIGNATURE_BYTES:
        raise SigningError(f"{what} is too large: {path.name}")
    return data


def _signed_manifest(statement: dict[str, Any]) -> tuple[str, list[tuple[str, str]]]:
    try:
        if statement["predicateType"] != MODEL_SIGNING_PREDICATE or len(statement["subject"]) != 1:
            raise ValueError
        serialization = statement["predicate"]["serialization"]
        if (serialization.get("method"), serialization.get("hash_type"),
                serialization.get("allow_symlinks")) != ("files", "sha256", False):
            raise ValueError
        manifest = [(str(r["name"]), str(r["digest"])) for r in statement["predicate"]["resources"]
                    if r["algorithm"] == "sha256"]
        claimed = "sha256:" + str(statement["subject"][0]["digest"]["sha256"])
    except (KeyError, TypeError, ValueError, IndexError):
        raise SigningError("the signed statement is not a model-signing v1.0 manifest") from None
    if len(manifest) != len(statement["predicate"]["resources"]) or \
            root_digest(manifest) != claimed:
        raise SigningError("the signed manifest is inconsistent with its root digest")
    return claimed, manifest


def _compare(artifact: Path, signed: list[tuple[str, str]]) -> None:
    try:
        actual = dict(tree_manifest(artifact, exclude=(SIGNATURE,)))
    except IntegrityError as exc:
        raise SigningError(exc.message) from None
    expected = dict(signed)
    for name in sorted(set(actual) - set(expected)):
        raise SigningError(f"file added or renamed after signing: {name}")
    for name in sorted(set(expected) - set(actual)):
        raise SigningError(f"file missing (removed or renamed) since signing: {name}")
    for name in sorted(expected):
        if actual[name] != expected[name]:
            raise SigningError(f"file changed since signing: {name}")


def verify_artifact(artifact_dir: str | Path, trusted: set[str]) -> VerifyResult:
    """Verify a signed artifact against the trusted key fingerprints. Never raises for a bad
    artifact: the result says why it fails."""
    artifact = Path(artifact_dir)
    result = VerifyResult(False, "")
    try:
        if artifact.is_file() and not artifact.is_symlink():
            _verify_file(artifact, trusted, result)
        else:
            _verify(artifact, trusted, result)
    except (SigningError, IntegrityError) as exc:
        result.ok, result.reason = False, exc.message
        return result
    result.ok = True
    result.reason = f"verified: {result.files} files signed by a trusted key"
    return result


def _verify(artifact: Path, trusted: set[str], result: VerifyResult) -> None:
    from appliance.signing import dsse

    _check_dir(artifact)
    bundle = _read_small(artifact / SIGNATURE, "the signature")
    public_key = _trusted_key(artifact / SIGNER_KEY, trusted, result)
    root, manifest = _signed_manifest(dsse.open_bundle(bundle, public_key))
    result.root_digest = root
    _compare(artifact, manifest)
    result.files = len(manifest)
    statement = dsse.open_bundle(_read_small(artifact / PROVENANCE, "the provenance"),
                                 public_key)
    files = [(p, d) for p, d in manifest if p != PROVENANCE]
    result.content_digest = root_digest(files)
    _check_provenance(statement, files, result)


def _trusted_key(pem_path: Path, trusted: set[str], result: VerifyResult) -> Any:
    """The signer's P-256 public key from `pem_path`, when its fingerprint is trusted."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from appliance import keys

    _read_small(pem_path, "the signer's public key")
    public_key = keys.load_public_pem(pem_path)
    result.signer = keys.fingerprint(public_key)
    if result.signer not in trusted:
        raise SigningError(f"signed by a key the policy does not trust: {result.signer}",
                           hint="add its fingerprint to signing.trusted_keys if you trust it")
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or \
            public_key.curve.name != "secp256r1":
        raise SigningError("the signer's key is not ECDSA P-256")
    return public_key


def _verify_file(path: Path, trusted: set[str], result: VerifyResult) -> None:
    """A single signed file: its model-signing bundle names it alone ("."), its digest
    matches, and the provenance's subjects are it and its companions, all unchanged."""
    from appliance.digests import file_sha256
    from appliance.signing import dsse

    found = sidecars(path)
    bundle = _read_small(found["signature"], "the signature")
    public_key = _trusted_key(found["signer"], trusted, result)
    root, manifest = _signed_manifest(dsse.open_bundle(bundle, public_key))
    if [name for name, _ in manifest] != ["."]:
        raise SigningError("the signature is not over a single file")
    result.root_digest = root
    if file_sha256(path) != manifest[0][1]:
        raise SigningError(f"file changed since signing: {path.name}")
    statement = dsse.open_bundle(_read_small(found["provenance"], "the provenance"),
                                 public_key)
    try:
        names = sorted(str(s["name"]) for s in statement["subject"])
    except (KeyError, TypeError):
        raise SigningError("the provenance does not describe this file") from None
    files = []
    for name in names:
        item = path.with_name(name)
        if "/" in name or not name.startswith(path.name) or name in \
                {p.name for p in found.values()}:
            raise SigningError("the provenance does not describe this file")
        if item.is_symlink() or not item.is_file():
            raise SigningError(f"file missing (removed or renamed) since signing: {name}")
        files.append((name, file_sha256(item)))
    result.files = len(files)
    result.content_digest = root_digest(files)
    _check_provenance(statement, files, result)
    if path.name not in names:
        raise SigningError("the provenance does not describe this file")


def _subjects_match(subject: list[Any], files: list[tuple[str, str]]) -> bool:
    """One subject per content file with its sha256, or (artifacts signed before per-file
    subjects) one subject for the content root digest."""
    if len(subject) == 1 and \
            "sha256:" + subject[0]["digest"]["sha256"] == root_digest(files):
        return True
    named = {str(s["name"]): str(s["digest"]["sha256"]) for s in subject}
    return len(named) == len(subject) and named == dict(files)


def _check_provenance(statement: dict[str, Any], files: list[tuple[str, str]],
                      result: VerifyResult) -> None:
    from appliance.signing.provenance import PREDICATE_TYPE, summarize

    try:
        ok = (statement["predicateType"] == PREDICATE_TYPE
              and _subjects_match(statement["subject"], files))
        summary = summarize(statement) if ok else {}
    except (KeyError, TypeError, IndexError, AttributeError, StopIteration):
        ok = False
    if not ok:
        raise SigningError("the provenance does not describe this artifact's content")
    result.provenance = summary
