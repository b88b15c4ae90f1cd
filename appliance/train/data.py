"""Records to token ids: chat and Alpaca records rendered through the model's chat template,
with loss on assistant tokens only. Everything stays in memory (no `datasets`, no Arrow)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from appliance.errors import DatasetFormatError

ROLES = frozenset({"system", "user", "assistant", "tool"})
IGNORE = -100


def to_messages(record: Any, index: int) -> list[dict[str, str]]:
    """A chat (`messages`) or Alpaca (`instruction`, `input`, `output`) record as messages."""
    where = f"record {index}"
    if not isinstance(record, dict):
        raise DatasetFormatError("a record must be a JSON object", where=where)
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise DatasetFormatError("messages must be a non-empty list", where=where)
        out = []
        for turn in messages:
            if (not isinstance(turn, dict) or turn.get("role") not in ROLES
                    or not isinstance(turn.get("content"), str)):
                raise DatasetFormatError("each message needs role (system, user, "
                                         "assistant or tool) and string content", where=where)
            out.append({"role": turn["role"], "content": turn["content"]})
        if not any(m["role"] == "assistant" for m in out):
            raise DatasetFormatError("a chat record needs at least one assistant message",
                                     where=where)
        return out
    if "instruction" in record and "output" in record:
        instruction, extra, output = record["instruction"], record.get("input", ""), \
            record["output"]
        if not all(isinstance(v, str) for v in (instruction, extra, output)):
            raise DatasetFormatError("instruction, input and output must be strings",
                                     where=where)
        user = f"{instruction}\n\n{extra}" if extra else instruction
        return [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    raise DatasetFormatError("a record needs messages, or instruction and output (Alpaca)",
                             where=where)


def validate_records(records: Iterable[Any]) -> int:
    """Check every record's shape; returns the count."""
    count = 0
    for index, record in enumerate(records):
        to_messages(record, index)
        count += 1
    return count


@dataclass(frozen=True)
class Example:
    """One tokenised conversation: ids and labels (IGNORE outside assistant turns)."""

    ids: list[int]
    labels: list[int]


def _render_ids(tokenizer: Any, messages: Sequence[dict[str, str]], *,
                generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(list(messages), tokenize=False,
                                         add_generation_prompt=generation_prompt)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def encode(tokenizer: Any, messages: Sequence[dict[str, str]], seq_len: int) -> Example:
    """Tokenise through the chat template; labels only on each assistant turn's tokens.

    The span of assistant turn i runs from the end of the rendering of the turns before it
    (with the generation prompt) to the end of the rendering that includes it; the template
    must render prefixes as prefixes, which is checked.
    """
    ids = _render_ids(tokenizer, messages, generation_prompt=False)
    labels = [IGNORE] * len(ids)
    for i, turn in enumerate(messages):
        if turn["role"] != "assistant":
            continue
        start = len(_render_ids(tokenizer, messages[:i], generation_prompt=True))
        upto = _render_ids(tokenizer, messages[: i + 1], generation_prompt=False)
        if ids[: len(upto)] != upto or start > len(upto):
            raise DatasetFormatError("the chat template does not render conversations "
                                     "prefix-consistently; cannot mask assistant tokens")
        labels[start:len(upto)] = ids[start:len(upto)]
    return Example(ids[:seq_len], labels[:seq_len])


def encode_text(tokenizer: Any, text: str, seq_len: int) -> Example:
    """Plain text (no chat template) with every token in the loss: the general-text set."""
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])[:seq_len]
    return Example(ids, list(ids))


def prompt_ids(tokenizer: Any, messages: Sequence[dict[str, str]]) -> list[int]:
    """Ids of the conversation up to its last assistant turn, with the generation prompt."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return _render_ids(tokenizer, messages[:last], generation_prompt=True)


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors: input_ids, attention_mask, labels."""
    import torch

    width = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.ids)
        ids[row, :n] = torch.tensor(example.ids)
        labels[row, :n] = torch.tensor(example.labels)
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
