"""Benchmark 5 — quality at equal time: validation BLEU against training wall-clock, core vs HF.

    python bench/quality.py [--quick] [--minutes 20] [--size small]

Both systems train the same model (same shape, same initial weights: core's initialisation copied
into M2M100 by core/export.py) on the same data — Multi30K en→de with the shipped 8k SentencePiece
vocabulary, core's BatchStream, 4096 tokens per batch — with the same AdamW, learning-rate
schedule, clipping and label-smoothed loss (see bench/train_speed.py), for the same number of
training minutes each. They take turns in time slices of `minutes / points`, so a change in
machine load hits both; after each slice the model is scored (greedy, sacreBLEU) on the first
`--valid` sentences of the validation set, and the clock is stopped while it is scored.
--quick: the tiny shape (d128, 2+2 layers; with the 8k vocabulary) for 2 minutes each;
the full run: the small shape (the shipped model's) for 20 minutes each.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

if __package__ in (None, ""):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
from sacrebleu.metrics import BLEU

from bench import common
from bench.common import log
from core.config import RunConfig, TrainConfig, preset
from core.model import Transformer
from core.tokenizer import Tokenizer
from core.translator import Translator


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=common.DEFAULT_CHECKPOINT, help="for its tokenizer")
    parser.add_argument("--minutes", type=float, default=None, help="training minutes per system")
    parser.add_argument("--points", type=int, default=None, help="validations per system")
    parser.add_argument("--size", choices=["tiny", "small"], default=None)
    parser.add_argument("--valid", type=int, default=None, help="validation sentences scored")
    parser.add_argument("--direction", default="en-de")
    args = parser.parse_args(argv)
    n_threads = common.threads(args.threads)
    minutes = args.minutes or (2.0 if args.quick else 20.0)
    points = args.points or (4 if args.quick else 8)
    size = args.size or ("tiny" if args.quick else "small")
    n_valid = args.valid or (300 if args.quick else 1014)
    src, tgt = args.direction.split("-")

    from bench.decode_speed import run_hf
    from bench.train_speed import Runner, core_loss, hf_loss
    from core.export import to_m2m100

    config = json.loads((args.checkpoint / "config.json").read_text(encoding="utf-8"))
    tokenizer = Tokenizer.load(args.checkpoint / "spm.model", config["languages"])
    run: RunConfig = preset(size)
    run.model.vocab_size = len(tokenizer)
    # Short budgets want a short warm-up; the shapes keep their presets' dropout.
    run.train = TrainConfig(
        tokens_per_batch=4096,
        lr=3e-3 if size == "tiny" else 1.5e-3,
        warmup_steps=100 if size == "tiny" else 400,
        schedule="inverse_sqrt",
        label_smoothing=0.1,
        clip_norm=1.0,
        seed=1,
    )
    stream = common.training_stream(tokenizer, [args.direction], run.train.tokens_per_batch, temperature=1.0, seed=run.train.seed)
    folder = common.multi30k_folder()
    valid_src = common.read_lines(folder / f"val.{src}.gz")[:n_valid]
    valid_ref = common.read_lines(folder / f"val.{tgt}.gz")[:n_valid]

    torch.manual_seed(run.train.seed)
    core_model = Transformer(run.model)
    hf_model = to_m2m100(
        core_model, dropout=run.model.dropout, attention_dropout=run.model.attention_dropout, activation_dropout=run.model.dropout
    )
    translator = Translator(core_model, tokenizer, {"languages": config["languages"]})
    runners = {
        "core": Runner("core", core_model, core_loss(core_model, run.train.label_smoothing), run),
        "hf": Runner("hf", hf_model, hf_loss(hf_model, run.train.label_smoothing), run),
    }
    bleu = BLEU()

    def score(name: str) -> float:
        if name == "core":
            texts = [t.text for t in translator.translate(valid_src, src, tgt, beam_size=1, batch_size=64)]
        else:
            hf_model.eval()
            texts, _ = run_hf(hf_model, translator, valid_src, 1)
        return bleu.corpus_score(texts, [valid_ref]).score

    # Both systems read the same batch sequence: a list filled lazily from one stream.
    batches: list = []
    source = iter(stream)

    def batch(i: int):
        while len(batches) <= i:
            batches.append(next(source))
        return batches[i]

    state = {name: {"clock": 0.0, "steps": 0, "tokens": 0, "losses": [], "curve": []} for name in runners}
    budget = minutes * 60
    log(
        f"quality: {size} shape ({core_model.num_parameters() / 1e6:.1f}M params), {args.direction}, "
        f"{minutes:g} min each in {points} slices, {n_valid} validation sentences, {n_threads} threads"
    )
    for point in range(1, points + 1):
        mark = budget * point / points
        for name in runners if point % 2 else dict(reversed(list(runners.items()))):
            runner, s = runners[name], state[name]
            while s["clock"] < mark:
                b = batch(s["steps"])
                start = time.perf_counter()
                s["losses"].append(runner.step(b, bf16=False))
                s["clock"] += time.perf_counter() - start
                s["steps"] += 1
                s["tokens"] += b.tokens
            value, eval_s = common.timed(lambda name=name: score(name))
            recent = s["losses"][-20:]
            s["curve"].append(
                {
                    "train_minutes": s["clock"] / 60,
                    "steps": s["steps"],
                    "tokens": s["tokens"],
                    "train_loss": sum(recent) / len(recent),
                    "valid_bleu": value,
                    "eval_s": eval_s,
                }
            )
            log(f"  {name:4s} {s['clock'] / 60:5.2f} min {s['steps']:5d} steps loss {s['curve'][-1]['train_loss']:.3f} BLEU {value:.2f}")

    out = {
        "benchmark": "quality_at_equal_time",
        "quick": args.quick,
        "machine": common.machine_info(n_threads),
        "setup": {
            "size": size,
            "parameters": core_model.num_parameters(),
            "model": {
                k: getattr(run.model, k)
                for k in ("vocab_size", "d_model", "n_heads", "d_ff", "n_encoder_layers", "n_decoder_layers", "dropout")
            },
            "direction": args.direction,
            "minutes_each": minutes,
            "validations": points,
            "valid_sentences": n_valid,
            "tokens_per_batch": run.train.tokens_per_batch,
            "lr": run.train.lr,
            "warmup_steps": run.train.warmup_steps,
            "schedule": run.train.schedule,
            "search": "greedy",
            "bleu_signature": str(bleu.get_signature()),
        },
        "curves": {name: s["curve"] for name, s in state.items()},
        "final": {
            name: {"valid_bleu": s["curve"][-1]["valid_bleu"], "steps": s["steps"], "tokens_per_s": s["tokens"] / s["clock"]}
            for name, s in state.items()
        },
    }
    print(table(out))
    path = common.write_json(common.result_path("quality", args.json), out)
    log(f"wrote {path}")
    return out


def table(out: dict) -> str:
    rows = []
    curves = out["curves"]
    for c, h in zip(curves["core"], curves["hf"]):
        rows.append([f"{c['train_minutes']:.2f}", c["steps"], f"{c['valid_bleu']:.2f}", h["steps"], f"{h['valid_bleu']:.2f}"])
    s = out["setup"]
    return (
        f"### Quality at equal time ({s['size']} shape, {s['direction']}, {s['minutes_each']:g} min each, "
        f"greedy BLEU on {s['valid_sentences']} valid sentences)\n\n"
        + common.markdown_table(["minutes", "core steps", "core BLEU", "HF steps", "HF BLEU"], rows)
    )


if __name__ == "__main__":
    main()
