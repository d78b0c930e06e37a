"""Bounded reading (app/core/bounded.py), shared by the webhook, the API upload and the
storage download: whatever the chunking and whatever length is declared, a body is accepted
exactly when it holds at most `limit` bytes, and refused as soon as it is over."""

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.bounded import read_capped, read_file, read_stream
from app.core.errors import PermanentError

LIMIT = 64


class Refused(Exception):
    pass


async def chunks_of(data: bytes, sizes: list[int], seen: list[int]) -> AsyncIterator[bytes]:
    offset = 0
    for size in [*sizes, len(data)]:
        if offset >= len(data):
            return
        chunk = data[offset : offset + max(size, 1)]
        offset += len(chunk)
        seen.append(offset)
        yield chunk


def read(data: bytes, sizes: list[int], declared: str | None = None) -> tuple[bytes, list[int]]:
    seen: list[int] = []
    result = asyncio.run(read_capped(chunks_of(data, sizes, seen), LIMIT, Refused, declared))
    return result, seen


@given(
    length=st.integers(0, 3 * LIMIT),
    sizes=st.lists(st.integers(1, 40), max_size=12),
)
def test_a_stream_is_accepted_exactly_when_it_fits_and_refused_at_the_first_chunk_over(
    length, sizes
):
    data = bytes(range(256))[:length] if length <= 256 else bytes(length)
    if length <= LIMIT:
        result, _ = read(data, sizes)
        assert result == data
        return
    seen: list[int] = []
    with pytest.raises(Refused, match=f"more than {LIMIT} bytes"):
        asyncio.run(read_capped(chunks_of(data, sizes, seen), LIMIT, Refused))
    assert seen[-1] > LIMIT and all(offset <= LIMIT for offset in seen[:-1])


@given(declared=st.integers(0, 3 * LIMIT))
def test_a_declared_length_refuses_only_what_is_over_the_limit(declared):
    body = bytes(min(declared, LIMIT))
    if declared > LIMIT:
        with pytest.raises(Refused, match=f"{declared} bytes"):
            read(body, [8], str(declared))
    else:
        assert read(body, [8], str(declared))[0] == body


@pytest.mark.parametrize("declared", ["", "abc", "-1", "1e9", " 10"])
def test_a_declared_length_that_is_not_a_number_is_ignored_and_the_bytes_counted(declared):
    assert read(bytes(LIMIT), [7], declared)[0] == bytes(LIMIT)
    with pytest.raises(Refused):
        read(bytes(LIMIT + 1), [7], declared)


@pytest.mark.parametrize("length", [0, 1, LIMIT - 1, LIMIT])
def test_a_file_at_or_under_the_limit_is_read_whole(tmp_path: Path, length):
    path = tmp_path / "f"
    path.write_bytes(b"x" * length)

    assert read_file(path, LIMIT) == b"x" * length


@pytest.mark.parametrize("length", [LIMIT + 1, 10 * LIMIT])
def test_a_file_over_the_limit_is_refused_naming_the_setting(tmp_path: Path, length):
    path = tmp_path / "f"
    path.write_bytes(b"x" * length)

    with pytest.raises(PermanentError, match=f"more than {LIMIT} bytes.*MAX_IMAGE_BYTES={LIMIT}"):
        read_file(path, LIMIT)


def test_a_file_that_never_ends_is_refused_after_the_limit(tmp_path: Path):
    """A pipe (`captioner caption /dev/stdin`) is read only up to the limit, never to its end."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    done = threading.Event()

    def writer() -> None:
        with pipe.open("wb") as file:
            file.write(bytes(4 * LIMIT))
            file.flush()
            done.wait(30)  # the pipe stays open until the reader has given up

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with pytest.raises(PermanentError, match=f"more than {LIMIT} bytes"):
            read_file(pipe, LIMIT)
    finally:
        done.set()
        thread.join()


def response(body: bytes, declared: str | None, chunk: int = 10) -> httpx.Response:
    async def stream() -> AsyncIterator[bytes]:
        for offset in range(0, len(body), chunk):
            yield body[offset : offset + chunk]

    headers = {"content-length": declared} if declared is not None else {}
    return httpx.Response(200, headers=headers, content=stream())


@pytest.mark.parametrize(
    ("length", "declared", "refused"),
    [
        (LIMIT, str(LIMIT), None),
        (LIMIT, None, None),
        (LIMIT + 1, None, f"more than {LIMIT} bytes"),
        (LIMIT, str(LIMIT + 1), f"{LIMIT + 1} bytes"),  # refused before reading
        (LIMIT + 1, str(LIMIT), f"more than {LIMIT} bytes"),  # a length that lies
    ],
)
def test_a_download_is_capped_by_its_declared_and_its_real_length(length, declared, refused):
    async def main() -> bytes:
        return await read_stream(response(bytes(length), declared), LIMIT)

    if refused is None:
        assert asyncio.run(main()) == bytes(length)
    else:
        with pytest.raises(PermanentError, match=f"image too large: {refused}"):
            asyncio.run(main())
