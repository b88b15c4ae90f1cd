"""`appliance export gguf`: a verified artifact merged and written as a signed GGUF with an
Ollama Modelfile. gguf's reader opens it with the expected tensors, and its logits (loaded
back through transformers' GGUF loader, in a network namespace) match the merged
safetensors model's: F16 near-exact, Q8_0 close."""

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
from tests.train.conftest import memory_records, write_recipe

pytestmark = [pytest.mark.slow,  # a training run, two merges, two GGUF exports: minutes
              pytest.mark.skipif(not netns.probe().available,
                                 reason="needs a network namespace")]
LOGITS = r"""
import json, sys
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

merged, folder = sys.argv[1], sys.argv[2]
ref = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
tok = AutoTokenizer.from_pretrained(merged)
out = {}
for name in sys.argv[3:]:
    g = AutoModelForCausalLM.from_pretrained(folder + "/" + name, gguf_file="model.gguf",
                                             dtype=torch.float32)
    gtok = AutoTokenizer.from_pretrained(folder + "/" + name, gguf_file="model.gguf")
    diffs, means, scale, agree, total, same_ids = [], [], 0.0, 0, 0, True
    for prompt in ("What colour is item 3?", "The capital of France is",
                   "Add the numbers 2 and 3."):
        ids = tok.apply_chat_template([{"role": "user", "content": prompt}],
                                      add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)["input_ids"]
        text = tok.decode(ids[0])
        same_ids &= gtok(text, add_special_tokens=False)["input_ids"] == ids[0].tolist()
        with torch.no_grad():
            a, b = ref(ids).logits[0], g(ids).logits[0]
        diffs.append(float((a - b).abs().max()))
        means.append(float((a - b).abs().mean()))
        scale = max(scale, float(a.abs().max()))
        agree += int((a.argmax(-1) == b.argmax(-1)).sum())
        total += a.shape[0]
    out[name] = {"max_abs_diff": max(diffs), "mean_abs_diff": sum(means) / len(means),
                 "max_abs_logit": scale, "top1_agreement": agree / total,
                 "positions": total, "same_token_ids": same_ids}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, converted_model: Path
             ) -> dict[str, Any]:
    """One tiny run, its merged export and its F16 and Q8_0 GGUF exports."""
    from appliance.service.export import export_gguf, merge
    from appliance.service.train import train
    from tests.train.conftest import PASSPHRASE, make_home, place_model

    root = tmp_path_factory.mktemp("gguf")
    home = make_home(root / "home")
    place_model(home, converted_model)
    pass_file = root / "pass"
    pass_file.write_text(PASSPHRASE)
    result = train(home, write_recipe(root / "r.toml", steps=1, ckpt=5),
                   passphrase=read_passphrase(pass_file), records=memory_records())
    merge(home, result.artifact_dir, root / "merged", read_passphrase(pass_file))
    outs = {q: export_gguf(home, result.artifact_dir, root / "gguf" / q, q,
                       passphrase=read_passphrase(pass_file))
            for q in ("f16", "q8_0")}
    return {"home": home, "root": root, "artifact": result.artifact_dir, "outs": outs}


def test_gguf_reader_sees_the_expected_tensors_and_metadata(exported: dict[str, Any]) -> None:
    """Every Llama tensor under its GGUF name (no output.weight: embeddings are tied), norms
    in F32, matrices in the asked type; architecture, tokenizer and chat template present;
    the Modelfile points at the file."""
    import gguf

    for qtype, want in (("f16", gguf.GGMLQuantizationType.F16),
                        ("q8_0", gguf.GGMLQuantizationType.Q8_0)):
        folder = exported["root"] / "gguf" / qtype
        reader = gguf.GGUFReader(str(folder / "model.gguf"))
        tensors = {t.name: t for t in reader.tensors}
        assert len(tensors) == 2 + 30 * 9 and "output.weight" not in tensors
        assert {"token_embd.weight", "output_norm.weight", "blk.29.ffn_down.weight",
                "blk.0.attn_q.weight", "blk.0.attn_k.weight"} <= set(tensors)
        assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
        assert tensors["blk.3.attn_v.weight"].tensor_type == want
        assert reader.fields["general.architecture"].contents() == "llama"
        assert reader.fields["llama.block_count"].contents() == 30
        assert len(reader.fields["tokenizer.ggml.tokens"].data) == 49152
        assert "im_start" in reader.fields["tokenizer.chat_template"].contents()
        assert "FROM ./model.gguf" in (folder / "Modelfile").read_text()


def test_gguf_logits_match_the_merged_model(exported: dict[str, Any]) -> None:
    """Loaded back by transformers (inside a network namespace), the F16 file's logits are
    within 0.1 of the merged float32 model's with the same top-1 token everywhere; Q8_0's
    within a tenth of the largest logit (mean error under 1 % of it), top-1 the same at
    90 % of positions or more; the tokenizer round-trips."""
    root: Path = exported["root"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(root / "hf"),
               TQDM_DISABLE="1")
    done = subprocess.run([*netns.probe().prefix, sys.executable, "-c", LOGITS,
                           str(root / "merged"), str(root / "gguf"), "f16", "q8_0"],
                          env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print("gguf logit check:", json.dumps(result))
    assert result["f16"]["max_abs_diff"] < 0.1 and result["f16"]["top1_agreement"] == 1.0
    q8 = result["q8_0"]
    assert q8["max_abs_diff"] < 0.1 * q8["max_abs_logit"]
    assert q8["mean_abs_diff"] < 0.01 * q8["max_abs_logit"]
    assert q8["top1_agreement"] >= 0.9
    assert result["f16"]["same_token_ids"] and result["q8_0"]["same_token_ids"]


def test_gguf_export_is_signed_and_verifies_upstream(exported: dict[str, Any],
                                                     tmp_path: Path) -> None:
    """`appliance verify` and upstream model_signing (exported key) accept the GGUF export;
    its provenance names the adapter artifact; a flipped byte in model.gguf is refused."""
    from appliance.service.artifacts import verify

    home: Home = exported["home"]
    folder = exported["root"] / "gguf" / "q8_0"
    checked = verify(home, folder)
    assert checked["ok"], checked["reason"]
    assert checked["provenance"]["adapter"]["digest"] == \
        verify(home, exported["artifact"])["root_digest"]
    assert checked["provenance"]["build_type"].endswith("docs/buildtypes/gguf-export/v1.md")
    keys.export_public(home, tmp_path)
    cli = Path(sys.executable).with_name("model_signing")
    upstream = subprocess.run([str(cli), "verify", "key", str(folder), "--signature",
                               str(folder / "model.sig"), "--public_key",
                               str(tmp_path / keys.SIGNING_PUBLIC)],
                              capture_output=True, text=True, timeout=300, check=False)
    assert upstream.returncode == 0, upstream.stdout + upstream.stderr
    flipped = tmp_path / "flipped"
    shutil.copytree(folder, flipped)
    with open(flipped / "model.gguf", "r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0x01]))
    assert not verify(home, flipped)["ok"]


def test_adapter_only_gguf_applies_like_the_merge(exported: dict[str, Any],
                                                  tmp_path: Path) -> None:
    """`--adapter-only` writes a llama.cpp LoRA GGUF (general.type adapter, lora alpha,
    lora_a/lora_b per target module) with a Modelfile naming it, signed; its scaled B·A is
    exactly the merged export's change to the base weight in GGUF layout (B's rows follow
    the rotary permutation of q/k)."""
    import gguf
    import numpy as np
    from safetensors import safe_open

    from appliance.export.gguf_writer import _permute
    from appliance.service.artifacts import verify
    from appliance.service.export import export_gguf_adapter
    from tests.train.conftest import PASSPHRASE

    home: Home = exported["home"]
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASSPHRASE)
    out = export_gguf_adapter(home, exported["artifact"], tmp_path / "lora",
                              read_passphrase(pass_file))
    folder = Path(out["out"])
    assert verify(home, folder)["ok"] and "ADAPTER ./adapter.gguf" in \
        (folder / "Modelfile").read_text()
    reader = gguf.GGUFReader(str(folder / "adapter.gguf"))
    assert reader.fields["general.type"].contents() == "adapter"
    assert reader.fields["adapter.type"].contents() == "lora"
    alpha = reader.fields["adapter.lora.alpha"].contents()
    lora = {t.name: np.array(t.data) for t in reader.tensors}
    assert len(lora) == 30 * 2 * 2 and {"blk.0.attn_q.weight.lora_a",
                                        "blk.29.attn_v.weight.lora_b"} <= set(lora)
    rank = lora["blk.0.attn_q.weight.lora_a"].shape[0]
    name = "model.layers.0.self_attn.q_proj.weight"
    base_dir = home.models_dir / "smollm2-135m-instruct" / "weights"
    layouts = []
    for folder_ in (base_dir, exported["root"] / "merged"):
        with safe_open(str(folder_ / "model.safetensors"), framework="numpy") as handle:
            layouts.append(_permute(handle.get_tensor(name), 9))  # GGUF layout
    delta = (alpha / rank) * lora["blk.0.attn_q.weight.lora_b"] @ \
        lora["blk.0.attn_q.weight.lora_a"]
    scale = float(np.abs(delta).max())
    assert scale > 0
    assert float(np.abs(layouts[1] - layouts[0] - delta).max()) <= 0.01 * scale


def test_single_file_gguf_export_is_signed_beside_it(exported: dict[str, Any],
                                                     tmp_path: Path) -> None:
    """`--out NAME.gguf` (here with --adapter-only) writes that file with NAME.gguf.Modelfile
    and its signature files beside it: gguf's reader opens it, the Modelfile names it,
    `appliance verify NAME.gguf` and upstream model_signing (exported key) accept it, a
    flipped byte is refused; a second export to the same name is refused, nothing
    overwritten."""
    import gguf

    from appliance.errors import UsageError
    from appliance.service.artifacts import verify
    from appliance.service.export import export_gguf_adapter
    from tests.train.conftest import PASSPHRASE

    home: Home = exported["home"]
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASSPHRASE)
    target = tmp_path / "out" / "smol-lora.gguf"
    out = export_gguf_adapter(home, exported["artifact"], target,
                              passphrase=read_passphrase(pass_file))
    assert out["gguf"] == str(target) and out["signed"]
    assert sorted(p.name for p in target.parent.iterdir()) == [
        "smol-lora.gguf", "smol-lora.gguf.Modelfile", "smol-lora.gguf.provenance.sigstore.json",
        "smol-lora.gguf.sig", "smol-lora.gguf.signer.pub.pem"]
    assert gguf.GGUFReader(str(target)).fields["general.type"].contents() == "adapter"
    assert "ADAPTER ./smol-lora.gguf" in (target.parent / "smol-lora.gguf.Modelfile").read_text()
    checked = verify(home, target)
    assert checked["ok"], checked["reason"]
    assert checked["provenance"]["adapter"]["digest"] == \
        verify(home, exported["artifact"])["root_digest"]
    keys.export_public(home, tmp_path / "keys")
    cli = Path(sys.executable).with_name("model_signing")
    upstream = subprocess.run([str(cli), "verify", "key", str(target), "--signature",
                               f"{target}.sig", "--public_key",
                               str(tmp_path / "keys" / keys.SIGNING_PUBLIC)],
                              capture_output=True, text=True, timeout=300, check=False)
    assert upstream.returncode == 0, upstream.stdout + upstream.stderr
    before = target.read_bytes()
    with pytest.raises(UsageError, match="already exists"):
        export_gguf_adapter(home, exported["artifact"], target,
                            passphrase=read_passphrase(pass_file))
    assert target.read_bytes() == before
    with open(target, "r+b") as handle:
        handle.seek(len(before) // 2)
        handle.write(bytes([before[len(before) // 2] ^ 0x01]))
    assert not verify(home, target)["ok"]
