"""Every field in one call: a vision-language model through the HF router, an Inference
Endpoint (TGI) and vLLM, configured as users configure them, through the stand-ins over HTTP;
and what happens when the answer misses the schema (README "What you get for each image")."""

import asyncio
import json
import time

import pytest

from app.captioning import ask_description, describe_image
from app.captioning.description import DescribeRequest, Description
from app.captioning.hf import HuggingFaceCaptioner
from app.core.config import CaptionSettings
from app.core.errors import CaptionError, Failure, RetryableError, UnusableAnswer, failure_of
from app.core.images import prepare_image
from tests.harness.hf_stub import Content, Hang, ServerError, caption_for
from tests.harness.openai_server import OpenAICompatibleServer
from tests.integration.test_hf_routes import settings_for as hub_settings
from tests.support import make_image

VLM = "Qwen/Qwen2.5-VL-7B-Instruct"
BLIP = "Salesforce/blip-image-captioning-base"
PIXELS = make_image((30, 160, 60))
IMAGE = prepare_image(PIXELS, max_side=512, max_pixels=10**8)
CAPTION = caption_for(IMAGE.data)  # "a 64x48 picture, mostly green"
GOOD = {
    "caption": "A green field under a grey sky.",
    "alt_text": "Green field under a grey sky",
    "description": "A wide field of grass. The sky is overcast.",
    "tags": ["Field", "grass", "sky"],
    "text_in_image": "",
}


def settings_for(hf, model: str = VLM, backend: str = "chat", **overrides) -> CaptionSettings:
    """test_hf_routes' settings (a token, the stand-in Hub and router), a chat VLM by default."""
    return hub_settings(hf, model, backend, **overrides)


def describe(settings: CaptionSettings, request: DescribeRequest | None = None) -> Description:
    captioner = HuggingFaceCaptioner(settings)

    async def run() -> Description:
        try:
            return await describe_image(PIXELS, captioner, settings, request)
        finally:
            await captioner.aclose()

    return asyncio.run(run())


def chat_bodies(hf) -> list[dict]:
    return [json.loads(c["body"]) for c in hf.calls if c["path"].endswith("/chat/completions")]


@pytest.fixture
def router(hf):
    hf.add_model(VLM, {"together": "conversational", "deepinfra": "conversational"})
    return hf


def test_the_router_fills_every_field_in_one_structured_call(router):
    router.text_in_image = "OPEN 9-5"

    description = describe(settings_for(router))

    assert description.missing == []
    assert description.caption == CAPTION
    assert description.alt_text == "A 64x48 picture, mostly green."
    assert description.tags == ["green", "picture"]
    assert description.text_in_image == "OPEN 9-5"
    assert description.description.count(".") >= 2
    [body] = chat_bodies(router)
    assert body["model"] == VLM
    schema = body["response_format"]["json_schema"]["schema"]
    assert body["response_format"]["type"] == "json_schema"
    assert schema["properties"]["alt_text"]["maxLength"] == 125
    assert schema["properties"]["tags"]["maxItems"] == 10
    assert set(schema["required"]) == {
        "caption",
        "alt_text",
        "description",
        "tags",
        "text_in_image",
    }


def test_the_readers_language_and_the_buckets_prompt_are_in_the_request(router):
    request = DescribeRequest(language="de-CH", fields=("alt_text", "tags"), prompt="Products.")

    description = describe(settings_for(router, alt_text_max_chars=80), request)

    assert description.language == "de-CH"
    assert description.alt_text.startswith("[de-CH] ")
    assert description.caption == description.alt_text  # not asked: the alt text stands in
    assert description.missing == []
    [body] = chat_bodies(router)
    prompt = body["messages"][0]["content"][1]["text"]
    assert 'BCP 47 tag "de-CH"' in prompt and "Products." in prompt
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["alt_text", "tags"]
    assert schema["properties"]["alt_text"]["maxLength"] == 80


def test_a_provider_refusing_json_schema_gets_the_schema_in_the_prompt_from_then_on(router):
    router.no_json_schema = {"together"}  # the router's pick for the model

    first = describe(settings_for(router))

    assert first.missing == [] and first.caption == CAPTION
    refused, answered = chat_bodies(router)
    assert "response_format" in refused
    assert "response_format" not in answered
    assert "The JSON schema: {" in answered["messages"][0]["content"][1]["text"]
    statuses = [c["status"] for c in router.calls]
    assert statuses == [422, 200]


