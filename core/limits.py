"""Caps on what one request may ask for, so a public Space cannot be exhausted by one visitor.

Locally everything is generous. With `POLYGLOT_HOSTED=1` (set it in a Hugging Face Space's
settings) the caps shrink to what a free 2-vCPU machine can serve to a classroom at once.
The UI shows the caps in force; `check_*` raise ValueError with a message for the user.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from core.config import RunConfig


@dataclass(frozen=True)
class Limits:
    hosted: bool
    max_train_steps: int
    max_d_model: int
    max_layers: int
    max_tokens_per_batch: int
    max_upload_mb: float
    max_input_chars: int
    max_input_lines: int
    max_beam: int
    max_candidates: int
    max_eval_sentences: int

    def describe(self) -> str:
        mode = "Hosted mode" if self.hosted else "Local mode"
        return (f"{mode}: training ≤ {self.max_train_steps} steps, d_model ≤ {self.max_d_model}, ≤ {self.max_layers} layers, "
                f"≤ {self.max_tokens_per_batch} tokens per batch, "
                f"uploads ≤ {self.max_upload_mb:g} MB, input ≤ {self.max_input_chars} characters / {self.max_input_lines} lines, "
                f"beam ≤ {self.max_beam}, ≤ {self.max_candidates} samples, evaluation ≤ {self.max_eval_sentences} sentences per direction")

    def to_dict(self) -> dict:
        return asdict(self)


LOCAL = Limits(hosted=False, max_train_steps=200_000, max_d_model=1024, max_layers=12, max_tokens_per_batch=64_000,
               max_upload_mb=50, max_input_chars=20_000, max_input_lines=1000, max_beam=16, max_candidates=32,
               max_eval_sentences=100_000)
HOSTED = Limits(hosted=True, max_train_steps=2000, max_d_model=256, max_layers=4, max_tokens_per_batch=8000,
                max_upload_mb=5, max_input_chars=2000, max_input_lines=50, max_beam=6, max_candidates=10,
                max_eval_sentences=200)


def current_limits() -> Limits:
    return HOSTED if os.environ.get("POLYGLOT_HOSTED", "").lower() in ("1", "true", "yes") else LOCAL


def check_training(config: RunConfig, limits: Limits | None = None) -> None:
    limits = limits or current_limits()
    model, train = config.model, config.train
    checks = [
        (train.steps <= limits.max_train_steps, f"at most {limits.max_train_steps} training steps"),
        (model.d_model <= limits.max_d_model, f"d_model at most {limits.max_d_model}"),
        (max(model.n_encoder_layers, model.n_decoder_layers) <= limits.max_layers, f"at most {limits.max_layers} layers"),
        (train.tokens_per_batch <= limits.max_tokens_per_batch, f"at most {limits.max_tokens_per_batch} tokens per batch"),
    ]
    _raise_first(checks, limits)


def check_text(text: str, limits: Limits | None = None) -> None:
    limits = limits or current_limits()
    _raise_first([
        (len(text) <= limits.max_input_chars, f"at most {limits.max_input_chars} characters of input ({len(text)} given)"),
        (text.count("\n") < limits.max_input_lines, f"at most {limits.max_input_lines} lines of input"),
    ], limits)


def check_search(beam_size: int = 1, candidates: int = 1, limits: Limits | None = None) -> None:
    limits = limits or current_limits()
    _raise_first([
        (beam_size <= limits.max_beam, f"a beam of at most {limits.max_beam}"),
        (candidates <= limits.max_candidates, f"at most {limits.max_candidates} candidates"),
    ], limits)


def check_upload_size(size_bytes: int, name: str, limits: Limits | None = None) -> None:
    limits = limits or current_limits()
    if size_bytes > limits.max_upload_mb * 1e6:
        raise ValueError(f"{name}: {size_bytes / 1e6:.1f} MB is over the {limits.max_upload_mb:g} MB upload limit")


def _raise_first(checks: list[tuple[bool, str]], limits: Limits) -> None:
    for ok, allowed in checks:
        if not ok:
            mode = "this hosted app" if limits.hosted else "this app"
            raise ValueError(f"Too large for {mode}: {allowed} please.")
