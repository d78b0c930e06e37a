"""The failure class of every answer Hugging Face can give (app/captioning/hf.py `classify`),
checked against the README's table for every HTTP status from 400 to 599, not only the ones
seen so far: what the worker does with a job depends on nothing else."""

import json

import httpx2
import pytest
from huggingface_hub.errors import HfHubHTTPError

from app.captioning.hf import classify
from app.captioning.routes import CHAT, IMAGE_TO_TEXT, Route
from app.core.errors import (
    CaptionerAway,
    ConfigurationError,
    Failure,
    PermanentError,
    RetryableError,
    UnusableAnswer,
    empty_caption,
    failure_of,
)

ROUTER = Route("org/model", IMAGE_TO_TEXT, "hf-inference", "https://router/hf-inference/models/x")
ENDPOINT_CHAT = Route("org/model", CHAT, "endpoint", "https://vllm.example/v1", "served")


def http_error(status: int, body: object = None, headers: dict[str, str] | None = None):
    content = body if isinstance(body, bytes) else json.dumps(body or {}).encode()
    request = httpx2.Request("POST", ROUTER.url)
    response = httpx2.Response(status, content=content, headers=headers, request=request)
    return HfHubHTTPError(f"{status} Client Error: for url {ROUTER.url}", response=response)


def expected(status: int) -> tuple[Failure, str | None]:
    """The README's table ("When captioning fails"), written out per status."""
    if status in (401, 402, 403, 404):
        return Failure.CONFIGURATION, None
    if status in (429, 503):
        return Failure.AWAY, {429: "rate_limited", 503: "loading"}[status]
    if status in (408, 504):
        return Failure.TRANSIENT, "timeout"
    if status in (409, 425) or status >= 500:
        return Failure.TRANSIENT, "server_error"
    return Failure.IMAGE, "rejected"


@pytest.mark.parametrize("status", range(400, 600))
def test_every_status_has_the_class_of_the_table(status):
    result = classify(http_error(status, {"error": "something"}), ROUTER)

    failure, kind = expected(status)
    assert failure_of(result) == failure
    if kind is not None:
        assert result.kind == kind  # type: ignore[attr-defined]
    assert f"HTTP {status}: something" in str(result)


@pytest.mark.parametrize(
    "body",
    [
        {
            "error": {
                "message": "The requested model 'x' is not supported",
                "code": "model_not_supported",
            }
        },
        {"error": "The requested model 'x' is not supported by any provider you have enabled."},
        {"message": "The requested model 'x' is not supported by any provider you have enabled."},
    ],
    ids=["code", "message-only", "vllm-shape"],
)
def test_a_model_no_provider_serves_is_configuration_with_or_without_its_code(body):
    result = classify(http_error(400, body), ROUTER)

    assert isinstance(result, ConfigurationError)
    assert "CAPTION_MODEL or HF_PROVIDER" in result.reason


def test_any_other_400_is_the_images_fault():
    result = classify(http_error(400, {"error": "image too small"}), ROUTER)

    assert isinstance(result, PermanentError) and "image too small" in result.reason


def test_a_404_from_an_openai_server_names_the_served_model_setting():
    result = classify(http_error(404, {"message": "model not found"}), ENDPOINT_CHAT)

    assert isinstance(result, ConfigurationError) and "SERVED_MODEL_NAME" in result.setting


@pytest.mark.parametrize(
    ("status", "setting", "kind"),
    [
        (401, "HF_TOKEN", "config"),
        (402, "HF_TOKEN", "no_credits"),
        (403, "HF_TOKEN", "config"),
        (404, "CAPTION_MODEL", "config"),
    ],
)
def test_what_configuration_errors_tell_the_operator_to_change(status, setting, kind):
    result = classify(http_error(status, {"error": "no"}), ROUTER)

    assert isinstance(result, ConfigurationError)
    assert (result.setting, result.kind) == (setting, kind)


@pytest.mark.parametrize(
    ("headers", "body", "hint"),
    [
        ({"retry-after": "7"}, {}, 7.0),
        ({}, {"estimated_time": 12.5}, 12.5),
        ({"retry-after": "3"}, {"estimated_time": 50}, 3.0),  # the header wins
        ({"retry-after": "-5"}, {}, 0.0),
        ({"retry-after": "soon"}, {"estimated_time": 4}, 4.0),
        ({"retry-after": "inf"}, {"estimated_time": "nan"}, None),
        ({}, {}, None),
    ],
)
@pytest.mark.parametrize("status", [429, 503, 500])
def test_the_servers_own_wait_is_kept_from_retry_after_or_estimated_time(
    headers, body, hint, status
):
    result = classify(http_error(status, body, headers), ROUTER)

    assert isinstance(result, RetryableError) and result.retry_after == hint


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"error": "plain"}, "plain"),
        ({"message": "vllm says"}, "vllm says"),
        ({"error": {"message": "openai says", "code": "x"}}, "openai says"),
        (
            {"detail": [{"loc": ["body", "messages"], "msg": "field required"}]},
            "body.messages: field required",
        ),
        (b"<html>Bad gateway</html>", "500 Client Error"),
        ({"error": "x" * 1000}, "x" * 300),
    ],
)
def test_the_reason_quotes_what_the_server_said(body, detail):
    result = classify(http_error(500, body), ROUTER)

    assert f"HTTP 500: {detail}" in str(result)
    assert "x" * 301 not in str(result)


