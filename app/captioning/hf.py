"""Hugging Face backends: image-to-text (Inference API, an Inference Endpoint URL or an
Inference Provider) and a vision-language model through chat_completion."""

import asyncio
import base64
import json
from collections.abc import Awaitable

from huggingface_hub import AsyncInferenceClient
from huggingface_hub.errors import HfHubHTTPError

from app.config import CaptionSettings
from app.errors import PermanentError, RetryableError
from app.images import PreparedImage

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
# The captioner cannot be reached or is misconfigured: not the image's fault, so retry.
CONFIG_STATUS = {401, 402, 403, 404}
ERROR_KINDS = {503: "loading", 429: "rate_limited", 408: "timeout", 504: "timeout"}


class _HuggingFaceCaptioner:
    def __init__(self, settings: CaptionSettings) -> None:
        self.model = settings.caption_model
        self._timeout = settings.caption_timeout
        token = settings.hf_token.get_secret_value() if settings.hf_token else None
        self._client = AsyncInferenceClient(
            model=settings.caption_model,
            provider=settings.hf_provider,  # type: ignore[arg-type]
            token=token,
            timeout=settings.caption_timeout,
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def _call(self, request: Awaitable[str]) -> str:
        try:
            async with asyncio.timeout(self._timeout):
                return await request
        except HfHubHTTPError as exc:
            raise classify_http_error(exc) from None
        except TimeoutError:
            raise RetryableError(
                f"captioner timed out after {self._timeout:.0f}s", kind="timeout"
            ) from None
        except Exception as exc:  # connection refused, reset, DNS: the transport's own errors
            raise RetryableError(
                f"captioner unreachable: {type(exc).__name__}: {exc}", kind="unreachable"
            ) from None


class InferenceCaptioner(_HuggingFaceCaptioner):
    """`image_to_text` (BLIP, vit-gpt2, ...): sends the downscaled JPEG bytes."""

    async def caption(self, image: PreparedImage) -> str:
        return await self._call(self._image_to_text(image))

    async def _image_to_text(self, image: PreparedImage) -> str:
        output = await self._client.image_to_text(image.data)
        return output.generated_text or ""


class ChatCaptioner(_HuggingFaceCaptioner):
    """A vision-language model through `chat_completion`, with a prompt and language."""

    def __init__(self, settings: CaptionSettings) -> None:
        super().__init__(settings)
        self._prompt = settings.caption_prompt
        if settings.caption_language:
            self._prompt += f" Answer in {settings.caption_language}."
        self._max_tokens = settings.max_new_tokens

    async def caption(self, image: PreparedImage) -> str:
        return await self._call(self._chat(image))

    async def _chat(self, image: PreparedImage) -> str:
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
        output = await self._client.chat_completion(messages, max_tokens=self._max_tokens)
        return output.choices[0].message.content or ""


def classify_http_error(exc: HfHubHTTPError) -> Exception:
    """503 loading / 429 / 5xx: retry (with the server's hint); other 4xx: the image is bad."""
    response = exc.response
    status = response.status_code if response is not None else 0
    detail = _error_detail(exc)
    if status in RETRYABLE_STATUS or status in CONFIG_STATUS or status == 0:
        kind = ERROR_KINDS.get(status, "config" if status in CONFIG_STATUS else "server_error")
        return RetryableError(f"captioner HTTP {status}: {detail}", _retry_hint(exc), kind)
    return PermanentError(f"captioner rejected the image (HTTP {status}): {detail}", "rejected")


def _body(exc: HfHubHTTPError) -> dict:
    try:
        body = json.loads(exc.response.content) if exc.response is not None else {}
    except (ValueError, AttributeError):
        return {}
    return body if isinstance(body, dict) else {}


def _error_detail(exc: HfHubHTTPError) -> str:
    error = _body(exc).get("error")
    return str(error)[:300] if error else str(exc).splitlines()[0][:300]


def _retry_hint(exc: HfHubHTTPError) -> float | None:
    """Seconds to wait, from `Retry-After` or the loading model's `estimated_time`."""
    header = exc.response.headers.get("retry-after") if exc.response is not None else None
    for value in (header, _body(exc).get("estimated_time")):
        try:
            if value is not None:
                return max(float(value), 0.0)
        except (TypeError, ValueError):
            continue
    return None
