"""Evaluate tab: BLEU and chrF per direction for one or two checkpoints, with sacreBLEU signatures."""

from __future__ import annotations

import threading

import gradio as gr
import plotly.graph_objects as go

from core import checkpoint as ckpt
from core import limits, plots
from core.analysis import shared_languages
from core.evaluate import EvalReport, evaluate
from core.languages import parse_directions
from demo import data, state
from demo.ui import (
    HEAVY,
    NONE,
    bulk_engine,
    check_sentences,
    choose_test_set,
    default_test_set,
    engine_choice,
    engine_line,
    explain,
    file_upload,
    first_view,
    friendly_errors,
    other_model_picker,
    show_uploads_for,
)

INTRO = (
    "Score a model on a test set it never trained on: BLEU counts matching word n-grams, chrF "
    "matching character n-grams (kinder to rich morphology). Directions marked * are zero-shot: "
    "the model never saw a single pair of them."
)
DEFAULT_MAX_SENTENCES = 100
STORED_REPORT = "eval_test.json"  # a run folder's test scores, written by `python -m core evaluate --card`
NO_STORED = "No stored test results for this model yet: press **Evaluate** to score it."


class ReportCache:
    """Evaluation reports by (checkpoint, weights version, test set, directions, beam, max sentences, engine)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reports: dict[tuple, EvalReport] = {}

    def get(self, key: tuple) -> EvalReport | None:
        with self._lock:
            return self._reports.get(key)

    def put(self, key: tuple, report: EvalReport) -> None:
        with self._lock:
            self._reports[key] = report


REPORTS = ReportCache()


def _evaluate_one(
    choice: str,
    test_key: str,
    lines: dict[str, list[str]],
    directions_spec: str,
    beam: int,
    max_sentences: int,
    engine: str,
    progress: gr.Progress,
    share: tuple[float, float],
) -> EvalReport:
    folder = state.resolve_checkpoint(choice)
    key = (str(folder), (folder / ckpt.WEIGHTS).stat().st_mtime, test_key, directions_spec, beam, max_sentences, engine)
    cached = REPORTS.get(key)
    if cached is not None:
        return cached
    translator = state.get_translator(choice)
    languages = shared_languages(translator.languages, lines)
    directions = parse_directions(directions_spec or "all", languages)
    start, width = share

    def report_progress(fraction: float, message: str) -> None:
        progress(start + width * fraction, desc=f"{folder.name}: {message}")

    report = evaluate(
        translator,
        lines,
        directions,
        beam_size=beam,
        max_sentences=max_sentences,
        progress=report_progress,
        engine=bulk_engine(translator, engine),
    )
    REPORTS.put(key, report)
    return report


def _summary(report: EvalReport, name: str) -> str:
    return "\n\n".join(
        [
            f"### {name}",
            report.table(),
            f"BLEU signature: `{report.bleu_signature}`  \nchrF signature: `{report.chrf_signature}`  \n{engine_line(report.engine)}",
        ]
    )


@friendly_errors
def run_evaluation(
    checkpoint: str,
    other: str | None,
    test_set: str,
    files: list | None = None,
    directions: str = "all",
    beam_size: float = 4,
    max_sentences: float = DEFAULT_MAX_SENTENCES,
    engine: str = "torch",
    progress: gr.Progress = gr.Progress(),
) -> tuple[str, go.Figure, go.Figure, go.Figure, dict]:
    """Scores of one or two checkpoints, translated by `engine` (`demo.ui.bulk_engine`): Markdown
    tables with signatures and the engine, BLEU and chrF bars, and a source × target BLEU matrix per checkpoint."""
    choices = [checkpoint] + ([other] if other and other not in (NONE, checkpoint) else [])
    state.resolve_checkpoint(checkpoint)  # a clear message before any work when nothing is picked
    beam, limit = max(1, int(beam_size)), max(1, int(max_sentences))
    limits.check_search(beam_size=beam)
    check_sentences(limit)
    test_key, lines = data.load_test_set(test_set, files)
    reports = {}
    for index, choice in enumerate(choices):
        share = (index / len(choices), 1 / len(choices))
        reports[state.resolve_checkpoint(choice).name] = _evaluate_one(
            choice, test_key, lines, directions.strip(), beam, limit, engine, progress, share
        )
    summary = "\n\n".join(_summary(report, name) for name, report in reports.items())
    bleu = plots.bleu_bars({name: r.metric("bleu") for name, r in reports.items()}, "BLEU")
    chrf = plots.bleu_bars({name: r.metric("chrf") for name, r in reports.items()}, "chrF")
    matrices = [_matrix(name, report) for name, report in reports.items()]
    second = gr.update(value=matrices[1], visible=True) if len(matrices) > 1 else gr.update(visible=False)
    return summary, bleu, chrf, matrices[0], second


def stored_results(checkpoint: str | None) -> tuple[str, go.Figure, go.Figure, go.Figure, dict]:
    """The model's own stored test results (eval_test.json in its folder, written by
    `python -m core evaluate --card`), so the tab opens on real scores; a note when there are none."""
    try:
        folder = state.resolve_checkpoint(checkpoint)
        report = EvalReport.load(folder / STORED_REPORT) if (folder / STORED_REPORT).is_file() else None
    except ValueError:
        report = None
    if report is None:
        empty = plots.bleu_bars({}, "BLEU")
        return NO_STORED, empty, plots.bleu_bars({}, "chrF"), _matrix("", None), gr.update(visible=False)
    sentences = max((s.sentences for s in report.scores.values()), default=0)
    heading = (
        f"Stored results of this model on its {report.split} split (beam {report.beam_size}, "
        f"{sentences} sentences per direction), not recomputed: press **Evaluate** to score it yourself."
    )
    name = folder.name
    return (
        heading + "\n\n" + _summary(report, name),
        plots.bleu_bars({name: report.metric("bleu")}, "BLEU"),
        plots.bleu_bars({name: report.metric("chrf")}, "chrF"),
        _matrix(name, report),
        gr.update(visible=False),
    )


def _matrix(name: str, report: EvalReport | None) -> go.Figure:
    if report is None:
        return plots.direction_matrix({}, [], "BLEU", title="BLEU per direction")
    languages = list(dict.fromkeys(lang for d in report.scores for lang in d.split("-")))
    return plots.direction_matrix(
        report.metric("bleu"), languages, "BLEU", zero_shot=report.zero_shot, title=f"BLEU per direction · {name}"
    )


def build(picker: gr.Dropdown) -> gr.Dropdown:
    """The tab; returns the second-checkpoint picker so the app can refresh its choices."""
    explain(INTRO)
    stored = first_view(stored_results, picker.value) or (NO_STORED, None, None, None, None)
    with gr.Row():
        other = other_model_picker("Compare with (optional)", "The first model is the one picked at the top", elem_id="compare-with")
        test_set = choose_test_set(value=default_test_set(picker.value))
    files = file_upload("Test files")
    with gr.Row():
        directions = gr.Textbox(value="all", label="Directions", info="all, en-centric, or e.g. en-de,de-en")
        beam_size = gr.Slider(1, 8, value=4, step=1, label="Beam size")
        max_sentences = gr.Number(
            value=DEFAULT_MAX_SENTENCES, precision=0, minimum=1, label="Sentences per direction", info="more is more reliable, and slower"
        )
        engine = engine_choice()
    run_button = gr.Button("Evaluate", variant="primary")
    summary = gr.Markdown(stored[0], label="Scores", elem_id="evaluation-scores")
    with gr.Row():
        bleu = gr.Plot(stored[1], label="BLEU by direction")
        chrf = gr.Plot(stored[2], label="chrF by direction")
    with gr.Row():
        matrix = gr.Plot(stored[3], label="BLEU matrix")
        second_matrix = gr.Plot(label="BLEU matrix (second model)", visible=False)

    show_uploads_for(test_set, files)
    run_button.click(
        run_evaluation,
        [picker, other, test_set, files, directions, beam_size, max_sentences, engine],
        [summary, bleu, chrf, matrix, second_matrix],
        api_name="evaluate",
        concurrency_id=HEAVY,
        concurrency_limit=1,
    )
    picker.change(stored_results, picker, [summary, bleu, chrf, matrix, second_matrix], api_name="stored_results")
    picker.change(default_test_set, picker, test_set, api_visibility="private")
    return other
