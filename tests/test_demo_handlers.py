"""Every tab's handlers, called in-process (no browser, no server) against the tiny checkpoint."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from core import transfer
from core.config import ModelConfig, preset
from core.corpus import load_builtin
from core.evaluate import evaluate
from demo import app as demo_app
from demo import attention_tab, data, evaluate_tab, generate_tab, guide_tab, inside_tab, state, train_tab, translate_tab, ui
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


SHIPPED = Path(__file__).resolve().parent.parent / "checkpoints" / "multi30k-4lang"


@pytest.fixture(scope="module")
def second_model(app_checkpoints: Path) -> str:
    """A model that really differs from the tiny one: a copy of the shipped model (en, de, fr, cs),
    named to sort after "tiny", which stays the picker's default."""
    copy_checkpoint(SHIPPED, app_checkpoints, "zz-shipped-copy")
    return "zz-shipped-copy"


@pytest.fixture(scope="module")
def en_centric_model(app_checkpoints: Path, tiny_checkpoint: Path) -> str:
    """The tiny model, declared as trained on en↔de and en↔fr only: de↔fr count as zero-shot.
    (Its weights saw every direction; only the zero-shot bookkeeping is exercised, quickly.)"""
    folder = copy_checkpoint(tiny_checkpoint, app_checkpoints, "tiny-en-centric")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["directions"] = ["en-de", "en-fr", "de-en", "fr-en"]
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return "tiny-en-centric"


@pytest.fixture
def hosted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLYGLOT_HOSTED", "1")


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
    assert other["choices"][0] == ui.NONE
    monkeypatch.setenv(state.CHECKPOINTS_ENV, str(tmp_path / "empty"))
    picker, _ = demo_app.refresh_models("tiny")
    assert picker["choices"] == [] and picker["value"] is None


def test_refresh_picker_keeps_the_pick_else_selects_else_the_default(checkpoints: Path) -> None:
    assert ui.refresh_picker("tiny", select="gone")["value"] == "tiny"
    assert ui.refresh_picker("gone", select="tiny")["value"] == "tiny"
    update = ui.refresh_picker("gone", select="also-gone")
    assert update["value"] == state.default_checkpoint() and update["choices"] == state.checkpoint_names()
    assert ui.picker_update(["a", "b"], "b", "a")["value"] == "b" and ui.picker_update(["a"], "b", None)["value"] is None


def test_tab_modules_import_no_other_tab() -> None:
    import ast

    allowed = {"demo", "demo.ui", "demo.state", "demo.data"}
    for path in sorted(Path(ui.__file__).parent.glob("*_tab.py")) + [Path(ui.__file__)]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("demo"):
                modules = [node.module] if node.module != "demo" else [f"demo.{alias.name}" for alias in node.names]
                assert set(modules) <= allowed, f"{path.name} imports {modules}"


