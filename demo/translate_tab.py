"""Translate tab: greedy or beam search, n-best lists, one sentence into every language, how sure
the model is of each piece, and the beam search tree behind a translation."""

from __future__ import annotations

import html
import time

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from core import limits, plots
from core.confidence import domain_hint
from core.decoding import PATIENCE
from core.languages import language_name
from core.translator import PRECISIONS, Translation
from demo import data, state
from demo.ui import (
    bulk_engine,
    engine_choice,
    engine_line,
    entered_text,
    explain,
    first_sentence,
    first_view,
    friendly_errors,
    language_pair,
    language_pair_update,
    results_table,
    swap_languages,
)

INTRO = (
    "Type one sentence per line and pick two languages: the model translates each line. "
    "Greedy search takes the most probable piece at every step; beam search keeps several "
    "partial translations and returns the best ones with their scores."
)
GREEDY, BEAM = "Greedy", "Beam search"
NBEST_COLUMNS = ["line", "rank", "translation", "score"]
ALL_COLUMNS = ["language", "translation", "score"]
MAX_LINES = 200  # per request: keeps the shared server responsive (use the CLI for whole files)
# Colour bands of the per-piece confidence: (lowest probability, background colour, legend words).
CONFIDENCE_BANDS = [
    (0.8, "#b7e4c7", "sure (80% or more)"),
    (0.5, "#e6f2b3", "fairly sure (50–80%)"),
    (0.2, "#ffd8a8", "unsure (20–50%)"),
    (0.0, "#ffb3b3", "guessing (below 20%)"),
]
CONFIDENCE_NOTE = (
    "Each piece is coloured by the model's probability of it, given the source and the pieces "
    "before it; hover over a piece for the number. The sentence confidence is the geometric mean "
    "of these probabilities (end of sentence included). Label smoothing in training keeps even "
    "certain pieces near 90%."
)
PIECE_STYLE = "padding:0.1em 0.15em;border-radius:3px;white-space:pre;color:#222;line-height:1.9"
TREE_NOTE = (
    "Each column is a step. Beam search weighs twice the beam size of continuations of its live beams, "
    "keeps the best that do not end (blue), collects those that end with </s> (green) and drops the rest "
    f"(grey); a sentence stops once {PATIENCE:g} × the beam size have ended, or at its length limit. "
    "Red paths are the final n-best; hover over a node for the log-probability of its path. "
    "Greedy search is the one-branch case."
)


def _beam(decoding: str, beam_size: float) -> int:
    return 1 if decoding == GREEDY else max(1, int(beam_size))


@friendly_errors
def translate(
    checkpoint: str,
    text: str,
    src: str,
    tgt: str,
    decoding: str = GREEDY,
    beam_size: float = 4,
    length_penalty: float = 1.0,
    n_best: float = 1,
    precision: str = "float32",
    engine: str = "torch",
) -> tuple[str, pd.DataFrame, str]:
    """Translate each line of `text` with `engine` (`demo.ui.bulk_engine`); returns the translations
    (one per line), the n-best table, and which engine ran with its time."""
    text = entered_text(text)
    beam = _beam(decoding, beam_size)
    limits.check_search(beam_size=beam)
    translator = state.get_translator(checkpoint, precision)
    lines = text.strip("\n").splitlines()
    if len(lines) > MAX_LINES:
        raise gr.Error(
            f"{len(lines)} lines is more than the {MAX_LINES} translated at once here; use `python -m core translate` for whole files."
        )
    engine = bulk_engine(translator, engine, precision)
    start = time.perf_counter()
    results = translator.translate(
        lines, src, tgt, beam_size=beam, length_penalty=float(length_penalty), n_best=min(int(n_best), beam), engine=engine
    )
    seconds = time.perf_counter() - start  # shown, so the engines' speeds can be compared
    if any(r.truncated for r in results):
        gr.Warning("Some lines were longer than the model reads and were cut.")
    rows = [
        [number, rank, hypothesis, round(score, 3)]
        for number, result in enumerate(results, 1)
        if result.source.strip()
        for rank, (hypothesis, score) in enumerate(result.n_best, 1)
    ]
    note = f"{engine_line(translator.config.get('engine', engine), precision)} · {seconds:.2f} s"  # a Hugging Face model names its own
    return "\n".join(r.text for r in results), pd.DataFrame(rows, columns=NBEST_COLUMNS), note


