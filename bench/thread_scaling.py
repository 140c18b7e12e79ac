"""Benchmark — how much each engine loses when both cores decode at once: beam 4, core vs CTranslate2 float32.

    python bench/thread_scaling.py [--quick] [--checkpoint checkpoints/multi30k-4lang]

One batch per core is both engines' best layout (bench/decode_speed.py), and there core trails
CTranslate2 by more than on one thread. This measures why. Each engine decodes the same batches (core's
batches of the English test sentences into German, every fourth of them, so long and short ones, beam 4,
decode_speed's length rule) on one thread; then two threads decode a copy each at the same time. Two
threads do twice the work, so 2 × one-thread time ÷ two-thread time is the engine's scaling: 2.0 when
sharing the machine costs nothing. Core runs its searches with the compiled decoder step (built cold at
the start), CTranslate2 with two workers of one thread (`inter_threads`). The engines take turns, the
order reversed every other round; times are medians over the rounds, of the searches alone (each
engine's input is made once, before timing).

Then the same for the decoder's matrix products alone, as core runs them (oneDNN, weights packed by
`fast._packed`, 256 rows: beam 4 × 64 sentences), once with oneDNN's AVX-512 kernels (its choice on this CPU) and once
held to AVX2 (`ONEDNN_MAX_CPU_ISA`, which CTranslate2 selects on AMD CPUs), each in a process of its
own, because oneDNN reads the variable once per process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench import common
from bench.common import log
from bench.decode_speed import LIMITS, PATIENCE, build_compiled_step, ctranslate2_translators, sentence_limits, sorted_chunks
from core import fast

ROWS = 256  # beam 4 × 64 sentences: a full batch's decoder step
# The decoder's matrix products per layer and the output projection: (in, out) features.
PRODUCTS = ((256, 768), (256, 256), (256, 1024), (1024, 256), (256, 8000))
ISAS = {"avx512": None, "avx2": "AVX2"}  # oneDNN's own choice on this CPU, and held to AVX2


def scaling(one_thread_s: float, two_threads_s: float) -> float:
    """Work done per second by two threads at once over one thread's: two threads do twice the work."""
    return 2 * one_thread_s / two_threads_s


