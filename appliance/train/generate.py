"""Answers from a signed adapter, inside the isolated child (the trainer's: no network, the
tripwire on): `appliance generate`, `appliance chat` and the console's Try page send a job
of kind `generate`.

The base model loads the way the artifact's recipe trained it (NF4 for qlora), the adapter
through peft from the artifact's safetensors, prompts through the base model's chat
template; decoding is greedy. With `compare_base`, the same prompt is answered with the
adapter disabled. Every answer passes the policy's PII detector here, in the sandbox
(appliance.scrub.mask: Presidio and spaCy never load in the parent), before it goes back over
the event pipe with the counts of what was masked.

The job's `prompts` are answered first; with `interactive`, more come afterwards as JSON
lines on standard input (`{"index": N, "messages": [...]}`), one answer each, until it
closes: `appliance chat` keeps one model process for its whole session.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
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
           messages: list[dict[str, str]], device: Any, masker: Any) -> dict[str, Any]:
    max_new = int(job.get("max_new_tokens", 64))
    before = dict(masker.counts)
    row: dict[str, Any] = {"index": index, "adapter": masker(
        _answer(model, tokenizer, messages, max_new, device))}
    if job.get("compare_base"):
        with model.disable_adapter():
            row["base"] = masker(_answer(model, tokenizer, messages, max_new, device))
    row["masked"] = {k: v - before.get(k, 0) for k, v in masker.counts.items()
                     if v > before.get(k, 0)}
    return row


def _more_prompts() -> Iterator[tuple[int, list[dict[str, str]]]]:
    """(index, messages) of each JSON line on standard input, until it closes."""
    for line in sys.stdin:
        if line.strip():
            item = json.loads(line)
            yield int(item["index"]), list(item["messages"])


def run(job: dict[str, Any], emit: Emit) -> int:
    """Answer every prompt of the job, one `answer` event each; 1 (with an `error` event)
    when anything fails."""
    return _run(job, emit)  # a failure is reported by appliance.train.child as `error`


def _run(job: dict[str, Any], emit: Emit) -> int:
    from peft import PeftModel
    from transformers import AutoTokenizer

    from appliance.policy import validate_policy
    from appliance.scrub.mask import Masker

    masker = Masker(validate_policy(job["policy"], "the home's policy"))
    recipe = Recipe.model_validate(job["recipe"])
    device = setup_torch(recipe)
    tokenizer = AutoTokenizer.from_pretrained(job["model_dir"], trust_remote_code=False)
    base = load_base(job["model_dir"], recipe, device)
    model = PeftModel.from_pretrained(base, job["adapter_dir"], is_trainable=False)
    model.eval()
    emit("ready")
    for index, messages in enumerate(job.get("prompts", [])):
        emit("answer", **_reply(model, tokenizer, job, index, messages, device, masker))
    if job.get("interactive"):
        for index, messages in _more_prompts():
            emit("answer", **_reply(model, tokenizer, job, index, messages, device, masker))
    emit("done")
    return 0
