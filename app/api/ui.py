"""The upload-an-image-and-see-its-caption web page (Gradio), mounted at /ui."""

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from app.api.auth import WebPageAuth
from app.api.deps import Runtime
from app.captioning import describe_image
from app.core.bounded import read_file
from app.core.config import Settings
from app.core.errors import CaptionError
from app.core.images import EXAMPLES

if TYPE_CHECKING:
    import gradio as gr

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no phoning home, whatever the environment says

PATH = "/ui"
EXAMPLES_DIR = EXAMPLES
CONCURRENCY = 4


def mount(app: FastAPI) -> None:
    """Mount the Gradio page on `app` at /ui, guarded as `Settings.ui_auth` says (app/api/auth.py):
    a locked page is not built at all, every /ui request gets 403 with the reason."""
    settings: Settings = app.state.settings
    if settings.ui_auth != "open":
        app.add_middleware(WebPageAuth, settings=settings, prefix=PATH)
    if settings.ui_auth == "locked":
        return
    import gradio as gr

    gr.mount_gradio_app(
        app,
        build_interface(settings, caption_with(app)),
        path=PATH,
        allowed_paths=[str(EXAMPLES_DIR)],
        max_file_size=settings.max_image_bytes,
        run_history=False,
        ssr_mode=False,
        mcp_server=False,
        show_error=True,
    )


def build_interface(
    settings: Settings, fn: Callable[[str | None], Awaitable[Any]]
) -> "gr.Interface":
    """The seed's "Image Captioning" interface, captioning with `fn`: the caption, and under
    it the alt text and the tags."""
    import gradio as gr

    model = settings.model_name
    gallery = settings.pipeline_connected  # app/api/gallery.py is served with the pipeline
    name = "BLIP" if "blip" in model.lower() else model.rstrip("/").rsplit("/", 1)[-1]
    return gr.Interface(
        fn=fn,
        inputs=[
            gr.Image(
                label="Upload image",
                type="filepath",
                image_mode=None,
                sources=["upload", "clipboard"],
            )
        ],
        outputs=[
            gr.Textbox(label="Caption"),
            gr.Textbox(label="Alt text"),
            gr.Textbox(label="Tags"),
        ],
        title=f"Image Captioning with {name}",
        description=f"Caption any image using the `{model}` model."
        + (" Operators: [the buckets' captions gallery](gallery)." if gallery else ""),
        flagging_mode="never",
        examples=[[str(path)] for path in example_images()],
        cache_examples=False,
        analytics_enabled=False,
        concurrency_limit=CONCURRENCY,
    )


def example_images() -> list[Path]:
    """The pictures drawn by app/core/examples/draw.py."""
    return sorted(EXAMPLES_DIR.glob("*.jpg"))


def caption_with(app: FastAPI) -> Callable[[str | None], Awaitable[tuple[str, str, str]]]:
    """The page's function: the app's own captioner and limits, looked up on each call; a
    field the model could not fill shows as "(not filled by <model>)"."""

    async def captioner(path: str | None) -> tuple[str, str, str]:
        import gradio as gr

        if not path:
            raise gr.Error("Upload an image first.")
        runtime: Runtime = app.state.runtime
        try:
            data = await asyncio.to_thread(read_file, Path(path), runtime.settings.max_image_bytes)
            description = await describe_image(data, runtime.captioner, runtime.settings)
        except CaptionError as exc:
            raise gr.Error(exc.reason, print_exception=False) from None
        absent = f"(not filled by {runtime.captioner.model})"
        alt_text = description.alt_text or absent
        tags = ", ".join(description.tags) if "tags" not in description.missing else absent
        return description.caption, alt_text, tags

    return captioner
