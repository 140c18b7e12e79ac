"""Benchmark 4 — scaling: time per training step as model size, batch tokens and sentence length
grow, and a torch.profiler summary of one small-preset step.

    python bench/scaling.py [--quick]

Every step is a full core training step (forward, label-smoothed loss, backward, clip, AdamW) on
synthetic batches of random ids with fixed lengths (no padding), so each sweep changes one thing:
- model size: the tiny, small and base presets' shapes at 4096 tokens per batch, sentences of 16
  pieces on each side (about Multi30K's mean);
- batch tokens: the small shape, 1024 … 8192 (quick) or 16384 (full) tokens, 16-piece sentences;
- sentence length: the small shape, 4096 tokens per batch cut into sentences of 8 … 128 pieces
  (attention grows with length², everything else stays per token).
Reported: median seconds per step, tokens/s and MFU against the fp32 matmul rate measured here.
The profile is one small-preset step on a real Multi30K batch, ops sorted by self CPU time and
grouped into matmul / attention / softmax+loss / normalisation / elementwise / optimizer / other.
"""

from __future__ import annotations

import time
from pathlib import Path

if __package__ in (None, ""):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench import common
from bench.common import log
from core.batching import Batch
from core.config import ModelConfig, TrainConfig, preset
from core.model import Transformer
from core.train import learning_rate

SENTENCE = 16


def shape(name: str) -> ModelConfig:
    """The preset's model shape; its vocabulary is the size the preset asks of the tokenizer
    (`ModelConfig.vocab_size` is 0 in a preset: a real run takes it from the trained tokenizer)."""
    run = preset(name)
    if not run.model.vocab_size:
        run.model.vocab_size = run.data.vocab_size
    return run.model


def step_fn(model: Transformer, train: TrainConfig):
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, betas=train.betas, weight_decay=train.weight_decay)
    counter = {"step": 0}

    def step(batch: Batch) -> None:
        counter["step"] += 1
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(counter["step"], train)
        loss, _ = model.loss(batch.source, batch.target_in, batch.target_out, train.label_smoothing)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), train.clip_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def time_steps(config: ModelConfig, batch: Batch, repeats: int, peak: float) -> dict:
    torch.manual_seed(0)
    model = Transformer(config).train()
    step = step_fn(model, TrainConfig())
    step(batch)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(batch)
        times.append(time.perf_counter() - start)
    seconds = common.median(times)
    flops = common.training_flops(config, batch)
    return {
        "step_s": seconds,
        "tokens_per_s": batch.tokens / seconds,
        "mfu": flops / seconds / peak,
        "batch_sentences": batch.source.shape[0],
        "tokens": batch.tokens,
        "parameters": model.num_parameters(),
    }


