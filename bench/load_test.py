"""Load test of the web app: many translations from several clients while a training run works.

    python bench/load_test.py                         # 200 requests from 8 threads, shipped model
    python bench/load_test.py --requests 40           # a quick check
    python bench/load_test.py --checkpoint checkpoints/my-model --hosted

Launches `python app.py` on a free port (as the HTTP tests do, tests/app_server.py) serving a copy
of `--checkpoint` (default checkpoints/multi30k-4lang if it is there, else a tiny model trained
here first, in a temporary folder), starts a tiny training run through the API (/start_training),
waits until it is training, then fires `--requests` /translate calls from `--threads` gradio_client
threads while it trains. Reports successes, latency (p50/p95/max), how many requests ran while the
model was training, and whether the run finished; prints a table and writes bench/load_test.json.

Exit code 0 only when every request succeeded and the training run finished ("done").
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from core.events import ENDINGS  # noqa: E402  (how the Train tab says a run ended)
from tests.app_server import AppServer, launch_app  # noqa: E402

DEFAULT_CHECKPOINT = ROOT / "checkpoints" / "multi30k-4lang"
DEFAULT_JSON = Path(__file__).resolve().parent / "load_test.json"
RUN_NAME = "load-test-run"
ENGINE = "torch"  # /translate's engine: the stored results were measured on PyTorch (the app's default is CTranslate2 where installed)
SENTENCES = [
    "A dog runs on the beach.",
    "Two children are playing in the park.",
    "The woman reads a book.",
    "A man in a red shirt is riding a bike.",
    "Three people are sitting at a table outside.",
    "A little girl climbs the stairs.",
    "The cat sleeps on the sofa.",
    "A group of men are playing football.",
]
CHECKPOINT_FILES = ("config.json", "model.safetensors", "spm.model", "README.md", "metrics.jsonl")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help=f"model to serve (default {DEFAULT_CHECKPOINT.relative_to(ROOT)} if present, else a tiny model trained first)",
    )
    parser.add_argument("--requests", type=int, default=200, help="translate requests in all (default 200)")
    parser.add_argument("--threads", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--beam", type=int, default=1, help="beam size of each request (default 1, greedy)")
    # 600 steps: long enough that the run still trains when the last of 200 requests starts (with 300,
    # the run of 2026-11-28 ended before the last 13 requests: 187 of 200 started while it trained).
    parser.add_argument("--train-steps", type=int, default=600, help="steps of the training run (default 600)")
    parser.add_argument("--train-timeout", type=float, default=900, help="seconds to wait for the run to finish")
    parser.add_argument("--hosted", action="store_true", help="serve with POLYGLOT_HOSTED=1 (the caps of a Space)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    return parser.parse_args(argv)


# --- the model served ---------------------------------------------------------------------------


def is_checkpoint(folder: Path) -> bool:
    return all((folder / name).is_file() for name in CHECKPOINT_FILES[:3])


def train_tiny(folder: Path) -> Path:
    """A tiny model on the built-in corpus (about a minute on one core), for machines without one."""
    import torch

    from core.corpus import load_builtin
    from core.train import train
    from tests.helpers import tiny_config

    torch.set_num_threads(1)
    log(f"no checkpoint given or found: training a tiny model into {folder}")
    train(tiny_config(steps=200), folder, corpus=load_builtin(n_sentences=3000))
    return folder


def serve_copy(checkpoint: Path, checkpoints: Path) -> str:
    """Copy the files the app loads (not the training state) into the app's own checkpoints folder."""
    target = checkpoints / checkpoint.name
    target.mkdir(parents=True)
    for name in CHECKPOINT_FILES:
        if (checkpoint / name).is_file():
            shutil.copy2(checkpoint / name, target / name)
    return checkpoint.name


