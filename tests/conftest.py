"""Shared fixtures: a tiny model trained for real on the built-in corpus, once per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from core.corpus import Corpus, load_builtin
from tests.helpers import require_multi30k, tiny_config

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# The searches decode with the Python step; tests/test_compiled.py builds the compiled one itself.
os.environ.setdefault("POLYGLOT_COMPILE", "0")
# One thread: the suite must behave on a 2-core CI machine, and oversubscribed OpenMP threads
# slow everything down far more than they help.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def builtin_corpus() -> Corpus:
    return load_builtin(n_sentences=3000)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, builtin_corpus: Corpus) -> Path:
    from core.train import train

    folder = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_config(), folder, corpus=builtin_corpus)
    return folder


@pytest.fixture(scope="session")
def tiny_translator(tiny_checkpoint: Path):
    import core

    return core.load(tiny_checkpoint)


@pytest.fixture(scope="session")
def multi30k_dir() -> Path:
    return require_multi30k()


# --- the web app (demo/ and app.py) -----------------------------------------------------------


@pytest.fixture(scope="session")
def app_checkpoints(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Path:
    """A checkpoints folder for the app holding a copy of the tiny model, named "tiny"."""
    from tests.app_server import copy_checkpoint

    folder = tmp_path_factory.mktemp("app-checkpoints")
    copy_checkpoint(tiny_checkpoint, folder, "tiny")
    return folder


@pytest.fixture(scope="session")
def app_server(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path):
    """`python app.py` in a subprocess on a free port, serving its own copy of the tiny model.

    Shared by the HTTP and browser tests; stopped at the end of the session.
    """
    from tests.app_server import copy_checkpoint, launch_app

    folder = tmp_path_factory.mktemp("server-checkpoints")
    copy_checkpoint(tiny_checkpoint, folder, "tiny")
    server = launch_app(folder, tmp_path_factory.mktemp("server-log") / "app.log")
    yield server
    server.stop()
