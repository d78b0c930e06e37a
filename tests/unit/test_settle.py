"""How a job ends, by the class of what happened (app/pipeline/settle.py), in process with a
recording queue and a scripted probe: failed now, retried counted with backoff, retried
once for an unusable answer, given back refunded while the captioner is at fault, and
failed after MAX_ATTEMPTS pauses without progress."""

import asyncio
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from app.core.config import Settings
from app.core.errors import (
    CaptionerAway,
    ConfigurationError,
    PermanentError,
    RetryableError,
    empty_caption,
)
from app.pipeline.health import CaptionerHealth
from app.pipeline.jobs import Job
from app.pipeline.settle import Captioned, CaptionerFailed, Settler

JOB = Job("obj-1", "v1", "images", "a.png", "image/png", 10, 1, "token")
MAX_ATTEMPTS = 3


@dataclass
class Queue:
    """Records what the settler asks of the queue; every lease is still held."""

    calls: list[tuple[str, Any]] = field(default_factory=list)

    async def complete(self, job: Job, caption: str, *args: Any, **kwargs: Any) -> bool:
        self.calls.append(("complete", caption))
        return True

    async def retry(self, job: Job, error: str | None, delay: float, refund: bool = False) -> bool:
        self.calls.append(("refund" if refund else "retry", (error, delay)))
        return True

    async def fail(self, job: Job, error: str) -> bool:
        self.calls.append(("fail", error))
        return True


def make(probe_fails_with: Exception | None = None) -> tuple[Settler, Queue, CaptionerHealth]:
    async def probe(resolve: bool) -> None:
        if probe_fails_with is not None:
            raise probe_fails_with

    config = Settings(  # type: ignore[call-arg]
        _env_file=None, max_attempts=MAX_ATTEMPTS, retry_base_seconds=10, retry_max_seconds=1000
    )
    health = CaptionerHealth(object(), config, probe)  # type: ignore[arg-type]
    queue = Queue()
    return Settler(queue, health, config, "model"), queue, health  # type: ignore[arg-type]


def settle(
    settler: Settler, error: Exception | None, job: Job = JOB, result: Captioned | None = None
) -> None:
    async def work() -> Captioned:
        if error is not None:
            raise CaptionerFailed(error, asyncio.get_running_loop().time() - 1)
        return result or Captioned("a red square", "md5:x:10", 12)

    asyncio.run(settler.settle(job, work))


def test_a_caption_is_completed():
    settler, queue, _ = make()

    settle(settler, None)

    assert queue.calls == [("complete", "a red square")]


def test_a_reused_caption_writes_nothing_more():
    settler, queue, _ = make()

    settle(settler, None, result=Captioned(None, "md5:x:10", reused_from="obj-0"))

    assert queue.calls == []


def test_the_images_fault_fails_the_job_now_with_its_reason():
    settler, queue, _ = make()

    settle(settler, PermanentError("not a supported raster image"))

    assert queue.calls == [("fail", "not a supported raster image")]


@pytest.mark.parametrize("attempts", [1, 2])
def test_a_transient_failure_of_one_image_is_retried_counted_with_backoff(attempts):
    settler, queue, _ = make()

    settle(
        settler, RetryableError("HTTP 500", kind="server_error"), replace(JOB, attempts=attempts)
    )

    ((what, (error, delay)),) = queue.calls
    ceiling = 10 * 2 ** (attempts - 1)
    assert (what, error) == ("retry", "HTTP 500") and ceiling / 2 <= delay <= ceiling


def test_the_servers_hint_lengthens_the_retry():
    settler, queue, _ = make()

    settle(settler, RetryableError("HTTP 502", retry_after=300.0))

    assert queue.calls[0][1][1] >= 300.0


def test_the_last_attempt_fails_the_job_saying_how_many():
    settler, queue, _ = make()

    settle(settler, RetryableError("HTTP 500"), replace(JOB, attempts=MAX_ATTEMPTS))

    assert queue.calls == [("fail", f"gave up after {MAX_ATTEMPTS} attempts: HTTP 500")]


def test_a_bug_is_retried_counted_with_its_type_named():
    settler, queue, _ = make()

    settle(settler, KeyError("caption"))

    assert queue.calls[0][0] == "retry"
    assert queue.calls[0][1][0] == "unexpected KeyError: 'caption'"


@pytest.mark.parametrize(("attempts", "what"), [(1, "retry"), (2, "fail")])
def test_an_unusable_answer_for_one_image_is_retried_once_then_failed(attempts, what):
    settler, queue, _ = make()

    settle(settler, empty_caption(), replace(JOB, attempts=attempts))

    ((done, detail),) = queue.calls
    reason = detail[0] if done == "retry" else detail
    assert done == what and reason == "the model returned an empty caption for this image"


@pytest.mark.parametrize(
    "problem",
    [
        CaptionerAway("connection refused", kind="unreachable"),
        ConfigurationError("401", "HF_TOKEN"),
    ],
)
def test_the_captioners_fault_gives_the_job_back_refunded(problem):
    settler, queue, _ = make(probe_fails_with=problem)

    settle(settler, RetryableError("timed out", kind="timeout"))

    ((what, (error, delay)),) = queue.calls
    assert what == "refund" and error == problem.reason and delay > 0


def test_a_job_that_keeps_coming_back_from_pauses_fails_once_the_captioner_works():
    settler, queue, health = make(probe_fails_with=ConfigurationError("401", "HF_TOKEN"))
    for _ in range(MAX_ATTEMPTS):
        settle(settler, RetryableError("timed out"))
    assert [call[0] for call in queue.calls] == ["refund"] * MAX_ATTEMPTS

    settle(settler, None)  # still paused: given back again, no model call
    health.problem = None  # the probe captions now
    settle(settler, None)

    assert [call[0] for call in queue.calls] == ["refund"] * (MAX_ATTEMPTS + 1) + ["fail"]
    assert (
        queue.calls[-1][1]
        == f"gave up after {MAX_ATTEMPTS} pauses without progress: 401 (change HF_TOKEN)"
    )


def test_progress_forgets_the_pauses():
    settler, queue, health = make(probe_fails_with=CaptionerAway("503"))
    for _ in range(2):
        for _ in range(MAX_ATTEMPTS - 1):
            settle(settler, RetryableError("timed out"))
        health.problem = None
        settle(settler, None)  # captioned after all: the pauses are forgotten

    expected = (["refund"] * (MAX_ATTEMPTS - 1) + ["complete"]) * 2
    assert [call[0] for call in queue.calls] == expected
