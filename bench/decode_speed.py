"""Benchmark 2 — decoding throughput on identical weights: core vs HF generate() vs CTranslate2.

    python bench/decode_speed.py [--quick] [--checkpoint checkpoints/multi30k-4lang]

The shipped checkpoint translates the 1000 Multi30K test_2016_flickr English sentences into
German, greedy and beam 4 (length penalty 1), batch 64, longest sentences first, with:
- core: `Translator.translate` (its own batching, search and detokenisation; on the CPU it decodes
  one batch per core at once, `core.parallel`, each step by the compiled decoder step,
  `core.compiled`, built cold at the start and its build time stored), core_python, the same with
  the Python decoder step, core_one_stream, the same as core one batch at a time on all cores,
  core_int8, the same with `Translator.quantized()` (int8 dynamic quantization of the
  linear layers), and core_bf16 with `Translator.in_bf16()` (bfloat16 autocast);
- HF: the same weights exported to `M2M100ForConditionalGeneration` (core/export.py), `generate()`
  one batch at a time on all cores, as users call it; hf_streams, the same with core's batch-per-core
  scheme applied to it by this benchmark (HF has no such option); hf_bf16, under bfloat16 autocast;
- CTranslate2 4.x: the same weights as a `TransformerSpec`, compute_type float32 and int8, one batch
  at a time on all cores (intra_threads), and ct2_*_streams, one batch per core (inter_threads).
Every system gets the same source ids (`<2de> … </s>`, core's preprocessing), the same batches and
the same length rule (see `BatchLimits`), and the timing covers tokenisation, search and
detokenisation. The systems take turns: `--repeats` rounds (quick 3, full 5), each round running
every system once, the order reversed every other round (ABC, CBA, ABC, …); sentences/s is the
median over the rounds, with the min and max. Reported: sentences/s, generated tokens/s (</s>
included), sacreBLEU against the references, and how many outputs equal core's; then the headline
ratios twice: each engine in its best thread layout, and the engines in the same layout
(`ratios`). A target counts as met only on the same-layout ratios (the lower of the two layouts).
`--systems core,ct2_float32_streams,…` runs a subset (the others' models are made but never run).
Where core's own decoding spends its time is `bench/profile_decode.py`'s job (bench/results/decode_profile.json).
`--device cuda` runs core and HF on the GPU (core_int8 is CPU-only and left out there; CTranslate2
runs on the GPU when its build supports CUDA on that machine, and is left out otherwise).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

if __package__ in (None, ""):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from sacrebleu.metrics import BLEU

from bench import common
from bench.common import log
from bench.common import pad as _pad
from core.decoding import PATIENCE, SearchLimits
from core.parallel import parallel_map, workers_for
from core.vocab import EOS_ID, PAD_ID

SRC, TGT = "en", "de"
BATCH = 64


class BatchLimits(SearchLimits):
    """One length rule for all three engines. Core's own rule gives each sentence its own limit
    (1.5·source + 10 generated tokens, </s> included; `SearchLimits.per_sentence`); HF `generate()`
    (`max_length`) and CTranslate2 (`max_decoding_length`) take one limit per batch. So every engine
    gets the batch rule here: each sentence may run to the largest of its batch's per-sentence limits,
    core through this subclass (its searches ask `limits.per_sentence` for every batch), HF and CT2
    through their one argument, on the same batches. At the limit all three end a translation where
    it is. The batch rule never stops core earlier than its own rule, so core is not favoured."""

    def per_sentence(self, source: torch.Tensor, max_positions: int) -> torch.Tensor:
        own = super().per_sentence(source, max_positions)
        return own.max().expand_as(own).clone()


LIMITS = BatchLimits()
# Core and CTranslate2 end a beam search once beam_size × patience hypotheses are finished
# (`core.decoding.PATIENCE`, chosen on validation); HF's early_stopping=True is the same rule for
# patience 1, and early_stopping=False (going on while a live beam could still win) is the closest
# for a larger patience.
HF_EARLY_STOPPING = PATIENCE == 1
SYSTEMS = {  # name in the JSON: label in the tables
    "core": "core (one batch per core)",
    "core_python": "core with the Python decoder step (one batch per core)",
    "core_one_stream": "core, one batch at a time",
    "core_int8": "core int8 (dynamic quantization)",
    "core_bf16": "core bf16 autocast",
    "hf": "HF generate(), one batch at a time",
    "hf_streams": "HF generate(), one batch per core (made by the benchmark)",
    "hf_bf16": "HF generate(), bf16 autocast",
    "ct2_float32": "CTranslate2 float32, one batch at a time",
    "ct2_float32_streams": "CTranslate2 float32, one batch per core",
    "ct2_int8": "CTranslate2 int8, one batch at a time",
    "ct2_int8_streams": "CTranslate2 int8, one batch per core",
}
# The order of each round: every system core is compared with runs right beside it (HF, then core, then
# CTranslate2, in each layout), so a compared pair is timed seconds apart, and the machine's slower and
# faster minutes fall on both alike (the paired ratios in `ratios`).
RUN_ORDER = (
    "hf_streams", "core", "ct2_float32_streams", "hf", "core_one_stream", "ct2_float32",
    "core_python", "core_int8", "ct2_int8", "ct2_int8_streams", "core_bf16", "hf_bf16",
)  # fmt: skip
# Thread layouts: "one_batch_per_core" (core's default, CT2's inter_threads = cores with intra_threads 1,
# HF through the benchmark's own scheme) and "one_batch_at_a_time" (all cores on one batch: HF's and
# CT2's default). Engines are compared in their best layout and in the same layout.
LAYOUTS = ("one_batch_per_core", "one_batch_at_a_time")
CORE = {"one_batch_per_core": "core", "one_batch_at_a_time": "core_one_stream"}
HF = {"one_batch_per_core": "hf_streams", "one_batch_at_a_time": "hf"}
CT2_FLOAT32 = {"one_batch_per_core": "ct2_float32_streams", "one_batch_at_a_time": "ct2_float32"}


def _strip(ids: list[int]) -> list[int]:
    out = []
    for i in ids:
        if i in (EOS_ID, PAD_ID):
            break
        out.append(i)
    return out


def sorted_chunks(translator, lines: list[str]) -> list[tuple[list[int], list[list[int]]]]:
    """(line indices, source ids) per batch: core's preprocessing and order (longest first)."""
    encoded = [common.source_ids(translator, line, TGT) for line in lines]
    order = sorted(range(len(lines)), key=lambda i: len(encoded[i]), reverse=True)
    return [(order[s : s + BATCH], [encoded[i] for i in order[s : s + BATCH]]) for s in range(0, len(order), BATCH)]


