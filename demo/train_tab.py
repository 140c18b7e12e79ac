"""Train tab: configure a run, start it in the background, watch its curves live, cancel it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gradio as gr
import plotly.graph_objects as go

from core import plots
from core.checkpoint import read_metrics as checkpoint_records
from core.config import FREEZABLE, PRESETS, preset
from core.corpus import Corpus, download_multi30k, find_multi30k, load_corpus
from core.finetune import starting_config
from core.jobs import TRAINING, Job
from core.languages import parse_directions
from core.limits import check_training, current_limits
from demo import data, state
from demo.ui import explain, file_upload, friendly_errors, language_choices, progress_html, refresh_picker, status_line

INTRO = (
    "Train your own multilingual Transformer. The defaults (built-in corpus, tiny preset) give a "
    "first model in a few minutes on a laptop; watch the loss fall and BLEU rise while it trains."
)
ALL_PAIRS, EN_CENTRIC, CUSTOM = "All pairs", "English-centric", "Custom"
SCRATCH, FROM_MODEL = "scratch", "a trained model"
DIRECTION_SPECS = {ALL_PAIRS: "all", EN_CENTRIC: "en-centric"}
DEFAULT_LANGUAGES = ["en", "de", "fr"]
POLL_SECONDS = 1.0


# --- configuration -----------------------------------------------------------------------------


def preset_knobs(name: str) -> tuple[int, int, int, int, float, float]:
    """(layers, d_model, steps, tokens per batch, learning rate, direction temperature) of a preset."""
    config = preset(name)
    return (
        config.model.n_encoder_layers,
        config.model.d_model,
        config.train.steps,
        config.train.tokens_per_batch,
        config.train.lr,
        config.train.direction_temperature,
    )


def _directions_spec(mode: str, custom: str) -> str:
    if mode == CUSTOM:
        if not custom.strip():
            raise ValueError("Type the directions to train, e.g. en-de,de-en,en-fr")
        return custom.strip()
    return DIRECTION_SPECS.get(mode, "all")


def _multi30k_loader(folder: str, download: bool) -> Callable[[], Corpus]:
    """A function that finds (or downloads) Multi30K; it runs in the training thread."""

    def load() -> Corpus:
        if folder.strip():
            return load_corpus(f"multi30k:{folder.strip()}")
        if find_multi30k() is None and download:
            download_multi30k(progress=False)
        return load_corpus("multi30k")

    return load


def _data(source: str, folder: str, download: bool, files: Any) -> tuple[str, Any, list[str]]:
    """(config source string, corpus or loader, languages the data has) for the chosen data."""
    if source == data.UPLOAD:
        corpus = data.corpus_from_uploads(files)  # small files: read now, so mistakes show at once
        return data.upload_source(files), corpus, corpus.languages
    if source == data.MULTI30K:
        if folder.strip() and current_limits().hosted:
            raise ValueError("This hosted app reads Multi30K from its own folder only: leave the folder empty.")
        spec = f"multi30k:{folder.strip()}" if folder.strip() else "multi30k"
        return spec, _multi30k_loader(folder, download), data.KNOWN_LANGUAGES[data.MULTI30K]
    return "builtin", None, data.KNOWN_LANGUAGES[data.BUILTIN]


@friendly_errors
def start_training(
    source: str,
    multi30k_folder: str,
    download: bool,
    files: Any,
    languages: list[str],
    directions_mode: str,
    custom_directions: str,
    preset_name: str,
    layers: float,
    d_model: float,
    steps: float,
    tokens_per_batch: float,
    lr: float,
    direction_temperature: float,
    run_name: str,
    start_from: str = SCRATCH,
    base_model: str | None = None,
    freeze: list[str] | None = None,
    replay: float = 0.0,
) -> tuple[str, dict]:
    """Check the form and start the run in the background; returns at once (status, timer on).
    Starting from a trained model fine-tunes it (`core.finetune`): its shape, weights and vocabulary."""
    spec, corpus, available = _data(source, multi30k_folder or "", bool(download), files)
    chosen = [lang for lang in available if lang in (languages or [])] or available
    if len(chosen) < 2:
        raise ValueError("Pick at least two languages")
    directions = _directions_spec(directions_mode, custom_directions or "")
    parse_directions(directions, chosen)  # a bad spec is reported now, not from the background thread
    # The feed-forward size and the warm-up follow d_model and steps (see RunConfig.with_overrides);
    # one core keeps serving translations meanwhile.
    settings = {
        "steps": steps,
        "tokens_per_batch": tokens_per_batch,
        "lr": lr,
        "source": spec,
        "languages": chosen,
        "direction_temperature": direction_temperature,
        "directions": directions,
        "threads": state.training_threads(),
    }
    if start_from == FROM_MODEL:
        config = starting_config(state.resolve_checkpoint(base_model), freeze=list(freeze or []), replay=float(replay or 0), **settings)
    else:
        config = preset(preset_name).with_overrides(layers=layers, d_model=d_model, **settings)
    check_training(config)
    prefix = "finetuned" if start_from == FROM_MODEL else preset_name
    name = (run_name or "").strip() or f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    job = state.JOBS.start(config, name, state.checkpoints_dir(), corpus=corpus)
    return f"Started **{job.name}** ({len(chosen)} languages, {config.train.steps} steps).", gr.update(active=True)


@friendly_errors
def cancel_training() -> str:
    job = state.JOBS.cancel()
    if job is None:
        return "No training run is in progress."
    return f"Cancelling **{job.name}**: it stops after the current step and keeps a usable checkpoint."


# --- watching a run --------------------------------------------------------------------------


def _finished(job: Job) -> str:
    """What follows a run's ending in its status line: its best score, and where its model is."""
    if job.kind != TRAINING:
        return f" at step {job.step} · a {job.kind}: see the **Inside** tab."
    best = next((e.get("best_mean_valid_bleu") for e in reversed(job.events) if "best_mean_valid_bleu" in e), None)
    bleu = f" · best mean validation BLEU {best:.1f}" if best is not None else ""
    return f" at step {job.step}{bleu} · the model is now in the picker at the top of the page."


