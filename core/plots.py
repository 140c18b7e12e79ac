"""Plotly figures for Polyglot Lab.

Every function here is *pure*: it takes plain Python data (lists, dicts,
numpy arrays) and returns a ``plotly.graph_objects.Figure``.  Nothing is read
from or written to disk and torch is never imported, so the functions are easy
to test and can be called from the Gradio UI, a notebook or a script alike.

Empty input never raises: it gives a figure with a "No data yet" note, because
the UI draws its plots before a training run has produced anything.  Input that
is present but inconsistent (e.g. a weight matrix whose shape does not match
the token pieces) raises ``ValueError`` with a message saying what is wrong.

Training records are the dicts written to ``metrics.jsonl``, one per event:

* ``{"event": "step", "step", "loss", "lr", "tokens_per_s", "elapsed_s"}``
* ``{"event": "valid", "step", "valid_loss", "bleu": {dir: score},
  "chrf": {dir: score}, "mean_bleu"}``

Records of any other event (e.g. ``"done"``) are ignored.  A direction is a
string ``"src-tgt"`` such as ``"en-de"``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from core.events import Event

__all__ = [
    "NO_DATA",
    "attention_head_grid",
    "attention_heatmap",
    "attribution_heatmap",
    "beam_tree",
    "bleu_bars",
    "direction_matrix",
    "embedding_scatter",
    "line_chart",
    "next_token_bars",
    "throughput_curve",
    "training_curves",
    "valid_bleu_curves",
]

NO_DATA = "No data yet"
"""Text of the note shown on a figure that has nothing to plot."""

TEMPLATE = "plotly_white"
ATTENTION_COLORSCALE = "Blues"
SCORE_COLORSCALE = "YlGnBu"
PALETTE = tuple(qualitative.Plotly)  # one colour per series, in a fixed order
HIGHLIGHT = "#EF553B"  # colour of the chosen piece in next_token_bars
MUTED = "#9BB1D4"  # colour of the other pieces
LINK_GREY = "rgba(140, 140, 140, 0.6)"  # lines joining translations


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------


def _style(
    fig: go.Figure,
    title: str,
    x_title: str | None = None,
    y_title: str | None = None,
    height: int | None = None,
) -> go.Figure:
    """Apply the common look (template, title, axis titles, margins) in place."""
    fig.update_layout(
        template=TEMPLATE,
        title={"text": title, "x": 0.02, "xanchor": "left"},
        margin={"l": 60, "r": 30, "t": 60, "b": 50},
        hoverlabel={"namelength": -1},  # never cut trace names in hover boxes
    )
    if height is not None:
        fig.update_layout(height=height)
    if x_title is not None:
        fig.update_xaxes(title_text=x_title)
    if y_title is not None:
        fig.update_yaxes(title_text=y_title)
    return fig


def _empty_figure(title: str) -> go.Figure:
    """A blank figure with a centred note, used whenever there is nothing to plot."""
    fig = go.Figure()
    fig.add_annotation(
        text=NO_DATA,
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        showarrow=False,
        font={"size": 16, "color": "grey"},
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _style(fig, title)


def _events(records: Iterable[dict], event: Event) -> list[dict]:
    """The records of one event type (e.g. ``Event.STEP`` or ``Event.VALID``), in order."""
    return [r for r in records if isinstance(r, dict) and r.get("event") == event]


def _series(records: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) for the records that have a value under ``key``."""
    steps: list[int] = []
    values: list[float] = []
    for r in records:
        if r.get(key) is not None and r.get("step") is not None:
            steps.append(int(r["step"]))
            values.append(float(r[key]))
    return steps, values


def _escape(text: str) -> str:
    """Make text safe for plotly labels, which understand a little HTML.

    Without this, pieces such as ``</s>`` or ``<s>`` would be read as
    strike-through tags and vanish.  ``&lt;`` etc. are shown as ``<``.
    """
    return html.escape(str(text), quote=False)


def _index_axis(pieces: list[str], font_size: int | None = None) -> dict:
    """Axis settings that label integer positions 0..n-1 with ``pieces``.

    Plotting against positions rather than the piece strings keeps repeated
    pieces (two "▁the" in one sentence) as separate rows/columns.  The tick
    labels are the pieces, HTML-escaped (see ``_escape``).
    """
    axis: dict = {
        "tickmode": "array",
        "tickvals": list(range(len(pieces))),
        "ticktext": [_escape(p) for p in pieces],
        "showgrid": False,
    }
    if font_size is not None:
        axis["tickfont"] = {"size": font_size}
    return axis


