"""Property-based fuzz of every reader of outside input: whatever the bytes, a reader
returns a value or raises an ApplianceError (one line, the contract's exit code), never
another exception. Inputs mix random bytes, random JSON/TOML, nesting bombs and mutations
of real documents. Example counts are bounded so the default suite stays quick."""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.errors import ApplianceError, InputError
from appliance.resources import shipped_policy

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.function_scoped_fixture])

_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
            | st.text(max_size=20))
json_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=16)
bombs = st.builds(lambda n, open_, close: (open_ * n + close * n).encode(),
                  st.integers(60, 20_000), st.sampled_from(["[", '{"a":', "[{\"x\":"]),
                  st.sampled_from(["", "]", "}"]))
escapes = st.sampled_from([b'"\\ud800"', b'{"a": "\\udfff x"}', b'["\\ud83d"]',
                           b'{"\\ud800": 1}', b"\xed\xa0\x80", b"\xff\xfe{\x00"])


def mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    """A real document cut, spliced with random bytes, or with a byte flipped."""
    def mutate(at: int, cut: int, insert: bytes) -> bytes:
        at %= len(seed) + 1
        return seed[:at] + insert + seed[at + cut:]
    return st.builds(mutate, st.integers(0, 1 << 16), st.integers(0, 64), st.binary(max_size=32))


def outside(seed: bytes = b"{}") -> st.SearchStrategy[bytes]:
    """Bytes an attacker or a broken tool could hand a reader."""
    return st.one_of(st.binary(max_size=512), json_values.map(lambda v: json.dumps(v).encode()),
                     bombs, escapes, mutations(seed))


@contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def only_appliance_errors(call: Callable[[], Any]) -> None:
    """`call` returns or raises an ApplianceError whose line is one line."""
    try:
        call()
    except ApplianceError as exc:
        assert "\n" not in exc.line().strip() or isinstance(exc, InputError)


POLICY = shipped_policy("default").read_bytes()
RECIPE = b'name = "r"\nbase_model = "m"\ndataset = "d"\n[train]\nepochs = 1\n'
CHAT = json.dumps({"messages": [{"role": "user", "content": "hi"},
                                {"role": "assistant", "content": "hello"}]}).encode()


@FUZZ
@given(st.lists(outside(CHAT), min_size=1, max_size=4), st.booleans())
def test_dataset_reader_and_validation(records: list[bytes], as_array: bool):
    """Dataset files: read, then validated, exactly as `dataset import` does."""
    from appliance.intake.reader import read_items
    from appliance.intake.validate import validate

    body = (b"[" + b",".join(records) + b"]") if as_array else b"\n".join(records)
    with scratch() as root:
        (root / "d.jsonl").write_bytes(body)

        def run() -> None:
            _, items = read_items(root / "d.jsonl", 65536)
            validate(items, where="d.jsonl")

        only_appliance_errors(run)


@FUZZ
@given(outside(POLICY))
def test_policy_loader(data: bytes):
    """Policy files (TOML): parsed and validated, every problem a PolicyError."""
    from appliance.policy import load_policy

    with scratch() as root:
        (root / "p.toml").write_bytes(data)
        only_appliance_errors(lambda: load_policy(root / "p.toml"))


@FUZZ
@given(st.one_of(outside(RECIPE), st.integers(60, 5000).map(lambda n: b"a = " + b"[" * n)))
def test_recipe_loader(data: bytes):
    """Recipe files (TOML)."""
    from appliance.train.recipe import load_recipe

    with scratch() as root:
        (root / "r.toml").write_bytes(data)
        only_appliance_errors(lambda: load_recipe(root / "r.toml"))


HEADER = b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}'


@FUZZ
@given(outside(b'{"model_type": "llama"}'), outside(HEADER), st.integers(0, 1 << 40),
       st.booleans())
def test_model_directory_scan(config: bytes, header: bytes, length: int, honest: bool):
    """A model directory: config.json and a safetensors file with any header and any
    declared header length."""
    import struct

    from appliance.models.safety import scan_model_dir

    with scratch() as root:
        (root / "config.json").write_bytes(config)
        declared = len(header) if honest else length
        (root / "model.safetensors").write_bytes(struct.pack("<Q", declared) + header
                                                 + b"\0" * 8)
        only_appliance_errors(lambda: scan_model_dir(root))


def gguf_bytes(entries: list[tuple[bytes, int, bytes]]) -> bytes:
    """A GGUF v3 header with no tensors and the given (key, type, encoded value) entries."""
    import struct

    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(entries))
    for key, kind, value in entries:
        out += struct.pack("<Q", len(key)) + key + struct.pack("<I", kind) + value
    return out


GGUF_SEED = gguf_bytes([(b"general.architecture", 8, b"\x05\x00\x00\x00\x00\x00\x00\x00llama"),
                        (b"llama.block_count", 4, b"\x1e\x00\x00\x00")])


@FUZZ
@given(st.one_of(st.binary(max_size=64), st.binary(max_size=56).map(lambda b: b"GGUF" + b),
                 mutations(GGUF_SEED)))
