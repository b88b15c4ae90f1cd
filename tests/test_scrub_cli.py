"""The scrub command line: `scrub eval` and `dataset import` as an operator runs them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from appliance.cli.main import COMMAND_MODULES

REPO = Path(__file__).resolve().parents[1]


def test_scrub_eval_json_has_the_contract_fields(run_cli: Any, tmp_path: Path) -> None:
    """`scrub eval FILE --json` prints records, records_per_s, entities and over_redaction."""
    sample = json.loads((REPO / "tests" / "data" / "pii_test.json").read_text())[:40]
    path = tmp_path / "labeled.json"
    path.write_text(json.dumps(sample))
    done = run_cli("scrub", "eval", str(path), "--json", "--home", str(tmp_path / "home"))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["records"] == 40 and result["records_per_s"] > 0
    assert 0.0 <= result["over_redaction"] <= 1.0
    row = result["entities"]["PERSON"]
    assert set(row) >= {"n", "masked", "partial", "leaked"}
    assert abs(row["masked"] + row["partial"] + row["leaked"] - 1.0) < 1e-9


def test_scrub_eval_refuses_a_malformed_file(run_cli: Any, tmp_path: Path) -> None:
    """A labeled file with a span outside its text is bad input: exit 2, one line."""
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"full_text": "abc", "spans": [
        {"entity_type": "PERSON", "start_position": 1, "end_position": 9}]}]))
    done = run_cli("scrub", "eval", str(path), "--home", str(tmp_path / "home"))
    assert done.returncode == 2
    assert "record 0" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_dataset_import_into_an_uninitialised_home_fails_clearly(run_cli: Any,
                                                                  tmp_path: Path) -> None:
    """`dataset import` into a home that was never initialised: exit 1, one line."""
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"instruction": "Say hi", "output": "Hi"}) + "\n")
    done = run_cli("dataset", "import", str(data), "--name", "demo", "--home",
                   str(tmp_path / "home"))
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_command_modules_register_scrub_and_import() -> None:
    """The scrub command modules are part of the CLI."""
    assert "appliance.cli.scrub_cmd" in COMMAND_MODULES


def test_import_end_to_end_through_the_vault(run_cli: Any, tmp_path: Path,
                                             passphrase_file: Path) -> None:
    """init, then `dataset import --json` of the demo data: promised fields, encrypted
    storage (no planted value on disk), a refused second import under the same name."""
    import pytest

    if "appliance.cli.init_cmd" not in COMMAND_MODULES:
        pytest.skip("needs the integrated CLI (init and the vault)")
    home = str(tmp_path / "home")
    common = ("--home", home, "--passphrase-file", str(passphrase_file))
    done = run_cli("init", "--policy", str(REPO / "policy" / "demo.toml"), *common)
    assert done.returncode == 0, done.stderr
    data = REPO / "appliance" / "data" / "demo" / "dataset.jsonl"
    done = run_cli("dataset", "import", str(data), "--name", "demo", "--json", *common)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("name", "records_in", "records_out", "rejected", "quarantined", "duplicates",
                "pii", "residual", "digest"):
        assert key in report
    assert report["rejected"] == 3 and report["duplicates"] == 1 and report["residual"] == {}
    assert report["digest"].startswith("sha256:") and report["pii"]["PERSON"] > 100
    planted = json.loads(data.read_text().splitlines()[1])["messages"][1]["content"]
    name = planted.split("this is ")[1].split(".")[0] if "this is " in planted else "Acme"
    for path in Path(home).rglob("*"):
        if path.is_file():
            assert name.encode() not in path.read_bytes(), path
    listed = json.loads(run_cli("dataset", "list", "--json", *common).stdout)
    entries = listed if isinstance(listed, list) else listed.get("datasets", [])
    assert [d["digest"] for d in entries if d["name"] == "demo"] == [report["digest"]]
    again = run_cli("dataset", "import", str(data), "--name", "demo", *common)
    assert again.returncode == 1 and "already exists" in again.stderr


PLANTED = "jane.roe@example.com"
EVENT_DATA = [
    {"messages": [{"role": "user", "content": f"Mail me at {PLANTED} about item 1."},
                  {"role": "assistant", "content": "Noted."}]},
    *({"messages": [{"role": "user", "content": f"What colour is item {i}?"},
                    {"role": "assistant", "content": f"Item {i} is red."}]} for i in range(2, 8)),
    {"bogus": 1},
]


def test_import_json_events_streams_progress_then_the_report(run_cli: Any, tmp_path: Path,
                                                             passphrase_file: Path) -> None:
    """`dataset import --json-events`: progress lines for every stage (counts only), then
    the report (the --json fields) as the last line; no line carries the planted address."""
    home = str(tmp_path / "home")
    common = ("--home", home, "--passphrase-file", str(passphrase_file))
    assert run_cli("init", "--policy", str(REPO / "policy" / "demo.toml"),
                   *common).returncode == 0
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in EVENT_DATA))
    done = run_cli("dataset", "import", str(data), "--name", "ev", "--json-events", *common)
    assert done.returncode == 0, done.stderr
    assert PLANTED not in done.stdout and "jane.roe" not in done.stdout
    events = [json.loads(line) for line in done.stdout.splitlines()]
    progress = [e for e in events[:-1] if e["type"] == "progress"]
    assert len(progress) == len(events) - 1
    assert {e["stage"] for e in progress} == {"read", "scrub", "residual", "write"}
    assert all(set(e) == {"type", "stage", "done", "total"} for e in progress)
    scrub = [e for e in progress if e["stage"] == "scrub"]
    assert scrub[-1]["done"] == scrub[-1]["total"] == 14
    last = events[-1]
    assert last["type"] == "report"
    report = last["report"]
    assert (report["records_in"], report["records_out"], report["rejected"]) == (8, 7, 1)
    assert report["pii"]["EMAIL_ADDRESS"] == 1 and report["residual"] == {}
    both = run_cli("dataset", "import", str(data), "--name", "ev2", "--json", "--json-events",
                   *common)
    assert both.returncode == 2 and "not allowed with" in both.stderr