def _attention_hover(weights: np.ndarray, source: list[str], target: list[str]) -> list[list[str]]:
    """Hover text "query ▸ key: weight" for every cell of a [tgt, src] matrix."""
    source = [_escape(p) for p in source]
    target = [_escape(p) for p in target]
    return [[f"{target[i]} ▸ {source[j]}: {weights[i, j]:.3f}" for j in range(len(source))] for i in range(len(target))]


def _check_attention(weights: np.ndarray, source: list[str], target: list[str]) -> None:
    """Raise ValueError if the last two dims of ``weights`` are not [tgt, src]."""
    if weights.shape[-2:] != (len(target), len(source)):
        raise ValueError(
            f"attention weights have shape {weights.shape}, expected [..., {len(target)} target pieces, {len(source)} source pieces]"
        )


def _color_max(values: np.ndarray) -> float:
    """Upper end of a 0..max colour scale (1.0 if there is nothing positive)."""
    finite = values[np.isfinite(values)]
    top = float(finite.max()) if finite.size else 0.0
    return top if top > 0 else 1.0


# ---------------------------------------------------------------------------
# Training curves (from metrics.jsonl records)
# ---------------------------------------------------------------------------


def training_curves(records: list[dict]) -> go.Figure:
    """Train loss per step and valid loss (markers) on the left axis.

    The learning rate is drawn on a second y axis on the right (``yaxis2``).
    """
    title = "Training loss"
    steps = _events(records, Event.STEP)
    valids = _events(records, Event.VALID)
    train_x, train_y = _series(steps, "loss")
    valid_x, valid_y = _series(valids, "valid_loss")
    lr_x, lr_y = _series(steps, "lr")
    if not (train_x or valid_x or lr_x):
        return _empty_figure(title)

    fig = make_subplots(specs=[[{"secondary_y": True}]])
    if train_x:
        fig.add_trace(
            go.Scatter(
                x=train_x,
                y=train_y,
                mode="lines",
                name="train loss",
                line={"color": PALETTE[0]},
                hovertemplate="train loss %{y:.4f}<extra></extra>",
            ),
            secondary_y=False,
        )
    if valid_x:
        fig.add_trace(
            go.Scatter(
                x=valid_x,
                y=valid_y,
                mode="markers",
                name="valid loss",
                marker={"size": 10, "color": PALETTE[1], "symbol": "diamond"},
                hovertemplate="valid loss %{y:.4f}<extra></extra>",
            ),
            secondary_y=False,
        )
    if lr_x:
        fig.add_trace(
            go.Scatter(
                x=lr_x,
                y=lr_y,
                mode="lines",
                name="learning rate",
                line={"color": PALETTE[2], "dash": "dash", "width": 1.5},
                hovertemplate="lr %{y:.3e}<extra></extra>",
            ),
            secondary_y=True,
        )
    _style(fig, title, x_title="step")
    fig.update_yaxes(title_text="loss", secondary_y=False)
    fig.update_yaxes(title_text="learning rate", secondary_y=True, showgrid=False, exponentformat="e")
    fig.update_layout(hovermode="x unified")
    return fig


def throughput_curve(records: list[dict]) -> go.Figure:
    """Training speed (tokens per second) over steps."""
    title = "Throughput"
    x, y = _series(_events(records, Event.STEP), "tokens_per_s")
    if not x:
        return _empty_figure(title)
    fig = go.Figure(
        go.Scatter(
            x=x,
            y=y,
            mode="lines",
            name="tokens/s",
            line={"color": PALETTE[0]},
            hovertemplate="step %{x}<br>%{y:,.0f} tokens/s<extra></extra>",
        )
    )
    fig.update_yaxes(rangemode="tozero")
    return _style(fig, title, x_title="step", y_title="tokens / s")