# --- measuring ----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0–100), linear between ranks; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class TrainingWatcher(threading.Thread):
    """Polls /training_status once a second; remembers when the run was training, and how it ended."""

    def __init__(self, url: str, model: str) -> None:
        super().__init__(name="training-watcher", daemon=True)
        from gradio_client import Client

        self.client = Client(url, verbose=False)
        self.model = model
        self.status = ""
        self.training_from: float | None = None
        self.ended_at: float | None = None
        self.stop = threading.Event()

    def poll(self) -> str:
        self.status = self.client.predict(self.model, api_name="/training_status")[0]
        now = time.monotonic()
        if self.training_from is None and " · training · " in self.status:
            self.training_from = now
        if self.ended_at is None and RUN_NAME in self.status and any(f"**{end}**" in self.status for end in ENDINGS):
            self.ended_at = now  # "**load-test-run** · **done** at step …"
        return self.status

    def run(self) -> None:
        while not self.stop.is_set() and self.ended_at is None:
            try:
                self.poll()
            except Exception as error:  # a missed poll is not a failed request; keep watching
                log(f"training status poll failed: {error}")
            self.stop.wait(1.0)

    @property
    def finished(self) -> bool:
        return "**done**" in self.status


def start_training(url: str, steps: int) -> str:
    from gradio_client import Client

    form = ["Built-in corpus", "", False, None, ["en", "de"], "All pairs", "", "tiny", 1, 64, steps, 1000, 0.003, 1.0]
    status, _ = Client(url, verbose=False).predict(*form, RUN_NAME, api_name="/start_training")
    return status


def fire(url: str, model: str, src: str, tgt: str, requests: int, threads: int, beam: int) -> list[dict[str, Any]]:
    """`requests` /translate calls from `threads` threads, each with its own client (made before the clock starts)."""
    from gradio_client import Client

    clients = [Client(url, verbose=False) for _ in range(threads)]
    decoding = "Greedy" if beam == 1 else "Beam search"

    def one(index: int) -> dict[str, Any]:
        client = clients[index % threads]
        sentence = SENTENCES[index % len(SENTENCES)]
        started = time.monotonic()
        try:
            output, *_ = client.predict(model, sentence, src, tgt, decoding, beam, 1.0, 1, "float32", ENGINE, api_name="/translate")
            ok, error = isinstance(output, str), None
        except Exception as exception:
            ok, error = False, f"{type(exception).__name__}: {exception}"
        return {"index": index, "ok": ok, "error": error, "started": started, "seconds": time.monotonic() - started}

    # Each thread takes the requests i ≡ k (mod threads), so no two threads share a client.
    def worker(k: int) -> list[dict[str, Any]]:
        return [one(index) for index in range(k, requests, threads)]

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = [row for rows in pool.map(worker, range(threads)) for row in rows]
    return sorted(results, key=lambda row: row["index"])


# --- the run ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="polyglot-load-test-"))
    server: AppServer | None = None
    try:
        checkpoint = args.checkpoint or (DEFAULT_CHECKPOINT if is_checkpoint(DEFAULT_CHECKPOINT) else None)
        if checkpoint is None:
            checkpoint = train_tiny(work / "tiny")
        if not is_checkpoint(checkpoint):
            raise SystemExit(f"{checkpoint} is not a checkpoint (needs {', '.join(CHECKPOINT_FILES[:3])})")
        config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
        languages = config["languages"]
        src = "en" if "en" in languages else languages[0]
        tgt = next(lang for lang in languages if lang != src)
        model = serve_copy(checkpoint, work / "checkpoints")
        log(f"launching app.py with {model} ({src}→{tgt}){' in hosted mode' if args.hosted else ''}")
        launched = time.monotonic()
        server = launch_app(work / "checkpoints", work / "app.log", env={"POLYGLOT_HOSTED": "1"} if args.hosted else None)
        app = {"cold_start_s": time.monotonic() - launched}
        app["beam4_latency_s"] = idle_latency(server.url, model, src, tgt)
        app["rss_at_rest_mb"] = rss_mb(server.process.pid)
        memory = PeakMemory(server.process.pid)
        memory.start()

        log(f"starting a {args.train_steps}-step training run through the API")
        log(start_training(server.url, args.train_steps))
        watcher = TrainingWatcher(server.url, model)
        deadline = time.monotonic() + 300
        while watcher.training_from is None and watcher.ended_at is None and time.monotonic() < deadline:
            watcher.poll()  # wait until the run is past its data preparation, so requests meet real training
            time.sleep(0.5)
        watcher.start()

        log(f"firing {args.requests} translate requests from {args.threads} threads")
        started = time.monotonic()
        results = fire(server.url, model, src, tgt, args.requests, args.threads, args.beam)
        wall = time.monotonic() - started
        training_done_at = watcher.ended_at
        log(f"requests done in {wall:.1f} s; waiting for the training run to finish")
        watcher.join(args.train_timeout)
        watcher.stop.set()
        memory.stop.set()
        app["peak_rss_training_mb"] = memory.peak_mb

        latencies = [row["seconds"] for row in results if row["ok"]]
        failures = [row for row in results if not row["ok"]]
        end_of_training = training_done_at if training_done_at is not None else float("inf")
        during = sum(
            1 for row in results if watcher.training_from is not None and watcher.training_from <= row["started"] < end_of_training
        )
        return {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "checkpoint": str(checkpoint),
            "direction": f"{src}-{tgt}",
            "hosted": args.hosted,
            "requests": args.requests,
            "threads": args.threads,
            "beam": args.beam,
            "succeeded": len(latencies),
            "failed": len(failures),
            "errors": sorted({row["error"] for row in failures})[:10],
            "latency_s": {
                "p50": percentile(latencies, 50),
                "p95": percentile(latencies, 95),
                "max": max(latencies, default=None),
                "mean": statistics.fmean(latencies) if latencies else None,
            },
            "wall_s": wall,
            "requests_per_s": len(results) / wall if wall else None,
            "training": {
                "steps": args.train_steps,
                "status": watcher.status,
                "finished": watcher.finished,
                "requests_while_training": during,
                "all_requests_while_training": during == args.requests,
            },
            "app": app,
        }
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


