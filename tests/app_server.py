"""Launch `python app.py` in a subprocess on a free port, for the HTTP and browser tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 180  # importing torch and gradio on a busy 2-core machine is slow


@dataclass
class AppServer:
    url: str
    process: subprocess.Popen
    checkpoints: Path
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def copy_checkpoint(source: Path, checkpoints: Path, name: str) -> Path:
    """A copy of a run folder under `checkpoints` (the app only loads models from there)."""
    target = checkpoints / name
    shutil.copytree(source, target)
    return target


def launch_app(checkpoints: Path, log: Path, timeout: float = START_TIMEOUT_S, env: dict[str, str] | None = None) -> AppServer:
    """Start app.py serving `checkpoints` and wait until it answers; raises with the log if it dies.

    `env` adds (or overrides) environment variables of the app, e.g. {"POLYGLOT_HOSTED": "1"}.
    """
    port = free_port()
    env = {
        **os.environ,
        "POLYGLOT_CHECKPOINTS": str(checkpoints),
        "POLYGLOT_HOST": "127.0.0.1",
        "POLYGLOT_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    handle = open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed when the process ends
    process = subprocess.Popen([sys.executable, "app.py"], cwd=PROJECT_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    handle.close()  # the child keeps its own descriptor
    server = AppServer(f"http://127.0.0.1:{port}/", process, checkpoints, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with code {process.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + "config", timeout=5) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"app.py did not answer within {timeout:.0f} s:\n{server.log_tail()}")
