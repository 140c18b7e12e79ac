"""Data-parallel decoding on the CPU: several batches at once, each on its own core.

A decoding step of a small model is a chain of small matrix products and many tiny element-wise
ops. Spread over two cores, one such chain gains little (most tiny ops run on one core anyway,
and the cores wait for each other after every product). Two batches decoded side by side, one
core each, keep both cores busy all the time: on the shipped model and 2 cores, beam 4 ran about
1.3x faster this way than one batch at a time on both cores (bench/decode_speed.py, core vs
core_one_stream). CTranslate2 calls the same idea `inter_threads`.

The workers are Python threads: PyTorch releases the GIL inside its ops, so the threads overlap
except in the few Python lines of each step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

Item = TypeVar("Item")
Result = TypeVar("Result")


def workers_for(device: torch.device, jobs: int, requested: int | None = None) -> int:
    """How many batches to decode at once: `requested` if given, else one per CPU thread torch
    uses (never more than there are batches). On a GPU one stream of batches is best."""
    if requested is not None:
        if requested < 1:
            raise ValueError("workers must be at least 1")
        return min(requested, max(jobs, 1))
    if device.type != "cpu":
        return 1
    return max(1, min(torch.get_num_threads(), jobs))


def parallel_map(function: Callable[[Item], Result], items: Sequence[Item], workers: int) -> list[Result]:
    """`[function(item) for item in items]`, run by `workers` threads that share torch's CPU threads
    between them. Items are handed out in order as threads free up, so the longest batches (put
    first by the caller) are not left to one thread at the end. Results keep the items' order."""
    if workers <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    threads = torch.get_num_threads()
    per_worker = max(1, threads // workers)
    try:
        with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(per_worker,),
                                thread_name_prefix="decode") as pool:
            return list(pool.map(function, items))
    finally:
        # torch.set_num_threads in a worker also changes the count that threads created later
        # start with; give it back, so the caller's later threads are not left on one core.
        torch.set_num_threads(threads)
