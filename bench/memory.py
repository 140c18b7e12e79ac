"""Benchmark 3 — memory: peak RSS while training the tiny and small presets, and the app at rest.

    python bench/memory.py [--quick]

Each measurement runs in its own subprocess, so one does not inherit another's allocations:
- training: `python bench/memory.py --child PRESET` imports core, loads the preset's data (tiny: the
  built-in corpus with its own 1000-piece tokenizer, trained in the child; small: Multi30K, 12
  directions, with the shipped 8k tokenizer), encodes it, builds the model and AdamW and takes a
  few training steps at the preset's batch size, exactly as core's Trainer does. The peak RSS is
  the kernel's `ru_maxrss` of that process (reported by the child just before it exits), next to
  the RSS after imports, after data loading, after building the model and after the steps.
- app: `python app.py` on a free port (with the project's checkpoints/ folder), polled until it
  serves `/config`, left idle for a few seconds; RSS of the process tree via psutil.
"""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.common import ROOT, log


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _maxrss_mb(kb: int) -> float:
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20  # Linux: KiB, macOS: bytes


def child(preset_name: str, steps: int, checkpoint: Path, n_threads: int) -> None:
    """Runs inside the subprocess: a few real training steps of a preset; prints one JSON line."""
    import torch

    torch.set_num_threads(n_threads)
    from core.batching import BatchStream
    from core.config import preset
    from core.languages import parse_directions
    from core.model import Transformer
    from core.tokenizer import Tokenizer
    from core.train import learning_rate

    marks = {"after_imports_mb": _rss_mb()}
    run = preset(preset_name)
    if preset_name == "tiny":
        from core.corpus import load_builtin

        corpus = load_builtin()
        languages = corpus.languages
        train = corpus.split("train")
        tokenizer = Tokenizer.train(
            {lang: train[lang] for lang in languages},
            run.data.vocab_size,
            run.data.tokenizer_type,
            run.data.tokenizer_sentences_per_language,
            run.train.seed,
        )
        data = "builtin corpus, tokenizer trained in this process"
    else:
        from core.corpus import load_multi30k

        config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
        languages = config["languages"]
        corpus = load_multi30k(common.multi30k_folder()).restrict(languages)
        train = corpus.split("train")
        tokenizer = Tokenizer.load(checkpoint / "spm.model", languages)
        data = "Multi30K, shipped tokenizer"
    directions = parse_directions(run.data.directions, languages)
    encoded = {lang: tokenizer.encode_batch(lines) for lang, lines in train.items()}
    stream = BatchStream(
        encoded,
        directions,
        tokenizer.tag_ids,
        run.train.tokens_per_batch,
        run.train.direction_temperature,
        run.train.seed,
        run.data.max_tokens_per_sentence,
    )
    marks["after_data_mb"] = _rss_mb()
    run.model.vocab_size = len(tokenizer)
    torch.manual_seed(run.train.seed)
    model = Transformer(run.model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=run.train.lr, betas=run.train.betas, weight_decay=run.train.weight_decay)
    marks["after_model_mb"] = _rss_mb()
    batches = iter(stream)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, run.train)
        batch = next(batches)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=run.train.bf16):
            loss, _ = model.loss(batch.source, batch.target_in, batch.target_out, run.train.label_smoothing)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), run.train.clip_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    marks["after_steps_mb"] = _rss_mb()
    print(
        json.dumps(
            {
                "preset": preset_name,
                "data": data,
                "steps": steps,
                "tokens_per_batch": run.train.tokens_per_batch,
                "parameters": model.num_parameters(),
                "vocab_size": run.model.vocab_size,
                "train_s": time.perf_counter() - start,
                "peak_rss_mb_self": _maxrss_mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
                **marks,
            }
        )
    )


