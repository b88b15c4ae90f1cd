"""The QLoRA trainer, one linear file: setup, evaluate, loop, save.

Runs inside the isolated child (appliance.train.child), as one process or as each of the
`recipe.processes` data-parallel workers (appliance.train.distributed). Base weights load
as 4-bit NF4 through bitsandbytes (double quantisation, compute dtype from the recipe), LoRA
adapters through peft, and the loss counts assistant tokens only. The learning rate is a
pure function of the step, the data order a pure function of (seed, epoch) and the dropout
RNG a pure function of (seed, step, rank), so a checkpoint needs only tensors (adapter,
AdamW moments) and a few integers to resume bit-identically. Rank 0 alone writes the
adapter and reports evaluations; each node's first local rank writes that node's
checkpoints and reports its steps; every rank reports tripwire hits. Once in the process
group, ranks stop and end only together (an all-reduce decides every stop).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from appliance.train import checkpoint, distributed
from appliance.train.cancel import EXIT_STOPPED
from appliance.train.data import (
    IGNORE,
    Example,
    collate,
    encode,
    encode_text,
    prompt_ids,
    to_messages,
)
from appliance.train.distributed import World
from appliance.train.events import Kind, TrainJob
from appliance.train.recipe import Recipe, world_size
from appliance.train.watch import EarlyStop, Guard

EXIT_GUARD = 4
"""A guard stopped the run (NaN/inf loss or gradient, loss spike, exploding gradients)."""

Emit = Callable[..., None]
SEED_MODULUS = 2**63 - 1


class Stop(Protocol):
    """What the loop needs of appliance.train.cancel.StopFlag."""

    requested: bool

    def position(self, step: int, total: int) -> None:
        """Where the run starts."""

    def progressed(self) -> None:
        """A step was completed."""

    def end_before_first_step(self) -> bool:
        """Report a stop before any step; True when this call reported it."""


def lr_at(recipe: Recipe, step: int, total: int) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total`."""
    peak, warm = recipe.optim.learning_rate, recipe.optim.warmup_steps
    if warm and step < warm:
        return peak * (step + 1) / warm
    if recipe.optim.schedule == "constant" or total <= warm:
        return peak
    progress = (step - warm) / max(1, total - warm)
    if recipe.optim.schedule == "linear":
        return peak * (1.0 - progress)
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def epoch_order(seed: int, epoch: int, n: int) -> list[int]:
    """The shuffled record order of one epoch (deterministic in seed and epoch)."""
    import torch

    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return [int(i) for i in torch.randperm(n, generator=gen)]


def global_batch(recipe: Recipe) -> int:
    """Records per optimizer step, over all processes."""
    return recipe.train.batch_size * recipe.train.grad_accum * world_size(recipe)


def steps_per_epoch(recipe: Recipe, n_train: int) -> int:
    """Optimizer steps in one epoch."""
    return max(1, math.ceil(n_train / global_batch(recipe)))


def step_seed(seed: int, step: int, rank: int) -> int:
    """The RNG seed (dropout) of optimizer step `step` on `rank`."""
    return ((seed * 1_000_003 + step) * 1_009 + rank) % SEED_MODULUS


def total_steps(recipe: Recipe, n_train: int) -> int:
    """Optimizer steps of the whole run."""
    total = recipe.train.epochs * steps_per_epoch(recipe, n_train)
    return min(total, recipe.train.max_steps) if recipe.train.max_steps else total


