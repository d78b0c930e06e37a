"""A Hugging Face inference stand-in (image-to-text and chat completion wire formats).

Captions are deterministic: ``"a {w}x{h} picture, mostly {colour}"``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageStat, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .servers import ThreadedServer, serve_in_thread

COLOURS = {
    "black": (0, 0, 0), "white": (255, 255, 255), "gray": (128, 128, 128),
    "red": (220, 30, 30), "green": (30, 160, 60), "blue": (30, 60, 220),
    "yellow": (240, 220, 40), "orange": (250, 140, 20), "purple": (130, 50, 160),
    "brown": (120, 80, 40), "pink": (250, 160, 190), "cyan": (40, 200, 220),
}


@dataclass
class Loading:
    """503 "model is loading"."""
    estimated_time: float = 20.0


@dataclass
class RateLimited:
    """429 with a Retry-After header."""
    retry_after: int = 1


@dataclass
class ServerError:
    status: int = 500
    message: str = "Internal Server Error"


@dataclass
class Hang:
    """Sleep ``seconds`` then answer normally (to trigger client timeouts)."""
    seconds: float = 30.0


def caption_for(data: bytes) -> str:
    """The stand-in's deterministic caption for image bytes (ValueError if undecodable)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            small = img.convert("RGB")
            small.thumbnail((64, 64))
            mean = ImageStat.Stat(small).mean
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot identify image file: {exc}") from exc
    colour = min(COLOURS, key=lambda c: sum((a - b) ** 2 for a, b in zip(COLOURS[c], mean,
                                                                          strict=True)))
    return f"a {w}x{h} picture, mostly {colour}"


class HuggingFaceStandIn:
    """ASGI app ``.app`` speaking HF's image-to-text and OpenAI chat wire formats."""

    def __init__(self, require_token: str | None = None) -> None:
        self.require_token = require_token
        self.latency = 0.0
        self.decode = True  # False: caption by size, without decoding (for benchmarks)
        self.calls: list[dict[str, Any]] = []
        self._script: deque[Any] = deque()
        self._lock = threading.Lock()
        self._server: ThreadedServer | None = None
        self._port = 0
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])

    # serving ----------------------------------------------------------------------
    def start(self) -> HuggingFaceStandIn:
        self._server = serve_in_thread(self.app, port=self._port)
        self._port = self._server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def refuse_connections(self, refuse: bool = True) -> None:
        """Stop listening (connections refused) or listen again on the same port."""
        if refuse:
            self.stop()
        elif self._server is None:
            self.start()

    def __enter__(self) -> HuggingFaceStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # knobs ------------------------------------------------------------------------
    def script(self, *responses: Any) -> None:
        """Queue outcomes (Loading, RateLimited, ServerError, Hang), one per request."""
        with self._lock:
            self._script.extend(responses)

    def _next_scripted(self) -> Any:
        with self._lock:
            return self._script.popleft() if self._script else None

    # handler ----------------------------------------------------------------------
    async def _handle(self, request: Request) -> Response:
        started = time.time()
        body = await request.body()
        path = "/" + request.path_params["path"]
        response = await self._respond(request, path, body)
        with self._lock:
            self.calls.append({
                "started": started, "time": time.time(), "path": path,
                "content_type": request.headers.get("content-type"), "n_bytes": len(body),
                "status": response.status_code,
                "authorization": request.headers.get("authorization"),
                "body": body,
            })
        return response

    async def _respond(self, request: Request, path: str, body: bytes) -> Response:
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.require_token and \
                request.headers.get("authorization") != f"Bearer {self.require_token}":
            return JSONResponse({"error": "Invalid credentials in Authorization header"}, 401)
        model = path.removeprefix("/models/").removesuffix("/v1/chat/completions").strip("/")
        scripted = self._next_scripted()
        if isinstance(scripted, Hang):
            await asyncio.sleep(scripted.seconds)
        elif isinstance(scripted, Loading):
            return JSONResponse({"error": f"Model {model} is currently loading",
                                 "estimated_time": scripted.estimated_time}, 503)
        elif isinstance(scripted, RateLimited):
            return JSONResponse({"error": "Rate limit reached. Please retry later."}, 429,
                                headers={"Retry-After": str(scripted.retry_after)})
        elif isinstance(scripted, ServerError):
            return JSONResponse({"error": scripted.message}, scripted.status)
        try:
            if path.endswith("/chat/completions"):
                return self._chat(body, model)
            image = _image_bytes(request, body)
            caption = caption_for(image) if self.decode else f"an image of {len(image)} bytes"
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse([{"generated_text": caption}])

    def _chat(self, body: bytes, model: str) -> Response:
        payload = json.loads(body)
        caption = caption_for(_chat_image(payload))
        return JSONResponse({
            "id": "chatcmpl-standin", "object": "chat.completion", "created": int(time.time()),
            "model": payload.get("model") or model, "system_fingerprint": "hf-standin",
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": caption}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": len(caption.split()),
                      "total_tokens": 10 + len(caption.split())},
        })


def _image_bytes(request: Request, body: bytes) -> bytes:
    """Raw image bytes, or the base64 ``inputs`` of a JSON body."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            return base64.b64decode(json.loads(body)["inputs"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise ValueError(f"invalid JSON inputs: {exc}") from exc
    return body


def _chat_image(payload: dict[str, Any]) -> bytes:
    """The first ``data:`` image_url content part of the chat messages."""
    for message in payload.get("messages", []):
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if part.get("type") == "image_url":
                url = part["image_url"]["url"]
                if not url.startswith("data:"):
                    raise ValueError("the stand-in only accepts data: image URLs")
                try:
                    return base64.b64decode(url.split(",", 1)[1], validate=True)
                except (IndexError, binascii.Error) as exc:
                    raise ValueError(f"invalid data URL: {exc}") from exc
    raise ValueError("no image_url content part in messages")