def test_an_inference_endpoint_tgi_refuses_openais_shape_and_is_asked_in_the_prompt(hf):
    description = describe(settings_for(hf, model=f"{hf.url}/models/my-vlm"))

    assert description.missing == [] and description.alt_text
    refused, answered = hf.calls
    assert refused["status"] == 422  # TGI: "... response_format: missing field `value`"
    assert json.loads(refused["body"])["response_format"]["type"] == "json_schema"
    assert "response_format" not in json.loads(answered["body"])


def test_vllm_takes_the_schema_as_response_format(hf):
    with OpenAICompatibleServer(VLM, api_key="k") as vllm:
        settings = settings_for(hf, model=vllm.url + "/v1", served_model_name=VLM, hf_token="k")
        description = describe(settings)

    assert description.missing == []
    [request] = vllm.requests
    assert request["body"]["response_format"]["type"] == "json_schema"
    assert request["body"]["max_tokens"] == settings.describe_max_tokens


PROSE = "Sure! This image shows a green field under a grey sky."
BROKEN = '{"caption": "A green field", "alt_text": "Green fi'
TOO_LONG = json.dumps(GOOD | {"alt_text": "A very long alt text " * 10})


@pytest.mark.parametrize("first", [PROSE, BROKEN, TOO_LONG, "", "[1, 2]"])
def test_an_answer_that_misses_is_asked_for_once_more_with_a_stricter_instruction(router, first):
    router.script(Content(first), Content(json.dumps(GOOD)))

    description = describe(settings_for(router))

    assert description.missing == []
    assert description.alt_text == GOOD["alt_text"]
    assert description.tags == ["field", "grass", "sky"]  # lower-cased
    first_body, retry = chat_bodies(router)
    assert "previous answer was not usable" not in first_body["messages"][0]["content"][1]["text"]
    assert "previous answer was not usable" in retry["messages"][0]["content"][1]["text"]


@pytest.mark.parametrize("answer", [PROSE, BROKEN])
def test_two_misses_fall_back_to_the_plain_sentence_with_the_fields_marked_missing(router, answer):
    router.script(Content(answer), Content(answer))

    description = describe(settings_for(router))

    assert description.caption == CAPTION == description.alt_text
    assert description.missing == ["description", "tags", "text_in_image"]
    bodies = chat_bodies(router)
    assert len(bodies) == 3  # the structured call, its retry, the plain sentence: no loop
    assert "response_format" not in bodies[2]


def test_two_misses_keep_the_fields_that_fitted(router):
    router.script(Content(TOO_LONG), Content(TOO_LONG))

    description = describe(settings_for(router))

    assert description.missing == ["alt_text"]
    assert description.caption == GOOD["caption"]
    assert description.alt_text == ""
    assert description.tags == ["field", "grass", "sky"]
    assert len(chat_bodies(router)) == 2


def test_an_outage_during_the_retry_is_classified_as_any_other_call(router):
    router.script(Content(PROSE), ServerError(502))

    with pytest.raises(Exception) as raised:
        describe(settings_for(router))

    assert failure_of(raised.value) == Failure.TRANSIENT


def test_a_refusal_repeated_without_response_format_is_the_images_fault(router):
    router.script(ServerError(400, "image too small"), ServerError(400, "image too small"))
    settings = settings_for(router)
    captioner = HuggingFaceCaptioner(settings)

    async def run() -> Exception:
        try:
            with pytest.raises(Exception) as raised:
                await describe_image(PIXELS, captioner, settings)
            await describe_image(PIXELS, captioner, settings)  # the next image: structured
            return raised.value
        finally:
            await captioner.aclose()

    error = asyncio.run(run())

    assert failure_of(error) == Failure.IMAGE
    bodies = chat_bodies(router)
    assert ["response_format" in body for body in bodies] == [True, False, True]


TIMEOUT = 0.5  # CAPTION_TIMEOUT in the tests of a description's time
BOUND = 2 * TIMEOUT  # a description's requests together (README, CAPTION_TIMEOUT)
SLACK = 0.2  # what the event loop and HTTP on a busy shared machine may add after a cut


