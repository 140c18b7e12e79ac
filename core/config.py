"""Run configuration as plain dataclasses: one `RunConfig` drives a whole training run.

A run's config is written to `config.json` in its folder, so every checkpoint says exactly how
it was made, and `python -m core train --config FILE` replays it. Every setting has one home:
`RunConfig.with_overrides` is the one way the CLI and the app change a config, and the checks
of each section live in its `__post_init__`, so a bad value is refused however it arrives.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEDULES = ("inverse_sqrt", "cosine")
TOKENIZER_TYPES = ("unigram", "bpe")
POSITIONS = ("sinusoidal", "learned")
FREEZABLE = ("embeddings", "encoder")


@dataclass
class ModelConfig:
    """Encoder-decoder Transformer size (Vaswani et al. 2017 names)."""

    # Not a setting: the embedding and output layers have one row per piece of the tokenizer,
    # `len(tokenizer)`. SentencePiece may give fewer pieces than `DataConfig.vocab_size` asks
    # for on a small corpus, so the size is known only once the tokenizer exists; the Trainer
    # fills it in the config it returns and writes to config.json, from which a run folder's
    # model is rebuilt. 0: not known yet (a config that has not been trained).
    vocab_size: int = 0
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
        _at_least(self, 0, "vocab_size")
        _at_least(self, 1, "d_model", "n_heads", "d_ff", "n_encoder_layers", "n_decoder_layers", "max_positions")
        _fraction(self, "dropout", "attention_dropout")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        _one_of(self, "positions", POSITIONS)


@dataclass
class DataConfig:
    """Which corpus, which languages and directions, and how to tokenize them."""

    source: str = "builtin"  # "builtin", "multi30k", "multi30k:DIR", "FILE.tsv" or "A.txt,B.txt"
    languages: list[str] = field(default_factory=list)  # empty: every language of the corpus
    directions: str = "all"  # "all", "en-centric", or "en-de,de-en,..."
    vocab_size: int = 8000  # pieces asked of SentencePiece (the model gets what it gives: ModelConfig.vocab_size)
    tokenizer_type: str = "unigram"  # "unigram" or "bpe"
    max_tokens_per_sentence: int = 128  # longer training pairs are skipped
    tokenizer_sentences_per_language: int = 30000
    new_language_pieces: int = 2000  # fine-tuning into a new language: size of the vocabulary learned for it

    def __post_init__(self) -> None:
        _at_least(self, 1, "vocab_size", "max_tokens_per_sentence", "tokenizer_sentences_per_language", "new_language_pieces")
        _one_of(self, "tokenizer_type", TOKENIZER_TYPES)


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
    # How often each direction is drawn: p(d) ∝ size(d) ** (1 / T). 1: in proportion to its
    # data; higher: more even, so small directions are seen more often. Not the decoding temperature.
    direction_temperature: float = 5.0
    eval_every: int = 500
    eval_sentences: int = 100  # per direction, greedy BLEU on the validation split
    save_every: int = 500
    log_every: int = 10
    patience: int = 0  # validations without improvement before stopping; 0 = never stop early
    # Average the weights of the last N validations (best or not); the average becomes the final
    # model only if it validates better than the best single checkpoint. 0 or 1 = no averaging.
    average_last: int = 0
    max_minutes: float = 0.0  # stop (and finish normally) after this much training time; 0 = no limit
    bf16: bool = False  # bfloat16 autocast for matmuls (much faster on CPUs with AVX512-BF16 or AMX)
    seed: int = 1
    threads: int = 0  # torch threads; 0 = all cores
    device: str = "auto"  # "auto" (CUDA, else MPS, else CPU), or e.g. "cpu", "cuda:1"
    # Fine-tuning (core.finetune): start from this run folder's weights and tokenizer instead of
    # from scratch, with a fresh optimizer and schedule. "" = from scratch.
    init_from: str = ""
    freeze: list[str] = field(default_factory=list)  # of FREEZABLE: these parts keep the starting weights
    replay: float = 0.0  # share of batches drawn from the starting model's own directions, against forgetting

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # JSON gives a list
        _at_least(self, 1, "steps", "tokens_per_batch", "accumulation", "eval_every", "eval_sentences", "save_every", "log_every")
        _at_least(self, 0, "warmup_steps", "patience", "average_last", "max_minutes", "threads", "weight_decay", "clip_norm")
        for name in ("lr", "direction_temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"train.{name} must be positive, not {getattr(self, name)!r}")
        _fraction(self, "min_lr_ratio", "label_smoothing")
        _one_of(self, "schedule", SCHEDULES)
        unknown = [part for part in self.freeze if part not in FREEZABLE]
        if unknown:
            raise ValueError(f"train.freeze takes {' and '.join(FREEZABLE)}, not {unknown}")
        _fraction(self, "replay")
        if (self.freeze or self.replay) and not self.init_from:
            raise ValueError("train.freeze and train.replay apply to fine-tuning: set train.init_from too")


SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}

# Keys of older config.json files, read as their new names: {section: {old: new}}.
RENAMED = {"train": {"temperature": "direction_temperature"}}


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    preset: str = "small"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def copy(self) -> RunConfig:
        """A deep copy: changing it leaves this config as it was."""
        return RunConfig.from_dict(self.to_dict())

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        unknown = set(raw) - {*SECTIONS, "preset"}
        if unknown:
            raise ValueError(f"Unknown config sections: {sorted(unknown)}")
        sections = {name: _build(kind, _migrate(name, raw.get(name, {}))) for name, kind in SECTIONS.items()}
        return cls(**sections, preset=raw.get("preset", "custom"))

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"Cannot read config {path}: {error}") from error
        # A run folder's config.json wraps the run config with what the run produced.
        try:
            return cls.from_dict(raw["run"] if "run" in raw and "format_version" in raw else raw)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from error

    def with_overrides(self, **overrides: Any) -> RunConfig:
        """A copy with `overrides` applied and checked; this config is left as it was.

        Keys are field names, plain (`steps`, `lr`, `source`, …) or with their section
        (`train.steps`); `vocab_size` is the data's, the size asked of the tokenizer. Besides:
          - `layers` sets both `n_encoder_layers` and `n_decoder_layers`;
          - `d_model` also sets `d_ff` to 4 × d_model (the paper's ratio), unless `d_ff` is given;
          - `steps` also shortens `warmup_steps` to at most a fifth of the run, unless
            `warmup_steps` is given, so that a short run leaves its warm-up before it ends.
        `languages` takes a list or "en,de,fr". Values are converted where nothing is lost
        (10.0 → 10 steps, "3" is refused). Raises ValueError naming the key for an unknown key,
        an empty value, or a value of the wrong type or out of range.
        """
        changes: dict[tuple[str, str], str] = {}  # (section, field) → the key that sets it
        raw = self.to_dict()
        for key, value in overrides.items():
            for section, name in _field_paths(key):
                if (section, name) in changes:
                    raise ValueError(f"{changes[section, name]} and {key} both set {section}.{name}: give one")
                changes[section, name] = key
                raw[section][name] = _convert(SECTIONS[section], name, key, value)
        model, train = raw["model"], raw["train"]
        if ("model", "d_model") in changes and ("model", "d_ff") not in changes:
            model["d_ff"] = 4 * model["d_model"]
        if ("train", "steps") in changes and ("train", "warmup_steps") not in changes:
            train["warmup_steps"] = min(train["warmup_steps"], max(1, train["steps"] // 5))
        return RunConfig.from_dict(raw)


# Short names that are not a field's own.
ALIASES = {"layers": (("model", "n_encoder_layers"), ("model", "n_decoder_layers"))}
DERIVED = {("model", "vocab_size"): "it is the tokenizer's size; set data.vocab_size (or vocab_size) instead"}


def _field_paths(key: str) -> tuple[tuple[str, str], ...]:
    """The (section, field) pairs that an override key sets."""
    if key in ALIASES:
        return ALIASES[key]
    if "." in key:
        section, _, name = key.partition(".")
        if section not in SECTIONS or name not in _names(SECTIONS[section]):
            raise ValueError(f"Unknown config key {key!r}")
        path = (section, name)
    else:
        owners = [section for section, kind in SECTIONS.items() if key in _names(kind)]
        if not owners:
            known = sorted({*ALIASES, *(name for kind in SECTIONS.values() for name in _names(kind))})
            raise ValueError(f"Unknown config key {key!r}; known keys: {', '.join(known)}")
        path = ("data", key) if key == "vocab_size" else (owners[0], key)
    if path in DERIVED:
        raise ValueError(f"{key} cannot be set: {DERIVED[path]}")
    return (path,)


def _names(kind: type) -> set[str]:
    return {f.name for f in dataclasses.fields(kind)}


def _convert(kind: type, name: str, key: str, value: Any) -> Any:
    """`value` as the type of `kind.name`, or a ValueError naming `key`."""
    hint = typing.get_type_hints(kind)[name]
    expected = {int: "a whole number", float: "a number", str: "a non-empty string", bool: "true or false"}.get(hint, str(hint))
    if value is None:
        raise ValueError(f"{key} needs a value")
    if hint is bool and isinstance(value, bool):
        return value
    if not isinstance(value, bool):  # True is an int to Python, never a number of steps here
        if hint is int and isinstance(value, int | float) and float(value).is_integer():
            return int(value)
        if hint is float and isinstance(value, int | float):
            return float(value)
        if hint is str and isinstance(value, str) and value.strip():
            return value.strip()
        if hint == list[str]:
            items = value.split(",") if isinstance(value, str) else value
            if isinstance(items, list | tuple) and all(isinstance(item, str) for item in items):
                return [item.strip() for item in items if item.strip()]
            expected = "a list of strings or a comma-separated string"
        if hint == tuple[float, float]:
            if isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
                return tuple(float(v) for v in value)
            expected = "two numbers"
    raise ValueError(f"{key} must be {expected}, not {value!r}")


def _build(kind: type, values: dict[str, Any]) -> Any:
    unknown = set(values) - _names(kind)
    if unknown:
        raise ValueError(f"Unknown {kind.__name__} fields: {sorted(unknown)}")
    return kind(**values)


def _migrate(section: str, values: dict[str, Any]) -> dict[str, Any]:
    """A section of an older config.json with its keys renamed to today's names."""
    values = dict(values)
    for old, new in RENAMED.get(section, {}).items():
        if old in values:
            if new in values:
                raise ValueError(f"{section}.{old} is the old name of {section}.{new}: give only one")
            values[new] = values.pop(old)
    return values


def _at_least(config: Any, low: float, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value < low:
            raise ValueError(f"{name} must be at least {low}, not {value!r}")


def _fraction(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), not {value!r}")


def _one_of(config: Any, name: str, choices: tuple[str, ...]) -> None:
    value = getattr(config, name)
    if value not in choices:
        raise ValueError(f"{name} must be {' or '.join(repr(c) for c in choices)}, not {value!r}")


# Presets. `tiny` trains in minutes on a laptop CPU (tests, classrooms), `small` is the shipped
# Multi30K model, `base` is the Transformer-base shape for real GPUs.
PRESETS: dict[str, RunConfig] = {
    "tiny": RunConfig(
        preset="tiny",
        model=ModelConfig(d_model=128, n_heads=4, d_ff=512, n_encoder_layers=2, n_decoder_layers=2, dropout=0.0, max_positions=128),
        data=DataConfig(vocab_size=1000),
        train=TrainConfig(
            steps=600,
            tokens_per_batch=4000,
            lr=4e-3,
            warmup_steps=100,
            schedule="cosine",
            label_smoothing=0.1,
            eval_every=300,
            eval_sentences=40,
            save_every=300,
            direction_temperature=1.0,
        ),
    ),
    "small": RunConfig(
        preset="small",
        model=ModelConfig(d_model=256, n_heads=4, d_ff=1024, n_encoder_layers=3, n_decoder_layers=3, dropout=0.1),
        data=DataConfig(vocab_size=8000),
        train=TrainConfig(
            steps=20000, tokens_per_batch=6000, lr=1.5e-3, warmup_steps=800, eval_every=1000, save_every=500, eval_sentences=100
        ),
    ),
    "base": RunConfig(
        preset="base",
        model=ModelConfig(d_model=512, n_heads=8, d_ff=2048, n_encoder_layers=6, n_decoder_layers=6, dropout=0.1),
        data=DataConfig(vocab_size=16000),
        train=TrainConfig(steps=100000, tokens_per_batch=16000, lr=7e-4, warmup_steps=4000, eval_every=2000, save_every=1000),
    ),
}


def preset(name: str) -> RunConfig:
    """A fresh copy of a preset, safe to modify."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name].copy()
