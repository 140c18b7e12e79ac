"""Where core's own decoding spends its time on the CPU: operators, overhead, one decoder step.

    python bench/profile_decode.py [--quick] [--sentences N] [--checkpoint checkpoints/multi30k-4lang]

The shipped checkpoint decodes the first N Multi30K test_2016_flickr English sentences into
German (core's preprocessing, batches of 64 longest first, the length rule of
bench/decode_speed.py), greedy and beam 4, by `core.decoding.greedy` / `beam_search` on one
thread, one batch at a time (no `core.parallel`: one core's share of the bulk job).

Reported, for each search:
- `ops`: torch.profiler (record_shapes off) by operator: self CPU time, calls, share of the
  summed self time. Self time of an `aten::` op is the time spent inside it minus its child ops,
  dispatcher included once it is entered.
- `split`: the wall time of the same decoding without the profiler, against the summed self time
  of all profiled ops. `wall - ops_self` is what runs outside any operator: the Python of the
  search and the model, module calls, argument parsing and the dispatch up to an op's entry
  (the profiler's own cost is left out by timing the wall without it). As a second view,
  `per_step` gives one decoder step (embed, 3 layers, output projection, log_softmax) at 64 rows
  (greedy) and 256 rows (beam 4 × 64), and at 1 row (`rows_1`): at one row the arithmetic is
  almost nothing, so that time is the fixed per-step cost every batch pays whatever its size:
  Python, dispatch and ~100 op launches, and reading every weight matrix once (about 19 MB on the
  shipped model, more than the caches hold), which dominates it.
Each step time is the median of `--repeats` interleaved timings, the cache at a fixed length
(`--cache-length`, default 12, about the mean target length) restored before each step.
- `steps_vs_ct2` (when CTranslate2 is installed): one decoder step of core against one of
  CTranslate2 float32 on the same weights, one thread, for 1, 4, 16 and 64 sentences of one test
  batch (greedy) and 64 sentences × beam 4. CTranslate2 gives no step on its own, so its step
  is the difference between two searches forced to 8 and to 24 tokens (`min_decoding_length`),
  divided by 16; core's step is timed at the cache length 16 between them, both the Python step
  (`core_us`) and the compiled one (`core.compiled`, `compiled_us`; built here, after the
  profile and `per_step`, which are of the Python step). Where the Python step's time nears
  CTranslate2's, eager PyTorch's overhead is hidden by the arithmetic; where the rows are few,
  the ratio is that overhead, and the compiled step shows how much of it is Python's.
Writes bench/results/decode_profile.json (with provenance) and prints Markdown tables.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from pathlib import Path

if __package__ in (None, ""):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench import common
from bench.common import log
from bench.common import pad as _pad
from core import compiled
from core.decoding import _next_log_probs, beam_search, greedy
from core.model import reorder_caches
from core.vocab import BOS_ID, PAD_ID

SRC, TGT = "en", "de"
BATCH = 64
BEAM = 4


def load(checkpoint: Path):
    import core

    return core.load(checkpoint, device="cpu")


def batches(translator, n: int) -> list[torch.Tensor]:
    """The first `n` test sentences as padded source batches, core's preprocessing and order."""
    from bench.decode_speed import sorted_chunks

    lines = common.test_set(SRC, TGT)[0][:n]
    return [_pad(ids) for _, ids in sorted_chunks(translator, lines)]


def search(model, sources: list[torch.Tensor], beam: int) -> list[list[int]]:
    """Token ids of the best hypothesis of every sentence (in batch order)."""
    from bench.decode_speed import LIMITS

    out = []
    for source in sources:
        if beam == 1:
            out += [h.tokens for h in greedy(model, source, LIMITS)]
        else:
            out += [h[0].tokens for h in beam_search(model, source, beam, 1.0, 1, LIMITS)]
    return out


# --- one decoder step ---------------------------------------------------------------------------


@dataclasses.dataclass
class StepState:
    """A decoder half-way through: caches holding `length` positions for `rows` rows."""

    caches: list
    mask: torch.Tensor
    tokens: torch.Tensor  # [rows, 1]
    length: int


@torch.inference_mode()
def step_state(model, source: torch.Tensor, rows: int, length: int) -> StepState:
    """Encode `source` and feed `length` tokens; with more `rows` than sentences, each sentence's
    row is copied as beam search fans it out (`reorder_caches`)."""
    caches = model.start_cache(model.encode(source))
    mask = model.source_mask(source)
    if rows > source.shape[0]:  # the beams of a sentence share its source (`LayerCache.beams`)
        beams = rows // source.shape[0]
        caches = reorder_caches(caches, torch.arange(source.shape[0]).repeat_interleave(beams), beams=beams)
    tokens = torch.full((rows, 1), BOS_ID, dtype=torch.long)
    for position in range(length):
        hidden = model.decode(tokens, caches, mask, offset=position, incremental=True)
        tokens = model.logits(hidden[:, -1]).argmax(-1, keepdim=True)
    return StepState(caches, mask, tokens, length)