def measure_training(preset_name: str, steps: int, checkpoint: Path, n_threads: int) -> dict:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        preset_name,
        "--steps",
        str(steps),
        "--checkpoint",
        str(checkpoint),
        "--threads",
        str(n_threads),
    ]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"memory child {preset_name} failed:\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = result["peak_rss_mb_self"]
    return result


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def measure_app(timeout: float = 240.0, settle: float = 5.0) -> dict:
    import psutil

    app = ROOT / "app.py"
    if not app.exists():
        return {"skipped": "no app.py"}
    port = _free_port()
    env = {
        **os.environ,
        "POLYGLOT_HOST": "127.0.0.1",
        "POLYGLOT_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",
    }
    log_path = Path(tempfile.mkdtemp(prefix="bench-app-")) / "app.log"
    with open(log_path, "w", encoding="utf-8") as handle:
        process = subprocess.Popen([sys.executable, str(app)], cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/config"
    start = time.perf_counter()
    try:
        while True:
            if process.poll() is not None:
                return {"error": f"app.py exited with {process.returncode}; see {log_path}"}
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.perf_counter() - start > timeout:
                return {"error": f"app.py did not serve within {timeout:.0f} s; see {log_path}"}
            time.sleep(0.5)
        ready_s = time.perf_counter() - start
        time.sleep(settle)
        proc = psutil.Process(process.pid)
        tree = [proc, *proc.children(recursive=True)]
        rss = sum(p.memory_info().rss for p in tree if p.is_running()) / 2**20
        return {
            "rss_mb": rss,
            "main_process_rss_mb": proc.memory_info().rss / 2**20,
            "processes": len(tree),
            "ready_s": ready_s,
            "idle_s_before_reading": settle,
            "checkpoints": os.environ.get("POLYGLOT_CHECKPOINTS", str(ROOT / "checkpoints")),
        }
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=15)


def main(argv: list[str] | None = None) -> dict:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=common.DEFAULT_CHECKPOINT)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--child", choices=["tiny", "small", "base"], help=argparse_hidden())
    parser.add_argument("--no-app", action="store_true")
    args = parser.parse_args(argv)
    n_threads = args.threads or os.cpu_count() or 1
    if args.child:
        child(args.child, args.steps or 5, args.checkpoint, n_threads)
        return {}
    steps = args.steps or (5 if args.quick else 20)
    out = {"benchmark": "memory", "quick": args.quick, "machine": common.machine_info(n_threads), "training": {}}
    for name in ("tiny", "small"):
        log(f"memory: training {name}, {steps} steps in a subprocess")
        out["training"][name] = measure_training(name, steps, args.checkpoint, n_threads)
        log(f"  peak RSS {out['training'][name]['peak_rss_mb']:.0f} MB")
    if not args.no_app:
        log("memory: app.py at rest")
        out["app_at_rest"] = measure_app()
        log(f"  {out['app_at_rest']}")
    out["peak_rss_mb"] = {
        "train_tiny": out["training"]["tiny"]["peak_rss_mb"],
        "train_small": out["training"]["small"]["peak_rss_mb"],
        "app_at_rest": out.get("app_at_rest", {}).get("rss_mb"),
    }
    print(table(out))
    path = common.write_json(common.result_path("memory", args.json), out)
    log(f"wrote {path}")
    return out


def argparse_hidden() -> str:
    import argparse

    return argparse.SUPPRESS


def table(out: dict) -> str:
    rows = []
    for name, r in out["training"].items():
        rows.append(
            [
                f"train {name} ({r['parameters'] / 1e6:.1f}M params, {r['tokens_per_batch']} tok/batch)",
                r["peak_rss_mb"],
                r["after_imports_mb"],
                r["after_data_mb"],
                r["after_model_mb"],
                r["after_steps_mb"],
            ]
        )
    app = out.get("app_at_rest", {})
    if "rss_mb" in app:
        rows.append(["app.py at rest", app["rss_mb"], None, None, None, None])
    elif app:
        rows.append(["app.py at rest", app.get("error") or app.get("skipped"), None, None, None, None])
    return "### Memory (MB)\n\n" + common.markdown_table(
        ["process", "peak RSS", "after imports", "after data", "after model", "after steps"], rows
    )


if __name__ == "__main__":
    main()
