"""One test per fault finding (SECURITY.md: faults), run against the real commands: each
bad input or
fault is one clear `appliance: ...` line with the contract's exit code, never an internal
error, a traceback or a hang."""

from __future__ import annotations

import json
import os
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.faults.conftest import PASSPHRASE, Done, one_line, run_child

DEEP = 100_000  # far past any recursion limit
CHAT = {"messages": [{"role": "user", "content": "What is the capital of France?"},
                     {"role": "assistant", "content": "Paris is the capital of France."}]}


def _log(home: Path) -> bytes:
    return (home / "audit" / "log.jsonl").read_bytes()


def _actions(home: Path) -> list[str]:
    return [json.loads(line)["action"] for line in _log(home).splitlines()]


# --- audit appends --------------------------------------------------------------------------
def _append_with_a_full_disk(home: Path, *, truncate_back: bool) -> Done:
    """`dataset list` (which audits) with RLIMIT_FSIZE a few bytes past the log's end, so the
    append is cut short mid-line exactly as on a full disk. `truncate_back=False` is the
    test-only switch that disables the truncation the appender does on failure."""
    limit = len(_log(home)) + 40
    prelude = ("import os, resource\n"
               f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n")
    if not truncate_back:
        prelude += "os.ftruncate = lambda fd, length: None\n"
    return run_child("--home", str(home), "dataset", "list", prelude=prelude)


def test_full_disk_during_an_audit_append_leaves_the_log_intact(home: Path,
                                                               cli: Callable[..., Done]):
    """A full disk during an append is one 'no space left on the audit log' line, exit 1,
    and the log is byte for byte what it was, so it still verifies."""
    before = _log(home)
    one_line(_append_with_a_full_disk(home, truncate_back=True), 1,
             "no space left on the audit log")
    assert _log(home) == before
    assert cli("--home", str(home), "audit", "verify").code == 0


def test_without_truncating_back_a_full_disk_tears_the_log(home: Path,
                                                          cli: Callable[..., Done]):
    """Control: with the truncation switched off the same fault leaves a torn line and the
    log no longer verifies (what the finding reported)."""
    before = _log(home)
    _append_with_a_full_disk(home, truncate_back=False)
    assert _log(home) != before and not _log(home).endswith(b"\n")
    assert cli("--home", str(home), "audit", "verify").code == 1


def test_a_torn_tail_from_a_crash_is_cut_and_the_repair_audited(home: Path,
                                                               cli: Callable[..., Done]):
    """A line a crash cut short is removed under the lock by the next append, which first
    records `audit.repaired` with the cut's length and digest; the log verifies again."""
    with open(home / "audit" / "log.jsonl", "ab") as handle:
        handle.write(b'{"action":"half')
    assert cli("--home", str(home), "dataset", "list").code == 0
    entries = [json.loads(line) for line in _log(home).splitlines()]
    repaired = entries[-2]
    assert repaired["action"] == "audit.repaired" and repaired["torn_bytes"] == 15
    assert repaired["torn_sha256"].startswith("sha256:") and b"half" not in _log(home)
    assert entries[-1]["action"] == "dataset.list"
    assert cli("--home", str(home), "audit", "verify").code == 0


def test_a_whole_last_entry_that_lost_its_newline_is_kept(home: Path,
                                                          cli: Callable[..., Done]):
    """Only a partial line is cut: a complete last entry missing just its newline gets it
    back (nothing an attacker can delete by removing one byte), and that is audited too."""
    log = home / "audit" / "log.jsonl"
    before = log.read_bytes().splitlines()
    log.write_bytes(log.read_bytes()[:-1])
    assert cli("--home", str(home), "dataset", "list").code == 0
    after = log.read_bytes().splitlines()
    assert after[:len(before)] == before
    repaired = json.loads(after[len(before)])
    assert repaired["action"] == "audit.repaired" and repaired["kept"] is True
    assert cli("--home", str(home), "audit", "verify").code == 0


def test_without_the_repair_a_torn_tail_poisons_the_log(home: Path, cli: Callable[..., Done],
                                                       monkeypatch: pytest.MonkeyPatch):
    """Control: with the repair switched off the next entry is glued to the torn bytes and
    the log never verifies again."""
    from appliance.audit import logfile

    monkeypatch.setattr(logfile, "_cut_torn_tail", lambda path: None)
    with open(home / "audit" / "log.jsonl", "ab") as handle:
        handle.write(b'{"action":"half')
    cli("--home", str(home), "dataset", "list")
    assert cli("--home", str(home), "audit", "verify").code == 1


# --- special files ----------------------------------------------------------------------------
@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """A named pipe nobody writes to: a reader that opens it blocks forever."""
    path = tmp_path / "input.fifo"
    os.mkfifo(path)
    return path


def test_fifo_inputs_are_refused_before_they_are_opened(home: Path, pass_file: Path,
                                                        fifo: Path):
    """A FIFO as dataset, labeled file, policy, recipe or model is exit 2, one line, at once
    (the finding: dataset import and scrub eval hung forever)."""
    h = ("--home", str(home))
    for args in (("dataset", "import", str(fifo), "--name", "d",
                  "--passphrase-file", str(pass_file)),
                 ("scrub", "eval", str(fifo)),
                 ("train", str(fifo), "--passphrase-file", str(pass_file)),
                 ("model", "import", str(fifo), "--name", "m")):
        one_line(run_child(*h, *args, timeout=60), 2, "FIFO", str(fifo))
    done = run_child("policy", "hash", str(fifo), timeout=60)
    one_line(done, 2, "FIFO")


def test_special_files_planted_in_the_home_are_refused(home: Path, pass_file: Path,
                                                       fifo: Path):
    """A FIFO in place of the audit log, a vault file or a sealed key does not hang a
    command: one line, exit 1."""
    planted = home / "vault" / "d.vault"
    os.mkfifo(planted)
    one_line(run_child("--home", str(home), "dataset", "show", "d",
                       "--passphrase-file", str(pass_file), timeout=60), 1, "FIFO")
    os.unlink(planted)
    log = home / "audit" / "log.jsonl"
    log.unlink()
    os.mkfifo(log)
    one_line(run_child("--home", str(home), "dataset", "list", timeout=60), 1, "FIFO")


def test_a_fifo_bundle_log_is_refused(home: Path, cli: Callable[..., Done], tmp_path: Path):
    """An auditor's bundle whose files are FIFOs is refused, not read forever."""
    bundle = tmp_path / "bundle"
    assert cli("--home", str(home), "audit", "export", "--out", str(bundle)).code == 0
    note = sorted((bundle / "checkpoints").iterdir())[0]
    note.unlink()
    os.mkfifo(note)
    (bundle / "keys" / "checkpoint-ed25519.pub.pem").unlink()
    os.mkfifo(bundle / "keys" / "checkpoint-ed25519.pub.pem")
    done = run_child("audit", "verify", "--bundle", str(bundle), timeout=60)
    assert done.code == 1 and "Traceback" not in done.err and "internal" not in done.err


# --- deep nesting, size caps --------------------------------------------------------------
def _safetensors(header: bytes, data: bytes = b"") -> bytes:
    return struct.pack("<Q", len(header)) + header + data


def _model_dir(root: Path, *, config: bytes = b'{"model_type": "llama"}',
               header: bytes = b'{"w": {"dtype": "F32", "shape": [1], '
                               b'"data_offsets": [0, 4]}}') -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_bytes(config)
    (root / "model.safetensors").write_bytes(_safetensors(header, b"\0" * 4))
    return root


def test_deeply_nested_outside_input_is_exit_2(home: Path, pass_file: Path, tmp_path: Path,
                                               cli: Callable[..., Done]):
    """Nesting bombs in a policy, dataset (line and array), recipe, safetensors header and
    config.json are one exit-2 line naming the depth (the finding: RecursionError)."""
    h = ("--home", str(home))
    policy = tmp_path / "deep.toml"
    policy.write_text("[meta]\nname = \"x\"\n[pii]\nx = " + "[" * DEEP + "\n")
    assert cli("policy", "hash", str(policy)).code == 2
    assert "internal error" not in cli("policy", "check", str(policy)).err
    one_line(cli(*h, "train", str(policy), "--passphrase-file", str(pass_file)), 2,
             "nested deeper")
    lines = tmp_path / "deep.jsonl"
    lines.write_text(json.dumps(CHAT) + "\n" + '{"a":' + "[" * 20_000 + "\n")
    array = tmp_path / "deep.json"
    array.write_text("[" * DEEP)
    for data in (lines, array):
        one_line(cli(*h, "dataset", "import", str(data), "--name", "d",
                     "--passphrase-file", str(pass_file)), 2, "nested deeper")
    deep = b"[" * DEEP
    one_line(cli(*h, "model", "import", str(_model_dir(tmp_path / "m1", config=deep)),
                 "--name", "m1"), 2, "nested deeper")
    one_line(cli(*h, "model", "import", str(_model_dir(tmp_path / "m2", header=deep)),
                 "--name", "m2"), 2, "nested deeper")


def test_gguf_metadata_bombs_are_exit_2(home: Path, tmp_path: Path, cli: Callable[..., Done]):
    """GGUF metadata with arrays nested 100 deep, or claiming 2**60 items, is one exit-2
    line before any GGUF parser runs."""
    from tests.faults.test_fuzz import gguf_bytes

    nested = b"".join(struct.pack("<IQ", 9, 1) for _ in range(100)) + struct.pack("<IQ", 4, 0)
    huge = struct.pack("<IQ", 8, 2**60)
    for name, value in (("deep", nested), ("huge", huge)):
        path = tmp_path / f"{name}.gguf"
        path.write_bytes(gguf_bytes([(b"tokenizer.ggml.tokens", 9, value)]))
        one_line(cli("--home", str(home), "model", "import", str(path), "--name", name), 2,
                 "malformed GGUF metadata")


def test_a_nesting_bomb_in_a_sealed_key_is_an_integrity_failure(home: Path, pass_file: Path,
                                                                cli: Callable[..., Done]):
    """A sealed key file in the home replaced by a nesting bomb, or grown past any real size,
    is one line, exit 1 (the home's own files failing is an integrity failure)."""
    sealed = home / "keys" / "checkpoint-ed25519.sealed.json"
    sealed.write_bytes(b"[" * 20_000)
    args = ("--home", str(home), "audit", "checkpoint", "--passphrase-file", str(pass_file))
    one_line(cli(*args), 1, "malformed")
    sealed.write_bytes(b" " * (1 << 20))
    one_line(cli(*args), 1, "larger than the limit")


def test_a_lone_surrogate_in_a_record_is_a_rejected_record(home: Path, pass_file: Path,
                                                           tmp_path: Path,
                                                           cli: Callable[..., Done]):
    """A record holding a lone surrogate escape is refused with its line number, exit 2
    (the finding: internal error: UnicodeEncodeError)."""
    data = tmp_path / "surrogate.jsonl"
    bad = json.dumps(CHAT).replace("Paris", "Pa\\\\ud800ris").replace("\\\\", "\\")
    data.write_text(json.dumps(CHAT) + "\n" + bad + "\n")
    one_line(cli("--home", str(home), "dataset", "import", str(data), "--name", "d",
                 "--passphrase-file", str(pass_file)), 2, "line 2", "surrogate")
    assert not list((home / "vault").glob("*.vault"))


def test_a_recipe_path_that_is_a_directory_is_exit_2(home: Path, pass_file: Path,
                                                     tmp_path: Path, cli: Callable[..., Done]):
    """`train DIR` is one exit-2 line (the finding: internal error: IsADirectoryError)."""
    one_line(cli("--home", str(home), "train", str(tmp_path), "--passphrase-file",
                 str(pass_file)), 2, "is a directory")


def test_names_with_a_trailing_newline_are_refused(home: Path, pass_file: Path,
                                                   tmp_path: Path, cli: Callable[..., Done]):
    """Dataset and model names are matched whole: 'x\\n' is exit 2, not a second 'x'."""
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(CHAT) + "\n")
    one_line(cli("--home", str(home), "dataset", "import", str(data), "--name", "x\n",
                 "--passphrase-file", str(pass_file)), 2, "invalid dataset name")
    one_line(cli("--home", str(home), "model", "import", str(_model_dir(tmp_path / "m")),
                 "--name", "m\n"), 2, "invalid model name")
    one_line(cli("--home", str(home), "dataset", "show", "x\n"), 2, "invalid dataset name")


