"""Generate tab: sampling several translations, the decoder as a language model step by step, and
completing a translation the user started (prefix-constrained greedy, beam or sampling)."""

from __future__ import annotations

import html

import gradio as gr
import pandas as pd
import plotly.graph_objects as go

from core import limits, plots
from core.translator import StepView
from demo import data, state
from demo.ui import (
    entered_text,
    explain,
    first_view,
    friendly_errors,
    language_pair,
    language_pair_update,
    results_table,
)

INTRO = (
    "The decoder is a language model: at each step it gives a probability to every next piece. "
    "Sample several translations (temperature, top-k, top-p), or walk through the steps and see "
    "which pieces competed."
)
SAMPLE_COLUMNS = ["rank", "candidate", "log-probability", "pieces"]
GREEDY, BEAM, SAMPLING = "Greedy", "Beam search (4)", "Sampling"
COMPLETE_NOTE = (
    "Type the beginning of the translation: the model continues from there. Or build it piece by "
    "piece: see the most probable next pieces, pick one, add it, and go on."
)


@friendly_errors
def sample(
    checkpoint: str,
    text: str,
    src: str,
    tgt: str,
    n: float = 5,
    temperature: float = 1.0,
    top_k: float = 0,
    top_p: float = 1.0,
    seed: float = 0,
) -> pd.DataFrame:
    """`n` sampled translations, most probable first, with the model's log-probabilities."""
    text = entered_text(text)
    limits.check_search(candidates=int(n))
    translator = state.get_translator(checkpoint)
    candidates = translator.sample(
        text, src, tgt, n=int(n), temperature=float(temperature), top_k=int(top_k), top_p=float(top_p), seed=int(seed)
    )
    rows = [[rank, c.text, round(c.log_prob, 3), len(c.pieces)] for rank, c in enumerate(candidates, 1)]
    return pd.DataFrame(rows, columns=SAMPLE_COLUMNS)


@friendly_errors
def decode_steps(
    checkpoint: str, text: str, src: str, tgt: str, top_k: float = 10, follow: str = ""
) -> tuple[list[StepView], dict, go.Figure, str]:
    """Greedy decoding (or the pieces of `follow`), one step at a time: the steps, a slider over
    them, and the first step's chart and text."""
    text = entered_text(text)
    limits.check_text(follow or "")
    translator = state.get_translator(checkpoint)
    steps = translator.step_by_step(text, src, tgt, top_k=int(top_k), follow=follow.strip() or None)
    slider = gr.update(minimum=1, maximum=max(2, len(steps)), value=1, interactive=len(steps) > 1)  # Gradio: min < max
    figure, description = show_step(steps, 1)
    return steps, slider, figure, description


@friendly_errors
def complete(checkpoint: str, text: str, src: str, tgt: str, prefix: str = "", decoding: str = GREEDY, seed: float = 0) -> str:
    """The translation of `text` that starts with `prefix`, completed by the chosen search."""
    text = entered_text(text)
    limits.check_text(prefix or "")
    translator = state.get_translator(checkpoint)
    if decoding == SAMPLING:
        return translator.sample(text, src, tgt, n=1, seed=int(seed), prefix=prefix)[0].text
    beam = 4 if decoding == BEAM else 1
    return translator.translate(text, src, tgt, beam_size=beam, prefix=prefix)[0].text


@friendly_errors
def next_pieces(checkpoint: str, text: str, src: str, tgt: str, prefix: str = "", top_k: float = 10) -> tuple[go.Figure, dict]:
    """The most probable next pieces after `prefix`: a chart, and the choice of one to add."""
    text = entered_text(text)
    limits.check_text(prefix or "")
    translator = state.get_translator(checkpoint)
    candidates = translator.next_pieces(text, src, tgt, prefix=prefix, top_k=int(top_k))
    top = candidates[0][0] if candidates else None
    figure = plots.next_token_bars(candidates, top, title=f"After “{html.escape(prefix.strip()) or '(start)'}”: next piece")
    return figure, gr.update(choices=[piece for piece, _ in candidates], value=top)


def add_piece(prefix: str | None, piece: str | None) -> str:
    """`prefix` with a piece appended as text ('▁' starts a new word; </s> ends and adds nothing)."""
    prefix = prefix or ""
    if not piece or piece.startswith("<"):
        return prefix
    return (prefix + piece.replace("▁", " ")).lstrip()