@friendly_errors
def confidence(
    checkpoint: str,
    text: str,
    src: str,
    tgt: str,
    decoding: str = GREEDY,
    beam_size: float = 4,
    length_penalty: float = 1.0,
    precision: str = "float32",
) -> str:
    """Each line's translation with its pieces coloured by the model's probability of them, the
    sentence confidence, and a plain hint when the sentence looks unlike the training data (HTML)."""
    text = entered_text(text)
    beam = _beam(decoding, beam_size)
    limits.check_search(beam_size=beam)
    translator = state.get_translator(checkpoint, precision)
    lines = text.strip("\n").splitlines()[:MAX_LINES]
    results = translator.translate(lines, src, tgt, beam_size=beam, length_penalty=float(length_penalty), scores=True)
    return confidence_html(results, translator.config.get("corpus"))


def _band(probability: float) -> tuple[str, str]:
    return next((colour, words) for low, colour, words in CONFIDENCE_BANDS if probability >= low)


def confidence_legend() -> str:
    return (
        "<div class='confidence-legend'>"
        + " ".join(f"<span class='piece' style='background:{colour};{PIECE_STYLE}'>{words}</span>" for _, colour, words in CONFIDENCE_BANDS)
        + "</div>"
    )


def confidence_html(results: list[Translation], corpus: str | None) -> str:
    """Each translation's pieces coloured by probability (hover shows it), its sentence confidence,
    and the out-of-domain hint when the confidence is low."""
    lines = []
    for number, result in enumerate(results, 1):
        if not result.piece_probs:
            continue
        spans = []
        for piece, probability in zip([*result.pieces, "</s>"], result.piece_probs):
            colour, words = _band(probability)
            shown = "⏎" if piece == "</s>" else piece.replace("▁", " ")
            spans.append(
                f"<span class='piece' style='background:{colour};{PIECE_STYLE}' title='{html.escape(piece)}: "
                f"{probability:.1%} ({words})'>{html.escape(shown)}</span>"
            )
        hint = domain_hint(result.confidence, corpus)
        lines.append(
            f"<div class='confidence-line'><b>{number}.</b> {''.join(spans)} "
            f"<span class='confidence-score' style='margin-left:0.5em'>confidence <b>{result.confidence:.0%}</b></span>"
            + (f"<div class='confidence-hint'>⚠️ {html.escape(hint)}</div>" if hint else "")
            + "</div>"
        )
    if not lines:
        return ""
    return confidence_legend() + "".join(lines) + f"<p class='tab-intro'>{CONFIDENCE_NOTE}</p>"


@friendly_errors
def search_tree(
    checkpoint: str,
    text: str,
    src: str,
    tgt: str,
    decoding: str = BEAM,
    beam_size: float = 4,
    length_penalty: float = 1.0,
    n_best: float = 3,
    precision: str = "float32",
) -> tuple[go.Figure, str]:
    """The beam search tree of the first line: what was kept, finished and dropped at each step."""
    sentence = first_sentence(text)
    beam = _beam(decoding, beam_size)
    limits.check_search(beam_size=beam)
    translator = state.get_translator(checkpoint, precision)
    view = translator.beam_tree(sentence, src, tgt, beam_size=beam, length_penalty=float(length_penalty), n_best=min(int(n_best), beam))
    kind = "greedy search (one branch)" if beam == 1 else f"beam {beam}"
    figure = plots.beam_tree(view.nodes, title=f"Search tree · {kind} · {len(view.nodes) - 1} candidates weighed")
    return figure, f"**Translation:** {html.escape(view.translation.text) or '(empty)'}  \n{TREE_NOTE}"


@friendly_errors
def translate_to_all(
    checkpoint: str,
    text: str,
    src: str,
    decoding: str = GREEDY,
    beam_size: float = 4,
    length_penalty: float = 1.0,
    precision: str = "float32",
) -> pd.DataFrame:
    """The first line of `text` translated into every other language of the model."""
    sentence = first_sentence(text)
    beam = _beam(decoding, beam_size)
    limits.check_search(beam_size=beam)
    translator = state.get_translator(checkpoint, precision)
    results = translator.translate_to_all(sentence, src, beam_size=beam, length_penalty=float(length_penalty))
    rows = [[f"{language_name(lang)} ({lang})", result.text, round(result.score, 3)] for lang, result in results.items()]
    return pd.DataFrame(rows, columns=ALL_COLUMNS)


def swap(src: str, tgt: str, text: str, translation: str) -> tuple[str, str, str, str]:
    """Swap the languages; the translation becomes the new input."""
    new_src, new_tgt = swap_languages(src, tgt)
    return new_src, new_tgt, translation if translation and translation.strip() else text, ""


