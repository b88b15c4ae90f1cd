"""Policy for training runs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from appliance.policy._base import Section

Method = Literal["qlora", "lora"]
ComputeDtype = Literal["float32", "bfloat16", "float16"]


class TrainingLimits(Section):
    """Upper bounds a recipe must respect; a recipe over one is refused naming the key."""

    max_epochs: int = Field(default=10, ge=1)
    """Most passes over the training split."""
    max_steps: int = Field(default=100_000, ge=1)
    """Most optimizer steps."""
    max_rank: int = Field(default=64, ge=1)
    """Largest LoRA rank."""
    max_seq_len: int = Field(default=4096, ge=16)
    """Longest tokenised sequence."""
    max_learning_rate: float = Field(default=1e-3, gt=0)
    """Largest peak learning rate."""
    max_processes: int = Field(default=8, ge=1, le=256)
    """Most data-parallel training processes per run (each loads the base model: memory
    and, on GPUs, one device per process)."""
    max_nodes: int = Field(default=1, ge=1, le=64)
    """Most machines one run may span (`--nnodes`); 1 keeps every run on one machine.
    More needs `[network.cluster]` too."""


class TrainingPolicy(Section):
    """What training runs may do."""

    methods: list[Method] = Field(default_factory=lambda: list[Method](["qlora"]), min_length=1)
    """Allowed fine-tuning methods."""
    compute_dtypes: list[ComputeDtype] = Field(
        default_factory=lambda: list[ComputeDtype](["float32", "bfloat16", "float16"]),
        min_length=1,
    )
    """Allowed compute dtypes for quantised layers."""
    limits: TrainingLimits = Field(default_factory=TrainingLimits)
    """Upper bounds for recipes."""
    require_eval_split: Literal[True] = True
    """A held-out eval split is required; its records never enter training."""
    min_eval_fraction: float = Field(default=0.05, gt=0.0, lt=1.0)
    """Smallest share of records held out for evaluation."""
    eval_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    """Share of records an import holds out for evaluation."""
    encrypt_checkpoints: bool = True
    """Encrypt checkpoints at rest (adapter weights can reveal training data)."""
