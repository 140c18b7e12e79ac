"""Tests for core.plots: check what the figures actually contain."""

from __future__ import annotations

import html
import json
import math

import numpy as np
import plotly.graph_objects as go
import pytest

from core import plots
from core.plots import (
    NO_DATA,
    attention_head_grid,
    attention_heatmap,
    bleu_bars,
    direction_matrix,
    embedding_scatter,
    line_chart,
    next_token_bars,
    throughput_curve,
    training_curves,
    valid_bleu_curves,
)

RECORDS = [
    {"event": "step", "step": 10, "loss": 5.0, "lr": 1e-4, "tokens_per_s": 900.0,
     "elapsed_s": 1.0},
    {"event": "step", "step": 20, "loss": 4.0, "lr": 2e-4, "tokens_per_s": 1100.0,
     "elapsed_s": 2.0},
    {"event": "valid", "step": 20, "valid_loss": 4.5,
     "bleu": {"en-de": 3.0, "de-en": 5.0}, "chrf": {"en-de": 20.0, "de-en": 25.0},
     "mean_bleu": 4.0},
    {"event": "step", "step": 30, "loss": 3.0, "lr": 3e-4, "tokens_per_s": 1000.0,
     "elapsed_s": 3.0},
    {"event": "valid", "step": 40, "valid_loss": 3.5,
     "bleu": {"en-de": 7.0, "de-en": 9.0}, "chrf": {"en-de": 30.0, "de-en": 35.0},
     "mean_bleu": 8.0},
    {"event": "done", "step": 40, "elapsed_s": 4.0},
]  # fmt: skip


def trace(fig: go.Figure, name: str):
    """The single trace called ``name``."""
    found = [t for t in fig.data if t.name == name]
    assert len(found) == 1, [t.name for t in fig.data]
    return found[0]


def readable(ticktext) -> list[str]:
    """Tick labels as the user reads them (plotly decodes &lt; etc.)."""
    return [html.unescape(t) for t in ticktext]


def is_empty(fig: go.Figure) -> bool:
    """True if ``fig`` is the "No data yet" placeholder."""
    texts = [a.text for a in fig.layout.annotations]
    return isinstance(fig, go.Figure) and NO_DATA in texts and len(fig.data) == 0


def assert_styled(fig: go.Figure) -> None:
    assert fig.layout.template.layout.plot_bgcolor == "white"  # plotly_white
    assert fig.layout.title.text


# --- empty input -----------------------------------------------------------

EMPTY_CALLS = {
    "training_curves": lambda: training_curves([]),
    "training_curves_done_only": lambda: training_curves([{"event": "done"}]),
    "throughput_curve": lambda: throughput_curve([]),
    "valid_bleu_curves": lambda: valid_bleu_curves(RECORDS[:2]),
    "attention_heatmap": lambda: attention_heatmap(np.zeros((0, 0)), [], []),
    "attention_head_grid": lambda: attention_head_grid(np.zeros((0, 0, 0)), [], []),
    "bleu_bars": lambda: bleu_bars({}),
    "bleu_bars_no_scores": lambda: bleu_bars({"model": {}}),
    "direction_matrix": lambda: direction_matrix({}, ["en", "de"]),
    "direction_matrix_no_langs": lambda: direction_matrix({"en-de": 1.0}, []),
    "next_token_bars": lambda: next_token_bars([]),
    "embedding_scatter": lambda: embedding_scatter(np.zeros((0, 2)), [], []),
    "line_chart": lambda: line_chart([], {}, "layer", "accuracy", "Retrieval"),
}


@pytest.mark.parametrize("name", list(EMPTY_CALLS))
def test_empty_input_gives_placeholder(name):
    fig = EMPTY_CALLS[name]()
    assert is_empty(fig)
    assert_styled(fig)
    fig.to_json()  # serialisable, as Gradio needs


# --- training curves ---------------------------------------------------------


def test_training_curves_content():
    fig = training_curves(RECORDS)
    assert_styled(fig)
    train = trace(fig, "train loss")
    assert list(train.x) == [10, 20, 30]
    assert list(train.y) == [5.0, 4.0, 3.0]
    valid = trace(fig, "valid loss")
    assert list(valid.x) == [20, 40]
    assert list(valid.y) == [4.5, 3.5]
    assert valid.mode == "markers"
    lr = trace(fig, "learning rate")
    assert list(lr.y) == [1e-4, 2e-4, 3e-4]
    assert lr.yaxis == "y2"
    assert train.yaxis in (None, "y") and valid.yaxis in (None, "y")
    assert fig.layout.yaxis2.side == "right"
    assert fig.layout.yaxis.title.text == "loss"
    assert fig.layout.yaxis2.title.text == "learning rate"
    assert "%{y" in train.hovertemplate