# --- passphrase files -------------------------------------------------------------------------
def test_a_passphrase_file_others_can_read_is_refused_with_the_fix(home: Path, pass_file: Path,
                                                                   cli: Callable[..., Done]):
    """As ssh does with keys: a group- or world-readable passphrase file is refused, and the
    line says how to fix it."""
    pass_file.chmod(0o644)
    line = one_line(cli("--home", str(home), "audit", "checkpoint", "--passphrase-file",
                        str(pass_file)), 1, "group or others")
    assert f"chmod 600 {pass_file}" in line
    pass_file.chmod(0o600)
    assert cli("--home", str(home), "audit", "checkpoint", "--passphrase-file",
               str(pass_file)).code == 0


def test_dev_zero_as_a_passphrase_file_is_refused_at_once(home: Path):
    """`--passphrase-file /dev/zero` is refused before anything is read (the finding: read
    without a limit)."""
    started = time.monotonic()
    done = run_child("--home", str(home), "audit", "checkpoint",
                     "--passphrase-file", "/dev/zero", timeout=60)
    one_line(done, 1, "character device")
    assert time.monotonic() - started < 30


def test_an_inherited_pipe_still_carries_the_passphrase(home: Path):
    """The console's way (`--passphrase-file /dev/fd/N`, a pipe) keeps working, and an
    oversized pipe is refused after the cap."""
    from appliance.passphrase import MAX_BYTES

    def through_pipe(secret: bytes) -> Done:
        read_fd, write_fd = os.pipe()
        os.write(write_fd, secret)
        os.close(write_fd)
        try:
            return run_child("--home", str(home), "audit", "checkpoint",
                             "--passphrase-file", f"/dev/fd/{read_fd}", pass_fds=(read_fd,))
        finally:
            os.close(read_fd)

    ok = through_pipe(PASSPHRASE + b"\n")
    assert ok.code == 0, ok.err
    one_line(through_pipe(b"x" * (MAX_BYTES + 1)), 1, f"longer than {MAX_BYTES} bytes")


