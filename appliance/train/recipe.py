"""Training recipes: a strict TOML document, validated on its own and against the policy.

A malformed recipe is a RecipeError (exit 2) listing every problem as `FILE: key: message`.
A recipe that is well formed but asks for more than the policy allows is a PolicyViolation
(exit 1) naming the recipe key and the policy limit it exceeds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from appliance.errors import PolicyViolation, RecipeError
from appliance.fsutil import ParseProblem, decode_utf8, loads_toml, read_regular
from appliance.policy import Policy
from appliance.policy._base import Name

MAX_RECIPE_BYTES = 1 << 20
"""Largest recipe file read (real recipes are under a KiB)."""


class _Strict(BaseModel):
    """Frozen, strict, unknown keys rejected (like the policy sections)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True,
                              use_attribute_docstrings=True, validate_default=True)


class LoraSettings(_Strict):
    """LoRA adapter shape."""

    rank: int = Field(default=8, ge=1)
    """LoRA rank r."""
    alpha: int = Field(default=16, ge=1)
    """LoRA scaling alpha (the update is scaled by alpha / rank)."""
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    """Dropout on the LoRA input."""
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1)
    """Module names that get adapters."""


class QuantSettings(_Strict):
    """4-bit base weights (bitsandbytes NF4)."""

    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """dtype the de-quantised NF4 blocks are computed in."""
    double_quant: bool = True
    """Quantise the quantisation constants too (QLoRA double quantisation)."""


