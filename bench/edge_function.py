"""The seed's design, faithfully: Supabase's `huggingface-image-captioning` Edge Function.

One synchronous call per webhook: sign a URL for the object, download the full-size
image, send it whole to the captioner (image_to_text), insert the caption. No queue, no
retry, no downscaling. Run as `uvicorn --factory bench.edge_function:create_app`."""

from __future__ import annotations

import os
from contextlib import asynccontextmanager

import httpx
from huggingface_hub import AsyncInferenceClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from supabase import AsyncClient, acreate_client


def create_app() -> Starlette:
    clients: dict[str, object] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        clients["supabase"] = await acreate_client(
            os.environ["SUPABASE_URL"], os.environ["SUPABASE_SERVICE_ROLE_KEY"]
        )
        clients["hf"] = AsyncInferenceClient(token=os.environ["HF_TOKEN"])
        clients["http"] = httpx.AsyncClient(timeout=30)
        yield
        await clients["http"].aclose()  # type: ignore[attr-defined]

    async def handler(request: Request) -> PlainTextResponse:
        supabase: AsyncClient = clients["supabase"]  # type: ignore[assignment]
        hf: AsyncInferenceClient = clients["hf"]  # type: ignore[assignment]
        http: httpx.AsyncClient = clients["http"]  # type: ignore[assignment]
        record = (await request.json())["record"]
        signed = await supabase.storage.from_(record["bucket_id"]).create_signed_url(
            "/".join(record["path_tokens"]), 60
        )
        image = (await http.get(signed["signedURL"])).content  # the whole original
        caption = await hf.image_to_text(image, model=os.environ["CAPTION_MODEL"])
        await (
            supabase.from_("image_caption")
            .insert({"id": record["id"], "caption": caption.generated_text})
            .execute()
        )
        return PlainTextResponse("ok")

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[Route("/", handler, methods=["POST"]), Route("/health", health)],
        lifespan=lifespan,
    )
