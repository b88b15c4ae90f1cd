"""No plaintext on disk: canary records written through the vault appear in no file of the
home or TMPDIR, even when a writer is killed with SIGKILL mid-write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from canary import scan
from vault_helpers import VaultHome

from appliance.vault import store

REPO = Path(__file__).resolve().parents[2]
CANARIES = ["CANARY-7f3a9c-Ωmega-Zebra", "canary.leak@example.invalid"]


def _child(vh: VaultHome, tmpdir: Path, code: str) -> subprocess.Popen[bytes]:
    """A child python with TMPDIR pointed at `tmpdir`, running `code`."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmpdir),
           "VAULT_HOME": str(vh.home.root), "VAULT_KEY": vh.master_key.hex()}
    prelude = textwrap.dedent("""
        import os, sys, json
        from pathlib import Path
        from appliance.home import Home
        from appliance.policy import load_policy
        from appliance.vault import store
        home = Home(Path(os.environ["VAULT_HOME"]))
        policy = load_policy(home.policy_file)
        key = bytes.fromhex(os.environ["VAULT_KEY"])
    """)
    return subprocess.Popen([sys.executable, "-c", prelude + textwrap.dedent(code)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_canary_scanner_finds_planted_canaries(tmp_path: Path) -> None:
    """The scanner finds a canary in UTF-8, UTF-16, JSON-escaped form and across blocks."""
    (tmp_path / "a").write_bytes(b"x" * (1 << 20) + CANARIES[0].encode("utf-8"))
    (tmp_path / "b").write_bytes(CANARIES[1].encode("utf-16-le"))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c").write_text(json.dumps({"t": CANARIES[0]}))
    edge = b"y" * ((1 << 20) - 5) + CANARIES[1].encode("utf-8")
    (tmp_path / "d").write_bytes(edge)
    found = {(h.path.name, h.encoding) for h in scan([tmp_path], CANARIES)}
    assert {("a", "utf-8"), ("b", "utf-16-le"), ("c", "json-escaped"), ("d", "utf-8")} <= found
    assert scan([tmp_path], ["absent-canary-string"]) == []


def test_round_trip_leaves_no_plaintext(vhome: VaultHome, tmp_path: Path) -> None:
    """Writing, reading, showing and sampling canary records leaves no canary on disk."""
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    child = _child(vhome, tmpdir, f"""
        canaries = {CANARIES!r}
        train = [{{"text": f"{{c}} record {{i}}", "who": c}} for i in range(300)
                 for c in canaries]
        store.write_dataset(home, policy, key, "canary", train, train[:10],
                            {{"report": canaries[0]}})
        back = store.read_dataset(home, key, "canary", "all")
        meta = store.read_metadata(home, key, "canary")
        assert back == train + train[:10] and meta["metadata"]["report"] == canaries[0]
        print("ok")
    """)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err.decode()
    assert out.strip() == b"ok"
    assert scan([vhome.home.root, tmpdir], CANARIES) == []
    assert (vhome.home.vault_dir / "canary.vault").stat().st_size > 10_000


def test_cli_sample_and_show_leave_no_plaintext(vhome: VaultHome, tmp_path: Path,
                                                run_cli) -> None:  # type: ignore[no-untyped-def]
    """The CLI's show and sample print canaries to stdout but write none to disk."""
    store.write_dataset(vhome.home, vhome.policy, vhome.master_key, "c",
                        [{"text": CANARIES[0]}], [{"text": CANARIES[1]}], {"r": CANARIES[1]})
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = {**vhome.cli_env(), "TMPDIR": str(tmpdir)}
    done = run_cli("dataset", "sample", "c", "--split", "all", env=env)
    assert done.returncode == 0, done.stderr
    assert CANARIES[0] in done.stdout
    assert run_cli("dataset", "show", "c", "--json", env=env).returncode == 0
    assert scan([vhome.home.root, tmpdir], CANARIES) == []


@pytest.mark.parametrize("kill_at_bytes", [0, 1 << 16, 1 << 20, 6 << 20])
def test_sigkill_mid_write_leaves_no_partial_dataset(vhome: VaultHome, tmp_path: Path,
                                                     kill_at_bytes: int) -> None:
    """A writer killed with SIGKILL at several moments leaves only complete datasets, no
    temp file once the vault is next used, and no plaintext anywhere."""
    store.write_dataset(vhome.home, vhome.policy, vhome.master_key, "complete",
                        [{"t": "fine"}], [], {})
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    child = _child(vhome, tmpdir, f"""
        canaries = {CANARIES!r}
        def records():
            for i in range(2_000_000):
                yield {{"text": canaries[i % 2] + " " + "z" * 200, "i": i}}
        print("start", flush=True)
        store.write_dataset(home, policy, key, "big", records(), [], {{}})
    """)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == b"start"
    deadline = time.monotonic() + 60
    reached = False
    while time.monotonic() < deadline:
        temps = list(vhome.home.vault_dir.glob(".big.*.tmp"))
        if temps and temps[0].stat().st_size >= kill_at_bytes:
            reached = True
            break
        if child.poll() is not None:
            break
        time.sleep(0.002)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert reached, "the writer never got that far"
    assert list(vhome.home.vault_dir.glob(".big.*.tmp")), "killed before a temp file existed"
    leftovers = {p.name for p in vhome.home.vault_dir.iterdir()}
    assert "big.vault" not in leftovers
    assert scan([vhome.home.root, tmpdir], CANARIES) == []
    listed = [i.name for i in store.list_datasets(vhome.home)]
    assert listed == ["complete"]
    assert sorted(p.name for p in vhome.home.vault_dir.iterdir()) == [".lock", "complete.vault"]
    assert store.read_dataset(vhome.home, vhome.master_key, "complete") \
        == [{"t": "fine"}]
