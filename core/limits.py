"""Caps on what one request may ask for, so a public Space cannot be exhausted by one visitor.

Locally everything is generous. With `POLYGLOT_HOSTED=1` (set it in a Hugging Face Space's
settings) the caps shrink to what a free 2-vCPU machine can serve to a classroom at once.
The UI shows the caps in force; `check_*` raise ValueError with a message for the user.

A hosted app also runs for weeks: `Retention` says how many visitor runs it keeps, how much disk
they may take and for how long (environment variables, safe defaults); `core.hosting` enforces it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass

from core.config import RunConfig

log = logging.getLogger(__name__)


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
        return (
            f"{mode}: training ≤ {self.max_train_steps} steps, d_model ≤ {self.max_d_model}, ≤ {self.max_layers} layers, "
            f"≤ {self.max_tokens_per_batch} tokens per batch, "
            f"uploads ≤ {self.max_upload_mb:g} MB, input ≤ {self.max_input_chars} characters / {self.max_input_lines} lines, "
            f"beam ≤ {self.max_beam}, ≤ {self.max_candidates} samples, evaluation ≤ {self.max_eval_sentences} sentences per direction"
            + (f". {current_retention().describe()}" if self.hosted else "")
        )

    def to_dict(self) -> dict:
        return asdict(self)


LOCAL = Limits(
    hosted=False,
    max_train_steps=200_000,
    max_d_model=1024,
    max_layers=12,
    max_tokens_per_batch=64_000,
    max_upload_mb=50,
    max_input_chars=20_000,
    max_input_lines=1000,
    max_beam=16,
    max_candidates=32,
    max_eval_sentences=100_000,
)
HOSTED = Limits(
    hosted=True,
    max_train_steps=2000,
    max_d_model=256,
    max_layers=4,
    max_tokens_per_batch=8000,
    max_upload_mb=5,
    max_input_chars=2000,
    max_input_lines=50,
    max_beam=6,
    max_candidates=10,
    max_eval_sentences=200,
)


MAX_RUNS_ENV, MAX_GB_ENV, KEEP_DAYS_ENV = "POLYGLOT_MAX_VISITOR_RUNS", "POLYGLOT_MAX_VISITOR_GB", "POLYGLOT_KEEP_DAYS"


@dataclass(frozen=True)
class Retention:
    """What a hosted app keeps of its visitors' runs (shipped models and a run in progress are never removed)."""

    max_runs: int = 20  # visitor runs kept in all; the oldest finished ones go first
    max_gb: float = 2.0  # disk those runs may take together
    keep_days: float = 7.0  # a finished run older than this is removed

    def describe(self) -> str:
        return (
            f"Each visitor's runs are theirs alone (tied to their browser) and keep their model, metrics and card, "
            f"not their resume state; the app keeps at most {self.max_runs} visitor runs and {self.max_gb:g} GB, "
            f"each for at most {self.keep_days:g} days, removing the oldest finished runs first; "
            f"uploaded files are deleted once read"
        )


def _env_number(name: str, default: float, minimum: float) -> float:
    """$name as a number ≥ minimum; anything else (unset, not a number, too small) gives the default."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= minimum:  # also catches nan
        log.warning("%s=%r is not a number ≥ %g; using %g", name, text, minimum, default)
        return default
    return value


def current_retention() -> Retention:
    """The retention in force, from $POLYGLOT_MAX_VISITOR_RUNS, $POLYGLOT_MAX_VISITOR_GB and
    $POLYGLOT_KEEP_DAYS (read at every call; a bad value falls back to the default)."""
    default = Retention()
    return Retention(
        max_runs=int(_env_number(MAX_RUNS_ENV, default.max_runs, 1)),
        max_gb=_env_number(MAX_GB_ENV, default.max_gb, 0.001),
        keep_days=_env_number(KEEP_DAYS_ENV, default.keep_days, 0.0001),
    )


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
    _raise_first(
        [
            (len(text) <= limits.max_input_chars, f"at most {limits.max_input_chars} characters of input ({len(text)} given)"),
            (text.count("\n") < limits.max_input_lines, f"at most {limits.max_input_lines} lines of input"),
        ],
        limits,
    )


def check_search(beam_size: int = 1, candidates: int = 1, limits: Limits | None = None) -> None:
    limits = limits or current_limits()
    _raise_first(
        [
            (beam_size <= limits.max_beam, f"a beam of at most {limits.max_beam}"),
            (candidates <= limits.max_candidates, f"at most {limits.max_candidates} candidates"),
        ],
        limits,
    )


def check_upload_size(size_bytes: int, name: str, limits: Limits | None = None) -> None:
    limits = limits or current_limits()
    if size_bytes > limits.max_upload_mb * 1e6:
        raise ValueError(f"{name}: {size_bytes / 1e6:.1f} MB is over the {limits.max_upload_mb:g} MB upload limit")


def _raise_first(checks: list[tuple[bool, str]], limits: Limits) -> None:
    for ok, allowed in checks:
        if not ok:
            mode = "this hosted app" if limits.hosted else "this app"
            raise ValueError(f"Too large for {mode}: {allowed} please.")
