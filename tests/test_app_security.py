"""The launched app serves no file outside Gradio's own upload cache: not system files, not the
project's source, not model weights."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.app_server import PROJECT_ROOT, AppServer

pytestmark = pytest.mark.slow


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.parametrize("target", ["/etc/passwd", str(PROJECT_ROOT / "core" / "model.py"), "../../etc/passwd"])
def test_files_outside_the_app_are_not_served(app_server: AppServer, target: str) -> None:
    for prefix in ("gradio_api/file=", "file="):
        assert status_of(app_server.url + prefix + target) in (400, 403, 404)


def test_model_weights_are_not_downloadable(app_server: AppServer) -> None:
    weights = app_server.checkpoints / "tiny" / "model.safetensors"
    assert weights.exists()
    assert status_of(app_server.url + "gradio_api/file=" + str(weights)) in (400, 403, 404)
