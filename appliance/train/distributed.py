"""Data-parallel training across processes (DDP): the pieces the trainer needs.

Workers are started by torchrun's agent (appliance.train.launcher) inside the isolated
child's network namespace, with torchrun's environment contract (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT), and rendezvous over that namespace's own loopback,
or, across machines, over the one cluster interface of the sandbox (`Topology`).
Backend: gloo on CPU, NCCL on CUDA (one GPU per local rank). Every rank holds every record
(in memory) and the same per-epoch order; step `s` takes the same global slice on every
rank and each rank trains on its interleaved share of it (like DistributedSampler, padded
by repetition so that no rank is ever empty). Gradients are averaged by DDP's all-reduce;
the loss of each rank is scaled so that the average is the per-token mean over the whole
global batch. With WORLD_SIZE unset this is a world of one and every helper is a no-op.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from appliance.train.recipe import Recipe

T = TypeVar("T")
MASTER_ADDR = "127.0.0.1"
MASTER_PORT = 29500  # the namespace is private to this run: no other listener can exist
LOOPBACK = "lo"
TIMEOUT = _dt.timedelta(minutes=30)
# The DDP wrapper lives until the worker's os._exit (appliance.train.child): its reducer
# holds the last reference to the gloo process group, and that group's destructor, run
# with the GIL held, deadlocks against a gloo thread that needs the GIL to release a
# finished work's tensors (seen under load). An ending worker skips destructors instead.
_LIVE: list[Any] = []


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> World:
        """From torchrun's variables; a world of one when they are absent."""
        return cls(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
                   int(os.environ.get("LOCAL_RANK", "0")))

    @property
    def main(self) -> bool:
        """The rank that writes checkpoints, metrics events and the adapter."""
        return self.rank == 0

    @property
    def node_main(self) -> bool:
        """The rank that writes this node's checkpoints and reports its progress (its first
        local rank: rank 0 on one machine)."""
        return self.local_rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process."""
        return self.size > 1


@dataclass(frozen=True)
class Resumed:
    """The checkpoint a rank resumes from (step 0 and no digest: none)."""

    step: int = 0
    digest: str = ""


@dataclass(frozen=True)
class Topology:
    """Where this node's workers sit: nodes, this node's rank, processes per node, the
    rendezvous endpoint, and the interface the collectives use."""

    nnodes: int = 1
    node_rank: int = 0
    nproc: int = 1
    rendezvous: str = f"{MASTER_ADDR}:{MASTER_PORT}"
    interface: str = LOOPBACK
    local_addr: str = MASTER_ADDR

    @classmethod
    def of(cls, recipe: Recipe, cluster: dict[str, Any] | None) -> Topology:
        """One machine's loopback, or the cluster the parent resolved (`job["cluster"]`)."""
        if not cluster:
            return cls(nproc=recipe.processes)
        return cls(nnodes=int(cluster["nnodes"]), node_rank=int(cluster["node_rank"]),
                   nproc=recipe.processes, rendezvous=str(cluster["rendezvous"]),
                   interface=str(cluster["interface"]), local_addr=str(cluster["address"]))

    @property
    def world_size(self) -> int:
        """Processes on every node together."""
        return self.nnodes * self.nproc

    @property
    def first_rank(self) -> int:
        """The global rank of this node's local rank 0 (torchrun's static rendezvous)."""
        return self.node_rank * self.nproc

    @property
    def ranks(self) -> range:
        """The global ranks of this node's workers."""
        return range(self.first_rank, self.first_rank + self.nproc)

    def backend_env(self) -> dict[str, str]:
        """The collectives stay on the run's interface (never a host-name look-up)."""
        return {"GLOO_SOCKET_IFNAME": self.interface, "NCCL_SOCKET_IFNAME": self.interface}


def device_for(world: World) -> Any:
    """CUDA device of this local rank when there is a GPU, else the CPU."""
    import torch

    if not torch.cuda.is_available():
        return torch.device("cpu")
    if world.local_rank >= torch.cuda.device_count():
        from appliance.errors import TrainingError

        raise TrainingError(f"processes = {world.size} needs one GPU per process; "
                            f"{torch.cuda.device_count()} visible", where="recipe",
                            hint="lower `processes` or make more GPUs visible")
    return torch.device("cuda", world.local_rank)


def init(world: World, device: Any) -> None:
    """Join the process group (gloo on CPU, NCCL on CUDA)."""
    if not world.distributed:
        return
    import torch.distributed as dist

    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, init_method="env://", rank=world.rank,
                            world_size=world.size, timeout=TIMEOUT)


def backend(world: World) -> str | None:
    """The process group's backend, or None for a world of one."""
    if not world.distributed:
        return None
    import torch.distributed as dist

    return str(dist.get_backend())


