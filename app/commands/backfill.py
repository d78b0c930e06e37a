"""Backfill a bucket (`captioner backfill`): a reconciliation pass over the bucket queues its
uncaptioned images a slice at a time, just ahead of a worker that captions them at
WORKER_CONCURRENCY; progress comes from kept counters, so the database's cost per image
does not grow with the bucket."""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from supabase import AsyncClient

from app.core.config import Settings
from app.pipeline.jobs import JobQueue, QueueStats
from app.pipeline.worker import running_worker

IDLE_WAIT = 0.25  # seconds between checks while the pass waits for the workers


@dataclass
class Progress:
    """Where a backfill stands; `captioned` and `failed` count this run's outcomes."""

    bucket: str
    objects: int  # in the bucket when the backfill began
    examined: int = 0
    queued: int = 0
    skipped: int = 0
    captioned: int = 0
    failed: int = 0
    pass_running: bool = True
    started: float = field(default_factory=time.monotonic)

    @property
    def already(self) -> int:
        """Examined objects that had a caption, or a job, for their current version."""
        return self.examined - self.queued - self.skipped

    @property
    def rate(self) -> float:
        """Images captioned per second since the start."""
        return self.captioned / max(time.monotonic() - self.started, 1e-9)

    def line(self) -> str:
        return (
            f"{self.bucket}: examined {self.examined:,}/{self.objects:,} objects, "
            f"queued {self.queued:,}, captioned {self.captioned:,} ({self.rate:.1f} images/s), "
            f"failed {self.failed:,}"
        )


Report = Callable[[Progress], None]


async def backfill(
    supabase: AsyncClient,
    queue: JobQueue,
    settings: Settings,
    bucket: str,
    batch: int,
    report: Report,
) -> Progress:
    """Caption every image of `bucket` without a caption for its current version, in this
    process, until the pass is over and none of the bucket's jobs is pending or running.
    Like any worker it also takes other buckets' due jobs, and replicas running meanwhile
    help: they share the pass (its cursor lives in the database) and the queue."""
    before = await queue.stats(bucket)
    await queue.sweep_start(bucket)
    progress = Progress(bucket, await queue.bucket_size(bucket))
    async with running_worker(supabase, queue, settings) as worker:
        while True:
            if worker.paused is not None:  # nothing gets done until a setting changes
                raise worker.paused
            moved = await sweep(queue, bucket, batch, progress)
            if moved:
                worker.wake()
            now = await queue.stats(bucket)
            progress.captioned = count(now, "done") - count(before, "done")
            progress.failed = count(now, "failed") - count(before, "failed")
            report(progress)
            if not progress.pass_running and count(now, "pending", "running") == 0:
                return progress
            if not moved:
                await asyncio.sleep(IDLE_WAIT)


async def sweep(queue: JobQueue, bucket: str, batch: int, progress: Progress) -> bool:
    """One slice of the bucket's pass; False when it could not move (the workers are behind,
    another replica holds the sweep, or the pass is over)."""
    if not progress.pass_running:
        return False
    slices = [p for p in await queue.sweep(batch, buckets=[bucket]) if p.bucket_id == bucket]
    for piece in slices:
        progress.examined += piece.examined
        progress.queued += piece.queued
        progress.skipped += piece.skipped
    if slices:
        progress.pass_running = any(piece.passing for piece in slices)
    else:  # another replica is sweeping: ask whether the pass is still running
        passes = {p.bucket_id: p for p in await queue.sweep_passes()}
        progress.pass_running = bucket in passes and passes[bucket].running
    return any(piece.examined for piece in slices)


def count(stats: list[QueueStats], *states: str) -> int:
    return sum(row.jobs for row in stats if row.state in states)


class ConsoleReport:
    """Shows a backfill's progress on stderr: two bars on a terminal (objects examined,
    images captioned, with the rate), otherwise a line every `every` seconds."""

    def __init__(self, every: float = 5.0) -> None:
        self._console = Console(stderr=True)
        self._every = every
        self._last = 0.0
        self._bars: RichProgress | None = None
        self._tasks: tuple[TaskID, TaskID] | None = None
        self._final: Progress | None = None  # not printed yet

    def __enter__(self) -> "ConsoleReport":
        if self._console.is_terminal:
            columns = (
                "{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[note]}"),
                TimeElapsedColumn(),
            )
            self._bars = RichProgress(*columns, console=self._console)
            self._bars.start()
            self._tasks = (
                self._bars.add_task("examined", total=None, note=""),
                self._bars.add_task("captioned", total=None, note=""),
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bars is not None:
            self._bars.stop()
        elif self._final is not None:
            self._console.print(self._final.line(), highlight=False, soft_wrap=True)

    def __call__(self, progress: Progress) -> None:
        if self._bars is not None and self._tasks is not None:
            examined, captioned = self._tasks
            self._bars.update(
                examined,
                completed=progress.examined,
                total=progress.objects,
                note=f"objects, {progress.queued:,} queued",
            )
            self._bars.update(
                captioned,
                completed=progress.captioned + progress.failed,
                total=progress.queued,
                note=f"{progress.rate:.1f} images/s, {progress.failed:,} failed",
            )
            return
        now = time.monotonic()
        self._final = progress
        if now - self._last >= self._every:
            self._last, self._final = now, None
            self._console.print(progress.line(), highlight=False, soft_wrap=True)