def side_by_side(work: Callable[[], object]) -> None:
    """`work` twice at once, on two threads of one torch thread each."""

    def one() -> None:
        torch.set_num_threads(1)
        work()

    pool = [threading.Thread(target=one) for _ in range(2)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def engines(checkpoint: Path, rounds: int, every: int) -> dict:
    import core
    from core.decoding import beam_search
    from core.export import vocabulary_of

    translator = core.load(checkpoint)
    compiled_step = build_compiled_step()
    vocabulary = vocabulary_of(translator.tokenizer)
    ct2 = ctranslate2_translators(translator, vocabulary, "cpu", 2)[0]["float32_streams"]  # two workers of one thread
    torch.set_num_threads(1)  # core's searches on one thread, as each worker of one batch per core
    sources, _ = common.test_set()
    batches = [ids for _, ids in sorted_chunks(translator, sources)][::every]
    # Each engine's input, made once: the timings cover the searches alone.
    padded = [common.pad(ids) for ids in batches]
    max_positions = translator.model.config.max_positions
    pieces = [([[vocabulary[i] for i in row] for row in ids], max(sentence_limits(ids, max_positions))) for ids in batches]

    def core_run() -> None:
        for source in padded:
            beam_search(translator.model, source, 4, 1.0, 1, LIMITS)

    def ct2_run() -> None:
        for rows, limit in pieces:
            ct2.translate_batch(
                rows,
                beam_size=4,
                length_penalty=1.0,
                num_hypotheses=1,
                max_batch_size=len(rows),
                max_decoding_length=limit,
                min_decoding_length=0,
                patience=PATIENCE,
            )

    runs = {"core": core_run, "ct2_float32": ct2_run}
    for run in runs.values():  # warm-up
        run()
    times: dict[str, dict[str, list[float]]] = {name: {"one_thread_s": [], "two_threads_s": []} for name in runs}
    for round_ in range(rounds):
        order = list(runs) if round_ % 2 == 0 else list(runs)[::-1]
        for name in order:
            times[name]["one_thread_s"].append(common.timed(runs[name])[1])
            times[name]["two_threads_s"].append(common.timed(lambda run=runs[name]: side_by_side(run))[1])
            one, two = times[name]["one_thread_s"][-1], times[name]["two_threads_s"][-1]
            log(f"  round {round_ + 1} {name:12s} one thread {one:.2f} s, two at once {two:.2f} s")
    out: dict = {"compiled_decoder_step": compiled_step, "batches": len(batches), "sentences": sum(len(b) for b in batches)}
    for name, each in times.items():
        one, two = common.median(each["one_thread_s"]), common.median(each["two_threads_s"])
        out[name] = {**each, "one_thread_median_s": one, "two_threads_median_s": two, "scaling": scaling(one, two)}
    out["core_over_ct2_float32"] = {
        layout: out["ct2_float32"][f"{layout}_median_s"] / out["core"][f"{layout}_median_s"] for layout in ("one_thread", "two_threads")
    }
    return out


def products(rounds: int, repeats: int) -> dict:
    """One thread, then two at once, running the decoder's matrix products `repeats` times (this process's ISA)."""
    torch.set_num_threads(1)
    packed = {shape: fast._packed(torch.randn(shape[1], shape[0])) for shape in PRODUCTS}  # as `fast.dense` packs them

    def work() -> None:
        inputs = {shape: torch.randn(ROWS, shape[0]) for shape in PRODUCTS}
        with torch.inference_mode():
            for _ in range(repeats):
                for shape in PRODUCTS:
                    torch.ops.mkldnn._linear_pointwise(inputs[shape], packed[shape], None, "none", [], "")

    work()
    one, two = [], []
    for _ in range(rounds):  # alternating
        one.append(common.timed(work)[1])
        two.append(common.timed(lambda: side_by_side(work))[1])
    return {"one_thread_s": one, "two_threads_s": two, "scaling": scaling(common.median(one), common.median(two))}


def products_per_isa(rounds: int, repeats: int) -> dict:
    out = {}
    for label, isa in ISAS.items():
        env = {**os.environ, "ONEDNN_MAX_CPU_ISA": isa} if isa else {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
        command = [sys.executable, __file__, "--products-only", "--rounds", str(rounds), "--repeats", str(repeats)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        out[label] = json.loads(done.stdout.strip().splitlines()[-1])
        log(f"  matrix products, {label}: scaling {out[label]['scaling']:.3f}")
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=common.DEFAULT_CHECKPOINT)
    parser.add_argument("--rounds", type=int, default=0, help="alternating rounds (default: 3 quick, 5 full)")
    parser.add_argument("--repeats", type=int, default=20, help="matrix products: passes over the decoder's products per timing")
    parser.add_argument("--products-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rounds = args.rounds or (3 if args.quick else 5)
    if args.products_only:  # one ISA, in its own process (products_per_isa)
        print(json.dumps(products(rounds, args.repeats)))
        return {}
    log(f"thread_scaling: beam 4, one thread against two at once, {rounds} rounds")
    out = {
        "benchmark": "thread_scaling",
        "quick": args.quick,
        "machine": common.machine_info(1),
        "setup": {"checkpoint": str(args.checkpoint), "direction": "en-de", "beam": 4, "rows": ROWS, "products": PRODUCTS},
        "rounds": rounds,
        "engines": engines(args.checkpoint, rounds, every=8 if args.quick else 4),
        "matrix_products": products_per_isa(rounds, args.repeats),
    }
    path = common.write_json(common.result_path("thread_scaling", args.json), out)
    e = out["engines"]
    log(
        f"scaling: core {e['core']['scaling']:.3f}, CTranslate2 {e['ct2_float32']['scaling']:.3f}; core ÷ CTranslate2: "
        f"one thread {e['core_over_ct2_float32']['one_thread']:.3f}, two at once {e['core_over_ct2_float32']['two_threads']:.3f}; "
        + ", ".join(f"products {k} {v['scaling']:.3f}" for k, v in out["matrix_products"].items())
    )
    log(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
