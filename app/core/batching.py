"""Micro-batching: concurrent callers' items are gathered into one call of a batch function."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class MicroBatcher(Generic[T, R]):
    """Runs concurrent callers' items in batches: one `run_batch(items)` call per batch, and
    each caller gets its own result (or the batch's exception).

    A batch starts when `max_size` items are waiting or `max_wait` seconds after the first
    arrived, but never while another batch runs: items that arrive meanwhile form the next
    batch, so batches grow with the load and an idle system answers at once.
    """

    def __init__(
        self,
        run_batch: Callable[[list[T]], Awaitable[list[R]]],
        max_size: int,
        max_wait: float,
    ) -> None:
        self._run_batch = run_batch
        self._max_size = max_size
        self._max_wait = max_wait
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._running: asyncio.Task[None] | None = None
        self.batches_run = 0
        self.items_done = 0

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self._max_size:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._max_wait, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._running is not None or not self._pending:
            return  # the running batch's end starts the next one
        batch = self._pending[: self._max_size]
        del self._pending[: self._max_size]
        self._running = asyncio.get_running_loop().create_task(self._run(batch))
        self._running.add_done_callback(self._batch_done)

    def _batch_done(self, _: asyncio.Task[None]) -> None:
        self._running = None
        self._flush()

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        batch = [(item, future) for item, future in batch if not future.done()]
        if not batch:
            return
        try:
            results = await self._run_batch([item for item, _ in batch])
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
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
