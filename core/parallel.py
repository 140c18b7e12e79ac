"""Data-parallel decoding on the CPU: several batches at once, each on its own core.

A decoding step of a small model is a chain of small matrix products and many tiny element-wise
ops. Spread over two cores, one such chain gains little (most tiny ops run on one core anyway,
and the cores wait for each other after every product). Two batches decoded side by side, one
core each, keep both cores busy all the time. `bench/decode_speed.py` compares the two layouts
(core vs core_one_stream); the figures are in bench/results/decode_speed.json and the README's speed
section, not here, because they change with the machine. CTranslate2 calls the same idea `inter_threads`.

The workers are Python threads: PyTorch releases the GIL inside its ops, so the threads overlap
except in the few Python lines of each step.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

Item = TypeVar("Item")
Result = TypeVar("Result")


def workers_for(device: torch.device, requested: int | None = None) -> int:
    """How many batches to decode at once: `requested` if given, else one per CPU thread torch
    uses. On a GPU one stream of batches is best. (`parallel_map` never starts more workers than
    it has items.)"""
    if requested is not None:
        if requested < 1:
            raise ValueError("workers must be at least 1")
        return requested
    return torch.get_num_threads() if device.type == "cpu" else 1


def parallel_map(function: Callable[[Item], Result], items: Sequence[Item], workers: int) -> list[Result]:
    """`[function(item) for item in items]`, run by `workers` threads that share torch's CPU threads
    between them. Items are handed out in order as threads free up, so the longest batches (put
    first by the caller) are not left to one thread at the end. Results keep the items' order; the
    first error raised by `function` is raised here once every thread has stopped."""
    workers = min(workers, len(items))
    if workers <= 1:
        return [function(item) for item in items]
    threads = torch.get_num_threads()
    pending: queue.SimpleQueue[tuple[int, Item]] = queue.SimpleQueue()
    for pair in enumerate(items):
        pending.put(pair)
    results: list[Result | None] = [None] * len(items)
    errors: list[BaseException] = []
    started = threading.Barrier(workers + 1)

    def work() -> None:
        # torch gives a thread the process-wide count at its first parallel op; take that first,
        # or it would override this thread's share once the caller restores the count below.
        torch.get_num_threads()
        torch.set_num_threads(max(1, threads // workers))
        started.wait()
        while not errors:
            try:
                index, item = pending.get_nowait()
            except queue.Empty:
                return
            try:
                results[index] = function(item)
            except BaseException as error:  # handed to the caller below
                errors.append(error)

    pool = [threading.Thread(target=work, name=f"decode-{n}", daemon=True) for n in range(workers)]
    for thread in pool:
        thread.start()
    started.wait()
    # torch.set_num_threads in a thread also sets the count that threads started later begin with:
    # give that back at once, so a thread the app starts meanwhile is not left on one core.
    torch.set_num_threads(threads)
    for thread in pool:
        thread.join()
    if errors:
        raise errors[0]
    return results  # type: ignore[return-value]
