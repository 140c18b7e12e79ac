"""Inside tab: what a multilingual model learned — zero-shot directions, transfer to a low-resource
language, the shared sentence space, the shared vocabulary, and two models side by side.

Each section has its handler (one `core.analysis` call plus formatting) and its builder."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from core import limits, plots, transfer
from core.analysis import (
    compare_translations,
    sentence_space,
    to_series,
    tokenization_report,
    zero_shot_report,
    zero_shot_table,
)
from core.events import Event, status_words
from core.jobs import Job
from core.languages import language_name
from demo import data, state
from demo.ui import (
    HEAVY,
    NONE,
    bulk_engine,
    check_sentences,
    choose_test_set,
    engine_choice,
    engine_line,
    explain,
    file_upload,
    first_sentence,
    friendly_errors,
    language_choices,
    language_pair,
    language_pair_update,
    other_model_picker,
    progress_html,
    results_table,
    show_uploads_for,
)

INTRO = (
    "Look inside multilingual learning: one model shares its weights and its vocabulary between "
    "all its languages. Each section below asks what that sharing buys, with plots you can read in a minute."
)
ZERO_SHOT_INTRO = (
    "**Zero-shot:** can the model translate directions it never saw a single pair of (marked *)? "
    "Compare with pivoting, translating through English in two trained hops."
)
TRANSFER_INTRO = (
    "**Transfer:** English→Czech gets only N pairs, while German and French keep all theirs. Three "
    "ways to build the model: **(a)** train on the N pairs alone; **(b)** train on everything together "
    "from scratch; **(c)** start from a model pretrained on English, German and French — which has "
    "never seen a word of Czech — and fine-tune it on the N pairs (its vocabulary grows for Czech). "
    "Error bars are 95% bootstrap intervals on the test set."
)
TRANSFER_SMALL = (
    "**See it happen:** the small version trains the three methods again on a Multi30K subset (the "
    "built-in corpus when Multi30K is not here) with fewer steps, and (c) starts from the stored "
    "experiment's pretrained model (shipped as `transfer-parent-en-de-fr`) instead of pretraining "
    "one: about ten minutes on two CPU cores. Its numbers are lower and noisier than the stored ones."
)
EMBEDDING_INTRO = (
    "**Sentence space:** each sentence becomes a vector (the mean of the encoder's states). If the "
    "model shares one space, translations of a sentence (joined by grey lines) land close together."
)
TOKEN_INTRO = (
    "**Shared vocabulary:** every language is cut into pieces from one vocabulary. Compare how one "
    "sentence is cut, how many pieces a word needs (fertility), and how many pieces two languages share."
)
SIDE_INTRO = (
    "**Side by side:** two models translate the same sentence; the heatmaps show where each one looks "
    "in the source (cross-attention of the last decoder layer, averaged over heads)."
)

DEFAULT_ZERO_SHOT_SENTENCES = 50
DEFAULT_EMBEDDING_SENTENCES = 40
TOKEN_STATS_LINES = 500  # test lines per language for fertility and vocabulary use
TRANSFER = "transfer experiment"  # Job.kind of the experiment
POLL_SECONDS = 1.0
RETRIEVAL_TITLE = "Sentence retrieval: is the nearest sentence in the other language its translation?"
PIECES_COLUMNS = ["language", "sentence", "pieces", "number of pieces"]
TOKEN_STATS_COLUMNS = ["language", "pieces per word", "distinct pieces used", "share of the vocabulary"]
SIDE_COLUMNS = ["model", "translation", "score", "zero-shot", "seconds"]


# --- a. zero-shot vs pivot vs supervised ----------------------------------------------------------


@friendly_errors
def zero_shot(
    checkpoint: str,
    test_set: str,
    files: list | None = None,
    beam_size: float = 1,
    max_sentences: float = DEFAULT_ZERO_SHOT_SENTENCES,
    engine: str = "torch",
    progress: gr.Progress = gr.Progress(),
) -> tuple[str, go.Figure, go.Figure]:
    """BLEU of every direction, zero-shot ones marked, with the pivot-through-English score beside
    each zero-shot one, translated by `engine` (`demo.ui.bulk_engine`): a Markdown table, the BLEU
    matrix and direct-vs-pivot bars."""
    beam, limit = max(1, int(beam_size)), max(1, int(max_sentences))
    limits.check_search(beam_size=beam)
    check_sentences(limit)
    translator = state.get_translator(checkpoint)
    _, lines = data.load_test_set(test_set, files)
    report = zero_shot_report(
        translator,
        lines,
        beam_size=beam,
        max_sentences=limit,
        progress=lambda fraction, message: progress(fraction, desc=message),
        engine=bulk_engine(translator, engine),
    )
    notes = [zero_shot_table(report), f"BLEU signature: `{report['bleu_signature']}`  \n{engine_line(report['engine'])}"]
    if not report["zero_shot"]:
        notes.insert(
            0,
            "This model was trained on every direction below, so none is zero-shot. Train an "
            "**English-centric** model (Train tab, *Directions*) to see what zero-shot gives.",
        )
    matrix = plots.direction_matrix(
        report["bleu"],
        report["languages"],
        "BLEU",
        zero_shot=set(report["zero_shot"]),
        title=f"BLEU per direction · {translator.name} (* zero-shot)",
    )
    series = {"direct": report["bleu"]}
    if report["pivot_bleu"]:
        series[f"pivot via {report['via']}"] = report["pivot_bleu"]
    bars = plots.bleu_bars(series, "BLEU")
    return "\n\n".join(notes), matrix, bars


# --- b. cross-lingual transfer: the stored Multi30K result, and a small rerun in the background ------


def stored_transfer() -> tuple[go.Figure, go.Figure, str]:
    """The measured Multi30K experiment (`python -m core transfer`), drawn without training anything:
    test BLEU against N, the validation curves, and the table with intervals."""
    result = transfer.stored_result()
    if result is None:
        return (plots.transfer_curve({}), plots.transfer_validation({}), "No stored result: run `python -m core transfer --data multi30k`.")
    return plots.transfer_curve(result), plots.transfer_validation(result), _transfer_report(result, stored=True)


def _transfer_report(result: dict[str, Any], stored: bool = False) -> str:
    budget = result["budget"]
    where = (
        f"Stored result ({result['corpus']}, {result['hardware']})."
        if stored
        else f"This run: {result['corpus']}, {result['test_sentences']} test sentences."
    )
    return "\n\n".join(
        [
            where,
            transfer.transfer_table(result),
            transfer.findings(result),
            f"Budget: (a) and (b) {budget['bilingual']} each; (c) {budget['finetuned']}; "
            f"{budget['tokens_per_batch']} tokens per batch; best checkpoint on validation BLEU.",
        ]
    )


@friendly_errors
def start_transfer(low_resource: str) -> tuple[str, dict]:
    """Start the small version of the experiment (Multi30K when present, else the built-in corpus);
    (c) fine-tunes the stored experiment's pretrained English/German/French model."""
    corpus = data.transfer_corpus()
    setup = dataclasses.replace(
        transfer.SMALL, low_resource=low_resource, train=dataclasses.replace(transfer.SMALL.train, threads=state.training_threads())
    )
    name = f"transfer-{corpus.name}-{low_resource}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder = state.checkpoints_dir() / name

    def experiment(listeners: list) -> dict[str, Any]:
        return transfer.run_experiment(corpus, setup, folder, listeners)

    job = state.JOBS.start_task(name, state.checkpoints_dir(), experiment, total_steps=transfer.total_steps(setup), kind=TRANSFER)
    runs = (0 if setup.pretrained else 1) + 3 * len(setup.sizes)
    return (f"Started **{job.name}** on {corpus.name}: {runs} small models, one after the other.", gr.update(active=True))