def show_step(steps: list[StepView] | None, number: float) -> tuple[go.Figure, str]:
    """Chart of the top next pieces at step `number` (1-based), and the translation so far."""
    if not steps:
        return plots.next_token_bars([], None), "Press *Show the steps* first."
    index = min(max(int(number), 1), len(steps)) - 1
    step = steps[index]
    figure = plots.next_token_bars(step.candidates, step.chosen, title=f"Step {index + 1} of {len(steps)}: next piece")
    so_far = " ".join(html.escape(s.chosen) for s in steps[:index])
    description = (
        f"**Step {index + 1}/{len(steps)}** · so far: {so_far or '(start)'} · chosen: "
        f"**{html.escape(step.chosen)}** with probability {step.chosen_probability:.1%}"
    )
    if index == len(steps) - 1 and step.chosen != "</s>":
        description += " · the length limit ends the translation here, before an end-of-sentence token"
    return figure, description


def _example(checkpoint: str | None, src: str | None) -> str:
    """A first sentence from the model's own corpus, so the tab opens with something to see."""
    try:
        corpus = state.read_model_config(checkpoint).get("corpus", "") if checkpoint else ""
    except ValueError:
        corpus = ""
    examples = data.example_sentences(corpus, src) if src else []
    return examples[0] if examples else ""


def build(picker: gr.Dropdown) -> None:
    explain(INTRO)
    src, tgt, _ = language_pair(picker.value, swap=False)
    example = _example(picker.value, src.value)
    opening = (picker.value, example, src.value, tgt.value)
    text = gr.Textbox(value=example, label="Source sentence", lines=2)
    with gr.Tab("Sampling"):
        with gr.Row():
            n = gr.Slider(1, 20, value=5, step=1, label="Candidates")
            temperature = gr.Slider(0.1, 2.0, value=1.0, step=0.05, label="Temperature", info="below 1: safer, above 1: more varied")
            top_k = gr.Slider(0, 100, value=0, step=1, label="Top-k", info="0 = no limit")
            top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top-p (nucleus)")
            seed = gr.Number(value=0, precision=0, label="Seed")
        sample_button = gr.Button("Sample", variant="primary")
        candidates = results_table(
            "Candidates (log-probability: higher is more likely)", SAMPLE_COLUMNS, value=first_view(sample, *opening)
        )  # the tab opens on the example's samples
    with gr.Tab("Complete a translation"):
        explain(COMPLETE_NOTE)
        with gr.Row():
            prefix = gr.Textbox(
                label="Start of the translation", scale=3, elem_id="generate-prefix", info="the model keeps these words and continues"
            )
            completion_search = gr.Radio([GREEDY, BEAM, SAMPLING], value=GREEDY, label="Continue with", scale=2)
        complete_button = gr.Button("Complete", variant="primary")
        completion = gr.Textbox(label="Completed translation", interactive=False, elem_id="generate-completion")
        with gr.Row():
            pieces_button = gr.Button("Show the next pieces")
            piece = gr.Radio([], label="Next piece to add", scale=3)
            add_button = gr.Button("Add this piece", scale=1)
        next_chart = gr.Plot(label="Next-piece probabilities after the start", elem_id="next-pieces")
    with gr.Tab("Step by step"):
        with gr.Row():
            step_top_k = gr.Slider(2, 30, value=10, step=1, label="Pieces shown per step")
            follow = gr.Textbox(label="Follow this translation instead of the greedy one (optional)")
        steps_button = gr.Button("Show the steps", variant="primary")
        steps = gr.State([])
        slider = gr.Slider(1, 2, value=1, step=1, label="Step", interactive=False)
        description = gr.Markdown(label="Current step")
        chart = gr.Plot(label="Next-piece probabilities")

    sample_button.click(sample, [picker, text, src, tgt, n, temperature, top_k, top_p, seed], candidates, api_name="sample")
    steps_button.click(
        decode_steps, [picker, text, src, tgt, step_top_k, follow], [steps, slider, chart, description], api_name="step_by_step"
    )
    slider.input(show_step, [steps, slider], [chart, description], api_name="show_step")
    complete_button.click(complete, [picker, text, src, tgt, prefix, completion_search, seed], completion, api_name="complete")
    prefix.submit(complete, [picker, text, src, tgt, prefix, completion_search, seed], completion, api_visibility="private")
    pieces_button.click(next_pieces, [picker, text, src, tgt, prefix, step_top_k], [next_chart, piece], api_name="next_pieces")
    add_button.click(add_piece, [prefix, piece], prefix, api_name="add_piece").then(
        next_pieces, [picker, text, src, tgt, prefix, step_top_k], [next_chart, piece], api_visibility="private"
    )
    picker.change(language_pair_update, [picker, src, tgt], [src, tgt], api_visibility="private")
