"""Real training runs on the built-in corpus: the loss falls, runs resume exactly, cancel keeps a model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import core
from core import checkpoint
from core.batching import BatchStream, direction_probabilities
from core.train import Trainer, learning_rate, train
from tests.helpers import tiny_config


def test_training_lowers_the_loss(tiny_checkpoint: Path) -> None:
    records = checkpoint.read_metrics(tiny_checkpoint)
    losses = [r["loss"] for r in records if r["event"] == "step"]
    assert len(losses) >= 10
    assert losses[-1] < 0.7 * losses[0]
    valid = [r for r in records if r["event"] == "valid"]
    assert valid[-1]["valid_loss"] < valid[0]["valid_loss"]
    assert set(valid[-1]["bleu"]) == {"en-de", "en-fr", "de-en", "de-fr", "fr-en", "fr-de"}
    assert records[-1]["event"] == "done"


def test_run_folder_is_complete(tiny_checkpoint: Path) -> None:
    for name in ("config.json", "model.safetensors", "spm.model", "metrics.jsonl", "README.md",
                 "last.safetensors", "training_state.pt"):
        assert (tiny_checkpoint / name).exists(), name
    card = (tiny_checkpoint / "README.md").read_text()
    assert "Parameters" in card and "en-de" in card


def test_cancel_then_resume_equals_uninterrupted_run(tmp_path: Path, builtin_corpus) -> None:
    """Exact resume: same weights (bitwise on CPU), same schedule, same data order."""
    config = tiny_config(steps=24)
    config.train.save_every, config.train.eval_every = 8, 12
    config.model.dropout = 0.1  # dropout makes the RNG state part of what must be restored
    straight = train(config, tmp_path / "straight", corpus=builtin_corpus)
    assert straight.status == "done"

    stopped_at = []

    def cancel_at_ten(event: dict) -> None:
        if event["event"] == "step" and event["step"] == 10:
            stopped_at.append(event["step"])
            trainer.cancel()

    trainer = Trainer(tiny_config(steps=24), tmp_path / "resumed", corpus=builtin_corpus, listeners=[cancel_at_ten])
    trainer.config.train.save_every, trainer.config.train.eval_every = 8, 12
    trainer.config.model.dropout = 0.1
    cancelled = trainer.run()
    assert cancelled.status == "cancelled" and cancelled.step == 10 and stopped_at
    core.load(tmp_path / "resumed")  # a cancelled run leaves a usable model

    config = tiny_config(steps=24)
    config.train.save_every, config.train.eval_every = 8, 12
    config.model.dropout = 0.1
    resumed = train(config, tmp_path / "resumed", corpus=builtin_corpus, resume=True)
    assert resumed.status == "done" and resumed.step == 24

    a = checkpoint.load_weights(tmp_path / "straight" / checkpoint.LAST_WEIGHTS)
    b = checkpoint.load_weights(tmp_path / "resumed" / checkpoint.LAST_WEIGHTS)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    steps = [r for r in checkpoint.read_metrics(tmp_path / "resumed") if r["event"] == "step"]
    assert [r["step"] for r in steps] == sorted({r["step"] for r in steps})  # no step logged twice


def test_batch_stream_resumes_at_the_same_batch(builtin_corpus) -> None:
    encoded = {"en": [[5, 6, 7]] * 50 + [[8, 9]] * 50, "de": [[10, 11]] * 100}
    make = lambda: BatchStream(encoded, ["en-de", "de-en"], {"en": 3, "de": 4}, 200, 1.0, seed=3,  # noqa: E731
                               max_tokens_per_sentence=64)
    whole = make()
    batches = iter(whole)
    first = [next(batches) for _ in range(30)]
    resumed = make()
    partial = iter(resumed)
    for _ in range(12):
        next(partial)
    state = resumed.state()
    fresh = make()
    fresh.load_state(state)
    rest = iter(fresh)
    for expected in first[12:]:
        got = next(rest)
        assert torch.equal(got.source, expected.source) and torch.equal(got.target_out, expected.target_out)


def test_temperature_sampling_flattens_direction_sizes() -> None:
    sizes = {"en-de": 10000, "en-cs": 100}
    natural = direction_probabilities(sizes, 1.0)
    flat = direction_probabilities(sizes, 100.0)
    assert natural["en-cs"] == pytest.approx(100 / 10100)
    assert natural["en-cs"] < flat["en-cs"] < 0.5


def test_held_out_directions_never_reach_training_batches(builtin_corpus) -> None:
    from core.tokenizer import Tokenizer

    train_lines = builtin_corpus.split("train")
    tokenizer = Tokenizer.train({k: train_lines[k][:500] for k in ("en", "de", "fr")}, 300)
    encoded = {lang: tokenizer.encode_batch(train_lines[lang][:300]) for lang in ("en", "de", "fr")}
    stream = BatchStream(encoded, ["en-de", "de-en", "en-fr", "fr-en"], tokenizer.tag_ids, 2000, 1.0, 1, 64)
    batches = iter(stream)
    fr_tag, de_tag = tokenizer.tag_id("fr"), tokenizer.tag_id("de")
    en_ids = {tuple([tokenizer.tag_id(t), *s, 3]) for t in ("de", "fr") for s in encoded["en"]}
    for _ in range(20):
        batch = next(batches)
        for row in batch.source.tolist():
            ids = tuple(i for i in row if i != 0)
            if ids[0] in (fr_tag, de_tag):
                # Only English sources may ask for de or fr: de→fr and fr→de are held out.
                assert ids in en_ids


def test_learning_rate_schedules() -> None:
    config = tiny_config().train
    config.warmup_steps, config.steps, config.lr = 10, 100, 1.0
    assert learning_rate(5, config) == pytest.approx(0.5)
    config.schedule = "inverse_sqrt"
    assert learning_rate(40, config) == pytest.approx(0.5)
    config.schedule = "cosine"
    assert learning_rate(10, config) == pytest.approx(1.0)
    assert learning_rate(100, config) == pytest.approx(0.0, abs=1e-9)
