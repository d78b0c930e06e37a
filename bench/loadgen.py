"""A lean HTTP/1.1 load generator, run in its own process (`python -m bench.loadgen`).

Raw asyncio streams with keep-alive (no HTTP client library), so that the generator
costs far less CPU per request than the server it measures. Reads a JSON job on stdin:
{"url", "secret", "payloads_file" (one JSON body per line), "connections",
 "count" (requests to send) or "duration" (seconds), "warmup" (requests not measured),
 "rate" (optional: requests per second, paced; latency counts from each request's due time,
 so a slow server cannot hide its queueing delay)}
and prints one JSON object: sent, statuses, seconds, per_second, p50_ms, p99_ms, max_ms.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from urllib.parse import urlsplit


async def send(reader, writer, head: bytes, body: bytes) -> int:
    writer.write(head + str(len(body)).encode() + b"\r\n\r\n" + body)
    status_line, *header_lines = (await reader.readuntil(b"\r\n\r\n")).split(b"\r\n")
    length = 0
    for line in header_lines:
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return int(status_line.split()[1])


async def main(job: dict) -> dict:
    url = urlsplit(job["url"])
    head = (
        f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Authorization: Bearer {job['secret']}\r\nContent-Type: application/json\r\n"
        "Content-Length: "
    ).encode()
    bodies = job["bodies"]
    warmup = job.get("warmup", 0)
    count = job.get("count")
    deadline = None
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    next_index = 0
    measuring = asyncio.Event()
    started = 0.0
    rate = job.get("rate")
    paced_from = time.perf_counter()

    async def connection() -> None:
        nonlocal next_index, started, deadline
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        try:
            while True:
                index = next_index
                if count is not None and index >= warmup + count:
                    return
                if deadline is not None and time.perf_counter() > deadline:
                    return
                next_index += 1
                if index == warmup:  # the first measured request starts the clock
                    started = time.perf_counter()
                    if job.get("duration"):
                        deadline = started + job["duration"]
                    measuring.set()
                body = bodies[index % len(bodies)]
                t0 = time.perf_counter()
                if rate:
                    due = paced_from + index / rate
                    await asyncio.sleep(max(0.0, due - t0))
                    t0 = due
                try:
                    status = await send(reader, writer, head, body)
                except (OSError, asyncio.IncompleteReadError) as exc:
                    errors[type(exc).__name__] += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(url.hostname, url.port)
                    continue
                if index >= warmup:
                    latencies.append(time.perf_counter() - t0)
                    statuses[status] += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(job["connections"])))
    seconds = time.perf_counter() - started
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return 1000 * ordered[min(len(ordered) - 1, int(p / 100 * (len(ordered) - 1)))]

    return {
        "sent": len(latencies),
        "statuses": {str(k): v for k, v in statuses.items()},
        "errors": dict(errors),
        "seconds": seconds,
        "per_second": len(latencies) / seconds if seconds else 0.0,
        "p50_ms": pct(50) if ordered else None,
        "p99_ms": pct(99) if ordered else None,
        "max_ms": 1000 * ordered[-1] if ordered else None,
    }


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    job = json.loads(sys.stdin.read())
    with open(job["payloads_file"], "rb") as fh:
        job["bodies"] = [line.rstrip(b"\n") for line in fh if line.strip()]
    print(json.dumps(asyncio.run(main(job))))
