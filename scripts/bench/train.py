"""Benchmark: the appliance's QLoRA step time against a bare transformers + peft +
bitsandbytes loop on the same model, data and settings, measured in the same run.

Ours is the real path: `appliance.service.train.train` (recipe checks, digest check of the
base model, network-namespace child, records over a pipe, tripwire, events, encrypted
checkpoints, audit). The baseline is the textbook loop in a plain child process: load NF4
with BitsAndBytesConfig, get_peft_model, AdamW, `model(**batch, labels=...)`, backward,
step. Both use the same tokenised examples, batch size, sequence length, LoRA shape,
threads and seed. Step time is the median over the steps after the first two (warm-up).

Last stdout line: {"name": "train", "ours": s/step, "baseline": s/step, "unit": "s/step",
"ratio": baseline/ours, ...}. ratio > 1 means the appliance is faster.

Usage: scripts/bench.sh train [--steps N] [--seq-len L] [--batch B] [--home DIR]
       scripts/bench.sh train --nodes 2 [--steps N] [--seq-len L] [--batch B]

`--nodes 2`: ours is a 2-node x 1-process run over two network namespaces made for the
benchmark (tests/sandbox/clusternet.py: veth pairs on a bridge, each node with its own home
and the filtered macvlan cluster interface of appliance.sandbox.cluster); the baseline is
the appliance on one process in the same run. Each node trains `--batch` records per step,
so the ratio (one process / two nodes) shows what the all-reduce over the cluster network
costs per step (1.0: nothing). Needs root and nft.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from appliance.passphrase import read_passphrase

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

WORDS = ["the", "appliance", "keeps", "every", "record", "encrypted", "at", "rest", "and",
         "trains", "adapters", "inside", "a", "closed", "network", "namespace", "so", "that",
         "nothing", "leaves", "machine", "while", "operators", "watch", "progress",
         "auditors", "later", "verify", "signed", "provenance", "of", "each", "artifact"]


def records(n: int, words: int, seed: int = 0) -> list[dict[str, Any]]:
    """Synthetic chat records long enough to fill the sequence length."""
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        question = " ".join(rng.choice(WORDS) for _ in range(words // 3))
        answer = " ".join(rng.choice(WORDS) for _ in range(words))
        out.append({"messages": [{"role": "user", "content": f"Q{i}: {question}?"},
                                 {"role": "assistant", "content": answer}]})
    return out


def recipe_text(args: argparse.Namespace) -> str:
    """The recipe both sides follow."""
    return f"""
