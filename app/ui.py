"""The upload-an-image-and-see-its-caption web page (Gradio), mounted at /ui."""

import asyncio
import base64
import binascii
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from app.bounded import read_file
from app.captioning import caption_image
from app.config import Settings
from app.deps import Runtime, secret_matches
from app.errors import CaptionError

if TYPE_CHECKING:
    import gradio as gr

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # no phoning home, whatever the environment says

PATH = "/ui"
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
CONCURRENCY = 4


def mount(app: FastAPI) -> None:
    """Mount the Gradio page on `app` at /ui, behind HTTP Basic auth when configured."""
    import gradio as gr

    settings: Settings = app.state.settings
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
    if settings.ui_username and settings.ui_password:
        app.add_middleware(
            BasicAuthMiddleware,
            prefix=PATH,
            username=settings.ui_username,
            password=settings.ui_password.get_secret_value(),
        )


def build_interface(
    settings: Settings, fn: Callable[[str | None], Awaitable[str]]
) -> "gr.Interface":
    """The seed's "Image Captioning" interface, captioning with `fn`."""
    import gradio as gr

    model = settings.model_name
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
        outputs=[gr.Textbox(label="Caption")],
        title=f"Image Captioning with {name}",
        description=f"Caption any image using the `{model}` model. "
        "Operators: [the buckets' captions gallery](gallery).",
        flagging_mode="never",
        examples=[[str(path)] for path in example_images()],
        cache_examples=False,
        analytics_enabled=False,
        concurrency_limit=CONCURRENCY,
    )


def example_images() -> list[Path]:
    """The pictures drawn by app/examples/draw.py."""
    return sorted(EXAMPLES_DIR.glob("*.jpg"))


def caption_with(app: FastAPI) -> Callable[[str | None], Awaitable[str]]:
    """The page's function: the app's own captioner and limits, looked up on each call."""

    async def captioner(path: str | None) -> str:
        import gradio as gr

        if not path:
            raise gr.Error("Upload an image first.")
        runtime: Runtime = app.state.runtime
        try:
            data = await asyncio.to_thread(read_file, Path(path), runtime.settings.max_image_bytes)
            return await caption_image(data, runtime.captioner, runtime.settings)
        except CaptionError as exc:
            raise gr.Error(exc.reason, print_exception=False) from None

    return captioner


class BasicAuthMiddleware:
    """HTTP Basic auth for every request under `prefix` (pages, assets, API, websockets)."""

    def __init__(self, app: ASGIApp, prefix: str, username: str, password: str) -> None:
        self.app = app
        self.prefix = prefix
        self.username = username
        self.password = password

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] not in ("http", "websocket")
            or not self._guarded(scope["path"])
            or self._authorized(scope)
        ):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await send_unauthorized(send)

    def _guarded(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")

    def _authorized(self, scope: Scope) -> bool:
        headers = dict(scope["headers"])
        username, password = parse_basic(headers.get(b"authorization", b"").decode("latin-1"))
        user_ok = secret_matches(username, [self.username])
        password_ok = secret_matches(password, [self.password])
        return user_ok and password_ok


def parse_basic(authorization: str) -> tuple[str, str]:
    """(username, password) from an `Authorization: Basic ...` header; empty when absent."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    username, _, password = decoded.partition(":")
    return username, password


async def send_unauthorized(send: Send) -> None:
    body = b"authentication required"
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"www-authenticate", b'Basic realm="captioner", charset="UTF-8"'),
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