class OptimSettings(_Strict):
    """AdamW and the learning-rate schedule."""

    learning_rate: float = Field(default=2e-4, gt=0)
    """Peak learning rate."""
    weight_decay: float = Field(default=0.0, ge=0)
    """AdamW decoupled weight decay."""
    warmup_steps: int = Field(default=0, ge=0)
    """Linear warm-up steps."""
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after warm-up."""
    max_grad_norm: float = Field(default=1.0, gt=0)
    """Gradient clipping norm."""


class TrainSettings(_Strict):
    """Loop shape."""

    epochs: int = Field(default=1, ge=1)
    """Passes over the training split."""
    max_steps: int = Field(default=0, ge=0)
    """Stop after this many optimizer steps (0: run every epoch)."""
    batch_size: int = Field(default=4, ge=1)
    """Sequences per micro-batch."""
    grad_accum: int = Field(default=1, ge=1)
    """Micro-batches per optimizer step."""
    seq_len: int = Field(default=256, ge=16)
    """Longest tokenised sequence; longer ones are truncated."""
    checkpoint_every: int = Field(default=50, ge=1)
    """Optimizer steps between checkpoints."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass instead of keeping them (less memory,
    about a third more compute; non-reentrant, so gradients are unchanged)."""
    log_every: int = Field(default=1, ge=1)
    """Optimizer steps between progress events."""


class EvalSettings(_Strict):
    """Held-out evaluation before and after training."""

    max_records: int = Field(default=64, ge=1)
    """Eval records scored (the first N of the eval split)."""
    generations: int = Field(default=3, ge=0)
    """Sample generations on held-out prompts, in the report."""
    generation_tokens: int = Field(default=48, ge=1, le=512)
    """Greedy tokens per sample generation."""
    every: int = Field(default=0, ge=0)
    """Optimizer steps between held-out evaluations during training (0: only before and
    after). With evaluations during training, the adapter saved is the one of the
    evaluation with the lowest held-out loss (the report says which step)."""
    early_stopping: bool = False
    """Stop when the held-out loss has not improved for the policy's evaluation.patience
    evaluations in a row (needs `every` > 0); the best checkpoint is kept."""
    general_paragraphs: int = Field(default=64, ge=0, le=1000)
    """Paragraphs of the shipped general-text set whose perplexity is measured before and
    after training (a regression guard; 0: not measured)."""
    format_regex: str = ""
    """A regular expression every held-out generation must match in full (Python `re`,
    fullmatch); the share that does is the format compliance the policy's
    evaluation.min_format_compliance checks. Empty: no format check."""
    format_schema: dict[str, Any] = Field(default_factory=dict)
    """A JSON Schema (written as a TOML table) every held-out generation must satisfy as one
    JSON document; the share that does is checked against the policy's
    evaluation.min_format_compliance (beside format_regex's share, if both are set).
    Empty: no schema check."""
    consistency_samples: int = Field(default=0, ge=0, le=32)
    """Repeated sampling (k) per held-out generation prompt: the share of k sampled answers
    equal to the most common one is the consistency the policy's
    evaluation.min_consistency checks (0: not measured)."""
    temperature: float = Field(default=0.7, gt=0.0, le=2.0)
    """Sampling temperature of the consistency samples."""
    dataset: str = ""
    """An eval-only dataset of the vault (`dataset import --eval-only`), the sacred set: its
    records replace the training dataset's eval split for the evaluation before and after
    training, the generation metrics and the policy's [evaluation] gates. Evaluations during
    training (best checkpoint, early stopping) keep using the training dataset's own eval
    split, so the sacred set never steers training. Empty: the training dataset's eval
    split throughout."""

    @model_validator(mode="after")
    def _consistent(self) -> EvalSettings:
        if self.early_stopping and not self.every:
            raise ValueError("early_stopping needs evaluations during training (every > 0)")
        if self.format_schema:
            from jsonschema.exceptions import SchemaError
            from jsonschema.validators import validator_for

            try:
                validator_for(self.format_schema).check_schema(self.format_schema)
            except SchemaError as exc:
                raise ValueError(f"format_schema is not a valid JSON Schema: {exc.message}") \
                    from None
        if self.format_regex:
            try:
                re.compile(self.format_regex)
            except re.error as exc:
                raise ValueError(f"format_regex is not a valid regular expression: {exc}") \
                    from None
        return self


class GuardSettings(_Strict):
    """Stops a run at once (the step it happens at) when training goes wrong; a NaN or
    infinite loss or gradient always stops it."""

    loss_spike_factor: float = Field(default=8.0, ge=0.0)
    """Stop when a step's loss exceeds this many times the mean of the previous
    `spike_window` steps (0: off)."""
    spike_window: int = Field(default=8, ge=2, le=1000)
    """Steps the loss-spike guard averages over (it starts once it has this many)."""
    max_grad_norm: float = Field(default=1000.0, ge=0.0)
    """Stop when the gradient norm before clipping exceeds this (exploding gradients;
    0: off)."""


ENDPOINT = re.compile(r"^(?P<host>\d{1,3}(?:\.\d{1,3}){3}):(?P<port>\d{1,5})$")
INTERFACE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")


class ClusterSettings(_Strict):
    """Several machines (torchrun's static rendezvous); `node_rank` and `interface` are this
    machine's own, everything else must be the same on every node."""

    nnodes: int = Field(default=1, ge=1)
    """Machines in the run (each runs `processes` workers)."""
    node_rank: int = Field(default=0, ge=0)
    """This machine's place (0 hosts the rendezvous and alone signs the artifact)."""
    rendezvous: str = ""
    """HOST:PORT of node 0's rendezvous on the cluster network (an IPv4 address)."""
    interface: str = ""
    """This machine's network interface onto the cluster network."""

    @model_validator(mode="after")
    def _complete(self) -> ClusterSettings:
        if self.nnodes == 1:
            return self
        if self.node_rank >= self.nnodes:
            raise ValueError(f"node_rank {self.node_rank} is not below nnodes {self.nnodes}")
        if self.rendezvous and not ENDPOINT.match(self.rendezvous):
            raise ValueError("rendezvous must be IPV4:PORT on the cluster network")
        if self.interface and not INTERFACE.match(self.interface):
            raise ValueError("interface must name a network interface")
        return self

    def missing(self) -> list[str]:
        """The keys a node of a several-machine run still needs (flags may give them)."""
        if self.nnodes == 1:
            return []
        return [flag for key, flag in (("rendezvous", "--rendezvous"),
                                       ("interface", "--cluster-interface"))
                if not getattr(self, key)]

    @property
    def node_specific(self) -> frozenset[str]:
        """The keys that differ from node to node."""
        return frozenset({"node_rank", "interface"})


class Recipe(_Strict):
    """One training run: what to train, on what, and how."""

    name: Name = "run"
    """A label for the run (recorded in the report)."""
    base_model: Name
    """Imported base model name (appliance model list)."""
    dataset: Name
    """Vault dataset name (train split trains, eval split evaluates)."""
    method: Literal["qlora", "lora"] = "qlora"
    """qlora: 4-bit NF4 base weights; lora: full-precision base weights."""
    seed: int = Field(default=0, ge=0)
    """Seeds data order, LoRA initialisation and dropout."""
    threads: int = Field(default=0, ge=0)
    """CPU threads for torch in each process (0: the cores shared out among the
    processes). Part of what makes a run reproducible."""
    processes: int = Field(default=1, ge=1)
    """Data-parallel training processes (DDP: gloo on CPU, NCCL with one GPU each), all
    inside the run's network namespace. The global batch is batch_size x grad_accum x
    processes."""
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)
    """Several machines, `processes` each (docs/scale-out.md); one by default."""
    lora: LoraSettings = Field(default_factory=LoraSettings)
    """LoRA adapter shape."""
    quantization: QuantSettings = Field(default_factory=QuantSettings)
    """4-bit base weights."""
    optim: OptimSettings = Field(default_factory=OptimSettings)
    """Optimizer and schedule."""
    train: TrainSettings = Field(default_factory=TrainSettings)
    """Loop shape."""
    eval: EvalSettings = Field(default_factory=EvalSettings)
    """Held-out evaluation."""
    guards: GuardSettings = Field(default_factory=GuardSettings)
    """Stops on NaN/inf loss, loss spikes and exploding gradients."""


def world_size(recipe: Recipe) -> int:
    """Training processes on all machines together."""
    return recipe.processes * recipe.cluster.nnodes


def shared_part(recipe: Recipe) -> dict[str, Any]:
    """The recipe as every node must hold it (without this node's own keys)."""
    data = recipe.model_dump()
    data["cluster"] = {k: v for k, v in data["cluster"].items()
                       if k not in recipe.cluster.node_specific}
    return data


def parse_recipe(data: dict[str, Any], where: str = "recipe") -> Recipe:
    """Validate recipe data; RecipeError lists every problem as `where: key: message`."""
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = ("unknown key" if err["type"] == "extra_forbidden" else
                   "required key is missing" if err["type"] == "missing" else err["msg"])
            problems.append(f"{where}: {key}: {msg}")
        raise RecipeError("; ".join(problems), hint="fix the listed recipe keys") from None


def read_recipe_data(path: str | Path) -> dict[str, Any]:
    """The parsed TOML of a recipe file (a regular file of at most MAX_RECIPE_BYTES, nesting
    capped); RecipeError when it cannot be had."""
    path = Path(path)
    raw = read_regular(path, max_bytes=MAX_RECIPE_BYTES, what="the recipe file",
                       error=RecipeError)
    try:
        return loads_toml(decode_utf8(raw))
    except ParseProblem as exc:
        raise RecipeError(f"not valid TOML: {exc}", where=str(path),
                          hint="fix the recipe file") from None


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe TOML file."""
    return parse_recipe(read_recipe_data(path), str(path))


def check_against_policy(recipe: Recipe, policy: Policy) -> None:
    """PolicyViolation naming the recipe key and the policy limit for every excess."""
    limits = policy.training.limits
    problems: list[str] = []

    def over(key: str, value: float, limit_key: str, limit: float) -> None:
        if value > limit:
            problems.append(f"{key} = {value} is over the policy limit {limit_key} = {limit}")

    if recipe.method not in policy.training.methods:
        problems.append(f"method = {recipe.method!r} is not in the policy's training.methods "
                        f"= {list(policy.training.methods)}")
    dtype = recipe.quantization.compute_dtype
    if dtype not in policy.training.compute_dtypes:
        problems.append(f"quantization.compute_dtype = {dtype!r} is not in the policy's "
                        f"training.compute_dtypes = {list(policy.training.compute_dtypes)}")
    over("train.epochs", recipe.train.epochs, "training.limits.max_epochs", limits.max_epochs)
    over("train.max_steps", recipe.train.max_steps, "training.limits.max_steps",
         limits.max_steps)
    over("lora.rank", recipe.lora.rank, "training.limits.max_rank", limits.max_rank)
    over("train.seq_len", recipe.train.seq_len, "training.limits.max_seq_len",
         limits.max_seq_len)
    over("processes", recipe.processes, "training.limits.max_processes",
         limits.max_processes)
    over("cluster.nnodes", recipe.cluster.nnodes, "training.limits.max_nodes",
         limits.max_nodes)
    nodes = policy.network.cluster.nodes
    if recipe.cluster.nnodes > 1 and len(nodes) < recipe.cluster.nnodes:
        problems.append(f"cluster.nnodes = {recipe.cluster.nnodes} needs that many node "
                        f"addresses in the policy's network.cluster.nodes ({len(nodes)} "
                        "listed)")
    elif recipe.cluster.nnodes > 1 and recipe.cluster.rendezvous:
        host, port = recipe.cluster.rendezvous.rsplit(":", 1)
        low, high = policy.network.cluster.ports
        if host != nodes[0] or not low <= int(port) <= high:
            problems.append(f"cluster.rendezvous = {recipe.cluster.rendezvous!r} is not node "
                            f"0's address {nodes[0]} on a port in network.cluster.ports "
                            f"= [{low}, {high}]")
    over("optim.learning_rate", recipe.optim.learning_rate,
         "training.limits.max_learning_rate", limits.max_learning_rate)
    if problems:
        raise PolicyViolation("; ".join(problems), where="recipe",
                              hint="lower the recipe values or ask an admin to change the "
                                   "policy")
