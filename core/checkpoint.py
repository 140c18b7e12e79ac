"""The run folder: everything needed to translate with, inspect, or continue a model.

    config.json         format version, run config, languages, directions, training summary
    model.safetensors   the selected weights (best on validation, or their average)
    spm.model           the shared SentencePiece vocabulary
    metrics.jsonl       one event per line: steps, validations, end of run
    README.md           model card
    last.safetensors    latest weights  ┐ only while a run can be resumed
    training_state.pt   optimizer etc.  ┘ (loaded with weights_only=True: tensors, no code)

Every write goes to a temporary file in the same folder, is flushed to disk, then renamed over
the target: a crash mid-write leaves the previous file intact, never a half-written one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
CONFIG, WEIGHTS, TOKENIZER, METRICS, CARD = "config.json", "model.safetensors", "spm.model", "metrics.jsonl", "README.md"
LAST_WEIGHTS, TRAINING_STATE = "last.safetensors", "training_state.pt"
REQUIRED_FILES = (CONFIG, WEIGHTS, TOKENIZER)


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded, with a message naming the file."""


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp alone makes private (0600) files


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    os.chmod(temporary, FILE_MODE)
    try:
        write(Path(temporary))
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_bytes(path: Path, data: bytes) -> None:
    _atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def save_weights(state: dict[str, torch.Tensor], path: Path, dtype: torch.dtype | None = None) -> None:
    tensors = {name: (t.to(dtype) if dtype and t.is_floating_point() else t).detach().cpu().contiguous() for name, t in state.items()}
    _atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format_version": str(FORMAT_VERSION)}))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Weights from safetensors (a plain tensor format: loading can never run code), as float32."""
    if not path.exists():
        raise CheckpointError(f"{path}: missing weights file")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: corrupt or truncated weights file ({error})") from error
    return {name: t.float() if t.is_floating_point() else t for name, t in tensors.items()}


def save_training_state(state: dict[str, Any], path: Path) -> None:
    _atomic(path, lambda tmp: torch.save(state, tmp))


def load_training_state(path: Path) -> dict[str, Any]:
    """`weights_only=True` refuses anything but tensors and plain containers: a planted pickle
    that would run code is rejected instead of executed."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for bad or unsafe pickles
        raise CheckpointError(f"{path}: cannot load training state safely ({type(error).__name__}: {error})") from error


def read_config(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    missing = [name for name in REQUIRED_FILES if not (folder / name).exists()]
    if missing:
        raise CheckpointError(f"{folder}: not a complete checkpoint, missing {', '.join(missing)}")
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{folder / CONFIG}: unreadable ({error})") from error
    version = config.get("format_version") if isinstance(config, dict) else None
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{folder / CONFIG}: format version {version!r}, this code reads version {FORMAT_VERSION}; retrain or convert the checkpoint"
        )
    return config


def append_metrics(folder: Path, records: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl with all records so far (atomic, so a reader never sees half a line)."""
    write_text(folder / METRICS, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_metrics(folder: Path) -> list[dict[str, Any]]:
    path = Path(folder) / METRICS
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a foreign or hand-edited line must not hide the rest
    return records


def is_checkpoint(folder: Path) -> bool:
    return all((folder / name).exists() for name in REQUIRED_FILES)


RESERVED_NAMES = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


def check_run_name(name: str) -> str:
    """A run name typed by a user becomes one folder under checkpoints/: letters, digits, '.', '_'
    and '-', not starting with a dot, at most 64 characters — never a path or a reserved name."""
    stripped = name.strip()
    allowed = stripped and len(stripped) <= 64 and all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in stripped)
    if not allowed or stripped.startswith(".") or ".." in stripped or stripped.lower().split(".")[0] in RESERVED_NAMES:
        raise ValueError(f"Invalid run name {name!r}: use up to 64 letters, digits, '.', '_' or '-' (no paths, no leading dot)")
    return stripped


def check_run_folder(folder: Path, resume: bool = False) -> None:
    """Refuse to start a new run over an existing one: a trained model is never overwritten."""
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder} exists and is not a folder")
    if not resume and (folder / CONFIG).exists():
        raise CheckpointError(f"{folder} already holds a run; pass --resume to continue it or choose another --out")
