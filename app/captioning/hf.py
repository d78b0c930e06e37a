"""Hugging Face backends: image-to-text (an Inference Endpoint URL, or hf-inference through
the router) and a vision-language model through chat completion (Inference Providers, or any
OpenAI-compatible server such as TGI or vLLM). Every failure is mapped to its class here."""

import asyncio
import base64
import json
import math

import httpx2
from huggingface_hub import AsyncInferenceClient
from huggingface_hub.errors import HfHubHTTPError

from app.captioning.routes import IMAGE_TO_TEXT, Route, resolve_route
from app.core.config import CaptionSettings
from app.core.errors import (
    CaptionerAway,
    CaptionError,
    ConfigurationError,
    PermanentError,
    RetryableError,
)
from app.core.images import PreparedImage, probe_image

TRANSIENT_STATUS = {408, 409, 425, 500, 502, 504}
ERROR_KINDS = {408: "timeout", 504: "timeout"}


class HuggingFaceCaptioner:
    """Captions through the route resolved for the settings (once, then kept)."""

    def __init__(self, settings: CaptionSettings) -> None:
        self.model = settings.caption_model
        self._settings = settings
        self._timeout = settings.caption_timeout
        self._token = settings.hf_token.get_secret_value() if settings.hf_token else None
        self._prompt = settings.caption_prompt
        if settings.caption_language:
            self._prompt += f" Answer in {settings.caption_language}."
        self._route: Route | None = None
        self._client: AsyncInferenceClient | None = None
        self._resolving = asyncio.Lock()

    @property
    def route(self) -> Route | None:
        """The route in use, once resolved."""
        return self._route

    async def resolve(self) -> Route:
        """Resolve the route now (again); ConfigurationError when there is none."""
        route = await resolve_route(self._settings)
        if route != self._route:
            old, self._client = self._client, self._new_client(route)
            self._route = route
            if old is not None:
                await old.close()
        return route

    def _new_client(self, route: Route) -> AsyncInferenceClient:
        # a URL is called as it is (no Hub look-up); for chat it is the OpenAI base URL
        if route.task == IMAGE_TO_TEXT:
            return AsyncInferenceClient(model=route.url, token=self._token, timeout=self._timeout)
        return AsyncInferenceClient(base_url=route.url, token=self._token, timeout=self._timeout)

    async def _ready_client(self) -> tuple[Route, AsyncInferenceClient]:
        if self._route is None or self._client is None:
            async with self._resolving:
                if self._route is None:
                    await self.resolve()
        assert self._route is not None and self._client is not None
        return self._route, self._client

    async def check(self) -> None:
        """Resolve the route again and caption a tiny image: raises what captioning would."""
        await self.resolve()
        await self.caption(probe_image())

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def caption(self, image: PreparedImage) -> str:
        route, client = await self._ready_client()
        try:
            async with asyncio.timeout(self._timeout):
                if route.task == IMAGE_TO_TEXT:
                    return await self._image_to_text(client, image)
                return await self._chat(client, route, image)
        except CaptionError:
            raise
        except Exception as exc:
            raise classify(exc, route) from None

    async def _image_to_text(self, client: AsyncInferenceClient, image: PreparedImage) -> str:
        output = await client.image_to_text(image.data)
        if not isinstance(output.generated_text, str):
            raise BodyError(f"no generated_text in {output!r:.200}")
        return output.generated_text

    async def _chat(self, client: AsyncInferenceClient, route: Route, image: PreparedImage) -> str:
        data_url = "data:image/jpeg;base64," + base64.b64encode(image.data).decode()
        messages = [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": data_url}},
                    {"type": "text", "text": self._prompt},
                ],
            }
        ]
        output = await client.chat_completion(
            messages, model=route.payload_model, max_tokens=self._settings.max_new_tokens
        )
        if not output.choices or not isinstance(output.choices[0].message.content, str):
            raise BodyError(f"no choices[0].message.content in {output!r:.200}")
        return output.choices[0].message.content


class BodyError(ValueError):
    """A 200 whose body is not what the task returns."""


