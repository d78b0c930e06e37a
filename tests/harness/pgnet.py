"""A stand-in for pg_net's background worker.

Polls ``net.http_request_queue`` (only committed rows are visible, so delivery
happens after commit, like pg_net), deletes the rows it takes, sends each
request once with httpx and records the outcome in ``net._http_response``.
It never retries. Knobs simulate a lossy, duplicating, reordering network.
"""

from __future__ import annotations

import json
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg

TAKE_SQL = """
delete from net.http_request_queue
where id in (
  select id from net.http_request_queue order by id limit %s for update skip locked
)
returning id, method, url, headers, body, timeout_milliseconds
"""

RECORD_SQL = """
insert into net._http_response
  (id, status_code, content_type, headers, content, timed_out, error_msg)
values (%s, %s, %s, %s, %s, %s, %s)
"""


@dataclass
class QueuedRequest:
    id: int
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None
    timeout_milliseconds: int


class WebhookDelivery:
    """pg_net's worker, as a thread. Use as a context manager or start()/stop()."""

    def __init__(
        self,
        db_url: str,
        *,
        poll_interval: float = 0.02,
        batch_size: int = 200,
        concurrency: int = 8,
        seed: int | None = None,
    ) -> None:
        self.db_url = db_url
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.drop_rate = 0.0
        self.duplicate_rate = 0.0
        self.shuffle = False
        self.paused = False
        self.seed = seed
        self.delivered = 0
        self.dropped = 0
        self.responses: list[tuple[int | None, str]] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._idle_polls = 0
        self._in_flight = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="pgnet")
        self._http = httpx.Client()

    # lifecycle -------------------------------------------------------------
    def start(self) -> WebhookDelivery:
        self._thread = threading.Thread(target=self._run, name="pgnet-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._pool.shutdown(wait=True, cancel_futures=False)
        self._http.close()

    def __enter__(self) -> WebhookDelivery:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until a poll that began after this call found the queue empty and
        no request in flight. Raises AssertionError on timeout (e.g. when paused)."""
        with self._idle:
            target = self._idle_polls + 2
            if not self._idle.wait_for(lambda: self._idle_polls >= target, timeout):
                raise AssertionError(
                    f"pg_net stand-in not idle after {timeout}s "
                    f"(paused={self.paused}, in flight={self._in_flight})"
                )

    # worker ----------------------------------------------------------------
    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        while not self._stop.is_set():
            if self.paused:
                self._stop.wait(self.poll_interval)
                continue
            try:
                if conn is None or conn.closed:
                    conn = psycopg.connect(self.db_url, autocommit=True)
                batch = self._take(conn)
            except psycopg.Error:
                conn = None  # database gone (dropped between tests): retry until stopped
                self._stop.wait(0.2)
                continue
            self._dispatch(batch)
            with self._idle:
                if not batch and self._in_flight == 0:
                    self._idle_polls += 1
                    self._idle.notify_all()
            if not batch:
                self._stop.wait(self.poll_interval)
        if conn is not None:
            conn.close()

    def _take(self, conn: psycopg.Connection[Any]) -> list[QueuedRequest]:
        with conn.transaction():
            rows = conn.execute(TAKE_SQL, (self.batch_size,)).fetchall()
        batch = [QueuedRequest(r[0], r[1], r[2], r[3] or {}, r[4], r[5]) for r in rows]
        batch.sort(key=lambda r: r.id)
        if self.shuffle:
            self._rng.shuffle(batch)
        return batch

    def _dispatch(self, batch: list[QueuedRequest]) -> None:
        for req in batch:
            with self._lock:
                if self._rng.random() < self.drop_rate:
                    self.dropped += 1
                    continue
                copies = self._rng.choice((2, 3)) if self._rng.random() < self.duplicate_rate else 1
                self._in_flight += copies
            for _ in range(copies):
                self._pool.submit(self._send, req)

    def _send(self, req: QueuedRequest) -> None:
        status: int | None = None
        content, ctype, headers, timed_out, error = "", None, None, False, None
        try:
            resp = self._http.request(
                req.method,
                req.url,
                headers={str(k): str(v) for k, v in req.headers.items()},
                content=bytes(req.body) if req.body is not None else None,
                timeout=req.timeout_milliseconds / 1000,
            )
            status, content = resp.status_code, resp.text
            ctype, headers = resp.headers.get("content-type"), dict(resp.headers)
        except httpx.TimeoutException:
            timed_out = True
            error = f"Timeout of {req.timeout_milliseconds} ms reached"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        self._record(req.id, status, ctype, headers, content, timed_out, error)
        with self._idle:
            self.delivered += 1
            self.responses.append((status, content if status is not None else error or ""))
            self._in_flight -= 1
            self._idle.notify_all()

    def _record(self, *values: Any) -> None:
        values = tuple(json.dumps(v) if isinstance(v, dict) else v for v in values)
        try:
            with psycopg.connect(self.db_url, autocommit=True) as conn:
                conn.execute(RECORD_SQL, values)
        except psycopg.Error:
            pass  # the test database may already be gone
