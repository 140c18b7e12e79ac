"""Configuration has one home: overrides go through `RunConfig.with_overrides`, training never
changes the config it was given, old config.json files still load, and event names are one enum."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from core import checkpoint
from core.config import RunConfig, preset
from core.corpus import Corpus
from core.events import ENDINGS, Event, Stop
from tests.helpers import tiny_config

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "checkpoints" / "multi30k-4lang"


# --- training returns the config it used ---------------------------------------------------


def test_training_leaves_the_callers_config_alone_and_returns_the_one_it_used(tmp_path: Path, builtin_corpus: Corpus) -> None:
    from core.train import train

    config = tiny_config(steps=4, languages=("en", "de"))
    config.train.eval_every = config.train.save_every = 4
    before = config.to_dict()
    result = train(config, tmp_path / "run", corpus=builtin_corpus)
    assert config.to_dict() == before  # not even the vocabulary size
    assert config.model.vocab_size == 0
    # The config that was used: the one given, completed with the tokenizer's size.
    from core.tokenizer import Tokenizer

    tokenizer = Tokenizer.load(tmp_path / "run" / checkpoint.TOKENIZER, ["en", "de"])
    assert result.config.model.vocab_size == len(tokenizer) > 0
    assert result.config.with_overrides() == result.config
    assert {**result.config.to_dict(), "model": before["model"]} == before
    written = checkpoint.read_config(tmp_path / "run")["run"]
    assert RunConfig.from_dict(written) == result.config

    # Every record kind written to metrics.jsonl is an Event, stored as its plain string.
    lines = (tmp_path / "run" / checkpoint.METRICS).read_text().splitlines()
    kinds = [json.loads(line)["event"] for line in lines]
    assert {Event(kind) for kind in kinds} >= {Event.START, Event.STEP, Event.VALID, Event.CHECKPOINT}
    assert kinds[-1] == Event.DONE == result.status and '"event": "done"' in lines[-1]


# --- with_overrides ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"layers": 4}, {"model.n_encoder_layers": 4, "model.n_decoder_layers": 4}),
        ({"n_decoder_layers": 1}, {"model.n_encoder_layers": 2, "model.n_decoder_layers": 1}),
        ({"d_model": 96.0}, {"model.d_model": 96, "model.d_ff": 384}),  # d_ff follows, 4x
        ({"d_model": 64, "d_ff": 100}, {"model.d_model": 64, "model.d_ff": 100}),
        ({"steps": 50}, {"train.steps": 50, "train.warmup_steps": 10}),  # a short run warms up in a fifth of it
        ({"steps": 5000}, {"train.steps": 5000, "train.warmup_steps": 100}),  # a long one keeps the preset's
        ({"steps": 50, "warmup_steps": 30}, {"train.steps": 50, "train.warmup_steps": 30}),
        ({"tokens_per_batch": 800, "lr": 1}, {"train.tokens_per_batch": 800, "train.lr": 1.0}),
        ({"direction_temperature": 2}, {"train.direction_temperature": 2.0}),
        ({"source": " multi30k "}, {"data.source": "multi30k"}),
        ({"languages": ["en", "fr"], "directions": "en-centric"}, {"data.languages": ["en", "fr"], "data.directions": "en-centric"}),
        ({"languages": "en, de ,fr"}, {"data.languages": ["en", "de", "fr"]}),
        ({"vocab_size": 500}, {"data.vocab_size": 500, "model.vocab_size": 0}),
        ({"train.seed": 7, "bf16": True}, {"train.seed": 7, "train.bf16": True}),
        ({"betas": [0.9, 0.99]}, {"train.betas": (0.9, 0.99)}),
    ],
)
def test_with_overrides_applies_each_override(overrides: dict, expected: dict) -> None:
    tiny = preset("tiny")
    changed = tiny.with_overrides(**overrides)
    for path, value in expected.items():
        section, name = path.split(".")
        assert getattr(getattr(changed, section), name) == value, path
    assert tiny == preset("tiny")  # the original is left as it was
    untouched = {p.split(".")[1] for p in expected} | {"preset"}
    for section in ("model", "data", "train"):
        for name, value in getattr(tiny, section).__dict__.items():
            if name not in untouched:
                assert getattr(getattr(changed, section), name) == value, f"{section}.{name} changed"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"stepz": 5}, "Unknown config key 'stepz'"),
        ({"train.d_model": 64}, "Unknown config key 'train.d_model'"),
        ({"temperature": 2.0}, "Unknown config key 'temperature'"),  # ambiguous with decoding: say which
        ({"model.vocab_size": 300}, "tokenizer's size"),
        ({"steps": 0}, "steps must be at least 1"),
        ({"steps": 10.5}, "steps must be a whole number"),
        ({"steps": "10"}, "steps must be a whole number"),
        ({"steps": True}, "steps must be a whole number"),
        ({"steps": None}, "steps needs a value"),
        ({"lr": 0}, "lr must be positive"),
        ({"direction_temperature": -1}, "direction_temperature must be positive"),
        ({"d_model": 90}, "divisible by n_heads"),
        ({"dropout": 1.5}, r"dropout must be in \[0, 1\)"),
        ({"schedule": "linear"}, "schedule must be 'inverse_sqrt' or 'cosine'"),
        ({"source": ""}, "source must be a non-empty string"),
        ({"languages": [1, 2]}, "languages must be a list of strings"),
        ({"layers": 2, "n_encoder_layers": 3}, "both set model.n_encoder_layers"),
    ],
)
def test_with_overrides_refuses_bad_keys_and_values(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        preset("tiny").with_overrides(**overrides)


def _cli_config(*flags: str) -> RunConfig:
    from core.__main__ import _train_parser, build_config

    parser = argparse.ArgumentParser()
    _train_parser(parser)
    return build_config(parser.parse_args(list(flags)))


def test_the_cli_builds_its_config_with_the_same_overrides() -> None:
    flags = [
        "--steps",
        "50",
        "--layers",
        "3",
        "--d-model",
        "96",
        "--languages",
        "en,fr",
        "--data",
        "builtin",
        "--vocab-size",
        "500",
        "--direction-temperature",
        "2",
    ]
    expected = preset("tiny").with_overrides(
        steps=50, layers=3, d_model=96, languages=["en", "fr"], source="builtin", vocab_size=500, direction_temperature=2
    )
    assert _cli_config(*flags) == expected
    assert _cli_config("--temperature", "3").train.direction_temperature == 3.0  # the old flag still works
    assert _cli_config() == preset("tiny")
    with pytest.raises(ValueError, match="divisible"):
        _cli_config("--d-model", "90")


# --- old config files ----------------------------------------------------------------------


def test_old_config_keys_still_load(tmp_path: Path) -> None:
    old = preset("small").to_dict()
    del old["train"]["direction_temperature"]
    old["train"]["temperature"] = 3.0  # the name before the rename
    old["model"]["vocab_size"] = 7990  # written by the trainer, as every run folder has it
    (tmp_path / "old.json").write_text(json.dumps(old))
    loaded = RunConfig.load(tmp_path / "old.json")
    assert loaded.train.direction_temperature == 3.0 and loaded.model.vocab_size == 7990
    assert loaded.to_dict()["train"].get("temperature") is None  # written back under the new name only

    old["train"]["direction_temperature"] = 4.0
    (tmp_path / "both.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="both.json.*old name of train.direction_temperature"):
        RunConfig.load(tmp_path / "both.json")


def test_the_shipped_run_folder_and_config_still_load() -> None:
    import core

    shipped = RunConfig.load(SHIPPED / "config.json")  # written before the rename: "temperature"
    assert "temperature" in json.loads((SHIPPED / "config.json").read_text())["run"]["train"]
    assert shipped.train.direction_temperature == 5.0 and shipped.model.vocab_size == 8000
    assert RunConfig.load(ROOT / "configs" / "multi30k-4lang.json").train.direction_temperature == 5.0
    translator = core.load(SHIPPED)
    assert translator.model.config.vocab_size == 8000


# --- events --------------------------------------------------------------------------------


def test_event_names_match_the_metrics_files() -> None:
    shipped = {json.loads(line)["event"] for line in (SHIPPED / "metrics.jsonl").read_text().splitlines()}
    assert shipped <= {e.value for e in Event}
    assert {e.value for e in Event} == {"start", "step", "valid", "checkpoint", "done", "early_stop", "time_limit", "cancelled", "failed"}
    assert "done" in ENDINGS and "step" not in ENDINGS and json.dumps({"event": Event.DONE}) == '{"event": "done"}'


def test_stop_reasons_are_ordered_and_end_runs_with_their_event() -> None:
    # Ranks agree on the largest reason: a cancel beats early stopping beats the time limit.
    assert Stop.NO < Stop.TIME_LIMIT < Stop.EARLY_STOP < Stop.CANCELLED
    assert not Stop.NO
    assert [s.event for s in (Stop.TIME_LIMIT, Stop.EARLY_STOP, Stop.CANCELLED)] == [Event.TIME_LIMIT, Event.EARLY_STOP, Event.CANCELLED]
    with pytest.raises(ValueError):
        _ = Stop.NO.event
