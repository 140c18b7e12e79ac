"""Checkpoints: round trip, safe loading, clear errors, atomic writes under SIGKILL."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import core
from core import checkpoint
from core.checkpoint import CheckpointError, check_run_name


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def test_round_trip_gives_identical_translations(tiny_checkpoint: Path, tiny_translator) -> None:
    again = core.load(tiny_checkpoint)
    lines = ["The dog runs.", "Two cats sleep in the park."]
    assert [t.text for t in again.translate(lines, "en", "de")] == [t.text for t in tiny_translator.translate(lines, "en", "de")]
    for name, tensor in again.model.state_dict().items():
        assert torch.equal(tensor, tiny_translator.model.state_dict()[name])


def test_float16_storage_keeps_translations(tiny_checkpoint: Path, tiny_translator, tmp_path: Path) -> None:
    run = copy_run(tiny_checkpoint, tmp_path / "half")
    checkpoint.save_weights(checkpoint.load_weights(run / checkpoint.WEIGHTS), run / checkpoint.WEIGHTS, torch.float16)
    assert (run / checkpoint.WEIGHTS).stat().st_size < 0.6 * (tiny_checkpoint / checkpoint.WEIGHTS).stat().st_size
    lines = ["The dog runs.", "The old woman reads a book."]
    assert [t.text for t in core.load(run).translate(lines, "en", "fr")] == [t.text for t in tiny_translator.translate(lines, "en", "fr")]


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_planted_pickle_is_refused_without_running(tiny_checkpoint: Path, tmp_path: Path, monkeypatch) -> None:
    run = copy_run(tiny_checkpoint, tmp_path / "evil")
    with open(run / checkpoint.TRAINING_STATE, "wb") as handle:
        pickle.dump({"step": Exploit()}, handle)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="training_state.pt: cannot load training state safely"):
        checkpoint.load_training_state(run / checkpoint.TRAINING_STATE)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda run: (run / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes()[:1000]),
            "model.safetensors: corrupt or truncated",
        ),
        (lambda run: (run / "model.safetensors").unlink(), "missing model.safetensors"),
        (lambda run: (run / "spm.model").write_bytes(b"garbage"), "spm.model: unreadable tokenizer"),
        (lambda run: (run / "config.json").write_text("{not json"), "config.json: unreadable"),
        (lambda run: (run / "config.json").write_text(json.dumps({"format_version": 99})), "format version 99"),
    ],
)
def test_damaged_checkpoints_give_clear_errors(tiny_checkpoint: Path, tmp_path: Path, damage, message: str) -> None:
    run = copy_run(tiny_checkpoint, tmp_path / "damaged")
    damage(run)
    with pytest.raises(CheckpointError, match=message):
        core.load(run)


def test_missing_folder() -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        core.load("/nonexistent/run")


SAVER = r"""
import itertools, os, sys, time
from pathlib import Path
import torch
from safetensors.torch import save
from core import checkpoint
torch.set_num_threads(1)
target, log = Path(sys.argv[1]), sys.argv[2]


def slow_save_file(tensors, filename, metadata=None):
    # What safetensors writes, in two halves with a pause between them, saying when it is halfway:
    # the parent can then kill the process while the file on disk is half written.
    data = save(tensors, metadata=metadata)
    with open(filename, "wb") as handle:
        handle.write(data[: len(data) // 2])
        handle.flush()
        os.write(report, f"mid {int(tensors['w'][0])}\n".encode())
        time.sleep(0.02)
        handle.write(data[len(data) // 2:])


assert callable(checkpoint.save_file)
checkpoint.save_file = slow_save_file
for line in sys.stdin:  # one line per trial: fork a saver that overwrites `target` until killed
    pid = os.fork()
    if pid == 0:
        try:
            report = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            for version in itertools.count(int(line)):
                checkpoint.save_weights({"w": torch.full((500_000,), float(version))}, target)
                os.write(report, f"done {version}\n".encode())  # only once save_weights has returned
        finally:
            os._exit(1)
    print(pid, flush=True)
    os.waitpid(pid, 0)
"""


def test_sigkill_while_saving_keeps_previous_checkpoint(tmp_path: Path) -> None:
    """A saver killed at random moments of a loop of saves (SIGKILL: no clean-up runs) always
    leaves a complete weights file: the last save it reported, or the one after it, never a torn one.

    Each trial saves versions of its own, so the file must have been rewritten during the trial.
    Every other trial kills the saver right after it reports being halfway through writing a
    file, so some kills surely land mid-write; a temporary file left behind confirms it."""
    import random

    target, log = tmp_path / "model.safetensors", tmp_path / "saved.log"
    checkpoint.save_weights({"w": torch.zeros(10)}, target)
    saver = subprocess.Popen(
        [sys.executable, "-c", SAVER, str(target), str(log)],
        cwd=Path(__file__).parent.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    rng = random.Random(14)
    trials, killed_mid_write, temporaries_left = 12, 0, 0

    def reports() -> list[tuple[str, int]]:
        return [(kind, int(version)) for kind, version in (line.split() for line in log.read_text().splitlines())]

    try:
        for trial in range(trials):
            log.write_text("")
            first = 1_000_000 * (trial + 1)
            saver.stdin.write(f"{first}\n")
            saver.stdin.flush()
            pid = int(saver.stdout.readline())
            deadline = time.monotonic() + 60
            while not any(kind == "done" for kind, _ in reports()):  # at least one save took place
                assert time.monotonic() < deadline, "the saver never finished a save"
                time.sleep(0.002)
            if trial % 2:  # kill while a file is half written
                seen = len(reports())
                while not any(kind == "mid" for kind, _ in reports()[seen:]):
                    assert time.monotonic() < deadline, "the saver never reported a write"
                    time.sleep(0.001)
            else:  # kill at a random moment
                time.sleep(rng.uniform(0.0, 0.1))
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)  # the saver's parent reaps it; what it wrote is in the page cache
            done = [version for kind, version in reports() if kind == "done"]
            assert done == list(range(first, first + len(done))), done
            killed_mid_write += reports()[-1][0] == "mid"
            weights = checkpoint.load_weights(target)  # a torn file would not even load
            values = weights["w"].unique()
            assert weights["w"].numel() == 500_000 and values.numel() == 1
            assert int(values.item()) in (done[-1], done[-1] + 1), (int(values.item()), done[-1])
            leftovers = list(tmp_path.glob(".model.safetensors.*.tmp"))
            temporaries_left += bool(leftovers)
            for leftover in leftovers:
                leftover.unlink()
    finally:
        saver.stdin.close()
        saver.wait(timeout=60)
    assert killed_mid_write >= trials // 2, killed_mid_write
    assert temporaries_left >= trials // 2, temporaries_left  # the kills interrupted real writes


@pytest.mark.parametrize("name", ["../evil", "/abs", "a/b", "a\\b", "", ".hidden", "nul", "CON.txt", "x" * 65, "a\x00b", "..", "ok..no"])
def test_bad_run_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="Invalid run name"):
        check_run_name(name)


def test_good_run_names() -> None:
    assert check_run_name(" my-run_2.v1 ") == "my-run_2.v1"


def test_new_run_never_overwrites_an_old_one(tiny_checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match="already holds a run"):
        checkpoint.check_run_folder(tiny_checkpoint)
    checkpoint.check_run_folder(tiny_checkpoint, resume=True)