def valid_bleu_curves(records: list[dict]) -> go.Figure:
    """Validation BLEU over steps: one line per direction.

    The mean over directions is drawn as a thick dashed black line.
    """
    title = "Validation BLEU"
    valids = [r for r in _events(records, Event.VALID) if r.get("step") is not None]
    directions: list[str] = []
    for r in valids:
        for direction in r.get("bleu") or {}:
            if direction not in directions:
                directions.append(direction)
    if not valids or not (directions or any(r.get("mean_bleu") is not None for r in valids)):
        return _empty_figure(title)

    fig = go.Figure()
    for k, direction in enumerate(directions):
        points = [(r["step"], r["bleu"][direction]) for r in valids if direction in (r.get("bleu") or {})]
        fig.add_trace(
            go.Scatter(
                x=[int(s) for s, _ in points],
                y=[float(v) for _, v in points],
                mode="lines+markers",
                name=direction,
                line={"color": PALETTE[k % len(PALETTE)], "width": 1.5},
                marker={"size": 5},
                hovertemplate=f"{direction}<br>step %{{x}}<br>BLEU %{{y:.2f}}" + "<extra></extra>",
            )
        )

    mean_x: list[int] = []
    mean_y: list[float] = []
    for r in valids:
        mean = r.get("mean_bleu")
        if mean is None and r.get("bleu"):  # older records: average the directions
            mean = sum(r["bleu"].values()) / len(r["bleu"])
        if mean is not None:
            mean_x.append(int(r["step"]))
            mean_y.append(float(mean))
    fig.add_trace(
        go.Scatter(
            x=mean_x,
            y=mean_y,
            mode="lines",
            name="mean",
            line={"color": "black", "width": 4, "dash": "dash"},
            hovertemplate="mean<br>step %{x}<br>BLEU %{y:.2f}<extra></extra>",
        )
    )
    fig.update_yaxes(rangemode="tozero")
    return _style(fig, title, x_title="step", y_title="BLEU")


# ---------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------


def attention_heatmap(
    weights: np.ndarray,
    source_pieces: list[str],
    target_pieces: list[str],
    title: str = "Cross-attention",
    x_title: str = "source (keys)",
    y_title: str = "target (queries)",
) -> go.Figure:
    """Heatmap of one attention matrix ``weights[tgt, src]``.

    Row i shows where target piece i looks in the source.  Rows are the
    target (query) pieces, read top to bottom; columns are the source (key)
    pieces.  The colour scale runs from 0 to the largest weight.

    ``x_title``/``y_title`` name the axes; the defaults fit cross-attention.
    For self-attention pass e.g. "source (keys)"/"source (queries)".
    """
    w = np.asarray(weights, dtype=float)
    if w.size == 0 or not source_pieces or not target_pieces:
        return _empty_figure(title)
    if w.ndim != 2:
        raise ValueError(f"attention_heatmap expects a 2-D [tgt, src] array, got shape {w.shape}")
    _check_attention(w, source_pieces, target_pieces)

    fig = go.Figure(
        go.Heatmap(
            z=w,
            x=list(range(len(source_pieces))),
            y=list(range(len(target_pieces))),
            text=_attention_hover(w, source_pieces, target_pieces),
            hovertemplate="%{text}<extra></extra>",
            colorscale=ATTENTION_COLORSCALE,
            zmin=0.0,
            zmax=_color_max(w),
            colorbar={"title": {"text": "weight"}},
        )
    )
    fig.update_layout(
        xaxis=_index_axis(source_pieces),
        yaxis={**_index_axis(target_pieces), "autorange": "reversed"},
    )
    height = max(320, 140 + 24 * len(target_pieces))
    return _style(fig, title, x_title=x_title, y_title=y_title, height=height)


