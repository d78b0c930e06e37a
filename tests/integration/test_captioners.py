"""The Hugging Face backends against the wire-format stand-in: results and error mapping."""

import asyncio
import json

import pytest

from app.captioning import build_captioner
from app.captioning.hf import HuggingFaceCaptioner
from app.core.config import CaptionSettings
from app.core.errors import CaptionerAway, ConfigurationError, PermanentError, RetryableError
from app.core.images import prepare_image
from tests.harness.hf_stub import Hang, Loading, RateLimited, ServerError, caption_for
from tests.support import make_image


def settings_for(hf, backend: str = "hf", **overrides) -> CaptionSettings:
    values = {
        "hf_token": "hf_x",
        "caption_backend": backend,
        "caption_model": f"{hf.url}/models/Salesforce/blip-image-captioning-base",
        "hf_endpoint": hf.url,
        "hf_router_url": hf.url,
    }
    return CaptionSettings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


def caption(captioner, image_bytes: bytes = make_image((30, 30, 220))) -> str:
    async def run() -> str:
        try:
            return await captioner.caption(
                prepare_image(image_bytes, max_side=512, max_pixels=10**8)
            )
        finally:
            await captioner.aclose()

    return asyncio.run(run())


def test_image_to_text_sends_the_prepared_jpeg(hf):
    image = prepare_image(make_image((30, 30, 220)), max_side=512, max_pixels=10**8)

    text = caption(HuggingFaceCaptioner(settings_for(hf)))

    assert text == caption_for(image.data)
    assert hf.calls[0]["path"] == "/models/Salesforce/blip-image-captioning-base"
    assert hf.calls[0]["body"] == image.data


def test_chat_backend_sends_image_prompt_and_language(hf):
    captioner = build_captioner(
        settings_for(
            hf,
            "chat",
            caption_model=hf.url + "/models/Qwen/Qwen2.5-VL-7B-Instruct",
            caption_prompt="Describe the photo.",
            caption_language="French",
            max_new_tokens=40,
        )
    )
    assert isinstance(captioner, HuggingFaceCaptioner)

    text = caption(captioner)

    assert "blue" in text
    request = json.loads(hf.calls[0]["body"])
    assert hf.calls[0]["path"].endswith("/v1/chat/completions")
    parts = request["messages"][0]["content"]
    assert parts[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert parts[1] == {"type": "text", "text": "Describe the photo. Answer in French."}
    assert request["max_tokens"] == 40


@pytest.mark.parametrize(
    ("outcome", "error", "kind", "hint"),
    [
        (Loading(estimated_time=12.5), CaptionerAway, "loading", 12.5),
        (RateLimited(retry_after=7), CaptionerAway, "rate_limited", 7.0),
        (ServerError(status=500), RetryableError, "server_error", None),
        (ServerError(status=502), RetryableError, "server_error", None),
        (ServerError(status=401, message="Invalid token"), ConfigurationError, "config", None),
        (ServerError(status=400, message="bad image"), PermanentError, "rejected", None),
        (ServerError(status=413, message="too big"), PermanentError, "rejected", None),
        (Hang(seconds=2.0), RetryableError, "timeout", None),
    ],
    ids=lambda value: type(value).__name__ if not isinstance(value, (str, float, type)) else None,
)
def test_errors_are_classified_with_the_servers_hint(hf, outcome, error, kind, hint):
    hf.script(outcome)

    with pytest.raises(error) as raised:
        caption(HuggingFaceCaptioner(settings_for(hf, caption_timeout=0.5)))

    assert raised.value.kind == kind
    assert getattr(raised.value, "retry_after", None) == hint


def test_unreachable_captioner_is_retryable(hf):
    hf.refuse_connections(True)
    try:
        with pytest.raises(CaptionerAway) as raised:
            caption(HuggingFaceCaptioner(settings_for(hf)))
    finally:
        hf.refuse_connections(False)
    assert raised.value.kind == "unreachable"