def sentence_limits(ids: list[list[int]], max_positions: int) -> list[int]:
    """The limit of every sentence of a batch under `LIMITS` (the batch rule: all equal)."""
    return LIMITS.per_sentence(_pad(ids), max_positions).tolist()


def run_core(translator, lines: list[str], beam: int, workers: int | None = None) -> tuple[list[str], int]:
    results = translator.translate(lines, SRC, TGT, beam_size=beam, length_penalty=1.0, batch_size=BATCH, limits=LIMITS, workers=workers)
    return [r.text for r in results], sum(len(r.pieces) + 1 for r in results)


def run_core_python(translator, lines: list[str], beam: int) -> tuple[list[str], int]:
    """`run_core` with the searches on the Python decoder step (the compiled one set aside)."""
    from core import compiled

    kept, compiled._extension = compiled._extension, None
    try:
        return run_core(translator, lines, beam)
    finally:
        compiled._extension = kept


def build_compiled_step() -> dict:
    """Build the compiled decoder step cold (into an empty cache folder), timed, for core's runs."""
    from core import compiled

    compiled.CACHE = Path(tempfile.mkdtemp(prefix="compiled-cache-"))
    ready, seconds = common.timed(compiled.build)
    return {"ready": ready, "status": compiled.status(), "cold_build_s": round(seconds, 1)}


