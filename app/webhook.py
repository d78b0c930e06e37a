"""POST /webhooks/storage: the Supabase Database Webhook for storage.objects.

Checks the secret, reads a capped body, validates it, records a durable job through the
queue and answers at once. Captioning happens later, in the worker."""

import hmac
import logging
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Header, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.deps import QueueDep, SettingsDep, WorkerDep

log = logging.getLogger(__name__)
router = APIRouter()


class StorageObject(BaseModel):
    """A `storage.objects` row as the webhook sends it; unknown columns are kept."""

    model_config = ConfigDict(extra="allow")

    id: UUID
    bucket_id: str
    name: str | None = None
    version: str | None = None
    owner_id: str | None = None
    metadata: dict[str, Any] | None = None


class WebhookPayload(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    type: Literal["INSERT", "UPDATE", "DELETE"]
    table: str
    schema_: str = Field(alias="schema")
    record: StorageObject | None = None
    old_record: StorageObject | None = None


class WebhookResult(BaseModel):
    status: Literal["queued", "duplicate", "ignored"]
    reason: str | None = None
    object_id: UUID | None = None


def require_webhook_secret(
    settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> None:
    """`Authorization: Bearer <secret>`, compared in constant time against every accepted secret."""
    scheme, _, token = (authorization or "").partition(" ")
    presented = token.strip().encode()
    matches = [hmac.compare_digest(presented, s.encode()) for s in settings.webhook_secret]
    if scheme.lower() != "bearer" or not any(matches):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="missing or wrong webhook secret (Authorization: Bearer <WEBHOOK_SECRET>)",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def read_payload(request: Request, settings: SettingsDep) -> WebhookPayload:
    """The body, refused as soon as it exceeds the cap, parsed as a webhook payload."""
    limit = settings.max_webhook_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body over {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body over {limit} bytes")
    try:
        return WebhookPayload.model_validate_json(bytes(body))
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=errors) from None


def triage(payload: WebhookPayload) -> str | None:
    """Why this event needs no caption, or None when it may (the database decides the rest)."""
    if (payload.schema_, payload.table) != ("storage", "objects"):
        return f"not a storage.objects event ({payload.schema_}.{payload.table})"
    if payload.type == "DELETE":
        return (
            "deletes need nothing: the caption row is removed by the database (on delete cascade)"
        )
    old, new = payload.old_record, payload.record
    if payload.type == "UPDATE" and old and new and old.version == new.version and old.metadata:
        return "same version (renamed or metadata changed): the caption still holds"
    return None


@router.post(
    "/webhooks/storage",
    response_model=WebhookResult,
    dependencies=[Depends(require_webhook_secret)],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": WebhookPayload.model_json_schema()}},
        }
    },
    responses={401: {"description": "wrong secret"}, 413: {"description": "body too large"}},
)
async def storage_webhook(
    payload: Annotated[WebhookPayload, Depends(read_payload)],
    queue: QueueDep,
    worker: WorkerDep,
) -> WebhookResult:
    if (reason := triage(payload)) is not None:
        return WebhookResult(status="ignored", reason=reason)
    if payload.record is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{payload.type} without record")
    object_id = payload.record.id
    try:
        outcome = await queue.enqueue(str(object_id))
    except Exception as exc:
        log.warning("enqueue failed for %s: %s", object_id, exc)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "job store unavailable; will be swept later"
        ) from None
    if outcome.startswith("ignored"):
        return WebhookResult(
            status="ignored", reason=outcome.partition(": ")[2], object_id=object_id
        )
    if worker is not None:
        worker.wake()
    return WebhookResult(
        status="queued" if outcome == "queued" else "duplicate", object_id=object_id
    )