def status_text(job: Job | None) -> str:
    """One Markdown line: what the current (or last) run is doing."""
    return status_line(
        job, "No training run yet: the charts show how the picked model trained. Set the options and press **Start training**.", _finished
    )


def model_training(checkpoint: str | None) -> list[dict]:
    """How the picked model trained (its folder's metrics.jsonl; none for a Hugging Face model), so
    the charts open drawn before any run of one's own."""
    try:
        return checkpoint_records(state.resolve_checkpoint(checkpoint)) if checkpoint else []
    except (ValueError, OSError):
        return []


def training_figures(records: list[dict]) -> tuple[go.Figure, go.Figure, go.Figure]:
    return plots.training_curves(records), plots.throughput_curve(records), plots.valid_bleu_curves(records)


def training_status(seen: dict | None, current: str | None = None) -> tuple:
    """Timer tick: status, progress bar and charts of the current run.

    `seen` (per browser session) remembers what was drawn, so charts are only re-sent when new
    events arrived and the model picker is refreshed once when a run ends (keeping the `current`
    model, or selecting the new one when none was picked).
    Returns (status, progress, loss chart, speed chart, BLEU chart, timer, picker, seen).
    """
    seen = dict(seen or {})
    job = state.JOBS.current
    if job is None:
        return (status_text(None), "", gr.skip(), gr.skip(), gr.skip(), gr.update(active=False), gr.skip(), seen)
    ended = job.status != "running"  # read before the events: an ended run's events are then complete
    events = job.events
    fresh = seen.get("job") != job.name or seen.get("events") != len(events)
    figures = training_figures(events) if fresh else (gr.skip(), gr.skip(), gr.skip())
    announce = ended and seen.get("ended") != job.name
    picker = refresh_picker(current, select=job.name) if announce else gr.skip()
    seen.update(job=job.name, events=len(events), ended=job.name if ended else seen.get("ended"))
    return (status_text(job), progress_html(job), *figures, gr.update(active=not ended), picker, seen)