def run_chunks(search, translator, lines: list[str], workers: int) -> tuple[list[str], int]:
    """Run a peer's `search(ids, limits) -> token rows` over core's batches (`workers` at once) and
    detokenise each row up to its </s>."""
    texts, generated = [""] * len(lines), 0
    max_positions = translator.model.config.max_positions
    jobs = [(indices, ids, sentence_limits(ids, max_positions)) for indices, ids in sorted_chunks(translator, lines)]
    found = parallel_map(lambda job: search(job[1], job[2]), jobs, workers)
    for (indices, _, _), rows in zip(jobs, found):
        for i, row in zip(indices, rows):
            tokens = _strip(row)
            generated += len(tokens) + 1
            texts[i] = translator.tokenizer.decode(tokens)
    return texts, generated


def run_hf(hf_model, translator, lines: list[str], beam: int, bf16: bool = False, workers: int = 1) -> tuple[list[str], int]:
    @torch.inference_mode()
    def search(ids: list[list[int]], limits: list[int]) -> list[list[int]]:
        source = _pad(ids).to(hf_model.device)
        options = {"num_beams": beam, "length_penalty": 1.0, "early_stopping": HF_EARLY_STOPPING} if beam > 1 else {"num_beams": 1}
        with torch.autocast(hf_model.device.type, dtype=torch.bfloat16, enabled=bf16):
            out = hf_model.generate(
                input_ids=source,
                attention_mask=(source != PAD_ID).long(),
                do_sample=False,
                num_return_sequences=1,
                max_length=1 + max(limits),
                **options,
            )
        return out[:, 1:].tolist()

    return run_chunks(search, translator, lines, workers)


def run_ct2(ct2_translator, translator, vocabulary: list[str], lines: list[str], beam: int, workers: int = 1) -> tuple[list[str], int]:
    piece_id = translator.tokenizer.processor.piece_to_id

    def search(ids: list[list[int]], limits: list[int]) -> list[list[int]]:
        results = ct2_translator.translate_batch(
            [[vocabulary[i] for i in row] for row in ids],
            beam_size=beam,
            length_penalty=1.0,
            num_hypotheses=1,
            max_batch_size=BATCH,
            max_decoding_length=max(limits),
            min_decoding_length=0,  # an empty translation is allowed, as in core
            patience=PATIENCE,
        )
        return [[piece_id(p) for p in result.hypotheses[0]] for result in results]

    return run_chunks(search, translator, lines, workers)


def ctranslate2_translators(translator, vocabulary: list[str], device: str, n_threads: int) -> tuple[dict[str, object], float | None]:
    """CTranslate2 translators for the same weights, on `device`: float32 and int8, each as one
    worker on all threads and (on the CPU) as one worker per thread ("*_streams"); none where the
    installed CTranslate2 cannot run there (its pip wheels are built for one CUDA version)."""
    try:
        import ctranslate2
    except ImportError:
        log("  CTranslate2 is not installed: left out")
        return {}, None
    kind = torch.device(device).type
    if kind not in ("cpu", "cuda") or (kind == "cuda" and ctranslate2.get_cuda_device_count() == 0):
        log(f"  this CTranslate2 build cannot run on {device}: left out")
        return {}, None
    from core.export import to_ctranslate2

    folder = Path(tempfile.mkdtemp(prefix="bench-ct2-"))
    _, seconds = common.timed(lambda: to_ctranslate2(translator.model, vocabulary, folder))
    layouts = {"": {"intra_threads": n_threads, "inter_threads": 1}}
    if kind == "cpu" and n_threads > 1:
        layouts["_streams"] = {"intra_threads": 1, "inter_threads": n_threads}
    translators = {
        f"{compute}{suffix}": ctranslate2.Translator(str(folder), device=kind, compute_type=compute, **(threads if kind == "cpu" else {}))
        for compute in ("float32", "int8")
        for suffix, threads in layouts.items()
    }
    # CTranslate2 sets the creating thread's OpenMP thread count to its intra_threads, which is
    # torch's count too: without this, everything torch runs afterwards here would use one core.
    torch.set_num_threads(n_threads)
    return translators, seconds


def _fastest(block: dict, names) -> str | None:
    present = [n for n in names if n in block]
    return max(present, key=lambda n: block[n]["sentences_per_s"]) if present else None