@pytest.mark.parametrize(
    "text, message", [(None, "Enter a sentence"), (" \n\t", "Enter a sentence"), ("x" * 20_001, "at most 20000 characters")]
)
def test_the_enter_a_sentence_check(text: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ui.entered_text(text)
    with pytest.raises(ValueError, match=message):
        ui.first_sentence(text)


def test_first_sentence_is_the_first_non_blank_line() -> None:
    assert ui.entered_text("\nA dog.\n") == "\nA dog.\n"
    assert ui.first_sentence("\n  \nA dog.\nA cat.") == "A dog."


class _FakeJob:
    def __init__(self, status: str, **fields) -> None:
        self.name, self.status, self.stage, self.step, self.total_steps = "run", status, "training", 3, 10
        self.error, self.progress, self.elapsed_seconds, self.eta_seconds = None, 0.3, 75.0, None
        self.__dict__.update(fields)


def test_status_line_and_progress_bar_of_a_job() -> None:
    assert ui.status_line(None, "nothing yet") == "nothing yet"
    assert ui.status_line(_FakeJob("running"), "") == "**run** · training · step 3/10"
    assert ui.status_line(_FakeJob("failed", error="Boom: no"), "") == "**run** · **failed** · Boom: no"
    assert ui.status_line(_FakeJob("done"), "", lambda job: f" at step {job.step}") == "**run** · **done** at step 3"
    assert ui.progress_html(None) == ""
    running = ui.progress_html(_FakeJob("running"))
    assert "value='0.300'" in running and "1 min 15 s elapsed" in running and "estimating… left" in running
    assert "done after 1 min 15 s" in ui.progress_html(_FakeJob("done", progress=1.0))


def test_the_app_builds_with_and_without_models(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert isinstance(demo_app.build_demo(), gr.Blocks)
    monkeypatch.setenv(state.CHECKPOINTS_ENV, str(tmp_path))
    assert isinstance(demo_app.build_demo(), gr.Blocks)


# --- Translate -------------------------------------------------------------------------------


def test_translate_each_line_greedy() -> None:
    output, table, _ = translate_tab.translate("tiny", f"{SENTENCE}\n\nThe cat sleeps.", "en", "de")
    lines = output.split("\n")  # the tiny model's output is gibberish (or empty): check the shape only
    assert len(lines) == 3 and lines[1] == ""
    assert list(table.columns) == translate_tab.NBEST_COLUMNS
    assert list(table["line"]) == [1, 3]


def test_translate_beam_gives_an_n_best_list() -> None:
    output, table, _ = translate_tab.translate("tiny", SENTENCE, "en", "fr", translate_tab.BEAM, 4, 1.0, 3)
    assert len(table) == 3 and list(table["rank"]) == [1, 2, 3]
    assert table["translation"][0] == output
    assert list(table["score"]) == sorted(table["score"], reverse=True)


def test_translate_at_int8_and_bfloat16_uses_cached_variants_of_the_model() -> None:
    import torch

    for precision in ("int8", "bfloat16"):
        output, table, _ = translate_tab.translate("tiny", SENTENCE, "en", "fr", translate_tab.BEAM, 3, 1.0, 2, precision)
        assert table["translation"][0] == output and len(table) == 2
    int8, bf16 = state.get_translator("tiny", "int8"), state.get_translator("tiny", "bfloat16")
    assert int8 is state.get_translator("tiny", "int8")  # quantized once, then cached
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in int8.model.modules())
    assert bf16.bf16 and bf16.model is state.get_translator("tiny").model
    assert all(type(m) is not torch.ao.nn.quantized.dynamic.Linear for m in state.get_translator("tiny").model.modules())
    with pytest.raises(gr.Error, match="Unknown precision"):
        translate_tab.translate("tiny", SENTENCE, "en", "de", precision="float8")


@pytest.mark.parametrize(
    "text, src, tgt, message",
    [
        ("", "en", "de", "Enter a sentence"),
        (SENTENCE, "en", "en", "two different languages"),
        (SENTENCE, "en", "xx", "Unknown language"),
        ("a\n" * (translate_tab.MAX_LINES + 1), "en", "de", "more than"),
    ],
)
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
    assert steps and slider["maximum"] == max(2, len(steps)) and slider["value"] == 1
    assert len(figure.data[0].y) == 5 and "Step 1" in description
    last_figure, last = generate_tab.show_step(steps, len(steps))
    assert f"Step {len(steps)}/{len(steps)}" in last
    ended = steps[-1].chosen == "</s>"  # the tiny model often runs on until the length limit cuts it
    assert ("&lt;/s&gt;" in last) == ended and ("length limit" in last) != ended
    assert last_figure.layout.title.text.startswith(f"Step {len(steps)} of")
    assert "first" in generate_tab.show_step([], 1)[1]


def test_step_by_step_can_follow_a_given_translation() -> None:
    steps, *_ = generate_tab.decode_steps("tiny", SENTENCE, "en", "de", top_k=3, follow="der Hund")
    assert "".join(s.chosen for s in steps[:-1]).replace("▁", " ").strip() == "der Hund"


# --- Attention -------------------------------------------------------------------------------


def test_attention_figures_belong_to_the_translation_shown() -> None:
    view, translation, layer, head, cross, grid, encoder, decoder, attribution, links = attention_tab.attend("tiny", SENTENCE, "en", "de")
    assert view.translation.text in translation
    assert np.asarray(attribution.data[0].z).shape == np.asarray(cross.data[0].z).shape  # the same sentence's pieces
    assert layer["value"] == view.cross.shape[0] and head["value"] == attention_tab.AVERAGE
    assert len(head["choices"]) == view.cross.shape[1] + 1
    heat = cross.data[0]
    assert np.asarray(heat.z).shape == (len(view.target_pieces), len(view.source_pieces))
    assert np.allclose(np.asarray(heat.z), view.cross[-1].mean(axis=0))
    assert len(grid.data) == view.cross.shape[1]
    assert np.asarray(encoder.data[0].z).shape == (len(view.source_pieces),) * 2
    assert np.asarray(decoder.data[0].z).shape == (len(view.target_pieces),) * 2
    assert (cross.layout.xaxis.title.text, cross.layout.yaxis.title.text) == ("source (keys)", "target (queries)")
    assert (encoder.layout.xaxis.title.text, encoder.layout.yaxis.title.text) == ("source (keys)", "source (queries)")
    assert (decoder.layout.xaxis.title.text, decoder.layout.yaxis.title.text) == ("target (keys)", "target (queries)")


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
    summary, bleu, chrf, matrix, second = evaluate_tab.run_evaluation("tiny", ui.NONE, "Built-in test split", None, "en-centric", 1, 4)
    assert "BLEU signature: `nrefs:1" in summary and "chrF signature" in summary
    assert list(bleu.data[0].x) == ["en-de", "en-fr", "de-en", "fr-en"]
    assert len(chrf.data) == 1 and second["visible"] is False
    assert np.asarray(matrix.data[0].z).shape == (3, 3)


def test_evaluation_results_are_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted, not timed: asking again for the same scores translates nothing."""
    translator = state.get_translator("tiny")
    calls: list[tuple[str, str]] = []
    translate = translator.translate
    monkeypatch.setattr(
        translator, "translate", lambda texts, src, tgt, **options: calls.append((src, tgt)) or translate(texts, src, tgt, **options)
    )
    args = ("tiny", ui.NONE, "Built-in test split", None, "en-de,de-fr", 1, 3)
    first = evaluate_tab.run_evaluation(*args)
    assert calls == [("en", "de"), ("de", "fr")]
    again = evaluate_tab.run_evaluation(*args)
    assert calls == [("en", "de"), ("de", "fr")] and again[0] == first[0]
    evaluate_tab.run_evaluation(*args[:-1], 4)  # other settings: scored anew
    assert calls[2:] == [("en", "de"), ("de", "fr")]


def test_evaluate_two_checkpoints_side_by_side(second_model: str) -> None:
    summary, bleu, _, matrix, second = evaluate_tab.run_evaluation("tiny", second_model, "Built-in test split", None, "de-fr", 1, 3)
    assert [trace.name for trace in bleu.data] == ["tiny", second_model]
    assert second["visible"] is True and f"### {second_model}" in summary
    # Each model's bar is its own score, and the two models really score differently.
    test = load_builtin().split("test")
    expected = [
        evaluate(state.get_translator(name), test, ["de-fr"], beam_size=1, max_sentences=3).scores["de-fr"].bleu
        for name in ("tiny", second_model)
    ]
    assert [float(trace.y[0]) for trace in bleu.data] == pytest.approx(expected)
    assert expected[1] > expected[0] + 5


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
    assert ui.toggle_files("Uploaded files")["visible"] is True and ui.toggle_files("Multi30K test split")["visible"] is False
    update = ui.refresh_other("gone")
    assert update["choices"][0] == ui.NONE and "tiny" in update["choices"] and update["value"] == ui.NONE
    assert ui.refresh_other("tiny")["value"] == "tiny"


# --- Train -----------------------------------------------------------------------------------

TINY_FORM = dict(
    source=data.BUILTIN,
    multi30k_folder="",
    download=False,
    files=None,
    languages=["en", "de"],
    directions_mode=train_tab.ALL_PAIRS,
    custom_directions="",
    preset_name="tiny",
    layers=1,
    d_model=32,
    steps=10,
    tokens_per_batch=600,
    lr=3e-3,
    direction_temperature=1.0,
)


def test_preset_knobs_fill_the_form() -> None:
    tiny = preset("tiny")
    assert train_tab.preset_knobs("tiny") == (
        tiny.model.n_encoder_layers,
        tiny.model.d_model,
        tiny.train.steps,
        tiny.train.tokens_per_batch,
        tiny.train.lr,
        tiny.train.direction_temperature,
    )


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"d_model": 90}, "divisible"),
        ({"steps": None}, "steps needs a value"),
        ({"languages": ["en"]}, "at least two languages"),
        ({"directions_mode": train_tab.CUSTOM, "custom_directions": "en-cs"}, "not among"),
        ({"run_name": "../up"}, "Invalid run name"),
        ({"source": data.UPLOAD, "files": None}, "Got 0 file"),
    ],
)
def test_start_training_refuses_a_bad_form(changes: dict, message: str) -> None:
    with pytest.raises(gr.Error, match=message):
        train_tab.start_training(**{**TINY_FORM, "run_name": "bad-form", **changes})
    assert state.JOBS.running is None


def test_train_from_the_form_watch_it_and_find_it_in_the_picker(checkpoints: Path) -> None:
    status, timer = train_tab.start_training(**TINY_FORM, run_name="handler-run")
    assert "handler-run" in status and timer["active"] is True
    assert state.JOBS.current.config.train.threads == max(1, os.cpu_count() - 1)  # one core keeps serving
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


# --- Inside ----------------------------------------------------------------------------------


def test_zero_shot_section_on_a_model_trained_on_every_direction() -> None:
    summary, matrix, bars = inside_tab.zero_shot("tiny", "Built-in test split", None, 1, 3)
    assert "none is zero-shot" in summary and "BLEU signature" in summary
    assert np.asarray(matrix.data[0].z).shape == (3, 3) and "*" not in _figure_text(matrix).split('"text"')[0]
    assert [trace.name for trace in bars.data] == ["direct"] and len(bars.data[0].x) == 6


def test_zero_shot_section_marks_and_pivots_held_out_directions(en_centric_model: str) -> None:
    summary, matrix, bars = inside_tab.zero_shot(en_centric_model, "Built-in test split", None, 1, 3)
    assert "| de-fr | zero-shot |" in summary and "| en-de | supervised |" in summary
    assert "mean zero-shot" in summary and "none is zero-shot" not in summary
    assert "zero-shot direction" in _figure_text(matrix)
    direct, pivot = bars.data
    assert pivot.name == "pivot via en"
    assert sorted(x for x, y in zip(pivot.x, pivot.y) if y is not None) == ["de-fr", "fr-de"]


def test_transfer_section_opens_on_the_stored_multi30k_result() -> None:
    stored = transfer.stored_result()
    assert stored is not None, "bench/results/transfer_multi30k.json is the result the Inside tab opens on"
    figure, curves, report = inside_tab.stored_transfer()
    assert len(curves.data) == 3 * len(stored["sizes"])
    assert [trace.name for trace in figure.data] == list(stored["methods"].values())
    assert list(figure.data[0].y) == [stored["sizes"][n]["bilingual"]["bleu"]["score"] for n in stored["sizes"]]
    assert transfer.transfer_table(stored) in report and stored["corpus"] in report


def test_the_small_transfer_experiment_runs_in_the_background(monkeypatch: pytest.MonkeyPatch) -> None:
    tiny = dataclasses.replace(
        transfer.SMALL,
        sizes=(40,),
        helper_sentences=300,
        vocab_size=300,
        new_language_pieces=100,
        pretrained="",
        model=ModelConfig(d_model=32, n_heads=2, d_ff=64, n_encoder_layers=1, n_decoder_layers=1),
        train=dataclasses.replace(transfer.SMALL.train, tokens_per_batch=600, eval_every=3, save_every=3, eval_sentences=3),
        pretrain_steps=3,
        scratch_steps=3,
        finetune_steps=2,
        test_sentences=4,
        bootstrap_samples=20,
    )
    monkeypatch.setattr(transfer, "SMALL", tiny)
    monkeypatch.setattr(data, "transfer_corpus", lambda: data.builtin_corpus())
    assert inside_tab.transfer_status()[0].startswith("No experiment of yours yet")
    status, timer = inside_tab.start_transfer("cs")
    assert "4 small models" in status and timer["active"] is True
    with pytest.raises(gr.Error, match="already in progress"):  # one run per server, whatever its kind
        train_tab.start_training(**TINY_FORM, run_name="during-transfer")
    outputs = None
    for _ in range(3000):
        outputs = inside_tab.transfer_status()
        if outputs[5]["active"] is False:
            break
        time.sleep(0.1)
    text, progress, chart, curves, table, timer = outputs
    assert "**done**" in text, text
    assert "value='1.000'" in progress
    assert [trace.name for trace in chart.data] == list(transfer.LABELS.values())
    assert "| 40 |" in table and "builtin" in table
    assert "Inside" in train_tab.status_text(state.JOBS.current)  # the Train tab points to the right place
    assert inside_tab.cancel_transfer() == "No experiment is running."


def test_the_train_tab_fine_tunes_a_trained_model_into_a_new_language() -> None:
    status, timer = train_tab.start_training(
        **{**TINY_FORM, "languages": ["en", "es"], "directions_mode": "Custom", "custom_directions": "en-es", "steps": 4},
        run_name="tiny-to-spanish",
        start_from=train_tab.FROM_MODEL,
        base_model="tiny",
        freeze=["encoder"],
    )
    assert "Started **tiny-to-spanish**" in status
    state.JOBS.current.wait(300)
    assert state.JOBS.current.status == "done", state.JOBS.current.error
    translator = state.get_translator("tiny-to-spanish")
    assert translator.languages == [*state.get_translator("tiny").languages, "es"]
    assert translator.config["started_from"]["path"].endswith("tiny")
    assert translator.config["run"]["train"]["freeze"] == ["encoder"]
    updates = train_tab.start_from_changed(train_tab.FROM_MODEL)
    assert updates[0]["visible"] is True and "tiny" in updates[0]["choices"]
    assert updates[4]["interactive"] is False  # the shape is the starting model's


def test_embedding_space_and_retrieval_per_layer() -> None:
    scatter, chart, table, slider = inside_tab.embedding("tiny", "Built-in test split", None, 12, 5)
    assert [trace.name for trace in scatter.data] == ["same sentence", "en", "de", "fr"]
    assert sum(len(trace.x) for trace in scatter.data[1:]) == 36
    assert "encoder layer 1" in scatter.layout.title.text  # 5 is clamped to the tiny model's one layer
    assert slider["maximum"] == 1 and slider["value"] == 1
    assert [trace.name for trace in chart.data][0] == "mean" and len(chart.data) == 7  # mean + 6 pairs
    assert list(table.columns)[:2] == ["layer", "mean"] and list(table["layer"]) == [0, 1]
    assert ((table.drop(columns="layer") >= 0) & (table.drop(columns="layer") <= 1)).all().all()
    at_zero = inside_tab.embedding_layer("tiny", "Built-in test split", None, 12, 0, True)
    assert "embeddings" in at_zero.layout.title.text
    assert inside_tab.layer_slider("tiny")["maximum"] == 1 and inside_tab.layer_slider(None)["maximum"] == 1


def test_tokenization_across_languages() -> None:
    pieces, stats, bars, matrix = inside_tab.tokenization("tiny", "Built-in test split", None, 2)
    test = load_builtin().split("test")
    assert list(pieces.columns) == inside_tab.PIECES_COLUMNS
    assert list(pieces["sentence"]) == [test[lang][1] for lang in LANGUAGES]
    assert all(count == len(text.split(" · ")) for count, text in zip(pieces["number of pieces"], pieces["pieces"]))
    assert list(stats["language"]) == ["English (en)", "German (de)", "French (fr)"]
    assert (stats["pieces per word"] >= 1).all()
    assert list(bars.data[0].x) == LANGUAGES and bars.layout.xaxis.title.text == "language"
    jaccard = np.asarray(matrix.data[0].z, dtype=float)
    assert jaccard.shape == (3, 3) and np.nanmax(jaccard) <= 100 and np.nanmin(jaccard) > 1  # percent
    with pytest.raises(gr.Error, match="between 1 and"):
        inside_tab.tokenization("tiny", "Built-in test split", None, 10_000)


def test_two_models_side_by_side(second_model: str, tiny_translator) -> None:
    import core

    table, first, second = inside_tab.side_by_side("tiny", second_model, SENTENCE, "en", "de", 1)
    assert list(table.columns) == inside_tab.SIDE_COLUMNS and list(table["model"]) == ["tiny", second_model]
    # Each side shows its own model: its translation and its attention, and the two differ.
    shipped = core.load(SHIPPED)
    views = [model.attention(SENTENCE, "en", "de", beam_size=1) for model in (tiny_translator, shipped)]
    assert list(table["translation"]) == [view.translation.text for view in views]
    assert table["translation"][0] != table["translation"][1]
    assert "Hund" in table["translation"][1]  # the shipped model translates for real
    assert list(table["zero-shot"]) == ["no", "no"]
    for figure, name, view in zip((first, second), ("tiny", second_model), views, strict=True):
        assert figure.data[0].type == "heatmap" and figure.layout.title.text.startswith(name)
        assert np.allclose(np.asarray(figure.data[0].z, dtype=float), view.cross[-1].mean(axis=0), atol=1e-5)
    assert np.asarray(first.data[0].z).shape != np.asarray(second.data[0].z).shape or not np.allclose(
        np.asarray(first.data[0].z, dtype=float), np.asarray(second.data[0].z, dtype=float)
    )
    with pytest.raises(gr.Error, match="Pick a second model"):
        inside_tab.side_by_side("tiny", ui.NONE, SENTENCE, "en", "de")
    with pytest.raises(gr.Error, match="Enter a sentence"):
        inside_tab.side_by_side("tiny", second_model, " ", "en", "de")


# --- hosted mode ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: translate_tab.translate("tiny", SENTENCE, "en", "de", translate_tab.BEAM, 8), "a beam of at most 6"),
        (lambda: translate_tab.translate("tiny", "a\n" * 60, "en", "de"), "at most 50 lines"),
        (lambda: translate_tab.translate_to_all("tiny", "x" * 2001, "en"), "at most 2000 characters"),
        (lambda: translate_tab.translate_to_all("tiny", SENTENCE, "en", translate_tab.BEAM, 7), "a beam of at most 6"),
        (lambda: generate_tab.sample("tiny", SENTENCE, "en", "de", n=11), "at most 10 candidates"),
        (lambda: generate_tab.decode_steps("tiny", "x" * 2001, "en", "de"), "at most 2000 characters"),
        (lambda: attention_tab.attend("tiny", SENTENCE, "en", "de", 7), "a beam of at most 6"),
        (
            lambda: evaluate_tab.run_evaluation("tiny", None, "Built-in test split", None, "en-de", 1, 201),
            "at most 200 sentences per direction",
        ),
        (lambda: evaluate_tab.run_evaluation("tiny", None, "Built-in test split", None, "en-de", 8, 5), "a beam of at most 6"),
        (lambda: train_tab.start_training(**{**TINY_FORM, "steps": 5000}, run_name="too-long"), "at most 2000 training steps"),
        (lambda: train_tab.start_training(**{**TINY_FORM, "d_model": 512}, run_name="too-wide"), "d_model at most 256"),
        (lambda: inside_tab.zero_shot("tiny", "Built-in test split", None, 1, 500), "at most 200 sentences"),
        (lambda: inside_tab.zero_shot("tiny", "Built-in test split", None, 8, 5), "a beam of at most 6"),
        (lambda: inside_tab.side_by_side("tiny", "zz-shipped-copy", SENTENCE, "en", "de", 8), "a beam of at most 6"),
        (lambda: inside_tab.side_by_side("tiny", "zz-shipped-copy", "x" * 2001, "en", "de"), "at most 2000 characters"),
        (lambda: train_tab.start_training(**{**TINY_FORM, "layers": 5}, run_name="too-deep"), "at most 4 layers"),
        (lambda: train_tab.start_training(**{**TINY_FORM, "tokens_per_batch": 8001}, run_name="too-big"), "at most 8000 tokens per batch"),
    ],
)
def test_hosted_mode_refuses_oversize_requests(hosted: None, second_model: str, call, message: str) -> None:
    with pytest.raises(gr.Error, match=f"Too large for this hosted app: {message}"):
        call()
    assert state.JOBS.running is None


def test_hosted_mode_refuses_big_uploads(hosted: None, tmp_path: Path) -> None:
    big = tmp_path / "big.tsv"
    big.write_text("en\tde\n" + "a dog\tein Hund\n" * 400_000, encoding="utf-8")  # about 6 MB
    with pytest.raises(gr.Error, match="big.tsv: .* MB is over the 5 MB upload limit"):
        evaluate_tab.run_evaluation("tiny", None, "Uploaded files", [str(big)])
    with pytest.raises(gr.Error, match="upload limit"):
        train_tab.start_training(**{**TINY_FORM, "source": data.UPLOAD, "files": [str(big)]}, run_name="big-upload")
    with pytest.raises(gr.Error, match="upload limit"):
        inside_tab.tokenization("tiny", "Uploaded files", [str(big)])


def test_hosted_mode_allows_what_fits_and_says_what_the_caps_are(hosted: None) -> None:
    output, *_ = translate_tab.translate("tiny", SENTENCE, "en", "de", translate_tab.BEAM, 6)
    assert isinstance(output, str)
    folder, *_ = train_tab.data_source_changed(data.MULTI30K, None)
    assert folder["visible"] is False  # no free-text server folder on a public Space
    with pytest.raises(gr.Error, match="reads Multi30K from its own folder only"):
        train_tab.start_training(**{**TINY_FORM, "source": data.MULTI30K, "multi30k_folder": "/etc"}, run_name="server-path")
    blocks = demo_app.build_demo()
    notes = [str(block.value) for block in blocks.blocks.values() if isinstance(block, gr.Markdown)]
    caps = next(note for note in notes if "Hosted mode: training ≤ 2000 steps" in note)
    assert "≤ 4 layers" in caps and "≤ 8000 tokens per batch" in caps


def test_local_mode_shows_its_caps_in_the_guide_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POLYGLOT_HOSTED", raising=False)
    folder, *_ = train_tab.data_source_changed(data.MULTI30K, None)
    assert folder["visible"] is True
    blocks = demo_app.build_demo()
    limits = [block for block in blocks.blocks.values() if getattr(block, "elem_id", None) in ("limits", "guide-limits")]
    assert [block.elem_id for block in limits] == ["guide-limits"] and "Local mode" in limits[0].value
    assert "six exercises" in guide_tab.INTRO


# --- the engine of the bulk paths (Translate, Evaluate, Inside's zero-shot) ----------------------


def test_engine_choice_offers_the_installed_engines_default_first() -> None:
    from core import ct2

    with gr.Blocks():
        radio = ui.engine_choice()
    assert [value for _, value in radio.choices] == ct2.bulk_engines() and radio.value == ct2.bulk_engines()[0]
    assert ("CTranslate2 (fast, same translations)", "ctranslate2") in radio.choices or not ct2.available()
    with pytest.raises(gr.Error, match="not available here"):
        translate_tab.translate("tiny", SENTENCE, "en", "de", engine="tensorflow")


def _ct2_sentences() -> int:
    from core import ct2

    return ct2.stats["ct2"]  # sentences CTranslate2 translated: it rises only when that engine ran


def test_translate_tab_on_ctranslate2_gives_the_torch_translations() -> None:
    pytest.importorskip("ctranslate2")
    text = f"{SENTENCE}\nThe cat sleeps.\nA woman reads a book."
    before = _ct2_sentences()
    output, table, note = translate_tab.translate("tiny", text, "en", "de", engine="ctranslate2")
    after = _ct2_sentences()
    assert after > before and note.startswith("Engine: CTranslate2 float32 · ")
    torch_output, torch_table, torch_note = translate_tab.translate("tiny", text, "en", "de", engine="torch")
    assert _ct2_sentences() == after and torch_note.startswith("Engine: PyTorch · ")
    assert output == torch_output and list(table["translation"]) == list(torch_table["translation"])
    assert table["score"].tolist() == pytest.approx(torch_table["score"].tolist(), abs=1e-3)


def test_translate_tab_runs_bfloat16_and_int8_arithmetic_on_pytorch() -> None:
    pytest.importorskip("ctranslate2")
    before = _ct2_sentences()
    for precision in ("int8", "bfloat16"):
        output, table, note = translate_tab.translate("tiny", SENTENCE, "en", "de", precision=precision, engine="ctranslate2")
        assert f"Engine: PyTorch, {precision} arithmetic" in note and table["translation"][0] == output
    assert _ct2_sentences() == before


def test_evaluate_tab_on_ctranslate2_names_the_engine_and_scores_as_torch() -> None:
    pytest.importorskip("ctranslate2")
    args = ("tiny", ui.NONE, "Built-in test split", None, "en-de,de-fr", 1, 6)
    before = _ct2_sentences()
    summary, bleu, chrf, *_ = evaluate_tab.run_evaluation(*args, "ctranslate2")
    after = _ct2_sentences()
    assert after > before and "Engine: CTranslate2 float32" in summary
    torch_summary, torch_bleu, torch_chrf, *_ = evaluate_tab.run_evaluation(*args, "torch")  # another engine: scored anew
    assert _ct2_sentences() == after and "Engine: PyTorch" in torch_summary
    assert list(bleu.data[0].y) == list(torch_bleu.data[0].y) and list(chrf.data[0].y) == list(torch_chrf.data[0].y)


def test_zero_shot_on_ctranslate2_gives_the_torch_bleu_direct_and_pivoted(en_centric_model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ctranslate2")
    translator = state.get_translator(en_centric_model)
    engines: list[str] = []
    translate = translator.translate
    monkeypatch.setattr(
        translator,
        "translate",
        lambda texts, src, tgt, **options: engines.append(options.get("engine")) or translate(texts, src, tgt, **options),
    )
    before = _ct2_sentences()
    summary, matrix, bars = inside_tab.zero_shot(en_centric_model, "Built-in test split", None, 1, 3, "ctranslate2")
    assert _ct2_sentences() > before and "Engine: CTranslate2 float32" in summary
    assert engines == ["ctranslate2"] * (6 + 2 * 2)  # six directions, and de-fr, fr-de pivoted in two hops each
    torch_summary, torch_matrix, torch_bars = inside_tab.zero_shot(en_centric_model, "Built-in test split", None, 1, 3, "torch")
    assert "Engine: PyTorch" in torch_summary
    assert summary.replace("CTranslate2 float32", "PyTorch") == torch_summary
    assert [list(t.y) for t in bars.data] == [list(t.y) for t in torch_bars.data]


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
