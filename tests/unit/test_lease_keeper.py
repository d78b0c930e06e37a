"""LeaseKeeper (app/pipeline/lease.py) on a queue in memory: the beat extends while the work
runs, survives failed extensions, cancels the work once the lease is lost, and never
outlives the work. The real database and worker: tests/integration/test_lease_heartbeat.py."""

import asyncio
import logging

import pytest

from app.core import metrics
from app.pipeline.jobs import Job
from app.pipeline.lease import LeaseKeeper
from tests.harness.waiting import eventually

LEASE = 1  # a beat every 1/3 s
JOB = Job("id-1", "v1", "images", "a.png", "image/png", 10, 1, "token-1")


class Answers:
    """caption_jobs_extend's answers in turn (an exception: the call failed); then `last`."""

    def __init__(self, *answers: bool | Exception, last: bool = True) -> None:
        self.answers = list(answers)
        self.last = last
        self.calls: list[tuple[str, int]] = []

    async def extend(self, job: Job, lease_seconds: int) -> bool:
        self.calls.append((job.lease_token, lease_seconds))
        answer = self.answers.pop(0) if self.answers else self.last
        if isinstance(answer, Exception):
            raise answer
        return answer


def keeper(queue: Answers) -> LeaseKeeper:
    return LeaseKeeper(queue, LEASE)  # type: ignore[arg-type]


def others() -> set[asyncio.Task[object]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


def test_the_beat_extends_while_the_work_runs_and_ends_with_it():
    queue = Answers()

    async def scenario() -> tuple[bool, set[asyncio.Task[object]]]:
        async def work() -> None:
            await eventually(lambda: len(queue.calls) == 2, 5 * LEASE, message="no beats")

        held = await keeper(queue).hold(JOB, work())
        return held, others()

    held, left = asyncio.run(scenario())

    assert held and left == set()  # the beat task is gone with the work
    assert queue.calls == [("token-1", LEASE), ("token-1", LEASE)]


def test_a_failed_extension_is_logged_and_the_next_beat_tries_again(caplog):
    queue = Answers(ConnectionError("reset"), ConnectionError("reset"))
    cancelled = []

    async def work() -> None:
        try:
            await eventually(lambda: len(queue.calls) == 3, 5 * LEASE, message="no third beat")
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    held = asyncio.run(keeper(queue).hold(JOB, work()))

    assert held and cancelled == []
    assert caplog.text.count("could not extend the lease of images/a.png (ConnectionError") == 2


def test_a_lost_lease_cancels_the_work_once(caplog):
    caplog.set_level(logging.WARNING)
    discarded = metrics.JOB_OUTCOMES.labels("discarded")._value.get()
    queue = Answers(True, False)
    cancelled = []

    async def work() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def scenario() -> tuple[bool, set[asyncio.Task[object]]]:
        held = await asyncio.wait_for(keeper(queue).hold(JOB, work()), 5 * LEASE)
        return held, others()

    held, left = asyncio.run(scenario())

    assert not held and cancelled == [True] and left == set()
    assert len(queue.calls) == 2  # no beat after the loss
    assert caplog.text.count("lost the lease of images/a.png") == 1
    assert metrics.JOB_OUTCOMES.labels("discarded")._value.get() == discarded + 1


def test_a_refusal_while_the_job_settles_itself_cancels_nothing(caplog):
    """The job's own complete may end its lease while an extension is in flight: the
    extension is refused, and the work, about to end, is given its grace, not cancelled."""
    caplog.set_level(logging.WARNING)
    queue = Answers(False)
    cancelled = []

    async def work() -> None:
        try:
            await eventually(lambda: queue.calls, 5 * LEASE, message="no beat")
            await asyncio.sleep(0)  # settling: done right after the refusal
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    held = asyncio.run(keeper(queue).hold(JOB, work()))

    assert held and cancelled == [] and "lost the lease" not in caplog.text


def test_cancelling_the_job_from_outside_cancels_the_work_and_the_beat():
    queue = Answers()
    started = asyncio.Event()

    async def work() -> None:
        started.set()
        await asyncio.sleep(60)

    async def scenario() -> set[asyncio.Task[object]]:
        job = asyncio.create_task(keeper(queue).hold(JOB, work()))
        await started.wait()
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
        return others()

    assert asyncio.run(scenario()) == set()