def test_gguf_header_check(data: bytes):
    """GGUF files: magic, version and the whole metadata section, before any parser."""
    from appliance.models.gguf import check_gguf

    with scratch() as root:
        (root / "m.gguf").write_bytes(data)
        only_appliance_errors(lambda: check_gguf(root / "m.gguf"))


def _sealed_seed() -> bytes:
    from appliance import keystore

    return keystore.seal(b"k" * 32, b"pw", keystore.KdfParams(8, 1, 1), "ctx")


SEALED = _sealed_seed()


@FUZZ
@given(outside(SEALED))
def test_sealed_files(blob: bytes):
    """Sealed key files: malformed is IntegrityError, a wrong key PassphraseError."""
    from appliance import keystore

    caps = keystore.KdfParams(64, 2, 1)
    only_appliance_errors(lambda: keystore.unseal(blob, b"pw", caps, "ctx"))


@FUZZ
@given(outside(b"\x89APVLT\r\n\x00\x01\x00\x00\x00\x02{}"))
def test_vault_file_layout(blob: bytes):
    """Vault files: the cleartext prefix, envelope and trailer parser."""
    from appliance.vault import layout

    only_appliance_errors(lambda: layout.parse(io.BytesIO(blob), len(blob)))


@pytest.fixture(scope="module")
def audit_material() -> tuple[Any, str, list[tuple[str, bytes]], list[bytes]]:
    """A real checkpoint key, origin, a signed note and log lines to mutate."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from appliance.audit import merkle, notes

    key = ed25519.Ed25519PrivateKey.generate()
    origin = "appliance.test/fuzz"
    lines = [json.dumps({"action": "a", "seq": 1, "prev": "0" * 64}).encode()]
    cp = notes.Checkpoint(origin, 1, merkle.root_of([merkle.leaf_hash(lines[0])]))
    return key, origin, [(f"{1:012d}.note", notes.sign(cp, key))], lines


@FUZZ
@given(lines=st.lists(outside(b'{"seq": 1, "prev": "00"}'), max_size=4),
       note=outside(b"note"), torn=st.booleans())
def test_audit_log_and_notes(audit_material: tuple[Any, str, list[tuple[str, bytes]],
                                                   list[bytes]],
                             lines: list[bytes], note: bytes, torn: bool):
    """The audit verifier over any log lines and any checkpoint note."""
    from appliance.audit.verify import verify_log

    key, origin, stored, real = audit_material
    clean = [line.replace(b"\n", b" ") for line in real + lines]
    only_appliance_errors(lambda: verify_log(clean, torn, [*stored, ("000000000002.note", note)],
                                             key=key.public_key(), origin=origin))


@FUZZ
@given(outside(b'{"seq": 1}'), outside(b"-----BEGIN PUBLIC KEY-----\n"), outside(b"note"))
def test_audit_bundles(log: bytes, pem: bytes, note: bytes):
    """An auditor's bundle directory with any log, public key and note files."""
    from appliance.service.audit import verify_bundle

    with scratch() as root:
        (root / "keys").mkdir()
        (root / "checkpoints").mkdir()
        (root / "log.jsonl").write_bytes(log)
        (root / "keys" / "checkpoint-ed25519.pub.pem").write_bytes(pem)
        (root / "checkpoints" / "000000000001.note").write_bytes(note)
        only_appliance_errors(lambda: verify_bundle(root))


@FUZZ
@given(outside(b"correct horse battery staple\n"))
def test_passphrase_files(data: bytes):
    """Passphrase files: any content is a passphrase or one PassphraseError."""
    from appliance.passphrase import read_passphrase

    with scratch() as root:
        path = root / "pass"
        path.write_bytes(data)
        path.chmod(0o600)
        only_appliance_errors(lambda: read_passphrase(path))


@FUZZ
@given(outside(b'[{"full_text": "Call Ann", "spans": [{"entity_type": "PERSON", '
               b'"start_position": 5, "end_position": 8}]}]'))
def test_labeled_files(data: bytes):
    """Labeled PII files for `scrub eval`."""
    from appliance.scrub.evaluate import load_labeled

    with scratch() as root:
        (root / "l.json").write_bytes(data)
        only_appliance_errors(lambda: load_labeled(root / "l.json"))


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(policy=outside(POLICY), log=outside(b'{"seq": 1}'))
def test_the_command_line_never_reports_an_internal_error(
        capsys: pytest.CaptureFixture[str], policy: bytes, log: bytes):
    """Through the real CLI (`policy check`, `policy hash`, `audit verify --bundle`): an exit
    code of the contract and no internal error or traceback, whatever the file holds."""
    from appliance.cli.main import main

    with scratch() as root:
        (root / "p.toml").write_bytes(policy)
        (root / "b" / "keys").mkdir(parents=True)
        (root / "b" / "log.jsonl").write_bytes(log)
        for args in (["policy", "check", str(root / "p.toml")],
                     ["policy", "hash", str(root / "p.toml")],
                     ["audit", "verify", "--bundle", str(root / "b")]):
            capsys.readouterr()
            code = main(args)
            err = capsys.readouterr().err
            assert code in (0, 1, 2), (args, code, err)
            assert "internal error" not in err and "Traceback" not in err, (args, err)