def _example_samples(checkpoint: str | None, src: str | None) -> list[list[str]]:
    if not checkpoint or not src:
        return []
    try:
        corpus = state.read_model_config(checkpoint).get("corpus", "")
    except ValueError:
        return []
    return [[sentence] for sentence in data.example_sentences(corpus, src)]


def examples(checkpoint: str | None, src: str | None) -> dict:
    """Example sentences in the source language (from the model's own corpus when possible)."""
    return gr.update(samples=_example_samples(checkpoint, src))


def pick_example(sample: list[str] | None) -> str:
    return sample[0] if sample else ""


def _opening(checkpoint: str | None, src: str | None, tgt: str | None) -> tuple[str, tuple | None, str | None]:
    """The first example sentence, its translation and n-best table, and its confidence, so the tab
    opens on a translation instead of an empty screen (None where they cannot be computed)."""
    samples = _example_samples(checkpoint, src)
    if not samples:
        return "", None, None
    example = samples[0][0]
    return example, first_view(translate, checkpoint, example, src, tgt), first_view(confidence, checkpoint, example, src, tgt)


def build(picker: gr.Dropdown) -> None:
    explain(INTRO)
    src, tgt, swap_button = language_pair(picker.value)
    example, shown, sure = _opening(picker.value, src.value, tgt.value)
    with gr.Row():
        with gr.Column():
            text = gr.Textbox(value=example, label="Text (one sentence per line)", lines=5, elem_id="translate-input")
            sample_set = gr.Dataset(
                components=[text], samples=_example_samples(picker.value, src.value), label="Examples (click to use)", samples_per_page=5
            )
        with gr.Column():
            output = gr.Textbox(
                shown[0] if shown else "", label="Translation", lines=5, interactive=False, elem_id="translate-output", buttons=["copy"]
            )
            engine_note = gr.Markdown(shown[2] if shown else "", elem_id="translate-engine")
            confidence_view = gr.HTML(sure or "", label="How sure the model is of each piece", elem_id="translate-confidence")
    with gr.Row():
        decoding = gr.Radio([GREEDY, BEAM], value=GREEDY, label="Search")
        beam_size = gr.Slider(1, 12, value=4, step=1, label="Beam size")
        length_penalty = gr.Slider(
            0.0, 2.0, value=1.0, step=0.1, label="Length penalty", info="0 favours short outputs, 1 ranks by mean log-probability per piece"
        )
        n_best = gr.Slider(1, 12, value=3, step=1, label="n-best (beam only)")
        precision = gr.Radio(
            list(PRECISIONS),
            value="float32",
            label="Arithmetic",
            info="bfloat16 and int8 trade a little accuracy for speed on CPUs that support them (PyTorch arithmetic: they run on PyTorch)",
        )
        engine = engine_choice()
    with gr.Row():
        translate_button = gr.Button("Translate", variant="primary", elem_id="translate-button")
        all_button = gr.Button("Translate into every language")
    nbest_table = results_table(
        "n-best list (higher score is better)", NBEST_COLUMNS, elem_id="nbest-table", value=shown[1] if shown else None
    )
    all_table = results_table("One sentence in every language", ALL_COLUMNS)
    with gr.Accordion("Search tree of the first line: what beam search kept and dropped", open=False):
        tree_button = gr.Button("Show the search tree")
        tree_note = gr.Markdown()
        tree = gr.Plot(label="Beam search tree", elem_id="beam-tree")

    options = [decoding, beam_size, length_penalty]
    scored = [picker, text, src, tgt, *options, precision]
    wanted, translated = [picker, text, src, tgt, *options, n_best, precision, engine], [output, nbest_table, engine_note]
    translate_button.click(translate, wanted, translated, api_name="translate").success(
        confidence, scored, confidence_view, api_name="confidence"
    )
    text.submit(translate, wanted, translated, api_visibility="private").success(
        confidence, scored, confidence_view, api_visibility="private"
    )
    tree_button.click(search_tree, [picker, text, src, tgt, *options, n_best, precision], [tree, tree_note], api_name="beam_tree")
    all_button.click(translate_to_all, [picker, text, src, *options, precision], all_table, api_name="translate_to_all")
    swap_button.click(swap, [src, tgt, text, output], [src, tgt, text, output], api_name="swap_languages")
    picker.change(language_pair_update, [picker, src, tgt], [src, tgt], api_visibility="private")
    src.change(examples, [picker, src], sample_set, api_visibility="private")
    sample_set.click(pick_example, sample_set, text, api_visibility="private")
