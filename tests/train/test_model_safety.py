"""Model import safety: pickle and custom code refused before parsing, malformed
safetensors refused with a clear error, a real safetensors directory imported with digests."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import pytest

from appliance.digests import tree_digest
from appliance.errors import ModelFormatError
from appliance.models import safety
from tests.train.conftest import make_home


class _Boom:
    """Unpickling this writes a marker file: proof that a pickle was (not) opened."""

    marker = ""

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (Path.write_text, (Path(self.marker), "pwned"))  # type: ignore[return-value]


def _evil_pickle(path: Path, marker: Path) -> None:
    boom = _Boom()
    boom.marker = str(marker)
    _Boom.marker = str(marker)
    path.write_bytes(pickle.dumps(boom))


def _safetensors_bytes(header: dict[str, object], data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _tiny_model_dir(path: Path) -> Path:
    """A real (tiny, random) Llama model saved by transformers as safetensors."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    LlamaForCausalLM(config).save_pretrained(path)
    (path / "README.md").write_text("a model card")
    return path


@pytest.mark.parametrize("suffix", [".bin", ".pt", ".pth", ".pkl", ".ckpt"])
def test_pickle_weights_refused_before_any_parser_opens_them(tmp_path: Path,
                                                             suffix: str) -> None:
    """A directory with pickle weights is refused by name; the pickle never runs."""
    model = _tiny_model_dir(tmp_path / "m")
    marker = tmp_path / "marker"
    _evil_pickle(model / f"pytorch_model{suffix}", marker)
    with pytest.raises(ModelFormatError, match="pickle weight file refused"):
        safety.scan_model_dir(model)
    assert not marker.exists()


def test_names_are_checked_before_headers(tmp_path: Path) -> None:
    """With both a malformed safetensors file and a pickle, the pickle refusal comes first."""
    model = _tiny_model_dir(tmp_path / "m")
    (model / "model.safetensors").write_bytes(b"\xff" * 4)
    _evil_pickle(model / "extra.bin", tmp_path / "marker")
    with pytest.raises(ModelFormatError, match="pickle"):
        safety.scan_model_dir(model)


def test_custom_code_file_refused(tmp_path: Path) -> None:
    """A *.py file in the model directory is refused (no remote code)."""
    model = _tiny_model_dir(tmp_path / "m")
    (model / "modeling_evil.py").write_text("import os\n")
    with pytest.raises(ModelFormatError, match="custom code refused"):
        safety.scan_model_dir(model)


def test_auto_map_refused(tmp_path: Path) -> None:
    """A config.json with auto_map (custom architecture code) is refused."""
    model = _tiny_model_dir(tmp_path / "m")
    config = json.loads((model / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.Evil"}
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFormatError, match="auto_map"):
        safety.scan_model_dir(model)


def test_symlink_refused(tmp_path: Path) -> None:
    """A symbolic link inside a model directory is refused."""
    model = _tiny_model_dir(tmp_path / "m")
    (model / "tokenizer.json").symlink_to("/etc/passwd")
    with pytest.raises(ModelFormatError, match="not a regular file"):
        safety.scan_model_dir(model)


GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}