def classify(exc: Exception, route: Route) -> Exception:
    """The one place Hugging Face failures get their class (see app/core/errors.py).

    Sources: status codes and bodies as huggingface_hub raises them (HfHubHTTPError with the
    response attached; InferenceTimeoutError); the router's 400 "model not supported" and
    402 "exceeded your monthly included credits" answers as Hugging Face documents and users
    report them."""
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return _classify_status(exc, route)
    if isinstance(exc, TimeoutError | httpx2.TimeoutException):
        return RetryableError(f"captioner timed out ({type(exc).__name__})", kind="timeout")
    if isinstance(exc, httpx2.ConnectError):
        return CaptionerAway(f"captioner unreachable: {exc}", kind="unreachable")
    if isinstance(exc, httpx2.TransportError):
        return RetryableError(f"captioner connection failed: {exc}", kind="connection")
    if isinstance(exc, ValueError | IndexError):  # parsing the answer (json, list, instance)
        return ConfigurationError(
            f"{route.url} answered 200 with a body that is not a valid {route.task} answer "
            f"({type(exc).__name__}: {str(exc)[:200]}): is it a model for that task?",
            "CAPTION_MODEL or CAPTION_BACKEND",
            kind="bad_body",
        )
    return exc  # unexpected: counted as an attempt by the worker


def _classify_status(exc: HfHubHTTPError, route: Route) -> Exception:
    status = exc.response.status_code
    detail = _error_detail(exc)
    said = f"HTTP {status}: {detail}"
    if status == 401:
        return ConfigurationError(f"Hugging Face refused the token ({said})", "HF_TOKEN")
    if status == 402:
        return ConfigurationError(
            f"no credits left for Inference Providers ({said}): add credits or a plan to the "
            "token's account",
            "HF_TOKEN",
            kind="no_credits",
        )
    if status == 403:
        return ConfigurationError(
            f"the token may not call this model ({said}): a fine-grained token needs "
            '"Make calls to Inference Providers"',
            "HF_TOKEN",
        )
    if status == 404 and route.provider == "endpoint" and route.task != IMAGE_TO_TEXT:
        return ConfigurationError(
            f"{route.url} does not serve the model the request names ({said})",
            "SERVED_MODEL_NAME (vLLM: its --served-model-name) or CAPTION_MODEL",
        )
    if status == 404:
        return ConfigurationError(f"{route.url} has no model ({said})", "CAPTION_MODEL")
    if status == 400 and _model_not_supported(exc):
        return ConfigurationError(
            f"the router serves no provider for {route.payload_model or route.model} ({said})",
            "CAPTION_MODEL or HF_PROVIDER",
        )
    if status == 503:
        return CaptionerAway(f"captioner loading or unavailable ({said})", _hint(exc), "loading")
    if status == 429:
        return CaptionerAway(f"captioner rate-limited ({said})", _hint(exc), "rate_limited")
    if status in TRANSIENT_STATUS or status >= 500:
        kind = ERROR_KINDS.get(status, "server_error")
        return RetryableError(f"captioner {said}", _hint(exc), kind)
    return PermanentError(f"captioner rejected the image ({said})", "rejected")


def _body(exc: HfHubHTTPError) -> dict:
    try:
        body = json.loads(exc.response.content)
    except (ValueError, AttributeError):
        return {}
    return body if isinstance(body, dict) else {}


def _error_detail(exc: HfHubHTTPError) -> str:
    body = _body(exc)
    error = body.get("error") or body.get("message")  # vLLM: {"object": "error", "message"}
    if isinstance(error, dict):  # OpenAI-style {"error": {"message", "code", ...}}
        error = error.get("message")
    return str(error)[:300] if error else str(exc).strip().splitlines()[0][:300]


def _model_not_supported(exc: HfHubHTTPError) -> bool:
    error = _body(exc).get("error")
    code = error.get("code") if isinstance(error, dict) else None
    return code == "model_not_supported" or "not supported by any provider" in _error_detail(exc)


def _hint(exc: HfHubHTTPError) -> float | None:
    """Seconds to wait, from `Retry-After` or the loading model's `estimated_time`."""
    header = exc.response.headers.get("retry-after")
    for value in (header, _body(exc).get("estimated_time")):
        try:
            seconds = float(value) if value is not None else math.nan
        except (TypeError, ValueError):
            continue
        if math.isfinite(seconds):
            return max(seconds, 0.0)
    return None
