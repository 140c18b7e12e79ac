"""Data-parallel training across processes: `torchrun --nproc_per_node N -m core train …`.

Every process (rank) holds a full copy of the model. At each step rank r trains on batch r of the
next N batches of the shared stream, and DistributedDataParallel averages the gradients, so N ranks
take exactly the step one process would take with `accumulation = N` (same data, same update).
Rank 0 alone validates and writes checkpoints and metrics. Without torchrun's environment this is
all a no-op: one process, rank 0 of 1.
"""

from __future__ import annotations

import os
import time
import weakref
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

# Tensors handed to our collectives, until the backend's worker threads have let go of them (see `stop`).
_in_collectives: weakref.WeakSet[Tensor] = weakref.WeakSet()


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def start(device: torch.device) -> Group:
    """Join the process group torchrun describes (gloo on CPU, NCCL on CUDA); one process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Group()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Group(dist.get_rank(), dist.get_world_size())


def stop(group: Group) -> None:
    """Leave the process group. First wait until gloo's worker threads have dropped the tensors of
    our last collectives: a worker thread frees its copy of a finished operation a moment after the
    result is back, and freeing a tensor Python knows needs the GIL. If Python is already shutting
    down by then, that thread aborts the process ("terminate called without an active exception",
    about one run in forty on a loaded 2-core machine, after all work was done and saved)."""
    if not (group.active and dist.is_initialized()):
        return
    deadline = time.monotonic() + 10
    while _in_collectives and time.monotonic() < deadline:
        time.sleep(0.001)  # releases the GIL, so the worker threads can finish freeing
    dist.destroy_process_group()


def wrap(module: nn.Module, group: Group) -> nn.Module:
    return nn.parallel.DistributedDataParallel(module) if group.active else module


def agree(code: int, group: Group) -> int:
    """Every rank learns the largest of the ranks' codes (e.g. "stop now" from whichever rank saw it)."""
    if not group.active:
        return code
    value = torch.tensor([code], dtype=torch.long)
    _in_collectives.add(value)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return int(value)


def total(values: list[float], group: Group) -> list[float]:
    """Element-wise sum over ranks (token counts, losses) for logging."""
    if not group.active:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    _in_collectives.add(tensor)
    dist.all_reduce(tensor)
    return tensor.tolist()


def checksums(parameters: list[Tensor], group: Group) -> list[float]:
    """One number per rank summarising its weights: equal numbers mean the replicas agree."""
    local = torch.tensor([float(sum(p.detach().double().sum() for p in parameters))], dtype=torch.float64)
    if not group.active:
        return local.tolist()
    gathered = [torch.zeros_like(local) for _ in range(group.world)]
    _in_collectives.update([local, *gathered])
    dist.all_gather(gathered, local)
    return [float(t) for t in gathered]