@friendly_errors
def cancel_transfer() -> str:
    job = state.JOBS.running
    if job is None or job.kind != TRANSFER:
        return "No experiment is running."
    state.JOBS.cancel()
    return f"Cancelling **{job.name}**: it stops at the next training step."


def _transfer_status_text(job: Job | None) -> str:
    if job is None:
        return "No experiment of yours yet: the plot shows the stored result. Press **Run the small version** to see it happen."
    if job.status == "running":
        run = next((e["run"] for e in reversed(job.events) if "run" in e), None)
        training = f"training {run}" if run else job.stage
        return f"**{job.name}** · {training} · step {job.step} of at most {job.total_steps}"
    if job.status == Event.FAILED:
        return f"**{job.name}** · **failed** · {job.error}"
    return f"**{job.name}** · **{status_words(job.status)}**"


def transfer_status() -> tuple:
    """Timer tick: status, progress bar and, once the small experiment is done, its plot and table.
    Returns (status, progress, chart, curves, table, timer)."""
    job = state.JOBS.current
    if job is None or job.kind != TRANSFER:
        return _transfer_status_text(None), "", gr.skip(), gr.skip(), gr.skip(), gr.update(active=False)
    ended = job.status != "running"
    result = job.result if ended else None
    if not result:
        return _transfer_status_text(job), progress_html(job), gr.skip(), gr.skip(), gr.skip(), gr.update(active=not ended)
    return (
        _transfer_status_text(job),
        progress_html(job),
        plots.transfer_curve(result),
        plots.transfer_validation(result),
        _transfer_report(result),
        gr.update(active=False),
    )


