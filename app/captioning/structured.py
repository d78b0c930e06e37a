"""One call for every field: the JSON schema a vision-language model is asked to fill, the
instruction that goes with it, and the pydantic check of its answer.

An answer that misses the schema (prose, broken JSON, a field too long) is asked for once more
with a stricter instruction naming what was wrong; what still misses is dropped field by field
and named in `Description.missing`, and when nothing usable is left the backend's plain
sentence stands in (`describe_with_retry`). It never loops and never raises for the answer's
shape: a miss is not the image's fault, nor a setting's, nor an outage. Only when the
description's deadline (app/captioning/deadline.py) leaves no time for the retry are the fields
that fitted kept at once; when none did and no time is left for the plain sentence either, the
answer is unusable (`out_of_time`).
"""

import json
import logging
import re
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from app.captioning.deadline import OutOfTime
from app.captioning.description import DescribeRequest, Description, FieldName
from app.core import metrics
from app.core.errors import UnusableAnswer

log = logging.getLogger(__name__)

MAX_TAGS = 10
MAX_ANSWER_CHARS = 20_000  # an answer longer than this is not read at all
# "This image shows …", "A photo of …": what screen readers already announce (photoprism-vision#11)
PREAMBLE = re.compile(
    r"^\s*(?:(?:this|the)\s+(?:image|picture|photo(?:graph)?|illustration)\s+"
    r"(?:shows|depicts|contains|features|displays|is\s+of)|"
    r"(?:an?\s+)?(?:image|picture|photo(?:graph)?)\s+(?:of|showing))\s*:?\s+",
    re.IGNORECASE,
)
MARKDOWN = re.compile(r"\*\*|__|`|^\s{0,3}(?:#{1,6}\s|[-*+]\s|>\s)", re.MULTILINE)
SENTENCE_BREAK = re.compile(r"[.!?][\"')\]]?\s+\S")
FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)

GUIDANCE: dict[FieldName, str] = {
    "caption": "one sentence describing the image",
    "alt_text": "alternative text for a screen reader: one sentence, at most {max} characters, "
    "no preamble such as 'This image shows' or 'An image of', no markdown",
    "description": "two to four sentences of detail: subjects, setting, colours, mood",
    "tags": "at most 10 lower-case keywords",
    "text_in_image": "the text visible in the image, verbatim and untranslated; an empty string "
    "when there is none",
}


