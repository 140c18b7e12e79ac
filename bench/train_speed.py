"""Benchmark 1 — training throughput: core vs Hugging Face M2M100, same batches, same maths.

    python bench/train_speed.py [--quick] [--checkpoint checkpoints/multi30k-4lang]

Both models have the shipped model's shape (from the checkpoint's config.json) and start from the
same weights (core's initialisation copied into M2M100 by core/export.py). They are fed the
same Multi30K batches from core's BatchStream (all 12 directions, the shipped tokenizer and batch
size), with the same AdamW settings, learning-rate schedule, gradient clipping and label-smoothed
cross-entropy, and the two alternate in rounds inside one process so that a change in machine
load hits both. Reported: source+target tokens/s (real tokens, as core's trainer counts them),
the ratio core/HF, and MFU = model FLOPs/s ÷ the float32 matmul rate measured in the same run.
The same is repeated under bfloat16 autocast (core's TrainConfig.bf16; HF with the same autocast).
`--device cuda` runs the same comparison on a GPU (MFU then against the GPU's own matmul rates);
`--tokens-per-batch` overrides the checkpoint's batch size (a GPU wants far bigger batches).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

if __package__ in (None, ""):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch
import torch.nn.functional as F

from bench import common
from bench.common import log
from core.config import ModelConfig, RunConfig
from core.device import pick_device
from core.model import Transformer
from core.tokenizer import Tokenizer
from core.train import learning_rate
from core.vocab import PAD_ID


def load_shape(checkpoint: Path) -> tuple[RunConfig, Tokenizer, list[str]]:
    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    run = RunConfig.from_dict(config["run"])
    tokenizer = Tokenizer.load(checkpoint / "spm.model", config["languages"])
    run.model.vocab_size = len(tokenizer)
    return run, tokenizer, list(config["directions"])


def core_loss(model: Transformer, label_smoothing: float):
    def loss(batch):
        return model.loss(batch.source, batch.target_in, batch.target_out, label_smoothing)[0]

    return loss


def hf_loss(model, label_smoothing: float):
    """The ordinary way to train an HF seq2seq model: logits at every target position, padding
    ignored by the loss (`ignore_index`), label smoothing as in Seq2SeqTrainer."""

    def loss(batch):
        logits = model(input_ids=batch.source, attention_mask=(batch.source != PAD_ID).long(), decoder_input_ids=batch.target_in).logits
        return F.cross_entropy(
            logits.float().view(-1, logits.shape[-1]), batch.target_out.view(-1), ignore_index=PAD_ID, label_smoothing=label_smoothing
        )

    return loss


class Runner:
    """One model + optimizer, stepping exactly like core.train.Trainer._train_step."""

    def __init__(self, name: str, model: torch.nn.Module, loss_fn, run: RunConfig) -> None:
        self.name, self.model, self.loss_fn, self.cfg = name, model, loss_fn, run.train
        self.device = next(model.parameters()).device
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=self.cfg.lr, betas=self.cfg.betas, weight_decay=self.cfg.weight_decay)
        self.step_no = 0

    def step(self, batch, bf16: bool) -> float:
        self.model.train()
        self.step_no += 1
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.step_no, self.cfg)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = self.loss_fn(batch)
        loss.backward()
        value = loss.item()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        common.sync(self.device)
        return value


def measure(runners: list[Runner], batches, warmup: int, rounds: int, steps: int, bf16: bool, model_config: ModelConfig) -> dict[str, dict]:
    """Alternate the runners: each round, each runner does `steps` steps on the same batches."""
    stats = {r.name: {"time": 0.0, "tokens": 0, "flops": 0.0, "step_times": [], "losses": []} for r in runners}
    for runner in runners:
        for batch in batches[:warmup]:
            runner.step(batch, bf16)
    position = warmup
    for round_no in range(rounds):
        chunk = batches[position : position + steps]
        position += steps
        for runner in runners if round_no % 2 == 0 else runners[::-1]:
            s = stats[runner.name]
            for batch in chunk:
                start = time.perf_counter()
                loss = runner.step(batch, bf16)
                elapsed = time.perf_counter() - start
                s["time"] += elapsed
                s["tokens"] += batch.tokens
                s["flops"] += common.training_flops(model_config, batch)
                s["step_times"].append(elapsed)
                s["losses"].append(loss)
        log(f"  round {round_no + 1}/{rounds}", {n: round(s["tokens"] / max(s["time"], 1e-9)) for n, s in stats.items()})
    return stats


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=common.DEFAULT_CHECKPOINT)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None, help="steps per system per round")
    parser.add_argument("--no-bf16", action="store_true")
    parser.add_argument("--tokens-per-batch", type=int, default=None, help="default: the checkpoint's")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    n_threads = common.threads(args.threads)
    rounds = args.rounds or (3 if args.quick else 5)
    steps = args.steps or (4 if args.quick else 10)
    warmup = 2

    from core.export import to_m2m100

    run, tokenizer, directions = load_shape(args.checkpoint)
    run.train.tokens_per_batch = args.tokens_per_batch or run.train.tokens_per_batch
    cfg = run.model
    log(
        f"train_speed: {cfg.d_model}d {cfg.n_encoder_layers}+{cfg.n_decoder_layers} layers, vocab {cfg.vocab_size}, "
        f"{run.train.tokens_per_batch} tokens/batch, {n_threads} threads, {device}"
    )
    stream = common.training_stream(
        tokenizer,
        directions,
        run.train.tokens_per_batch,
        temperature=run.train.direction_temperature,
        seed=run.train.seed,
        max_tokens=run.data.max_tokens_per_sentence,
    )
    batches = [b.to(device) for b in common.take(iter(stream), warmup + rounds * steps)]

    def peaks() -> dict[str, float]:
        return {
            "fp32": common.matmul_rate(torch.float32, device=args.device),
            "bf16": common.matmul_rate(torch.bfloat16, device=args.device),
        }

    peak = peaks()
    log(f"  matmul: fp32 {peak['fp32'] / 1e9:.1f} GFLOP/s, bf16 {peak['bf16'] / 1e9:.1f} GFLOP/s")

    precisions = [False] if args.no_bf16 else [False, True]
    results: dict[str, dict] = {}
    check = {}
    for bf16 in precisions:
        label = "bf16" if bf16 else "fp32"
        torch.manual_seed(run.train.seed)
        core_model = Transformer(cfg)
        hf_model = to_m2m100(core_model, dropout=cfg.dropout, attention_dropout=cfg.attention_dropout, activation_dropout=cfg.dropout).to(
            device
        )
        core_model.to(device)
        if not bf16:  # same weights, same batch, no dropout: the two losses must agree
            core_model.eval()
            hf_model.eval()
            with torch.no_grad():
                a = core_loss(core_model, run.train.label_smoothing)(batches[0]).item()
                b = hf_loss(hf_model, run.train.label_smoothing)(batches[0]).item()
            check = {"core_loss": a, "hf_loss": b, "abs_diff": abs(a - b)}
            log(f"  initial loss (eval mode, same weights): core {a:.6f}  hf {b:.6f}")
        runners = [
            Runner("core", core_model, core_loss(core_model, run.train.label_smoothing), run),
            Runner("hf", hf_model, hf_loss(hf_model, run.train.label_smoothing), run),
        ]
        log(f"  {label}: {warmup} warm-up steps, then {rounds} rounds × {steps} steps each")
        stats = measure(runners, batches, warmup, rounds, steps, bf16, cfg)
        block = {}
        for name, s in stats.items():
            rate = s["flops"] / s["time"]
            block[name] = {
                "tokens_per_s": s["tokens"] / s["time"],
                "median_step_s": common.median(s["step_times"]),
                "steps": len(s["step_times"]),
                "tokens": s["tokens"],
                "model_tflops_per_s": rate / 1e12,
                "mean_loss": sum(s["losses"]) / len(s["losses"]),
            }
        block["ratio"] = block["core"]["tokens_per_s"] / block["hf"]["tokens_per_s"]
        results[label] = block
        del runners, core_model, hf_model

    # The machine's matmul rate is measured again after training and the higher one kept: a VM
    # that stalls during one 2-second measurement would otherwise report MFU above 100 %.
    peak = {kind: max(before, after) for (kind, before), after in zip(peak.items(), peaks().values())}
    log(f"  matmul (best of before and after): fp32 {peak['fp32'] / 1e9:.1f} GFLOP/s, bf16 {peak['bf16'] / 1e9:.1f} GFLOP/s")
    for label, block in results.items():
        for name in ("core", "hf"):
            rate = block[name]["model_tflops_per_s"] * 1e12
            block[name]["mfu_vs_fp32_matmul"] = rate / peak["fp32"]
            block[name]["mfu_vs_bf16_matmul"] = rate / peak["bf16"] if label == "bf16" else None
    fp32 = results["fp32"]
    out = {
        "benchmark": "train_speed",
        "quick": args.quick,
        "machine": common.machine_info(n_threads, args.device),
        "setup": {
            "model": {
                k: getattr(cfg, k)
                for k in ("vocab_size", "d_model", "n_heads", "d_ff", "n_encoder_layers", "n_decoder_layers", "dropout", "max_positions")
            },
            "tokens_per_batch": run.train.tokens_per_batch,
            "directions": len(directions),
            "optimizer": "AdamW",
            "lr": run.train.lr,
            "betas": run.train.betas,
            "weight_decay": run.train.weight_decay,
            "label_smoothing": run.train.label_smoothing,
            "clip_norm": run.train.clip_norm,
            "warmup_steps_untimed": warmup,
            "rounds": rounds,
            "steps_per_round": steps,
            "mean_real_tokens_per_batch": sum(b.tokens for b in batches) / len(batches),
            "flops": "3 × forward model FLOPs on real tokens (see bench/common.py forward_flops)",
            "hf_model": "transformers M2M100ForConditionalGeneration, sdpa attention, same initial weights",
        },
        "matmul_gflops": {"fp32": peak["fp32"] / 1e9, "bf16": peak["bf16"] / 1e9, "shape": "1024³ on CPU, 8192³ on a GPU"},
        "initial_loss_check": check,
        "train_tokens_per_s": {"core": fp32["core"]["tokens_per_s"], "hf": fp32["hf"]["tokens_per_s"], "ratio": fp32["ratio"]},
        "mfu": {"core": fp32["core"]["mfu_vs_fp32_matmul"], "hf": fp32["hf"]["mfu_vs_fp32_matmul"]},
        "by_precision": results,
    }
    if "bf16" in results:
        out["train_tokens_per_s_bf16"] = {
            "core": results["bf16"]["core"]["tokens_per_s"],
            "hf": results["bf16"]["hf"]["tokens_per_s"],
            "ratio": results["bf16"]["ratio"],
        }
    print(table(out))
    path = common.write_json(common.result_path("train_speed", args.json), out)
    log(f"wrote {path}")
    return out


def table(out: dict) -> str:
    rows = []
    for label, block in out["by_precision"].items():
        for name in ("core", "hf"):
            b = block[name]
            rows.append(
                [
                    label,
                    name,
                    b["tokens_per_s"],
                    b["median_step_s"],
                    b["model_tflops_per_s"] * 1000,
                    f"{100 * b['mfu_vs_fp32_matmul']:.1f}%",
                    f"{100 * b['mfu_vs_bf16_matmul']:.1f}%" if b["mfu_vs_bf16_matmul"] else "",
                    f"{block['ratio']:.2f}x" if name == "core" else "",
                ]
            )
    head = (
        "### Training throughput (same batches, alternating)\n\n"
        f"matmul rate: fp32 {out['matmul_gflops']['fp32']:.1f} GFLOP/s, bf16 {out['matmul_gflops']['bf16']:.1f} GFLOP/s\n\n"
    )
    return head + common.markdown_table(
        ["precision", "system", "tokens/s", "median step s", "model GFLOP/s", "MFU (fp32 peak)", "MFU (bf16 peak)", "core/HF"], rows
    )


if __name__ == "__main__":
    main()
