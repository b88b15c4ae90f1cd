"""`appliance export merge`: refused unless the policy allows it; merges only a verified
artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.home import Home
from appliance.resources import shipped_policy
from tests.train.conftest import make_home, memory_records, write_recipe


def test_merge_refused_by_default_policy(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """The production policy forbids merged weights: exit 1, audited, nothing written."""
    home = make_home(tmp_path / "home", shipped_policy("default").read_text())
    art = tmp_path / "artifact"
    art.mkdir()
    done = run_cli("export", "merge", str(art), "--out", str(tmp_path / "out"),
                   "--home", str(home.root))
    assert done.returncode == 1 and "export.merged_weights" in done.stderr
    assert not (tmp_path / "out").exists()
    assert any(json.loads(x)["action"] == "export.merge"
               for x in home.audit_log.read_text().splitlines())


@pytest.mark.slow
def test_merge_verifies_first_then_writes_safetensors(train_home: Home, pass_file: Path,
                                                      tmp_path: Path) -> None:
    """A signed artifact merges into safetensors; a tampered one is refused unmerged."""
    from appliance.errors import IntegrityError
    from appliance.service.export import merge
    from appliance.service.train import train

    result = train(train_home, write_recipe(tmp_path / "r.toml", steps=1, ckpt=5),
                   passphrase_file=str(pass_file), records=memory_records())
    assert result.signed
    out = merge(train_home, result.artifact_dir, tmp_path / "merged")
    merged = Path(out["out"])
    assert (merged / "model.safetensors").is_file() and (merged / "config.json").is_file()
    assert not list(merged.glob("*.bin"))
    report = result.artifact_dir / "report.json"
    report.write_text(report.read_text() + " ")
    with pytest.raises(IntegrityError):
        merge(train_home, result.artifact_dir, tmp_path / "merged2")
    assert not (tmp_path / "merged2").exists()
