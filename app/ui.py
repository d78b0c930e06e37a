"""The upload-an-image-and-see-its-caption web page (Gradio), mounted at /ui."""

from fastapi import FastAPI


def mount(app: FastAPI) -> None:
    """Mount the Gradio page on `app` (no-op until built)."""