def attention_head_grid(
    weights: np.ndarray,
    source_pieces: list[str],
    target_pieces: list[str],
    title: str = "All heads",
    x_title: str | None = None,
    y_title: str | None = None,
) -> go.Figure:
    """One small heatmap per attention head of ``weights[head, tgt, src]``.

    Up to 4 heads per row.  Heads are numbered from 0, like ``weights[i]``.
    All heads share one colour scale (0 to the largest weight of any head),
    so they can be compared.  ``x_title``/``y_title`` (none by default) name
    the axes of every small heatmap.
    """
    w = np.asarray(weights, dtype=float)
    if w.size == 0 or not source_pieces or not target_pieces:
        return _empty_figure(title)
    if w.ndim != 3:
        raise ValueError(f"attention_head_grid expects a 3-D [head, tgt, src] array, got shape {w.shape}")
    _check_attention(w, source_pieces, target_pieces)

    n_heads = w.shape[0]
    cols = min(n_heads, 4)
    rows = math.ceil(n_heads / cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[f"head {h}" for h in range(n_heads)],
        horizontal_spacing=0.06,
        vertical_spacing=min(0.12, 0.9 / rows),
    )
    for h in range(n_heads):
        hover = [[f"head {h}<br>{cell}" for cell in row] for row in _attention_hover(w[h], source_pieces, target_pieces)]
        fig.add_trace(
            go.Heatmap(
                z=w[h],
                x=list(range(len(source_pieces))),
                y=list(range(len(target_pieces))),
                text=hover,
                hovertemplate="%{text}<extra></extra>",
                coloraxis="coloraxis",
                name=f"head {h}",
            ),
            row=h // cols + 1,
            col=h % cols + 1,
        )
    fig.update_xaxes(**_index_axis(source_pieces, font_size=9))
    fig.update_yaxes(**_index_axis(target_pieces, font_size=9), autorange="reversed")
    fig.update_layout(
        coloraxis={
            "colorscale": ATTENTION_COLORSCALE,
            "cmin": 0.0,
            "cmax": _color_max(w),
            "colorbar": {"title": {"text": "weight"}},
        }
    )
    return _style(fig, title, x_title=x_title, y_title=y_title, height=120 + 260 * rows)


# ---------------------------------------------------------------------------
# Evaluation scores
# ---------------------------------------------------------------------------


def bleu_bars(results: dict[str, dict[str, float]], metric: str = "BLEU") -> go.Figure:
    """Grouped bars of a score per direction, one colour per model.

    ``results`` maps a model label to ``{direction: score}``, so two
    checkpoints can be compared side by side.
    """
    title = f"{metric} by direction"
    directions: list[str] = []
    for scores in results.values():
        for direction in scores:
            if direction not in directions:
                directions.append(direction)
    if not directions:
        return _empty_figure(title)

    fig = go.Figure()
    for k, (label, scores) in enumerate(results.items()):
        values = [float(scores[d]) if d in scores else None for d in directions]
        fig.add_trace(
            go.Bar(
                x=directions,
                y=values,
                name=label,
                marker_color=PALETTE[k % len(PALETTE)],
                text=[f"{v:.1f}" if v is not None else "" for v in values],
                textposition="outside",
                cliponaxis=False,
                hovertemplate=f"{label}<br>%{{x}}: {metric} %{{y:.2f}}<extra></extra>",
            )
        )
    fig.update_layout(barmode="group", showlegend=True)
    fig.update_yaxes(rangemode="tozero")
    return _style(fig, title, x_title="direction", y_title=metric)


