"""POST /v1/captions: caption an uploaded image directly (same limits as the worker)."""

import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    HTTPException,
    Request,
    Response,
    UploadFile,
    status,
)
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.types import Message, Receive

from app.api.auth import require_api_key
from app.api.deps import CaptionerDep, SettingsDep
from app.captioning import describe_image
from app.captioning.description import LANGUAGE_TAG, DescribeRequest, Description, FieldName
from app.core.bounded import read_capped, too_large
from app.core.config import CaptionSettings
from app.core.errors import CaptionError, Failure, RetryableError

CHUNK_BYTES = 64 * 1024
FORM_OVERHEAD_BYTES = 64 * 1024  # multipart boundaries and part headers around the image


class CaptionResult(Description):
    """The image's description (README "What you get for each image"), its model and time."""

    caption: str = Field(examples=["a dog running on the beach"])
    alt_text: str = Field(
        "",
        description="For screen readers: one sentence, at most ALT_TEXT_MAX_CHARS characters.",
        examples=["Brown dog running along a sandy beach"],
    )
    missing: list[FieldName] = Field(
        default_factory=list, description="The fields this model could not fill."
    )
    model: str = Field(description="The model that wrote the caption.")
    elapsed_ms: int = Field(description="Time spent decoding and captioning, in milliseconds.")


class ErrorDetail(BaseModel):
    detail: str | list[dict[str, Any]] = Field(description="Why the request failed.")


def too_large_error(limit: int) -> HTTPException:
    reason = too_large(f"more than {limit} bytes", limit).reason
    return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, reason)


class CappedUploadRoute(APIRoute):
    """Stops reading a request body once it is larger than any allowed upload could be."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def capped_handler(request: Request) -> Response:
            settings: CaptionSettings = request.app.state.settings
            limit = settings.max_image_bytes + FORM_OVERHEAD_BYTES
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise too_large_error(settings.max_image_bytes)
            receive = _capped_receive(request.receive, limit, settings.max_image_bytes)
            return await handler(Request(request.scope, receive))

        return capped_handler


def _capped_receive(receive: Receive, limit: int, image_limit: int) -> Receive:
    received = 0

    async def capped() -> Message:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise too_large_error(image_limit)
        return message

    return capped


router = APIRouter(tags=["captions"], route_class=CappedUploadRoute)


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    """The uploaded bytes, read in chunks; 413 as soon as they exceed `limit`."""

    async def chunks() -> AsyncIterator[bytes]:
        while chunk := await upload.read(CHUNK_BYTES):
            yield chunk

    return await read_capped(chunks(), limit, lambda _: too_large_error(limit))


@router.post(
    "/v1/captions",
    response_model=CaptionResult,
    dependencies=[Depends(require_api_key)],
    summary="Caption an uploaded image",
    openapi_extra={
        "requestBody": {
            "content": {"multipart/form-data": {"encoding": {"image": {"contentType": "image/*"}}}}
        }
    },
    responses={
        401: {"model": ErrorDetail, "description": "Missing or wrong API key."},
        413: {"model": ErrorDetail, "description": "The image is larger than MAX_IMAGE_BYTES."},
        422: {
            "model": ErrorDetail,
            "description": "Not a decodable raster image within the limits, or no `image` field.",
        },
        503: {
            "model": ErrorDetail,
            "description": "The captioner is unavailable (loading, rate limited, down) or "
            "misconfigured (the reason names the setting to change).",
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before trying again, when known.",
                    "schema": {"type": "integer"},
                }
            },
        },
    },
)
async def create_caption(
    image: Annotated[UploadFile, File(description="The image: JPEG, PNG, GIF, WebP, TIFF or BMP.")],
    settings: SettingsDep,
    captioner: CaptionerDep,
    language: Annotated[
        str,
        Form(
            pattern=LANGUAGE_TAG,
            max_length=35,
            description="The reader's language, a BCP 47 tag (de, pt-BR).",
        ),
    ] = "en",
) -> CaptionResult:
    """Describe one image with the service's model, under the same limits as the worker: the
    caption, alt text, description, tags and the text in the image (`missing` names the fields
    the model could not fill).

    Example: `curl -H "Authorization: Bearer $API_KEY" -F image=@dog.jpg -F language=de
    <host>/v1/captions`
    """
    started = time.perf_counter()
    data = await read_upload(image, settings.max_image_bytes)
    try:
        description = await describe_image(
            data, captioner, settings, DescribeRequest(language=language)
        )
    except CaptionError as exc:
        if exc.failure == Failure.IMAGE:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.reason) from None
        headers = {}
        if isinstance(exc, RetryableError) and exc.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, exc.reason, headers=headers or None
        ) from None
    elapsed_ms = round((time.perf_counter() - started) * 1000)
    return CaptionResult(**description.model_dump(), model=captioner.model, elapsed_ms=elapsed_ms)