def test_a_named_fifo_is_not_a_passphrase_file(home: Path, fifo: Path):
    """Only an inherited /dev/fd/N pipe is read as a pipe; a FIFO on disk is refused."""
    one_line(run_child("--home", str(home), "audit", "checkpoint", "--passphrase-file",
                       str(fifo), timeout=60), 1, "FIFO")


def test_a_file_size_limit_during_a_vault_write_is_one_audited_line(home: Path):
    """Without root (no tmpfs), RLIMIT_FSIZE makes the vault's temp file hit the same
    ENOSPC-like wall: NoSpaceError naming the vault, no temp file left, failure audited."""
    limit = len(_log(home)) + 8192
    code = f"""
import resource, sys
from pathlib import Path
from appliance import trust
from appliance.errors import NoSpaceError
from appliance.home import Home
from appliance.policy import load_policy
from appliance.vault import store
home = Home(Path({str(home)!r}))
policy = load_policy(home.policy_file)
key = trust.unlock(home, {PASSPHRASE!r}, policy)
records = [{{"text": "record %d " % i + "x" * 400}} for i in range(200)]
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
try:
    store.write_dataset(home, policy, key, "big", records, [], {{}})
except NoSpaceError as exc:
    print(exc.line())
    sys.exit(3)
"""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 3, done.stderr
    assert done.stdout.startswith("no space left on the vault (writing dataset 'big')")
    assert sorted(p.name for p in (home / "vault").iterdir()) == [".lock"]
    last = json.loads(_log(home).splitlines()[-1])
    assert (last["action"], last["outcome"], last["error"]) == (
        "dataset.write", "failed", "NoSpaceError")


def test_a_nesting_bomb_or_fifo_as_home_json_is_one_line(home: Path, cli: Callable[..., Done]):
    """`home.json` replaced by a nesting bomb names no keys, so the guard refuses the home
    (exit 1, one line); replaced by a FIFO it is not an initialised home: nothing hangs."""
    marker = home / "home.json"
    marker.write_bytes(b"[" * 20_000)
    one_line(cli("--home", str(home), "dataset", "list"), 1)
    marker.unlink()
    os.mkfifo(marker)
    one_line(run_child("--home", str(home), "dataset", "list", timeout=60), 1, "not initialised")