def _paired(block: dict, core: str, peer: str) -> dict | None:
    """Core's speed over a peer's round by round (the two ran side by side, `RUN_ORDER`): the median
    and range of those ratios, which the machine's drift from round to round does not move."""
    if "seconds_each" not in block[core] or "seconds_each" not in block[peer]:
        return None
    each = [theirs / ours for ours, theirs in zip(block[core]["seconds_each"], block[peer]["seconds_each"])]
    return {"median": common.median(each), "min": min(each), "max": max(each), "rounds": len(each)}


def ratios(block: dict) -> dict:
    """Core's speed over HF's and CT2 float32's: each engine in its best thread layout, and the
    engines in the same layout (both layouts). CT2 runs core's stopping rule (same patience), so
    it finds core's translations. Medians of the alternating rounds; beside each, the same ratio
    taken round by round (`_paired`)."""
    rate = {n: block[n]["sentences_per_s"] for n in block if isinstance(block[n], dict) and "sentences_per_s" in block[n]}
    out: dict = {}
    layouts = {
        layout: {
            "core": CORE[layout] if CORE[layout] in rate else None,
            "hf": HF[layout] if HF[layout] in rate else None,
            "ct2_float32": CT2_FLOAT32[layout] if CT2_FLOAT32[layout] in rate else None,
        }
        for layout in LAYOUTS
    }
    best = {
        "core": _fastest(block, CORE.values()),
        "hf": _fastest(block, HF.values()),
        "ct2_float32": _fastest(block, CT2_FLOAT32.values()),
    }
    for label, chosen in (("best_layout", best), *layouts.items()):
        entry = {"systems": chosen}
        for peer in ("hf", "ct2_float32"):
            if chosen["core"] and chosen[peer]:
                entry[f"core_over_{peer}"] = rate[chosen["core"]] / rate[chosen[peer]]
                paired = _paired(block, chosen["core"], chosen[peer])
                if paired:
                    entry[f"core_over_{peer}_paired"] = paired
        out[label] = entry
    return out


