"""A trained artifact is portable and self-describing: the adapter names its base model by
name, tokenizer and chat template travel with it, a Hugging Face model card is signed with
it, and plain transformers + peft load it elsewhere, inside a network namespace, with the
base model's directory on another path. Upstream model_signing verifies it with the
exported key; `appliance verify` refuses a byte flip in any file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from appliance import keys, netns
from appliance.home import Home
from appliance.passphrase import read_passphrase
from appliance.service.train import train
from tests.train.conftest import memory_records, write_recipe

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow  # one training run plus three model loads: about 3 minutes
MODEL = "smollm2-135m-instruct"
LOAD = r"""
import json, sys
import torch
from peft import AutoPeftModelForCausalLM, PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

art, base_dir = sys.argv[1], sys.argv[2]
tok = AutoTokenizer.from_pretrained(art)
ids = tok.apply_chat_template([{"role": "user", "content": "What colour is item 3?"}],
                              add_generation_prompt=True, return_tensors="pt",
                              return_dict=True)["input_ids"]
auto = AutoPeftModelForCausalLM.from_pretrained(art, dtype=torch.float32)
plain = PeftModel.from_pretrained(
    AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32), art)
bare = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
with torch.no_grad():
    a, p, b = (m(ids).logits[0, -1] for m in (auto, plain, bare))
    out = auto.generate(ids, max_new_tokens=4, do_sample=False)
print(json.dumps({"auto_vs_plain": float((a - p).abs().max()),
                  "adapter_effect": float((a - b).abs().max()),
                  "new_tokens": int(out.shape[1] - ids.shape[1]),
                  "chat_template": bool(tok.chat_template)}))
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, converted_model: Path) -> dict[str, Any]:
    """One tiny training run (1 step) shared by this module's tests."""
    from tests.train.conftest import PASSPHRASE, make_home, place_model

    root = tmp_path_factory.mktemp("portable")
    home = make_home(root / "home")
    place_model(home, converted_model)
    pass_file = root / "pass"
    pass_file.write_text(PASSPHRASE)
    result = train(home, write_recipe(root / "r.toml", steps=1, ckpt=5),
                   passphrase=read_passphrase(pass_file), records=memory_records())
    return {"home": home, "artifact": result.artifact_dir, "root": root}


def _front_matter(card: str) -> dict[str, Any]:
    import yaml

    assert card.startswith("---\n")
    head, _, _ = card[4:].partition("\n---\n")
    data = yaml.safe_load(head)
    assert isinstance(data, dict)
    return data


def test_artifact_names_base_by_name_and_carries_card_and_tokenizer(
        trained: dict[str, Any]) -> None:
    """adapter_config names the base model (no home path anywhere); README.md is a HF model
    card with the metadata, digests and verdict; tokenizer and chat template are present;
    the signed provenance records the base model's GGUF origin and dequantisation."""
    home: Home = trained["home"]
    art: Path = trained["artifact"]
    config = json.loads((art / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == MODEL
    for path in art.iterdir():
        assert str(home.root).encode() not in path.read_bytes(), path.name
    assert {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"} <= \
        {p.name for p in art.iterdir()}
    card = (art / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["library_name"] == "peft" and meta["license"] == "apache-2.0"
    assert "peft" in meta["tags"]
    losses = {m["name"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    prov = json.loads((art / "provenance.json").read_text())
    assert losses["eval loss after"] == prov["eval"]["after"]["loss"]
    assert prov["dataset"]["digest"] in card and prov["policy_digest"] in card
    assert "privacy check: not run" in card and "## Limitations" in card
    from appliance.service.artifacts import verify

    result = verify(home, art)
    assert result["ok"], result["reason"]
    signed_base = result["provenance"]["base_model"]
    assert signed_base["origin"]["file_type"] == "MOSTLY_Q4_1"
    assert "dequantised" in signed_base["origin"]["conversion"]
    assert signed_base["files"]["model.safetensors"]


@pytest.mark.skipif(not netns.probe().available, reason="needs a network namespace")
def test_plain_transformers_and_peft_load_a_copy_elsewhere(trained: dict[str, Any],
                                                           tmp_path: Path) -> None:
    """From copies on another path, AutoPeftModelForCausalLM (base found by its name) and
    PeftModel on the base directory load the same adapter and generate, offline, in a
    network namespace (torch never enters the test process)."""
    home: Home = trained["home"]
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(trained["artifact"], elsewhere / "adapter")
    shutil.copytree(home.models_dir / MODEL / "weights", elsewhere / MODEL,
                    copy_function=os.link)
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    done = subprocess.run([*netns.probe().prefix, sys.executable, "-c", LOAD, "adapter",
                           str(elsewhere / MODEL)], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["auto_vs_plain"] == 0.0 and out["adapter_effect"] > 0
    assert out["new_tokens"] >= 1 and out["chat_template"]


def test_upstream_model_signing_verifies_with_exported_key(trained: dict[str, Any],
                                                           tmp_path: Path) -> None:
    """`model_signing verify key` (the upstream CLI) accepts the artifact with the key from
    `appliance keys export`; a copy with one flipped byte fails upstream and in verify."""
    from appliance.service.artifacts import verify

    home: Home = trained["home"]
    keys.export_public(home, tmp_path)
    cli = Path(sys.executable).with_name("model_signing")
    copy = tmp_path / "copy"
    shutil.copytree(trained["artifact"], copy)

    def upstream(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(cli), "verify", "key", str(path), "--signature",
                               str(path / "model.sig"), "--public_key",
                               str(tmp_path / keys.SIGNING_PUBLIC)],
                              capture_output=True, text=True, timeout=300, check=False)

    ok = upstream(copy)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert verify(home, copy)["ok"]
    for name in ("README.md", "tokenizer.json", "adapter_config.json"):
        target = tmp_path / f"flip-{name}"
        shutil.copytree(trained["artifact"], target)
        data = bytearray((target / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (target / name).write_bytes(bytes(data))
        assert not verify(home, target)["ok"], name
    assert upstream(tmp_path / "flip-README.md").returncode != 0
