"""Local Florence-2 (transformers 5 builds it natively: `Florence2ForConditionalGeneration`,
no remote code): one model, three tasks, no token. `<CAPTION>` is the caption and the alt
text, `<DETAILED_CAPTION>` the description, `<OCR>` the text in the image; tags it has no task
for. It writes English only: for another language the text in the image is kept and the
other fields are named missing (their English text stays, for the seed's caption column).

Loading, placement and micro-batching are local.py's; a batch runs each task once over the
images of the batch that asked for it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.captioning.description import DescribeRequest, Description, FieldName
from app.captioning.local import (
    LoadedModel,
    LocalModel,
    ModelNotAvailable,
    Placement,
    load_model,
    resolve_source,
    to_device,
)
from app.captioning.structured import checked
from app.core.config import CaptionSettings
from app.core.images import PreparedImage

if TYPE_CHECKING:
    from PIL import Image

MODEL_TYPE = "florence2"
CAPTION, DETAILED, OCR = "<CAPTION>", "<DETAILED_CAPTION>", "<OCR>"
TASK_OF: dict[FieldName, str] = {
    "caption": CAPTION,
    "alt_text": CAPTION,
    "description": DETAILED,
    "text_in_image": OCR,
}
FIELDS_OF = {CAPTION: ("caption", "alt_text"), DETAILED: ("description",), OCR: ("text_in_image",)}
ENGLISH_ONLY: tuple[FieldName, ...] = ("caption", "alt_text", "description")


@dataclass(frozen=True)
class TaskItem:
    """One image and the Florence-2 tasks asked of it."""

    image: Image.Image
    tasks: tuple[str, ...]


def is_florence(name: str) -> bool:
    """Whether the local model `name` (a directory or a cached Hub id) is a Florence-2."""
    try:
        config = Path(resolve_source(name)) / "config.json"
        return bool(json.loads(config.read_text()).get("model_type") == MODEL_TYPE)
    except (ModelNotAvailable, OSError, ValueError):
        return False


def tasks_for(request: DescribeRequest) -> tuple[str, ...]:
    """The tasks a request needs (always `<CAPTION>`: every description has a caption)."""
    wanted = [CAPTION, *(TASK_OF[f] for f in request.fields if f in TASK_OF)]
    return tuple(dict.fromkeys(wanted))


def run_tasks(
    loaded: LoadedModel, items: list[TaskItem], budgets: dict[str, int], num_beams: int
) -> list[dict[str, str]]:
    """Blocking: for each task asked in the batch, one `generate` over the images asking it;
    `budgets`: the new tokens each task may take."""
    import torch

    results: list[dict[str, str]] = [{} for _ in items]
    for task in dict.fromkeys(t for item in items for t in item.tasks):
        indices = [i for i, item in enumerate(items) if task in item.tasks]
        images = [items[i].image for i in indices]
        inputs = loaded.processor(images=images, text=[task] * len(indices), return_tensors="pt")
        tensors = {key: to_device(value, loaded) for key, value in inputs.items()}
        with torch.inference_mode():
            ids = loaded.model.generate(
                **tensors, max_new_tokens=budgets[task], num_beams=num_beams
            )
        texts = loaded.decoder.batch_decode(ids, skip_special_tokens=True)
        for index, text in zip(indices, texts, strict=True):
            results[index][task] = " ".join(text.split())
    return results


def description_from(outputs: dict[str, str], request: DescribeRequest, limit: int) -> Description:
    """The fields the tasks filled, under the rules of a model's JSON answer."""
    values: dict[str, Any] = {
        field: outputs[task]
        for task, fields in FIELDS_OF.items()
        if task in outputs
        for field in fields
    }
    english = request.language.lower().split("-")[0] == "en"
    description = checked(values, request, limit)
    if english:
        return description
    untranslated = [f for f in request.fields if f in ENGLISH_ONLY]
    missing = list(dict.fromkeys([*description.missing, *untranslated]))
    return description.model_copy(update={"missing": missing})


class FlorenceCaptioner(LocalModel[TaskItem, dict[str, str]]):
    """Florence-2 on this machine: caption, alt text, description and text in the image."""

    def __init__(self, settings: CaptionSettings) -> None:
        super().__init__(settings, settings.local_model or settings.caption_model)

    def load_blocking(self, placement: Placement) -> LoadedModel:
        return load_model(self.model, placement)

    def run_blocking(self, loaded: LoadedModel, items: list[TaskItem]) -> list[dict[str, str]]:
        s = self._settings
        budgets = {CAPTION: s.max_new_tokens, DETAILED: s.describe_max_tokens}
        budgets[OCR] = s.describe_max_tokens
        return run_tasks(loaded, items, budgets, s.num_beams)

    def sample(self) -> TaskItem:
        from PIL import Image

        return TaskItem(Image.new("RGB", (64, 64), (90, 140, 200)), (CAPTION,))

    async def caption(self, image: PreparedImage) -> str:
        outputs = await self.run(TaskItem(image.pil, (CAPTION,)))
        return outputs[CAPTION]

    async def describe(
        self, image: PreparedImage, request: DescribeRequest, deadline: float
    ) -> Description:
        """The fields' tasks in one request, which has the description's whole time."""
        async with asyncio.timeout_at(deadline):
            outputs = await self.run(TaskItem(image.pil, tasks_for(request)))
        return description_from(outputs, request, self._settings.alt_text_max_chars)
