"""An OpenAI-compatible inference server stand-in (vLLM's `vllm serve`, Text Generation
Inference's Messages API), the `chat` backend's way to a self-hosted, autoscaled captioner.

What it models, and where from:
- `POST /v1/chat/completions` with OpenAI's body (`model`, `messages` whose content parts
  include `{"type": "image_url", "image_url": {"url": "data:..."}}`, `max_tokens`) answers
  an OpenAI `chat.completion` object (vLLM: vllm/entrypoints/openai/protocol.py;
  TGI: docs "Messages API").
- `model` must name a served model, or the answer is 404
  `{"object": "error", "message": "The model `x` does not exist.", "type": "NotFoundError",
  "param": null, "code": 404}` (vLLM's OpenAIServing._check_model; TGI ignores the field).
- With an API key (`vllm serve --api-key`), a request without `Authorization: Bearer <key>`
  gets 401 `{"error": "Unauthorized"}` (vLLM's api_server authentication middleware).
- `GET /v1/models` lists the served names (OpenAI's list format).
- Many requests are served at once (continuous batching): `max_in_flight` records the peak.
- `response_format` as vLLM reads it (OpenAI's json_schema and json_object; a json_schema
  type without its `json_schema` is a 400): tests/harness/structured_output.py has the
  sources and the answers.
Captions are the HF stand-in's: `"a {w}x{h} picture, mostly {colour}"`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import structured_output
from .hf_stub import _chat_image, caption_for
from .servers import ThreadedServer, serve_in_thread


class OpenAICompatibleServer:
    def __init__(self, served_model: str, api_key: str | None = None) -> None:
        self.served_model = served_model
        self.api_key = api_key
        self.latency = 0.0
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadedServer | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    def start(self) -> OpenAICompatibleServer:
        self._server = serve_in_thread(self.app)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url

    def __enter__(self) -> OpenAICompatibleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _authorized(self, request: Request) -> bool:
        return (
            self.api_key is None or request.headers.get("authorization") == f"Bearer {self.api_key}"
        )

    async def _models(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"error": "Unauthorized"}, 401)
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": self.served_model, "object": "model", "owned_by": "vllm"}],
            }
        )

    async def _chat(self, request: Request) -> Response:
        if not self._authorized(request):
            return JSONResponse({"error": "Unauthorized"}, 401)
        payload = json.loads(await request.body())
        with self._lock:
            self.requests.append({"model": payload.get("model"), "body": payload})
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if payload.get("model") != self.served_model:
                message = f"The model `{payload.get('model')}` does not exist."
                return JSONResponse(
                    {
                        "object": "error",
                        "message": message,
                        "type": "NotFoundError",
                        "param": None,
                        "code": 404,
                    },
                    404,
                )
            refused = structured_output.vllm_refusal(payload.get("response_format"))
            if refused is not None:
                return refused
            if self.latency:
                await asyncio.sleep(self.latency)
            caption = structured_output.answer(caption_for(_chat_image(payload)), payload)
        except ValueError as exc:
            return JSONResponse(
                {
                    "object": "error",
                    "message": str(exc),
                    "type": "BadRequestError",
                    "param": None,
                    "code": 400,
                },
                400,
            )
        finally:
            with self._lock:
                self.in_flight -= 1
        return JSONResponse(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": self.served_model,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "logprobs": None,
                        "message": {"role": "assistant", "content": caption},
                    }
                ],
                "usage": {
                    "prompt_tokens": 20,
                    "completion_tokens": len(caption.split()),
                    "total_tokens": 20 + len(caption.split()),
                },
            }
        )
