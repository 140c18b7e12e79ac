"""Attention tab: where each produced piece looks in the source, per layer and head."""

from __future__ import annotations

import gradio as gr
import numpy as np
import plotly.graph_objects as go

from core import alignment, limits, plots
from core.translator import AttentionView, AttributionView
from demo import data, state
from demo.ui import entered_text, explain, first_view, friendly_errors, language_pair, language_pair_update

INTRO = (
    "Translate one sentence and look inside: each row of the cross-attention map is one produced "
    "piece, each column a source piece; dark cells are where the decoder looked. Change the layer "
    "and head to compare what different heads attend to."
)
ATTRIBUTION_NOTE = (
    "**Attention or attribution?** The map on the left is *where the decoder looked* at each "
    "step; the one on the right is *what changed the output*: integrated gradients of each "
    "piece's probability over the source embeddings, from a sentence of padding pieces. They "
    "can disagree: a head may rest on `</s>` or the language tag while the piece is decided by "
    "a word it barely looks at, whose meaning the encoder has already mixed into other "
    "positions. The tag often gets credit too: without it the model does not know the language."
)
ALIGNMENT_NOTE = (
    "Each produced word is linked to the source word its pieces attended to most, in the decoder "
    "layer that agreed best between the two translation directions on the Multi30K test "
    "(bench/alignment.py); thicker lines took more attention. `python -m core translate "
    "--alignments` writes them as `source-target` word numbers."
)
AVERAGE = "mean"
Figures = tuple[go.Figure, go.Figure, go.Figure, go.Figure]


def head_choices(n_heads: int) -> list[tuple[str, str]]:
    """Heads are numbered from 0, as in the grid of all heads."""
    return [("average of heads", AVERAGE)] + [(f"head {h}", str(h)) for h in range(n_heads)]


def layer_choices(layers: int) -> list[tuple[str, int]]:
    return [(f"layer {n}", n) for n in range(1, layers + 1)]


def _layer_index(layers: int, layer: float) -> int:
    return min(max(int(layer), 1), layers) - 1


def _heads(weights: np.ndarray, head: str) -> np.ndarray:
    """One head of [H, T, S] weights, or their average."""
    return weights.mean(axis=0) if head == AVERAGE else weights[min(int(head), weights.shape[0] - 1)]


def _head_label(head: str) -> str:
    return "average of heads" if head == AVERAGE else f"head {int(head)}"


def attention_figures(view: AttentionView | None, layer: float = 1, head: str = AVERAGE) -> Figures:
    """Cross-attention heatmap, all heads of that layer, encoder and decoder self-attention."""
    if view is None:
        empty = plots.attention_heatmap(np.zeros((0, 0)), [], [])
        return empty, empty, empty, empty
    decoder_layer = _layer_index(view.cross.shape[0], layer)
    encoder_layer = _layer_index(view.encoder_self.shape[0], layer)
    label = _head_label(head)
    source, target = view.source_pieces, view.target_pieces
    decoder_inputs = ["<s>", *target[:-1]]  # key j of decoder self-attention is the piece fed in at step j
    cross = plots.attention_heatmap(
        _heads(view.cross[decoder_layer], head), source, target, title=f"Cross-attention · decoder layer {decoder_layer + 1} · {label}"
    )
    grid = plots.attention_head_grid(
        view.cross[decoder_layer], source, target, title=f"Every head of decoder layer {decoder_layer + 1} (cross-attention)"
    )
    encoder = plots.attention_heatmap(
        _heads(view.encoder_self[encoder_layer], head),
        source,
        source,
        title=f"Encoder self-attention · layer {encoder_layer + 1} · {label}",
        x_title="source (keys)",
        y_title="source (queries)",
    )
    decoder = plots.attention_heatmap(
        _heads(view.decoder_self[decoder_layer], head),
        decoder_inputs,
        target,
        title=f"Decoder self-attention · layer {decoder_layer + 1} · {label}",
        x_title="target (keys)",
        y_title="target (queries)",
    )
    return cross, grid, encoder, decoder


def attribution_figure(view: AttributionView | None) -> go.Figure:
    """Integrated gradients of each produced piece over the source pieces (`core.attribution`)."""
    if view is None:
        return plots.attribution_heatmap(np.zeros((0, 0)), [], [])
    return plots.attribution_heatmap(
        view.scores, view.source_pieces, view.target_pieces, title=f"Input attribution · integrated gradients, {view.steps} steps"
    )