def direction_matrix(
    scores: dict[str, float],
    languages: list[str],
    metric: str = "BLEU",
    zero_shot: set[str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Score of every translation direction as a grid.

    Rows are source languages, columns target languages (in ``languages`` order).

    The diagonal and directions without a score are blank (NaN).  Directions
    in ``zero_shot`` (never seen in training) are shown as ``"23.4*"``.
    """
    title = title if title is not None else f"{metric} per direction"
    zero_shot = zero_shot or set()
    if not languages or not scores:
        return _empty_figure(title)

    z: list[list[float]] = []
    text: list[list[str]] = []
    hover: list[list[str]] = []
    any_zero_shot = False
    for src in languages:
        z_row, text_row, hover_row = [], [], []
        for tgt in languages:
            direction = f"{src}-{tgt}"
            value = scores.get(direction) if src != tgt else None
            if value is None or math.isnan(value):
                z_row.append(math.nan)
                text_row.append("")
                hover_row.append("")
                continue
            mark = direction in zero_shot
            any_zero_shot = any_zero_shot or mark
            z_row.append(float(value))
            text_row.append(f"{value:.1f}*" if mark else f"{value:.1f}")
            hover_row.append(f"{src} → {tgt}<br>{metric} {value:.2f}" + ("<br>zero-shot" if mark else ""))
        z.append(z_row)
        text.append(text_row)
        hover.append(hover_row)
    if all(math.isnan(v) for row in z for v in row):
        return _empty_figure(title)

    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=languages,
            y=languages,
            text=text,
            texttemplate="%{text}",
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
            hoverongaps=False,
            colorscale=SCORE_COLORSCALE,
            colorbar={"title": {"text": metric}},
            xgap=2,
            ygap=2,
        )
    )
    fig.update_xaxes(type="category", side="top", showgrid=False)
    fig.update_yaxes(type="category", autorange="reversed", showgrid=False)
    _style(fig, title, x_title="target language", y_title="source language")
    fig.update_layout(margin={"t": 100})  # room for the target labels on top
    if any_zero_shot:
        fig.add_annotation(
            text="* zero-shot direction (no training pairs)",
            x=0,
            y=0,
            yshift=-8,  # just below the grid, inside the bottom margin
            xref="paper",
            yref="paper",
            xanchor="left",
            yanchor="top",
            showarrow=False,
            font={"size": 12, "color": "grey"},
        )
    return fig


# ---------------------------------------------------------------------------
# Decoding, embeddings, generic lines
# ---------------------------------------------------------------------------


def next_token_bars(
    candidates: list[tuple[str, float]],
    chosen: str | None = None,
    title: str = "Next piece",
) -> go.Figure:
    """Horizontal bars of the top-k next pieces and their probabilities.

    The most probable piece is at the top; the bar of the ``chosen`` piece
    (the first one, if it appears twice) is drawn in a highlight colour.
    """
    if not candidates:
        return _empty_figure(title)
    ranked = sorted(((str(p), float(q)) for p, q in candidates), key=lambda c: c[1], reverse=True)
    pieces = [p for p, _ in ranked]
    probs = [q for _, q in ranked]
    highlight = pieces.index(chosen) if chosen in pieces else None
    colors = [HIGHLIGHT if i == highlight else MUTED for i in range(len(pieces))]

    fig = go.Figure(
        go.Bar(
            x=probs,
            y=list(range(len(pieces))),
            orientation="h",
            marker_color=colors,
            customdata=[_escape(p) for p in pieces],
            text=[f"{q:.1%}" for q in probs],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{customdata}: p = %{x:.4f}<extra></extra>",
            name="probability",
        )
    )
    fig.update_layout(yaxis={**_index_axis(pieces), "autorange": "reversed"}, showlegend=False)
    fig.update_xaxes(range=[0, max(max(probs), 1e-9) * 1.2])
    if chosen is not None and highlight is None:
        fig.add_annotation(
            text=f"chosen {_escape(repr(chosen))} is not in the top {len(pieces)}",
            x=1,
            y=0,
            xref="paper",
            yref="paper",
            xanchor="right",
            yanchor="bottom",
            showarrow=False,
            font={"color": HIGHLIGHT},
        )
    height = max(260, 100 + 28 * len(pieces))
    return _style(fig, title, x_title="probability", y_title="piece", height=height)


def embedding_scatter(
    points: np.ndarray,
    languages: list[str],
    sentence_ids: list[int],
    labels: list[str] | None = None,
    title: str = "Sentence embeddings",
) -> go.Figure:
    """2-D map of sentence embeddings, coloured by language.

    Thin grey lines join points with the same ``sentence_id`` (translations
    of the same sentence), so you can see whether translations land close
    together.  Hovering a point shows ``labels[i]`` (the sentence) if given.
    """
    pts = np.asarray(points, dtype=float)
    if pts.size == 0 or len(languages) == 0:
        return _empty_figure(title)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"embedding_scatter expects points of shape [n, 2], got {pts.shape}")
    n = pts.shape[0]
    if len(languages) != n or len(sentence_ids) != n or (labels is not None and len(labels) != n):
        raise ValueError(
            f"embedding_scatter got {n} points but {len(languages)} languages, "
            f"{len(sentence_ids)} sentence ids" + ("" if labels is None else f" and {len(labels)} labels")
        )

    # Links first so the markers are drawn on top of them.
    groups: dict[int, list[int]] = {}
    for i, sid in enumerate(sentence_ids):
        groups.setdefault(sid, []).append(i)
    link_x: list[float | None] = []
    link_y: list[float | None] = []
    for members in groups.values():
        if len(members) < 2:
            continue
        link_x += [float(pts[i, 0]) for i in members] + [None]  # None breaks the line
        link_y += [float(pts[i, 1]) for i in members] + [None]
    fig = go.Figure()
    if link_x:
        fig.add_trace(
            go.Scatter(
                x=link_x,
                y=link_y,
                mode="lines",
                name="same sentence",
                line={"color": LINK_GREY, "width": 1},
                hoverinfo="skip",
            )
        )

    unique_languages = list(dict.fromkeys(languages))  # in order of appearance
    for k, lang in enumerate(unique_languages):
        idx = [i for i in range(n) if languages[i] == lang]
        sentence = "<br>%{text}" if labels is not None else ""
        fig.add_trace(
            go.Scatter(
                x=pts[idx, 0],
                y=pts[idx, 1],
                mode="markers",
                name=lang,
                marker={
                    "size": 9,
                    "color": PALETTE[k % len(PALETTE)],
                    "line": {"width": 0.5, "color": "white"},
                },
                text=[_escape(labels[i]) for i in idx] if labels is not None else None,
                customdata=[sentence_ids[i] for i in idx],
                hovertemplate=f"<b>{lang}</b> · sentence %{{customdata}}{sentence}" + "<br>(%{x:.3f}, %{y:.3f})<extra></extra>",
            )
        )
    return _style(fig, title, x_title="dimension 1", y_title="dimension 2")


def line_chart(
    x: list[float],
    series: dict[str, list[float]],
    x_title: str,
    y_title: str,
    title: str,
) -> go.Figure:
    """Generic chart with one line per entry of ``series``.

    Used e.g. for sentence-retrieval accuracy per encoder layer.
    """
    if len(x) == 0 or not series:
        return _empty_figure(title)
    fig = go.Figure()
    for k, (name, ys) in enumerate(series.items()):
        if len(ys) != len(x):
            raise ValueError(f"series {name!r} has {len(ys)} values but x has {len(x)}")
        fig.add_trace(
            go.Scatter(
                x=list(x),
                y=[float(v) for v in ys],
                mode="lines+markers",
                name=name,
                line={"color": PALETTE[k % len(PALETTE)]},
                hovertemplate=f"{name}<br>{x_title} %{{x}}<br>{y_title} %{{y:.4g}}" + "<extra></extra>",
            )
        )
    return _style(fig, title, x_title=x_title, y_title=y_title)


# ---------------------------------------------------------------------------
# Cross-lingual transfer
# ---------------------------------------------------------------------------


def transfer_curve(result: dict, metric: str = "bleu") -> go.Figure:
    """Test score of the low-resource direction against its training pairs N (log axis), one line
    per method, with 95% bootstrap intervals as error bars. ``result`` is ``core.transfer``'s."""
    label = "BLEU" if metric == "bleu" else "chrF"
    title = f"{result.get('direction', '')} {label} against training pairs"
    sizes = sorted(result.get("sizes", {}), key=int)
    if not sizes:
        return _empty_figure(title)
    fig = go.Figure()
    for k, (method, name) in enumerate(result["methods"].items()):
        scores = [result["sizes"][n][method][metric] for n in sizes]
        fig.add_trace(
            go.Scatter(
                x=[int(n) for n in sizes],
                y=[s["score"] for s in scores],
                error_y={"type": "data", "array": [s["ci95"] or 0 for s in scores], "visible": True},
                mode="lines+markers",
                name=name,
                line={"color": PALETTE[k % len(PALETTE)], "width": 3},
                hovertemplate=f"{name}<br>N=%{{x:,}} pairs: {label} %{{y:.1f}}<extra></extra>",
            )
        )
    fig.update_xaxes(type="log", tickvals=[int(n) for n in sizes])
    fig.update_yaxes(rangemode="tozero")
    return _style(fig, title, x_title="training pairs of the low-resource direction (N)", y_title=label)


# ---------------------------------------------------------------------------
# Why did the model say that: beam search trees and input attribution
# ---------------------------------------------------------------------------

TREE_COLORS = {"kept": "#636EFA", "finished": "#00A86B", "dropped": "#C8C8C8", "start": "#444444"}
TREE_LABELS = {
    "kept": "kept (a live beam)",
    "finished": "finished (ended with </s>, or cut at the length limit)",
    "dropped": "dropped",
    "start": "start",
}


def _tree_rows(nodes: list[dict]) -> list[float]:
    """A vertical position per node: leaves one row apart in depth-first order (children by
    log-probability, best first), each parent centred on its children."""
    children: dict[int, list[int]] = {i: [] for i in range(len(nodes))}
    for index, node in enumerate(nodes):
        if node.get("parent") is not None:
            children[node["parent"]].append(index)
    rows = [0.0] * len(nodes)
    next_leaf = 0.0
    order = [(0, False)]  # iterative post-order from the root (index 0)
    while order:
        index, seen = order.pop()
        kids = sorted(children[index], key=lambda k: -nodes[k]["log_prob"])
        if not kids:
            rows[index], next_leaf = next_leaf, next_leaf + 1
        elif seen:
            rows[index] = sum(rows[k] for k in kids) / len(kids)
        else:
            order.append((index, True))
            order.extend((k, False) for k in reversed(kids))
    return rows


def beam_tree(nodes: list[dict], title: str = "Beam search tree") -> go.Figure:
    """The hypotheses beam search weighed at each step, as a tree read left to right.

    ``nodes`` are dicts with ``parent`` (index, None for the start), ``piece``, ``step``,
    ``log_prob`` (of the path so far), ``status`` ("start", "kept", "finished", "dropped")
    and ``rank`` (place in the final n-best, or None), as ``Translator.beam_tree`` gives them.
    The final n-best are drawn as red paths, the best thickest, and labelled with their rank.
    """
    if len(nodes) < 2:
        return _empty_figure(title)
    for index, node in enumerate(nodes):
        parent = node.get("parent")
        if parent is not None and not 0 <= parent < index:
            raise ValueError(f"node {index} has parent {parent}: parents must come before their children")
    rows = _tree_rows(nodes)
    fig = go.Figure()
    for status in ("dropped", "kept", "finished"):
        xs: list[float | None] = []
        ys: list[float | None] = []
        for index, node in enumerate(nodes):
            if node["status"] == status and node.get("parent") is not None:
                parent = node["parent"]
                xs += [nodes[parent]["step"], node["step"], None]
                ys += [rows[parent], rows[index], None]
        fig.add_trace(
            go.Scatter(x=xs, y=ys, mode="lines", line={"color": TREE_COLORS[status], "width": 1}, hoverinfo="skip", showlegend=False)
        )
    best = sorted((i for i, n in enumerate(nodes) if n.get("rank") is not None), key=lambda i: nodes[i]["rank"])
    for index in best:
        xs, ys, at = [], [], index
        while at is not None:
            xs.append(nodes[at]["step"])
            ys.append(rows[at])
            at = nodes[at].get("parent")
        rank = nodes[index]["rank"]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line={"color": HIGHLIGHT, "width": 4 if rank == 0 else 2},
                name="the translation" if rank == 0 else f"n-best #{rank + 1}",
                hoverinfo="skip",
                showlegend=rank == 0,
            )
        )
    for status in ("start", "kept", "finished", "dropped"):
        members = [i for i, n in enumerate(nodes) if n["status"] == status]
        if not members:
            continue
        fig.add_trace(
            go.Scatter(
                x=[nodes[i]["step"] for i in members],
                y=[rows[i] for i in members],
                mode="markers+text",
                marker={"color": TREE_COLORS[status], "size": 9 if status != "dropped" else 6},
                text=[
                    _escape(nodes[i]["piece"]) + (f" #{nodes[i]['rank'] + 1}" if nodes[i].get("rank") is not None else "") for i in members
                ],
                textposition="middle right",
                textfont={"size": 11, "color": "#222" if status != "dropped" else "#999"},
                customdata=[[f"{nodes[i]['log_prob']:.3f}", TREE_LABELS[status]] for i in members],
                hovertemplate="%{text} · step %{x}<br>log P so far %{customdata[0]}<br>%{customdata[1]}<extra></extra>",
                name=TREE_LABELS[status],
            )
        )
    fig.update_yaxes(visible=False, autorange="reversed")
    fig.update_xaxes(dtick=1)
    fig.update_layout(legend={"orientation": "h", "y": -0.12})
    height = max(360, 120 + 16 * (max(rows) + 1))
    return _style(fig, title, x_title="step (pieces produced)", height=int(height))


