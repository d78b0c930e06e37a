"""The operators' gallery at /ui/gallery (behind the web page's credentials): a watched
bucket's latest captions as thumbnails with every field of their descriptions (each editable:
an edit is a person's, which re-captions keep), the caption search, job counts, failures
with a button to queue them again, skipped uploads, and re-captioning with the current model.

The page (app/api/static/gallery.html) polls `GET /ui/gallery/data`. Thumbnails are signed
URLs of storage's image transformation (`/storage/v1/render/image/sign/...`): the
browser fetches a small rendition straight from Supabase, never the image through here.
Every read goes through supabase-py with the service key: the rpc functions of
migration 000009 and the search RPC of app developers.
"""

import asyncio
import base64
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse
from postgrest.exceptions import APIError
from pydantic import BaseModel, Field
from storage3.exceptions import StorageApiError
from storage3.types import TransformOptions
from supabase import AsyncClient

from app.api.deps import QueueDep, Runtime, RuntimeDep, SupabaseDep
from app.core.fields import FIELDS, LANGUAGE_TAG
from app.pipeline.jobs import JobQueue
from app.pipeline.storage import unsignable

PAGE = Path(__file__).resolve().parent / "static" / "gallery.html"
THUMBNAIL = TransformOptions(width=240, height=240, resize="cover")
THUMBNAIL_TTL = 600  # seconds a thumbnail URL is valid; one is reused for half of that
SIGN_CONCURRENCY = 8
RECAPTION_BATCH = 10_000  # objects one click queues

router = APIRouter(prefix="/ui/gallery", include_in_schema=False)