def training_on_load(seen: dict | None, current: str | None = None) -> tuple:
    """Page load: show the current run; a run that ended before the page opened is not announced again."""
    job = state.JOBS.current
    ended = {"ended": job.name} if job is not None and job.status != "running" else {}
    return training_status({**(seen or {}), **ended}, current)


# --- form helpers --------------------------------------------------------------------------


def uploaded_languages(files: Any) -> dict:
    """The languages of uploaded training files, all selected (a warning if the files are unusable)."""
    available: list[str] = []
    if files:
        try:
            available = data.corpus_from_uploads(files).languages
        except ValueError as error:
            gr.Warning(str(error))
    return gr.update(choices=language_choices(available), value=available)


def data_source_changed(source: str, files: Any) -> tuple[dict, dict, dict, dict]:
    """Show the inputs of the chosen data source and offer its languages."""
    multi30k, upload = source == data.MULTI30K, source == data.UPLOAD
    folder_box = multi30k and not current_limits().hosted  # no server paths typed in on a public Space
    if upload:
        languages = uploaded_languages(files)
    else:
        available = data.KNOWN_LANGUAGES.get(source, data.KNOWN_LANGUAGES[data.BUILTIN])
        default = [lang for lang in DEFAULT_LANGUAGES if lang in available]
        languages = gr.update(choices=language_choices(available), value=default)
    return gr.update(visible=folder_box), gr.update(visible=multi30k), gr.update(visible=upload), languages


def start_from_changed(choice: str) -> tuple[dict, dict, dict, dict, dict, dict]:
    """Fine-tuning shows the model to start from and its options; its shape is the model's own."""
    fine_tune = choice == FROM_MODEL
    names = state.checkpoint_names()
    return (
        gr.update(visible=fine_tune, choices=names, value=state.default_checkpoint(names)),
        gr.update(visible=fine_tune),
        gr.update(visible=fine_tune),
        *(gr.update(interactive=not fine_tune) for _ in range(3)),
    )


def custom_visible(mode: str) -> dict:
    return gr.update(visible=mode == CUSTOM)


