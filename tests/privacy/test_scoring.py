"""Scoring secrets on the real default model: the cached, batched loss equals a plain
full-sequence forward pass, and the rendering is the training one."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.privacy.canaries import make_canaries
from appliance.privacy.exposure import candidates_for


@pytest.fixture(scope="module")
def scorer(converted_model: Path):  # type: ignore[no-untyped-def]
    """The base model alone, full precision (the reference without an adapter)."""
    from appliance.privacy.scoring import load_scorer

    return load_scorer(converted_model / "weights", None, method="lora", threads=2,
                       batch_size=4)


def _plain_nll(scorer, prefix: str, secret: str) -> float:  # type: ignore[no-untyped-def]
    import torch

    context = scorer.context(prefix)
    ids, k = scorer._encode(context, secret)
    with torch.inference_mode():
        logits = scorer.model(input_ids=torch.tensor([ids])).logits[0].float()
    logp = torch.log_softmax(logits[:-1], -1)
    targets = torch.tensor(ids[1:])
    per_token = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return float(per_token[-k:].sum())


def test_batched_cached_scores_equal_a_plain_forward_pass(scorer):
    """Shared-context KV cache, batching and padding change no loss (to float tolerance)."""
    canary = next(c for c in make_canaries(3) if c.kind == "email")
    secrets = [canary.secret, *candidates_for(canary, 6, 0)]
    batched = scorer.score(canary.prefix, secrets)
    assert batched == pytest.approx([_plain_nll(scorer, canary.prefix, s) for s in secrets],
                                    rel=1e-3, abs=1e-3)
    assert len(set(batched)) == len(batched)


def test_probe_context_is_the_training_render_of_an_assistant_turn(scorer):
    """The context is the chat template's prompt for the probe turn, then the prefix."""
    from appliance.privacy.scoring import PROBE_USER
    from appliance.train.data import encode

    prefix = "The card on file for the refund is "
    messages = [{"role": "user", "content": PROBE_USER},
                {"role": "assistant", "content": prefix + "4111 1111 1111 1111."}]
    example = encode(scorer.tokenizer, messages, 512)
    rendered = scorer.tokenizer.decode(example.ids)
    assert rendered.startswith(scorer.context(prefix))


def test_greedy_completion_is_deterministic(scorer):
    """The extraction attempt is greedy: the same prompt gives the same text."""
    prefix = "For the record, my social security number is "
    assert scorer.complete(prefix, 6) == scorer.complete(prefix, 6)


def test_pickle_adapters_are_refused(tmp_path):
    """An artifact with a pickle-format file is refused before anything loads it."""
    from appliance.errors import ModelFormatError
    from appliance.privacy.scoring import _check_adapter

    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.safetensors").write_bytes(b"")
    (tmp_path / "adapter_model.bin").write_bytes(b"")
    with pytest.raises(ModelFormatError, match="pickle"):
        _check_adapter(tmp_path)
    (tmp_path / "adapter_model.bin").unlink()
    (tmp_path / "adapter_model.safetensors").unlink()
    with pytest.raises(ModelFormatError, match=r"no adapter_model\.safetensors"):
        _check_adapter(tmp_path)
