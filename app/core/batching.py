"""Micro-batching: concurrent callers' items are gathered into one call of a batch function."""

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
# Adaptive waiting (max_wait=None), as fractions of the batch function's own time per batch:
WAIT_FRACTION = 0.25  # the longest the first item of a partial batch waits for company
SETTLE_FRACTION = 0.01  # how long no new item (and none announced) means the burst is over
EWMA_WEIGHT = 0.3  # the newest batch's weight in the time per batch
TIMER_SLACK = 0.0005  # seconds: a start this close is now


class MicroBatcher(Generic[T, R]):
    """Runs concurrent callers' items in batches: one `run_batch(items)` call per batch, and
    each caller gets its own result (or the batch's exception).

    Never while another batch runs: items that arrive meanwhile form the next batch, so
    batches grow with the load. Otherwise a batch starts when `max_size` items wait, or:

    - `max_wait` seconds after its first item arrived (a fixed wait), or
    - with `max_wait=None`, a wait driven by the batch function's own time per batch `t`
      (measured, or `observe`d): as soon as no item arrived for `t × SETTLE_FRACTION` and
      none is announced as coming (`incoming()`), at the latest `t × WAIT_FRACTION` after
      the first item. An idle system answers a lone item at once; a burst fills a batch.
    """

    def __init__(
        self,
        run_batch: Callable[[list[T]], Awaitable[list[R]]],
        max_size: int,
        max_wait: float | None,
    ) -> None:
        self._run_batch = run_batch
        self._max_size = max_size
        self._max_wait = max_wait
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._first_at = self._last_at = 0.0
        self._incoming = 0
        self._timer: asyncio.TimerHandle | None = None
        self._running: asyncio.Task[None] | None = None
        self.batch_seconds: float | None = None  # the batch function's time per batch (EWMA)
        self.batches_run = 0
        self.items_done = 0

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._last_at = loop.time()
        if not self._pending:
            self._first_at = self._last_at
        self._pending.append((item, future))
        self._schedule()
        return await future

    @contextmanager
    def incoming(self) -> Iterator[None]:
        """Announce an item on its way (being decoded): a partial batch waits for it."""
        self._incoming += 1
        try:
            yield
        finally:
            self._incoming -= 1
            if self._pending:  # it is about to be submitted (or failed): settle from now
                self._last_at = asyncio.get_running_loop().time()
                self._schedule()

    def observe(self, seconds: float) -> None:
        """Count one batch's duration (e.g. a warm-up run outside the batcher)."""
        if self.batch_seconds is None:
            self.batch_seconds = seconds
        else:
            self.batch_seconds += EWMA_WEIGHT * (seconds - self.batch_seconds)

    def _start_at(self) -> float:
        """The loop time at which the pending partial batch should start."""
        if self._max_wait is not None:
            return self._first_at + self._max_wait
        per_batch = self.batch_seconds or 0.0
        deadline = self._first_at + per_batch * WAIT_FRACTION
        if self._incoming:
            return deadline
        return min(deadline, self._last_at + per_batch * SETTLE_FRACTION)

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._running is not None or not self._pending:
            return  # the running batch's end starts the next one
        loop = asyncio.get_running_loop()
        start_at = self._start_at()
        if len(self._pending) < self._max_size and start_at - loop.time() > TIMER_SLACK:
            self._timer = loop.call_at(start_at, self._schedule)
            return
        batch = self._pending[: self._max_size]
        del self._pending[: self._max_size]
        self._first_at = self._last_at = loop.time()
        self._running = loop.create_task(self._run(batch))
        self._running.add_done_callback(self._batch_done)

    def _batch_done(self, _: asyncio.Task[None]) -> None:
        self._running = None
        self._schedule()

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        batch = [(item, future) for item, future in batch if not future.done()]
        if not batch:
            return
        started = time.perf_counter()
        try:
            results = await self._run_batch([item for item, _ in batch])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        self.observe(time.perf_counter() - started)
        self.batches_run += 1
        self.items_done += len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def aclose(self, error: Exception) -> None:
        """Fail what has not started with `error`; wait for the running batch."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        for _, future in pending:
            if not future.done():
                future.set_exception(error)
        if self._running is not None:
            await asyncio.gather(self._running, return_exceptions=True)
