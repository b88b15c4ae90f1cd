"""A Llama-architecture safetensors model directory (the merged export) written as one GGUF
file with the locked `gguf` package, for llama.cpp, Ollama and LM Studio.

No torch: weights are read with `safetensors.safe_open(framework="numpy")`. What llama.cpp's
`convert_hf_to_gguf.py` does for Llama is reproduced here: tensor names through gguf's
`TensorNameMap`, the q/k projections permuted to GGML's rotary layout, norms kept in F32,
matrices in F16 or Q8_0, the byte-level BPE tokenizer (tokens, types, merges, special ids)
and the chat template as metadata. Only `llama` models (the appliance's supported base
architecture) are written; anything else is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from appliance.errors import ModelFormatError

TYPES = ("f16", "q8_0")


def _permute(weights: Any, n_head: int) -> Any:
    """HF rotary layout -> GGML's (the inverse of transformers' `_reverse_permute_weights`)."""
    rest = weights.shape[1:]
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *rest)
            .swapaxes(1, 2).reshape(weights.shape))


def _tokenizer(model_dir: Path, writer: Any, config: dict[str, Any]) -> None:
    import gguf

    data = json.loads((model_dir / "tokenizer.json").read_text("utf-8"))
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise ModelFormatError("only byte-level BPE tokenizers can be written to GGUF",
                               where=str(model_dir / "tokenizer.json"))
    vocab: dict[str, int] = dict(model["vocab"])
    special = {t["content"]: t["id"] for t in data.get("added_tokens", [])}
    vocab.update(special)
    size = max(int(config["vocab_size"]), max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [gguf.TokenType.UNUSED] * size
    for token, index in vocab.items():
        tokens[index] = token
        types[index] = gguf.TokenType.CONTROL if token in special else gguf.TokenType.NORMAL
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for key, add in (("bos_token_id", writer.add_bos_token_id),
                     ("eos_token_id", writer.add_eos_token_id),
                     ("pad_token_id", writer.add_pad_token_id)):
        value = config.get(key)
        if isinstance(value, int):
            add(value)
    if isinstance(config.get("unk_token_id"), int):
        writer.add_unk_token_id(config["unk_token_id"])
    writer.add_add_bos_token(False)
    template = model_dir / "chat_template.jinja"
    if template.is_file():
        writer.add_chat_template(template.read_text("utf-8"))


def _hparams(writer: Any, config: dict[str, Any], name: str, qtype: str) -> None:
    import gguf

    head_dim = int(config.get("head_dim") or config["hidden_size"] //
                   config["num_attention_heads"])
    rope = config.get("rope_parameters") or {}
    writer.add_name(name)
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_block_count(int(config["num_hidden_layers"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_head_count_kv(int(config["num_key_value_heads"]))
    writer.add_rope_freq_base(float(rope.get("rope_theta", config.get("rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_vocab_size(int(config["vocab_size"]))
    writer.add_rope_dimension_count(head_dim)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if qtype == "f16"
                         else gguf.LlamaFileType.MOSTLY_Q8_0)


def _tensor(writer: Any, name: str, array: Any, qtype: str) -> None:
    import gguf
    import numpy as np

    if array.ndim == 1:
        writer.add_tensor(name, array.astype(np.float32))
    elif qtype == "f16":
        writer.add_tensor(name, array.astype(np.float16))
    else:
        q8 = gguf.GGMLQuantizationType.Q8_0
        data = gguf.quantize(array.astype(np.float32), q8)
        writer.add_tensor(name, data, raw_shape=data.shape, raw_dtype=q8)


def write_gguf(model_dir: Path, out: Path, qtype: str, name: str) -> dict[str, Any]:
    """Write `model_dir` (safetensors, Llama) as the GGUF file `out`; returns what it wrote
    (tensor count and names, type)."""
    import gguf
    from safetensors import safe_open

    if qtype not in TYPES:
        raise ModelFormatError(f"unknown GGUF type {qtype!r} (one of {', '.join(TYPES)})")
    config = json.loads((model_dir / "config.json").read_text("utf-8"))
    if config.get("model_type") != "llama":
        raise ModelFormatError(f"only llama models can be written to GGUF, not "
                               f"{config.get('model_type')!r}", where=str(model_dir))
    layers = int(config["num_hidden_layers"])
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, layers)
    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    _hparams(writer, config, name, qtype)
    _tokenizer(model_dir, writer, config)
    written = []
    for shard in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(shard), framework="numpy") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                if config.get("tie_word_embeddings") and key == "lm_head.weight":
                    continue
                target = names.get_name(key, try_suffixes=(".weight", ".bias"))
                if target is None:
                    raise ModelFormatError(f"no GGUF name for tensor {key}", where=str(shard))
                array = handle.get_tensor(key)
                if key.endswith("q_proj.weight"):
                    array = _permute(array, int(config["num_attention_heads"]))
                elif key.endswith("k_proj.weight"):
                    array = _permute(array, int(config["num_key_value_heads"]))
                _tensor(writer, target, array, qtype)
                written.append(target)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"type": qtype, "tensors": len(written), "names": sorted(written)}


def modelfile(gguf_name: str, template_note: str) -> str:
    """An Ollama Modelfile for the GGUF beside it (ChatML, as the default model's template)."""
    return "\n".join([
        f"# {template_note}",
        f"FROM ./{gguf_name}",
        'TEMPLATE """{{ if .System }}<|im_start|>system',
        "{{ .System }}<|im_end|>",
        "{{ end }}{{ if .Prompt }}<|im_start|>user",
        "{{ .Prompt }}<|im_end|>",
        "{{ end }}<|im_start|>assistant",
        '{{ .Response }}<|im_end|>"""',
        'PARAMETER stop "<|im_end|>"',
        "",
    ])


def write_lora_gguf(adapter_dir: Path, base_config: dict[str, Any], out: Path,
                    name: str) -> dict[str, Any]:
    """Write a PEFT LoRA adapter (safetensors) as a llama.cpp GGUF LoRA adapter: per target
    module `<gguf name>.lora_a` [rank, in] and `.lora_b` [out, rank] in F32, B's rows in
    GGML's rotary layout for q/k (so B·A permutes like the base weight), and the scale
    `adapter.lora.alpha`. Returns what it wrote."""
    import gguf
    import numpy as np
    from safetensors import safe_open

    config = json.loads((adapter_dir / "adapter_config.json").read_text("utf-8"))
    if base_config.get("model_type") != "llama":
        raise ModelFormatError("only adapters of llama models can be written to GGUF",
                               where=str(adapter_dir))
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, int(base_config["num_hidden_layers"]))
    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_name(name)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    heads = {"q_proj": int(base_config["num_attention_heads"]),
             "k_proj": int(base_config["num_key_value_heads"])}
    written = []
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), framework="numpy") as handle:
        for key in sorted(handle.keys()):
            hf, _, part = key.removeprefix("base_model.model.").rpartition(".lora_")
            if part not in ("A.weight", "B.weight"):
                raise ModelFormatError(f"not a LoRA tensor: {key}", where=str(adapter_dir))
            target = names.get_name(hf + ".weight", try_suffixes=(".weight",))
            if target is None:
                raise ModelFormatError(f"no GGUF name for {key}", where=str(adapter_dir))
            array = handle.get_tensor(key).astype(np.float32)
            module = hf.rpartition(".")[2]
            if part == "B.weight" and module in heads:
                array = _permute(array, heads[module])
            suffix = ".lora_a" if part == "A.weight" else ".lora_b"
            writer.add_tensor(target + suffix, array)
            written.append(target + suffix)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"type": "lora-f32", "tensors": len(written), "names": written,
            "alpha": float(config["lora_alpha"]), "rank": int(config["r"])}


def adapter_modelfile(adapter_name: str, note: str) -> str:
    """An Ollama Modelfile applying the GGUF LoRA adapter beside it to a base model GGUF."""
    return modelfile("BASE_MODEL.gguf", note).replace(
        "FROM ./BASE_MODEL.gguf",
        "# FROM: the base model as GGUF (the same weights the adapter was trained on)\n"
        f"FROM ./BASE_MODEL.gguf\nADAPTER ./{adapter_name}")
