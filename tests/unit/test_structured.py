"""The schema check of a vision-language model's answer (app/captioning/structured.py): the
properties behind the alt-text guidance and the limits, for any text."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.captioning.description import FIELDS, DescribeRequest, Description
from app.captioning.structured import (
    MAX_TAGS,
    SchemaMiss,
    asked_fields,
    instruction,
    json_schema,
    read_answer,
    salvage,
)

REQUEST = DescribeRequest()
WORD = st.text(st.characters(categories=["L"]), min_size=1, max_size=12)


def answer(**fields: object) -> str:
    base = {
        "caption": "A dog on a beach.",
        "alt_text": "Dog running on a beach",
        "description": "A brown dog runs. The sea is calm.",
        "tags": ["dog", "beach"],
        "text_in_image": "",
    }
    return json.dumps(base | fields)


@given(st.text(min_size=1, max_size=400).filter(str.strip), st.integers(20, 200))
def test_alt_text_longer_than_the_limit_never_passes(alt_text, limit):
    try:
        description = read_answer(answer(alt_text=alt_text), REQUEST, limit)
    except SchemaMiss as miss:
        assert miss.kind == "invalid_fields"
        assert "alt_text" not in miss.fields
    else:
        assert 0 < len(description.alt_text) <= limit


@given(st.lists(WORD, max_size=15))
def test_tags_come_out_lower_case_unique_and_at_most_ten(tags):
    try:
        description = read_answer(answer(tags=tags), REQUEST, 125)
    except SchemaMiss as miss:
        assert len({t.strip().lower() for t in tags if t.strip()}) > MAX_TAGS
        assert "tags" not in miss.fields and miss.fields["alt_text"]
    else:
        assert len(description.tags) <= MAX_TAGS
        assert all(tag == tag.lower() for tag in description.tags)
        assert len(set(description.tags)) == len(description.tags)


@pytest.mark.parametrize(
    "given_alt, kept",
    [
        ("This image shows a dog on a beach", "A dog on a beach"),
        ("The picture depicts: two cats", "Two cats"),
        ("An image of a red bicycle", "A red bicycle"),
        ("**A dog** on a beach", "A dog on a beach"),
        ("Photo of a lighthouse at dusk", "A lighthouse at dusk"),
    ],
)
def test_alt_text_loses_its_preamble_and_markdown(given_alt, kept):
    assert read_answer(answer(alt_text=given_alt), REQUEST, 125).alt_text == kept


def test_alt_text_of_two_sentences_misses():
    with pytest.raises(SchemaMiss, match="more than one sentence"):
        read_answer(answer(alt_text="A dog. It runs on the beach."), REQUEST, 125)


@pytest.mark.parametrize(
    "content, kind",
    [
        ("Sure! A dog on a beach.", "not_json"),
        ('{"caption": "A dog', "not_json"),
        ('["a", "b"]', "not_object"),
        ("   ", "empty"),
        (answer(tags="dog, beach"), "invalid_fields"),
        (json.dumps({"caption": "A dog."}), "invalid_fields"),
    ],
)
def test_each_way_an_answer_misses_has_its_kind(content, kind):
    with pytest.raises(SchemaMiss) as raised:
        read_answer(content, REQUEST, 125)
    assert raised.value.kind == kind


def test_a_fenced_json_answer_is_read():
    description = read_answer("```json\n" + answer() + "\n```", REQUEST, 125)
    assert description.missing == [] and description.tags == ["dog", "beach"]


def test_salvage_keeps_what_fitted_and_names_the_rest():
    with pytest.raises(SchemaMiss) as raised:
        read_answer(
            answer(description="", tags=["x"] * 3 + [str(i) for i in range(12)]), REQUEST, 125
        )
    kept = salvage(raised.value, REQUEST)
    assert kept is not None
    assert kept.missing == ["description", "tags"]
    assert kept.alt_text == "Dog running on a beach"


def test_salvage_without_caption_or_alt_text_gives_nothing():
    with pytest.raises(SchemaMiss) as raised:
        read_answer("prose", REQUEST, 125)
    assert salvage(raised.value, REQUEST) is None


@given(st.lists(st.sampled_from(FIELDS), min_size=1, unique=True))
def test_the_schema_asks_for_what_the_request_wants_and_always_a_caption(fields):
    request = DescribeRequest(fields=tuple(fields))
    schema = json_schema(request, 125)
    assert set(fields) <= set(schema["required"]) == set(schema["properties"])
    assert {"caption", "alt_text"} & set(schema["required"])
    assert schema["additionalProperties"] is False
    assert asked_fields(request)[0] in ("caption", *fields)


def test_the_instruction_names_the_language_and_on_retry_the_problem():
    request = DescribeRequest(language="pt-BR", prompt="These are product photos.")
    first = instruction(request, 100, False)
    retry = instruction(request, 100, True, problem="alt_text is 140 characters long")
    assert 'BCP 47 tag "pt-BR"' in first and "at most 100 characters" in first
    assert "These are product photos." in first
    assert "The JSON schema" not in first and "The JSON schema" in retry
    assert "alt_text is 140 characters long" in retry


def test_the_plain_sentence_is_alt_text_only_when_it_fits():
    long = "a " * 80
    assert Description.from_caption(long, REQUEST, alt_text_max_chars=125).missing == [
        "alt_text",
        "description",
        "tags",
        "text_in_image",
    ]
    assert Description.from_caption("a dog").alt_text == "a dog"
