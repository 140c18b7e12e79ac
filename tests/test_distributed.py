"""torchrun with two gloo processes on the CPU: the same training as one process with the same global batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core import checkpoint
from tests.helpers import child_env

ROOT = Path(__file__).resolve().parent.parent
ENV = child_env()
TINY = [
    "--preset",
    "tiny",
    "--data",
    "builtin",
    "--languages",
    "en,de",
    "--steps",
    "6",
    "--d-model",
    "32",
    "--d-ff",
    "64",
    "--layers",
    "1",
    "--vocab-size",
    "200",
    "--tokens-per-batch",
    "800",
    "--eval-every",
    "6",
    "--dropout",
    "0",
    "--threads",
    "1",
    "--warmup-steps",
    "2",
    "--device",
    "cpu",
]


def run(command: list[str]) -> None:
    done = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def steps(folder: Path) -> list[dict]:
    return [r for r in checkpoint.read_metrics(folder) if r["event"] == "step"]


@pytest.mark.slow
def test_two_ranks_match_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "core",
            "train",
            *TINY,
            "--out",
            str(tmp_path / "ddp"),
        ]
    )
    run([sys.executable, "-m", "core", "train", *TINY, "--accumulation", "2", "--out", str(tmp_path / "single")])

    done = [r for r in checkpoint.read_metrics(tmp_path / "ddp") if r["event"] == "done"][0]
    assert done["ranks"] == 2
    first, second = done["replica_checksums"]
    assert first == second  # both ranks hold identical weights

    ddp, single = steps(tmp_path / "ddp"), steps(tmp_path / "single")
    assert [r["step"] for r in ddp] == [r["step"] for r in single]
    for a, b in zip(ddp, single):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
    a = checkpoint.load_weights(tmp_path / "ddp" / checkpoint.LAST_WEIGHTS)
    b = checkpoint.load_weights(tmp_path / "single" / checkpoint.LAST_WEIGHTS)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)
    config = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert config["training"]["ranks"] == 2

    # Resume across world sizes: 3 steps on two ranks, then 3 more in one process with
    # accumulation 2 (the same global batch) end where the one-process run ended. (The learning
    # rate must not depend on --steps for this, hence inverse_sqrt, not the tiny preset's cosine.)
    steady = [*TINY, "--schedule", "inverse_sqrt"]
    run([sys.executable, "-m", "core", "train", *steady, "--accumulation", "2", "--out", str(tmp_path / "steady")])
    run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "core",
            "train",
            *steady,
            "--steps",
            "3",
            "--out",
            str(tmp_path / "mixed"),
        ]
    )
    run([sys.executable, "-m", "core", "train", *steady, "--accumulation", "2", "--resume", "--out", str(tmp_path / "mixed")])
    starts = [r for r in checkpoint.read_metrics(tmp_path / "mixed") if r["event"] == "start"]
    assert [(r["step"], r["ranks"]) for r in starts] == [(0, 2), (3, 1)]
    assert steps(tmp_path / "mixed")[-1]["step"] == 6
    c = checkpoint.load_weights(tmp_path / "mixed" / checkpoint.LAST_WEIGHTS)
    d = checkpoint.load_weights(tmp_path / "steady" / checkpoint.LAST_WEIGHTS)
    for name in d:
        torch.testing.assert_close(c[name], d[name], rtol=1e-4, atol=1e-5)
