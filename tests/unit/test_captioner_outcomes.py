"""The worker against a captioner that lies, hangs or answers nothing (issue 15), in process:
random per-image outcome sequences and probe outcomes, one worker or two sharing an
in-memory queue with the SQL functions' semantics (claim counts an attempt, a refund gives
it back, a give-back in a pause counts on the row and the claim says when there were
MAX_ATTEMPTS of them), real asyncio time.

Properties: every job ends done or failed within 2 × MAX_ATTEMPTS model calls, however
many workers took it; no job is failed while the probe shows the captioner away; no worker
stays paused once the probe captions again; an image that always captions is captioned.
The same bound against the real database: tests/integration/test_pause_bound.py."""

import asyncio
import io
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from app.captioning.description import DescribeRequest, Description
from app.core.config import Settings
from app.core.errors import CaptionerAway, PermanentError, RetryableError, UnusableAnswer
from app.core.images import PreparedImage, probe_image
from app.pipeline.jobs import Job
from app.pipeline.worker import Worker
from tests.harness.waiting import eventually

OUTCOMES = ("ok", "empty", "junk", "timeout", "4xx", "5xx", "503", "hang")
FAILURES = tuple(outcome for outcome in OUTCOMES if outcome != "ok")
PROBE_SIZE = probe_image().pil.size
DEADLINE = 30.0  # seconds of real time for one scenario


def image_bytes(index: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (20 + index, 7), (index * 40 % 255, 90, 30)).save(out, format="PNG")
    return out.getvalue()


@dataclass
class Plan:
    """Outcomes for one image: `prefix` in order, then `tail` for ever."""

    prefix: list[str]
    tail: str

    def outcomes(self) -> itertools.chain[str]:
        return itertools.chain(self.prefix, itertools.repeat(self.tail))


@dataclass
class FakeCaptioner:
    """Answers each image by its plan and the probe image by the probe's outcomes (then ok):
    until those are used up, the probe shows the captioner away. Records every call."""

    plans: list[Plan]
    probe_failures: list[str]
    model: str = "fake-model"
    calls: dict[int, int] = field(default_factory=dict)
    probes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._plans = [plan.outcomes() for plan in self.plans]

    @property
    def away(self) -> bool:
        """What the probe shows now: the captioner away until its failures are used up."""
        return len(self.probes) < len(self.probe_failures)

    async def caption(self, image: PreparedImage) -> str:
        if image.pil.size == PROBE_SIZE:
            outcome = self.probe_failures[len(self.probes)] if self.away else "ok"
            self.probes.append(outcome)
            return await answer(outcome)
        index = image.pil.size[0] - 20
        self.calls[index] = self.calls.get(index, 0) + 1
        return await answer(next(self._plans[index]))

    async def describe(
        self, image: PreparedImage, request: DescribeRequest, deadline: float
    ) -> Description:
        """The worker asks for descriptions: this fake's sentence, as BLIP's, by `deadline`."""
        async with asyncio.timeout_at(deadline):
            return Description.from_caption(await self.caption(image), request)

    async def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


async def answer(outcome: str) -> str:
    """What a captioner does for `outcome`, as app/captioning/hf.py classifies it."""
    if outcome == "hang":
        await asyncio.sleep(3600)  # cut by CAPTION_TIMEOUT
    errors: dict[str, Exception] = {
        "junk": UnusableAnswer("a body that is not a caption", "CAPTION_MODEL", "junk", "bad_body"),
        "timeout": RetryableError("captioner timed out", kind="timeout"),
        "4xx": PermanentError("captioner rejected the image (HTTP 400)", "rejected"),
        "5xx": RetryableError("captioner HTTP 500", kind="server_error"),
        "503": CaptionerAway("captioner loading (HTTP 503)", 0.01, "loading"),
    }
    if outcome in errors:
        raise errors[outcome]
    return "" if outcome == "empty" else "  a   plain\x00 caption "


class FakeFetcher:
    async def fetch(self, bucket: str, name: str) -> bytes:
        return image_bytes(int(name.removesuffix(".png")))


@dataclass
class Row:
    state: str = "pending"
    attempts: int = 0
    run_after: float = 0.0
    token: str | None = None
    caption: str | None = None
    last_error: str | None = None
    pauses: int = 0


