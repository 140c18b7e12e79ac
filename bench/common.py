"""Shared helpers for the benchmarks: machine info, threads, data, FLOPs, timing, tables, JSON."""

from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from core import checkpoint  # noqa: E402
from core.batching import Batch, BatchStream  # noqa: E402
from core.config import ModelConfig  # noqa: E402
from core.vocab import PAD_ID  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_CHECKPOINT = ROOT / "checkpoints" / "multi30k-4lang"
SHIPPED_TRAINING_PATTERN = "core train --config configs/multi30k-4lang"

# Reference numbers measured earlier on this machine with a trained HF MarianMT small model
# (context only: a different model, not measured by these scripts).
REFERENCE = {
    "model": "HF MarianMT small (trained), same machine",
    "hf_generate_sent_per_s": {"greedy": 79.0, "beam4": 29.5},
    "ct2_float32_sent_per_s": {"greedy": 257.0, "beam4": 99.0},
    "ct2_int8_sent_per_s": {"greedy": 120.0, "beam4": 64.0},
    "hf_train_tokens_per_s": 2700.0,
}
TARGETS = {
    "train_ratio_core_over_hf": 1.3,
    "beam4_core_over_hf": 2.0,
    "beam4_core_over_ct2_float32": 0.9,
    "greedy_core_over_ct2_float32": 0.8,
    "fastest_path_bleu_loss": 0.3,  # BLEU the one-flag fastest path may lose against core float32
}


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a few-minute version with the same comparisons")
    parser.add_argument("--threads", type=int, default=0, help="torch / CT2 threads (default: all cores)")
    parser.add_argument("--json", type=Path, default=None, help="where to write this benchmark's JSON")
    parser.add_argument("--device", default="cpu", help="cpu (the default: the machine every visitor has), cuda, mps")
    return parser


