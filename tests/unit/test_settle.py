"""How a job ends, by the class of what happened (app/pipeline/settle.py), in process with a
recording queue and a scripted probe: failed now, retried counted with backoff, retried
once for an unusable answer, given back refunded while the captioner is at fault, and
failed after MAX_ATTEMPTS pauses without progress."""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from app.core import metrics
from app.core.config import Settings
from app.core.errors import (
    CaptionerAway,
    ConfigurationError,
    PermanentError,
    RetryableError,
    empty_caption,
)
from app.pipeline import settle as settle_module
from app.pipeline.health import CaptionerHealth
from app.pipeline.jobs import Job
from app.pipeline.settle import Captioned, CaptionerFailed, Settler

JOB = Job("obj-1", "v1", "images", "a.png", "image/png", 10, 1, "token")
MAX_ATTEMPTS = 3


@dataclass
class Queue:
    """Records what the settler asks of the queue; every lease is still held."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    completed: list[tuple[Any, ...]] = field(default_factory=list)  # every argument
    held: bool = True  # False: the lease was lost meanwhile
    jobs: list[Job] = field(default_factory=list)  # the job each call named

    async def complete(self, job: Job, caption: str, *args: Any, **kwargs: Any) -> bool:
        self.jobs.append(job)
        self.calls.append(("complete", caption))
        self.completed.append((caption, *args, *kwargs.values()))
        return self.held

    async def retry(self, job: Job, error: str | None, delay: float, refund: bool = False) -> bool:
        self.jobs.append(job)
        self.calls.append(("refund" if refund else "retry", (error, delay)))
        return self.held

    async def fail(self, job: Job, error: str) -> bool:
        self.jobs.append(job)
        self.calls.append(("fail", error))
        return self.held


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


OUTCOMES = ("done", "discarded", "retried", "failed", "deferred", "reused")


def outcomes_of(action: Callable[[], None]) -> dict[str, float]:
    """How much each `captioner_job_outcomes_total` label grew during `action`."""
    before = {label: metrics.JOB_OUTCOMES.labels(label)._value.get() for label in OUTCOMES}
    action()
    after = {label: metrics.JOB_OUTCOMES.labels(label)._value.get() for label in OUTCOMES}
    return {
        label: after[label] - before[label] for label in OUTCOMES if after[label] != before[label]
    }


@pytest.mark.parametrize(
    ("error", "held", "counted"),
    [
        (None, True, {"done": 1}),
        (None, False, {"discarded": 1}),
        (PermanentError("gone"), True, {"failed": 1}),
        (PermanentError("gone"), False, {"discarded": 1}),
        (RetryableError("HTTP 500"), True, {"retried": 1}),
    ],
)
def test_each_outcome_is_counted_once_under_its_label(error, held, counted):
    settler, queue, _ = make()
    queue.held = held

    assert outcomes_of(lambda: settle(settler, error)) == counted


def test_a_give_back_and_a_reuse_are_counted_under_their_labels():
    settler, _, _ = make(probe_fails_with=CaptionerAway("503"))
    assert outcomes_of(lambda: settle(settler, RetryableError("timed out"))) == {"deferred": 1}

    settler, queue, _ = make()
    reused = Captioned(None, "md5:x:10", reused_from="obj-0")
    assert outcomes_of(lambda: settle(settler, None, result=reused)) == {"reused": 1}
    assert queue.calls == []


def test_the_caption_is_stored_with_its_model_fingerprint_and_time():
    settler, queue, _ = make()

    settle(settler, None, result=Captioned("a boat", "md5:abc:99", 321))

    (call,) = queue.completed
    assert {"a boat", "model", "md5:abc:99", 321} <= set(call)


def test_a_long_reason_is_clipped_before_it_is_stored():
    settler, queue, _ = make()

    settle(settler, PermanentError("x" * 5000))
    settle(settler, RetryableError("y" * 5000))

    failed, retried = queue.calls[0][1], queue.calls[1][1][0]
    assert failed.startswith("x" * 100) and 100 < len(failed) <= 550
    assert retried.startswith("y" * 100) and 100 < len(retried) <= 550


def test_a_job_is_given_back_until_the_next_probe_is_due():
    settler, queue, health = make(probe_fails_with=CaptionerAway("refused", kind="unreachable"))

    settle(settler, RetryableError("timed out"))

    ((_, (_, delay)),) = queue.calls
    assert 5 <= delay <= 10  # the first round's backoff: RETRY_BASE_SECONDS / 2 .. base


def test_a_job_without_progress_is_given_back_silently_while_still_paused():
    settler, queue, health = make(probe_fails_with=CaptionerAway("503"))
    for _ in range(MAX_ATTEMPTS):
        settle(settler, RetryableError("timed out"))

    settle(settler, None)

    assert queue.calls[-1][0] == "refund" and queue.calls[-1][1][0] is None


def test_the_pauses_of_the_oldest_jobs_are_forgotten_beyond_the_limit(monkeypatch):
    monkeypatch.setattr(settle_module, "ROUNDS_REMEMBERED", 1)
    settler, queue, health = make(probe_fails_with=CaptionerAway("503"))
    for _ in range(MAX_ATTEMPTS):
        settle(settler, RetryableError("timed out"))
    settle(settler, RetryableError("timed out"), replace(JOB, object_id="obj-2"))  # evicts obj-1
    health.problem = None

    settle(settler, None)

    assert queue.calls[-1] == ("complete", "a red square")


def test_every_queue_call_names_the_job_it_settles():
    settler, queue, health = make(probe_fails_with=CaptionerAway("503"))
    for _ in range(MAX_ATTEMPTS + 1):
        settle(settler, RetryableError("timed out"))  # given back, then without progress
    health.problem = None
    settle(settler, None)  # no progress: failed
    other, queue2, _ = make()
    for error in (None, PermanentError("gone"), RetryableError("HTTP 500"), KeyError("bug")):
        settle(other, error)

    assert queue.jobs and all(job is JOB for job in queue.jobs + queue2.jobs)
    assert len(queue2.jobs) == 4


def test_the_descriptions_are_stored_with_the_caption():
    settler, queue, _ = make()
    descriptions = [{"language": "en", "alt_text": "A boat."}]

    settle(settler, None, result=Captioned("a boat", "md5:x:1", 5, descriptions=descriptions))

    assert any(arg == descriptions for arg in queue.completed[0])


def test_a_bug_outside_the_captioner_is_retried_counted_too():
    settler, queue, _ = make()

    async def work() -> Captioned:
        raise OSError("disk full")  # storage, decoding: not the captioner's call

    asyncio.run(settler.settle(JOB, work))

    assert queue.calls == [("retry", ("unexpected OSError: disk full", queue.calls[0][1][1]))]
    assert queue.jobs == [JOB]


def test_a_new_job_never_starts_as_if_it_had_been_paused():
    settler, queue, _ = make(probe_fails_with=CaptionerAway("503"))
    for _ in range(MAX_ATTEMPTS - 1):
        settle(settler, RetryableError("timed out"))

    settle(settler, RetryableError("timed out"))  # the MAX_ATTEMPTS-th give-back, not a failure

    assert [call[0] for call in queue.calls] == ["refund"] * MAX_ATTEMPTS
