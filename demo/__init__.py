"""Polyglot Lab's Gradio web app: `build_demo()` returns the Blocks (see app.py at the repo root)."""