# --- c. the shared sentence space ---------------------------------------------------------------


def _scatter(space: dict, name: str) -> go.Figure:
    layer = "embeddings" if space["layer"] == 0 else f"encoder layer {space['layer']}"
    explained = sum(space["explained_variance"])
    return plots.embedding_scatter(
        space["points"],
        space["languages"],
        space["sentence_ids"],
        space["labels"],
        title=f"{name} · {layer} · PCA ({explained:.0%} of the variance)",
    )


def _sentence_space(
    checkpoint: str, test_set: str, files: list | None, n_sentences: float, layer: float | None, remove_language_mean: bool, retrieval: bool
) -> tuple[dict, str]:
    check_sentences(int(n_sentences))
    translator = state.get_translator(checkpoint)
    _, lines = data.load_test_set(test_set, files)
    space = sentence_space(
        translator, lines, int(n_sentences), None if layer is None else int(layer), bool(remove_language_mean), retrieval=retrieval
    )
    return space, translator.name


@friendly_errors
def embedding(
    checkpoint: str,
    test_set: str,
    files: list | None = None,
    n_sentences: float = DEFAULT_EMBEDDING_SENTENCES,
    layer: float | None = None,
    remove_language_mean: bool = False,
) -> tuple[go.Figure, go.Figure, pd.DataFrame, dict]:
    """The 2-D map of parallel test sentences at `layer` (0 = embeddings, None = the top; clamped to
    the model), sentence-retrieval accuracy at every layer (chart and table), and the layer slider
    sized to the model."""
    space, name = _sentence_space(checkpoint, test_set, files, n_sentences, layer, remove_language_mean, True)
    accuracy, mean = space["retrieval"], space["retrieval_mean"]
    layers, series = to_series(accuracy)
    chart = plots.line_chart(
        layers, {"mean": [mean[k] for k in layers], **series}, "encoder layer (0 = embeddings)", "top-1 accuracy", RETRIEVAL_TITLE
    )
    rows = [{"layer": k, "mean": round(mean[k], 3), **{pair: round(v, 3) for pair, v in accuracy[k].items()}} for k in layers]
    slider = gr.update(maximum=space["n_layers"] - 1, value=space["layer"])
    return _scatter(space, name), chart, pd.DataFrame(rows), slider


