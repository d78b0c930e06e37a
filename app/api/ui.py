"""The upload-an-image-and-see-its-caption web page (Gradio), mounted at /ui.

Under the Caption box a notice says what stands in the way, from the first load (a local model
not fetched yet, a paused worker) and after a failed caption (the reason stays there, no
vanishing toast). The footer offers no "Use via API" panel: the page's own Gradio API is not
the product's (`POST /v1/captions` is), and its MCP tab has no server behind it.
"""

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from app.api.auth import WebPageAuth
from app.api.deps import Runtime
from app.api.ops import captioner_status
from app.captioning import describe_image
from app.captioning.description import DescribeRequest
from app.core.bounded import read_file
from app.core.config import Settings
from app.core.errors import CaptionError, Failure
from app.core.images import EXAMPLES

if TYPE_CHECKING:
    import gradio as gr

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no phoning home, whatever the environment says

log = logging.getLogger(__name__)
PATH = "/ui"
EXAMPLES_DIR = EXAMPLES
CONCURRENCY = 4
NO_IMAGE = "Upload an image first (or click an example)."

# (caption, alt text, tags, notice): what one Submit shows
Answer = tuple[str, str, str, str]


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
        build_interface(settings, caption_with(app), notice_of(app)),
        path=PATH,
        # Gradio builds the URLs of files a function returns (an example put in the upload
        # box) from the request path minus the whole path, mount included: without its root
        # the preview would ask for /gradio_api/file=... (404) instead of /ui/gradio_api/...
        root_path=PATH,
        allowed_paths=[str(EXAMPLES_DIR)],
        max_file_size=settings.max_image_bytes,
        footer_links=["gradio", "settings"],
        run_history=False,
        ssr_mode=False,
        mcp_server=False,
        show_error=True,
    )


def build_interface(
    settings: Settings,
    fn: Callable[[str | None], Awaitable[Answer]],
    notice: Callable[[], Awaitable[Any]] | None = None,
) -> "gr.Interface":
    """The seed's "Image Captioning" interface, captioning with `fn`: the caption, and under
    it the alt text, the tags and the notice (`notice` fills it when the page loads)."""
    import gradio as gr

    model = settings.model_name
    gallery = settings.pipeline_connected  # app/api/gallery.py is served with the pipeline
    name = "BLIP" if "blip" in model.lower() else model.rstrip("/").rsplit("/", 1)[-1]
    notice_box = gr.Markdown(elem_id="notice")
    interface = gr.Interface(
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
            notice_box,
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
    if notice is not None:
        with interface:
            interface.load(notice, outputs=[notice_box], queue=False, show_progress="hidden")
    return interface


def example_images() -> list[Path]:
    """The pictures drawn by app/core/examples/draw.py."""
    return sorted(EXAMPLES_DIR.glob("*.jpg"))


def warning(text: str) -> str:
    return f"⚠️ {text}"


def notice_of(app: FastAPI) -> Callable[[], Awaitable[Any]]:
    """What the page says when it loads: why captioning cannot work yet, or nothing (no
    update: a Submit answered meanwhile keeps its notice)."""

    async def notice() -> Any:
        import gradio as gr

        runtime: Runtime = app.state.runtime
        status = await captioner_status(runtime)
        return gr.skip() if status == "ok" else warning(f"Captioning is not ready: {status}")

    return notice


# The fields the page shows: a model is asked for these only (Florence-2: one task, not three)
SHOWN = DescribeRequest(fields=("caption", "alt_text", "tags"))


def caption_with(app: FastAPI) -> Callable[[str | None], Awaitable[Answer]]:
    """The page's function: the app's own captioner and limits, looked up on each call; a
    field the model could not fill shows as "(not filled by <model>)". A failure answers
    empty fields and its reason in the notice; the log gets one line (no traceback: the
    reason says it all), a warning unless the image was at fault."""

    async def captioner(path: str | None) -> Answer:
        if not path:
            return "", "", "", warning(NO_IMAGE)
        runtime: Runtime = app.state.runtime
        try:
            data = await asyncio.to_thread(read_file, Path(path), runtime.settings.max_image_bytes)
            description = await describe_image(data, runtime.captioner, runtime.settings, SHOWN)
        except CaptionError as exc:
            level = logging.INFO if exc.failure is Failure.IMAGE else logging.WARNING
            log.log(level, "web page: no caption (%s): %s", exc.failure, exc.reason)
            return "", "", "", warning(f"No caption: {exc.reason}")
        absent = f"(not filled by {runtime.captioner.model})"
        alt_text = description.alt_text or absent
        tags = ", ".join(description.tags) if "tags" not in description.missing else absent
        return description.caption, alt_text, tags, ""

    return captioner
