"""How a job ends, by the class of what happened (app/pipeline/settle.py), in process with a
recording queue and a scripted probe: failed now, retried counted with backoff, retried
once for an unusable answer, given back refunded (a pause counted) while the captioner is
at fault, and failed once a probe captions when the claim says it made no progress (the
pauses are counted on the job's row: tests/integration/test_pause_bound.py)."""

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
from app.pipeline.health import CaptionerHealth
from app.pipeline.jobs import Job
from app.pipeline.settle import Captioned, CaptionerFailed, Settler

JOB = Job("obj-1", "v1", "images", "a.png", "image/png", 10, 1, "token")
MAX_ATTEMPTS = 3
STUCK = replace(JOB, no_progress="gave up after 3 pauses without progress: 401 (change HF_TOKEN)")


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

    async def give_back(self, job: Job, error: str, delay: float) -> bool:
        self.jobs.append(job)
        self.calls.append(("pause", (error, delay)))
        return self.held

    async def fail(self, job: Job, error: str) -> bool:
        self.jobs.append(job)
        self.calls.append(("fail", error))
        return self.held


@dataclass
class Probe:
    """What the probe does now (None: it captions), and how often it ran."""

    fails_with: Exception | None = None
    runs: int = 0


def make(probe_fails_with: Exception | None = None) -> tuple[Settler, Queue, CaptionerHealth]:
    settler, queue, health, _ = make_probed(Probe(probe_fails_with))
    return settler, queue, health


def make_probed(scripted: Probe) -> tuple[Settler, Queue, CaptionerHealth, Probe]:
    async def probe(resolve: bool) -> None:
        scripted.runs += 1
        if scripted.fails_with is not None:
            raise scripted.fails_with

    config = Settings(  # type: ignore[call-arg]
        _env_file=None, max_attempts=MAX_ATTEMPTS, retry_base_seconds=10, retry_max_seconds=1000
    )
    health = CaptionerHealth(object(), config, probe)  # type: ignore[arg-type]
    queue = Queue()
    return Settler(queue, health, config, "model"), queue, health, scripted  # type: ignore[arg-type]


def settle(
    settler: Settler, error: Exception | None, job: Job = JOB, result: Captioned | None = None
) -> None:
    async def work() -> Captioned:
        assert job.no_progress is None, "a job without progress was sent to the captioner"
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
    assert what == "pause" and error == problem.reason and delay > 0


def test_a_job_without_progress_fails_with_its_reason_once_a_probe_captions():
    probe = Probe(ConfigurationError("401", "HF_TOKEN"))
    settler, queue, health, _ = make_probed(probe)
    settle(settler, RetryableError("timed out"))  # pauses the worker
    runs = probe.runs

    settle(settler, None, STUCK)  # still paused: given back again, not counted, no probe
    probe.fails_with = None
    health.problem = None  # resumed
    settle(settler, None, STUCK)

    assert [call[0] for call in queue.calls] == ["pause", "refund", "fail"]
    assert queue.calls[1][1][0] is None  # its reason stays
    assert queue.calls[-1][1] == STUCK.no_progress
    assert probe.runs == runs + 1  # the failure waited for a probe of its own


def test_a_job_without_progress_is_given_back_when_the_probe_fails_before_its_end():
    settler, queue, health = make(probe_fails_with=CaptionerAway("503"))

    settle(settler, None, STUCK)  # the worker thought the captioner worked

    assert [call[0] for call in queue.calls] == ["refund"]
    assert health.problem is not None  # the probe's failure pauses the worker


def test_jobs_without_progress_settled_together_share_one_probe():
    settler, queue, _, probe = make_probed(Probe())

    async def together() -> None:
        stuck = [replace(STUCK, object_id=f"obj-{n}") for n in range(4)]
        await asyncio.gather(*(settler.settle(job, never_called) for job in stuck))

    asyncio.run(together())

    assert [call[0] for call in queue.calls] == ["fail"] * 4 and probe.runs == 1


async def never_called() -> Captioned:
    raise AssertionError("a job without progress was sent to the captioner")


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


def test_every_queue_call_names_the_job_it_settles():
    probe = Probe(CaptionerAway("503"))
    settler, queue, health, _ = make_probed(probe)
    settle(settler, RetryableError("timed out"))  # given back
    settle(settler, None, STUCK)  # no progress, paused: given back again
    probe.fails_with, health.problem = None, None
    settle(settler, None, STUCK)  # no progress: failed
    other, queue2, _ = make()
    for error in (None, PermanentError("gone"), RetryableError("HTTP 500"), KeyError("bug")):
        settle(other, error)

    assert queue.jobs == [JOB, STUCK, STUCK] and queue.jobs[1] is STUCK
    assert all(job is JOB for job in queue2.jobs) and len(queue2.jobs) == 4


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


def test_the_settler_counts_no_pauses_of_its_own():
    """However often this process gave a job back, only the claim's word (no_progress, from
    the count on the job's row) ends it without a model call."""
    settler, queue, health = make(probe_fails_with=CaptionerAway("503"))
    for _ in range(MAX_ATTEMPTS + 1):
        settle(settler, RetryableError("timed out"))
    health.problem = None

    settle(settler, None)

    assert [call[0] for call in queue.calls] == ["pause"] * (MAX_ATTEMPTS + 1) + ["complete"]
