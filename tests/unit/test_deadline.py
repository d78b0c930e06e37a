"""How long the model may take (README, CAPTION_TIMEOUT; app/captioning/deadline.py): each
request within CAPTION_TIMEOUT, a description's requests by one deadline, 2 × CAPTION_TIMEOUT
after it starts; the local backends under the same rule. Real asyncio time, small timeouts."""

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from app.captioning import BACKSTOP_SECONDS, ask_description
from app.captioning.deadline import LEAST_SHARE, OutOfTime, within
from app.captioning.description import DescribeRequest, Description
from app.captioning.florence import FlorenceCaptioner
from app.captioning.local import LocalCaptioner, LocalModel
from app.captioning.structured import describe_with_retry
from app.core.config import CaptionSettings
from app.core.errors import (
    CaptionError,
    Failure,
    RetryableError,
    UnusableAnswer,
    failure_of,
)
from app.core.images import PreparedImage, probe_image

TIMEOUT = 0.3  # CAPTION_TIMEOUT here
SLACK = 0.15  # what the event loop on a busy shared machine may add after a cut
IMAGE = probe_image()
FITS = json.dumps({"caption": "A red door.", "alt_text": "Red door", "tags": ["door"]})
LONG_ALT = json.dumps({"caption": "A red door.", "alt_text": "A red door " * 30})


async def hang() -> str:
    await asyncio.Event().wait()
    return "never"


def loop_time() -> float:
    return asyncio.get_running_loop().time()


def timed(coroutine: Callable[[], Awaitable[Any]]) -> tuple[Any, float]:
    """What `coroutine()` returns or raises, and the seconds it took."""

    async def run() -> tuple[Any, float]:
        started = time.perf_counter()
        try:
            outcome = await coroutine()
        except Exception as exc:
            outcome = exc
        return outcome, time.perf_counter() - started

    return asyncio.run(run())


def test_a_request_with_time_left_is_cut_at_caption_timeout_as_a_timeout():
    outcome, took = timed(lambda: within(hang, TIMEOUT, loop_time() + 10))

    assert type(outcome) is TimeoutError and "0.3s" in str(outcome)
    assert TIMEOUT <= took <= TIMEOUT + SLACK


def test_a_request_without_a_deadline_is_bounded_by_caption_timeout_alone():
    answer, took = timed(lambda: within(lambda: asyncio.sleep(0.01, "ok"), TIMEOUT))
    outcome, cut = timed(lambda: within(hang, TIMEOUT))

    assert answer == "ok" and took < TIMEOUT
    assert type(outcome) is TimeoutError and TIMEOUT <= cut <= TIMEOUT + SLACK


def test_a_request_the_deadline_comes_first_for_is_cut_there_out_of_time():
    outcome, took = timed(lambda: within(hang, TIMEOUT, loop_time() + TIMEOUT / 2))

    assert isinstance(outcome, OutOfTime) and "0.6s (2 × CAPTION_TIMEOUT)" in str(outcome)
    assert TIMEOUT / 2 - 0.01 <= took <= TIMEOUT / 2 + SLACK


def test_no_request_starts_with_less_than_a_tenth_of_caption_timeout_left():
    started: list[bool] = []

    async def request() -> str:
        started.append(True)
        return "an answer"

    too_little, _ = timed(
        lambda: within(request, TIMEOUT, loop_time() + 0.9 * LEAST_SHARE * TIMEOUT)
    )
    enough, _ = timed(lambda: within(request, TIMEOUT, loop_time() + 2 * LEAST_SHARE * TIMEOUT))

    assert isinstance(too_little, OutOfTime) and "left no time" in str(too_little)
    assert enough == "an answer" and started == [True]


def test_a_timeout_the_request_raises_itself_is_not_taken_for_the_deadline():
    async def refused() -> str:
        raise TimeoutError("the server's own")

    outcome, _ = timed(lambda: within(refused, TIMEOUT, loop_time() + TIMEOUT / 2))

    assert type(outcome) is TimeoutError and str(outcome) == "the server's own"