def test_training_curves_ignores_other_events_and_partial_runs():
    only_steps = training_curves([*RECORDS[:2], {"event": "done"}])
    assert {t.name for t in only_steps.data} == {"train loss", "learning rate"}
    only_valid = training_curves([RECORDS[2]])
    assert [t.name for t in only_valid.data] == ["valid loss"]


def test_throughput_curve_content():
    fig = throughput_curve(RECORDS)
    assert_styled(fig)
    assert len(fig.data) == 1
    assert list(fig.data[0].x) == [10, 20, 30]
    assert list(fig.data[0].y) == [900.0, 1100.0, 1000.0]
    assert fig.layout.xaxis.title.text == "step"


def test_valid_bleu_curves_content():
    fig = valid_bleu_curves(RECORDS)
    assert_styled(fig)
    assert [t.name for t in fig.data] == ["en-de", "de-en", "mean"]
    en_de = trace(fig, "en-de")
    assert list(en_de.x) == [20, 40]
    assert list(en_de.y) == [3.0, 7.0]
    assert list(trace(fig, "de-en").y) == [5.0, 9.0]
    mean = trace(fig, "mean")
    assert list(mean.y) == [4.0, 8.0]
    assert mean.line.dash == "dash"
    assert mean.line.width > en_de.line.width


def test_valid_bleu_curves_computes_missing_mean():
    record = {
        "event": "valid",
        "step": 5,
        "valid_loss": 1.0,
        "bleu": {"a-b": 2.0, "b-a": 4.0},
    }
    fig = valid_bleu_curves([record])
    assert list(trace(fig, "mean").y) == [3.0]


# --- attention ---------------------------------------------------------------

SRC = ["▁the", "▁cat", "▁the", "▁mat", "</s>"]  # "▁the" twice on purpose
TGT = ["▁die", "▁Katze", "▁die"]


