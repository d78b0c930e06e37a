"""The local Florence-2 backend, against a tiny randomly initialised Florence-2 built here from
its config (tests/tiny_blip.py): no token, no download, the tasks batched."""

import asyncio
from pathlib import Path
from typing import Any

import pytest

from app.captioning import build_captioner, describe_image
from app.captioning.description import DescribeRequest
from app.captioning.florence import (
    CAPTION,
    DETAILED,
    OCR,
    FlorenceCaptioner,
    description_from,
    tasks_for,
)
from app.core.config import Settings
from tests.tiny_blip import FLORENCE_WORDS, build_tiny_florence2
from tests.unit.test_local_captioner import IMAGES, make_settings

pytestmark = pytest.mark.usefixtures("offline")


@pytest.fixture(scope="session")
def florence_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_florence2(tmp_path_factory.mktemp("tiny-florence2"))


def settings(model: Path, **overrides: Any) -> Settings:
    return make_settings(model, describe_max_tokens=16, **overrides)


def run(captioner: Any, factory: Any) -> Any:
    async def main() -> Any:
        try:
            return await factory()
        finally:
            await captioner.aclose()

    return asyncio.run(main())


def test_a_florence_model_is_served_by_the_florence_backend_without_a_token(florence_dir):
    chosen = build_captioner(settings(florence_dir))
    assert isinstance(chosen, FlorenceCaptioner)
    assert type(build_captioner(settings(florence_dir.parent / "absent"))) is not FlorenceCaptioner


def test_it_fills_alt_text_description_and_text_in_image_not_tags(florence_dir):
    s = settings(florence_dir)
    captioner = build_captioner(s)
    data = IMAGES[0].data

    description = run(captioner, lambda: describe_image(data, captioner, s))

    vocabulary = set(FLORENCE_WORDS)
    assert "tags" in description.missing
    assert description.caption and set(description.caption.lower().split()) <= vocabulary
    for field in ("alt_text", "description", "text_in_image"):
        if field not in description.missing:
            text = getattr(description, field).lower()
            assert set(text.split()) <= vocabulary
    assert description.description or "description" in description.missing


def test_concurrent_requests_share_one_generate_per_task(florence_dir, monkeypatch):
    from app.captioning import florence

    calls: list[tuple[str, int]] = []
    real = florence.run_tasks

    def counting(loaded, items, budgets, num_beams):
        for task in dict.fromkeys(t for item in items for t in item.tasks):
            calls.append((task, sum(task in item.tasks for item in items)))
        return real(loaded, items, budgets, num_beams)

    monkeypatch.setattr(florence, "run_tasks", counting)
    s = settings(florence_dir, local_batch_size=8, local_batch_wait_ms=200)
    captioner = build_captioner(s)
    only_alt = DescribeRequest(fields=("alt_text",))

    async def many() -> list[Any]:
        await captioner.check()
        calls.clear()  # the warm-up at load
        deadline = asyncio.get_running_loop().time() + 60
        everything = [captioner.describe(i, DescribeRequest(), deadline) for i in IMAGES[:3]]
        return await asyncio.gather(*everything, captioner.describe(IMAGES[3], only_alt, deadline))

    results = run(captioner, many)

    assert len(results) == 4
    assert calls == [(CAPTION, 4), (DETAILED, 3), (OCR, 3)]
    assert results[3].missing in ([], ["alt_text"])


def test_tasks_follow_the_fields_asked():
    assert tasks_for(DescribeRequest(fields=("alt_text",))) == (CAPTION,)
    assert tasks_for(DescribeRequest(fields=("tags",))) == (CAPTION,)
    assert tasks_for(DescribeRequest()) == (CAPTION, DETAILED, OCR)


def test_florence_output_gets_the_alt_text_rules_and_english_only_is_marked():
    outputs = {
        CAPTION: "A red shop sign on a wall.",
        DETAILED: "The image shows a red sign. It reads OPEN.",
        OCR: "OPEN",
    }
    english = description_from(outputs, DescribeRequest(), 125)
    assert english.alt_text == "A red shop sign on a wall."
    assert english.text_in_image == "OPEN"
    assert english.missing == ["tags"]

    german = description_from(outputs, DescribeRequest(language="de"), 125)
    assert german.text_in_image == "OPEN" and german.caption == english.caption
    assert german.missing == ["tags", "caption", "alt_text", "description"]

    long_caption = description_from({CAPTION: "A dog " * 40}, DescribeRequest(), 125)
    assert long_caption.caption.startswith("A dog")
    assert "alt_text" in long_caption.missing
