"""Polyglot Lab core: train, load, translate, evaluate and look inside a multilingual Transformer."""

from pathlib import Path

from core.config import ModelConfig, RunConfig, preset
from core.train import Trainer, train
from core.translator import Translator


def load(path: str | Path, device: str = "auto") -> Translator:
    """Load a run folder (config.json + model.safetensors + spm.model) into a Translator.

    "hf:owner/name" (a Hugging Face Hub id) or a folder holding a Transformers Marian/M2M100/NLLB
    model opens an `core.hf.HFTranslator` instead, with the same methods (transformers is imported then).
    """
    from core import hf

    if hf.is_hub_name(str(path)) or hf.is_hf_folder(path):
        return hf.load(path, device)  # type: ignore[return-value]
    return Translator.load(path, device)


__all__ = ["ModelConfig", "RunConfig", "Trainer", "Translator", "load", "preset", "train"]
