"""Helpers shared by tests."""

from __future__ import annotations

import os

from core.config import RunConfig, preset


def child_env() -> dict[str, str]:
    """The environment for a `python -m core` child process: this one's (so Python, CUDA and
    packages are found as here), minus POLYGLOT_* settings, with one OpenMP thread."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POLYGLOT_")}
    return env | {"OMP_NUM_THREADS": "1"}


def tiny_config(steps: int = 60, languages: tuple[str, ...] = ("en", "de", "fr")) -> RunConfig:
    """The tiny preset shrunk further so a run takes seconds; still a real Transformer."""
    config = preset("tiny")
    config.data.languages = list(languages)
    config.data.vocab_size = 400
    config.model.d_model, config.model.d_ff, config.model.n_heads = 64, 128, 4
    config.model.n_encoder_layers = config.model.n_decoder_layers = 1
    config.train.steps, config.train.warmup_steps = steps, 10
    config.train.tokens_per_batch = 1500
    config.train.eval_every = config.train.save_every = steps // 2
    config.train.eval_sentences = 8
    config.train.log_every = 5
    config.train.threads = 1
    return config


def skip_unless_ci(reason: str) -> None:
    """Skip a test whose prerequisite (data, a browser) is missing, except under CI=true where the
    missing prerequisite is a failure: CI must run every test, never skip one silently."""
    import pytest

    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: these tests must run, not skip)")
    pytest.skip(reason)


def require_multi30k():
    """The Multi30K folder; without it the test is skipped locally and fails under CI=true."""
    from core import corpus

    folder = corpus.find_multi30k()
    if folder is None:
        skip_unless_ci("Multi30K not found: set POLYGLOT_MULTI30K to a folder with train.en.gz etc.")
    return folder


def outcome_of(call) -> BaseException | None:
    """What `call()` raised, pytest's skip and fail outcomes included (None if nothing), so a test
    can check that a skip did not happen where a failure was due (a skip would just skip the test)."""
    try:
        call()
    except BaseException as raised:  # noqa: BLE001 - skip/fail outcomes are BaseExceptions
        return raised
    return None
