"""The `chat` backend against an OpenAI-compatible server (vLLM, Text Generation Inference):
how the captioner itself scales out for a heavy backlog (README, "Sizing"). The server is
tests/harness/openai_server.py; the service reaches it through huggingface_hub's
AsyncInferenceClient with the server's URL, as users configure it."""

from __future__ import annotations

import pytest

from tests.harness.openai_server import OpenAICompatibleServer
from tests.harness.supabase_stub import create_bucket
from tests.harness.waiting import wait_until
from tests.support import make_image, query, upload, wait_for_caption

SERVED = "Qwen/Qwen2.5-VL-7B-Instruct"
KEY = "vllm-api-key-0123"


@pytest.fixture
def vllm():
    with OpenAICompatibleServer(SERVED, api_key=KEY) as server:
        yield server


def chat_settings(server: OpenAICompatibleServer, path: str = "/v1") -> dict[str, object]:
    return {
        "caption_backend": "chat",
        "caption_model": server.url + path,
        "served_model_name": SERVED,
        "hf_token": KEY,
    }


@pytest.mark.parametrize("path", ["/v1", ""])
def test_uploads_are_captioned_by_an_openai_compatible_server(
    service_factory, supabase, vllm, path
):
    create_bucket(supabase.db_url, "images")
    service_factory(**chat_settings(vllm, path))

    object_id = upload(supabase, "cat.png", make_image((30, 60, 220)))

    row = wait_for_caption(supabase.db_url, object_id)
    assert row["caption"] == "a 64x48 picture, mostly blue"
    assert [r["model"] for r in vllm.requests] == [SERVED]  # the name the server serves
    parts = vllm.requests[0]["body"]["messages"][0]["content"]
    assert parts[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_replicas_share_the_backlog_on_one_server(service_factory, supabase, vllm):
    """Two replicas, one inference server: every image captioned once, the server serving
    both replicas' requests at once (what an autoscaled server is sized for)."""
    create_bucket(supabase.db_url, "images")
    vllm.latency = 0.5
    ids = [
        upload(supabase, f"b/{n}.png", make_image((30, 160, 60), size=(40 + n, 30)))
        for n in range(12)
    ]  # a backlog, queued by the trigger

    for _ in range(2):
        service_factory(worker_concurrency=3, **chat_settings(vllm))

    wait_until(
        lambda: len(query(supabase.db_url, "select id from image_caption")) == 12,
        timeout=30,
        message="backlog not captioned",
    )
    assert len(vllm.requests) == 12
    assert vllm.max_in_flight > 3  # more than one replica's concurrency at once
    workers = query(
        supabase.db_url,
        "select distinct worker from captioner.jobs where object_id = any(%s::uuid[])",
        ids,
    )
    assert len(workers) == 2