def targets(greedy: dict, beam4: dict) -> dict:
    """The speed targets, judged on the like-for-like (same-layout) ratios: `measured` is the lower
    of the two layouts, so a target is met only if it holds whichever layout both engines use. The
    Lab's fastest path (`--engine ctranslate2 --int8`, CTranslate2's own int8) is judged on its BLEU
    loss against core's float32 translations, greedy and beam 4."""
    out = {}
    for key, block, ratio in (
        ("beam4_core_over_hf", beam4, "core_over_hf"),
        ("beam4_core_over_ct2_float32", beam4, "core_over_ct2_float32"),
        ("greedy_core_over_ct2_float32", greedy, "core_over_ct2_float32"),
    ):
        ratios_ = block["ratios"]
        same = {layout: ratios_[layout][ratio] for layout in LAYOUTS if ratio in ratios_.get(layout, {})}
        if not same:
            continue
        measured = min(same.values())
        out[key] = {
            "target": common.TARGETS[key],
            "measured": measured,
            "like_for_like": same,
            "best_layouts": ratios_["best_layout"].get(ratio),
            "met": measured >= common.TARGETS[key],
            "judged_on": "like-for-like, the lower of the two layouts",
        }
    if "ct2_int8" in beam4 and "ct2_int8" in greedy:
        loss = max(-greedy["ct2_int8"]["bleu_minus_core"], -beam4["ct2_int8"]["bleu_minus_core"])
        limit = common.TARGETS["fastest_path_bleu_loss"]
        out["fastest_path_bleu_loss"] = {"target": limit, "measured": loss, "met": loss <= limit, "judged_on": "greedy and beam 4"}
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=common.DEFAULT_CHECKPOINT)
    parser.add_argument("--sentences", type=int, default=1000, help="first N test sentences (default: all 1000)")
    parser.add_argument("--repeats", type=int, default=0, help="alternating rounds (default: 3 quick, 5 full)")
    parser.add_argument("--systems", default="", help=f"run only these, comma-separated, core among them (of: {', '.join(SYSTEMS)})")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.systems.split(",") if name.strip()]
    if chosen and ("core" not in chosen or not set(chosen) <= set(SYSTEMS)):
        parser.error(f"--systems: core and any of {', '.join(SYSTEMS)}; got {args.systems!r}")
    n_threads = common.threads(args.threads)

    import transformers

    import core

    transformers.logging.set_verbosity_error()
    from core.export import to_m2m100, vocabulary_of

    on_cpu = torch.device(args.device).type == "cpu"
    translator = core.load(args.checkpoint, device=args.device)
    compiled_step = build_compiled_step() if on_cpu else None
    translator_bf16 = translator.in_bf16()
    sources, references = common.test_set(SRC, TGT)
    sources, references = sources[: args.sentences], references[: args.sentences]
    vocabulary = vocabulary_of(translator.tokenizer)
    hf_model, export_hf_s = common.timed(lambda: to_m2m100(translator.model).to(translator.device).eval())
    streams = workers_for(translator.device)  # one batch per core
    systems = {
        "core": lambda lines, beam: run_core(translator, lines, beam),
        "hf": lambda lines, beam: run_hf(hf_model, translator, lines, beam),
        "core_bf16": lambda lines, beam: run_core(translator_bf16, lines, beam),
        "hf_bf16": lambda lines, beam: run_hf(hf_model, translator, lines, beam, bf16=True),
    }
    if compiled_step and compiled_step["ready"]:
        systems["core_python"] = lambda lines, beam: run_core_python(translator, lines, beam)
    if streams > 1:
        systems["core_one_stream"] = lambda lines, beam: run_core(translator, lines, beam, workers=1)
        systems["hf_streams"] = lambda lines, beam: run_hf(hf_model, translator, lines, beam, workers=streams)
    if on_cpu:
        translator_int8 = translator.quantized()
        systems["core_int8"] = lambda lines, beam: run_core(translator_int8, lines, beam)
    ct2, export_ct2_s = ctranslate2_translators(translator, vocabulary, args.device, n_threads)
    for name, ct2_translator in ct2.items():
        workers = streams if name.endswith("_streams") else 1
        systems[f"ct2_{name}"] = lambda lines, beam, t=ct2_translator, w=workers: run_ct2(t, translator, vocabulary, lines, beam, workers=w)
    if chosen:  # the others are made but never run
        systems = {name: fn for name, fn in systems.items() if name in chosen}
    repeats = args.repeats or (3 if args.quick else 5)
    log(
        f"decode_speed: {len(sources)} sentences {SRC}->{TGT}, batch {BATCH}, {n_threads} threads, {args.device}, "
        f"{repeats} alternating rounds; exports took {export_hf_s:.1f} s (HF), {export_ct2_s or 0:.1f} s (CT2)"
    )
    for fn in systems.values():  # warm-up: first calls allocate and pick kernels
        fn(sources[:8], 1)
        fn(sources[:8], 4)

    bleu = BLEU()
    out = {
        "benchmark": "decode_speed",
        "quick": args.quick,
        "machine": common.machine_info(n_threads, args.device),
        "setup": {
            "checkpoint": str(args.checkpoint),
            "direction": f"{SRC}-{TGT}",
            "test_set": "test_2016_flickr",
            "sentences": len(sources),
            "batch_size": BATCH,
            "length_penalty": 1.0,
            "max_len": f"{LIMITS.max_len_a}*source+{LIMITS.max_len_b}, largest of the batch, for every engine",
            "streams": streams,
            "patience": PATIENCE,
            "hf_early_stopping": HF_EARLY_STOPPING,
            "repeats": repeats,
            "order": "every round runs each system once, in `order_of_round_1`; the order is reversed every other round",
            "order_of_round_1": [name for name in RUN_ORDER if name in systems],
            "export_s": {"hf": export_hf_s, "ct2": export_ct2_s},
            "compiled_decoder_step": compiled_step,
            "systems": list(systems),
        },
    }
    names = [name for name in RUN_ORDER if name in systems]
    runs: dict[int, dict[str, list[float]]] = {1: {}, 4: {}}
    outputs: dict[int, dict[str, tuple[list[str], int]]] = {1: {}, 4: {}}
    for round_ in range(repeats):
        order = names if round_ % 2 == 0 else names[::-1]
        for beam in (1, 4):
            for name in order:
                (texts, generated), seconds = common.timed(lambda fn=systems[name], beam=beam: fn(sources, beam))
                runs[beam].setdefault(name, []).append(seconds)
                first = outputs[beam].setdefault(name, (texts, generated))
                if first[0] != texts:
                    log(f"  !!! beam {beam} {name}: round {round_ + 1} translated differently from round 1")
                log(f"  round {round_ + 1} beam {beam} {name:30s} {len(sources) / seconds:7.1f} sent/s")
    for beam, key in ((1, "decode_greedy"), (4, "decode_beam4")):
        block = {}
        for name, seconds_each in runs[beam].items():
            texts, generated = outputs[beam][name]
            rates = [len(sources) / s for s in seconds_each]
            score = bleu.corpus_score(texts, [references])
            seconds = common.median(seconds_each)
            block[name] = {
                "sentences_per_s": common.median(rates),
                "sentences_per_s_min": min(rates),
                "sentences_per_s_max": max(rates),
                "tokens_per_s": generated / seconds,
                "seconds": seconds,
                "seconds_each": seconds_each,
                "generated_tokens": generated,
                "bleu": score.score,
            }
            log(
                f"  beam {beam} {name:30s} {block[name]['sentences_per_s']:7.1f} sent/s (median of {len(rates)}; "
                f"{min(rates):.1f}-{max(rates):.1f}) BLEU {score.score:.2f}"
            )
        for name in block:
            same = sum(a == b for a, b in zip(outputs[beam][name][0], outputs[beam]["core"][0]))
            block[name]["identical_to_core"] = same / len(sources)
            block[name]["bleu_minus_core"] = block[name]["bleu"] - block["core"]["bleu"]
        block["bleu_signature"] = str(bleu.get_signature())
        block["float32_bleu_within_0.1"] = all(abs(block[n]["bleu_minus_core"]) <= 0.1 for n in ("hf", "ct2_float32") if n in block)
        block["ratios"] = ratios(block)
        out[key] = block
    out["targets"] = targets(out["decode_greedy"], out["decode_beam4"])
    print(table(out))
    path = common.write_json(common.result_path("decode_speed", args.json), out)
    log(f"wrote {path}")
    return out


