"""An image's descriptions, one per language of its bucket's plan (app/core/config.py
BucketPlan): `ask_description` (the captioner's `describe`, cut at its timeout, cleaned)
once per language, each filling what its model can and naming the rest in `missing`."""

import asyncio
from typing import Any

from app.captioning import Captioner, ask_description
from app.captioning.description import DescribeRequest, Description
from app.core.config import BucketPlan, CaptionSettings
from app.core.images import PreparedImage


def requests_for(plan: BucketPlan) -> list[DescribeRequest]:
    return [
        DescribeRequest(language=language, fields=plan.fields, prompt=plan.prompt)
        for language in plan.languages
    ]


async def describe_all(
    image: PreparedImage,
    captioner: Captioner,
    settings: CaptionSettings,
    plan: BucketPlan,
    slots: asyncio.Semaphore | None = None,
) -> tuple[list[Description], int]:
    """The image described in each language of `plan`, the first first; the captioner's
    own time in ms (all languages, not waiting for a slot)."""
    descriptions = []
    elapsed_ms = 0
    for request in requests_for(plan):
        description, ms = await ask_description(image, captioner, settings, request, slots)
        descriptions.append(description)
        elapsed_ms += ms
    return descriptions, elapsed_ms


def stored_form(description: Description, plan: BucketPlan) -> dict[str, Any]:
    """What the database keeps as the model's answer: the fields, and what was asked."""
    return {
        **description.model_dump(mode="json"),
        "fields": list(plan.fields),
        "prompt": plan.prompt,
    }