def rss_mb(pid: int) -> float:
    """Resident memory of the app process and its children, in MB."""
    process = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [process, *process.children(recursive=True)]) / 1e6


class PeakMemory(threading.Thread):
    """Samples the app's resident memory every 0.2 s and keeps the peak."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak_mb, self.stop = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.peak_mb = max(self.peak_mb, rss_mb(self.pid))
            time.sleep(0.2)


def idle_latency(url: str, model: str, src: str, tgt: str, repeats: int = 5) -> float:
    """Median wall time of one beam-4 translation through the API on an otherwise idle server."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    times = []
    for sentence in SENTENCES[:repeats]:
        start = time.monotonic()
        client.predict(model, sentence, src, tgt, "Beam search", 4, 1.0, 1, "float32", ENGINE, api_name="/translate")
        times.append(time.monotonic() - start)
    return statistics.median(times)


def table(report: dict[str, Any]) -> str:
    def seconds(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f} s"

    latency, training = report["latency_s"], report["training"]
    rows = [
        ("checkpoint", f"{Path(report['checkpoint']).name} ({report['direction']}, beam {report['beam']})"),
        ("mode", "hosted (POLYGLOT_HOSTED=1)" if report["hosted"] else "local"),
        ("requests", f"{report['requests']} from {report['threads']} threads"),
        ("succeeded", f"{report['succeeded']} / {report['requests']}"),
        ("latency p50", seconds(latency["p50"])),
        ("latency p95", seconds(latency["p95"])),
        ("latency max", seconds(latency["max"])),
        ("throughput", f"{report['requests_per_s']:.2f} requests/s over {report['wall_s']:.1f} s"),
        ("requests while training", f"{training['requests_while_training']} / {report['requests']}"),
        ("training run finished", f"{'yes' if training['finished'] else 'no'} ({training['steps']} steps)"),
        ("app cold start", seconds(report["app"]["cold_start_s"])),
        ("one beam-4 translation (idle server)", seconds(report["app"]["beam4_latency_s"])),
        ("app memory at rest", f"{report['app']['rss_at_rest_mb']:.0f} MB"),
        ("app peak memory while training", f"{report['app']['peak_rss_training_mb']:.0f} MB"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'metric'.ljust(width)} | value |", f"| {'-' * width} | ----- |"]
    lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.requests < 1 or args.threads < 1:
        raise SystemExit("--requests and --threads must be at least 1")
    report = run(args)
    from bench import common  # the commit and machine go into the file, as for every benchmark

    common.write_json(args.json, report)
    print(table(report))
    for error in report["errors"]:
        print(f"error: {error}")
    print(f"wrote {args.json}")
    ok = report["failed"] == 0 and report["training"]["finished"]
    if not ok:
        print("FAILED: " + ("some requests failed" if report["failed"] else "the training run did not finish"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
