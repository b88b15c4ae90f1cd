"""Likelihood of canary secrets under a base model plus a trained LoRA adapter.

Runs inside the isolated child (appliance.privacy.worker): the caller has already verified
the artifact's signature and the base model's digest. The base weights load the way the
adapter was trained (NF4 through bitsandbytes for `qlora`, full precision for `lora`, the
recipe's compute dtype), so the measured function is the one the adapter was optimised
against. The adapter loads with `PeftModel.from_pretrained` from safetensors only; nothing
runs remote code.

A canary is scored the way training sees an assistant turn: the chat template renders a
fixed neutral user turn with the generation prompt, and the assistant text is the carrier
sentence. The loss of a secret is the summed negative log-likelihood (nats) of every token
that overlaps the secret's characters, conditioned on everything before it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import ModelFormatError

PROBE_USER = "Please confirm the details we have on file."
"""The user turn every probe is rendered after (one fixed context for every canary)."""
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


@dataclass
class Scorer:
    """A loaded model and tokenizer; `score` and `complete` are what the exposure test uses."""

    model: Any
    tokenizer: Any
    batch_size: int = 32

    def context(self, prefix: str) -> str:
        """The rendered text that precedes a secret: chat prompt plus carrier prefix."""
        prompt = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": PROBE_USER}], tokenize=False,
            add_generation_prompt=True)
        return f"{prompt}{prefix}"

    def _encode(self, context: str, secret: str) -> tuple[list[int], int]:
        """Token ids of context+secret and how many trailing tokens overlap the secret."""
        enc = self.tokenizer(context + secret, add_special_tokens=False,
                             return_offsets_mapping=True)
        start = len(context)
        ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
        first = next(i for i, (_, end) in enumerate(offsets) if end > start)
        return ids, len(ids) - first

    def score(self, prefix: str, secrets: Sequence[str]) -> list[float]:
        """Summed NLL (nats) of each secret's tokens after `prefix`; lower is likelier.

        The shared context runs once; its key/value cache is repeated across a batch of
        secrets (right-padded), so each candidate costs only its own few tokens."""
        context = self.context(prefix)
        groups: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
        for index, secret in enumerate(secrets):
            ids, k = self._encode(context, secret)
            groups.setdefault(tuple(ids[:-k]), []).append((index, ids[-k:]))
        out = [0.0] * len(secrets)
        for shared, members in groups.items():
            cache, first = self._prefill(list(shared))
            for start in range(0, len(members), self.batch_size):
                chunk = members[start:start + self.batch_size]
                losses = self._suffixes(cache, first, len(shared), [s for _, s in chunk])
                for (index, _), loss in zip(chunk, losses, strict=True):
                    out[index] = loss
        return out

    def _device(self) -> Any:
        return next(self.model.parameters()).device

    def _prefill(self, ids: list[int]) -> tuple[Any, Any]:
        """The context's key/value cache and the log-probabilities of the next token."""
        import torch

        with torch.inference_mode():
            result = self.model(input_ids=torch.tensor([ids], device=self._device()),
                                use_cache=True, logits_to_keep=1)
        return result.past_key_values, torch.log_softmax(result.logits[0, -1].float(), -1)

    def _suffixes(self, cache: Any, first: Any, offset: int,
                  suffixes: list[list[int]]) -> list[float]:
        import copy

        import torch

        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else self.tokenizer.eos_token_id
        rows, width = len(suffixes), max(len(s) for s in suffixes)
        ids = torch.full((rows, width), pad, dtype=torch.long)
        mask = torch.zeros((rows, offset + width), dtype=torch.long)
        mask[:, :offset] = 1
        for row, seq in enumerate(suffixes):
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, offset:offset + len(seq)] = 1
        batch_cache = copy.deepcopy(cache)
        batch_cache.batch_repeat_interleave(rows)
        device = self._device()
        positions = (offset + torch.arange(width)).unsqueeze(0).expand(rows, -1)
        with torch.inference_mode():
            logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                position_ids=positions.to(device), past_key_values=batch_cache,
                                use_cache=True).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        losses = []
        for row, seq in enumerate(suffixes):
            nll = -float(first[seq[0]])
            if len(seq) > 1:
                targets = torch.tensor(seq[1:], device=device)
                nll -= float(logp[row, :len(seq) - 1].gather(-1, targets.unsqueeze(-1)).sum())
            losses.append(nll)
        return losses

    def complete(self, prefix: str, max_new_tokens: int) -> str:
        """Greedy continuation of the canary's context (the direct extraction attempt)."""
        import torch

        ids = self.tokenizer(self.context(prefix), add_special_tokens=False,
                             return_tensors="pt")["input_ids"]
        device = next(self.model.parameters()).device
        ids = ids.to(device)
        pad = self.tokenizer.pad_token_id
        with torch.inference_mode():
            gen = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                      max_new_tokens=max_new_tokens, do_sample=False,
                                      pad_token_id=pad if pad is not None
                                      else self.tokenizer.eos_token_id)
        return str(self.tokenizer.decode(gen[0, ids.shape[1]:], skip_special_tokens=True))


def secret_tokens(scorer: Scorer, prefix: str, secret: str) -> int:
    """How many tokens the secret takes after its context (for the generation budget)."""
    return scorer._encode(scorer.context(prefix), secret)[1]


def _check_adapter(adapter_dir: Path) -> None:
    for name in ADAPTER_FILES:
        path = adapter_dir / name
        if path.is_symlink() or not path.is_file():
            raise ModelFormatError(f"the artifact has no {name}", where=str(adapter_dir))
    for path in adapter_dir.iterdir():
        if path.suffix in (".bin", ".pt", ".pth", ".pkl", ".ckpt"):
            raise ModelFormatError(f"pickle-format file in the artifact: {path.name}",
                                   where=str(adapter_dir),
                                   hint="only safetensors adapters are loaded")


def load_scorer(model_dir: str | Path, adapter_dir: str | Path | None, *,
                method: str = "qlora", compute_dtype: str = "float32",
                double_quant: bool = True, threads: int = 0, batch_size: int = 32) -> Scorer:
    """The base model (NF4 for qlora, full precision for lora) with the adapter applied;
    `adapter_dir` None scores the base model alone (the reference without training)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    torch.set_num_threads(threads or os.cpu_count() or 1)
    dtype = getattr(torch, compute_dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), trust_remote_code=False)
    kwargs: dict[str, Any] = {"trust_remote_code": False, "use_safetensors": True,
                              "dtype": dtype}
    if method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=double_quant,
            bnb_4bit_compute_dtype=dtype)
    model: Any = AutoModelForCausalLM.from_pretrained(str(model_dir), **kwargs)
    if adapter_dir is not None:
        from peft import PeftModel

        _check_adapter(Path(adapter_dir))
        model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False,
                                          use_safetensors=True)
    model.eval()
    return Scorer(model, tokenizer, batch_size)