def scripted(*answers: str | BaseException) -> Callable[..., Awaitable[str]]:
    """An `ask` (or `plain`) answering in turn: a text, or raising an exception."""
    queue = list(answers)

    async def answer(*_: Any) -> str:
        item = queue.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    return answer


def described(ask: Callable[..., Awaitable[str]], plain: Callable[..., Awaitable[str]]) -> Any:
    outcome, _ = timed(lambda: describe_with_retry(ask, plain, DescribeRequest(), 125))
    return outcome


def test_no_time_for_the_retry_keeps_the_fields_that_fitted():
    outcome = described(scripted(LONG_ALT, OutOfTime("no time")), scripted("never asked"))

    assert isinstance(outcome, Description)
    assert outcome.caption == "A red door." and "alt_text" in outcome.missing


def test_no_time_for_the_plain_sentence_is_an_unusable_answer_naming_caption_timeout():
    outcome = described(scripted("prose", OutOfTime("no time")), scripted(OutOfTime("none")))

    assert isinstance(outcome, UnusableAnswer) and outcome.kind == "out_of_time"
    assert "CAPTION_TIMEOUT" in outcome.reason and "not JSON" in outcome.image_reason


def test_no_time_for_the_first_answer_is_a_timeout():
    outcome = described(scripted(OutOfTime("no time")), scripted("never asked"))

    assert isinstance(outcome, TimeoutError)


def test_the_plain_sentence_in_time_still_stands_in():
    outcome = described(scripted("prose", "prose"), scripted("A red door."))

    assert isinstance(outcome, Description) and outcome.alt_text == "A red door."


class IgnoresItsDeadline:
    """A backend that overruns its deadline: the backstop cuts it."""

    model = "ignores-deadline"

    async def caption(self, image: PreparedImage) -> str:
        return await hang()

    async def describe(
        self, image: PreparedImage, request: DescribeRequest, deadline: float
    ) -> Description:
        return Description(caption=await hang())

    async def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def settings(**overrides: Any) -> CaptionSettings:
    values = {"caption_backend": "local", "local_model": "/nonexistent", "caption_timeout": TIMEOUT}
    return CaptionSettings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


def describe_timed(captioner: Any) -> tuple[Any, float]:
    async def run() -> Description:
        try:
            return (await ask_description(IMAGE, captioner, settings()))[0]
        finally:
            await captioner.aclose()

    return timed(run)


def test_a_backend_that_overruns_its_deadline_is_cut_by_the_backstop_as_a_timeout():
    outcome, took = describe_timed(IgnoresItsDeadline())

    assert isinstance(outcome, RetryableError) and outcome.kind == "timeout"
    assert 2 * TIMEOUT + BACKSTOP_SECONDS <= took <= 2 * TIMEOUT + BACKSTOP_SECONDS + SLACK


@pytest.fixture
def hanging_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every local request waits for ever (a busy or stuck model thread)."""

    async def run(self: LocalModel[Any, Any], item: Any) -> Any:
        return await hang()

    monkeypatch.setattr(LocalModel, "run", run)


@pytest.mark.usefixtures("hanging_model")
def test_a_local_image_to_text_description_is_one_request_cut_at_caption_timeout():
    outcome, took = describe_timed(LocalCaptioner(settings()))

    assert isinstance(outcome, RetryableError) and outcome.kind == "timeout"
    assert failure_of(outcome) == Failure.TRANSIENT and "0.3s" in outcome.reason
    assert TIMEOUT <= took <= TIMEOUT + SLACK


@pytest.mark.usefixtures("hanging_model")
def test_a_local_florence_description_has_the_descriptions_time_for_its_tasks():
    outcome, took = describe_timed(FlorenceCaptioner(settings()))

    assert isinstance(outcome, CaptionError) and outcome.kind == "timeout"
    assert failure_of(outcome) == Failure.TRANSIENT and "0.6s" in outcome.reason
    assert 2 * TIMEOUT <= took <= 2 * TIMEOUT + SLACK
