"""`appliance export merge`: refused unless the policy allows it; merges only a verified
artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.home import Home
from appliance.passphrase import read_passphrase
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
                   passphrase=read_passphrase(pass_file), records=memory_records())
    assert result.signed
    out = merge(train_home, result.artifact_dir, tmp_path / "merged", read_passphrase(pass_file))
    merged = Path(out["out"])
    assert (merged / "model.safetensors").is_file() and (merged / "config.json").is_file()
    assert not list(merged.glob("*.bin"))
    _check_signed_export(train_home, merged, result.artifact_dir, tmp_path)
    report = result.artifact_dir / "report.json"
    report.write_text(report.read_text() + " ")
    with pytest.raises(IntegrityError):
        merge(train_home, result.artifact_dir, tmp_path / "merged2", read_passphrase(pass_file))
    assert not (tmp_path / "merged2").exists()


def _check_signed_export(home: Home, merged: Path, artifact: Path, tmp_path: Path) -> None:
    """The export verifies (appliance and upstream model_signing with the exported key), its
    provenance names the adapter artifact's root digest and the merged build type, and a
    flipped byte in the weights is refused."""
    import shutil
    import subprocess
    import sys

    from appliance import keys
    from appliance.service.artifacts import verify

    checked = verify(home, merged)
    assert checked["ok"], checked["reason"]
    prov = checked["provenance"]
    assert prov["adapter"]["digest"] == verify(home, artifact)["root_digest"]
    assert prov["build_type"].endswith("docs/buildtypes/merged-model/v1.md")
    keys.export_public(home, tmp_path)
    cli = Path(sys.executable).with_name("model_signing")
    upstream = subprocess.run([str(cli), "verify", "key", str(merged), "--signature",
                               str(merged / "model.sig"), "--public_key",
                               str(tmp_path / keys.SIGNING_PUBLIC)],
                              capture_output=True, text=True, timeout=300, check=False)
    assert upstream.returncode == 0, upstream.stdout + upstream.stderr
    flipped = tmp_path / "flipped"
    shutil.copytree(merged, flipped)
    with open(flipped / "model.safetensors", "r+b") as handle:
        handle.seek(-7, 2)
        byte = handle.read(1)
        handle.seek(-7, 2)
        handle.write(bytes([byte[0] ^ 0x01]))
    assert not verify(home, flipped)["ok"]
