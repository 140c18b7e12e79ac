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
    assert [t.text for t in core.load(run).translate(lines, "en", "fr")] == \
        [t.text for t in tiny_translator.translate(lines, "en", "fr")]


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
        (lambda run: (run / "model.safetensors").write_bytes((run / "model.safetensors").read_bytes()[:1000]),
         "model.safetensors: corrupt or truncated"),
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


def test_sigkill_while_saving_keeps_previous_checkpoint(tmp_path: Path) -> None:
    """A process killed mid-write (in a loop of saves) never leaves a torn weights file."""
    target = tmp_path / "model.safetensors"
    checkpoint.save_weights({"w": torch.zeros(10)}, target)
    script = (
        "import torch, itertools\n"
        "from pathlib import Path\n"
        "from core import checkpoint\n"
        "for i in itertools.count(1):\n"
        f"    checkpoint.save_weights({{'w': torch.full((2_000_000,), float(i))}}, Path({str(target)!r}))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parent.parent)
    time.sleep(2.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    weights = checkpoint.load_weights(target)  # loads: either the first file or a complete later one
    assert weights["w"].unique().numel() == 1


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