def shutdown(world: World) -> None:
    """Leave the process group (once; later calls do nothing)."""
    if world.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def wrap(model: Any, world: World, device: Any) -> Any:
    """The model DDP-wrapped (gradients all-reduced in backward), or as is for one process."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    wrapped = DistributedDataParallel(model, device_ids=ids)
    _LIVE.append(wrapped)
    return wrapped


def padded(chosen: Sequence[T], world: World) -> list[T]:
    """One global batch, padded by repetition from its start to at least one example per
    rank (as DistributedSampler pads); the padding counts in the loss like any example."""
    out = list(chosen)
    while len(out) < world.size:
        out.append(chosen[len(out) % len(chosen)])
    return out


def share(batch: Sequence[T], world: World) -> list[T]:
    """This rank's interleaved share of a padded global batch."""
    return list(batch[world.rank::world.size])


def all_sum(values: Sequence[float], world: World, device: Any) -> list[float]:
    """Element-wise sum of `values` over all ranks (float64)."""
    if not world.distributed:
        return list(values)
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return [float(v) for v in tensor.cpu()]


@contextlib.contextmanager
def accumulate(model: Any, sync: bool) -> Iterator[None]:
    """No gradient all-reduce for this micro-batch unless `sync` (the last of the step)."""
    if sync or not hasattr(model, "no_sync"):
        yield
        return
    with model.no_sync():
        yield


def params_digest(params: dict[str, Any]) -> str:
    """sha256 over the trainable tensors' bytes in name order (equal on every rank when the
    gradients really were synchronised)."""
    digest = hashlib.sha256()
    for name in sorted(params):
        digest.update(name.encode("utf-8"))
        digest.update(params[name].detach().float().cpu().contiguous().numpy().tobytes())
    return "sha256:" + digest.hexdigest()


NODE_BYTES = 1024


def _gather_bytes(data: bytes, world: World, device: Any, size: int) -> list[bytes]:
    """`data` (at most `size` bytes) of every rank, in rank order."""
    import torch
    import torch.distributed as dist

    if len(data) > size:
        raise ValueError("too much to gather")
    padded_data = data.ljust(size, b"\0")
    mine = torch.frombuffer(bytearray(padded_data), dtype=torch.uint8).to(device)
    every = [torch.empty_like(mine) for _ in range(world.size)]
    dist.all_gather(every, mine)
    return [bytes(t.cpu().numpy().tobytes()).rstrip(b"\0") for t in every]


def agree(world: World, device: Any, fingerprint: dict[str, str],
          node: Mapping[str, Any], resumed: Resumed | None = None) -> list[dict[str, Any]]:
    """Before the first step: every rank holds the same fingerprint (dataset, base model,
    recipe and policy digests) and resumes from the same checkpoint (step and content
    digest; each node reads its own), or every rank raises the same TrainingError naming
    the first that differs and where; returns every rank's `node` description."""
    if not world.distributed:
        return [{**node, "rank": world.rank}]
    import json

    from appliance.errors import TrainingError

    resumed = resumed or Resumed()
    points = [json.loads(raw) for raw in _gather_bytes(
        json.dumps([resumed.step, resumed.digest]).encode(), world, device, 128)]

    names = sorted(fingerprint)
    mine = b"".join(hashlib.sha256(fingerprint[k].encode()).digest() for k in names)
    prints = _gather_bytes(mine, world, device, 32 * len(names))
    nodes = [json.loads(raw) for raw in _gather_bytes(
        json.dumps({**node, "rank": world.rank}, sort_keys=True).encode(), world, device,
        NODE_BYTES)]
    for rank, theirs in enumerate(prints):
        for i, name in enumerate(names):
            if theirs[32 * i:32 * (i + 1)] != prints[0][32 * i:32 * (i + 1)]:
                raise TrainingError(
                    f"node {nodes[rank].get('node_rank')} (rank {rank}) has a different "
                    f"{name} digest than node 0", where="cluster run",
                    hint="every node needs the same dataset, base model, recipe and policy")
    for rank, (step, digest) in enumerate(points):
        if [step, digest] != points[0]:
            raise TrainingError(_checkpoint_difference(nodes[rank].get("node_rank"), rank,
                                                       (step, digest), tuple(points[0])),
                                where="cluster run",
                                hint="resume every node with appliance train --resume RUN "
                                     "from the checkpoints of one cancel, or start the run "
                                     "again on every node")
    return nodes


def _checkpoint_difference(node_rank: object, rank: int, theirs: tuple[int, str],
                           first: tuple[int, str]) -> str:
    """One line: how rank `rank`'s checkpoint differs from rank 0's."""
    def where(point: tuple[int, str]) -> str:
        return f"step {point[0]}" if point[1] else "no checkpoint (step 0)"

    who = f"node {node_rank} (rank {rank})"
    if theirs[0] != first[0] or not theirs[1] or not first[1]:
        return f"{who} resumes from {where(theirs)}, node 0 from {where(first)}"
    return (f"{who} has a different checkpoint at step {theirs[0]} than node 0 "
            f"({theirs[1][:19]} against {first[1][:19]})")
