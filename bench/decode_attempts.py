"""Overhead removals tried on core's own decoding, each measured against the code before it.

    python bench/decode_attempts.py [--quick] [--sentences 256] [--rounds 3] [--no-compile]
    python bench/decode_attempts.py --only compiled_candidates|fused_self_attention [--sentences 1000] [--repeats 3]

Issue 19, section 2: core's greedy and beam-4 decoding on the CPU, closer to CTranslate2's. Every
attempt is switched on and off in this one process (the speed paths are module attributes of
`core.fast`, swapped here for the code they replaced), and the variants take turns: per-step
timings interleaved A B C, A B C, …, and end-to-end searches over `--sentences` Multi30K test
sentences in `--rounds` rounds, the order reversed every other round; medians are reported. The
end-to-end runs also check that every variant finds the same token ids as the code before.
One thread, one batch of 64 at a time (one core's share of the bulk job; see
bench/profile_decode.py for where the time goes).

Attempts:
- joined_weights_kept (kept, `fast._joined`): the joined q/k/v (and cross-attention q) weights
  made once per weight update instead of copied at every step.
- contiguous_cross_cache (kept, `fast.contiguous` in `LayerCache`): the source keys/values
  laid out contiguously once, not copied by attention's matmul at every step and layer.
- packed_output_projection (kept, `fast.dense` in `Transformer.logits`): the 8000-word output
  projection as oneDNN's matmul on a weight reordered once.
- packed_linear_layers (kept, `fast.linear` and `fast.project`): every linear layer that way too.
- blocked_choice (kept, `fast.argmax` and `fast.top_candidates`): greedy's argmax and beam
  search's top-k over beams × vocabulary found through block maxima.
- one_copy_cache (kept, `fast.append` in `LayerCache`): beam search's reordered self-attention
  cache written straight into the grown cache, one copy per step instead of two.
- fused_relu (kept, `fast.linear_relu` in `FeedForward`): the ReLU as a oneDNN post-op of the
  first feed-forward matmul, not a separate pass over the widest activations.
- packed_encoder (kept, `fast.RealTokens.if_padded` in `Transformer.encode_embedded`): the
  encoder's position-wise layers on the real source tokens only (sorted test batches still pad a
  sixth to a third of their positions); the per-step timings leave the encoder out, the
  end-to-end runs include it.
- shared_source_cache (kept, `fast.group_beams` and `LayerCache.beams`, measured per step
  alone): the beams of a sentence share one copy of its source keys/values, against a copy per
  beam; the searches cannot switch it off, so every end-to-end variant has it.
- reused_memory (kept, `fast.reuse_freed_memory`, in fresh processes: it is set once per
  process): glibc's allocator keeps freed blocks for reuse, against its defaults, with the page
  faults each search causes.
- preallocated_kv_cache (tried, measured alone): writing each step's keys/values into a
  preallocated buffer instead of `torch.cat`, timed on the cache shapes of a greedy decoding.
- torch_compile (tried): `torch.compile(dynamic=True)` of one decoder step (inductor, freezing
  on), in two fresh processes sharing a new TORCHINDUCTOR_CACHE_DIR: cold, then warm cache, each
  timed on the first 128 sentences against the kept eager code, eager and compiled alternating. The
  compile time is set against the time it saves on a realistic job (the Evaluate tab: 12
  directions × 200 sentences, greedy).
- compiled_candidates (on top of the compiled decoder step, `core/compiled.py`; `--only
  compiled_candidates` runs it alone and writes its own JSON): beam search's candidate choice in
  C++ against `fast.top_candidates`. Its gain is a percent or two, below the noise of whole runs on a
  shared machine, so it is timed finer: each batch of 64 searched by the two variants in turn
  `--repeats` times (order alternating), the fastest of each kept, summed over the batches.
- fused_self_attention (kept, `attend_new_position` in `csrc/decoder_step.cpp`; `--only
  fused_self_attention`, its own JSON, timed as compiled_candidates is): the compiled step as it is
  against the same step built from the commit before (BEFORE_FUSION, with git), where the new
  position's self-attention was a cache copy, QK^T, softmax and ·V. The fused one sums in its own
  order, so the log-probabilities move by float rounding; the JSON says whether the tokens stayed.

The machine may be shared: the JSON says when other jobs ran; numbers are relative only.
Writes bench/results/decode_attempts.json (with provenance).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F

from bench import common, profile_decode
from bench.common import log
from core import compiled, decoding, fast
from core.model import LayerCache

EVALUATE_TAB_SENTENCES = 12 * 200  # a realistic job: the Evaluate tab's 12 directions × 200 sentences
CONTENTION_NOTE = "measured while other jobs ran on this 2-core machine; relative only (variants interleaved in one process)"

# --- the variants ---------------------------------------------------------------------------------

_KEPT = {
    "_joined": fast._joined,
    "contiguous": fast.contiguous,
    "dense": fast.dense,
    "argmax": fast.argmax,
    "top_candidates": fast.top_candidates,
    "append": fast.append,
    "linear_relu": fast.linear_relu,
    "if_padded": fast.RealTokens.__dict__["if_padded"],
}


def _joined_every_time(layers):
    """The code before: the weights joined at every call."""
    return torch.cat([layer.weight for layer in layers]), torch.cat([layer.bias for layer in layers])


def _as_they_are(*tensors):
    return tensors


def _plain_dense(x, weight, bias=None):
    return F.linear(x, weight, bias)


def _dense_packing_only(packed_weight):
    """`fast.dense` for the one weight `packed_weight` (the output projection), plain for the rest."""

    def dense(x, weight, bias=None):
        return _KEPT["dense"](x, weight, bias) if weight is packed_weight else F.linear(x, weight, bias)

    return dense


def _plain_argmax(x):
    return x.argmax(dim=-1)


def _plain_top_candidates(scores, log_probs, k):
    return (scores.view(-1, 1) + log_probs).view(scores.shape[0], -1).topk(k, dim=1)


def _two_copies(past, new, order):
    """The code before: the cache reordered (one copy), then extended by `torch.cat` (another)."""
    return torch.cat([past if order is None else past.index_select(0, order), new], dim=2)


def _separate_relu(layer, x):
    """The code before: the ReLU as its own op after the matmul."""
    return F.relu(fast.linear(layer, x))


def _always_padded(real):
    """The code before: the encoder runs on every position, padding included."""
    return None


VARIANTS = (
    "before",
    "joined_weights_kept",
    "contiguous_cross_cache",
    "packed_output_projection",
    "packed_linear_layers",
    "blocked_choice",
    "one_copy_cache",
    "fused_relu",
    "packed_encoder",
)
BEST = VARIANTS[-1]  # every kept speed path: the code as it is


def use(model, variant: str) -> None:
    """Switch `core.fast` to one variant; each includes the ones before it."""
    level = VARIANTS.index(variant)
    fast._joined = _KEPT["_joined"] if level >= 1 else _joined_every_time
    fast.contiguous = _KEPT["contiguous"] if level >= 2 else _as_they_are
    if level >= 4:
        fast.dense = _KEPT["dense"]
    else:
        fast.dense = _dense_packing_only(model.embedding.weight) if level == 3 else _plain_dense
    fast.argmax = _KEPT["argmax"] if level >= 5 else _plain_argmax
    fast.top_candidates = _KEPT["top_candidates"] if level >= 5 else _plain_top_candidates
    fast.append = _KEPT["append"] if level >= 6 else _two_copies
    fast.linear_relu = _KEPT["linear_relu"] if level >= 7 else _separate_relu
    fast.RealTokens.if_padded = _KEPT["if_padded"] if level >= 8 else staticmethod(_always_padded)


# --- measurements -----------------------------------------------------------------------------------


def per_step(model, source: torch.Tensor, length: int, repeats: int, variants=VARIANTS) -> dict:
    """Median µs of one decoder step per variant. The caches are made under the variant's own
    code (their layout is part of some attempts), at 64 rows, 256 (beam 4) and 1."""
    batch, beam = profile_decode.BATCH, profile_decode.BEAM
    layouts = {}
    for v in ("before", "contiguous_cross_cache"):
        use(model, v)
        layouts[v] = {
            "greedy_rows_64": (profile_decode.step_state(model, source[:batch], batch, length), None),
            "beam4_rows_256": (profile_decode.step_state(model, source[:batch], batch * beam, length), torch.randperm(batch * beam)),
            "rows_1": (profile_decode.step_state(model, source[:1], 1, length), None),
        }

    def run(variant, name):
        use(model, variant)
        state, reorder = layouts["before" if VARIANTS.index(variant) < 2 else "contiguous_cross_cache"][name]
        return profile_decode.one_step(model, state, reorder)

    fns = {(v, s): (lambda v=v, s=s: run(v, s)) for s in layouts["before"] for v in variants}
    timed = profile_decode.time_steps(fns, repeats)
    return {s: {v: round(timed[(v, s)], 1) for v in variants} for s in layouts["before"]}


def end_to_end(model, sources: list[torch.Tensor], rounds: int, variants=VARIANTS) -> dict:
    """Seconds per search over all `sources` (median of `rounds`), and whether the token ids equal
    those of the first variant. An untimed first pass per variant finds the tokens and warms up
    (oneDNN makes a kernel for each new number of rows once: `first_pass_seconds`)."""
    out = {}
    for name, beam in (("greedy", 1), ("beam4", profile_decode.BEAM)):
        times: dict[str, list[float]] = {v: [] for v in variants}
        found, first = {}, {}
        for v in variants:
            use(model, v)
            found[v], first[v] = common.timed(lambda b=beam: profile_decode.search(model, sources, b))
        for r in range(rounds):
            for v in variants if r % 2 == 0 else reversed(variants):
                use(model, v)
                times[v].append(common.timed(lambda b=beam: profile_decode.search(model, sources, b))[1])
        n = sum(s.shape[0] for s in sources)
        out[name] = {
            v: {
                "seconds": round(common.median(times[v]), 3),
                "sentences_per_s": round(n / common.median(times[v]), 1),
                "first_pass_seconds": round(first[v], 3),
                "same_tokens_as_before": found[v] == found[variants[0]],
                "sentences_differing": sum(a != b for a, b in zip(found[v], found[variants[0]])),
            }
            for v in variants
        }
    return out


def preallocated_cache(model, sources: list[torch.Tensor], repeats: int) -> dict:
    """`torch.cat` of the self-attention cache (what `DecoderLayer.forward` does) against writing
    into a preallocated buffer, over the cache shapes of one greedy decoding of 64 rows."""
    heads, d_k = model.config.n_heads, model.config.d_model // model.config.n_heads
    layers, steps, rows = model.config.n_decoder_layers, 30, profile_decode.BATCH
    new = torch.randn(rows, heads, 1, d_k)
    caches = [torch.randn(rows, heads, t, d_k) for t in range(1, steps)]
    buffer = torch.empty(rows, heads, steps, d_k)

    def concatenate():
        for cache in caches:
            for _ in range(2 * layers):
                torch.cat([cache, new], dim=2)

    def write_in_place():
        for t in range(1, steps):
            for _ in range(2 * layers):
                buffer[:, :, t : t + 1].copy_(new)
                buffer[:, :, : t + 1]

    timed = profile_decode.time_steps({"torch_cat": concatenate, "in_place": write_in_place}, repeats, inner=3)
    per = {k: round(v / (steps - 1), 1) for k, v in timed.items()}
    return {"per_step_us_all_layers": per, "saving_per_step_us": round(per["torch_cat"] - per["in_place"], 1)}


def shared_source_cache(model, source: torch.Tensor, length: int, repeats: int) -> dict:
    """One beam-4 decoder step (64 sentences, 256 rows) with each sentence's source keys/values
    kept once for its beams (`fast.group_beams`, the code now) against a copy per beam (the code
    before), interleaved. Per step only: the copies saved when finished sentences leave the
    batch, a quarter of the size now, come on top."""
    batch, beam = profile_decode.BATCH, profile_decode.BEAM
    shared = profile_decode.step_state(model, source[:batch], batch * beam, length)
    rows = torch.arange(batch).repeat_interleave(beam)
    copied = [LayerCache(c.self_keys, c.self_values, c.cross_keys[rows], c.cross_values[rows]) for c in shared.caches]
    per_beam = dataclasses.replace(shared, caches=copied, mask=shared.mask[rows])
    reorder = (torch.arange(batch)[:, None] * beam + torch.randperm(beam)).view(-1)  # beams move within their sentence
    timed = profile_decode.time_steps(
        {
            "copy_per_beam": lambda: profile_decode.one_step(model, per_beam, reorder),
            "shared": lambda: profile_decode.one_step(model, shared, reorder),
        },
        repeats,
    )
    return {"beam4_rows_256_us": {k: round(v, 1) for k, v in timed.items()}, "step_speedup": _gain(timed["copy_per_beam"], timed["shared"])}


def _fastest_per_batch(model, sources: list[torch.Tensor], repeats: int, variants: dict[str, Callable[[], None]]) -> dict:
    """Beam-4 searches of every batch by each variant (`variants[name]()` switches to it) in turn,
    `repeats` times, the order alternating: per variant the fastest run of each batch, summed, and
    the tokens of its first runs; the speed-up is the first variant's time over the last's."""
    best: dict[str, list[float]] = {name: [] for name in variants}
    found: dict[str, list] = {name: [] for name in variants}
    for source in sources:
        times: dict[str, list[float]] = {name: [] for name in variants}
        for r in range(repeats):
            for name in variants if r % 2 == 0 else reversed(variants):
                variants[name]()
                tokens, seconds = common.timed(lambda s=source: profile_decode.search(model, [s], profile_decode.BEAM))
                times[name].append(seconds)
                if r == 0:
                    found[name] += tokens
        for name in variants:
            best[name].append(min(times[name]))
    total = {name: sum(t) for name, t in best.items()}
    before, after = list(variants)
    return {
        "sentences": sum(s.shape[0] for s in sources),
        "batches": len(sources),
        "repeats": repeats,
        "beam4_seconds_fastest_per_batch_summed": {name: round(t, 3) for name, t in total.items()},
        "speedup": _gain(total[before], total[after]),
        "faster": total[after] < total[before],
        "batch_speedups": [round(b / a, 3) for b, a in zip(best[before], best[after])],
        "same_tokens_as_before": found[before] == found[after],
    }


def _switches(owner: object, attribute: str, values: dict[str, object]) -> dict[str, Callable[[], None]]:
    """For `_fastest_per_batch`: per name, a call that sets `owner.attribute` to that value."""
    return {name: functools.partial(setattr, owner, attribute, value) for name, value in values.items()}


def compiled_candidates(model, sources: list[torch.Tensor], repeats: int) -> dict:
    """Beam-4 searches with the compiled decoder step, the candidates chosen by the compiled code or
    by `fast.top_candidates` (`_fastest_per_batch`)."""
    if not compiled.build():
        return {"skipped": compiled.status()}
    original = compiled.top_candidates
    choices = {"python": lambda: None, "compiled": original}
    try:
        return _fastest_per_batch(model, sources, repeats, _switches(compiled, "top_candidates", choices))
    finally:
        compiled.top_candidates = original


BEFORE_FUSION = "f14535f"  # the last commit whose compiled step ran the self-attention as separate operations


def build_from_revision(revision: str) -> ModuleType:
    """The compiled step as `csrc/decoder_step.cpp` was at a git revision, built with today's flags
    under a name of its own (so it loads beside today's build)."""
    from torch.utils import cpp_extension

    root = Path(__file__).resolve().parent.parent
    text = subprocess.run(
        ["git", "show", f"{revision}:core/csrc/decoder_step.cpp"], cwd=root, capture_output=True, text=True, check=True
    ).stdout
    name = f"{compiled.NAME}_{revision}"
    folder = Path(tempfile.mkdtemp(prefix="decoder-step-"))
    (folder / "decoder_step.cpp").write_text(text)
    compiled._ninja_on_path()
    return cpp_extension.load(name, sources=[str(folder / "decoder_step.cpp")], extra_cflags=compiled.FLAGS, build_directory=str(folder))


def fused_self_attention(model, sources: list[torch.Tensor], repeats: int) -> dict:
    """Beam-4 searches with the compiled step as built from BEFORE_FUSION (the new position's
    self-attention as a cache copy, QK^T, softmax and ·V) and as it is now (`attend_new_position`,
    one pass), the candidates chosen the same way (`_fastest_per_batch`)."""
    if not compiled.build():
        return {"skipped": compiled.status()}
    original = compiled._extension
    builds = {"separate": build_from_revision(BEFORE_FUSION), "fused": original}
    try:
        return {"before": BEFORE_FUSION, **_fastest_per_batch(model, sources, repeats, _switches(compiled, "_extension", builds))}
    finally:
        compiled._extension = original


# --- freed memory reused, in fresh processes --------------------------------------------------------


def memory_child(checkpoint: Path, n: int, reuse: bool) -> dict:
    """Run in a fresh process: greedy and beam-4 searches (after a warm-up pass), timed, with the
    page faults they cause; with `fast.reuse_freed_memory` or with the allocator's defaults."""
    import resource

    torch.set_num_threads(1)
    if not reuse:
        fast.reuse_freed_memory = lambda: False  # the searches call it: leave glibc as it is
    translator = profile_decode.load(checkpoint)
    sources = profile_decode.batches(translator, n)
    out: dict = {"in_effect": fast.reuse_freed_memory()}
    for name, beam in (("greedy", 1), ("beam4", profile_decode.BEAM)):
        profile_decode.search(translator.model, sources, beam)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        seconds = common.timed(lambda b=beam: profile_decode.search(translator.model, sources, b))[1]
        out[name] = {"seconds": round(seconds, 3), "page_faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults}
    return out


def reused_memory(checkpoint: Path, n: int, rounds: int) -> dict:
    """`memory_child` with and without reuse, alternating fresh processes; medians."""
    runs: dict[str, list[dict]] = {"defaults": [], "reused": []}
    for r in range(rounds):
        for mode in ("defaults", "reused") if r % 2 == 0 else ("reused", "defaults"):
            command = [sys.executable, __file__, "--memory-child", mode, "--checkpoint", str(checkpoint), "--sentences", str(n)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            runs[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
    out: dict = {"sentences": n, "rounds": rounds, "reuse_in_effect": all(r["in_effect"] for r in runs["reused"])}
    for name in ("greedy", "beam4"):
        out[name] = {
            mode: {
                "seconds": common.median([r[name]["seconds"] for r in found]),
                "page_faults": common.median([r[name]["page_faults"] for r in found]),
            }
            for mode, found in runs.items()
        }
        out[name]["speedup"] = _gain(out[name]["defaults"]["seconds"], out[name]["reused"]["seconds"])
    return out


# --- torch.compile, in fresh processes --------------------------------------------------------------


def compile_child(checkpoint: Path, n: int, repeats: int) -> dict:
    """Run in a fresh process: compile one decoder step, then time it against eager code."""
    import torch._inductor.config as inductor_config

    torch.set_num_threads(1)
    inductor_config.freezing = True
    translator = profile_decode.load(checkpoint)
    model = translator.model
    sources = profile_decode.batches(translator, n)
    eager_step = decoding._next_log_probs

    def step(tokens, caches, mask, offset):
        hidden = model.decode(tokens, caches, mask, offset=offset, incremental=True)
        return model.logits(hidden[:, -1]).float().log_softmax(dim=-1)

    compiled = torch.compile(step, dynamic=True)

    def compiled_step(model_, tokens, caches, mask, offset):
        use(model, "before")  # the plain ops: inductor packs the weights itself (freezing)
        return compiled(tokens, caches, mask, offset)

    def kept_step(model_, tokens, caches, mask, offset):
        use(model, BEST)  # the best eager code, what compiling is set against
        return eager_step(model_, tokens, caches, mask, offset)

    # Compile: greedy then beam search on one batch each (every shape kind a job meets).
    start = time.perf_counter()
    with torch.inference_mode():
        decoding._next_log_probs = compiled_step
        profile_decode.search(model, sources[:1], 1)
        profile_decode.search(model, sources[:1], profile_decode.BEAM)
    first_calls = time.perf_counter() - start
    decoding._next_log_probs = kept_step
    eager_first = common.timed(lambda: (profile_decode.search(model, sources[:1], 1), profile_decode.search(model, sources[:1], 4)))[1]
    out: dict = {"first_batch_compiled_s": round(first_calls, 2), "first_batch_eager_s": round(eager_first, 2)}
    out["compile_s"] = round(first_calls - eager_first, 2)
    for name, beam in (("greedy", 1), ("beam4", profile_decode.BEAM)):
        times: dict[str, list[float]] = {"eager": [], "compiled": []}
        found = {}
        for r in range(repeats):
            for variant in ("eager", "compiled") if r % 2 == 0 else ("compiled", "eager"):
                decoding._next_log_probs = compiled_step if variant == "compiled" else kept_step
                tokens, seconds = common.timed(lambda b=beam: profile_decode.search(model, sources, b))
                times[variant].append(seconds)
                found.setdefault(variant, tokens)
        out[name] = {k: round(common.median(v), 3) for k, v in times.items()}
        out[name]["sentences_differing"] = sum(a != b for a, b in zip(found["eager"], found["compiled"]))
    decoding._next_log_probs = eager_step
    return out


def run_compile(checkpoint: Path, n: int, repeats: int, timeout: float) -> dict:
    cache = tempfile.mkdtemp(prefix="inductor-cache-")
    settings = {"TORCHINDUCTOR_FX_GRAPH_CACHE": "1", "TORCHINDUCTOR_AUTOGRAD_CACHE": "1"}  # on disk, across processes
    env = {**os.environ, **settings, "TORCHINDUCTOR_CACHE_DIR": cache}
    result: dict = {"settings": {**settings, "TORCHINDUCTOR_CACHE_DIR": "a fresh temporary folder", "freezing": True, "dynamic": True}}
    for phase in ("cold", "warm"):
        command = [sys.executable, __file__, "--compile-child", "--checkpoint", str(checkpoint)]
        command += ["--sentences", str(min(n, 128)), "--rounds", str(min(repeats, 2))]
        log(f"torch.compile, {phase} cache")
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            result[phase] = {"error": f"over {timeout:.0f} s"}
            break
        if done.returncode != 0:
            result[phase] = {"error": done.stderr[-2000:]}
            break
        result[phase] = json.loads(done.stdout.strip().splitlines()[-1])
    warm = result.get("warm", {})
    if "greedy" in warm:
        g = warm["greedy"]
        b = warm["beam4"]
        result["evaluate_tab_job"] = {
            "sentences": EVALUATE_TAB_SENTENCES,
            "greedy_seconds_saved": round((g["eager"] - g["compiled"]) / min(n, 128) * EVALUATE_TAB_SENTENCES, 2),
            "beam4_seconds_saved": round((b["eager"] - b["compiled"]) / min(n, 128) * EVALUATE_TAB_SENTENCES, 2),
            "compile_s_is": "first greedy + beam-4 batch compiled minus the same eager: tracing, inductor and C++ builds",
            "compile_seconds_cold": result["cold"].get("compile_s"),
            "compile_seconds_warm": warm.get("compile_s"),
        }
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=common.DEFAULT_CHECKPOINT)
    parser.add_argument("--sentences", type=int, default=0, help="test sentences end to end (default 256, quick 128)")
    parser.add_argument("--rounds", type=int, default=0, help="end-to-end rounds (default 3, quick 2)")
    parser.add_argument("--repeats", type=int, default=0, help="per-step timings per variant (default 7, quick 5)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile attempt")
    parser.add_argument("--compile-timeout", type=float, default=300.0, help="seconds per compile process")
    parser.add_argument("--only", choices=tuple(ALONE), help="run this attempt alone, into its own JSON")
    parser.add_argument("--compile-child", action="store_true", help=argparse_hidden())
    parser.add_argument("--memory-child", choices=("defaults", "reused"), help=argparse_hidden())
    args = parser.parse_args(argv)
    n = args.sentences or (128 if args.quick else 256)
    rounds = args.rounds or (2 if args.quick else 3)
    repeats = args.repeats or (5 if args.quick else 7)
    if args.compile_child:
        print(json.dumps(compile_child(args.checkpoint, n, rounds)))
        return {}
    if args.memory_child:
        print(json.dumps(memory_child(args.checkpoint, n, args.memory_child == "reused")))
        return {}
    torch.set_num_threads(1)
    machine = common.machine_info(1)
    translator = profile_decode.load(args.checkpoint)
    model = translator.model
    if args.only:
        return run_alone(args.only, model, translator, args, machine)
    sources = profile_decode.batches(translator, n)
    out: dict = {"note": CONTENTION_NOTE, "sentences": n, "rounds": rounds, "threads": 1, "batch": profile_decode.BATCH}
    log("per-step timings")
    out["per_step_us"] = per_step(model, sources[len(sources) // 2], 12, repeats)
    log(f"end to end on {n} sentences")
    out["end_to_end"] = end_to_end(model, sources, rounds)
    use(model, BEST)
    log("preallocated cache")
    out["preallocated_kv_cache"] = preallocated_cache(model, sources, repeats)
    log("source keys/values shared by a sentence's beams")
    out["shared_source_cache"] = shared_source_cache(model, sources[len(sources) // 2], 12, repeats)
    log("freed memory reused, in fresh processes")
    out["reused_memory"] = reused_memory(args.checkpoint, n, max(2, rounds - 1))
    if not args.no_compile:
        out["torch_compile"] = run_compile(args.checkpoint, n, rounds, args.compile_timeout)
    log("candidate choice compiled")
    out["compiled_candidates"] = compiled_candidates(model, sources, repeats=3)
    out["attempts"] = summary(out)
    out["other_load_at_end"] = common.other_cpu_load()
    path = common.write_json(common.result_path("decode_attempts", args.json), {**out, "machine": machine})
    print(markdown(out))
    log(f"wrote {path}")
    return out


ALONE = {"compiled_candidates": compiled_candidates, "fused_self_attention": fused_self_attention}


def run_alone(name: str, model, translator, args, machine: dict) -> dict:
    """`--only NAME`: that attempt alone (by default on all 1000 test sentences, 3 runs per batch and
    variant), written to bench/results/decode_attempts_NAME.json."""
    n = args.sentences or 1000
    log(f"{name}, {n} sentences")
    out = {"threads": 1, "batch": profile_decode.BATCH, "compiled_step": compiled.status()}
    out[name] = ALONE[name](model, profile_decode.batches(translator, n), args.repeats or 3)
    out["other_load_at_end"] = common.other_cpu_load()
    path = common.write_json(common.result_path(f"decode_attempts_{name}", args.json), {**out, "machine": machine})
    print(json.dumps(out[name], indent=1))
    log(f"wrote {path}")
    return out


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


def _gain(before: float, after: float) -> str:
    return f"{before / after:.3f}x"


def summary(out: dict) -> list[dict]:
    """One line per attempt: kept or dropped, and its measured effect against the variant before it."""
    step, e2e = out["per_step_us"], out["end_to_end"]
    rows = []
    verdicts = {
        "joined_weights_kept": "kept: same tokens, bitwise-identical arithmetic, no copy of the q/k/v weights per step",
        "contiguous_cross_cache": "kept: same tokens, bitwise-identical arithmetic, the source keys/values copied once, not at every step",
        "packed_output_projection": "kept: same tokens on the test sentences; the output projection is the largest matmul of a step",
        "packed_linear_layers": "kept: same tokens on the test sentences; oneDNN's matmul beats MKL's sgemm on this CPU at these sizes too",
        "blocked_choice": "kept: the same choices (exact, tests/test_fast.py); PyTorch's argmax and topk are scalar loops on the CPU",
        "one_copy_cache": "kept: the same numbers; one copy of the self-attention cache per step instead of two",
        "fused_relu": "kept: the same numbers; the feed-forward network's ReLU applied by oneDNN as the matmul writes its output",
        "packed_encoder": "kept: the same numbers at the real positions; the encoder's position-wise layers skip the padding",
    }
    for previous, variant in zip(VARIANTS, VARIANTS[1:]):
        rows.append(
            {
                "attempt": variant,
                "verdict": verdicts[variant],
                "step_speedup": {k: _gain(v[previous], v[variant]) for k, v in step.items()},
                "end_to_end_speedup": {k: _gain(v[previous]["seconds"], v[variant]["seconds"]) for k, v in e2e.items()},
                "same_tokens_as_before": all(v[variant]["same_tokens_as_before"] for v in e2e.values()),
            }
        )
    pre = out["preallocated_kv_cache"]
    rows.append(
        {
            "attempt": "preallocated_kv_cache",
            "verdict": "dropped: saves too little per step to pay for a second cache layout",
            "saving_per_step_us": pre["saving_per_step_us"],
            "share_of_greedy_step": round(pre["saving_per_step_us"] / step["greedy_rows_64"][BEST], 4),
        }
    )
    rows.append(
        {
            "attempt": "shared_source_cache",
            "verdict": "kept: a sentence's beams read one copy of its source keys/values; same tokens on the test sentences",
            **out["shared_source_cache"],
        }
    )
    memory = out["reused_memory"]
    rows.append(
        {
            "attempt": "reused_memory",
            "verdict": "kept: the steps' big tensors stop getting fresh pages from the OS",
            "end_to_end_speedup": {k: memory[k]["speedup"] for k in ("greedy", "beam4")},
            "page_faults": {k: {mode: memory[k][mode]["page_faults"] for mode in ("defaults", "reused")} for k in ("greedy", "beam4")},
        }
    )
    compiled = out.get("torch_compile")
    if compiled:
        job = compiled.get("evaluate_tab_job")
        verdict = (
            "dropped: no result"
            if job is None
            else (
                "dropped: compiling (cold and warm cache) takes far longer than it saves on the Evaluate-tab job"
                if min(job["compile_seconds_cold"], job["compile_seconds_warm"]) > job["greedy_seconds_saved"] + job["beam4_seconds_saved"]
                else "pays on the Evaluate-tab job once compiled"
            )
        )
        rows.append({"attempt": "torch_compile", "verdict": verdict, "evaluate_tab_job": job})
    if "compiled_candidates" in out:
        found = out["compiled_candidates"]
        rows.append({"attempt": "compiled_candidates", "verdict": _candidates_verdict(found), **found})
    return rows


def _candidates_verdict(found: dict) -> str:
    if "skipped" in found:
        return f"not measured: the compiled step is {found['skipped']}"
    if not found["same_tokens_as_before"]:
        return "dropped: different tokens"
    return "kept: the same tokens, faster" if found["faster"] else "no gain measured"


def markdown(out: dict) -> str:
    parts = [f"_{out['note']}_", "", "### per decoder step (µs, median)", ""]
    step = out["per_step_us"]
    parts.append(common.markdown_table(["variant", *step], [[v, *(step[s][v] for s in step)] for v in VARIANTS]))
    parts += ["", f"### end to end, {out['sentences']} sentences, one thread (sentences/s, median of {out['rounds']})", ""]
    e2e = out["end_to_end"]
    rows = [[v, *(f"{e2e[k][v]['sentences_per_s']} ({e2e[k][v]['sentences_differing']} differ)" for k in e2e)] for v in VARIANTS]
    parts.append(common.markdown_table(["variant", *e2e], rows))
    parts += ["", f"preallocated KV cache: {out['preallocated_kv_cache']}"]
    parts += ["", f"source keys/values shared by a sentence's beams: {out['shared_source_cache']}"]
    parts += ["", f"freed memory reused: {json.dumps(out['reused_memory'])}"]
    if "torch_compile" in out:
        parts += ["", f"torch.compile: {json.dumps(out['torch_compile'], indent=1)}"]
    if "compiled_candidates" in out:
        parts += ["", f"candidate choice compiled: {json.dumps(out['compiled_candidates'])}"]
    return "\n".join(parts)


if __name__ == "__main__":
    main()