def batch_for(config: ModelConfig, tokens: int, length: int) -> Batch:
    """Sentences of `length` pieces on both sides (target gets </s>), about `tokens` tokens in all."""
    size = max(1, tokens // (2 * length))
    return common.synthetic_batch(config.vocab_size, size, length, length - 1)


CATEGORIES = (  # first match wins
    ("matmul", ("addmm", "aten::mm", "bmm", "matmul", "linear")),
    ("attention (sdpa)", ("attention", "_scaled_dot", "flash")),
    ("dropout", ("bernoulli", "dropout")),
    ("softmax+loss", ("softmax", "cross_entropy", "nll_loss")),
    ("normalisation", ("layer_norm",)),
    ("optimizer+clip", ("optimizer", "adam", "_foreach", "addcdiv", "addcmul", "lerp", "sqrt", "norm", "clip")),
    ("reductions (bias grads)", ("aten::sum", "aten::mean")),
    ("embedding+indexing", ("embedding", "index", "gather", "scatter", "masked", "nonzero")),
    (
        "elementwise",
        (
            "add",
            "mul",
            "relu",
            "threshold",
            "clamp",
            "div",
            "copy_",
            "aten::to",
            "fill",
            "zero",
            "where",
            "sub",
            "empty",
            "clone",
            "cat",
            "view",
            "reshape",
            "transpose",
            "contiguous",
        ),
    ),
)


def categorise(op: str) -> str:
    name = op.lower()
    for category, keys in CATEGORIES:
        if any(k in name for k in keys):
            return category
    return "other"


def profile_step(checkpoint: Path, peak: float) -> dict:
    """torch.profiler over one small-preset training step on a real Multi30K batch."""
    from torch.profiler import ProfilerActivity, profile, record_function

    from bench.train_speed import load_shape

    run, tokenizer, directions = load_shape(checkpoint)
    stream = common.training_stream(
        tokenizer, directions, run.train.tokens_per_batch, temperature=run.train.direction_temperature, seed=run.train.seed
    )
    batches = common.take(iter(stream), 3)
    torch.manual_seed(0)
    model = Transformer(run.model).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=run.train.betas, weight_decay=run.train.weight_decay)

    def step(batch: Batch) -> None:
        with record_function("forward+loss"):
            loss, _ = model.loss(batch.source, batch.target_in, batch.target_out, run.train.label_smoothing)
        with record_function("backward"):
            loss.backward()
        with record_function("clip+optimizer"):
            torch.nn.utils.clip_grad_norm_(model.parameters(), run.train.clip_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    step(batches[0])
    step(batches[1])
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
        step(batches[2])
    wall = time.perf_counter() - start
    events = prof.key_averages()
    phases = {e.key: e.cpu_time_total / 1e6 for e in events if e.key in ("forward+loss", "backward", "clip+optimizer")}
    ops = [e for e in events if e.key not in phases and not e.key.startswith("ProfilerStep")]
    total = sum(e.self_cpu_time_total for e in ops) or 1
    categories: dict[str, float] = {}
    for e in ops:
        categories[categorise(e.key)] = categories.get(categorise(e.key), 0.0) + e.self_cpu_time_total
    top = sorted(ops, key=lambda e: -e.self_cpu_time_total)[:20]
    batch = batches[2]
    return {
        "batch": {
            "sentences": batch.source.shape[0],
            "source_len": batch.source.shape[1],
            "target_len": batch.target_in.shape[1],
            "real_tokens": batch.tokens,
        },
        "wall_s_with_profiler": wall,
        "phases_s": phases,
        "categories_share": {k: v / total for k, v in sorted(categories.items(), key=lambda kv: -kv[1])},
        "top_ops": [
            {"op": e.key, "calls": e.count, "self_ms": e.self_cpu_time_total / 1000, "share": e.self_cpu_time_total / total} for e in top
        ],
        "model_gflops_per_step": common.training_flops(run.model, batch) / 1e9,
        "mfu_under_profiler": common.training_flops(run.model, batch) / wall / peak,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=common.DEFAULT_CHECKPOINT)
    args = parser.parse_args(argv)
    n_threads = common.threads(args.threads)
    repeats = 2 if args.quick else 5
    peak = common.matmul_rate(torch.float32)
    log(f"scaling: fp32 matmul {peak / 1e9:.1f} GFLOP/s, {n_threads} threads, {repeats} timed steps per point")
    out = {
        "benchmark": "scaling",
        "quick": args.quick,
        "machine": common.machine_info(n_threads),
        "matmul_gflops_fp32": peak / 1e9,
        "timed_steps_per_point": repeats,
        "model_size": {},
        "batch_tokens": {},
        "sentence_length": {},
    }

    for name in ("tiny", "small", "base"):
        cfg = shape(name)
        cfg.dropout = 0.1
        r = time_steps(cfg, batch_for(cfg, 4096, SENTENCE), 1 if (args.quick and name == "base") else repeats, peak)
        r["shape"] = f"d{cfg.d_model} h{cfg.n_heads} ff{cfg.d_ff} {cfg.n_encoder_layers}+{cfg.n_decoder_layers} V{cfg.vocab_size}"
        out["model_size"][name] = r
        log(f"  model {name:5s} {r['step_s']:.3f} s/step {r['tokens_per_s']:.0f} tok/s MFU {100 * r['mfu']:.0f}%")

    small = shape("small")
    for tokens in (1024, 2048, 4096, 8192) if args.quick else (1024, 2048, 4096, 8192, 16384):
        r = time_steps(small, batch_for(small, tokens, SENTENCE), repeats, peak)
        out["batch_tokens"][str(tokens)] = r
        log(f"  tokens {tokens:6d} {r['step_s']:.3f} s/step {r['tokens_per_s']:.0f} tok/s")

    for length in (8, 16, 32, 64, 128):
        r = time_steps(small, batch_for(small, 4096, length), repeats, peak)
        out["sentence_length"][str(length)] = r
        log(f"  length {length:4d} {r['step_s']:.3f} s/step {r['tokens_per_s']:.0f} tok/s")

    log("  profiling one small-preset step")
    out["profile_small_step"] = profile_step(args.checkpoint, peak)
    print(table(out))
    path = common.write_json(common.result_path("scaling", args.json), out)
    log(f"wrote {path}")
    return out


def table(out: dict) -> str:
    parts = ["### Scaling (median s per training step, synthetic batches)"]
    rows = [
        [k, r["shape"], f"{r['parameters'] / 1e6:.1f}M", r["step_s"], r["tokens_per_s"], f"{100 * r['mfu']:.0f}%"]
        for k, r in out["model_size"].items()
    ]
    parts.append(common.markdown_table(["preset shape", "dims", "params", "s/step (4096 tok)", "tokens/s", "MFU"], rows))
    rows = [[k, r["batch_sentences"], r["step_s"], r["tokens_per_s"], f"{100 * r['mfu']:.0f}%"] for k, r in out["batch_tokens"].items()]
    parts.append(common.markdown_table(["batch tokens (small)", "sentences", "s/step", "tokens/s", "MFU"], rows))
    rows = [[k, r["batch_sentences"], r["step_s"], r["tokens_per_s"], f"{100 * r['mfu']:.0f}%"] for k, r in out["sentence_length"].items()]
    parts.append(common.markdown_table(["sentence length (small, 4096 tok)", "sentences", "s/step", "tokens/s", "MFU"], rows))
    p = out["profile_small_step"]
    rows = [[k, f"{100 * v:.1f}%"] for k, v in p["categories_share"].items()]
    parts.append(
        "Profile of one small-preset step on a Multi30K batch "
        f"({p['batch']['sentences']}×{p['batch']['source_len']}/{p['batch']['target_len']}): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in p["phases_s"].items())
    )
    parts.append(common.markdown_table(["category", "share of self CPU"], rows))
    rows = [[e["op"], e["calls"], e["self_ms"], f"{100 * e['share']:.1f}%"] for e in p["top_ops"][:12]]
    parts.append(common.markdown_table(["op", "calls", "self ms", "share"], rows))
    return "\n\n".join(parts)


if __name__ == "__main__":
    main()