def attribution_heatmap(
    scores: np.ndarray,
    source_pieces: list[str],
    target_pieces: list[str],
    title: str = "Input attribution",
) -> go.Figure:
    """Heatmap of attributions ``scores[tgt, src]``: how much each source piece moved the
    probability of each produced piece. Each row is scaled by its largest absolute value, so
    rows compare shares, not sizes; red raised the probability, blue lowered it."""
    s = np.asarray(scores, dtype=float)
    if s.size == 0 or not source_pieces or not target_pieces:
        return _empty_figure(title)
    if s.ndim != 2:
        raise ValueError(f"attribution_heatmap expects a 2-D [tgt, src] array, got shape {s.shape}")
    _check_attention(s, source_pieces, target_pieces)
    top = np.abs(s).max(axis=1, keepdims=True)
    shares = np.divide(s, top, out=np.zeros_like(s), where=top > 0)
    source = [_escape(p) for p in source_pieces]
    target = [_escape(p) for p in target_pieces]
    hover = [[f"{target[i]} ◂ {source[j]}: {s[i, j]:+.3f}" for j in range(len(source))] for i in range(len(target))]
    fig = go.Figure(
        go.Heatmap(
            z=shares,
            x=list(range(len(source_pieces))),
            y=list(range(len(target_pieces))),
            text=hover,
            hovertemplate="%{text}<extra></extra>",
            colorscale="RdBu",
            reversescale=True,
            zmin=-1.0,
            zmax=1.0,
            colorbar={"title": {"text": "share of row max"}},
        )
    )
    fig.update_layout(xaxis=_index_axis(source_pieces), yaxis={**_index_axis(target_pieces), "autorange": "reversed"})
    height = max(320, 140 + 24 * len(target_pieces))
    return _style(fig, title, x_title="source piece", y_title="produced piece", height=height)


