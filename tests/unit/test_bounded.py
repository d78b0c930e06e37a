"""Bounded reading (app/core/bounded.py), shared by the webhook, the API upload and the
storage download: whatever the chunking and whatever length is declared, a body is accepted
exactly when it holds at most `limit` bytes, and refused as soon as it is over."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.bounded import read_capped, read_file
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
