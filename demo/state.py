"""Process-wide state of the app: where checkpoints live, the model cache, the training jobs.

Everything here is plain Python (no Gradio components), so handlers and tests share it.
In hosted mode every listing and lookup here is the current visitor's (demo.session says who is
asking, core.hosting decides what they may see): a stranger's run is unknown to them.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import core
from core import checkpoint, hf
from core.hosting import VisitorJobs, VisitorRuns, public_message
from core.jobs import SHIPPED_CHECKPOINTS, list_checkpoints
from core.languages import language_name
from core.limits import current_limits
from core.translator import Translator
from demo.session import current_owner

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS_ENV = "POLYGLOT_CHECKPOINTS"
MAX_CACHED_MODELS = 4

log = logging.getLogger("polyglot.demo")
JOBS = VisitorJobs(owner=current_owner)  # one training run per server process; in hosted mode each visitor sees theirs


def training_threads() -> int:
    """Torch threads of a run started from the UI: every core but one, which keeps serving
    translations while it trains (on a 2-vCPU Space: one thread each)."""
    return max(1, (os.cpu_count() or 1) - 1)


def checkpoints_dir() -> Path:
    """$POLYGLOT_CHECKPOINTS, or checkpoints/ in the project. Read at every call, so tests can point it elsewhere."""
    return Path(os.environ.get(CHECKPOINTS_ENV) or PROJECT_ROOT / "checkpoints").resolve()


def available_checkpoints() -> list[Path]:
    """Complete checkpoints, shipped first; the folder of a run still training is left out.
    In hosted mode: those nobody owns (shipped) and the current visitor's own runs."""
    busy = JOBS.running
    found = list_checkpoints(checkpoints_dir()) + hf.hf_folders(checkpoints_dir())  # Lab runs, then HF models
    found = VisitorRuns(checkpoints_dir()).visible(found, current_owner())
    return [p for p in found if busy is None or p.resolve() != busy.folder.resolve()]


def checkpoint_names() -> list[str]:
    return [p.name for p in available_checkpoints()]


def default_checkpoint(names: list[str] | None = None) -> str | None:
    names = checkpoint_names() if names is None else names
    return next((n for n in SHIPPED_CHECKPOINTS if n in names), names[0] if names else None)


def resolve_checkpoint(choice: str | None) -> Path:
    """The folder of a picker choice: the name (or full path) of a checkpoint under checkpoints_dir().

    Nothing outside that folder is ever loaded, whatever a client sends; a typed "hf:owner/name"
    is a Hugging Face Hub model (in hosted mode only those the owner allows, see core.hf).
    """
    if not choice:
        where = "" if current_limits().hosted else f", or put a checkpoint in {checkpoints_dir()}"
        raise ValueError(f"No model selected. Train one in the Train tab{where}, then pick it at the top of the page.")
    if hf.is_hub_name(choice):
        hf.check_allowed(choice)
        return hf.HubId(choice)  # type: ignore[return-value]  # str with a .name, loaded by core.load
    for path in available_checkpoints():
        if choice in (path.name, str(path)):
            return path
    raise ValueError(f"Unknown model {choice!r}. Available: {', '.join(checkpoint_names()) or 'none yet'}")


def visitor_message(text: str) -> str:
    """`text` as a visitor may read it: in hosted mode without absolute server paths (the server
    log keeps the full text); locally unchanged."""
    if not current_limits().hosted:
        return text
    public = public_message(text, checkpoints_dir())
    if public != text:  # the server log keeps the full text (warning: shown without any logging set-up)
        log.warning("Shown to a visitor without its paths: %s", text)
    return public


def read_model_config(choice: str | None) -> dict[str, Any]:
    """config.json of a checkpoint: cheap, no weights loaded (a Hugging Face model is loaded: its
    languages come from its tokenizer)."""
    folder = resolve_checkpoint(choice)
    if isinstance(folder, hf.HubId) or hf.is_hf_folder(folder):
        return MODELS.get(folder).config
    return checkpoint.read_config(folder)


class ModelCache:
    """Loaded translators, most recently used last. A checkpoint whose weights file changed
    (a run that kept training) is loaded again."""

    def __init__(self, capacity: int = MAX_CACHED_MODELS) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._models: OrderedDict[tuple[str, float, str], Translator] = OrderedDict()

    def get(self, folder: Path, precision: str = "float32") -> Translator:
        """The checkpoint's translator at `precision` (see `Translator.at_precision`)."""
        if isinstance(folder, hf.HubId):  # a Hub model: its files live in the Hugging Face cache
            key = (str(folder), 0.0, precision)
        else:
            files = [folder / name for name in (checkpoint.WEIGHTS, "config.json") if (folder / name).exists()]
            key = (str(folder.resolve()), files[0].stat().st_mtime if files else 0.0, precision)
        with self._lock:  # one load at a time: two requests for a new model load it once
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            base = self._models.get(key[:2] + ("float32",)) or core.load(folder)
            translator = base.at_precision(precision)
            for stale in [k for k in self._models if k[0] == key[0] and k[1] != key[1]]:
                del self._models[stale]
            self._models[key[:2] + ("float32",)] = base
            self._models[key] = translator
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return translator

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


MODELS = ModelCache()


def get_translator(choice: str | None, precision: str = "float32") -> Translator:
    return MODELS.get(resolve_checkpoint(choice), precision)


def model_summary(choice: str | None) -> str:
    """One Markdown line about the selected model, or how to get one."""
    if not choice:
        return "**No model yet.** Open the **Train** tab and press *Start training*: the tiny preset trains a first model in a few minutes."
    config = read_model_config(choice)
    if config.get("engine"):  # a pretrained Hugging Face model (core.hf): size, memory, load time
        return get_translator(choice).summary()
    model = config["run"]["model"]
    languages = ", ".join(language_name(code) for code in config["languages"])
    training = config.get("training") or {}
    status = f"{training['steps']} steps, {training['status']}" if training else "still training"
    return (
        f"**{resolve_checkpoint(choice).name}** · {languages} · {len(config['directions'])} trained directions · "
        f"{model['n_encoder_layers']}+{model['n_decoder_layers']} layers, d_model {model['d_model']}, "
        f"{config.get('parameters', 0):,} parameters · {status}"
    )
