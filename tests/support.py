"""Helpers the tests share: run the service against the stand-ins, make images, read rows."""

import io
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
from fastapi import FastAPI
from PIL import Image
from psycopg.rows import dict_row
from supabase import Client, create_client

from app.core.config import Settings
from app.main import create_app
from tests.harness.hf_stub import HuggingFaceStandIn
from tests.harness.servers import ThreadedServer
from tests.harness.storage_tus import tus_metadata
from tests.harness.supabase_stub import SupabaseStandIn
from tests.harness.waiting import wait_until

TEST_SECRET = "test-webhook-secret-0123456789"
FAST = {
    "worker_poll_interval": 0.2,
    "retry_base_seconds": 0.05,
    "retry_max_seconds": 2.0,
    "lease_seconds": 10,
    "sweep_interval": 0,
    "shutdown_grace_seconds": 3.0,
}


@dataclass
class RunningService:
    app: FastAPI
    server: ThreadedServer
    settings: Settings

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def webhook_url(self) -> str:
        return self.url + "/webhooks/storage"

    def stop(self) -> None:
        self.server.stop(timeout=10)


def service_settings(
    supabase: SupabaseStandIn,
    hf: HuggingFaceStandIn,
    cls: type[Settings] = Settings,
    **overrides: Any,
) -> Settings:
    values: dict[str, Any] = {
        "supabase_url": supabase.url,
        "supabase_secret_key": supabase.secret_key,  # the new key, through the gateway
        "webhook_secret": [TEST_SECRET],
        "hf_token": "hf_test_token",
        "caption_backend": "hf",
        "caption_model": f"{hf.url}/models/Salesforce/blip-image-captioning-base",
        "hf_endpoint": hf.url,  # the Hub and the router are the stand-in too: never the real ones
        "hf_router_url": hf.url,
        **FAST,
        **overrides,
    }
    return cls(_env_file=None, **values)  # type: ignore[call-arg]


def start_service(
    supabase: SupabaseStandIn, hf: HuggingFaceStandIn, webhook: bool = True, **overrides: Any
) -> RunningService:
    """Start the app; with `webhook`, the database trigger is told to call it."""
    app = create_app(service_settings(supabase, hf, **overrides))
    server = ThreadedServer(app)
    if webhook:
        app.state.settings = app.state.settings.model_copy(
            update={"public_webhook_url": server.url + "/webhooks/storage"}
        )
    server.start()
    wait_until(lambda: app.state.ready, timeout=10, message="service never became ready")
    return RunningService(app, server, app.state.settings)


def make_image(colour: tuple[int, int, int] = (200, 30, 30), size=(64, 48), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


def noise_image(size=(640, 480), fmt="JPEG") -> bytes:
    """An image that does not compress away (random pixels), like a real photo."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3)).save(buffer, format=fmt)
    return buffer.getvalue()


def storage_client(supabase: SupabaseStandIn, key: str | None = None) -> Client:
    return create_client(supabase.url, key or supabase.service_key)


def upload(
    supabase: SupabaseStandIn,
    path: str,
    data: bytes,
    content_type: str = "image/png",
    bucket: str = "images",
    upsert: bool = False,
) -> str:
    """Upload through the storage API (as the dashboard or an app would); returns the id."""
    client = storage_client(supabase)
    options = {"content-type": content_type, "upsert": "true" if upsert else "false"}
    client.storage.from_(bucket).upload(path, data, options)  # type: ignore[arg-type]
    return object_id(supabase, bucket, path)


def upload_raw(
    supabase: SupabaseStandIn,
    path: str,
    data: bytes,
    content_type: str = "image/png",
    bucket: str = "images",
    key: str | None = None,
) -> str:
    """Upload with a raw HTTP request (the name percent-encoded, no segment dropped), as an
    app that does not use supabase-js would; returns the id."""
    answer = httpx.post(
        f"{supabase.url}/storage/v1/object/{bucket}/{quote(path, safe='/')}",
        content=data,
        headers={
            "Authorization": f"Bearer {key or supabase.service_key}",
            "Content-Type": content_type,
        },
    )
    assert answer.status_code == 200, answer.text
    return object_id(supabase, bucket, path)


def upload_tus(
    supabase: SupabaseStandIn,
    path: str,
    data: bytes,
    content_type: str = "image/png",
    bucket: str = "images",
    chunk: int = 6 * 1024 * 1024,
    upsert: bool = False,
    key: str | None = None,
) -> str:
    """Upload resumably (TUS), as supabase-js does for large files; returns the id."""
    auth = {"Authorization": f"Bearer {key or supabase.service_key}", "Tus-Resumable": "1.0.0"}
    created = httpx.post(
        f"{supabase.url}/storage/v1/upload/resumable",
        headers={
            **auth,
            "Upload-Length": str(len(data)),
            "x-upsert": str(upsert).lower(),
            "Upload-Metadata": tus_metadata(
                bucketName=bucket, objectName=path, contentType=content_type, cacheControl=3600
            ),
        },
    )
    assert created.status_code == 201, created.text
    for offset in range(0, len(data), chunk):
        sent = httpx.patch(
            created.headers["location"],
            content=data[offset : offset + chunk],
            headers={
                **auth,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert sent.status_code == 204, sent.text
    return object_id(supabase, bucket, path)


def object_id(supabase: SupabaseStandIn, bucket: str, path: str) -> str:
    row = query_one(
        supabase.db_url,
        "select id from storage.objects where bucket_id=%s and name=%s and archived_at is null",
        bucket,
        path,
    )
    assert row, f"{bucket}/{path} not in storage.objects"
    return str(row["id"])


def query(db_url: str, sql: str, *params: Any) -> list[dict[str, Any]]:
    with psycopg.connect(db_url, row_factory=dict_row, autocommit=True) as conn:
        cursor = conn.execute(sql, params)  # type: ignore[arg-type]
        return list(cursor.fetchall()) if cursor.description else []


def query_one(db_url: str, sql: str, *params: Any) -> dict[str, Any] | None:
    rows = query(db_url, sql, *params)
    return rows[0] if rows else None


def caption_of(db_url: str, object_id: str) -> dict[str, Any] | None:
    return query_one(db_url, "select * from public.image_caption where id = %s", object_id)


def job_of(db_url: str, object_id: str) -> dict[str, Any] | None:
    return query_one(db_url, "select * from captioner.jobs where object_id = %s", object_id)


def wait_for_caption(db_url: str, object_id: str, timeout: float = 15.0) -> dict[str, Any]:
    return wait_until(
        lambda: caption_of(db_url, object_id),
        timeout=timeout,
        message=f"no caption for {object_id}; job: {job_of(db_url, object_id)}",
    )


def wait_for_job_state(
    db_url: str, object_id: str, state: str, timeout: float = 15.0
) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        job = job_of(db_url, object_id)
        return job if job and job["state"] == state else None

    return wait_until(reached, timeout=timeout, message=f"job of {object_id} never {state}")
