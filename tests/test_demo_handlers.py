"""Every tab's handlers, called in-process (no browser, no server) against the tiny checkpoint."""

from __future__ import annotations

import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from core.config import preset
from core.corpus import load_builtin
from demo import app as demo_app
from demo import attention_tab, data, evaluate_tab, generate_tab, state, train_tab, translate_tab
from tests.app_server import copy_checkpoint

SENTENCE = "The dog runs in the park."
LANGUAGES = ["en", "de", "fr"]


@pytest.fixture(autouse=True)
def checkpoints(app_checkpoints: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the app at a temporary checkpoints folder holding the tiny model as "tiny"."""
    monkeypatch.setenv(state.CHECKPOINTS_ENV, str(app_checkpoints))
    return app_checkpoints


@pytest.fixture(autouse=True)
def no_training_left_running():
    """A test that starts a run by mistake must not block the next one."""
    yield
    job = state.JOBS.cancel()
    if job is not None:
        job.wait(60)


@pytest.fixture(scope="module")
def second_model(app_checkpoints: Path, tiny_checkpoint: Path) -> str:
    copy_checkpoint(tiny_checkpoint, app_checkpoints, "tiny-copy")
    return "tiny-copy"


def _figure_text(figure) -> str:
    return figure.to_json()


# --- model picker and cache ------------------------------------------------------------------

def test_picker_lists_checkpoints_and_resolves_names_and_paths(checkpoints: Path) -> None:
    assert "tiny" in state.checkpoint_names()
    assert state.default_checkpoint(["a", "multi30k-4lang"]) == "multi30k-4lang"
    assert state.default_checkpoint(["b", "a"]) == "b"
    assert state.default_checkpoint([]) is None
    assert state.resolve_checkpoint("tiny") == checkpoints / "tiny"
    assert state.resolve_checkpoint(str(checkpoints / "tiny")) == checkpoints / "tiny"


@pytest.mark.parametrize("choice", ["", None, "nope", "../tiny", "/etc"])
def test_only_checkpoints_of_the_folder_are_loaded(choice: str | None) -> None:
    with pytest.raises(ValueError):
        state.resolve_checkpoint(choice)
    with pytest.raises(gr.Error):
        translate_tab.translate(choice, SENTENCE, "en", "de")


def test_translators_are_cached() -> None:
    assert state.get_translator("tiny") is state.get_translator("tiny")


def test_model_summary_and_refresh(checkpoints: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert "English, German, French" in demo_app.describe_model("tiny")
    assert "Train" in demo_app.describe_model(None)
    picker, other = demo_app.refresh_models("gone")
    assert picker["value"] == state.default_checkpoint() and "tiny" in picker["choices"]
    assert other["choices"][0] == evaluate_tab.NONE
    monkeypatch.setenv(state.CHECKPOINTS_ENV, str(tmp_path / "empty"))
    picker, _ = demo_app.refresh_models("tiny")
    assert picker["choices"] == [] and picker["value"] is None


def test_the_app_builds_with_and_without_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert isinstance(demo_app.build_demo(), gr.Blocks)
    monkeypatch.setenv(state.CHECKPOINTS_ENV, str(tmp_path))
    assert isinstance(demo_app.build_demo(), gr.Blocks)


# --- Translate -------------------------------------------------------------------------------

def test_translate_each_line_greedy() -> None:
    output, table = translate_tab.translate("tiny", f"{SENTENCE}\n\nThe cat sleeps.", "en", "de")
    lines = output.split("\n")  # the tiny model's output is gibberish (or empty): check the shape only
    assert len(lines) == 3 and lines[1] == ""
    assert list(table.columns) == translate_tab.NBEST_COLUMNS
    assert list(table["line"]) == [1, 3]


def test_translate_beam_gives_an_n_best_list() -> None:
    output, table = translate_tab.translate("tiny", SENTENCE, "en", "fr", translate_tab.BEAM, 4, 1.0, 3)
    assert len(table) == 3 and list(table["rank"]) == [1, 2, 3]
    assert table["translation"][0] == output
    assert list(table["score"]) == sorted(table["score"], reverse=True)


@pytest.mark.parametrize("text, src, tgt, message", [
    ("", "en", "de", "Enter a sentence"),
    (SENTENCE, "en", "en", "two different languages"),
    (SENTENCE, "en", "xx", "Unknown language"),
    ("a\n" * (translate_tab.MAX_LINES + 1), "en", "de", "more than"),
])
def test_translate_bad_input_is_a_readable_error(text: str, src: str, tgt: str, message: str) -> None:
    with pytest.raises(gr.Error, match=message):
        translate_tab.translate("tiny", text, src, tgt)


def test_translate_into_every_language() -> None:
    table = translate_tab.translate_to_all("tiny", f"{SENTENCE}\nignored", "en")
    assert list(table["language"]) == ["German (de)", "French (fr)"]
    assert list(table.columns) == translate_tab.ALL_COLUMNS


def test_swap_and_examples() -> None:
    assert translate_tab.swap("en", "de", "Hello", "Hallo") == ("de", "en", "Hallo", "")
    assert translate_tab.swap("en", "de", "Hello", "") == ("de", "en", "Hello", "")
    samples = translate_tab.examples("tiny", "de")["samples"]
    assert samples and samples[0][0] == load_builtin().split("test")["de"][0]
    assert translate_tab.pick_example(samples[0]) == samples[0][0]
    assert translate_tab.examples(None, "de")["samples"] == []


def test_language_dropdowns_follow_the_model() -> None:
    from demo.ui import language_pair_update

    src, tgt = language_pair_update("tiny", "fr", "de")
    assert [value for _, value in src["choices"]] == LANGUAGES
    assert (src["value"], tgt["value"]) == ("fr", "de")
    src, tgt = language_pair_update("tiny", "cs", "de")  # not a language of this model: default pair
    assert (src["value"], tgt["value"]) == ("en", "de")
    src, tgt = language_pair_update(None, "en", "de")
    assert src["choices"] == [] and src["value"] is None


# --- Generate --------------------------------------------------------------------------------

def test_sampling_gives_candidates_with_log_probabilities() -> None:
    table = generate_tab.sample("tiny", SENTENCE, "en", "de", n=4, temperature=1.2, top_k=20, top_p=0.9, seed=3)
    assert list(table.columns) == generate_tab.SAMPLE_COLUMNS and len(table) == 4
    assert list(table["log-probability"]) == sorted(table["log-probability"], reverse=True)
    assert (table["log-probability"] <= 0).all()
    again = generate_tab.sample("tiny", SENTENCE, "en", "de", n=4, temperature=1.2, top_k=20, top_p=0.9, seed=3)
    assert list(again["candidate"]) == list(table["candidate"])


def test_sampling_bad_settings_are_readable_errors() -> None:
    with pytest.raises(gr.Error, match="top_p"):
        generate_tab.sample("tiny", SENTENCE, "en", "de", top_p=0)


def test_step_by_step_view() -> None:
    steps, slider, figure, description = generate_tab.decode_steps("tiny", SENTENCE, "en", "de", top_k=5)
    assert steps and steps[-1].chosen == "</s>"
    assert slider["maximum"] == max(2, len(steps)) and slider["value"] == 1
    assert len(figure.data[0].y) == 5 and "Step 1" in description
    last_figure, last = generate_tab.show_step(steps, len(steps))
    assert f"Step {len(steps)}/{len(steps)}" in last and "&lt;/s&gt;" in last
    assert last_figure.layout.title.text.startswith(f"Step {len(steps)} of")
    assert "first" in generate_tab.show_step([], 1)[1]


def test_step_by_step_can_follow_a_given_translation() -> None:
    steps, *_ = generate_tab.decode_steps("tiny", SENTENCE, "en", "de", top_k=3, follow="der Hund")
    assert "".join(s.chosen for s in steps[:-1]).replace("▁", " ").strip() == "der Hund"


# --- Attention -------------------------------------------------------------------------------

def test_attention_figures_belong_to_the_translation_shown() -> None:
    view, translation, layer, head, cross, grid, encoder, decoder = attention_tab.attend("tiny", SENTENCE, "en", "de")
    assert view.translation.text in translation
    assert layer["value"] == view.cross.shape[0] and head["value"] == attention_tab.AVERAGE
    assert len(head["choices"]) == view.cross.shape[1] + 1
    heat = cross.data[0]
    assert np.asarray(heat.z).shape == (len(view.target_pieces), len(view.source_pieces))
    assert np.allclose(np.asarray(heat.z), view.cross[-1].mean(axis=0))
    assert len(grid.data) == view.cross.shape[1]
    assert np.asarray(encoder.data[0].z).shape == (len(view.source_pieces),) * 2
    assert np.asarray(decoder.data[0].z).shape == (len(view.target_pieces),) * 2


def test_changing_head_replots_without_translating_again() -> None:
    view, *_ = attention_tab.attend("tiny", SENTENCE, "en", "fr")
    cross, _, encoder, _ = attention_tab.attention_figures(view, 1, "2")
    assert np.allclose(np.asarray(cross.data[0].z), view.cross[0, 2])
    assert np.allclose(np.asarray(encoder.data[0].z), view.encoder_self[0, 2])
    assert "head 2" in cross.layout.title.text
    empty = attention_tab.attention_figures(None)
    assert all(len(figure.data) == 0 for figure in empty)


# --- Evaluate --------------------------------------------------------------------------------

def test_evaluate_one_checkpoint_on_the_builtin_test_split() -> None:
    summary, bleu, chrf, matrix, second = evaluate_tab.run_evaluation(
        "tiny", evaluate_tab.NONE, "Built-in test split", None, "en-centric", 1, 4)
    assert "BLEU signature: `nrefs:1" in summary and "chrF signature" in summary
    assert list(bleu.data[0].x) == ["en-de", "en-fr", "de-en", "fr-en"]
    assert len(chrf.data) == 1 and second["visible"] is False
    assert np.asarray(matrix.data[0].z).shape == (3, 3)


def test_evaluation_results_are_cached() -> None:
    args = ("tiny", evaluate_tab.NONE, "Built-in test split", None, "en-de", 1, 3)
    first = evaluate_tab.run_evaluation(*args)
    started = time.perf_counter()
    again = evaluate_tab.run_evaluation(*args)
    assert time.perf_counter() - started < 1.0
    assert again[0] == first[0]


def test_evaluate_two_checkpoints_side_by_side(second_model: str) -> None:
    summary, bleu, _, matrix, second = evaluate_tab.run_evaluation(
        "tiny", second_model, "Built-in test split", None, "de-fr", 1, 3)
    assert [trace.name for trace in bleu.data] == ["tiny", second_model]
    assert second["visible"] is True and "tiny-copy" in summary


def test_evaluate_uploaded_tsv(tmp_path: Path) -> None:
    test = load_builtin().split("test")
    tsv = tmp_path / "mine.tsv"
    rows = zip(test["en"][:20], test["de"][:20], strict=True)
    tsv.write_text("en\tde\n" + "".join(f"{en}\t{de}\n" for en, de in rows), encoding="utf-8")
    summary, bleu, *_ = evaluate_tab.run_evaluation("tiny", None, "Uploaded files", [str(tsv)], "all", 1, 5)
    assert list(bleu.data[0].x) == ["en-de", "de-en"]
    assert "| 5 |" in summary


def test_evaluate_errors_are_readable(tmp_path: Path) -> None:
    with pytest.raises(gr.Error, match="No files uploaded"):
        evaluate_tab.run_evaluation("tiny", None, "Uploaded files", None)
    bad = tmp_path / "bad.tsv"
    bad.write_text("en\tde\nonly one column\n", encoding="utf-8")
    with pytest.raises(gr.Error, match="bad.tsv:2"):
        evaluate_tab.run_evaluation("tiny", None, "Uploaded files", [str(bad)])
    with pytest.raises(gr.Error, match="No model selected"):
        evaluate_tab.run_evaluation(None, None, "Built-in test split")
    assert evaluate_tab.toggle_files("Uploaded files")["visible"] is True
    update = evaluate_tab.refresh_other("gone")
    assert update["choices"][0] == evaluate_tab.NONE and "tiny" in update["choices"] and update["value"] == evaluate_tab.NONE
    assert evaluate_tab.refresh_other("tiny")["value"] == "tiny"


# --- Train -----------------------------------------------------------------------------------

TINY_FORM = dict(source=data.BUILTIN, multi30k_folder="", download=False, files=None, languages=["en", "de"],
                 directions_mode=train_tab.ALL_PAIRS, custom_directions="", preset_name="tiny", layers=1,
                 d_model=32, steps=10, tokens_per_batch=600, lr=3e-3, temperature=1.0)


def test_build_config_applies_the_knobs() -> None:
    config = train_tab.build_config("tiny", 3, 96, 50, 800, 1e-3, 2.0, "builtin", ["en", "fr"], "en-centric")
    assert (config.model.n_encoder_layers, config.model.n_decoder_layers) == (3, 3)
    assert (config.model.d_model, config.model.d_ff) == (96, 384)
    assert (config.train.steps, config.train.warmup_steps, config.train.tokens_per_batch) == (50, 10, 800)
    assert config.data.languages == ["en", "fr"] and config.data.directions == "en-centric"
    tiny = preset("tiny")
    assert train_tab.preset_knobs("tiny") == (tiny.model.n_encoder_layers, tiny.model.d_model, tiny.train.steps,
                                              tiny.train.tokens_per_batch, tiny.train.lr, tiny.train.temperature)


@pytest.mark.parametrize("changes, message", [
    ({"d_model": 90}, "divisible"),
    ({"languages": ["en"]}, "at least two languages"),
    ({"directions_mode": train_tab.CUSTOM, "custom_directions": "en-cs"}, "not among"),
    ({"run_name": "../up"}, "Invalid run name"),
    ({"source": data.UPLOAD, "files": None}, "Got 0 file"),
])
def test_start_training_refuses_a_bad_form(changes: dict, message: str) -> None:
    with pytest.raises(gr.Error, match=message):
        train_tab.start_training(**{**TINY_FORM, "run_name": "bad-form", **changes})
    assert state.JOBS.running is None


def test_train_from_the_form_watch_it_and_find_it_in_the_picker(checkpoints: Path) -> None:
    status, timer = train_tab.start_training(**TINY_FORM, run_name="handler-run")
    assert "handler-run" in status and timer["active"] is True
    with pytest.raises(gr.Error, match="already in progress"):
        train_tab.start_training(**TINY_FORM, run_name="another")
    seen: dict = {}
    outputs = None
    for _ in range(1200):
        outputs = train_tab.training_status(seen, "tiny")
        seen = outputs[-1]
        if outputs[5]["active"] is False:
            break
        time.sleep(0.1)
    text, progress, loss, speed, bleu, timer, picker, seen = outputs
    assert "**done**" in text, text
    assert "value='1.000'" in progress
    assert "train loss" in _figure_text(loss) and "de-en" in _figure_text(bleu)
    assert "handler-run" in picker["choices"] and picker["value"] == "tiny"  # the user's pick is kept
    assert (checkpoints / "handler-run" / "model.safetensors").exists()
    # Nothing new: nothing re-sent, and the run is announced only once.
    quiet = train_tab.training_status(seen, "tiny")
    assert quiet[2] == gr.skip() and quiet[6] == gr.skip()
    assert train_tab.cancel_training() == "No training run is in progress."
    assert train_tab.training_on_load({}, "tiny")[6] == gr.skip()


def test_form_helpers(tmp_path: Path) -> None:
    folder, download, files, languages = train_tab.data_source_changed(data.MULTI30K, None)
    assert folder["visible"] and download["visible"] and not files["visible"]
    assert [value for _, value in languages["choices"]] == ["en", "de", "fr", "cs"]
    pair_a, pair_b = tmp_path / "talk.en.txt", tmp_path / "talk.de.txt"
    pair_a.write_text("".join(f"sentence {i}\n" for i in range(30)), encoding="utf-8")
    pair_b.write_text("".join(f"Satz {i}\n" for i in range(30)), encoding="utf-8")
    update = train_tab.uploaded_languages([str(pair_a), str(pair_b)])
    assert update["value"] == ["en", "de"]
    assert train_tab.custom_visible(train_tab.CUSTOM)["visible"] is True
    assert train_tab.preset_knobs("small")[1] == preset("small").model.d_model


# --- app.py ----------------------------------------------------------------------------------

def test_host_and_port_from_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import app

    for name in ("POLYGLOT_HOST", "POLYGLOT_PORT", "GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(app.demo, gr.Blocks)
    args = app.parse_args([])
    assert (args.host, args.port) == ("127.0.0.1", 7860)
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")  # what Hugging Face Spaces sets
    monkeypatch.setenv("GRADIO_SERVER_PORT", "9000")
    args = app.parse_args([])
    assert (args.host, args.port) == ("0.0.0.0", 9000)
    monkeypatch.setenv("POLYGLOT_PORT", "9100")
    assert app.parse_args([]).port == 9100
    args = app.parse_args(["--host", "localhost", "--port", "9200"])
    assert (args.host, args.port) == ("localhost", 9200)