def describe_timed(settings: CaptionSettings) -> tuple[Description | CaptionError, float]:
    """A description's outcome and the seconds it took, the route resolved beforehand (as
    the service does at start)."""
    captioner = HuggingFaceCaptioner(settings)

    async def run() -> tuple[Description | CaptionError, float]:
        try:
            await captioner.resolve()
            started = time.perf_counter()
            try:
                outcome: Description | CaptionError = (
                    await ask_description(IMAGE, captioner, settings)
                )[0]
            except CaptionError as exc:
                outcome = exc
            return outcome, time.perf_counter() - started
        finally:
            await captioner.aclose()

    return asyncio.run(run())


def test_slow_misses_leave_the_plain_sentence_only_the_time_left_then_it_is_unusable(router):
    # two answers that miss, each near CAPTION_TIMEOUT: the plain sentence gets the 0.4 s left
    # of the description's time, not a CAPTION_TIMEOUT of its own (it would answer at 2.55 T)
    slow_prose = Hang(0.8 * TIMEOUT, Content(PROSE))
    router.script(slow_prose, slow_prose, Hang(0.95 * TIMEOUT))

    outcome, took = describe_timed(settings_for(router, caption_timeout=TIMEOUT))

    assert BOUND - 0.01 <= took <= BOUND + SLACK
    assert isinstance(outcome, UnusableAnswer) and outcome.kind == "out_of_time"
    assert "missed the schema (the answer is not JSON" in outcome.image_reason
    assert "CAPTION_TIMEOUT" in outcome.reason
    assert len(chat_bodies(router)) == 2  # the stand-in never answered the plain sentence


def test_a_retry_the_descriptions_time_cuts_keeps_the_fields_the_first_answer_had(router):
    # the route refuses response_format slowly, so the first answer comes at 1.2 T and the
    # retry has 0.8 T: it would answer (every field) at 2.15 T
    router.script(
        Hang(0.6 * TIMEOUT, ServerError(400, "response_format is not supported")),
        Hang(0.6 * TIMEOUT, Content(TOO_LONG)),
        Hang(0.95 * TIMEOUT, Content(json.dumps(GOOD))),
    )

    outcome, took = describe_timed(settings_for(router, caption_timeout=TIMEOUT))

    assert BOUND - 0.01 <= took <= BOUND + SLACK
    assert isinstance(outcome, Description)
    assert outcome.missing == ["alt_text"] and outcome.caption == GOOD["caption"]
    assert [c["status"] for c in router.calls] == [400, 200]  # the retry never answered


def test_a_request_past_caption_timeout_is_a_timeout_though_the_description_has_time(router):
    router.script(Content(PROSE), Hang(3 * TIMEOUT))

    outcome, took = describe_timed(settings_for(router, caption_timeout=TIMEOUT))

    assert TIMEOUT <= took <= TIMEOUT + SLACK
    assert isinstance(outcome, RetryableError) and outcome.kind == "timeout"
    assert failure_of(outcome) == Failure.TRANSIENT


def test_an_image_to_text_model_fills_the_caption_and_the_alt_text(hf):
    hf.add_model(BLIP, {"hf-inference": "image-to-text"})

    description = describe(settings_for(hf, model=BLIP, backend="hf"))

    assert description.caption == CAPTION == description.alt_text
    assert description.missing == ["description", "tags", "text_in_image"]


def test_the_api_answers_every_field_in_the_readers_language(service_factory, router):
    import httpx

    from tests.support import TEST_SECRET

    router.text_in_image = "EXIT"
    api = service_factory(
        webhook=False, worker_enabled=False, caption_backend="chat", caption_model=VLM
    )
    files = {"image": ("field.png", PIXELS, "image/png")}
    auth = {"Authorization": f"Bearer {TEST_SECRET}"}

    answer = httpx.post(
        api.url + "/v1/captions", files=files, data={"language": "fr"}, headers=auth, timeout=30
    )
    refused = httpx.post(
        api.url + "/v1/captions",
        files=files,
        data={"language": "not a tag"},
        headers=auth,
        timeout=30,
    )

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["language"] == "fr" and body["missing"] == []
    assert body["alt_text"].startswith("[fr] ") and body["text_in_image"] == "EXIT"
    assert body["tags"] == ["green", "picture"] and body["model"] == VLM
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "language"]
