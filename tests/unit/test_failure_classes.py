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