def alignment_figure(view: AttentionView | None) -> go.Figure:
    """Word alignments of the translation shown, from the layer `core.alignment` chose."""
    if view is None:
        return plots.alignment_links([], [], [])
    found = alignment.of_attention(view)
    return plots.alignment_links(
        found.source_words,
        found.target_words,
        found.pairs,
        found.matrix,
        title=f"Word alignments · cross-attention of decoder layer {found.layer}, heads averaged",
    )


@friendly_errors
def attend(checkpoint: str, text: str, src: str, tgt: str, beam_size: float = 1) -> tuple:
    """Translate `text` and return its attention: the view (kept in gr.State), the translation,
    layer and head selectors sized to the model, the four figures, then the input attribution of
    the same translation and its word alignments."""
    text = entered_text(text)
    limits.check_search(beam_size=int(beam_size))
    translator = state.get_translator(checkpoint)
    view = translator.attention(text, src, tgt, beam_size=int(beam_size))
    layers, heads = view.cross.shape[0], view.cross.shape[1]
    translation = f"**Translation:** {view.translation.text or '(empty)'}"
    layer = gr.update(choices=layer_choices(layers), value=layers)
    head = gr.update(choices=head_choices(heads), value=AVERAGE)
    attribution = translator.attribution(text, src, tgt, beam_size=int(beam_size))
    return (
        view,
        translation,
        layer,
        head,
        *attention_figures(view, layers, AVERAGE),
        attribution_figure(attribution),
        alignment_figure(view),
    )


def _opening(checkpoint: str | None, src: str | None, tgt: str | None) -> tuple[str, tuple | None]:
    """An example sentence of the model's corpus and its drawn attention, so the tab never opens empty."""
    try:
        corpus = state.read_model_config(checkpoint).get("corpus", "") if checkpoint else ""
    except ValueError:
        corpus = ""
    examples = data.example_sentences(corpus, src) if src else []
    if not examples:
        return "", None
    return examples[0], first_view(attend, checkpoint, examples[0], src, tgt)


def build(picker: gr.Dropdown) -> None:
    explain(INTRO)
    src, tgt, _ = language_pair(picker.value, swap=False)
    example, shown = _opening(picker.value, src.value, tgt.value)
    first_layer, first_head = (shown[2], shown[3]) if shown else ({}, {})
    first = list(shown[4:]) if shown else [None] * 6
    with gr.Row():
        text = gr.Textbox(value=example, label="Source sentence", lines=2, scale=4)
        beam_size = gr.Slider(1, 8, value=1, step=1, label="Beam size", scale=1)
    show_button = gr.Button("Translate and show attention", variant="primary")
    view = gr.State(shown[0] if shown else None)
    translation = gr.Markdown(shown[1] if shown else "", label="Translation", elem_id="attention-translation")
    with gr.Row():
        layer = gr.Dropdown(
            first_layer.get("choices", layer_choices(1)), value=first_layer.get("value", 1), label="Layer", info="1 is nearest the input"
        )
        head = gr.Dropdown(first_head.get("choices", head_choices(0)), value=first_head.get("value", AVERAGE), label="Head")
    with gr.Row(equal_height=True):
        cross = gr.Plot(first[0], label="Cross-attention (target × source)", elem_id="cross-attention")
        attribution = gr.Plot(first[4], label="Input attribution (target × source)", elem_id="input-attribution")
    gr.Markdown(ATTRIBUTION_NOTE)
    links = gr.Plot(first[5], label="Word alignments", elem_id="word-alignments")
    gr.Markdown(ALIGNMENT_NOTE)
    grid = gr.Plot(first[1], label="All heads of this layer")
    with gr.Row():
        encoder = gr.Plot(first[2], label="Encoder self-attention")
        decoder = gr.Plot(first[3], label="Decoder self-attention")

    figures = [cross, grid, encoder, decoder]
    show_button.click(
        attend, [picker, text, src, tgt, beam_size], [view, translation, layer, head, *figures, attribution, links], api_name="attention"
    )
    # .input: only a user's change re-plots (attend already returns the figures it sets up).
    layer.input(attention_figures, [view, layer, head], figures, api_name="attention_plots")
    head.input(attention_figures, [view, layer, head], figures, api_visibility="private")
    picker.change(language_pair_update, [picker, src, tgt], [src, tgt], api_visibility="private")