@friendly_errors
def embedding_layer(
    checkpoint: str,
    test_set: str,
    files: list | None = None,
    n_sentences: float = DEFAULT_EMBEDDING_SENTENCES,
    layer: float | None = None,
    remove_language_mean: bool = False,
) -> go.Figure:
    """Only the 2-D map, at another layer (the slider)."""
    space, name = _sentence_space(checkpoint, test_set, files, n_sentences, layer, remove_language_mean, False)
    return _scatter(space, name)


def encoder_layers(choice: str | None) -> int:
    """Encoder layers of the picked model, from its config (1 when unknown)."""
    try:
        return int(state.read_model_config(choice)["run"]["model"]["n_encoder_layers"])
    except (ValueError, KeyError):
        return 1


def layer_slider(choice: str | None) -> dict:
    top = encoder_layers(choice)
    return gr.update(maximum=top, value=top)


# --- d. tokenization across languages -----------------------------------------------------------


@friendly_errors
def tokenization(
    checkpoint: str, test_set: str, files: list | None = None, number: float = 1
) -> tuple[pd.DataFrame, pd.DataFrame, go.Figure, go.Figure]:
    """Test sentence `number` (1-based) cut into pieces in each language, pieces per word and the
    share of the vocabulary each language uses, and the Jaccard overlap of the languages' pieces."""
    translator = state.get_translator(checkpoint)
    _, lines = data.load_test_set(test_set, files)
    report = tokenization_report(translator, lines, int(number), TOKEN_STATS_LINES)
    languages, chosen, pieces = report["languages"], report["sentences"], report["pieces"]
    per_word, usage = report["fertility"], report["usage"]
    label = {lang: f"{language_name(lang)} ({lang})" for lang in languages}
    pieces_table = pd.DataFrame(
        [[label[lang], chosen[lang], " · ".join(pieces[lang]), len(pieces[lang])] for lang in languages], columns=PIECES_COLUMNS
    )
    stats = pd.DataFrame(
        [[label[lang], round(per_word[lang], 2), usage["used"][lang], f"{usage['share'][lang]:.1%}"] for lang in languages],
        columns=TOKEN_STATS_COLUMNS,
    )
    bars = plots.bleu_bars({"pieces per word": per_word}, "pieces per word")
    bars.update_layout(title_text=f"Fertility: pieces per word over {report['count']} test sentences", showlegend=False)
    bars.update_xaxes(title_text="language")
    jaccard = {pair: 100 * value for pair, value in usage["jaccard"].items()}  # percent: readable at one decimal
    matrix = plots.direction_matrix(
        jaccard,
        languages,
        "Jaccard %",
        title=f"Shared pieces (Jaccard %) · {usage['shared_by_all']} of {usage['vocab_size']} pieces used by every language",
    )
    matrix.update_xaxes(title_text="language")
    matrix.update_yaxes(title_text="language")
    return pieces_table, stats, bars, matrix


# --- e. two models side by side -----------------------------------------------------------------


def _cross_attention(row: dict) -> go.Figure:
    """Last decoder layer's cross-attention, averaged over heads (empty if the model cannot translate)."""
    return plots.attention_heatmap(
        row["attention"], row["source_pieces"], row["target_pieces"], title=f"{row['model']} · cross-attention, last layer, mean of heads"
    )


@friendly_errors
def side_by_side(
    checkpoint: str, other: str | None, text: str, src: str, tgt: str, beam_size: float = 1
) -> tuple[pd.DataFrame, go.Figure, go.Figure]:
    """The same sentence through two models: a table of their translations and their cross-attention maps."""
    sentence = first_sentence(text)
    if not other or other in (NONE, checkpoint):
        raise gr.Error("Pick a second model to compare with (a different one from the model at the top).")
    beam = max(1, int(beam_size))
    limits.check_search(beam_size=beam)
    translators = [state.get_translator(checkpoint), state.get_translator(other)]
    rows = compare_translations(translators, sentence, src, tgt, beam_size=beam, attention=True)
    table = pd.DataFrame(
        [
            [
                row["model"],
                f"⚠️ {row['error']}" if row["error"] else row["text"],
                None if row["score"] is None else round(row["score"], 3),
                {True: "yes", False: "no"}.get(row["zero_shot"], ""),
                None if row["seconds"] is None else round(row["seconds"], 3),
            ]
            for row in rows
        ],
        columns=SIDE_COLUMNS,
    )
    first, second = (_cross_attention(row) for row in rows)
    return table, first, second