def setup_torch(recipe: Recipe, world: World | None = None) -> Any:
    """Threads (threads = 0: the cores shared out among the processes), seeds and
    deterministic kernels; returns the device."""
    import torch

    world = world or World()
    torch.set_num_threads(recipe.threads or max(1, (os.cpu_count() or 1) // recipe.processes))
    torch.manual_seed(recipe.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return distributed.device_for(world)


def load_model(model_dir: str, recipe: Recipe, device: Any) -> tuple[Any, Any]:
    """Tokenizer and the base model (NF4 for qlora) wrapped with fresh LoRA adapters."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=False)
    model = load_base(model_dir, recipe, device)
    torch.manual_seed(recipe.seed)
    lora = LoraConfig(r=recipe.lora.rank, lora_alpha=recipe.lora.alpha,
                      lora_dropout=recipe.lora.dropout,
                      target_modules=list(recipe.lora.target_modules), bias="none",
                      task_type="CAUSAL_LM")
    return tokenizer, get_peft_model(model, lora)


def load_base(model_dir: str, recipe: Recipe, device: Any) -> Any:
    """The base model as the recipe loads it (NF4 for qlora), safetensors only."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    dtype = getattr(torch, recipe.quantization.compute_dtype)
    kwargs: dict[str, Any] = {"trust_remote_code": False, "use_safetensors": True,
                              "dtype": dtype}
    if recipe.method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(  # type: ignore[no-untyped-call,unused-ignore]
            load_in_4bit=True, bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=recipe.quantization.double_quant,
            bnb_4bit_compute_dtype=dtype)
    if device.type == "cuda":
        kwargs["device_map"] = {"": device.index or 0}
    model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    keep_4bit_layers_differentiable(model)
    if recipe.train.gradient_checkpointing:
        model.gradient_checkpointing_enable(  # type: ignore[no-untyped-call,unused-ignore]
            gradient_checkpointing_kwargs={"use_reentrant": False})
    if device.type != "cuda":
        model.to(device)
    return model


def keep_4bit_layers_differentiable(model: Any) -> int:
    """Stop bitsandbytes from repacking NF4 weights for CPU inference.

    bitsandbytes 0.50's `Linear4bit.forward` converts its weight to a CPU-packed layout the
    first time it runs in eval mode under no_grad on an AVX512-BF16 CPU, and never converts
    back; the packed path has no autograd kernel, so after an eval pass the LoRA adapters
    silently stop receiving gradients. Evaluating before training is part of every run, so
    the conversion is switched off on every 4-bit layer. Returns the number of layers.
    """
    count = 0
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count


def token_loss_sum(model: Any, batch: dict[str, Any]) -> Any:
    """Sum of cross-entropy over assistant tokens (labels != IGNORE), shifted by one."""
    from torch.nn import functional

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # Shift the labels, not the logits: slicing the [batch, seq, vocab] logits would copy
    # them (and their gradient) once more per step; transformers' own loss does the same.
    shifted = functional.pad(batch["labels"], (0, 1), value=IGNORE)[:, 1:]
    flat = logits.float()
    return functional.cross_entropy(flat.view(-1, flat.size(-1)), shifted.reshape(-1),
                                    ignore_index=IGNORE, reduction="sum")


def n_targets(examples: list[Example]) -> int:
    """Number of label tokens that count in the loss."""
    return sum(sum(1 for t in e.labels[1:] if t != IGNORE) for e in examples)


def evaluate(model: Any, examples: list[Example], pad_id: int, batch_size: int,
             device: Any, world: World | None = None) -> dict[str, float]:
    """Mean assistant-token loss and perplexity on held-out examples (each rank scores its
    interleaved share; the sums are added over the ranks)."""
    import torch

    world = world or World()
    mine = examples[world.rank::world.size]
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(mine), batch_size):
            chunk = mine[start:start + batch_size]
            batch = {k: v.to(device) for k, v in collate(chunk, pad_id).items()}
            total += float(token_loss_sum(model, batch))
            count += n_targets(chunk)
    model.train()
    total, summed = distributed.all_sum([total, count], world, device)
    count = int(summed)
    loss = total / max(1, count)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "tokens": count,
            "records": len(examples)}


def generate(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]],
             max_new: int, device: Any,
             should_stop: Callable[[], bool] = lambda: False, *, samples: int = 0,
             temperature: float = 0.7, seed: int = 0) -> list[dict[str, Any]]:
    """Greedy completions for held-out prompts (fewer when `should_stop` turns true), each
    with whether it equals the reference answer exactly and, with `samples` = k > 0, the
    share of k sampled answers that agree with the most common one (consistency)."""
    import torch

    model.eval()
    out = []
    pad = tokenizer.pad_token_id or tokenizer.eos_token_id
    with torch.no_grad():
        for index, messages in enumerate(conversations):
            if should_stop():
                break
            ids = torch.tensor([prompt_ids(tokenizer, messages)], device=device)

            def decode(gen: Any, prompt: Any = ids) -> str:
                return str(tokenizer.decode(gen[0, prompt.shape[1]:], skip_special_tokens=True))

            text = decode(model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                         max_new_tokens=max_new, do_sample=False,
                                         pad_token_id=pad))
            last_user = [m["content"] for m in messages if m["role"] == "user"][-1:]
            reference = [m["content"] for m in messages if m["role"] == "assistant"][-1]
            row: dict[str, Any] = {"index": index,
                                   "prompt": (last_user[0] if last_user else "")[:300],
                                   "completion": text,
                                   "exact_match": text.strip() == reference.strip()}
            if samples:
                torch.manual_seed(seed * 1_000_003 + index)
                drawn = [decode(model.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids),
                    max_new_tokens=max_new, do_sample=True, temperature=temperature,
                    top_k=0, top_p=1.0, pad_token_id=pad)).strip() for _ in range(samples)]
                row["consistency"] = max(drawn.count(a) for a in drawn) / samples
            out.append(row)
    model.train()
    return out