def make_weights(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.random((rows, cols))
    return w / w.sum(axis=-1, keepdims=True)


def test_attention_heatmap_content():
    w = make_weights(len(TGT), len(SRC))
    fig = attention_heatmap(w, SRC, TGT, title="Layer 1")
    assert fig.layout.title.text == "Layer 1"
    (heat,) = fig.data
    np.testing.assert_allclose(np.asarray(heat.z), w)
    # Duplicated pieces stay separate rows/columns, labelled with the pieces.
    assert readable(fig.layout.xaxis.ticktext) == SRC
    assert readable(fig.layout.yaxis.ticktext) == TGT
    # "</s>" is escaped, otherwise plotly reads it as a strike-through tag.
    assert fig.layout.xaxis.ticktext[-1] == "&lt;/s&gt;"
    assert heat.text[0][4] == f"▁die ▸ &lt;/s&gt;: {w[0, 4]:.3f}"
    assert list(fig.layout.xaxis.tickvals) == list(range(len(SRC)))
    assert list(heat.x) == list(range(len(SRC)))
    assert list(heat.y) == list(range(len(TGT)))
    # First target piece at the top.
    assert fig.layout.yaxis.autorange == "reversed"
    # Colour scale 0..max, hover "query ▸ key: weight".
    assert heat.zmin == 0.0
    assert heat.zmax == pytest.approx(w.max())
    assert heat.text[1][3] == f"▁Katze ▸ ▁mat: {w[1, 3]:.3f}"
    assert "%{text}" in heat.hovertemplate


def test_attention_axis_titles_default_to_cross_attention_and_can_be_named():
    w = make_weights(len(TGT), len(SRC))
    fig = attention_heatmap(w, SRC, TGT)
    assert fig.layout.xaxis.title.text == "source (keys)"
    assert fig.layout.yaxis.title.text == "target (queries)"
    square = make_weights(len(SRC), len(SRC))
    fig = attention_heatmap(square, SRC, SRC, x_title="source (keys)", y_title="source (queries)")
    assert fig.layout.yaxis.title.text == "source (queries)"
    heads = np.stack([make_weights(len(TGT), len(TGT), seed=h) for h in range(2)])
    grid = attention_head_grid(heads, TGT, TGT)
    assert grid.layout.xaxis.title.text is None  # unchanged default: no axis titles
    grid = attention_head_grid(heads, TGT, TGT, x_title="target (keys)", y_title="target (queries)")
    assert grid.layout.xaxis2.title.text == "target (keys)"
    assert grid.layout.yaxis.title.text == "target (queries)"


def test_attention_heatmap_rejects_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        attention_heatmap(make_weights(len(SRC), len(TGT)), SRC, TGT)


def test_attention_head_grid_content():
    heads = np.stack([make_weights(len(TGT), len(SRC), seed=h) for h in range(6)])
    fig = attention_head_grid(heads, SRC, TGT)
    assert_styled(fig)
    assert len(fig.data) == 6
    titles = [a.text for a in fig.layout.annotations]
    assert titles == [f"head {h}" for h in range(6)]
    for h, heat in enumerate(fig.data):
        np.testing.assert_allclose(np.asarray(heat.z), heads[h])
        assert heat.coloraxis == "coloraxis"  # one shared scale
    assert fig.layout.coloraxis.cmin == 0.0
    assert fig.layout.coloraxis.cmax == pytest.approx(heads.max())
    # 6 heads -> 2 rows of at most 4: head 4 is in row 2, column 1.
    assert fig.data[4].xaxis == "x5"
    assert fig.layout.xaxis5.domain[0] == pytest.approx(0.0)
    assert fig.layout.yaxis5.domain[1] < fig.layout.yaxis.domain[0]
    assert readable(fig.layout.xaxis3.ticktext) == SRC
    assert fig.layout.yaxis6.autorange == "reversed"


def test_attention_head_grid_rejects_2d():
    with pytest.raises(ValueError):
        attention_head_grid(make_weights(len(TGT), len(SRC)), SRC, TGT)


# --- scores ------------------------------------------------------------------


def test_bleu_bars_content():
    results = {
        "step 1000": {"en-de": 10.0, "de-en": 12.5},
        "step 2000": {"en-de": 15.25, "de-en": 18.0, "en-fr": 9.0},
    }
    fig = bleu_bars(results)
    assert_styled(fig)
    assert [t.name for t in fig.data] == ["step 1000", "step 2000"]
    assert all(t.type == "bar" for t in fig.data)
    assert fig.layout.barmode == "group"
    old, new = fig.data
    assert list(new.x) == ["en-de", "de-en", "en-fr"]
    assert list(new.y) == [15.25, 18.0, 9.0]
    assert list(old.y) == [10.0, 12.5, None]  # missing direction: no bar
    assert list(new.text) == ["15.2", "18.0", "9.0"]
    assert old.marker.color != new.marker.color
    assert fig.layout.yaxis.title.text == "BLEU"
    assert bleu_bars(results, metric="chrF").layout.yaxis.title.text == "chrF"


def test_direction_matrix_content():
    langs = ["en", "de", "fr"]
    scores = {"en-de": 23.4, "de-en": 27.0, "en-fr": 30.0, "de-fr": 11.25, "xx-en": 1.0}
    fig = direction_matrix(scores, langs, zero_shot={"de-fr"})
    assert_styled(fig)
    (heat,) = fig.data
    z = np.asarray(heat.z, dtype=float)
    row, col = langs.index("en"), langs.index("de")
    assert z[row, col] == 23.4  # row = source, column = target
    assert z[langs.index("de"), langs.index("en")] == 27.0
    assert all(math.isnan(z[i, i]) for i in range(3))
    assert math.isnan(z[langs.index("fr"), langs.index("en")])  # missing direction
    assert list(heat.x) == langs and list(heat.y) == langs
    assert heat.text[row][col] == "23.4"
    zs = (langs.index("de"), langs.index("fr"))
    assert heat.text[zs[0]][zs[1]] == "11.2*"
    assert "zero-shot" in heat.customdata[zs[0]][zs[1]]
    assert "zero-shot" not in heat.customdata[row][col]
    assert any("zero-shot" in a.text for a in fig.layout.annotations)
    assert fig.layout.yaxis.autorange == "reversed"
    assert fig.layout.title.text == "BLEU per direction"
    json.loads(fig.to_json())  # NaN cells serialise


def test_direction_matrix_without_zero_shot_has_no_note():
    fig = direction_matrix({"en-de": 1.0}, ["en", "de"], metric="chrF", title="T")
    assert fig.layout.title.text == "T"
    assert not any("zero-shot" in a.text for a in fig.layout.annotations)
    assert "*" not in "".join(c for row in fig.data[0].text for c in row)


# --- decoding, embeddings, lines ----------------------------------------------


def test_next_token_bars_content():
    candidates = [("▁Hund", 0.1), ("▁Katze", 0.6), ("▁Maus", 0.3)]
    fig = next_token_bars(candidates, chosen="▁Maus")
    assert_styled(fig)
    (bar,) = fig.data
    assert bar.orientation == "h"
    assert list(bar.x) == [0.6, 0.3, 0.1]
    # Position 0 is at the top of the reversed axis: most probable first.
    assert readable(fig.layout.yaxis.ticktext) == ["▁Katze", "▁Maus", "▁Hund"]
    assert fig.layout.yaxis.autorange == "reversed"
    colors = list(bar.marker.color)
    assert colors[1] != colors[0]
    assert colors[0] == colors[2]
    assert sum(c == plots.HIGHLIGHT for c in colors) == 1


def test_next_token_bars_chosen_missing_or_none():
    candidates = [("a", 0.5), ("b", 0.5)]
    for chosen in (None, "zzz"):
        fig = next_token_bars(candidates, chosen=chosen)
        assert plots.HIGHLIGHT not in list(fig.data[0].marker.color)
    assert any("zzz" in a.text for a in next_token_bars(candidates, "zzz").layout.annotations)


def test_embedding_scatter_links_translations():
    points = np.array([[0.0, 0.0], [1.0, 1.0], [0.1, 0.0], [1.1, 1.0], [5.0, 5.0]])
    languages = ["en", "en", "de", "de", "fr"]
    sentence_ids = [0, 1, 0, 1, 2]
    labels = ["a cat", "a dog", "eine Katze", "ein Hund", "un oiseau"]
    fig = embedding_scatter(points, languages, sentence_ids, labels)
    assert_styled(fig)
    links = trace(fig, "same sentence")
    assert links.mode == "lines"
    # One polyline per sentence, separated by None.
    segments, current = [], []
    for x, y in zip(links.x, links.y, strict=True):
        if x is None:
            segments.append(current)
            current = []
        else:
            current.append((x, y))
    assert current == []
    assert sorted(segments) == [[(0.0, 0.0), (0.1, 0.0)], [(1.0, 1.0), (1.1, 1.0)]]
    en, de, fr = trace(fig, "en"), trace(fig, "de"), trace(fig, "fr")
    assert list(en.x) == [0.0, 1.0] and list(de.y) == [0.0, 1.0]
    assert list(de.text) == ["eine Katze", "ein Hund"]
    assert list(fr.customdata) == [2]
    assert en.marker.color != de.marker.color
    assert fig.data[0].name == "same sentence"  # drawn under the markers


def test_embedding_scatter_without_labels_and_bad_shapes():
    fig = embedding_scatter(np.zeros((2, 2)), ["en", "de"], [0, 1])
    assert {t.name for t in fig.data} == {"en", "de"}  # no translations to link
    assert "%{text}" not in fig.data[0].hovertemplate
    with pytest.raises(ValueError):
        embedding_scatter(np.zeros((3, 2)), ["en", "de"], [0, 1])
    with pytest.raises(ValueError):
        embedding_scatter(np.zeros((2, 3)), ["en", "de"], [0, 1])


def test_line_chart_content():
    fig = line_chart(
        [1, 2, 3], {"en→de": [0.1, 0.5, 0.9], "de→en": [0.2, 0.4, 0.8]},
        "layer", "accuracy", "Retrieval accuracy",
    )  # fmt: skip
    assert fig.layout.title.text == "Retrieval accuracy"
    assert fig.layout.xaxis.title.text == "layer"
    assert fig.layout.yaxis.title.text == "accuracy"
    assert [t.name for t in fig.data] == ["en→de", "de→en"]
    assert list(trace(fig, "de→en").y) == [0.2, 0.4, 0.8]
    assert list(fig.data[0].x) == [1, 2, 3]
    with pytest.raises(ValueError):
        line_chart([1, 2], {"a": [1.0]}, "x", "y", "t")


def test_module_does_not_use_torch():
    with open(plots.__file__, encoding="utf-8") as f:
        assert "torch" not in f.read().replace("torch is never imported", "")
