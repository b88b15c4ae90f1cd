"""Run CLI commands in this one process (`appliance.cli.main.main`), then report which
ML-stack modules this process imported and whether it maps libtorch.

Usage: python -m tests.sandbox.cli_helper HOME PASSFILE RECIPE OUT_DIR [data]
Runs `train RECIPE`, `export merge` of its artifact, `privacy-check` of it and `doctor`;
with `data` instead: `dataset import` of a small chat file, `scrub eval` of the shipped
labeled test file and `model import` of the default GGUF under a new name (a
conversion). Prints one JSON line per command, then {"heavy": [...], "maps_libtorch":
bool}. Training
reads the in-memory records of tests.train.conftest instead of the vault (the records are
not what this checks), by replacing the service's default records provider.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

from appliance.cli.main import main as cli
from appliance.models.importer import default_gguf
from appliance.service import train as service_train
from tests.train.conftest import CHAT, memory_records

HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "spacy", "safetensors.torch",
         "accelerate", "presidio_analyzer")


def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli(list(argv))
    return code, out.getvalue()


def main() -> int:
    """Run the commands and report."""
    home, pass_file, recipe, out_dir = sys.argv[1:5]
    assert service_train.train.__kwdefaults__ is not None
    service_train.train.__kwdefaults__["records"] = memory_records()
    common = ["--home", home, "--passphrase-file", pass_file]
    if sys.argv[5:] == ["data"]:
        _data(home, common, Path(out_dir))
    else:
        _ml(recipe, home, common, Path(out_dir))
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY or m in HEAVY)
    maps = Path("/proc/self/maps").read_text()
    print(json.dumps({"heavy": heavy, "maps_libtorch": "libtorch" in maps}), flush=True)
    return 0


def _ml(recipe: str, home: str, common: list[str], out_dir: Path) -> None:
    code, out = _run("train", recipe, *common)
    artifact = out.strip().splitlines()[-1] if out.strip() else ""
    print(json.dumps({"command": "train", "code": code, "artifact": artifact}), flush=True)
    code, _ = _run("export", "merge", artifact, "--out", str(out_dir / "merged"),
                   *common)  # the merged export is signed: it needs the passphrase
    print(json.dumps({"command": "export", "code": code}), flush=True)
    code, _ = _run("privacy-check", artifact, *common)
    print(json.dumps({"command": "privacy-check", "code": code}), flush=True)
    code, _ = _run("doctor", "--home", home)
    print(json.dumps({"command": "doctor", "code": code}), flush=True)


def _data(home: str, common: list[str], out_dir: Path) -> None:
    data = out_dir / "chats.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in CHAT))
    code, _ = _run("dataset", "import", str(data), "--name", "chats", *common)
    print(json.dumps({"command": "dataset import", "code": code}), flush=True)
    labeled = Path(__file__).resolve().parent.parent / "data" / "pii_test.json"
    code, _ = _run("scrub", "eval", str(labeled), "--json", "--home", home)
    print(json.dumps({"command": "scrub eval", "code": code}), flush=True)
    code, _ = _run("model", "import", str(default_gguf()), "--name", "again", *common)
    print(json.dumps({"command": "model import", "code": code}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