class Thumbnails:
    """Signed thumbnail URLs, reused while they are young so the browser can cache them."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._urls: dict[tuple[str, str], tuple[str, float]] = {}
        self._limit = asyncio.Semaphore(SIGN_CONCURRENCY)

    async def urls(self, bucket: str, names: list[str]) -> list[str | None]:
        return list(await asyncio.gather(*(self.url(bucket, name) for name in names)))

    async def url(self, bucket: str, name: str) -> str | None:
        now = time.monotonic()
        cached = self._urls.get((bucket, name))
        if cached and cached[1] > now:
            return cached[0]
        async with self._limit:
            signed = await self._sign(bucket, name)
        if signed:
            if len(self._urls) > 5_000:
                self._urls = {k: v for k, v in self._urls.items() if v[1] > now}
            self._urls[(bucket, name)] = (signed, now + THUMBNAIL_TTL / 2)
        return signed

    async def _sign(self, bucket: str, name: str) -> str | None:
        if unsignable(name):  # it would sign another name, or a URL that never verifies
            return None
        # storage3 percent-decodes the path it is given: encode it (as app/pipeline/storage.py does)
        files = self._client.storage.from_(bucket)
        try:
            signed = await files.create_signed_url(
                quote(name, safe="/"), THUMBNAIL_TTL, {"transform": THUMBNAIL}
            )
        except (StorageApiError, httpx.HTTPError, ValueError):
            return None  # deleted meanwhile, or storage away: the card shows no picture
        return signed.get("signedURL") or signed.get("signedUrl")


async def thumbnails(request: Request, supabase: SupabaseDep) -> Thumbnails:
    """One signer (and its cache) per app."""
    state = request.app.state
    if getattr(state, "thumbnails", None) is None:
        state.thumbnails = Thumbnails(supabase)
    result: Thumbnails = state.thumbnails
    return result


ThumbnailsDep = Annotated[Thumbnails, Depends(thumbnails)]


def same_origin_json(request: Request) -> None:
    """Actions are JSON from this page only: a form or a fetch from another site (which
    the browser would send with the page's Basic credentials) is refused."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPException(415, "send JSON")
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise HTTPException(403, "cross-site request refused")


def watched(bucket: str | None, runtime: Runtime) -> str:
    buckets = runtime.settings.caption_buckets
    if bucket is None:
        return buckets[0]
    if bucket not in buckets:
        raise HTTPException(400, f"bucket {bucket!r} is not watched (CAPTION_BUCKETS)")
    return bucket


@router.get("")
@router.get("/")
async def page() -> FileResponse:
    return FileResponse(PAGE, media_type="text/html", headers={"cache-control": "no-cache"})


@router.get("/data")
async def data(
    runtime: RuntimeDep,
    supabase: SupabaseDep,
    queue: QueueDep,
    signer: ThumbnailsDep,
    bucket: str | None = None,
    q: Annotated[str, Query(max_length=1000)] = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 24,
) -> dict[str, Any]:
    """Everything the page shows, in one answer."""
    bucket = watched(bucket, runtime)
    try:
        query = q.replace("\x00", "").strip()
        return await overview(runtime, supabase, queue, signer, bucket, query, limit)
    except (APIError, httpx.HTTPError) as exc:
        raise HTTPException(503, f"Supabase did not answer: {type(exc).__name__}: {exc}") from None


async def overview(
    runtime: Runtime,
    client: AsyncClient,
    queue: JobQueue,
    signer: Thumbnails,
    bucket: str,
    query: str,
    limit: int,
) -> dict[str, Any]:
    stats = await queue.stats(bucket)
    counts = {row.state: row.jobs for row in stats}
    items, failed, skipped = await asyncio.gather(
        cards(client, bucket, query, limit),
        jobs_in_state(client, bucket, "failed", counts),
        jobs_in_state(client, bucket, "skipped", counts),
    )
    urls, described = await asyncio.gather(
        signer.urls(bucket, [item["name"] for item in items]),
        queue.descriptions([item["id"] for item in items]) if items else asyncio.sleep(0, []),
    )
    languages = runtime.settings.bucket_plan(bucket).languages
    order = {language: index for index, language in enumerate(languages)}
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(described, key=lambda row: order.get(row["language"], len(order))):
        by_id.setdefault(row["id"], []).append(shown_description(row))
    return {
        "bucket": bucket,
        "buckets": runtime.settings.caption_buckets,
        "query": query,
        "model": runtime.settings.bucket_plan(bucket).model or runtime.captioner.model,
        "counts": counts,
        "languages": list(languages),
        "items": [
            {**item, "thumbnail": url, "descriptions": by_id.get(item["id"], [])}
            for item, url in zip(items, urls, strict=True)
        ],
        "failures": failed,
        "skipped": skipped,
    }


def shown_description(row: dict[str, Any]) -> dict[str, Any]:
    """A description as the page shows it: the fields, what is missing, who wrote each."""
    fields = ("language", "caption", "alt_text", "description", "tags", "text_in_image")
    return {
        **{name: row[name] for name in fields},
        "missing": row["missing"],
        "updated_at": row["updated_at"],
        "person": sorted(
            name for name, source in row["sources"].items() if source.get("source") == "person"
        ),
    }


async def cards(client: AsyncClient, bucket: str, query: str, limit: int) -> list[dict[str, Any]]:
    """The newest captions, or the search's best matches, with their provenance."""
    ids = None
    if query:
        args = {"query": query, "bucket": bucket, "max_results": limit}
        ids = [hit["id"] for hit in await rows(client.rpc("search_image_captions", args))]
        if not ids:
            return []
    args = {"p_bucket": bucket, "p_limit": limit, "p_ids": ids}
    return await rows(client.rpc("caption_gallery_captions", args))


async def rows(request: Any) -> list[dict[str, Any]]:
    return list((await request.execute()).data or [])


async def jobs_in_state(
    client: AsyncClient, bucket: str, state: str, counts: dict[str, int]
) -> list[dict[str, Any]]:
    if not counts.get(state):
        return []  # none anywhere (or a state this schema does not have)
    args = {"p_bucket": bucket, "p_state": state, "p_limit": 50}
    return await rows(client.rpc("caption_gallery_jobs", args))


class Requeue(BaseModel):
    object_ids: list[str] = Field(min_length=1, max_length=500)


@router.post("/requeue", dependencies=[Depends(same_origin_json)])
async def requeue(body: Requeue, queue: QueueDep) -> dict[str, int]:
    """Queue these images again (failed ones, or any to re-caption one)."""
    return {"queued": await queue.requeue(body.object_ids)}


class Correction(BaseModel):
    object_id: uuid.UUID
    language: str = Field(pattern=LANGUAGE_TAG)
    fields: dict[str, str | list[str]] = Field(min_length=1)


@router.post("/describe", dependencies=[Depends(same_origin_json)])
async def describe(body: Correction, request: Request, queue: QueueDep) -> dict[str, Any]:
    """A person's correction of a description's fields (kept by every re-caption of these
    bytes); recorded as the page's Basic-auth user, or `gallery`."""
    unknown = set(body.fields) - set(FIELDS)
    if unknown:
        raise HTTPException(422, f"not a field: {', '.join(sorted(unknown))}")
    editor = basic_user(request) or "gallery"
    try:
        row = await queue.edit_description(str(body.object_id), body.language, body.fields, editor)
    except APIError as exc:
        raise HTTPException(422, exc.message or str(exc)) from None
    return shown_description(row)


def basic_user(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        user = base64.b64decode(header[6:]).decode().partition(":")[0]
    except (ValueError, UnicodeDecodeError):
        return None
    return f"gallery:{user}" if user else None


class Recaption(BaseModel):
    bucket: str
    prefix: str = Field(default="", max_length=1024)


@router.post("/recaption", dependencies=[Depends(same_origin_json)])
async def recaption(body: Recaption, runtime: RuntimeDep, queue: QueueDep) -> dict[str, Any]:
    """Queue the bucket's (prefix's) captions that another model wrote, or that lack a
    description in one of the bucket's languages, for this service's model; the old captions
    stay until the new ones are written."""
    bucket = watched(body.bucket, runtime)
    plan = runtime.settings.bucket_plan(bucket)
    model = plan.model or runtime.captioner.model
    since = datetime.now().astimezone()
    queued = await queue.recaption(
        bucket, body.prefix, model, RECAPTION_BATCH, since, plan.languages
    )
    return {"queued": queued, "model": model}
