"""Answers from a signed adapter, inside the isolated child (the trainer's: no network, the
tripwire on): `appliance generate` and `appliance chat` send a job with `"generate": true`.

The base model loads the way the artifact's recipe trained it (NF4 for qlora), the adapter
through peft from the artifact's safetensors, prompts through the base model's chat
template; decoding is greedy. With `compare_base`, the same prompt is answered with the
adapter disabled. Answers go back to the parent over the event pipe; the parent scans them
for PII before anything is shown.
"""

from __future__ import annotations

from typing import Any

from appliance.train.data import _render_ids
from appliance.train.recipe import Recipe
from appliance.train.trainer import Emit, load_base, setup_torch


def _answer(model: Any, tokenizer: Any, messages: list[dict[str, str]], max_new: int,
            device: Any) -> str:
    import torch

    ids = torch.tensor([_render_ids(tokenizer, messages, generation_prompt=True)],
                       device=device)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                             max_new_tokens=max_new, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return str(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)).strip()


def _reply(model: Any, tokenizer: Any, job: dict[str, Any], index: int,
           messages: list[dict[str, str]], device: Any) -> dict[str, Any]:
    max_new = int(job.get("max_new_tokens", 64))
    row: dict[str, Any] = {"index": index,
                           "adapter": _answer(model, tokenizer, messages, max_new, device)}
    if job.get("compare_base"):
        with model.disable_adapter():
            row["base"] = _answer(model, tokenizer, messages, max_new, device)
    return row


def run(job: dict[str, Any], emit: Emit) -> int:
    """Answer every prompt of the job, one `answer` event each; 1 (with an `error` event)
    when anything fails."""
    return _run(job, emit)  # a failure is reported by appliance.train.child as `error`


def _run(job: dict[str, Any], emit: Emit) -> int:
    from peft import PeftModel
    from transformers import AutoTokenizer

    recipe = Recipe.model_validate(job["recipe"])
    device = setup_torch(recipe)
    tokenizer = AutoTokenizer.from_pretrained(job["model_dir"], trust_remote_code=False)
    base = load_base(job["model_dir"], recipe, device)
    model = PeftModel.from_pretrained(base, job["adapter_dir"], is_trainable=False)
    model.eval()
    emit("ready")
    for index, messages in enumerate(job.get("prompts", [])):
        emit("answer", **_reply(model, tokenizer, job, index, messages, device))
    emit("done")
    return 0
