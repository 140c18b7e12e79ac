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
    for name in ("config.json", "model.safetensors", "spm.model", "metrics.jsonl", "README.md", "last.safetensors", "training_state.pt"):
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

    def make() -> BatchStream:
        return BatchStream(encoded, ["en-de", "de-en"], {"en": 3, "de": 4}, 200, 1.0, seed=3, max_tokens_per_sentence=64)

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


# --- checkpoint selection, early stopping, time limit ------------------------------------------


def _scripted_run(
    folder: Path, corpus, scores: list[float], steps: int = 20, patience: int = 0, average_last: int = 3
) -> tuple[object, list[dict], dict[int, dict]]:
    """A tiny run validated every 5 steps (and once more on the average of the last
    `average_last` validated weights), with the mean BLEU of each validation replaced by the next
    of `scores`, so which checkpoint wins is known in advance. Returns the result, the events,
    and the weights the model had at each validation."""
    config = tiny_config(steps=steps)
    config.train.eval_every = config.train.save_every = 5
    config.train.average_last, config.train.patience, config.train.max_minutes = average_last, patience, 0
    events: list[dict] = []
    weights: dict[int, dict] = {}

    def listen(event: dict) -> None:
        events.append(event)
        if event["event"] == "valid" and not event.get("averaged"):
            weights[event["step"]] = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}

    trainer = Trainer(config, folder, corpus=corpus, listeners=[listen])
    validate, scripted = trainer.validate, iter(scores)

    def scripted_validate() -> dict:
        return {**validate(), "mean_bleu": next(scripted)}

    trainer.validate = scripted_validate
    result = trainer.run()
    assert next(scripted, None) is None  # every score was used
    return result, events, weights


def test_the_average_of_the_last_checkpoints_is_kept_when_it_validates_better(tmp_path: Path, builtin_corpus) -> None:
    result, events, weights = _scripted_run(tmp_path / "run", builtin_corpus, [5.0, 9.0, 7.0, 8.0, 10.0])
    assert result.status == "done" and result.best_bleu == 10.0
    saved = [(e["step"], e["kind"]) for e in events if e["event"] == "checkpoint"]
    assert saved == [(5, "best"), (10, "best"), (20, "average")]
    assert [e["averaged"] for e in events if e.get("averaged")] == [3]
    kept = checkpoint.load_weights(tmp_path / "run" / checkpoint.WEIGHTS)
    for name, tensor in kept.items():
        average = torch.stack([weights[step][name].float() for step in (10, 15, 20)]).mean(0)
        assert torch.allclose(tensor.float(), average, atol=1e-6), name
    assert any(not torch.equal(kept[name], weights[20][name]) for name in kept)  # not just the last weights
    assert checkpoint.read_config(tmp_path / "run")["training"]["best_mean_valid_bleu"] == 10.0


def test_the_best_single_checkpoint_is_kept_when_the_average_validates_worse(tmp_path: Path, builtin_corpus) -> None:
    result, events, weights = _scripted_run(tmp_path / "run", builtin_corpus, [5.0, 9.0, 7.0, 8.0, 6.0])
    assert result.status == "done" and result.best_bleu == 9.0
    assert [(e["step"], e["kind"]) for e in events if e["event"] == "checkpoint"] == [(5, "best"), (10, "best")]
    kept = checkpoint.load_weights(tmp_path / "run" / checkpoint.WEIGHTS)
    for name, tensor in kept.items():
        assert torch.equal(tensor, weights[10][name]), name  # the step-10 weights, not the last ones
    assert any(not torch.equal(kept[name], weights[20][name]) for name in kept)
    last = checkpoint.load_weights(tmp_path / "run" / checkpoint.LAST_WEIGHTS)
    assert all(torch.equal(last[name], weights[20][name]) for name in last)  # resuming goes on from the end


def test_early_stopping_after_patience_validations_without_gain(tmp_path: Path, builtin_corpus) -> None:
    # Validations at 5 (best), 10 (no gain), 15 (best again: the count restarts), 20 and 25 (no
    # gain twice, patience 2): the run stops at step 25 of 60.
    result, events, weights = _scripted_run(
        tmp_path / "run", builtin_corpus, [5.0, 4.0, 6.0, 6.0, 5.0], steps=60, patience=2, average_last=0
    )
    assert result.status == "early_stop" and result.step == 25 and result.best_bleu == 6.0
    assert [e["step"] for e in events if e["event"] == "valid"] == [5, 10, 15, 20, 25]
    assert events[-1]["event"] == "early_stop"
    assert checkpoint.read_config(tmp_path / "run")["training"]["status"] == "early_stop"
    kept = checkpoint.load_weights(tmp_path / "run" / checkpoint.WEIGHTS)
    assert all(torch.equal(kept[name], weights[15][name]) for name in kept)  # the best one, at step 15
    core.load(tmp_path / "run")


def test_the_time_limit_stops_the_run_with_a_validated_model(tmp_path: Path, builtin_corpus) -> None:
    config = tiny_config(steps=400)
    config.train.eval_every = config.train.save_every = 400
    config.train.log_every = 2  # training time is counted at each log
    config.train.max_minutes = 0.001  # 60 ms of training
    events: list[dict] = []
    result = train(config, tmp_path / "run", listeners=[events.append], corpus=builtin_corpus)
    assert result.status == "time_limit" and 0 < result.step < 400
    step_events = [e for e in events if e["event"] == "step"]
    assert step_events[-1]["elapsed_s"] >= 0.06 and all(e["elapsed_s"] < 0.06 for e in step_events[:-1])
    assert step_events[-1]["step"] == result.step  # it stopped at the first check past the limit
    valid = [e for e in events if e["event"] == "valid"]
    assert valid and valid[0]["step"] == result.step  # the stop validates, so the kept model is a chosen one
    assert checkpoint.read_config(tmp_path / "run")["training"]["status"] == "time_limit"
    core.load(tmp_path / "run")
