"""Small UI helpers shared by the tabs: error handling, input checks, language and model pickers,
the engine of the bulk paths, upload widgets, the status line and progress bar of a background job,
explanations.

A tab module imports only this module, `demo.state`, `demo.data` and `core`, never another tab.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from core import ct2, hf, limits
from core.events import Event, status_words
from core.jobs import Job
from core.languages import language_name
from core.limits import current_limits
from demo import data, state

log = logging.getLogger("polyglot.demo")
Handler = TypeVar("Handler", bound=Callable[..., Any])
NONE = "(none)"  # the empty choice of a second-model picker
HEAVY = "whole-test-set"  # concurrency id: evaluation-sized requests (Evaluate, Inside) run one at a time


def friendly_errors(handler: Handler) -> Handler:
    """Turn exceptions into a `gr.Error` pop-up with a readable message (never a stack trace).

    Bad input (ValueError and its kin: CorpusError, CheckpointError, JobError) shows its own
    message; anything else is logged with its traceback and shown as a short notice. In hosted
    mode no message names an absolute server path (`state.visitor_message`).
    """

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, OSError) as error:
            raise gr.Error(state.visitor_message(str(error))) from None
        except Exception as error:
            log.exception("Handler %s failed", handler.__name__)
            raise gr.Error(
                state.visitor_message(f"Something went wrong ({type(error).__name__}: {error}). The server log has the details.")
            ) from None

    return wrapper  # type: ignore[return-value]


def entered_text(text: str | None) -> str:
    """`text` when it has a non-blank line and fits the limits (core.limits); else a readable error."""
    if not text or not text.strip():
        raise ValueError("Enter a sentence to translate.")
    limits.check_text(text)
    return text


def first_sentence(text: str | None) -> str:
    """The first non-blank line of `text` (checked as `entered_text`): for one-sentence views."""
    return next(line for line in entered_text(text).splitlines() if line.strip())


def check_sentences(count: int) -> None:
    """Refuse more test sentences per direction than the limits allow (core.limits), like its check_* do."""
    limits = current_limits()
    if count > limits.max_eval_sentences:
        mode = "this hosted app" if limits.hosted else "this app"
        raise ValueError(f"Too large for {mode}: at most {limits.max_eval_sentences} sentences per direction please.")


def limits_note() -> str:
    """The caps in force, in one line (shown under the header in hosted mode, and in the Guide)."""
    return f"<span class='tab-intro'>{current_limits().describe()}</span>"


def explain(text: str) -> gr.Markdown:
    """The one-line explanation at the top of a tab, for newcomers."""
    return gr.Markdown(f"<span class='tab-intro'>{text}</span>")


# --- languages ---------------------------------------------------------------------------------


def language_choices(codes: list[str]) -> list[tuple[str, str]]:
    """("German (de)", "de") pairs for a dropdown: readable label, code as value."""
    return [(f"{language_name(code)} ({code})", code) for code in codes]


def default_pair(languages: list[str], directions: list[str]) -> tuple[str | None, str | None]:
    """English → the first language trained from English, else the first trained direction."""
    if not languages:
        return None, None
    src = "en" if "en" in languages else languages[0]
    trained = [d.split("-")[1] for d in directions if d.startswith(f"{src}-")]
    tgt = trained[0] if trained else next((lang for lang in languages if lang != src), None)
    return src, tgt


def model_languages(choice: str | None) -> tuple[list[str], list[str]]:
    """(languages, trained directions) of the picked model; empty when there is none."""
    if not choice:
        return [], []
    try:
        config = state.read_model_config(choice)
    except ValueError:
        return [], []
    return list(config["languages"]), list(config.get("directions", []))


def language_pair(choice: str | None, swap: bool = True) -> tuple[gr.Dropdown, gr.Dropdown, gr.Button | None]:
    """Source and target dropdowns for the model `choice`, side by side, with an optional swap button."""
    languages, directions = model_languages(choice)
    src_value, tgt_value = default_pair(languages, directions)
    # The choices follow the model picked in the page; an API call names its model and languages at
    # once, so any code is let through here and the model itself says if it does not know it.
    with gr.Row(equal_height=True):
        src = gr.Dropdown(language_choices(languages), value=src_value, label="From", scale=4, allow_custom_value=True)
        button = gr.Button("⇄", scale=0, min_width=48, elem_classes="swap-button") if swap else None
        tgt = gr.Dropdown(language_choices(languages), value=tgt_value, label="To", scale=4, allow_custom_value=True)
    return src, tgt, button


def language_pair_update(choice: str | None, src: str | None, tgt: str | None) -> tuple[dict, dict]:
    """New choices for a source/target pair when the model changes; keeps the selection if still valid."""
    languages, directions = model_languages(choice)
    default_src, default_tgt = default_pair(languages, directions)
    if src not in languages or tgt not in languages or src == tgt:
        src, tgt = default_src, default_tgt
    options = language_choices(languages)
    return gr.update(choices=options, value=src), gr.update(choices=options, value=tgt)


def swap_languages(src: str | None, tgt: str | None) -> tuple[str | None, str | None]:
    return tgt, src


# --- model pickers -----------------------------------------------------------------------------


def picker_update(choices: list[str], current: str | None, fallback: str | None) -> dict:
    """New choices for a dropdown: keeps `current` when it is still among them, else `fallback`."""
    keep = current in choices or hf.is_hub_name(current)  # a typed "hf:owner/name" stays picked
    return gr.update(choices=choices, value=current if keep else fallback)


def refresh_picker(current: str | None, select: str | None = None) -> dict:
    """The model picker, re-read from the checkpoints folder: keeps `current` when it still exists,
    else picks `select` (e.g. a run that just finished) or the default model."""
    names = state.checkpoint_names()
    return picker_update(names, current, select if select in names else state.default_checkpoint(names))


def other_choices(names: list[str]) -> list[str]:
    """Choices of a second-model picker: none, or any checkpoint."""
    return [NONE, *names]


def refresh_other(current: str | None) -> dict:
    """Fresh choices each time a second-model picker is opened (runs may have finished since)."""
    return picker_update(other_choices(state.checkpoint_names()), current, NONE)


def other_model_picker(label: str, info: str, elem_id: str | None = None) -> gr.Dropdown:
    """A second-model picker whose choices are re-read each time it is opened."""
    other = gr.Dropdown(
        other_choices(state.checkpoint_names()), value=NONE, allow_custom_value=True, label=label, info=info, elem_id=elem_id
    )
    other.focus(refresh_other, other, other, api_visibility="private", show_progress="hidden")
    return other


# --- the engine of the bulk paths ------------------------------------------------------------

# Engine id (what `Translator.translate(engine=...)` takes) → (its choice in the UI, its name in an output).
# "transformers" is never offered: it is how a Hugging Face model (core.hf) translates whatever was picked.
ENGINES = {
    "ctranslate2": ("CTranslate2 (fast, same translations)", "CTranslate2 float32"),
    "torch": ("PyTorch", "PyTorch"),
    "ctranslate2-int8": ("CTranslate2 int8 (fastest, slightly different)", "CTranslate2 int8"),
    "transformers": ("Transformers", "Transformers (a Hugging Face model; CTranslate2 is for Lab models)"),
}
ENGINE_INFO = (
    "What decodes the sentences here. Views that look inside the model (attention, attribution, "
    "step by step, sampling, confidence, prefix) always use PyTorch."
)


def engine_choice() -> gr.Radio:
    """The engine picker of a bulk path (many lines, a test set): the engines installed here
    (`core.ct2.bulk_engines`), the default first."""
    engines = ct2.bulk_engines()
    return gr.Radio([(ENGINES[engine][0], engine) for engine in engines], value=engines[0], label="Engine", info=ENGINE_INFO)


def bulk_engine(translator: Any, engine: str, precision: str = "float32") -> str:
    """The engine to pass to `translator.translate`: the picked one, except "torch" for a Hugging
    Face model (its translate runs transformers and has no CTranslate2 path) and for bfloat16 or
    torch-int8 arithmetic (PyTorch's own; CTranslate2's int8 is an engine of its own)."""
    if engine not in ct2.bulk_engines():
        raise ValueError(f"Engine {engine!r} is not available here: pick one of {', '.join(ct2.bulk_engines())}")
    return "torch" if translator.config.get("engine") or precision != "float32" else engine


def engine_line(engine: str, precision: str = "float32") -> str:
    """ "Engine: CTranslate2 float32": the engine that translated, by id ("transformers" included),
    so users can tell which one ran."""
    name = ENGINES[engine][1] if engine in ENGINES else engine  # e.g. a stored report from a newer version
    return f"Engine: {name}" + ("" if precision == "float32" else f", {precision} arithmetic")


# --- uploads and test sets -------------------------------------------------------------------


def file_upload(label: str) -> gr.File:
    """The upload widget, hidden until its data source is picked: two aligned text files or one TSV."""
    return gr.File(
        file_count="multiple",
        file_types=[".txt", ".tsv"],
        type="filepath",
        visible=False,
        label=f"{label} (two aligned NAME.xx.txt files, or one TSV)",
    )


def toggle_files(test_set: str) -> dict:
    """Show the upload widget when the uploaded-files test set is picked."""
    return gr.update(visible=data.TEST_SETS.get(test_set) == data.UPLOAD)


def choose_test_set(info: str | None = None, value: str = "Built-in test split") -> gr.Radio:
    return gr.Radio(list(data.TEST_SETS), value=value, label="Test set", info=info)


def default_test_set(choice: str | None) -> str:
    """The test split of the corpus the model was trained on: a Multi30K model is scored on Multi30K."""
    try:
        corpus = state.read_model_config(choice).get("corpus", "") if choice else ""
    except ValueError:
        corpus = ""
    return "Multi30K test split" if corpus == "multi30k" else "Built-in test split"


def show_uploads_for(test_set: gr.Radio, files: gr.File) -> None:
    """Wire a test-set choice to its upload widget."""
    test_set.change(toggle_files, test_set, files, api_visibility="private")


# --- background jobs -------------------------------------------------------------------------


def status_line(job: Job | None, idle: str, finished: Callable[[Job], str] | None = None) -> str:
    """One Markdown line about a background job: `idle` before the first, then what it is doing,
    or how it ended (`finished(job)` adds to a normal ending, e.g. the best score)."""
    if job is None:
        return idle
    if job.status == "running":
        return f"**{job.name}** · {job.stage} · step {job.step}/{job.total_steps}"
    if job.status == Event.FAILED:
        return f"**{job.name}** · **failed** · {state.visitor_message(job.error or '')}"
    return f"**{job.name}** · **{status_words(job.status)}**{finished(job) if finished else ''}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "estimating…"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def progress_html(job: Job | None) -> str:
    """A job's progress bar with the elapsed time and an estimate of the time left."""
    if job is None:
        return ""
    fraction = job.progress
    if job.status == "running":
        detail = f"{fraction:.0%} · {duration(job.elapsed_seconds)} elapsed · {duration(job.eta_seconds)} left"
    else:
        detail = f"{status_words(job.status)} after {duration(job.elapsed_seconds)}"
    return (
        f"<div class='train-progress'><progress value='{fraction:.3f}' max='1' "
        f"aria-label='training progress'></progress> <span>{detail}</span></div>"
    )


# --- tables ----------------------------------------------------------------------------------


def results_table(label: str, headers: list[str], elem_id: str | None = None, value: Any = None) -> gr.Dataframe:
    """A read-only table with fixed columns (empty unless `value` is given); handlers fill it with a pandas DataFrame."""
    return gr.Dataframe(value=value, headers=headers, label=label, interactive=False, wrap=True, elem_id=elem_id)


def first_view(handler: Callable[..., Any], *args: Any) -> Any:
    """What `handler(*args)` shows, computed once while the app is built, so a tab opens on a drawn
    example instead of an empty screen; None (the empty view) if it cannot be computed, e.g. when
    no model is there yet."""
    try:
        return handler(*args)
    except Exception as error:  # noqa: BLE001 - an example that fails must never stop the app from starting
        log.info("No opening view from %s: %s", getattr(handler, "__name__", handler), error)
        return None
