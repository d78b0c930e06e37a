"""GET and PATCH /v1/captions/{object_id}: an image's descriptions, and a person's correction
through the API key (the correction then wins over every re-caption of the same bytes).

Signed-in users of an app correct descriptions through PostgREST instead, as themselves:
`public.edit_image_description` (migrations/20261126041333_descriptions.sql), where
storage's RLS decides what each may edit.
"""

import uuid
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, HTTPException, Path, status
from postgrest.exceptions import APIError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.api.auth import require_api_key
from app.api.deps import QueueDep, SettingsDep
from app.core.fields import LANGUAGE_TAG

router = APIRouter(tags=["captions"], dependencies=[Depends(require_api_key)])
ObjectId = Annotated[uuid.UUID, Path(description="The storage object's id (storage.objects.id).")]
EDITABLE = ("caption", "alt_text", "description", "tags", "text_in_image")


class DescriptionEdit(BaseModel):
    """The fields to correct; those left out stay as they are."""

    model_config = ConfigDict(extra="forbid")

    language: str | None = Field(
        default=None,
        pattern=LANGUAGE_TAG,
        description="BCP 47 tag; default: the first of CAPTION_LANGUAGES.",
    )
    caption: str | None = Field(default=None, max_length=1000)
    alt_text: str | None = Field(default=None, max_length=1000)
    description: str | None = Field(default=None, max_length=10_000)
    tags: list[Annotated[str, Field(max_length=100)]] | None = Field(default=None, max_length=50)
    text_in_image: str | None = Field(default=None, max_length=10_000)
    edited_by: str = Field(
        default="api",
        min_length=1,
        max_length=200,
        description="Who corrected it, as your app names them (recorded with each field).",
    )

    @model_validator(mode="after")
    def _some_field(self) -> "DescriptionEdit":
        if not self.fields():
            raise ValueError(f"name at least one field to correct: {', '.join(EDITABLE)}")
        return self

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in EDITABLE if getattr(self, name) is not None}


class ImageDescriptions(BaseModel):
    id: str
    descriptions: list[dict[str, Any]] = Field(
        description="One per language: the fields, `missing` (what the model could not fill) "
        "and `sources` (per field: model or person, by whom, when)."
    )
    history: list[dict[str, Any]] = Field(
        description="A person's text that a new upload (other bytes) replaced, newest first."
    )


def public_row(row: dict[str, Any]) -> dict[str, Any]:
    hidden = ("search_vector", "search_language", "machine")
    return {key: value for key, value in row.items() if key not in hidden}


def supabase_failure(exc: APIError | httpx.HTTPError) -> HTTPException:
    if isinstance(exc, APIError) and exc.code == "PT404":
        return HTTPException(status.HTTP_404_NOT_FOUND, "no such object")
    if isinstance(exc, APIError) and exc.code in ("22023", "22001"):
        return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.message or str(exc))
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE, f"Supabase did not answer: {type(exc).__name__}"
    )


@router.get("/v1/captions/{object_id}", response_model=ImageDescriptions)
async def read_descriptions(object_id: ObjectId, queue: QueueDep) -> ImageDescriptions:
    """An image's descriptions (every language) and the history of its corrections."""
    try:
        rows = await queue.descriptions([str(object_id)])
        history = await queue.description_history(str(object_id))
    except (APIError, httpx.HTTPError) as exc:
        raise supabase_failure(exc) from None
    if not rows and not history:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no description of this object (yet)")
    return ImageDescriptions(
        id=str(object_id), descriptions=[public_row(row) for row in rows], history=history
    )


@router.patch(
    "/v1/captions/{object_id}",
    responses={404: {"description": "No such object."}, 422: {"description": "Invalid edit."}},
)
async def edit_description(
    object_id: ObjectId, edit: DescriptionEdit, queue: QueueDep, settings: SettingsDep
) -> dict[str, Any]:
    """Correct fields of an image's description: each becomes the person's (`sources`), and
    no re-caption overwrites it while the image's bytes stay the same.

    Example: `curl -X PATCH -H "Authorization: Bearer $API_KEY" -H 'Content-Type:
    application/json' -d '{"alt_text": "Ada at the lathe"}' <host>/v1/captions/<id>`
    """
    language = edit.language or settings.caption_languages[0]
    try:
        row = await queue.edit_description(str(object_id), language, edit.fields(), edit.edited_by)
    except (APIError, httpx.HTTPError) as exc:
        raise supabase_failure(exc) from None
    return public_row(row)
