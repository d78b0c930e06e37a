"""Hugging Face as users configure it: a Hub model id (and maybe HF_PROVIDER), resolved
through the Hub and served by the router, every answer mapped to its failure class."""

import asyncio
import json

import pytest

from app.captioning.hf import HuggingFaceCaptioner
from app.core.config import CaptionSettings
from app.core.errors import CaptionerAway, ConfigurationError, Failure, failure_of
from app.core.images import prepare_image
from tests.harness.hf_stub import BadBody, Loading, RateLimited, caption_for
from tests.support import make_image

BLIP = "Salesforce/blip-image-captioning-base"
VLM = "Qwen/Qwen2.5-VL-7B-Instruct"
IMAGE = prepare_image(make_image((30, 30, 220)), max_side=512, max_pixels=10**8)


def settings_for(hf, model: str, backend: str = "auto", **overrides) -> CaptionSettings:
    values = {
        "hf_token": "hf_test_token",
        "caption_backend": backend,
        "caption_model": model,
        "hf_endpoint": hf.url,
        "hf_router_url": hf.url,
    }
    return CaptionSettings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


def caption(settings: CaptionSettings) -> tuple[str, HuggingFaceCaptioner]:
    captioner = HuggingFaceCaptioner(settings)

    async def run() -> str:
        try:
            return await captioner.caption(IMAGE)
        finally:
            await captioner.aclose()

    return asyncio.run(run()), captioner


def refused(settings: CaptionSettings) -> Exception:
    with pytest.raises(Exception) as raised:
        caption(settings)
    return raised.value


def test_a_model_hf_inference_serves_for_image_to_text(hf):
    hf.add_model(BLIP, {"hf-inference": "image-to-text"})

    text, captioner = caption(settings_for(hf, BLIP))

    assert text == caption_for(IMAGE.data)
    assert captioner.route is not None
    assert captioner.route.describe() == f"{BLIP} → hf-inference → image-to-text"
    assert hf.hub_calls[0]["path"] == f"/api/models/{BLIP}"
    assert "inferenceProviderMapping" in hf.hub_calls[0]["query"]
    assert hf.hub_calls[0]["authorization"] == "Bearer hf_test_token"
    assert [call["path"] for call in hf.calls] == [f"/hf-inference/models/{BLIP}"]
    assert hf.calls[0]["body"] == IMAGE.data  # the raw JPEG, as huggingface_hub sends it


def test_a_model_without_providers_names_the_three_ways_out(hf):
    hf.add_model(BLIP, {})

    error = refused(settings_for(hf, BLIP))

    assert isinstance(error, ConfigurationError)
    assert error.setting == "CAPTION_MODEL or CAPTION_BACKEND"
    assert "no Inference Provider serves it" in error.reason
    for way_out in ("Inference Endpoint URL", "CAPTION_BACKEND=chat", "CAPTION_BACKEND=local"):
        assert way_out in error.reason
    assert hf.calls == []  # nothing was sent to the router


def test_a_provider_that_does_not_offer_the_task(hf):
    hf.add_model(VLM, {"together": "conversational"})

    error = refused(settings_for(hf, VLM, backend="hf"))

    assert isinstance(error, ConfigurationError)
    assert "together: conversational" in error.reason


@pytest.mark.parametrize("provider", [None, "auto"])
def test_auto_picks_chat_when_the_hub_serves_the_model_for_chat(hf, provider):
    hf.add_model(VLM, {"together": "conversational", "nebius": "conversational"})

    text, captioner = caption(settings_for(hf, VLM, hf_provider=provider))

    assert text == caption_for(IMAGE.data)
    assert captioner.route is not None
    assert captioner.route.describe() == f"{VLM} → auto (together, nebius) → conversational"
    assert hf.calls[0]["path"] == "/v1/chat/completions"
    assert json.loads(hf.calls[0]["body"])["model"] == VLM  # the router picks the provider


def test_an_explicit_provider_for_chat(hf):
    hf.add_model(VLM, {"together": "conversational", "nebius": "conversational"})

    caption(settings_for(hf, VLM, backend="chat", hf_provider="nebius"))

    assert json.loads(hf.calls[0]["body"])["model"] == f"{VLM}:nebius"


def test_an_explicit_provider_that_does_not_serve_the_model(hf):
    hf.add_model(VLM, {"together": "conversational"})

    error = refused(settings_for(hf, VLM, backend="chat", hf_provider="groq"))

    assert isinstance(error, ConfigurationError)
    assert error.setting == "HF_PROVIDER"
    assert "provider groq does not serve it" in error.reason


def test_an_inference_endpoint_url_needs_no_hub(hf):
    text, captioner = caption(settings_for(hf, f"{hf.url}/models/my-endpoint", backend="hf"))

    assert text == caption_for(IMAGE.data)
    assert hf.hub_calls == []
    assert hf.calls[0]["path"] == "/models/my-endpoint"


def test_an_openai_compatible_server_for_chat(hf):
    """TGI / vLLM: `AsyncInferenceClient(base_url=...)`, the chat route appended."""
    text, _ = caption(settings_for(hf, f"{hf.url}/models/tgi/v1", backend="chat"))

    assert text == caption_for(IMAGE.data)
    assert hf.calls[0]["path"] == "/models/tgi/v1/chat/completions"
    assert hf.hub_calls == []