def table(out: dict) -> str:
    rows = []
    for key, label in (("decode_greedy", "greedy"), ("decode_beam4", "beam 4")):
        block = out[key]
        for name in SYSTEMS:
            if name not in block:
                continue
            b = block[name]
            rows.append(
                [
                    label,
                    name,
                    b["sentences_per_s"],
                    f"{b['sentences_per_s_min']:.1f}-{b['sentences_per_s_max']:.1f}",
                    b["tokens_per_s"],
                    f"{b['bleu']:.2f}",
                    f"{b['bleu_minus_core']:+.2f}",
                    f"{100 * b['identical_to_core']:.1f}%",
                ]
            )
    text = (
        f"### Decoding {out['setup']['direction']}, {out['setup']['sentences']} sentences, batch {BATCH}, "
        f"median of {out['setup']['repeats']} alternating rounds\n\n"
        + common.markdown_table(["search", "system", "sent/s", "min-max", "tokens/s", "BLEU", "ΔBLEU vs core", "same as core"], rows)
    )
    rows = []
    for key, label in (("decode_greedy", "greedy"), ("decode_beam4", "beam 4")):
        for layout, r in out[key]["ratios"].items():
            paired = r.get("core_over_ct2_float32_paired")
            rows.append(
                [
                    label,
                    layout,
                    r.get("core_over_hf"),
                    r.get("core_over_ct2_float32"),
                    f"{paired['median']:.3f} ({paired['min']:.3f}-{paired['max']:.3f})" if paired else None,
                    ", ".join(f"{k}={v}" for k, v in r["systems"].items()),
                ]
            )
    header = ["search", "layout", "core/HF", "core/CT2 fp32 (same BLEU)", "core/CT2 fp32 round by round: median (range)", "systems"]
    text += "\n\n" + common.markdown_table(header, rows)
    return text


if __name__ == "__main__":
    main()
