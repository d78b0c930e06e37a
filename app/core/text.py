"""Text a model wrote, made safe to store, index and log.

`clean_text` is applied to every text field a captioner returns before it is written or
logged: Postgres `text` refuses NUL, UTF-8 has no lone surrogates, the search vector
(`to_tsvector`) refuses a text over 1 MB, and a log line should not carry megabytes.
"""

import re

# C0/C1 controls other than whitespace (NUL included), DEL, and surrogate code points (a
# lone surrogate is what a JSON "\udXXX" escape decodes to; UTF-8 cannot encode it)
_UNWRITABLE = re.compile(r"[\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f\ud800-\udfff]")
LOG_QUOTE_CHARS = 200  # a log line quotes at most this much of a model's text


def clean_text(text: str, max_chars: int) -> str:
    """`text` without unwritable characters, whitespace runs collapsed to one space, cut to
    at most `max_chars` characters (at a word boundary when there is one in the last fifth)."""
    head = text[: 2 * max_chars + 64]  # work on what can survive: never megabytes
    cleaned = " ".join(_UNWRITABLE.sub("", head).split())
    if len(cleaned) <= max_chars:
        return cleaned
    cut = cleaned[: max_chars + 1]
    space = cut.rfind(" ")
    return cut[:space] if space >= max_chars * 4 // 5 else cut[:max_chars]


def quoted(text: str, max_chars: int = LOG_QUOTE_CHARS) -> str:
    """`text` for a log line or an error reason: repr-quoted, at most `max_chars` of it."""
    if len(text) <= max_chars:
        return repr(text)
    return f"{text[:max_chars]!r}… ({len(text)} characters)"


def clipped(text: str, max_chars: int = 500) -> str:
    """`text` cut to `max_chars` (an error reason kept in the job, or logged)."""
    return text if len(text) <= max_chars else f"{text[:max_chars]}… ({len(text)} characters)"
