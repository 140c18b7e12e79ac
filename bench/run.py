"""Run every benchmark and write bench/results.json (and bench/results.md).

    python bench/run.py            # the full suite (about 1.5 hours on a 2-core CPU)
    python bench/run.py --quick    # the same comparisons in about 20 minutes
    python bench/run.py --smoke --results-dir /tmp/smoke --out /tmp/smoke/results.json   # smallest paths only
    python bench/run.py --quick --only train_speed,decode_speed
    python bench/run.py --device cuda --only train_speed,decode_speed --out bench/results/gpu/results.json

Each benchmark runs in its own subprocess (`python bench/NAME.py`), writes its own JSON under
bench/results/, and prints its own Markdown table; this script gathers the headline numbers into
bench/results.json with the keys train_tokens_per_s, mfu, decode_greedy, decode_beam4 and
peak_rss_mb, next to the machine description, reference numbers and targets, and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, decode_speed
from bench.common import BENCH_DIR, ROOT, log

BENCHMARKS = ("train_speed", "decode_speed", "memory", "scaling", "quality", "classroom")
ON_ANY_DEVICE = ("train_speed", "decode_speed")  # the others measure the CPU machine itself
# --smoke: each benchmark's smallest path, to check that the suite runs end to end (numbers meaningless;
# give --results-dir and --out somewhere else so the stored results are not overwritten).
SMOKE_ARGS = {
    "train_speed": ["--rounds", "1", "--steps", "1"],
    "decode_speed": ["--sentences", "24", "--repeats", "2"],
    "memory": ["--steps", "1"],
    "scaling": [],
    "quality": ["--minutes", "0.1", "--points", "1", "--valid", "20"],
    "classroom": ["--steps", "20"],
}


CONTENTION: dict[str, dict] = {}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _attempt(name: str, args: argparse.Namespace, path: Path) -> tuple[dict, float, str | None, dict]:
    if path.exists():
        path.unlink()
    command = [sys.executable, str(BENCH_DIR / f"{name}.py"), "--json", str(path), "--checkpoint", str(args.checkpoint)]
    if args.quick:
        command.append("--quick")
    if args.threads:
        command += ["--threads", str(args.threads)]
    if args.device != "cpu":
        command += ["--device", args.device]
    if name == "quality" and args.quality_minutes:
        command += ["--minutes", str(args.quality_minutes)]
    if args.smoke:
        command += SMOKE_ARGS[name]
    log(f"=== {name}: {' '.join(command[1:])}")
    start, busy_before, own_before = time.perf_counter(), common.cpu_busy_seconds(), _children_cpu()
    process = subprocess.run(command, cwd=ROOT)
    seconds = time.perf_counter() - start
    contention = {"wall_s": round(seconds, 1)}
    if busy_before is not None:  # CPU time other processes took while this benchmark ran
        foreign = max(0.0, common.cpu_busy_seconds() - busy_before - (_children_cpu() - own_before))
        contention.update(other_processes_cpu_s=round(foreign, 1), share_of_machine=round(foreign / (seconds * (os.cpu_count() or 1)), 3))
    if process.returncode != 0 or not path.exists():
        return {}, seconds, f"{name} exited with code {process.returncode}", contention
    return json.loads(path.read_text(encoding="utf-8")), seconds, None, contention


def run_one(name: str, args: argparse.Namespace) -> tuple[dict, float, str | None]:
    """Run a benchmark; if other processes took more than `--max-contention` of the machine while
    it ran, run it again (up to `--retries` times) and keep the least disturbed attempt."""
    path = args.results_dir / f"{name}.json"
    kept = path.with_suffix(".kept.json")
    attempts: list[dict] = []
    best: tuple[dict, float, dict] | None = None
    error: str | None = None
    for attempt in range(1 + args.retries):
        data, seconds, error, contention = _attempt(name, args, path)
        attempts.append(contention)
        if error is not None:
            break
        share = contention.get("share_of_machine", 0.0)
        if best is None or share < best[2].get("share_of_machine", 0.0):
            best = (data, seconds, contention)
            kept.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
        if share <= args.max_contention or attempt == args.retries:
            break
        log(f"!!! other processes used {100 * share:.0f}% of the CPU during {name}: running it again")
    if kept.exists():
        kept.replace(path)  # the JSON of the attempt that is reported
    CONTENTION[name] = {**(best[2] if best else attempts[-1]), "attempts": attempts}
    if best is None:
        return {}, sum(a["wall_s"] for a in attempts), error or f"{name} failed"
    return best[0], best[1], None


def _relative(path: Path) -> Path:
    try:
        return path.resolve().relative_to(ROOT)
    except ValueError:
        return path


def summarise(results: dict[str, dict]) -> dict:
    out: dict = {}
    train = results.get("train_speed")
    if train:
        out["train_tokens_per_s"] = train["train_tokens_per_s"]
        out["mfu"] = train["mfu"]
        if "train_tokens_per_s_bf16" in train:
            out["train_tokens_per_s_bf16"] = train["train_tokens_per_s_bf16"]
            bf16 = train["by_precision"]["bf16"]
            out["mfu_bf16"] = {
                name: {"vs_fp32_matmul": bf16[name]["mfu_vs_fp32_matmul"], "vs_bf16_matmul": bf16[name]["mfu_vs_bf16_matmul"]}
                for name in ("core", "hf")
            }
        out["matmul_gflops"] = train["matmul_gflops"]
    decode = results.get("decode_speed")
    if decode:
        for key in ("decode_greedy", "decode_beam4"):
            block = decode[key]
            fields = ("sentences_per_s", "sentences_per_s_min", "sentences_per_s_max", "tokens_per_s", "bleu", "identical_to_core")
            out[key] = {name: {f: block[name][f] for f in fields if f in block[name]} for name in decode_speed.SYSTEMS if name in block}
            out[key]["float32_bleu_within_0.1"] = block["float32_bleu_within_0.1"]
            out[key]["bleu_signature"] = block["bleu_signature"]
            if "ratios" in block:  # core over HF and CT2: best layouts, and like for like
                out[key]["ratios"] = block["ratios"]
        out["decode_setup"] = decode["setup"]
    memory = results.get("memory")
    if memory:
        out["peak_rss_mb"] = memory["peak_rss_mb"]
    scaling = results.get("scaling")
    if scaling:
        out["scaling_step_s"] = {
            "model_size": {k: v["step_s"] for k, v in scaling["model_size"].items()},
            "batch_tokens": {k: v["step_s"] for k, v in scaling["batch_tokens"].items()},
            "sentence_length": {k: v["step_s"] for k, v in scaling["sentence_length"].items()},
        }
        out["profile_small_step_categories"] = scaling["profile_small_step"]["categories_share"]
    classroom = results.get("classroom")
    if classroom:
        out["classroom"] = {k: classroom[k] for k in ("command", "wall_seconds", "mean_valid_bleu", "bleu_floor")}
    quality = results.get("quality")
    if quality:
        out["quality_at_equal_time"] = {"setup": quality["setup"], "final": quality["final"], "curves": quality["curves"]}
    targets = {}
    if train:
        targets["train_core_over_hf"] = {
            "target": common.TARGETS["train_ratio_core_over_hf"],
            "measured": train["train_tokens_per_s"]["ratio"],
        }
    if decode:
        targets.update(decode["targets"])
    if "train_core_over_hf" in targets:  # decode_speed.targets judges its own targets (like for like)
        value = targets["train_core_over_hf"]
        value["met"] = value["measured"] >= value["target"]
    out["targets"] = targets
    return out


def summary_table(summary: dict) -> str:
    parts = []
    if "train_tokens_per_s" in summary:
        t, m = summary["train_tokens_per_s"], summary["mfu"]
        rows = [["fp32", t["core"], t["hf"], f"{t['ratio']:.2f}x", f"{100 * m['core']:.0f}%", f"{100 * m['hf']:.0f}%"]]
        if "train_tokens_per_s_bf16" in summary:
            b, mb = summary["train_tokens_per_s_bf16"], summary["mfu_bf16"]
            rows.append(
                [
                    "bf16 autocast",
                    b["core"],
                    b["hf"],
                    f"{b['ratio']:.2f}x",
                    f"{100 * mb['core']['vs_fp32_matmul']:.0f}% ({100 * mb['core']['vs_bf16_matmul']:.0f}% of bf16)",
                    f"{100 * mb['hf']['vs_fp32_matmul']:.0f}% ({100 * mb['hf']['vs_bf16_matmul']:.0f}% of bf16)",
                ]
            )
        parts.append(
            "#### Training tokens/s (small shape, Multi30K batches)\n\n"
            + common.markdown_table(["precision", "core", "HF M2M100", "core/HF", "MFU core (fp32 peak)", "MFU HF (fp32 peak)"], rows)
        )
    if "decode_greedy" in summary:
        rows = []

        def speed(block: dict, name: str) -> tuple:
            r = block.get(name)
            if not r:
                return None, None
            spread = f" ({r['sentences_per_s_min']:.0f}-{r['sentences_per_s_max']:.0f})" if "sentences_per_s_min" in r else ""
            return f"{r['sentences_per_s']:.1f}{spread}", f"{r['bleu']:.2f}"

        for name, label in decode_speed.SYSTEMS.items():
            if name not in summary["decode_beam4"]:
                continue
            rows.append([label, *speed(summary["decode_greedy"], name), *speed(summary["decode_beam4"], name)])
        setup = summary.get("decode_setup", {})
        parts.append(
            f"#### Decoding en→de, {setup.get('sentences', '?')} sentences, batch {setup.get('batch_size', '?')} "
            "(sent/s: median, min-max of the alternating rounds)\n\n"
            + common.markdown_table(["system", "greedy sent/s", "greedy BLEU", "beam-4 sent/s", "beam-4 BLEU"], rows)
        )
        rows = []
        for key, search in (("decode_greedy", "greedy"), ("decode_beam4", "beam 4")):
            for layout, r in summary[key].get("ratios", {}).items():
                rows.append(
                    [
                        search,
                        layout.replace("_", " "),
                        r.get("core_over_hf"),
                        r.get("core_over_ct2_float32"),
                        ", ".join(f"{k}: {v}" for k, v in r["systems"].items()),
                    ]
                )
        if rows:
            parts.append(
                "#### Core's speed over HF and CTranslate2 float32 (same BLEU): best layouts, and like for like\n\n"
                + common.markdown_table(["search", "layout", "core/HF", "core/CT2 fp32", "systems compared"], rows)
            )
    if "peak_rss_mb" in summary:
        rows = [[k, v] for k, v in summary["peak_rss_mb"].items()]
        parts.append("#### Peak RSS (MB)\n\n" + common.markdown_table(["process", "MB"], rows))
    if "quality_at_equal_time" in summary:
        q = summary["quality_at_equal_time"]
        rows = [[name, f"{f['valid_bleu']:.2f}", f["steps"], f["tokens_per_s"]] for name, f in q["final"].items()]
        parts.append(
            f"#### Quality after {q['setup']['minutes_each']:g} min each ({q['setup']['size']} shape, "
            f"{q['setup']['direction']})\n\n" + common.markdown_table(["system", "valid BLEU", "steps", "tokens/s"], rows)
        )
    if summary.get("targets"):
        rows = [
            [
                k,
                f"{'≤' if k.endswith('_loss') else '≥'} {v['target']:g}",  # a loss is met below its limit
                f"{v['measured']:.2f}",
                v.get("judged_on", "same setup"),
                "yes" if v["met"] else "no",
            ]
            for k, v in summary["targets"].items()
        ]
        parts.append(
            "#### Targets (reported, not asserted)\n\n" + common.markdown_table(["target", "wanted", "measured", "judged on", "met"], rows)
        )
    return "\n\n".join(parts)


def resummarise(args: argparse.Namespace, names: list[str]) -> dict:
    """`--summarise`: the summary of the stored per-benchmark files, written over `args.out`, whose
    run facts (machine, durations, contention) are kept. For a change of the summary code alone."""
    previous = json.loads(args.out.read_text(encoding="utf-8"))
    results = {name: json.loads((args.results_dir / f"{name}.json").read_text(encoding="utf-8")) for name in names}
    commits = {name: data.get("provenance", {}).get("git", {}).get("commit") for name, data in results.items()}
    out = {**previous, **summarise(results), "commits": commits, "summarised_again_from_the_stored_files": True}
    write(args.out, out)
    log(f"rebuilt {args.out} and {args.out.with_suffix('.md')} from the stored files of {', '.join(names)}")
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="Run all benchmarks; write bench/results.json.")
    parser.add_argument("--quick", action="store_true", help="a few-minute version with the same comparisons")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cpu", help=f"cpu, cuda or mps ({', '.join(ON_ANY_DEVICE)} only)")
    parser.add_argument("--checkpoint", type=Path, default=common.DEFAULT_CHECKPOINT)
    parser.add_argument("--quality-minutes", type=float, default=None, help="override the quality budget per system")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results.json")
    parser.add_argument(
        "--max-contention",
        type=float,
        default=0.15,
        help="rerun a benchmark if other processes used more than this share of the CPU meanwhile",
    )
    parser.add_argument("--retries", type=int, default=1, help="reruns allowed per benchmark for --max-contention")
    parser.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR, help="where each benchmark's JSON goes")
    parser.add_argument(
        "--summarise",
        action="store_true",
        help="rebuild --out from the stored per-benchmark files without running them (keeps the run's times)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="each benchmark's smallest path (implies --quick; pair with --results-dir and --out)"
    )
    args = parser.parse_args(argv)
    args.quick = args.quick or args.smoke
    if args.smoke and args.results_dir.resolve() == common.RESULTS_DIR.resolve():
        parser.error("--smoke would overwrite bench/results/: give --results-dir (and --out) elsewhere")
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = set(names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    if args.device != "cpu" and set(names) - set(ON_ANY_DEVICE):
        parser.error(f"--device {args.device} applies to {', '.join(ON_ANY_DEVICE)} only: add --only {','.join(ON_ANY_DEVICE)}")
    if not (args.checkpoint / "model.safetensors").exists():
        parser.error(f"{args.checkpoint} has no model.safetensors: train the shipped model first or pass --checkpoint")

    n_threads = args.threads or common.threads(0)
    if args.summarise:
        return resummarise(args, names)
    start_load = common.other_cpu_load()
    started = time.perf_counter()
    results, durations, errors, shared = {}, {}, {}, {}
    for name in names:
        before = common.other_cpu_load().get("shipped_training_running", False)
        data, seconds, error = run_one(name, args)
        after = common.other_cpu_load().get("shipped_training_running", False)
        durations[name] = round(seconds, 1)
        shared[name] = before or after
        if error:
            errors[name] = error
            log(f"!!! {error}")
        else:
            results[name] = data

    out = {
        "quick": args.quick,
        "machine": common.machine_info(n_threads, args.device),
        "checkpoint": str(args.checkpoint),
        **summarise(results),
        "reference": common.REFERENCE,
        "durations_s": {**durations, "total": round(time.perf_counter() - started, 1)},
        "training_job_shared_cpu": {"at_start": start_load.get("shipped_training_running", False), "per_benchmark": shared},
        "cpu_contention": CONTENTION,
        "errors": errors,
        "details": {name: str(_relative(args.results_dir / f"{name}.json")) for name in results},
        "smoke": args.smoke,
        # every part must come from the same commit as this file (its own `provenance`)
        "commits": {name: data.get("provenance", {}).get("git", {}).get("commit") for name, data in results.items()},
    }
    write(args.out, out)
    log(f"wrote {args.out} and {args.out.with_suffix('.md')} in {out['durations_s']['total']:.0f} s")
    return out


def write(path: Path, out: dict) -> None:
    """results.json, and results.md with its tables (printed too)."""
    table = summary_table(out)
    print("\n" + table)
    common.write_json(path, out)
    machine = out["machine"]
    path.with_suffix(".md").write_text(
        f"# Benchmark results ({'quick' if out['quick'] else 'full'} run, {machine['date']})\n\n"
        f"{machine['gpu'] or machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}, "
        f"transformers {machine['transformers']}, ctranslate2 {machine['ctranslate2']}\n\n" + table + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