@pytest.mark.parametrize(("blob", "message"), [
    (b"\x01\x02", "shorter than"),
    (struct.pack("<Q", 1 << 40) + b"{}", "exceeds"),
    (struct.pack("<Q", 500) + b"{}", "runs past the end"),
    (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    (struct.pack("<Q", 3) + b"{x}", "not valid JSON"),
    (_safetensors_bytes({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                         "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
                        b"\0" * 16), "overlaps"),
    (_safetensors_bytes({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}},
                        b"\0" * 8), "outside"),
    (_safetensors_bytes({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
                        b"\0" * 8), "does not match"),
    (_safetensors_bytes({"a": {"dtype": "X99", "shape": [2], "data_offsets": [0, 8]}},
                        b"\0" * 8), "unknown dtype"),
    (_safetensors_bytes({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}},
                        b"\0" * 8), "malformed shape"),
    (struct.pack("<Q", 30) + b'{"a": 1, "a": 2}'.ljust(30), "duplicate key"),
])
def test_malformed_safetensors_is_a_format_error(tmp_path: Path, blob: bytes,
                                                 message: str) -> None:
    """Crafted safetensors headers give ModelFormatError naming the defect, not a crash."""
    path = tmp_path / "model.safetensors"
    path.write_bytes(blob)
    with pytest.raises(ModelFormatError, match=message):
        safety.check_safetensors(path)


def test_wellformed_safetensors_passes(tmp_path: Path) -> None:
    """A valid header with adjacent tensors passes, and agrees with the safetensors library."""
    from safetensors.torch import load_file

    path = tmp_path / "ok.safetensors"
    path.write_bytes(_safetensors_bytes(GOOD, b"\0" * 16))
    assert set(safety.check_safetensors(path)) == {"a", "b"}
    assert set(load_file(path)) == {"a", "b"}


def test_cli_refuses_pickle_dir_with_exit_2(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """`appliance model import` on a pickle directory: exit 2, one line naming the file."""
    home = make_home(tmp_path / "home")
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    _evil_pickle(model / "pytorch_model.bin", tmp_path / "marker")
    done = run_cli("model", "import", str(model), "--name", "evil", "--home", str(home.root))
    assert done.returncode == 2
    assert "pytorch_model.bin" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (home.models_dir / "evil").exists()
    assert not (tmp_path / "marker").exists()


def test_cli_refuses_non_gguf_file_and_bad_magic(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """A single file must be GGUF: a bad magic is exit 2 and leaves nothing behind."""
    home = make_home(tmp_path / "home")
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"NOPE" + b"\0" * 64)
    done = run_cli("model", "import", str(fake), "--name", "x", "--home", str(home.root))
    assert done.returncode == 2 and "bad magic" in done.stderr
    assert [p.name for p in home.models_dir.iterdir()] == []


def _gguf_of(arch: bytes) -> bytes:
    """A GGUF header our check accepts: an architecture and its block count, no tensors."""
    from tests.faults.test_fuzz import gguf_bytes

    return gguf_bytes([(b"general.architecture", 8, struct.pack("<Q", len(arch)) + arch),
                       (arch + b".block_count", 4, struct.pack("<I", 30))])


@pytest.mark.netns
def test_an_operator_error_in_a_child_job_comes_back_as_itself(tmp_path: Path) -> None:
    """The real child (job `convert` on a GGUF file that is not there: the metadata reader
    fails before transformers is imported) reports its ModelFormatError, and the parent
    rebuilds the same class, message, place and hint, hence the same line and exit code."""
    from appliance.errors import ModelFormatError
    from appliance.train import isolation

    events: list[dict[str, object]] = []
    missing = tmp_path / "absent.gguf"
    result = isolation.run_isolated({"kind": "convert", "source": str(missing),
                                     "out": str(tmp_path / "out")}, events.append,
                                    isolation.require_isolation())
    assert result.returncode == 1
    error = next(e for e in events if e["type"] == "error")
    rebuilt = isolation.child_error(error)
    assert isinstance(rebuilt, ModelFormatError) and rebuilt.where == str(missing)
    assert rebuilt.line() == error["message"]
    assert rebuilt.message.startswith("GGUF metadata could not be read")
    assert isolation.child_error({"type": "error", "kind": "ValueError", "message": "x"}) \
        is None


@pytest.mark.netns
@pytest.mark.slow  # a minute on 2 busy cores: transformers is imported twice in the sandbox
def test_gguf_refusals_of_the_sandboxed_converter_are_one_line(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """Refusals raised inside the sandboxed converter come back as one exit-2 line: the
    converter's own ModelFormatError unchanged (an unsupported architecture), and any other
    failure of transformers (no tokenizer in the file) as a ModelFormatError naming it,
    never an internal error; nothing is left in the model store."""
    home = make_home(tmp_path / "home")
    for arch, expected in ((b"qwen2", "GGUF architecture 'qwen2' is not supported "
                                      "(supported: llama)"),
                           (b"llama", "the GGUF conversion failed: Cannot build a tokenizer")):
        odd = tmp_path / f"{arch.decode()}.gguf"
        odd.write_bytes(_gguf_of(arch))
        done = run_cli("model", "import", str(odd), "--name", "odd", "--home", str(home.root))
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr[-2000:]
        staged = f"appliance: {home.models_dir}/.import-odd-"
        assert lines[0].startswith(staged) and f": {expected}" in lines[0], lines
        assert [p.name for p in home.models_dir.iterdir()] == []


def test_import_safetensors_dir_records_digests_and_policy(tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """A safetensors directory imports with per-file sha256 and root digest; the default
    demo policy does not allow it; a second import of the same source is a no-op."""
    home = make_home(tmp_path / "home")
    model = _tiny_model_dir(tmp_path / "m")
    done = run_cli("model", "import", str(model), "--name", "tiny", "--json",
                   "--home", str(home.root))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    weights = home.models_dir / "tiny" / "weights"
    assert result["root_digest"] == tree_digest(weights)
    assert "model.safetensors" in result["files"] and result["skipped"] == ["README.md"]
    assert result["allowed"] is False and result["cached"] is False
    again = json.loads(run_cli("model", "import", str(model), "--name", "tiny", "--json",
                               "--home", str(home.root)).stdout)
    assert again["cached"] is True and again["root_digest"] == result["root_digest"]
    listed = json.loads(run_cli("model", "list", "--json", "--home", str(home.root)).stdout)
    assert [(m["name"], m["allowed"]) for m in listed["models"]] == [("tiny", False)]
    log = home.audit_log.read_text()
    assert log.count('"model.import"') == 2
