"""Polyglot Lab core: train, load, translate, evaluate and look inside a multilingual Transformer."""

from pathlib import Path

from core.config import ModelConfig, RunConfig, preset
from core.train import Trainer, train
from core.translator import Translator


def load(path: str | Path, device: str = "auto") -> Translator:
    """Load a run folder (config.json + model.safetensors + spm.model) into a Translator."""
    return Translator.load(path, device)


__all__ = ["ModelConfig", "RunConfig", "Trainer", "Translator", "load", "preset", "train"]