def sync(device: torch.device | str) -> None:
    """Wait for the accelerator: its kernels run asynchronously, so a timer must wait for them."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def threads(requested: int = 0) -> int:
    n = requested or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


# --- machine ----------------------------------------------------------------------------------


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni", "fma")
                return [f for f in line.split(":", 1)[1].split() if f in wanted]
    except OSError:
        pass
    return []


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:  # not installed, or broken
        return None


def other_cpu_load() -> dict[str, Any]:
    """Processes that compete for the CPU right now (the shipped model's training job above all)."""
    try:
        import psutil
    except ImportError:
        return {}
    own = os.getpid()
    busy = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.info["pid"] == own or not proc.info["cmdline"]:
                continue
            cmd = " ".join(proc.info["cmdline"])
            if "python" in cmd and ("core train" in cmd or "pytest" in cmd or "app.py" in cmd or "bench/" in cmd):
                busy.append({"pid": proc.info["pid"], "cmd": cmd[:160]})
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return {
        "load_average_1m": os.getloadavg()[0],
        "python_jobs": busy,
        "shipped_training_running": any(SHIPPED_TRAINING_PATTERN in b["cmd"] for b in busy),
    }


def cpu_busy_seconds() -> float | None:
    """CPU time the whole machine has spent busy since boot (all cores, all processes; /proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def machine_info(n_threads: int, device: str = "cpu") -> dict[str, Any]:
    info = {
        "device": device,
        "gpu": torch.cuda.get_device_name() if torch.device(device).type == "cuda" else None,
        "cpu": cpu_name(),
        "cpu_flags": cpu_flags(),
        "logical_cores": os.cpu_count(),
        "threads": n_threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "ctranslate2": _version("ctranslate2"),
        "sacrebleu": _version("sacrebleu"),
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    info["concurrent_load"] = other_cpu_load()
    return info


# --- data -------------------------------------------------------------------------------------


def multi30k_folder() -> Path:
    from core.corpus import find_multi30k

    folder = find_multi30k()
    if folder is None:
        raise SystemExit("Multi30K not found: set POLYGLOT_MULTI30K to a folder with train.en.gz etc.")
    return folder


def read_lines(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle]


def test_set(src: str = "en", tgt: str = "de") -> tuple[list[str], list[str]]:
    folder = multi30k_folder()
    return read_lines(folder / f"test_2016_flickr.{src}.gz"), read_lines(folder / f"test_2016_flickr.{tgt}.gz")


def training_stream(
    tokenizer,
    directions: list[str],
    tokens_per_batch: int,
    split: str = "train",
    temperature: float = 5.0,
    seed: int = 1,
    max_tokens: int = 128,
) -> BatchStream:
    """Core's own BatchStream over Multi30K, encoded with `tokenizer` (the shipped vocabulary)."""
    from core.corpus import load_multi30k

    corpus = load_multi30k(multi30k_folder())
    languages = sorted({lang for d in directions for lang in d.split("-")})
    encoded = {lang: tokenizer.encode_batch(corpus.split(split)[lang]) for lang in languages}
    return BatchStream(encoded, directions, tokenizer.tag_ids, tokens_per_batch, temperature, seed, max_tokens)


def pad(rows: list[list[int]]) -> torch.Tensor:
    """Right-pad id lists into a [B, L] tensor (what core's Translator feeds its searches)."""
    width = max(len(r) for r in rows)
    return torch.tensor([r + [PAD_ID] * (width - len(r)) for r in rows], dtype=torch.long)


def source_ids(translator, line: str, tgt: str) -> list[int]:
    """The ids core's Translator feeds the encoder for `line` (its cleaning and truncation)."""
    encode = getattr(translator, "_encode", None)
    if encode is not None:
        return encode(line, tgt)[0]
    return translator.tokenizer.source_ids(" ".join(line.split()), tgt)


def take(stream: Iterable[Batch], n: int) -> list[Batch]:
    out = []
    for batch in stream:
        out.append(batch)
        if len(out) == n:
            break
    return out


def synthetic_batch(vocab_size: int, batch_size: int, source_len: int, target_len: int, seed: int = 0) -> Batch:
    """Random ids, every sentence exactly the given lengths (no padding)."""
    g = torch.Generator().manual_seed(seed)
    source = torch.randint(4, vocab_size, (batch_size, source_len), generator=g)
    target = torch.randint(4, vocab_size, (batch_size, target_len + 1), generator=g)
    return Batch(source, target[:, :-1].contiguous(), target[:, 1:].contiguous())


# --- FLOPs and the matmul rate ----------------------------------------------------------------


def forward_flops(config: ModelConfig, batch: Batch) -> float:
    """Model FLOPs (2 × multiply-adds) of one forward pass over the real (non-padding) tokens:
    every Linear, the attention products (causal self-attention counted as a triangle) and the
    tied output projection. Embedding look-ups, norms, softmax and the loss are not counted."""
    d, f, v = config.d_model, config.d_ff, config.vocab_size
    s = (batch.source != PAD_ID).sum(dim=1).double()
    t = (batch.target_out != PAD_ID).sum(dim=1).double()
    encoder = config.n_encoder_layers * (s * (4 * d * d + 2 * d * f) + 2 * s * s * d)
    decoder = config.n_decoder_layers * (
        t * (4 * d * d)  # self-attention Q, K, V, O
        + t * (t + 1) * d  # causal QKᵀ and AV
        + t * (2 * d * d)
        + s * (2 * d * d)  # cross-attention Q, O on the target; K, V on the source
        + 2 * t * s * d  # cross QKᵀ and AV
        + t * (2 * d * f)  # FFN
    )
    projection = t * d * v
    return float(2 * (encoder + decoder + projection).sum())


def training_flops(config: ModelConfig, batch: Batch) -> float:
    """Forward + backward ≈ 3 × forward (the usual MFU convention)."""
    return 3.0 * forward_flops(config, batch)


def matmul_rate(
    dtype: torch.dtype = torch.float32, n: int = 1024, seconds: float = 2.0, shape: tuple[int, int, int] | None = None, device: str = "cpu"
) -> float:
    """Best sustained FLOP/s of torch.mm on this machine with the current thread count
    (on a GPU: 8192³, the size at which its matmul rate is reached)."""
    if torch.device(device).type != "cpu" and shape is None:
        n = 8192
    m, k, nn = shape or (n, n, n)
    a, b = torch.randn(m, k, dtype=dtype, device=device), torch.randn(k, nn, dtype=dtype, device=device)
    for _ in range(3):
        torch.mm(a, b)
    sync(device)
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        for _ in range(4):
            torch.mm(a, b)
        sync(device)
        best = max(best, 4 * 2 * m * k * nn / (time.perf_counter() - t))
    return best


# --- timing, tables, JSON ---------------------------------------------------------------------


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(x: Any) -> str:
        if isinstance(x, float):
            return f"{x:,.3g}" if abs(x) < 10 else f"{x:,.1f}" if abs(x) < 1000 else f"{x:,.0f}"
        return "" if x is None else str(x)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def git_info() -> dict[str, Any]:
    """The commit the code under test comes from: `git rev-parse HEAD`, and whether tracked files
    differ from it (`dirty`: the numbers then come from uncommitted code, `dirty_files` says which)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.rstrip("\n") if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    changed = git("status", "--porcelain", "--untracked-files=no")
    files = [line[3:] for line in (changed or "").splitlines() if len(line) > 3]
    return {"commit": commit, "dirty": bool(files) if changed is not None else None, "dirty_files": files[:50]}


def provenance() -> dict[str, Any]:
    """Where a results file comes from: the commit (and whether the tree was dirty), the command
    line and the time it was written. `write_json` adds it, and the machine, to every results file."""
    return {
        "git": git_info(),
        "command": " ".join(["python", *sys.argv]),
        "written": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def write_json(path: Path, data: dict[str, Any]) -> Path:
    """Write a results file, atomically. Every benchmark writes through here, so every file records
    `provenance` (commit, dirty flag, command) and `machine` (the benchmark's own `machine_info`,
    measured at its start, or else taken now)."""
    path = Path(path)
    machine = data.get("machine") or machine_info(torch.get_num_threads())
    data = {**data, "provenance": provenance(), "machine": machine}
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=_jsonable) + "\n")  # atomic
    return path


def _jsonable(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    return str(x)


def result_path(name: str, given: Path | None) -> Path:
    return given or RESULTS_DIR / f"{name}.json"


def log(*parts: Any) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, file=sys.stderr, flush=True)