def trainable(model: Any) -> dict[str, Any]:
    """The trainable (LoRA) parameters by name."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def restore(run_dir: Path, run_id: str, key: bytes | None, params: dict[str, Any],
            optimizer: Any) -> tuple[int, dict[str, Any], dict[str, Any], str]:
    """Load the newest checkpoint into the adapter and the optimizer; returns its step, its
    state, the best adapter seen so far (empty when there is none) and the digest of its
    content (what every node of a cluster run compares before going on)."""
    import torch

    tensors, state = checkpoint.load(run_dir, run_id, key)
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(tensors[f"param.{name}"])
    opt_state: dict[int, dict[str, Any]] = {}
    for i, name in enumerate(params):
        if f"opt.{name}.exp_avg" in tensors:
            opt_state[i] = {k: tensors[f"opt.{name}.{k}"] for k in ("step", "exp_avg",
                                                                    "exp_avg_sq")}
    optimizer.load_state_dict({"state": opt_state, "param_groups": state["param_groups"]})
    best = {name: tensors[f"best.{name}"] for name in params if f"best.{name}" in tensors}
    return int(state["step"]), state, best, checkpoint.content_digest(tensors, state)


def _quiet(kind: str, /, **fields: Any) -> None:
    """Progress events of ranks other than 0 go nowhere."""


def run(job: TrainJob, emit: Emit,  # noqa: PLR0911, PLR0912, PLR0915 - linear, on purpose
        stop: Stop) -> int:
    """Train per `job`; returns 0 when finished, 3 when stopped (at a step boundary, with a
    checkpoint, or at once when no step had been completed)."""
    import torch

    # ---- setup ------------------------------------------------------------------------
    recipe = Recipe.model_validate(job["recipe"])
    world = World.from_env()
    report = emit if world.main else _quiet
    # each node's first local rank keeps that node's checkpoints and reports its progress
    # (on one machine that is rank 0); the LoRA state is the same on every rank
    node_report = emit if world.node_main else _quiet
    run_dir, run_id = Path(job["run_dir"]), job["run_id"]
    key_hex = job.get("checkpoint_key")
    key = bytes.fromhex(key_hex) if key_hex else None
    device = setup_torch(recipe, world)
    tokenizer, model = load_model(job["model_dir"], recipe, device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
        else tokenizer.eos_token_id
    seq_len, micro_size = recipe.train.seq_len, recipe.train.batch_size
    train = [encode(tokenizer, to_messages(r, i), seq_len) for i, r in enumerate(job["train"])]
    eval_records = job["eval"][: recipe.eval.max_records]
    eval_msgs = [to_messages(r, i) for i, r in enumerate(eval_records)]
    held_out = [encode(tokenizer, m, seq_len) for m in eval_msgs]
    # the sacred set (recipe eval.dataset) judges before and after; the eval split steers
    final_msgs, final = eval_msgs, held_out
    if job.get("sacred") is not None:
        final_msgs = [to_messages(r, i) for i, r in
                      enumerate(job["sacred"][: recipe.eval.max_records])]
        final = [encode(tokenizer, m, seq_len) for m in final_msgs]
    general = [encode_text(tokenizer, t, seq_len) for t in job.get("general", [])]
    params = trainable(model)
    optimizer = torch.optim.AdamW(list(params.values()), lr=recipe.optim.learning_rate,
                                  weight_decay=recipe.optim.weight_decay)
    spe, total = steps_per_epoch(recipe, len(train)), total_steps(recipe, len(train))
    per_step = global_batch(recipe)
    guard = Guard(recipe.guards)
    watch = EarlyStop(patience=int(job.get("patience", 2)),
                      min_delta=float(job.get("min_delta", 0.0)))
    best: dict[str, Any] = {}
    step, resumed_from = 0, distributed.Resumed()
    if job.get("resume"):
        step, resumed_state, best, digest = restore(run_dir, run_id, key, params, optimizer)
        watch.load(resumed_state.get("watch"))
        resumed_from = distributed.Resumed(step, digest)
    start, inject_nan = step, int(job.get("inject_nan_at_step") or 0)
    stop.position(step, total)
    if job.get("resume"):
        node_report(Kind.RESUMED, step=step, total_steps=total)
    if stop.requested and stop.end_before_first_step():
        return EXIT_STOPPED
    distributed.init(world, device)  # after the long load, which a stop cuts short
    if world.distributed:
        # in the group now: a rank that ended alone would leave the others failing their
        # next collective, so from here on every stop is decided together (below and at
        # each step boundary)
        stop.progressed()
    nodes = distributed.agree(world, device, job.get("fingerprint", {}),
                              job.get("node", {}), resumed_from)
    if world.distributed:
        report(Kind.NODES, nodes=nodes)
    net = distributed.wrap(model, world, device)
    if not job.get("resume"):
        report(Kind.EVAL, phase="before", **evaluate(model, final, pad_id, micro_size,
                                                   device, world))
        if general:
            report(Kind.GENERAL, phase="before", **evaluate(model, general, pad_id, micro_size,
                                                         device, world))

    def held_out_eval() -> None:
        result = evaluate(model, held_out, pad_id, micro_size, device, world)
        report(Kind.EVAL, phase="during", step=step, **result)
        if watch.update(step, result["loss"]):
            best.clear()
            best.update({n: p.detach().clone() for n, p in params.items()})

    def save_checkpoint() -> None:
        if world.node_main:  # every node into its own run directory, sealed with its key
            tensors = {f"param.{n}": p.detach() for n, p in params.items()}
            opt = optimizer.state_dict()
            for i, name in enumerate(params):
                for k, v in opt["state"].get(i, {}).items():
                    tensors[f"opt.{name}.{k}"] = v
            tensors.update({f"best.{n}": t for n, t in best.items()})
            groups = [{k: v for k, v in g.items()} for g in opt["param_groups"]]
            checkpoint.save(run_dir, run_id, step, tensors,
                            {"step": step, "epoch": step // spe,
                             "position": (step % spe) * per_step, "total_steps": total,
                             "processes": world.size, "param_groups": groups,
                             "watch": watch.state()}, key)
        node_report(Kind.CHECKPOINT, step=step)

    def stopped() -> int:
        if step > start:
            save_checkpoint()
        node_report(Kind.STOPPED, step=step, total_steps=total, checkpoint=step > start)
        distributed.shutdown(world)
        return EXIT_STOPPED

    def stop_together() -> bool:
        """Whether any rank was asked to stop (one collective: every rank decides alike)."""
        return bool(distributed.all_sum([float(stop.requested)], world, device)[0])

    if world.distributed and stop_together():  # asked during the first evaluation
        return stopped()

    # ---- loop -------------------------------------------------------------------------
    model.train()
    started, done_tokens = time.monotonic(), 0
    while step < total:
        if stop.requested and stop.end_before_first_step():
            return EXIT_STOPPED
        epoch, offset = divmod(step, spe)
        order = epoch_order(recipe.seed, epoch, len(train))
        batch_all = distributed.padded(
            [train[i] for i in order[offset * per_step:(offset + 1) * per_step]], world)
        mine = distributed.share(batch_all, world)
        lr = lr_at(recipe, step, total)
        for group in optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(step_seed(recipe.seed, step, world.rank))
        targets = max(1, n_targets(batch_all))
        loss_part, step_tokens = 0.0, 0
        t0 = time.monotonic()
        micro = [mine[i:i + micro_size] for i in range(0, len(mine), micro_size)]
        for index, chunk in enumerate(micro):
            batch = {k: v.to(device) for k, v in collate(chunk, pad_id).items()}
            with distributed.accumulate(net, sync=index == len(micro) - 1):
                loss = token_loss_sum(net, batch) / targets
                if step + 1 == inject_nan:  # test-only: APPLIANCE_TEST_INJECT_NAN_STEP
                    loss = loss * float("nan")
                # DDP averages gradients over ranks; scaled so the average is the global mean
                (loss * world.size).backward()
            loss_part += float(loss.detach())
            step_tokens += int(batch["attention_mask"].sum())
        grad_norm = float(torch.nn.utils.clip_grad_norm_(list(params.values()),
                                                         recipe.optim.max_grad_norm))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        stop.progressed()
        step += 1
        # one collective per step: every rank agrees whether to stop here
        stopping, loss_sum, tokens = distributed.all_sum(
            [float(stop.requested), loss_part, step_tokens], world, device)
        elapsed = time.monotonic() - t0
        done_tokens += int(tokens)
        rate = done_tokens / max(1e-9, time.monotonic() - started)
        if step % recipe.train.log_every == 0 or step == total:
            node_report(Kind.STEP, step=step, total_steps=total, epoch=epoch, loss=loss_sum,
                        lr=lr, tokens=int(tokens), step_time_s=elapsed, tokens_per_s=rate,
                        eta_s=(total - step) * (time.monotonic() - started)
                        / max(1, step - start))
        # the loss is summed over the ranks and the norm is of all-reduced gradients, so
        # every rank trips (or not) at the same step; nothing of this step is saved
        trip = guard.check(loss_sum, grad_norm)
        if trip is not None:
            node_report(Kind.GUARD, step=step, kind=trip.kind, message=trip.message,
                        value=trip.value if math.isfinite(trip.value) else str(trip.value))
            distributed.shutdown(world)
            return EXIT_GUARD
        if stopping:
            return stopped()
        if recipe.eval.every and step % recipe.eval.every == 0:
            held_out_eval()
            if recipe.eval.early_stopping and watch.exhausted and step < total:
                report(Kind.EARLY_STOP, step=step, total_steps=total, best_step=watch.best_step,
                       best_loss=watch.best_loss, patience=watch.patience)
                break
        if step % recipe.train.checkpoint_every == 0 and step < total:
            save_checkpoint()

    # ---- save -------------------------------------------------------------------------
    if stop_together():
        return stopped()
    if world.distributed:
        emit(Kind.WORKER_FINISHED, rank=world.rank, world_size=world.size, steps=step - start,
             params_sha256=distributed.params_digest(params),
             backend=distributed.backend(world), device=str(device))
    if recipe.eval.every:
        if not watch.history or watch.history[-1][0] != step:
            held_out_eval()
        chosen = int(watch.best_step or step)
        if chosen != step:
            with torch.no_grad():
                for name, param in params.items():
                    param.copy_(best[name])
        report(Kind.BEST, step=chosen, final_step=step, loss=watch.best_loss,
               evaluations=len(watch.history),
               reason=f"lowest held-out loss of {len(watch.history)} evaluations during "
                      f"training (every {recipe.eval.every} steps)")
    adapter_dir = Path(job["adapter_out"])
    if world.main:
        model.save_pretrained(str(adapter_dir), safe_serialization=True)
        report(Kind.SAVED, step=step, adapter_dir=str(adapter_dir))
    report(Kind.EVAL, phase="after", **evaluate(model, final, pad_id, micro_size, device,
                                             world))
    if general:
        report(Kind.GENERAL, phase="after", **evaluate(model, general, pad_id, micro_size,
                                                    device, world))
    samples: list[dict[str, Any]] = []  # rank 0 generates; the others wait (below)
    if world.main:
        samples = generate(model, tokenizer, final_msgs[:recipe.eval.generations],
                           recipe.eval.generation_tokens, device, lambda: stop.requested,
                           samples=recipe.eval.consistency_samples,
                           temperature=recipe.eval.temperature, seed=recipe.seed)
    # Every rank leaves together, after rank 0's last work: torchrun's agent ends the whole
    # group (SIGTERM to every worker still running) as soon as any worker exits non-zero,
    # so no rank may still be working alone while the others end.
    if stop_together():
        return stopped()
    distributed.shutdown(world)
    crash = job.get("exit_at_end")  # test-only: APPLIANCE_TEST_WORKER_EXIT_AT_END
    if crash and crash[0] == world.rank:
        os._exit(crash[1])
    if not world.main:
        return 0
    emit(Kind.GENERATIONS, samples=samples)
    emit(Kind.DONE, step=step, total_steps=total, **peak_memory())
    return 0


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process, and peak GPU memory when on CUDA (MiB)."""
    import resource

    import torch

    out = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out
