"""Hugging Face backends: image-to-text (an Inference Endpoint URL, or hf-inference through
the router) and a vision-language model through chat completion (Inference Providers, or any
OpenAI-compatible server such as TGI or vLLM). Every failure is mapped to its class here."""

import asyncio
import base64
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlparse

import httpx2
from huggingface_hub import AsyncInferenceClient, ChatCompletionOutput
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import build_hf_headers, hf_raise_for_status

from app.captioning.deadline import OutOfTime, within
from app.captioning.description import DescribeRequest, Description
from app.captioning.routes import IMAGE_TO_TEXT, Route, resolve_route
from app.captioning.structured import describe_with_retry, response_format
from app.core.config import CaptionSettings
from app.core.errors import (
    CaptionerAway,
    CaptionError,
    ConfigurationError,
    PermanentError,
    RetryableError,
    UnusableAnswer,
)
from app.core.images import PreparedImage, probe_image

TRANSIENT_STATUS = {408, 409, 425, 500, 502, 504}
ERROR_KINDS = {408: "timeout", 504: "timeout"}
T = TypeVar("T")
log = logging.getLogger(__name__)


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
        self._http: httpx2.AsyncClient | None = None  # the structured call (see _chat_json)
        self._takes_response_format = True  # until the route refuses it once
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
            self._takes_response_format = True
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
        if self._http is not None:
            await self._http.aclose()

    async def caption(self, image: PreparedImage) -> str:
        route, client = await self._ready_client()
        if route.task == IMAGE_TO_TEXT:
            return await self._request(route, lambda: self._image_to_text(client, image))
        return await self._request(route, lambda: self._chat(client, route, image, self._prompt))

    async def describe(
        self, image: PreparedImage, request: DescribeRequest, deadline: float
    ) -> Description:
        """Every field in one chat call (structured output where the route takes it); an
        image-to-text model's sentence is the caption and the alt text. Each request within
        CAPTION_TIMEOUT and by `deadline` (app/captioning/deadline.py)."""
        route, client = await self._ready_client()
        limit = self._settings.alt_text_max_chars
        if route.task == IMAGE_TO_TEXT:  # one request, the first: a CAPTION_TIMEOUT of its own
            caption = (await self.caption(image)).strip()
            return Description.from_caption(caption, request, alt_text_max_chars=limit)

        async def ask(prompt: Callable[[bool], str]) -> str:
            return await self._classified(
                route, lambda: self._ask_json(route, image, prompt, request, deadline)
            )

        async def plain() -> str:
            sentence = f"{self._settings.caption_prompt} {_in_language(request.language)}"
            return await self._request(
                route, lambda: self._chat(client, route, image, sentence), deadline
            )

        return await describe_with_retry(ask, plain, request, limit)

    async def _request(
        self, route: Route, call: Callable[[], Awaitable[T]], deadline: float | None = None
    ) -> T:
        """One request within CAPTION_TIMEOUT (and by `deadline`), its failure classified."""
        return await self._classified(route, lambda: within(call, self._timeout, deadline))

    async def _classified(self, route: Route, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, its failure given its class; the description's OutOfTime passed on."""
        try:
            return await call()
        except (CaptionError, OutOfTime):
            raise
        except Exception as exc:
            raise classify(exc, route) from None

    async def _image_to_text(self, client: AsyncInferenceClient, image: PreparedImage) -> str:
        output = await client.image_to_text(image.data)
        if not isinstance(output.generated_text, str):
            raise BodyError(f"no generated_text in {output!r:.200}")
        return output.generated_text

    async def _chat(
        self, client: AsyncInferenceClient, route: Route, image: PreparedImage, prompt: str
    ) -> str:
        output = await client.chat_completion(
            _messages(image, prompt),
            model=route.payload_model,
            max_tokens=self._settings.max_new_tokens,
        )
        if not output.choices or not isinstance(output.choices[0].message.content, str):
            raise BodyError(f"no choices[0].message.content in {output!r:.200}")
        return output.choices[0].message.content

    async def _ask_json(
        self,
        route: Route,
        image: PreparedImage,
        prompt: Callable[[bool], str],
        request: DescribeRequest,
        deadline: float,
    ) -> str:
        """The JSON answer: with the schema as `response_format` while the route takes it,
        else with the schema in the prompt. A 400/422 to the structured call is asked again
        without `response_format`: when that answers, the route refused the parameter (or a
        keyword of the schema) and is asked without it from then on; when it does not, the
        second refusal is classified as any other (the image's fault). Each request within
        CAPTION_TIMEOUT and by `deadline`."""

        def ask(schema: dict[str, Any] | None) -> Awaitable[str]:
            with_schema = schema is None  # no response_format: the schema in the prompt
            return within(
                lambda: self._chat_json(route, image, prompt(with_schema), schema),
                self._timeout,
                deadline,
            )

        if not self._takes_response_format:
            return await ask(None)
        try:
            return await ask(response_format(request, self._settings.alt_text_max_chars))
        except HfHubHTTPError as exc:
            if exc.response is None or exc.response.status_code not in (400, 422):
                raise
            refusal = _error_detail(exc)
        content = await ask(None)
        self._takes_response_format = False
        log.warning(
            "%s refused response_format (%s): the schema goes in the prompt from now on",
            route.describe(),
            refusal,
        )
        return content

    async def _chat_json(
        self,
        route: Route,
        image: PreparedImage,
        prompt: str,
        schema: dict[str, Any] | None,
    ) -> str:
        """POST the chat request as OpenAI's API spells it. Not through
        `AsyncInferenceClient.chat_completion`: for a URL it uses the hf-inference helper,
        which rewrites a `json_schema` response_format into TGI's `{"type": "json_object",
        "value": <schema>}` (huggingface_hub inference/_providers/hf_inference.py,
        HFInferenceConversational), a shape the router's providers and vLLM do not read as a
        schema (vLLM ignores `value` and only forces some JSON object)."""
        body: dict[str, Any] = {
            "model": route.payload_model or "dummy",  # what huggingface_hub sends to a URL
            "messages": _messages(image, prompt),
            "max_tokens": self._settings.describe_max_tokens,
        }
        if schema is not None:
            body["response_format"] = schema
        if self._http is None:
            self._http = httpx2.AsyncClient(timeout=self._timeout)
        headers = build_hf_headers(token=self._token or False)
        response = await self._http.post(_chat_url(route.url), json=body, headers=headers)
        hf_raise_for_status(response)
        output = ChatCompletionOutput.parse_obj_as_instance(response.content)
        if not output.choices:
            raise BodyError(f"no choices in {output!r:.200}")
        content = output.choices[0].message.content
        return content if isinstance(content, str) else ""  # None: a refusal, read as empty


def _messages(image: PreparedImage, prompt: str) -> list[dict[str, Any]]:
    data_url = "data:image/jpeg;base64," + base64.b64encode(image.data).decode()
    return [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": data_url}},
                {"type": "text", "text": prompt},
            ],
        }
    ]


def _in_language(language: str) -> str:
    return f'Answer in the language with BCP 47 tag "{language}".'


def _chat_url(base: str) -> str:
    """`<base>/v1/chat/completions` as huggingface_hub builds it for a URL
    (hf_inference._build_chat_completion_url): kept as is when it ends so already."""
    parsed = urlparse(base)
    path = parsed.path.rstrip("/")
    if path.endswith("/chat/completions"):
        return base
    path += "/chat/completions" if path.endswith("/v1") else "/v1/chat/completions"
    return parsed._replace(path=path).geturl()


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
        said = f"{type(exc).__name__}: {str(exc)[:200]}"
        return UnusableAnswer(
            f"{route.url} answered 200 with a body that is not a valid {route.task} answer "
            f"({said}): is it a model for that task?",
            "CAPTION_MODEL or CAPTION_BACKEND",
            f"the model's answer for this image is not a valid {route.task} answer ({said})",
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
    detail = body.get("detail")  # a FastAPI provider's 422: {"detail": [{"loc", "msg"}]}
    if not error and isinstance(detail, list) and detail and isinstance(detail[0], dict):
        error = f"{'.'.join(map(str, detail[0].get('loc', [])))}: {detail[0].get('msg')}"
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