name = "bench"
base_model = "smollm2-135m-instruct"
dataset = "bench"
seed = 0
threads = {args.threads}
[lora]
rank = 8
alpha = 16
dropout = 0.0
target_modules = ["q_proj", "k_proj", "v_proj", "o_proj"]
[optim]
learning_rate = 0.0002
schedule = "constant"
[train]
epochs = 1
max_steps = {args.steps}
batch_size = {args.batch}
seq_len = {args.seq_len}
checkpoint_every = {max(2, args.steps // 2)}
[eval]
max_records = 2
generations = 0
"""


def baseline(spec: dict[str, Any]) -> dict[str, Any]:
    """The bare loop (runs in its own process)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(spec["model_dir"])
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                               bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], quantization_config=quant,
                                                 dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                             target_modules=["q_proj", "k_proj", "v_proj",
                                                             "o_proj"],
                                             task_type="CAUSAL_LM"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    batches = spec["batches"]
    times = []
    model.train()
    for batch in batches:
        ids = torch.tensor(batch["input_ids"])
        labels = torch.tensor(batch["labels"])
        mask = torch.tensor(batch["attention_mask"])
        start = time.perf_counter()
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    del tok
    return {"step_times": times,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def baseline_batches(model_dir: str, recs: list[dict[str, Any]], args: argparse.Namespace
                     ) -> list[dict[str, Any]]:
    """The exact micro-batches the appliance trains on, in its order (same tokenisation)."""
    from transformers import AutoTokenizer

    from appliance.train.data import collate, encode, to_messages
    from appliance.train.recipe import load_recipe
    from appliance.train.trainer import epoch_order

    tok = AutoTokenizer.from_pretrained(model_dir)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    examples = [encode(tok, to_messages(r, i), args.seq_len) for i, r in enumerate(recs)]
    recipe = load_recipe(args.recipe_path)
    order = epoch_order(recipe.seed, 0, len(examples))
    out = []
    for step in range(args.steps):
        chosen = [examples[i] for i in order[step * args.batch:(step + 1) * args.batch]]
        batch = collate(chosen, pad)
        out.append({k: v.tolist() for k, v in batch.items()})
    return out


def sandbox_level() -> str:
    """The isolation ours ran in (the baseline runs bare)."""
    from appliance import sandbox

    return sandbox.probe().detail


def main() -> int:  # noqa: PLR0915 - a linear benchmark script
    """Run both sides and print the comparison."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--home", help="reuse a bench home (model already imported)")
    parser.add_argument("--rounds", type=int, default=2, choices=(1, 2),
                        help="baseline runs: 1 (before ours) or 2 (before and after)")
    parser.add_argument("--nodes", type=int, default=1, choices=(1, 2),
                        help="2: two nodes in network namespaces against one process")
    parser.add_argument("--baseline-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_child:
        print(json.dumps(baseline(json.loads(sys.stdin.read()))))
        return 0
    if args.nodes == 2:
        from benchnodes import two_nodes

        return two_nodes(args, records, recipe_text)

    from benchhome import PASSPHRASE, import_default_model, make_home

    from appliance.home import Home
    from appliance.models import importer
    from appliance.service.models import record_model
    from appliance.service.train import train

    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    home = Home(Path(args.home)) if args.home else make_home(work / "home")
    if not (home.models_dir / importer.DEFAULT_NAME).exists():
        import_default_model(home)
        # training needs an authenticated record of the weights (what `model import` with
        # the passphrase writes)
        record_model(home, importer.DEFAULT_NAME, PASSPHRASE.strip().encode())
    model_dir = str(home.models_dir / importer.DEFAULT_NAME / "weights")
    pass_file = work / "pass"
    pass_file.write_text(PASSPHRASE)
    pass_file.chmod(0o600)  # a passphrase file others can read is refused
    args.recipe_path = work / "recipe.toml"
    args.recipe_path.write_text(recipe_text(args))
    recs = records(args.steps * args.batch, words=args.seq_len)
    evals = records(2, words=32, seed=1)

    spec = {"model_dir": model_dir, "threads": args.threads,
            "batches": baseline_batches(model_dir, recs, args)}

    def run_baseline() -> dict[str, Any]:
        done = subprocess.run([sys.executable, __file__, "--baseline-child"],
                              input=json.dumps(spec), capture_output=True, text=True,
                              check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    # Baseline before and after ours, so a drifting machine load biases neither side.
    base = run_baseline()

    steps: list[dict[str, Any]] = []
    peak: dict[str, Any] = {}

    def on_event(event: dict[str, Any]) -> None:
        if event["type"] == "step":
            steps.append(event)
        if event["type"] == "done":
            peak.update(event)

    def provider(_home: Any, _policy: Any, _key: bytes, _name: str, split: str
                 ) -> list[dict[str, Any]]:
        return recs if split == "train" else evals

    started = time.perf_counter()
    result = train(home, args.recipe_path, passphrase=read_passphrase(pass_file), records=provider,
                   on_event=on_event)
    wall = time.perf_counter() - started
    after = run_baseline() if args.rounds > 1 else {"step_times": [], "peak_rss_mib": 0}
    ours_times = [e["step_time_s"] for e in steps][2:]
    base_times = base["step_times"][2:] + after["step_times"][2:]
    ours, theirs = statistics.median(ours_times), statistics.median(base_times)
    tokens = statistics.median(e["tokens"] for e in steps)
    out = {"name": "train", "unit": "s/step", "ours": round(ours, 4),
           "baseline": round(theirs, 4), "ratio": round(theirs / ours, 4),
           "tokens_per_step": tokens, "ours_tokens_per_s": round(tokens / ours, 1),
           "baseline_tokens_per_s": round(tokens / theirs, 1),
           "ours_peak_rss_mib": round(peak.get("peak_rss_mib", 0), 1),
           "baseline_peak_rss_mib": round(max(base["peak_rss_mib"], after["peak_rss_mib"]), 1),
           "steps": args.steps, "measured_steps": len(ours_times), "batch": args.batch,
           "seq_len": args.seq_len, "threads": args.threads, "ours_run_wall_s": round(wall, 1),
           "adapter": result.adapter_sha256, "sandbox": sandbox_level()}
    if "peak_gpu_mib" in peak:
        out["ours_peak_gpu_mib"] = round(peak["peak_gpu_mib"], 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