@torch.inference_mode()
def one_step(model, state: StepState, reorder: torch.Tensor | None = None) -> torch.Tensor:
    """What a search does per step (for beam search the self-attention cache reorder left by the
    step before, which the decoder applies as it appends; then `core.decoding._next_log_probs`),
    on a copy of the caches so the state stays at its length."""
    caches = [copy.copy(c) for c in state.caches]
    if reorder is not None:
        caches = reorder_caches(caches, reorder)
    hidden = model.decode(state.tokens, caches, state.mask, offset=state.length, incremental=True)
    return model.logits(hidden[:, -1]).float().log_softmax(dim=-1)


@torch.inference_mode()
def one_compiled_step(step, state: StepState, reorder: torch.Tensor | None = None) -> torch.Tensor:
    """`one_step` by a search's compiled decoder `step` (`core.compiled.decoder_step`)."""
    caches = [copy.copy(c) for c in state.caches]
    if reorder is not None:
        caches = reorder_caches(caches, reorder)
    return step(state.tokens, caches, state.mask, state.length)


def time_steps(variants: dict, repeats: int, inner: int = 10, warm: bool = False) -> dict[str, float]:
    """Median microseconds per call of each `variants[name]()`, the variants interleaved
    (A B C, A B C, …) so that a slow patch of a shared machine hits them all alike. `warm`: each
    timing follows an untimed call, so that no variant pays for refilling the CPU caches after
    the one before it (needed when the variants are different engines, with weights of their own)."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in variants.items():
            if warm:
                fn()
            start = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - start) / inner * 1e6)
    return {name: common.median(t) for name, t in times.items()}


def per_step(model, source: torch.Tensor, length: int, repeats: int) -> dict[str, float]:
    states = {
        "greedy_rows_64": (step_state(model, source[:BATCH], BATCH, length), None),
        "beam4_rows_256": (step_state(model, source[:BATCH], BATCH * BEAM, length), torch.randperm(BATCH * BEAM)),
        "rows_1": (step_state(model, source[:1], 1, length), None),
    }
    variants = {name: (lambda s=s, r=r: one_step(model, s, r)) for name, (s, r) in states.items()}
    return time_steps(variants, repeats)


SHORT, LONG = 8, 24  # tokens of the two forced CTranslate2 searches whose difference is 16 steps


def steps_vs_ct2(translator, source: torch.Tensor, repeats: int) -> dict | None:
    """Core's and CTranslate2's time for one decoder step (µs, medians of interleaved timings) at
    several row counts; None without CTranslate2."""
    from bench.decode_speed import ctranslate2_translators
    from core.export import vocabulary_of

    vocabulary = vocabulary_of(translator.tokenizer)
    engine = ctranslate2_translators(translator, vocabulary, "cpu", 1)[0].get("float32")  # one thread
    if engine is None:
        return None

    def forced(pieces: list[list[str]], beam: int, length: int):
        return lambda: engine.translate_batch(
            pieces, beam_size=beam, max_batch_size=BATCH, min_decoding_length=length, max_decoding_length=length
        )

    model, cache_length = translator.model, (SHORT + LONG) // 2
    compiled_step = None
    if compiled.build():
        with torch.inference_mode():
            compiled_step = compiled.decoder_step(model, lambda *args: _next_log_probs(model, *args))
    out = {}
    layouts = {"rows_1": (1, 1), "rows_4": (4, 1), "rows_16": (16, 1), "rows_64": (64, 1), "beam4_rows_256": (64, BEAM)}
    for label, (sentences, beam) in layouts.items():
        rows = source[:sentences]
        pieces = [[vocabulary[i] for i in row.tolist() if i != PAD_ID] for row in rows]
        state = step_state(model, rows, sentences * beam, cache_length)
        reorder = torch.randperm(sentences * beam) if beam > 1 else None
        variants = {
            "core": lambda state=state, reorder=reorder: one_step(model, state, reorder),
            "short": forced(pieces, beam, SHORT),
            "long": forced(pieces, beam, LONG),
        }
        if compiled_step is not None:
            variants["compiled"] = lambda state=state, reorder=reorder: one_compiled_step(compiled_step, state, reorder)
        times = time_steps(variants, repeats, inner=3, warm=True)
        ct2_step = (times["long"] - times["short"]) / (LONG - SHORT)
        out[label] = {
            "core_us": round(times["core"], 1),
            "ct2_us": round(ct2_step, 1),
            "core_time_over_ct2": round(times["core"] / ct2_step, 2),
        }
        if compiled_step is not None:
            out[label] |= {"compiled_us": round(times["compiled"], 1), "compiled_time_over_ct2": round(times["compiled"] / ct2_step, 2)}
        log(f"  {label}: {out[label]}")
    return out


# --- profile ------------------------------------------------------------------------------------


def profile(model, sources: list[torch.Tensor], beam: int, top: int) -> dict:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    search(model, sources[:1], beam)  # warm-up
    _, wall = common.timed(lambda: search(model, sources, beam))
    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        search(model, sources, beam)
    events = prof.key_averages()
    ops_self = sum(e.self_cpu_time_total for e in events) / 1e6
    aten_self = sum(e.self_cpu_time_total for e in events if e.key.startswith("aten::")) / 1e6
    ordered = sorted(events, key=lambda e: -e.self_cpu_time_total)
    table = [
        {
            "op": e.key,
            "self_ms": round(e.self_cpu_time_total / 1e3, 2),
            "calls": e.count,
            "us_per_call": round(e.self_cpu_time_total / max(1, e.count), 2),
            "share": round(e.self_cpu_time_total / 1e6 / ops_self, 4),
        }
        for e in ordered[:top]
    ]
    calls = sum(e.count for e in events if e.key.startswith("aten::"))
    return {
        "sentences": sum(s.shape[0] for s in sources),
        "wall_s": round(wall, 3),
        "sentences_per_s": round(sum(s.shape[0] for s in sources) / wall, 1),
        "split": {
            "wall_s": round(wall, 3),
            "ops_self_s": round(ops_self, 3),
            "aten_self_s": round(aten_self, 3),
            "outside_ops_s": round(wall - ops_self, 3),
            "outside_ops_share": round((wall - ops_self) / wall, 3),
            "aten_calls": calls,
        },
        "ops": table,
    }


def markdown(out: dict) -> str:
    parts = []
    for name in ("greedy", "beam4"):
        block = out[name]
        split = block["split"]
        parts.append(
            f"### {name}: {block['sentences']} sentences, {block['sentences_per_s']} sent/s on one thread; "
            f"{split['outside_ops_share']:.0%} of the wall time outside any op ({split['aten_calls']:,} aten calls)\n"
        )
        rows = [[o["op"], o["self_ms"], o["calls"], o["us_per_call"], f"{o['share']:.1%}"] for o in block["ops"]]
        parts.append(common.markdown_table(["op", "self ms", "calls", "µs/call", "share"], rows))
    steps = out["per_step_us"]
    parts.append(f"\n### one decoder step, cache length {out['cache_length']} (median µs)\n")
    parts.append(common.markdown_table(["rows", "µs"], [[k, v] for k, v in steps.items()]))
    if out.get("steps_vs_ct2"):
        parts.append("\n### one decoder step, core vs CTranslate2 float32, one thread (median µs)\n")
        rows = [
            [k, v["core_us"], v.get("compiled_us"), v["ct2_us"], v["core_time_over_ct2"], v.get("compiled_time_over_ct2")]
            for k, v in out["steps_vs_ct2"].items()
        ]
        headers = ["rows", "core µs", "compiled µs", "CT2 µs", "core time / CT2 time", "compiled time / CT2 time"]
        parts.append(common.markdown_table(headers, rows))
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=common.DEFAULT_CHECKPOINT)
    parser.add_argument("--sentences", type=int, default=0, help="first N test sentences (default 512, quick 128)")
    parser.add_argument("--repeats", type=int, default=0, help="step timings per variant (default 15, quick 5)")
    parser.add_argument("--cache-length", type=int, default=12)
    parser.add_argument("--top", type=int, default=20, help="operators in the table")
    args = parser.parse_args(argv)
    n = args.sentences or (128 if args.quick else 512)
    repeats = args.repeats or (5 if args.quick else 15)
    torch.set_num_threads(1)  # one batch per core: this is one core's share
    machine = common.machine_info(1)
    translator = load(args.checkpoint)
    model = translator.model
    sources = batches(translator, n)
    out: dict = {"checkpoint": str(args.checkpoint), "threads": 1, "batch": BATCH, "cache_length": args.cache_length}
    for name, beam in (("greedy", 1), ("beam4", BEAM)):
        log(f"profiling {name} on {n} sentences")
        out[name] = profile(model, sources, beam, args.top)
    log("timing one decoder step")
    out["per_step_us"] = {k: round(v, 1) for k, v in per_step(model, sources[len(sources) // 2], args.cache_length, repeats).items()}
    log("one decoder step, core vs CTranslate2")
    out["steps_vs_ct2"] = steps_vs_ct2(translator, sources[len(sources) // 2], repeats)
    out["note"] = "measured on a shared machine: absolute times vary with other load; compare within one run"
    path = common.write_json(common.result_path("decode_profile", args.json), {**out, "machine": machine})
    print(markdown(out))
    log(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