def build(demo: gr.Blocks, picker: gr.Dropdown) -> None:
    explain(INTRO)
    with gr.Row():
        with gr.Column():
            source = gr.Radio(data.DATA_SOURCES, value=data.BUILTIN, label="Data")
            folder = gr.Textbox(label="Multi30K folder (empty: find it, or download)", visible=False)
            download = gr.Checkbox(value=True, label="Download Multi30K if it is not on this machine", visible=False)
            files = file_upload("Training files")
            languages = gr.CheckboxGroup(
                language_choices(data.KNOWN_LANGUAGES[data.BUILTIN]),
                value=DEFAULT_LANGUAGES,
                label="Languages",
                info="none ticked: every language of the data",
            )
            directions = gr.Radio(
                [ALL_PAIRS, EN_CENTRIC, CUSTOM],
                value=ALL_PAIRS,
                label="Directions",
                info="English-centric: only to and from English; the rest is zero-shot",
            )
            custom = gr.Textbox(label="Custom directions", placeholder="en-de,de-en,en-fr", visible=False)
        with gr.Column():
            start_from = gr.Radio(
                [SCRATCH, FROM_MODEL],
                value=SCRATCH,
                label="Start from",
                elem_id="train-start-from",
                info="a trained model: fine-tune it; it keeps its shape and vocabulary, and a "
                "language it has never seen gets a tag and pieces",
            )
            # Filled at build so the API accepts a model name as well; the handler checks who may open it.
            base_model = gr.Dropdown(
                state.checkpoint_names(),
                value=state.default_checkpoint(),
                allow_custom_value=True,
                label="Model to start from",
                visible=False,
                elem_id="train-base-model",
            )
            with gr.Row():
                freeze = gr.CheckboxGroup(list(FREEZABLE), label="Keep frozen", visible=False, info="these parts keep the starting weights")
                replay = gr.Slider(
                    0.0,
                    0.5,
                    value=0.0,
                    step=0.05,
                    label="Replay its old directions",
                    visible=False,
                    info="share of batches from the directions it was trained on, so it does not forget them",
                )
            layers_default, d_model_default, steps_default, tokens_default, lr_default, direction_default = preset_knobs("tiny")
            preset_name = gr.Dropdown(list(PRESETS), value="tiny", label="Preset")
            with gr.Row():
                layers = gr.Slider(1, 6, value=layers_default, step=1, label="Layers (encoder and decoder)", elem_id="train-layers")
                d_model = gr.Slider(32, 512, value=d_model_default, step=32, label="d_model", elem_id="train-d-model")
            with gr.Row():
                steps = gr.Number(value=steps_default, precision=0, minimum=1, label="Steps", elem_id="train-steps")
                tokens = gr.Number(value=tokens_default, precision=0, minimum=100, label="Tokens per batch", elem_id="train-tokens")
            with gr.Row():
                lr = gr.Number(value=lr_default, label="Learning rate")
                direction_temperature = gr.Slider(
                    1.0,
                    10.0,
                    value=direction_default,
                    step=0.5,
                    label="Direction temperature",
                    info="how often each direction is trained: 1 in proportion to its data; higher: more even",
                )
            run_name = gr.Textbox(label="Run name (optional)", placeholder="e.g. my-first-model", elem_id="train-run-name")
    with gr.Row():
        start_button = gr.Button("Start training", variant="primary", elem_id="start-training")
        cancel_button = gr.Button("Cancel", variant="stop", elem_id="cancel-training")
    loss_figure, speed_figure, bleu_figure = training_figures(
        state.JOBS.current.events if state.JOBS.current else model_training(picker.value)
    )
    status = gr.Markdown(status_text(state.JOBS.current), label="Training status", elem_id="training-status")
    progress = gr.HTML(progress_html(state.JOBS.current), label="Progress")
    with gr.Row():
        loss_chart = gr.Plot(loss_figure, label="Loss and learning rate", elem_id="loss-chart")
        bleu_chart = gr.Plot(bleu_figure, label="Validation BLEU per direction", elem_id="bleu-chart")
    speed_chart = gr.Plot(speed_figure, label="Tokens per second", elem_id="speed-chart")
    timer = gr.Timer(POLL_SECONDS, active=state.JOBS.running is not None)
    seen = gr.State({})

    form = [
        source,
        folder,
        download,
        files,
        languages,
        directions,
        custom,
        preset_name,
        layers,
        d_model,
        steps,
        tokens,
        lr,
        direction_temperature,
        run_name,
        start_from,
        base_model,
        freeze,
        replay,
    ]
    start_button.click(start_training, form, [status, timer], api_name="start_training")
    cancel_button.click(cancel_training, None, status, api_name="cancel_training")
    watch = [status, progress, loss_chart, speed_chart, bleu_chart, timer, picker, seen]
    timer.tick(
        training_status,
        [seen, picker],
        watch,
        api_name="training_status",
        concurrency_id="watch",
        concurrency_limit=None,
        show_progress="hidden",
    )
    demo.load(
        training_on_load,
        [seen, picker],
        watch,
        api_visibility="private",
        concurrency_id="watch",
        concurrency_limit=None,
        show_progress="hidden",
    )
    source.change(data_source_changed, [source, files], [folder, download, files, languages], api_visibility="private")
    files.change(uploaded_languages, files, languages, api_visibility="private")
    directions.change(custom_visible, directions, custom, api_visibility="private")
    start_from.change(start_from_changed, start_from, [base_model, freeze, replay, preset_name, layers, d_model], api_visibility="private")
    preset_name.change(preset_knobs, preset_name, [layers, d_model, steps, tokens, lr, direction_temperature], api_visibility="private")
