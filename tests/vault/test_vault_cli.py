"""`appliance dataset ...` and `appliance passphrase change` through the real command line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from vault_helpers import VaultHome

from appliance.vault import store

TRAIN = [{"text": f"train record {i}", "i": i} for i in range(12)]
EVAL = [{"text": "eval record", "i": -1}]
REPORT = {"records_in": 13, "pii": {"PERSON": 2}}


def _seed(vh: VaultHome, name: str = "ds") -> store.DatasetInfo:
    return store.write_dataset(vh.home, vh.policy, vh.master_key, name, TRAIN, EVAL,
                               {"scrub_report": REPORT})


def _vault_digests(vh: VaultHome) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in vh.home.vault_dir.glob("*.vault")}


def _one_line_error(done: Any, code: int, *needles: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("appliance: "), done.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_list_needs_no_passphrase(vhome: VaultHome, run_cli) -> None:  # type: ignore[no-untyped-def]
    """list --json shows names, counts and digests without any passphrase."""
    info = _seed(vhome)
    done = run_cli("--home", str(vhome.home.root), "dataset", "list", "--json",
                   env={"APPLIANCE_PASSPHRASE_FILE": ""})
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["datasets"]
    assert row["name"] == "ds" and row["digest"] == info.digest
    assert (row["train_count"], row["eval_count"], row["count"]) == (12, 1, 13)
    human = run_cli("dataset", "list", "--home", str(vhome.home.root))
    assert "ds" in human.stdout and info.digest in human.stdout


def test_show_prints_metadata_and_report_only(vhome: VaultHome, run_cli) -> None:  # type: ignore[no-untyped-def]
    """show --json verifies the dataset and prints its report, never its records."""
    info = _seed(vhome)
    done = run_cli("dataset", "show", "ds", "--json", env=vhome.cli_env())
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["metadata"]["scrub_report"] == REPORT and shown["verified"] is True
    assert shown["digest"] == info.digest and shown["train"] == 12
    assert "train record" not in done.stdout


def test_sample_prints_records(vhome: VaultHome, run_cli) -> None:  # type: ignore[no-untyped-def]
    """sample prints the first K records of a split, or K random ones with --seed."""
    _seed(vhome)
    env = vhome.cli_env()
    done = run_cli("dataset", "sample", "ds", "-n", "3", env=env)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == TRAIN[:3]
    done = run_cli("dataset", "sample", "ds", "--split", "eval", env=env)
    assert [json.loads(line) for line in done.stdout.splitlines()] == EVAL
    done = run_cli("dataset", "sample", "ds", "-n", "4", "--seed", "1", env=env)
    picked = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(picked) == 4 and all(r in TRAIN for r in picked)


def test_wrong_passphrase_is_one_line_exit_1(vhome: VaultHome, tmp_path: Path,
                                             run_cli) -> None:  # type: ignore[no-untyped-def]
    """A wrong passphrase prints one line naming the dataset and returns no record."""
    _seed(vhome)
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    done = run_cli("dataset", "sample", "ds", "--passphrase-file", str(wrong),
                   env={"APPLIANCE_HOME": str(vhome.home.root)})
    _one_line_error(done, 1, "'ds'", "passphrase")
    assert done.stdout == ""


def test_tampered_dataset_is_one_line_exit_1(vhome: VaultHome, run_cli) -> None:  # type: ignore[no-untyped-def]
    """A damaged file prints one line naming the dataset; nothing reaches stdout."""
    info = _seed(vhome)
    data = bytearray(Path(info.path).read_bytes())
    data[len(data) // 2] ^= 0x10
    Path(info.path).write_bytes(bytes(data))
    for action in ("sample", "show", "verify"):
        done = run_cli("dataset", action, "ds", env=vhome.cli_env())
        _one_line_error(done, 1, "dataset 'ds' failed verification")
        assert done.stdout == ""
    last = json.loads(vhome.home.audit_log.read_text().splitlines()[-1])
    assert (last["action"], last["outcome"], last["error"]) == \
        ("dataset.verify", "failed", "IntegrityError")


def test_verify_checks_the_whole_dataset(vhome: VaultHome, run_cli) -> None:  # type: ignore[no-untyped-def]
    """verify --json reports ok with the digest and count, and prints no record."""
    info = _seed(vhome)
    done = run_cli("dataset", "verify", "ds", "--json", env=vhome.cli_env())
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is True and result["digest"] == info.digest and result["count"] == 13
    assert "train record" not in done.stdout


def test_rm_then_missing(vhome: VaultHome, run_cli) -> None:  # type: ignore[no-untyped-def]
    """rm removes the dataset; a second rm and a sample name what is missing."""
    _seed(vhome)
    env = vhome.cli_env()
    assert run_cli("dataset", "rm", "ds", env=env).returncode == 0
    assert json.loads(run_cli("dataset", "list", "--json", env=env).stdout)["datasets"] == []
    _one_line_error(run_cli("dataset", "rm", "ds", env=env), 1, "no dataset named 'ds'")
    _one_line_error(run_cli("dataset", "sample", "ds", env=env), 1, "no dataset named 'ds'")


def test_bad_usage_and_uninitialised_home(vhome: VaultHome, tmp_path: Path,
                                          run_cli) -> None:  # type: ignore[no-untyped-def]
    """A bad name is exit 2; a home that was never initialised is exit 1."""
    _one_line_error(run_cli("dataset", "show", "../x", env=vhome.cli_env()), 2, "name")
    done = run_cli("--home", str(tmp_path / "empty"), "dataset", "list")
    _one_line_error(done, 1, "not initialised")


def test_export_follows_policy(vhome: VaultHome, vhome_export: VaultHome, tmp_path: Path,
                               run_cli) -> None:  # type: ignore[no-untyped-def]
    """export is refused (exit 1) under export.datasets = "never" and, when allowed, writes a
    file that opens with the recipient passphrase only."""
    _seed(vhome)
    out = tmp_path / "out.vault"
    done = run_cli("dataset", "export", "ds", "--out", str(out), env=vhome.cli_env())
    _one_line_error(done, 1, "forbids")
    assert not out.exists()

    _seed(vhome_export)
    recipient = tmp_path / "recipient"
    recipient.write_text("recipient passphrase 123\n")
    done = run_cli("dataset", "export", "ds", "--out", str(out), "--recipient-passphrase-file",
                   str(recipient), "--json", env=vhome_export.cli_env())
    assert done.returncode == 0, done.stderr
    meta, records = store.read_export(out, vhome_export.policy, b"recipient passphrase 123")
    assert records == TRAIN + EVAL and meta == {"scrub_report": REPORT}
    again = run_cli("dataset", "export", "ds", "--out", str(out), "--recipient-passphrase-file",
                    str(recipient), env=vhome_export.cli_env())
    _one_line_error(again, 1, "already exists")


def test_passphrase_change_rewraps_only(vhome: VaultHome, tmp_path: Path,
                                        run_cli) -> None:  # type: ignore[no-untyped-def]
    """After a change every dataset byte is unchanged, the old passphrase is refused and
    the new one opens the datasets."""
    _seed(vhome, "one")
    _seed(vhome, "two")
    before = _vault_digests(vhome)
    sealed_before = (vhome.home.keys_dir / "vault-master.sealed.json").read_bytes()
    new = tmp_path / "new-pass"
    new.write_text("a brand new passphrase\n")
    done = run_cli("passphrase", "change", "--new-passphrase-file", str(new),
                   env=vhome.cli_env())
    assert done.returncode == 0, done.stderr
    assert _vault_digests(vhome) == before
    assert (vhome.home.keys_dir / "vault-master.sealed.json").read_bytes() != sealed_before
    old = run_cli("dataset", "sample", "one", env=vhome.cli_env())
    _one_line_error(old, 1, "wrong passphrase")
    ok = run_cli("dataset", "sample", "two", "--passphrase-file", str(new),
                 env={"APPLIANCE_HOME": str(vhome.home.root)})
    assert ok.returncode == 0 and json.loads(ok.stdout.splitlines()[0]) == TRAIN[0]
    old_again = run_cli("passphrase", "change", "--new-passphrase-file", str(new),
                        env=vhome.cli_env())
    _one_line_error(old_again, 1, "passphrase")


def test_operations_are_audited_without_record_text(vhome: VaultHome,
                                                    run_cli) -> None:  # type: ignore[no-untyped-def]
    """Each operation leaves an audit event with digest and count, never record text."""
    info = _seed(vhome)
    env = vhome.cli_env()
    for args in (("list",), ("show", "ds"), ("sample", "ds"), ("rm", "ds")):
        assert run_cli("dataset", *args, env=env).returncode == 0
    events = [json.loads(line) for line in vhome.home.audit_log.read_text().splitlines()]
    events = [e for e in events if e["action"].startswith("dataset.")]  # after init's
    actions = [e["action"] for e in events]
    assert actions == ["dataset.write", "dataset.list", "dataset.metadata", "dataset.read",
                       "dataset.remove"]
    for event in events:
        assert event["outcome"] == "ok"
        if event["action"] != "dataset.list":
            assert event["digest"] == info.digest and event["dataset"] == "ds"
    assert "train record" not in vhome.home.audit_log.read_text()
