"""core.parallel: batches decoded side by side, one CPU thread each."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from core.parallel import parallel_map, workers_for


def test_results_keep_the_order_of_the_items_whichever_thread_finishes_first() -> None:
    def slow_for_small(n: int) -> tuple[int, int]:
        time.sleep(0.02 / (n + 1))
        return n * n, threading.get_ident()

    out = parallel_map(slow_for_small, list(range(12)), workers=3)
    assert [square for square, _ in out] == [n * n for n in range(12)]
    assert len({thread for _, thread in out}) > 1
    assert threading.get_ident() not in {thread for _, thread in out}


def test_each_worker_gets_its_share_of_threads_and_others_keep_theirs() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen_in_workers: list[int] = []
        seen_in_new_threads: list[int] = []

        def look(_: int) -> None:
            seen_in_workers.append(torch.get_num_threads())
            # A thread started meanwhile (say, the app serving another visitor) starts with the
            # caller's count, not the workers' share.
            fresh = threading.Thread(target=lambda: seen_in_new_threads.append(torch.get_num_threads()))
            fresh.start()
            fresh.join()

        parallel_map(look, [0, 1, 2, 3], workers=2)
        assert set(seen_in_workers) == {1}
        assert set(seen_in_new_threads) == {2}
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_an_error_in_one_item_reaches_the_caller() -> None:
    def fail_on_three(n: int) -> int:
        if n == 3:
            raise ValueError("bad item 3")
        return n

    with pytest.raises(ValueError, match="bad item 3"):
        parallel_map(fail_on_three, list(range(6)), workers=2)
    assert parallel_map(fail_on_three, [0, 1, 2], workers=2) == [0, 1, 2]


def test_how_many_batches_run_at_once() -> None:
    cpu = torch.device("cpu")
    assert workers_for(cpu) == torch.get_num_threads()
    assert workers_for(cpu, requested=3) == 3
    assert workers_for(torch.device("cuda")) == 1
    with pytest.raises(ValueError, match="at least 1"):
        workers_for(cpu, requested=0)


def test_never_more_workers_than_items() -> None:
    threads_seen: set[int] = set()
    workers_alive: list[int] = []

    def note_thread(n: int) -> int:
        threads_seen.add(threading.get_ident())
        workers_alive.append(sum(t.name.startswith("decode-") for t in threading.enumerate()))
        return n

    assert parallel_map(note_thread, [0], workers=8) == [0]
    assert threads_seen == {threading.get_ident()}  # one item: run in the caller's thread
    assert parallel_map(note_thread, [0, 1, 2], workers=8) == [0, 1, 2]
    assert max(workers_alive) == 3