class SchemaMiss(Exception):
    """The model's answer does not fit the schema; `kind` says how (for metrics)."""

    def __init__(self, reason: str, kind: str, fields: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # not_json, not_object, invalid_fields, empty
        self.fields = fields or {}  # the fields that did fit, when the answer was an object


class Answer(BaseModel):
    """A model's answer, field by field; validation context: {"max_chars": int}."""

    model_config = ConfigDict(extra="ignore", strict=True)

    caption: str | None = None
    alt_text: str | None = None
    description: str | None = None
    tags: list[str] | None = None
    text_in_image: str | None = None

    @field_validator("caption", "description")
    @classmethod
    def _prose(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = MARKDOWN.sub("", value).strip()
        if not value:
            raise ValueError("is empty")
        return value

    @field_validator("alt_text")
    @classmethod
    def _alt_text(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        value = MARKDOWN.sub("", value).strip()
        value = PREAMBLE.sub("", value, count=1)
        value = value[:1].upper() + value[1:]
        limit = (info.context or {}).get("max_chars", 125)
        if not value:
            raise ValueError("is empty")
        if len(value) > limit:
            raise ValueError(f"is {len(value)} characters long, more than {limit}")
        if SENTENCE_BREAK.search(value.rstrip(".!?\"')] ")):
            raise ValueError("is more than one sentence")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        tags = list(dict.fromkeys(t.strip().lower() for t in value if t.strip()))
        if len(tags) > MAX_TAGS:
            raise ValueError(f"has {len(tags)} tags, more than {MAX_TAGS}")
        return tags

    @field_validator("text_in_image")
    @classmethod
    def _verbatim(cls, value: str | None) -> str | None:
        return value.strip() if value is not None else None


def asked_fields(request: DescribeRequest) -> tuple[FieldName, ...]:
    """The fields the model is asked for: those requested, and a caption when neither the
    caption nor the alt text is (every description has a caption)."""
    fields = tuple(dict.fromkeys(request.fields))
    if "caption" not in fields and "alt_text" not in fields:
        fields = ("caption", *fields)
    return fields


def json_schema(request: DescribeRequest, max_chars: int) -> dict[str, Any]:
    """The JSON schema of the answer (strict: every property required, nothing else)."""
    string = {"type": "string"}
    properties: dict[str, dict[str, Any]] = {
        "caption": {**string, "minLength": 1},
        "alt_text": {**string, "minLength": 1, "maxLength": max_chars},
        "description": {**string, "minLength": 1},
        "tags": {"type": "array", "items": string, "maxItems": MAX_TAGS},
        "text_in_image": string,
    }
    fields = asked_fields(request)
    return {
        "type": "object",
        "properties": {
            name: {**properties[name], "description": _guidance(name, max_chars)} for name in fields
        },
        "required": list(fields),
        "additionalProperties": False,
    }


def response_format(request: DescribeRequest, max_chars: int) -> dict[str, Any]:
    """OpenAI's `response_format` for the schema, as the HF router and vLLM accept it."""
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "image_description",
            "schema": json_schema(request, max_chars),
            "strict": True,
        },
    }


def instruction(
    request: DescribeRequest, max_chars: int, with_schema: bool, *, problem: str | None = None
) -> str:
    """The prompt: the fields and their rules, the reader's language, the bucket's own prompt;
    with the schema spelled out where no `response_format` carries it; and, on the retry,
    what was wrong with the first answer."""
    fields = asked_fields(request)
    lines = [
        "Describe this image for people who cannot see it. Answer with one JSON object "
        f"with exactly these keys: {', '.join(fields)}.",
        *(f"- {name}: {_guidance(name, max_chars)}" for name in fields),
        f"Write every field except text_in_image in the language with BCP 47 tag "
        f'"{request.language}".',
    ]
    if request.prompt:
        lines.append(request.prompt)
    if with_schema:
        lines.append("The JSON schema: " + json.dumps(json_schema(request, max_chars)))
    if problem is not None:
        lines.append(
            f"Your previous answer was not usable: {problem}. Answer again with only the JSON "
            "object: no prose, no markdown, no code fence, every limit respected."
        )
    return "\n".join(lines)


def read_answer(content: str, request: DescribeRequest, max_chars: int) -> Description:
    """The description in a model's answer; SchemaMiss when it does not fit."""
    filled, problem = _validated(_json_object(content), request, max_chars)
    if problem is not None:
        raise SchemaMiss(problem, "invalid_fields", filled)
    return _description(filled, request)


def checked(values: dict[str, Any], request: DescribeRequest, max_chars: int) -> Description:
    """A description from fields a model filled one by one (Florence-2's tasks): each field
    under the same rules as a JSON answer, one that breaks them named in `missing`. Needs a
    caption or an alt text that passes."""
    filled, _ = _validated(values, request, max_chars)
    kept = salvage(SchemaMiss("", "invalid_fields", filled), request)
    if kept is None:
        return Description(language=request.language, caption="", missing=list(request.fields))
    return kept


def _validated(
    data: dict[str, Any], request: DescribeRequest, max_chars: int
) -> tuple[dict[str, Any], str | None]:
    """(the asked fields that pass, what was wrong or None)."""
    context = {"max_chars": max_chars}
    try:
        answer = Answer.model_validate(data, context=context)
    except ValidationError as exc:
        bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        reason = "; ".join(f"{'.'.join(map(str, e['loc']))} {e['msg']}" for e in exc.errors())
        kept = Answer.model_validate(
            {k: v for k, v in data.items() if k not in bad}, context=context
        )
        return _filled(kept, request), reason
    filled = _filled(answer, request)
    absent = [name for name in asked_fields(request) if name not in filled]
    return filled, (f"missing keys: {', '.join(absent)}" if absent else None)


def salvage(miss: SchemaMiss, request: DescribeRequest) -> Description | None:
    """What fitted in an answer that missed: None when it has neither caption nor alt text."""
    if not (miss.fields.get("caption") or miss.fields.get("alt_text")):
        return None
    return _description(miss.fields, request)


async def describe_with_retry(
    ask: Callable[[Callable[[bool], str]], Awaitable[str]],
    plain: Callable[[], Awaitable[str]],
    request: DescribeRequest,
    max_chars: int,
) -> Description:
    """Ask, once more with a stricter instruction if the answer misses, then keep what fitted
    or fall back to `plain()`'s sentence: three calls at most. `ask` gets the prompt as a
    function of whether it must carry the schema (no `response_format` on the route). A retry
    the deadline leaves no time for (OutOfTime) counts as a miss; a plain sentence it leaves
    no time for is an UnusableAnswer."""
    problem: str | None = None
    last = SchemaMiss("not asked", "empty")
    for attempt in (1, 2):
        try:
            content = await ask(partial(instruction, request, max_chars, problem=problem))
        except OutOfTime as exc:
            if attempt == 1:
                raise
            log.info("no retry: %s", exc)
            break
        try:
            return read_answer(content, request, max_chars)
        except SchemaMiss as exc:
            metrics.SCHEMA_MISSES.labels(exc.kind).inc()
            log.info("answer %d missed the schema (%s): %s", attempt, exc.kind, exc.reason[:300])
            problem, last = exc.reason[:500], exc
    kept = salvage(last, request)
    metrics.SCHEMA_FALLBACKS.labels("kept_fields" if kept else "plain_sentence").inc()
    if kept is not None:
        return kept
    try:
        sentence = await plain()
    except OutOfTime as exc:
        raise no_time_for_the_plain_sentence(last, exc) from None
    return Description.from_caption(sentence.strip(), request, alt_text_max_chars=max_chars)


def no_time_for_the_plain_sentence(miss: SchemaMiss, out: OutOfTime) -> UnusableAnswer:
    """The answers missed the schema and the deadline came before the plain sentence."""
    return UnusableAnswer(
        f"the model's answers miss the schema and leave no time for the plain sentence ({out})",
        "CAPTION_TIMEOUT or CAPTION_MODEL",
        f"the model's answer for this image missed the schema ({miss.reason[:200]}); no plain "
        f"sentence: {out}",
        kind="out_of_time",
    )


def _json_object(content: str) -> dict[str, Any]:
    text = content.strip()
    if not text:
        raise SchemaMiss("the answer is empty", "empty")
    if len(text) > MAX_ANSWER_CHARS:
        raise SchemaMiss(f"the answer is {len(text)} characters long", "not_json")
    fenced = FENCE.match(text)
    try:
        data = json.loads(fenced.group(1) if fenced else text)
    except ValueError as exc:
        raise SchemaMiss(f"the answer is not JSON ({exc})", "not_json") from None
    if not isinstance(data, dict):
        raise SchemaMiss(f"the answer is JSON {type(data).__name__}, not an object", "not_object")
    return data


def _filled(answer: Answer, request: DescribeRequest) -> dict[str, Any]:
    asked: set[str] = set(asked_fields(request))
    return answer.model_dump(include=asked, exclude_none=True)


def _description(filled: dict[str, Any], request: DescribeRequest) -> Description:
    caption = filled.get("caption") or filled["alt_text"]
    values = {"caption": caption, **{k: v for k, v in filled.items() if k != "caption"}}
    present = set(values) if "caption" in filled else set(values) - {"caption"}
    missing = [name for name in request.fields if name not in present]
    return Description(language=request.language, missing=missing, **values)


def _guidance(name: FieldName, max_chars: int) -> str:
    return GUIDANCE[name].format(max=max_chars)
