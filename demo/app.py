"""The Polyglot Lab web app: a model picker on top, one tab per activity."""

from __future__ import annotations

import gradio as gr

from core.limits import current_limits
from demo import attention_tab, evaluate_tab, generate_tab, guide_tab, inside_tab, session, state, train_tab, translate_tab
from demo.ui import limits_note, other_choices, refresh_picker

TITLE = "Polyglot Lab"
DEFAULT_CONCURRENCY = 2  # translations are served while another request (or a training run) works
UPLOAD_SWEEP = (600, 3600)  # hosted: every 10 min, delete uploads older than an hour (read ones are deleted at once)
# System fonts only: no web-font download, so the app looks the same offline (classrooms, CI).
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
CSS = """
.tab-intro { color: var(--body-text-color-subdued); }
.swap-button { align-self: end; }
.train-progress { display: flex; gap: 0.75em; align-items: center; }
.train-progress progress { flex: 1; height: 1.1em; }
"""


def refresh_models(current: str | None) -> tuple[dict, dict]:
    """Re-read the checkpoints folder: new choices for the model picker and the 'compare with' picker."""
    return refresh_picker(current), gr.update(choices=other_choices(state.checkpoint_names()))


def describe_model(choice: str | None) -> str:
    """The line under the picker; a broken checkpoint is described, not raised."""
    try:
        return state.model_summary(choice)
    except ValueError as error:
        return f"⚠️ {state.visitor_message(str(error))}"


def build_demo() -> gr.Blocks:
    names = state.checkpoint_names()
    hosted = current_limits().hosted
    with gr.Blocks(title=TITLE, delete_cache=UPLOAD_SWEEP if hosted else None) as demo:
        # Hosted: the visitor is their browser (demo.session); tie this page to it before anything else loads.
        visitor = gr.BrowserState(None, storage_key=session.STORAGE_KEY, secret=session.STORAGE_SECRET)
        bound = demo.load(session.remember_browser, visitor, visitor, api_visibility="private")
        gr.Markdown(f"# {TITLE}\nTrain, use and look inside a multilingual neural machine translation model.")
        if hosted:  # visitors should know the caps before they hit one
            gr.Markdown(limits_note(), elem_id="limits")
        with gr.Row(equal_height=True):
            picker = gr.Dropdown(
                names,
                value=state.default_checkpoint(names),
                label="Model",
                scale=4,
                allow_custom_value=True,
                elem_id="model-picker",
                info=(
                    "Shipped models first, then your own runs; "
                    if hosted
                    else "Shipped models first, then every run in the checkpoints folder; "
                )
                + "or type a Hugging Face model, e.g. hf:Helsinki-NLP/opus-mt-en-de",
            )
            refresh = gr.Button("↻ Refresh", scale=0, min_width=100)
        summary = gr.Markdown(describe_model(picker.value), label="Model summary")
        with gr.Tabs():
            with gr.Tab("Train", id="train"):
                train_tab.build(demo, picker)
            with gr.Tab("Translate", id="translate"):
                translate_tab.build(picker)
            with gr.Tab("Generate", id="generate"):
                generate_tab.build(picker)
            with gr.Tab("Attention", id="attention"):
                attention_tab.build(picker)
            with gr.Tab("Evaluate", id="evaluate"):
                other = evaluate_tab.build(picker)
            with gr.Tab("Inside", id="inside"):
                inside_tab.build(demo, picker)
            with gr.Tab("Guide", id="guide"):
                guide_tab.build()
        refresh.click(refresh_models, picker, [picker, other], api_name="refresh_models")
        bound.then(refresh_models, picker, [picker, other], api_visibility="private")  # this visitor's runs
        picker.change(describe_model, picker, summary, api_name="describe_model")
    demo.queue(default_concurrency_limit=DEFAULT_CONCURRENCY)
    return demo
