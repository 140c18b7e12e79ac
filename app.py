"""Polyglot Lab web app.

    python app.py                      # http://127.0.0.1:7860
    python app.py --host 0.0.0.0 --port 8080

Host and port also come from POLYGLOT_HOST / POLYGLOT_PORT, or Gradio's GRADIO_SERVER_NAME /
GRADIO_SERVER_PORT (set by Hugging Face Spaces); flags win over variables. Models are read from
checkpoints/ next to this file, or from $POLYGLOT_CHECKPOINTS. On a Space, this file runs as is:
`demo` is built at import and launched below.
"""

from __future__ import annotations

import argparse
import os

from core.corpus import MAX_UPLOAD_BYTES
from core.limits import current_limits
from demo import state
from demo.app import CSS, THEME, build_demo

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7860

demo = build_demo()


def _env(*names: str) -> str | None:
    return next((os.environ[name] for name in names if os.environ.get(name)), None)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Serve the Polyglot Lab web app.")
    parser.add_argument(
        "--host",
        default=_env("POLYGLOT_HOST", "GRADIO_SERVER_NAME") or DEFAULT_HOST,
        help=f"interface to listen on (default {DEFAULT_HOST}; 0.0.0.0 for every interface)",
    )
    parser.add_argument(
        "--port", type=int, default=int(_env("POLYGLOT_PORT", "GRADIO_SERVER_PORT") or DEFAULT_PORT), help=f"port (default {DEFAULT_PORT})"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        theme=THEME,
        css=CSS,
        allowed_paths=[],  # nothing beyond Gradio's own upload cache is served
        blocked_paths=[str(state.checkpoints_dir())],  # model files are never downloadable
        max_file_size=min(MAX_UPLOAD_BYTES, int(current_limits().max_upload_mb * 1e6)),  # hosted: a smaller cap
        show_error=True,
    )


if __name__ == "__main__":
    main()