def alignment_links(
    source_words: list[str],
    target_words: list[str],
    pairs: list[tuple[int, int]],
    strengths: np.ndarray | None = None,
    title: str = "Word alignments",
) -> go.Figure:
    """Source words on a top row, target words on a bottom row, and a line for each aligned pair
    (source word i, target word j). `strengths` [target, source] (e.g. word attention) sets each
    line's opacity and its hover number."""
    if not source_words or not target_words:
        return _empty_figure(title)
    for i, j in pairs:
        if not (0 <= i < len(source_words) and 0 <= j < len(target_words)):
            raise ValueError(f"pair {i}-{j} is outside {len(source_words)} source × {len(target_words)} target words")
    width = max(len(source_words), len(target_words), 2) - 1

    def spread(n: int) -> list[float]:  # both rows span the same width, centred
        return [width / 2] if n == 1 else [k * width / (n - 1) for k in range(n)]

    xs, xt = spread(len(source_words)), spread(len(target_words))
    fig = go.Figure()
    for i, j in pairs:
        strength = 1.0 if strengths is None else float(np.asarray(strengths)[j, i])
        fig.add_trace(
            go.Scatter(
                x=[xs[i], xt[j]],
                y=[1, 0],
                mode="lines",
                showlegend=False,
                line={"color": PALETTE[0], "width": 1 + 3 * strength},
                opacity=0.25 + 0.75 * strength,
                hovertemplate=f"{_escape(source_words[i])} — {_escape(target_words[j])}: {strength:.2f}<extra></extra>",
            )
        )
    for x, y, labels, name in ((xs, 1, source_words, "source"), (xt, 0, target_words, "target")):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[y] * len(x),
                mode="markers+text",
                text=[_escape(w) for w in labels],
                name=name,
                textposition="top center" if y == 1 else "bottom center",
                marker={"size": 7, "color": "#444"},
                hovertemplate="%{text}<extra>" + name + "</extra>",
                showlegend=False,
            )
        )
    fig.update_xaxes(visible=False, range=[-0.8, width + 0.8])
    fig.update_yaxes(visible=False, range=[-0.5, 1.5])
    return _style(fig, title, height=300)


def transfer_validation(result: dict) -> go.Figure:
    """Validation BLEU of the low-resource direction while each run trained: one colour per method,
    one dash per N. Shows where a run peaked, and where a small corpus began to overfit."""
    title = f"{result.get('direction', '')} validation BLEU while training"
    sizes = sorted(result.get("sizes", {}), key=int)
    if not sizes:
        return _empty_figure(title)
    fig = go.Figure()
    for k, (method, name) in enumerate(result["methods"].items()):
        for d, n in enumerate(sizes):
            curve = result["sizes"][n][method].get("curve", [])
            fig.add_trace(
                go.Scatter(
                    x=[point["step"] for point in curve],
                    y=[point["bleu"] for point in curve],
                    mode="lines+markers",
                    name=f"{name}, N={int(n):,}",
                    line={"color": PALETTE[k % len(PALETTE)], "dash": ("solid", "dot", "dash")[d % 3]},
                    hovertemplate=f"{name}, N={int(n):,}<br>step %{{x}}: BLEU %{{y:.1f}}<extra></extra>",
                )
            )
    return _style(fig, title, x_title="training step (fine-tuning steps for (c))", y_title="validation BLEU")