def test_vllm_is_sent_its_served_model_name(hf):
    served = settings_for(hf, f"{hf.url}/vllm/v1", backend="chat", served_model_name=VLM)

    text, _ = caption(served)

    assert text == caption_for(IMAGE.data)
    assert json.loads(hf.calls[0]["body"])["model"] == VLM
    error = refused(settings_for(hf, f"{hf.url}/vllm/v1", backend="chat"))
    assert isinstance(error, ConfigurationError)
    assert error.setting.startswith("SERVED_MODEL_NAME")
    assert "does not exist" in error.reason


def test_an_unknown_model(hf):
    error = refused(settings_for(hf, "nobody/no-such-model"))

    assert isinstance(error, ConfigurationError)
    assert error.setting == "CAPTION_MODEL"
    assert "not a model on the Hub" in error.reason


@pytest.mark.parametrize("model", [BLIP, "{url}/models/my-endpoint"], ids=["hub", "endpoint"])
def test_a_bad_token(hf, model):
    hf.add_model(BLIP, {"hf-inference": "image-to-text"})
    hf.require_token = "hf_the_right_one"

    error = refused(settings_for(hf, model.format(url=hf.url)))

    assert isinstance(error, ConfigurationError)
    assert error.setting == "HF_TOKEN"
    assert "401" in error.reason


def test_no_credits(hf):
    hf.add_model(BLIP, {"hf-inference": "image-to-text"})
    hf.credits = False

    error = refused(settings_for(hf, BLIP))

    assert isinstance(error, ConfigurationError)
    assert (error.kind, error.setting) == ("no_credits", "HF_TOKEN")
    assert "402" in error.reason and "monthly included credits" in error.reason


def test_the_router_no_longer_serves_a_resolved_model(hf):
    hf.add_model(BLIP, {"hf-inference": "image-to-text"})
    settings = settings_for(hf, BLIP)
    captioner = HuggingFaceCaptioner(settings)

    async def run() -> Exception:
        await captioner.resolve()
        hf.hub[BLIP].providers.clear()  # Hugging Face stops serving it
        try:
            await captioner.caption(IMAGE)
        except Exception as exc:
            return exc
        finally:
            await captioner.aclose()
        raise AssertionError("captioned a model nobody serves")

    error = asyncio.run(run())
    assert isinstance(error, ConfigurationError) and error.setting == "CAPTION_MODEL"
    assert "404" in error.reason


def test_chat_router_refuses_a_model_no_provider_serves(hf):
    """The route was resolved, then the router answers 400 model_not_supported."""
    hf.add_model(VLM, {"together": "conversational"})
    captioner = HuggingFaceCaptioner(settings_for(hf, VLM))

    async def run() -> Exception:
        await captioner.resolve()
        hf.hub[VLM].providers.clear()
        try:
            await captioner.caption(IMAGE)
        except Exception as exc:
            return exc
        finally:
            await captioner.aclose()
        raise AssertionError("captioned")

    error = asyncio.run(run())
    assert isinstance(error, ConfigurationError)
    assert "not supported by any provider" in error.reason


@pytest.mark.parametrize(
    ("outcome", "kind", "hint"),
    [(RateLimited(retry_after=7), "rate_limited", 7.0), (Loading(12.5), "loading", 12.5)],
)
def test_rate_limited_and_loading_are_the_captioner_away(hf, outcome, kind, hint):
    hf.add_model(BLIP, {"hf-inference": "image-to-text"})
    hf.script(outcome)

    error = refused(settings_for(hf, BLIP))

    assert isinstance(error, CaptionerAway)
    assert failure_of(error) == Failure.AWAY
    assert (error.kind, error.retry_after) == (kind, hint)


@pytest.mark.parametrize(
    "body",
    [b'{"generated_text": "not in a list"}', b"[]", b"<html>gateway</html>", b'[{"foo": 1}]'],
)
def test_a_200_that_is_not_an_image_to_text_result(hf, body):
    hf.add_model(BLIP, {"hf-inference": "image-to-text"})
    hf.script(BadBody(body))

    error = refused(settings_for(hf, BLIP))

    assert isinstance(error, ConfigurationError)
    assert error.kind == "bad_body"
    assert "not a valid image-to-text answer" in error.reason


def test_a_chat_200_without_choices(hf):
    hf.add_model(VLM, {"together": "conversational"})
    hf.script(BadBody(b"{}"))

    error = refused(settings_for(hf, VLM))

    assert isinstance(error, ConfigurationError) and error.kind == "bad_body"


def test_a_hub_that_cannot_be_reached_is_the_captioner_away(hf):
    settings = settings_for(hf, BLIP)
    hf.refuse_connections(True)
    try:
        error = refused(settings)
    finally:
        hf.refuse_connections(False)

    assert isinstance(error, CaptionerAway) and error.kind == "unreachable"
    assert f"the Hub at {hf.url} (HF_ENDPOINT) cannot be reached" in error.reason