class FakeQueue:
    """captioner.jobs in memory, with caption_jobs_claim/complete/retry/fail's semantics;
    notes each job failed, other than for the image's own fault (4xx), while the probe
    shows the captioner away."""

    def __init__(self, count: int, captioner: FakeCaptioner) -> None:
        self.rows = {str(index): Row() for index in range(count)}
        self.captioner = captioner
        self.failed_while_away: list[str] = []

    def rows_ended(self) -> bool:
        return all(row.state in ("done", "failed") for row in self.rows.values())

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def claim(self, limit: int, lease: int, max_attempts: int, model: Any) -> list[Job]:
        due = [(i, r) for i, r in self.rows.items() if r.state == "pending"]
        due = [(i, r) for i, r in due if r.run_after <= self._now()][:limit]
        for _, row in due:
            row.state, row.attempts, row.token = "running", row.attempts + 1, str(uuid.uuid4())
        return [
            Job(
                i,
                "v1",
                "b",
                f"{i}.png",
                "image/png",
                None,
                r.attempts,
                r.token or "",
                no_progress=self._no_progress(r, max_attempts),
            )
            for i, r in due
        ]

    @staticmethod
    def _no_progress(row: Row, max_pauses: int) -> str | None:
        if row.pauses < max_pauses:
            return None
        return f"gave up after {row.pauses} pauses without progress: {row.last_error}"

    def _held(self, job: Job) -> Row | None:
        row = self.rows[job.object_id]
        return row if row.state == "running" and row.token == job.lease_token else None

    async def reuse(self, job: Job, fingerprint: str, model: str) -> None:
        return None

    async def described(self, job: Job, model: str, plan: Any) -> tuple[str, ...]:
        return ()

    async def complete(self, job: Job, caption: str, *args: Any) -> bool:
        if (row := self._held(job)) is None:
            return False
        row.state, row.caption, row.token = "done", caption, None
        return True

    async def retry(self, job: Job, error: str | None, delay: float, refund: bool = False) -> bool:
        if (row := self._held(job)) is None:
            return False
        row.state, row.token, row.run_after = "pending", None, self._now() + delay
        row.attempts -= 1 if refund else 0
        row.last_error = error or row.last_error
        return True

    async def give_back(self, job: Job, error: str, delay: float) -> bool:
        held = await self.retry(job, error, delay, refund=True)
        self.rows[job.object_id].pauses += held
        return held

    async def fail(self, job: Job, error: str) -> bool:
        if (row := self._held(job)) is None:
            return False
        if self.captioner.away and "rejected the image" not in error:
            self.failed_while_away.append(f"{job.object_id}: {error}")
        row.state, row.token, row.last_error = "failed", None, error
        return True


def worker_settings(max_attempts: int) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        caption_backend="local",
        caption_timeout=0.05,
        max_attempts=max_attempts,
        retry_base_seconds=0.002,
        retry_max_seconds=0.03,
        worker_poll_interval=0.01,
        worker_concurrency=2,
    )


async def run_scenario(
    plans: list[Plan], probe_failures: list[str], max_attempts: int, workers: int = 1
) -> tuple[FakeQueue, FakeCaptioner, Worker]:
    """`workers` workers (replicas, each its own health and settler) on one queue."""
    captioner = FakeCaptioner(plans, probe_failures)
    queue = FakeQueue(len(plans), captioner)
    config = worker_settings(max_attempts)
    replicas = [Worker(queue, FakeFetcher(), captioner, config) for _ in range(workers)]  # type: ignore[arg-type]
    running = [asyncio.create_task(worker.run()) for worker in replicas]
    try:
        await eventually(lambda: queue.rows_ended(), DEADLINE, message="jobs never ended")
        # a pause that began last ends at the next probe, which captions
        await eventually(
            lambda: all(w.health.problem is None for w in replicas), DEADLINE, message="paused"
        )
    finally:
        await asyncio.gather(*(worker.stop(1.0) for worker in replicas))
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    return queue, captioner, replicas[0]


plans = st.builds(Plan, st.lists(st.sampled_from(OUTCOMES), max_size=5), st.sampled_from(OUTCOMES))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    plans=st.lists(plans, min_size=1, max_size=5),
    probe_failures=st.lists(st.sampled_from(FAILURES), max_size=4),
    max_attempts=st.integers(min_value=1, max_value=4),
    workers=st.integers(min_value=1, max_value=2),
)
def test_every_job_ends_within_the_bound(plans, probe_failures, max_attempts, workers):
    queue, captioner, _ = asyncio.run(run_scenario(plans, probe_failures, max_attempts, workers))

    assert {row.state for row in queue.rows.values()} <= {"done", "failed"}
    bound = 2 * max_attempts
    for index, plan in enumerate(plans):
        assert captioner.calls.get(index, 0) <= bound, (index, plan, queue.rows[str(index)])
        if plan.prefix == [] and plan.tail == "ok":
            assert queue.rows[str(index)].state == "done", queue.rows[str(index)]
    assert queue.failed_while_away == []
    assert all(row.caption in (None, "a plain caption") for row in queue.rows.values())


def test_a_job_that_keeps_coming_back_from_pauses_ends_failed():
    """503 for this image for ever while the probe captions: each 503 pauses the worker and
    gives the job back, refunded; after MAX_ATTEMPTS such rounds it is failed once a probe
    captions, with no further call."""
    queue, captioner, worker = asyncio.run(run_scenario([Plan([], "503")], [], 3))

    row = queue.rows["0"]
    assert row.state == "failed"
    assert row.last_error == "gave up after 3 pauses without progress: captioner loading (HTTP 503)"
    assert row.attempts == 1  # every round was refunded; the last claim ended it
    assert captioner.calls[0] == 3
    assert captioner.probes == ["ok"] * 4  # one after each pause, one before the failure


def test_a_hang_on_every_image_and_the_probe_fails_nothing():
    """The captioner hangs for its first calls (the probe too), then answers: paused, no job
    failed, each captioned with its attempts refunded."""
    plans = [Plan(["hang"], "ok"), Plan(["hang"], "ok")]
    queue, captioner, _ = asyncio.run(run_scenario(plans, ["hang", "hang"], 2))

    assert [row.state for row in queue.rows.values()] == ["done", "done"]
    assert captioner.probes[:3] == ["hang", "hang", "ok"]
    assert all(row.attempts == 1 for row in queue.rows.values())
