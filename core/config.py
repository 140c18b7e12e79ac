"""Run configuration as plain dataclasses: one `RunConfig` drives a whole training run.

A run's config is written to `config.json` in its folder, so every checkpoint says exactly how
it was made, and `python -m core train --config FILE` replays it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class ModelConfig:
    """Encoder-decoder Transformer size (Vaswani et al. 2017 names)."""

    vocab_size: int = 8000
    d_model: int = 256
    n_heads: int = 4
    d_ff: int = 1024
    n_encoder_layers: int = 3
    n_decoder_layers: int = 3
    dropout: float = 0.1
    attention_dropout: float = 0.0
    max_positions: int = 256
    positions: str = "sinusoidal"  # "sinusoidal" or "learned"

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.positions not in ("sinusoidal", "learned"):
            raise ValueError(f"positions must be 'sinusoidal' or 'learned', not {self.positions!r}")


@dataclass
class DataConfig:
    """Which corpus, which languages and directions, and how to tokenize them."""

    source: str = "builtin"  # "builtin", "multi30k", "multi30k:DIR", "FILE.tsv" or "A.txt,B.txt"
    languages: list[str] = field(default_factory=list)  # empty: every language of the corpus
    directions: str = "all"  # "all", "en-centric", or "en-de,de-en,..."
    vocab_size: int = 8000
    tokenizer_type: str = "unigram"  # "unigram" or "bpe"
    max_tokens_per_sentence: int = 128  # longer training pairs are skipped
    tokenizer_sentences_per_language: int = 30000


@dataclass
class TrainConfig:
    """Optimisation, schedule, validation and checkpointing."""

    steps: int = 2000
    tokens_per_batch: int = 4096  # source + target tokens, padding included
    accumulation: int = 1
    lr: float = 1e-3
    warmup_steps: int = 400
    schedule: str = "inverse_sqrt"  # "inverse_sqrt" or "cosine"
    min_lr_ratio: float = 0.0  # cosine floor, as a fraction of lr
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    label_smoothing: float = 0.1
    clip_norm: float = 1.0
    temperature: float = 5.0  # direction sampling: p(d) ∝ size(d) ** (1 / temperature)
    eval_every: int = 500
    eval_sentences: int = 100  # per direction, greedy BLEU on the validation split
    save_every: int = 500
    log_every: int = 10
    patience: int = 0  # validations without improvement before stopping; 0 = never stop early
    average_last: int = 0  # average the weights of the last N best checkpoints into the final model
    max_minutes: float = 0.0  # stop (and finish normally) after this much training time; 0 = no limit
    bf16: bool = False  # bfloat16 autocast for matmuls (much faster on CPUs with AVX512-BF16 or AMX)
    seed: int = 1
    threads: int = 0  # torch threads; 0 = all cores
    device: str = "auto"  # "auto" (CUDA, else MPS, else CPU), or e.g. "cpu", "cuda:1"


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = "small"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"Unknown config sections: {sorted(unknown)}")
        train = dict(raw.get("train", {}))
        if "betas" in train:
            train["betas"] = tuple(train["betas"])
        return cls(
            model=_build(ModelConfig, raw.get("model", {})),
            data=_build(DataConfig, raw.get("data", {})),
            train=_build(TrainConfig, train),
            preset=raw.get("preset", "custom"),
        )

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"Cannot read config {path}: {error}") from error
        # A run folder's config.json wraps the run config with what the run produced.
        return cls.from_dict(raw["run"] if "run" in raw and "format_version" in raw else raw)


def _build(kind: type, values: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"Unknown {kind.__name__} fields: {sorted(unknown)}")
    return kind(**values)


# Presets. `tiny` trains in minutes on a laptop CPU (tests, classrooms), `small` is the shipped
# Multi30K model, `base` is the Transformer-base shape for real GPUs.
PRESETS: dict[str, RunConfig] = {
    "tiny": RunConfig(
        preset="tiny",
        model=ModelConfig(vocab_size=1000, d_model=128, n_heads=4, d_ff=512,
                          n_encoder_layers=2, n_decoder_layers=2, dropout=0.0, max_positions=128),
        data=DataConfig(vocab_size=1000),
        train=TrainConfig(steps=600, tokens_per_batch=4000, lr=4e-3, warmup_steps=100,
                          schedule="cosine", label_smoothing=0.1, eval_every=300,
                          eval_sentences=40, save_every=300, temperature=1.0),
    ),
    "small": RunConfig(
        preset="small",
        model=ModelConfig(vocab_size=8000, d_model=256, n_heads=4, d_ff=1024,
                          n_encoder_layers=3, n_decoder_layers=3, dropout=0.1),
        data=DataConfig(vocab_size=8000),
        train=TrainConfig(steps=20000, tokens_per_batch=6000, lr=1.5e-3, warmup_steps=800,
                          eval_every=1000, save_every=500, eval_sentences=100),
    ),
    "base": RunConfig(
        preset="base",
        model=ModelConfig(vocab_size=16000, d_model=512, n_heads=8, d_ff=2048,
                          n_encoder_layers=6, n_decoder_layers=6, dropout=0.1),
        data=DataConfig(vocab_size=16000),
        train=TrainConfig(steps=100000, tokens_per_batch=16000, lr=7e-4, warmup_steps=4000,
                          eval_every=2000, save_every=1000),
    ),
}


def preset(name: str) -> RunConfig:
    """A fresh copy of a preset, safe to modify."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return RunConfig.from_dict(PRESETS[name].to_dict())