@pytest.mark.parametrize(
    ("exc", "cls", "failure", "kind"),
    [
        (TimeoutError(), RetryableError, Failure.TRANSIENT, "timeout"),
        (httpx2.ReadTimeout("slow"), RetryableError, Failure.TRANSIENT, "timeout"),
        (httpx2.ConnectError("refused"), CaptionerAway, Failure.AWAY, "unreachable"),
        (httpx2.RemoteProtocolError("reset"), RetryableError, Failure.TRANSIENT, "connection"),
        (ValueError("Expecting value"), UnusableAnswer, Failure.CONFIGURATION, "bad_body"),
        (IndexError("list index out of range"), UnusableAnswer, Failure.CONFIGURATION, "bad_body"),
    ],
)
def test_what_is_not_an_http_answer(exc, cls, failure, kind):
    result = classify(exc, ROUTER)

    assert type(result) is cls and failure_of(result) == failure and result.kind == kind


def test_anything_else_stays_unexpected():
    bug = KeyError("surprise")

    assert classify(bug, ROUTER) is bug and failure_of(bug) == Failure.UNEXPECTED


def test_an_unusable_body_says_which_task_and_keeps_a_reason_for_the_image():
    result = classify(ValueError("Expecting value: line 1"), ROUTER)

    assert isinstance(result, UnusableAnswer)
    assert "not a valid image-to-text answer" in result.reason
    assert "for this image" in result.image_reason and "Expecting value" in result.image_reason


ROUTER_CHAT = Route("org/vlm", CHAT, "auto", "https://router/v1", "org/vlm:nebius")


def test_what_each_refusal_tells_the_operator():
    credits = classify(http_error(402, {"error": "exceeded"}), ROUTER)
    scope = classify(http_error(403, {"error": "forbidden"}), ROUTER)

    assert "add credits or a plan to the token's account" in str(credits)
    assert 'a fine-grained token needs "Make calls to Inference Providers"' in str(scope)
    assert str(credits).endswith("(change HF_TOKEN)") and str(scope).endswith("(change HF_TOKEN)")


@pytest.mark.parametrize(
    ("route", "setting"),
    [
        (ROUTER, "CAPTION_MODEL"),
        (ROUTER_CHAT, "CAPTION_MODEL"),  # the router: not an OpenAI server of the user's
        (Route("m", IMAGE_TO_TEXT, "endpoint", "https://e.example"), "CAPTION_MODEL"),
        (ENDPOINT_CHAT, "SERVED_MODEL_NAME (vLLM: its --served-model-name) or CAPTION_MODEL"),
    ],
)
def test_a_404_names_the_setting_that_picks_the_model(route, setting):
    result = classify(http_error(404, {"error": "not found"}), route)

    assert isinstance(result, ConfigurationError) and result.setting == setting


def test_the_no_provider_reason_names_the_model_as_the_router_was_asked():
    body = {"error": {"message": "not supported", "code": "model_not_supported"}}

    chat = classify(http_error(400, body), ROUTER_CHAT)
    plain = classify(http_error(400, body), ROUTER)

    assert "the router serves no provider for org/vlm:nebius" in str(chat)
    assert "the router serves no provider for org/model " in str(plain)


@pytest.mark.parametrize(
    ("exc", "said"),
    [
        (TimeoutError(), "captioner timed out (TimeoutError)"),
        (httpx2.ReadTimeout("slow"), "captioner timed out (ReadTimeout)"),
        (httpx2.ConnectError("refused here"), "captioner unreachable: refused here"),
        (httpx2.RemoteProtocolError("reset here"), "captioner connection failed: reset here"),
    ],
)
def test_a_failure_without_an_answer_says_what_happened(exc, said):
    assert str(classify(exc, ROUTER)) == said


def test_an_unusable_body_quotes_at_most_200_characters_of_the_parser():
    result = classify(ValueError("v" * 1000), ROUTER)

    assert isinstance(result, UnusableAnswer)
    assert f"ValueError: {'v' * 200})" in result.image_reason
    assert "v" * 201 not in result.image_reason and "v" * 201 not in result.reason
    assert result.setting == "CAPTION_MODEL or CAPTION_BACKEND"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"detail": ["not a dict"]}, "500 Client Error"),
        ({"detail": [{"msg": "no location"}]}, ": no location"),
        ({"detail": "a string"}, "500 Client Error"),
        (("z" * 400).encode(), "500 Client Error"),
    ],
)
def test_odd_error_bodies_fall_back_to_the_status_line(body, detail):
    assert f"HTTP 500: {detail}" in str(classify(http_error(500, body), ROUTER))


def test_a_long_status_line_is_cut_at_300_characters():
    request = httpx2.Request("POST", ROUTER.url)
    response = httpx2.Response(500, content=b"<html>", request=request)
    error = HfHubHTTPError("s" * 1000, response=response)

    result = str(classify(error, ROUTER))

    assert "s" * 300 in result and "s" * 301 not in result


def test_the_empty_caption_failure_names_what_to_change():
    error = empty_caption()

    assert error.reason == (
        "the model returns empty captions (change CAPTION_MODEL, or CAPTION_PROMPT for chat)"
    )
    assert error.setting == "CAPTION_MODEL, or CAPTION_PROMPT for chat"
    assert error.image_reason == "the model returned an empty caption for this image"
    assert error.kind == "empty" and error.failure == Failure.CONFIGURATION


def test_each_error_keeps_its_reason_kind_and_hint():
    retry = RetryableError("later", 5.0, "loading")
    config = ConfigurationError("bad token", "HF_TOKEN", "no_credits")

    assert (retry.reason, retry.retry_after, retry.kind, str(retry)) == (
        "later",
        5.0,
        "loading",
        "later",
    )
    assert (config.reason, config.setting, config.kind) == (
        "bad token (change HF_TOKEN)",
        "HF_TOKEN",
        "no_credits",
    )
    assert PermanentError("x").kind == "other" and ConfigurationError("x", "Y").kind == "config"