# --- the tab: one builder per section -------------------------------------------------------------


def build_zero_shot(picker: gr.Dropdown, test_set: gr.Radio, files: gr.File) -> None:
    with gr.Accordion("Zero-shot vs pivot vs supervised", open=False):  # its charts are empty until it runs
        explain(ZERO_SHOT_INTRO)
        with gr.Row():
            zs_beam = gr.Slider(1, 8, value=1, step=1, label="Beam size", info="1 = greedy, the quickest")
            zs_sentences = gr.Number(
                value=DEFAULT_ZERO_SHOT_SENTENCES,
                precision=0,
                minimum=1,
                label="Sentences per direction",
                info="more is more reliable, and slower",
            )
            zs_engine = engine_choice()
        zs_button = gr.Button("Score every direction", variant="primary")
        zs_summary = gr.Markdown(label="Zero-shot report", elem_id="zero-shot-report")
        with gr.Row():
            zs_matrix = gr.Plot(label="BLEU matrix (* zero-shot)")
            zs_bars = gr.Plot(label="Direct vs pivot")
    zs_button.click(
        zero_shot,
        [picker, test_set, files, zs_beam, zs_sentences, zs_engine],
        [zs_summary, zs_matrix, zs_bars],
        api_name="zero_shot",
        concurrency_id=HEAVY,
        concurrency_limit=1,
    )


def build_transfer(demo: gr.Blocks) -> None:
    with gr.Accordion("Cross-lingual transfer: does a language with little data gain from the others?", open=True):
        explain(TRANSFER_INTRO)
        figure, curves, report = stored_transfer()
        with gr.Row():
            transfer_chart = gr.Plot(figure, label="BLEU against training pairs", elem_id="transfer-chart")
            transfer_curves = gr.Plot(curves, label="Validation BLEU while training", elem_id="transfer-curves")
        transfer_results = gr.Markdown(report, label="Results", elem_id="transfer-results")
        explain(TRANSFER_SMALL)
        low_resource = gr.Dropdown(
            language_choices(["cs", "es"]),
            value=transfer.SMALL.low_resource,
            label="Low-resource language",
            info="English → this language gets few pairs (Spanish: built-in corpus only)",
        )
        with gr.Row():
            transfer_button = gr.Button("Run the small version", variant="primary", elem_id="start-transfer")
            transfer_cancel = gr.Button("Cancel", variant="stop")
        running = state.JOBS.running
        transfer_text = gr.Markdown(
            _transfer_status_text(state.JOBS.current if running and running.kind == TRANSFER else None), elem_id="transfer-status"
        )
        transfer_progress = gr.HTML("", label="Progress")
        transfer_timer = gr.Timer(POLL_SECONDS, active=running is not None and running.kind == TRANSFER)

    watch = [transfer_text, transfer_progress, transfer_chart, transfer_curves, transfer_results, transfer_timer]
    transfer_button.click(start_transfer, [low_resource], [transfer_text, transfer_timer], api_name="start_transfer")
    transfer_cancel.click(cancel_transfer, None, transfer_text, api_name="cancel_transfer")
    transfer_timer.tick(
        transfer_status, None, watch, api_name="transfer_status", concurrency_id="watch", concurrency_limit=None, show_progress="hidden"
    )
    demo.load(
        transfer_status, None, watch, api_visibility="private", concurrency_id="watch", concurrency_limit=None, show_progress="hidden"
    )


