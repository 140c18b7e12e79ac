"""Fine-tuning from a trained run folder: exact start, a new language, frozen parts, replay, resume."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import core
from core import checkpoint
from core.batching import replay_probabilities
from core.config import preset
from core.finetune import FineTuneError, starting_config
from core.tokenizer import Tokenizer
from core.train import Trainer, train
from tests.helpers import child_env


def finetune_config(start: Path, steps: int = 20, **overrides):
    """A short fine-tuning run of the tiny test model into English→Spanish (new to it)."""
    settings = {
        "languages": "en,es",
        "directions": "en-es",
        "steps": steps,
        "eval_every": steps,
        "save_every": steps,
        "warmup_steps": 2,
        "lr": 3e-3,
        "threads": 1,
        "log_every": 2,
    }
    return starting_config(start, **(settings | overrides))


def weights(folder: Path, name: str = checkpoint.WEIGHTS) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in checkpoint.load_weights(folder / name).items()}


def test_starts_from_exactly_the_given_weights_and_keeps_the_tokenizer(tmp_path, tiny_checkpoint, builtin_corpus):
    # No new language and a vanishing learning rate: the result must still be the starting model.
    config = finetune_config(tiny_checkpoint, steps=2, languages="en,de", directions="en-de", lr=1e-10)
    result = train(config, tmp_path / "ft", corpus=builtin_corpus)
    start, tuned = weights(tiny_checkpoint), weights(result.folder)
    assert start.keys() == tuned.keys()
    for name in start:
        torch.testing.assert_close(tuned[name], start[name], atol=1e-6, rtol=0, msg=name)
    assert (result.folder / checkpoint.TOKENIZER).read_bytes() == (tiny_checkpoint / checkpoint.TOKENIZER).read_bytes()
    record = checkpoint.read_config(result.folder)["started_from"]
    assert record["path"] == str(tiny_checkpoint)
    assert record["weights_sha256"] == hashlib.sha256((tiny_checkpoint / checkpoint.WEIGHTS).read_bytes()).hexdigest()
    assert "fine-tuned from" in (result.folder / "README.md").read_text(encoding="utf-8").lower()


def test_a_new_language_gets_a_tag_and_pieces_and_the_loss_falls(tmp_path, tiny_checkpoint, builtin_corpus):
    events: list[dict] = []
    result = train(finetune_config(tiny_checkpoint, steps=30), tmp_path / "es", corpus=builtin_corpus, listeners=[events.append])
    old = Tokenizer.load(tiny_checkpoint / checkpoint.TOKENIZER, ["en", "de", "fr"])
    translator = core.load(result.folder)
    new = translator.tokenizer
    assert translator.languages == ["en", "de", "fr", "es"]
    assert len(new) > len(old) and new.tag_ids["es"] >= len(old)
    # Old pieces keep their ids, so the starting model's embedding rows keep their meaning.
    assert [new.processor.id_to_piece(i) for i in range(len(old))] == [old.processor.id_to_piece(i) for i in range(len(old))]
    spanish = builtin_corpus.split("test")["es"][:20]
    unknown = sum(piece == new.processor.unk_id() for line in spanish for piece in new.encode(line))
    assert unknown == 0, "every Spanish character must have a piece"
    losses = [e["loss"] for e in events if e["event"] == "step"]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    sentence = builtin_corpus.split("test")["en"][0]
    assert translator.translate([sentence], "en", "es")[0].text
    assert translator.translate([sentence], "en", "de")[0].text  # the old directions still translate
    assert {"en-es", "en-de"} <= set(translator.directions)


def test_frozen_parts_keep_the_starting_weights(tmp_path, tiny_checkpoint, builtin_corpus):
    config = finetune_config(tiny_checkpoint, steps=10, freeze="embeddings,encoder")
    result = train(config, tmp_path / "frozen", corpus=builtin_corpus)
    start, tuned = weights(tiny_checkpoint), weights(result.folder, checkpoint.LAST_WEIGHTS)
    first_new = checkpoint.read_config(result.folder)["started_from"]["first_new_id"]
    assert first_new == start["embedding.weight"].shape[0]
    for name in start:
        if name.startswith(("encoder_layers.", "encoder_norm.")):
            assert torch.equal(tuned[name], start[name]), name
    assert torch.equal(tuned["embedding.weight"][:first_new], start["embedding.weight"])
    decoder = [n for n in start if n.startswith("decoder_layers.")]
    assert any(not torch.equal(tuned[n], start[n]) for n in decoder), "the decoder must still learn"
    assert tuned["embedding.weight"].shape[0] > first_new  # the new rows exist and are trained


def test_bad_starting_points_are_refused_with_clear_messages(tmp_path, tiny_checkpoint, builtin_corpus):
    wrong_shape = finetune_config(tiny_checkpoint).with_overrides(d_model=128)
    with pytest.raises(FineTuneError, match="d_model 128 \\(the starting model has 64\\)"):
        train(wrong_shape, tmp_path / "shape", corpus=builtin_corpus)
    with pytest.raises(FineTuneError, match="not a trained run folder"):
        starting_config(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="set train.init_from"):
        preset("tiny").with_overrides(freeze="encoder")


def test_replay_mixes_the_starting_directions_back_in(tmp_path, tiny_checkpoint, builtin_corpus):
    probabilities = replay_probabilities({"en-es": 100, "en-de": 400, "de-en": 400}, 1.0, {"en-de", "de-en"}, 0.25)
    assert probabilities == pytest.approx({"en-es": 0.75, "en-de": 0.125, "de-en": 0.125})
    trainer = Trainer(finetune_config(tiny_checkpoint, steps=4, replay=0.25), tmp_path / "replay", corpus=builtin_corpus)
    trainer.run()
    started = checkpoint.read_config(tiny_checkpoint)["directions"]
    assert set(trainer.stream.probabilities) == {"en-es", *started}
    replayed = sum(p for d, p in trainer.stream.probabilities.items() if d != "en-es")
    assert replayed == pytest.approx(0.25)


def test_a_cancelled_finetuning_run_resumes_exactly(tmp_path, tiny_checkpoint, builtin_corpus):
    config = finetune_config(tiny_checkpoint, steps=12, save_every=4, eval_every=6)
    train(config, tmp_path / "straight", corpus=builtin_corpus)

    def cancel_at_six(event: dict) -> None:
        if event["event"] == "step" and event["step"] == 6:
            trainer.cancel()

    trainer = Trainer(config, tmp_path / "resumed", corpus=builtin_corpus, listeners=[cancel_at_six])
    assert trainer.run().status == "cancelled"
    resumed = train(config, tmp_path / "resumed", corpus=builtin_corpus, resume=True)
    assert resumed.status == "done" and resumed.step == 12
    a, b = weights(tmp_path / "straight", checkpoint.LAST_WEIGHTS), weights(tmp_path / "resumed", checkpoint.LAST_WEIGHTS)
    assert all(torch.equal(a[name], b[name]) for name in a)


def test_cli_fine_tunes_from_a_run_folder(tmp_path, tiny_checkpoint) -> None:
    out = tmp_path / "cli"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "core",
            "train",
            "--init-from",
            str(tiny_checkpoint),
            "--languages",
            "en,es",
            "--directions",
            "en-es",
            "--steps",
            "4",
            "--eval-every",
            "4",
            "--lr",
            "1e-3",
            "--freeze",
            "encoder",
            "--threads",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=Path(__file__).parent.parent,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    config = checkpoint.read_config(out)
    assert config["run"]["train"]["freeze"] == ["encoder"] and config["run"]["train"]["lr"] == 1e-3
    assert config["run"]["model"]["d_model"] == 64  # the starting model's shape, not the preset's
    refused = subprocess.run(
        [sys.executable, "-m", "core", "train", "--init-from", str(tmp_path / "missing"), "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=Path(__file__).parent.parent,
        timeout=120,
    )
    assert refused.returncode == 2 and "not a trained run folder" in refused.stderr
