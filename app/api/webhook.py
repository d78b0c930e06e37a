"""POST /webhooks/storage: the Supabase Database Webhook for storage.objects.

Checks the secret, reads a capped body, validates it, records a durable job through the
queue and answers at once. Captioning happens later, in the worker."""

import logging
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import ClientDisconnect

from app.api.auth import require_webhook_secret
from app.api.deps import RuntimeDep
from app.api.webhook_signature import InvalidSignature
from app.core import metrics
from app.core.bounded import read_capped

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


def refuse(code: int, detail: Any, headers: dict[str, str] | None = None) -> HTTPException:
    """An error answer, counted in the webhook metrics by its status code."""
    metrics.WEBHOOKS.labels(f"refused_{code}").inc()
    return HTTPException(code, detail=detail, headers=headers)


def answer(result: WebhookResult) -> WebhookResult:
    metrics.WEBHOOKS.labels(result.status).inc()
    return result


def inline_defs(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its `$defs` inlined: inside openapi.json, a local
    "#/$defs/..." $ref would point at the document's root, where there are none."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    return dict(inline(schema))


async def read_payload(request: Request, runtime: RuntimeDep) -> WebhookPayload:
    """The body, refused as soon as it exceeds the cap, verified if signing is on, parsed."""
    body = await _read_capped(request, runtime.settings.max_webhook_body_bytes)
    if runtime.signatures is not None:
        try:
            runtime.signatures.verify(body, request.headers)
        except InvalidSignature as exc:
            raise refuse(status.HTTP_401_UNAUTHORIZED, f"webhook signature: {exc}") from None
    try:
        return WebhookPayload.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise refuse(status.HTTP_422_UNPROCESSABLE_CONTENT, errors) from None


async def _read_capped(request: Request, limit: int) -> bytes:
    def too_large(_: str) -> HTTPException:
        return refuse(status.HTTP_413_CONTENT_TOO_LARGE, f"body over {limit} bytes")

    try:
        return await read_capped(
            request.stream(), limit, too_large, request.headers.get("content-length")
        )
    except ClientDisconnect:  # the sender hung up mid-body: nobody is left to answer
        raise refuse(status.HTTP_400_BAD_REQUEST, "client disconnected mid-body") from None


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
        return "same version (metadata changed): the caption still holds"
    return None


@router.post(
    "/webhooks/storage",
    response_model=WebhookResult,
    dependencies=[Depends(require_webhook_secret)],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_defs(WebhookPayload)}},
        }
    },
    responses={401: {"description": "wrong secret"}, 413: {"description": "body too large"}},
)
async def storage_webhook(
    payload: Annotated[WebhookPayload, Depends(read_payload)],
    runtime: RuntimeDep,
) -> WebhookResult:
    if (reason := triage(payload)) is not None:
        return answer(WebhookResult(status="ignored", reason=reason))
    if payload.record is None:
        raise refuse(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{payload.type} without record")
    object_id = payload.record.id
    assert runtime.enqueue is not None  # this route exists only with the pipeline connected
    try:
        outcome = await runtime.enqueue.submit(str(object_id))
    except Exception as exc:
        log.warning("enqueue failed for %s: %s", object_id, exc)
        raise refuse(
            status.HTTP_503_SERVICE_UNAVAILABLE, "job store unavailable; will be swept later"
        ) from None
    if outcome.startswith("ignored"):
        reason = outcome.partition(": ")[2]
        return answer(WebhookResult(status="ignored", reason=reason, object_id=object_id))
    if runtime.worker is not None:
        runtime.worker.wake()
    return answer(
        WebhookResult(status="queued" if outcome == "queued" else "duplicate", object_id=object_id)
    )