def build_sentence_space(picker: gr.Dropdown, test_set: gr.Radio, files: gr.File) -> None:
    with gr.Accordion("Sentence space", open=False):
        explain(EMBEDDING_INTRO)
        top = encoder_layers(picker.value)
        with gr.Row():
            n_sentences = gr.Slider(5, 100, value=DEFAULT_EMBEDDING_SENTENCES, step=1, label="Sentences per language")
            layer = gr.Slider(0, max(1, top), value=top, step=1, label="Layer", info="0 = embeddings, then encoder layers")
            remove_mean = gr.Checkbox(False, label="Remove each language's mean", info="keeps what sentences mean, drops 'this is German'")
        embedding_button = gr.Button("Map the sentence space", variant="primary")
        scatter = gr.Plot(label="Sentences, coloured by language", elem_id="embedding-scatter")
        with gr.Row():
            retrieval_chart = gr.Plot(label="Retrieval accuracy per layer")
            retrieval_table = results_table("Retrieval accuracy (chance is 1 / sentences)", ["layer", "mean"])
    space_inputs = [picker, test_set, files, n_sentences, layer, remove_mean]
    embedding_button.click(embedding, space_inputs, [scatter, retrieval_chart, retrieval_table, layer], api_name="embedding_space")
    layer.release(embedding_layer, space_inputs, scatter, api_name="embedding_layer")
    picker.change(layer_slider, picker, layer, api_visibility="private")


def build_tokenization(picker: gr.Dropdown, test_set: gr.Radio, files: gr.File) -> None:
    with gr.Accordion("Shared vocabulary", open=False):
        explain(TOKEN_INTRO)
        with gr.Row():
            number = gr.Number(value=1, precision=0, minimum=1, label="Test sentence number")
            tokens_button = gr.Button("Show the pieces", variant="primary")
        pieces_table = results_table("One sentence, cut into pieces", PIECES_COLUMNS, elem_id="pieces-table")
        stats_table = results_table("Per language", TOKEN_STATS_COLUMNS)
        with gr.Row():
            fertility_chart = gr.Plot(label="Pieces per word")
            jaccard_matrix = gr.Plot(label="Shared pieces")
    tokens_button.click(
        tokenization,
        [picker, test_set, files, number],
        [pieces_table, stats_table, fertility_chart, jaccard_matrix],
        api_name="tokenization",
    )


def build_side_by_side(picker: gr.Dropdown) -> None:
    with gr.Accordion("Two models side by side", open=False):
        explain(SIDE_INTRO)
        with gr.Row():
            other = other_model_picker("Second model", "the first is the one picked at the top")
            side_beam = gr.Slider(1, 8, value=1, step=1, label="Beam size")
        src, tgt, _ = language_pair(picker.value, swap=False)
        side_text = gr.Textbox(label="Source sentence", lines=2)
        side_button = gr.Button("Compare", variant="primary")
        side_table = results_table("Translations", SIDE_COLUMNS, elem_id="side-by-side-table")
        with gr.Row():
            first_attention = gr.Plot(label="First model")
            second_attention = gr.Plot(label="Second model")
    side_button.click(
        side_by_side,
        [picker, other, side_text, src, tgt, side_beam],
        [side_table, first_attention, second_attention],
        api_name="side_by_side",
    )
    picker.change(language_pair_update, [picker, src, tgt], [src, tgt], api_visibility="private")


def build(demo: gr.Blocks, picker: gr.Dropdown) -> None:
    explain(INTRO)
    with gr.Row():
        test_set = choose_test_set(info="for the zero-shot, sentence-space and vocabulary sections")
        files = file_upload("Test files")
    show_uploads_for(test_set, files)
    build_zero_shot(picker, test_set, files)
    build_transfer(demo)
    build_sentence_space(picker, test_set, files)
    build_tokenization(picker, test_set, files)
    build_side_by_side(picker)
