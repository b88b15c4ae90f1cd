"""The command line: exit codes, one-line errors, fast start-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_policy_check_exit_codes_and_lines(run_cli, tmp_path):
    """A bad policy exits 2 and lists FILE: dotted.key: message lines; a good one exits 0."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[meta]\nname = "x"\nbogus = 1\n[pii]\nscore_threshold = "high"\n')
    done = run_cli("policy", "check", str(bad))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert f"{bad}: meta.bogus: unknown key (not in the policy schema)" in lines
    assert any(line.startswith(f"{bad}: pii.score_threshold: ") for line in lines)
    assert "Traceback" not in done.stderr
    good = run_cli("policy", "check", str(REPO / "policy" / "default.toml"))
    assert good.returncode == 0, good.stderr


def test_policy_check_json(run_cli, tmp_path):
    """--json reports ok, problems and the digest."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[meta]\nname = "x"\nbogus = 1\n')
    report = json.loads(run_cli("policy", "check", str(bad), "--json").stdout)
    assert report["ok"] is False and report["problems"]


def test_policy_hash_prints_sha256(run_cli):
    """policy hash prints sha256:<64 hex>."""
    done = run_cli("policy", "hash", str(REPO / "policy" / "default.toml"))
    assert done.returncode == 0
    assert done.stdout.startswith("sha256:") and len(done.stdout.strip()) == 71


def test_missing_policy_file_is_one_line(run_cli, tmp_path):
    """A missing file is one clear line, exit 2."""
    done = run_cli("policy", "hash", str(tmp_path / "nope.toml"))
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1
    assert "nope.toml" in done.stderr


def test_unknown_flag_is_usage_error(run_cli):
    """Unknown flags exit 2 with one line."""
    done = run_cli("policy", "check", "--frobnicate")
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1


def test_cli_start_up_imports_nothing_heavy():
    """Building the whole parser and importing appliance pulls in no torch, transformers,
    presidio, spacy, textual or datasets."""
    code = ("import sys, appliance, appliance.cli.main as m; m.build_parser();"
            "heavy = [n for n in ('torch', 'transformers', 'presidio_analyzer', 'spacy',"
            " 'textual', 'peft', 'bitsandbytes', 'datasets', 'pyarrow', 'pandas')"
            " if n in sys.modules]; print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, check=True, env={"PYTHONPATH": str(REPO)})
    assert done.stdout.strip() == "[]"


def test_doctor_json_shape(run_cli, tmp_path):
    """doctor --json lists required and advisory checks and an overall verdict."""
    done = run_cli("doctor", "--json", "--home", str(tmp_path / "home"))
    report = json.loads(done.stdout)
    names = {c["name"] for c in report["checks"]}
    assert {"python", "dependencies", "network-namespace", "network-routes", "accelerator",
            "disk", "pii-model", "home"} <= names
    assert done.returncode == (0 if report["ok"] else 1)
    home = next(c for c in report["checks"] if c["name"] == "home")
    assert home["required"] is False and home["ok"] is False


def test_doctor_fails_when_the_pii_model_digest_differs(run_cli, tmp_path):
    """A required check failing (NER model digest not the pinned one) makes doctor exit 1."""
    home = tmp_path / "home"
    (home / "policy").mkdir(parents=True)
    policy = (REPO / "policy" / "demo.toml").read_text().replace(
        "sha256:37afdb95c7d733fdae230ccb848c13d0755ad91e579761d142b14e475d28113d",
        "sha256:" + "0" * 64)
    (home / "policy" / "active.toml").write_text(policy)
    (home / "home.json").write_text("{}")
    done = run_cli("doctor", "--json", "--home", str(home))
    report = json.loads(done.stdout)
    check = next(c for c in report["checks"] if c["name"] == "pii-model")
    assert check["ok"] is False and check["required"] is True
    assert "differs" in check["detail"]
    assert report["ok"] is False and done.returncode == 1


def test_a_failing_json_command_ends_with_a_failed_event(run_cli, tmp_path):
    """With --json (or --json-events) an error is the stderr line and, as the last stdout
    line, {"type": "failed", "error": LINE, "exit_code": N} (what the console reads); bad
    input is named before any passphrase is asked for; without --json stdout stays empty."""
    home = tmp_path / "nohome"
    done = run_cli("--home", str(home), "dataset", "show", "bad name", "--json")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("appliance: ") and "invalid dataset name" in line
    event = json.loads(done.stdout.strip().splitlines()[-1])
    assert event == {"type": "failed", "error": line.removeprefix("appliance: "),
                     "exit_code": 2}
    plain = run_cli("--home", str(home), "dataset", "show", "bad name")
    assert plain.returncode == 2 and plain.stdout == "" and plain.stderr == done.stderr
