"""Small UI helpers shared by the tabs: error handling, language pickers, explanations."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from core.languages import language_name
from core.limits import current_limits
from demo import state

log = logging.getLogger("polyglot.demo")
Handler = TypeVar("Handler", bound=Callable[..., Any])


def friendly_errors(handler: Handler) -> Handler:
    """Turn exceptions into a `gr.Error` pop-up with a readable message (never a stack trace).

    Bad input (ValueError and its kin: CorpusError, CheckpointError, JobError) shows its own
    message; anything else is logged with its traceback and shown as a short notice.
    """

    @functools.wraps(handler)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, OSError) as error:
            raise gr.Error(str(error)) from None
        except Exception as error:
            log.exception("Handler %s failed", handler.__name__)
            raise gr.Error(f"Something went wrong ({type(error).__name__}: {error}). "
                           "The server log has the details.") from None

    return wrapper  # type: ignore[return-value]


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
    with gr.Row(equal_height=True):
        src = gr.Dropdown(language_choices(languages), value=src_value, label="From", scale=4)
        button = gr.Button("⇄", scale=0, min_width=48, elem_classes="swap-button") if swap else None
        tgt = gr.Dropdown(language_choices(languages), value=tgt_value, label="To", scale=4)
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


def results_table(label: str, headers: list[str], elem_id: str | None = None) -> gr.Dataframe:
    """An empty read-only table with fixed columns; handlers fill it with a pandas DataFrame."""
    return gr.Dataframe(headers=headers, label=label, interactive=False, wrap=True, elem_id=elem_id)
