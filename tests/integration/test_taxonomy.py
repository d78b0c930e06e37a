"""The failure taxonomy (app/core/errors.py, README "When captioning fails"), one test per row:
what the job, its attempts, /readyz and the metrics show. Also the Hub-id path end to end."""

import json
import logging

import httpx
import pytest

from tests.harness.hf_stub import Loading, ServerError
from tests.harness.supabase_stub import create_bucket
from tests.harness.waiting import wait_until
from tests.integration.test_ops import metric
from tests.support import (
    TEST_SECRET,
    job_of,
    make_image,
    upload,
    wait_for_caption,
    wait_for_job_state,
)

AUTH = {"Authorization": f"Bearer {TEST_SECRET}"}
BLIP = "Salesforce/blip-image-captioning-base"
VLM = "Qwen/Qwen2.5-VL-7B-Instruct"


class Metrics:
    """Differences in /metrics since the snapshot."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.before = self.text()

    def text(self) -> str:
        return httpx.get(self.url + "/metrics", headers=AUTH).text

    def grew(self, name: str, **labels: str) -> float:
        return metric(self.text(), name, **labels) - metric(self.before, name, **labels)

    def now(self, name: str, **labels: str) -> float:
        return metric(self.text(), name, **labels)


def readyz(service) -> httpx.Response:
    return httpx.get(service.url + "/readyz")


def test_the_images_fault_fails_the_job_now(service, supabase):
    metrics = Metrics(service.url)
    object_id = upload(supabase, "broken.png", b"not an image at all")

    job = wait_for_job_state(supabase.db_url, object_id, "failed")

    assert job["attempts"] == 1
    assert "not a supported raster image" in job["last_error"]
    assert readyz(service).status_code == 200
    assert metrics.grew("captioner_job_outcomes_total", outcome="failed") == 1


def test_a_transient_failure_is_retried_counting_the_attempt(service, supabase, hf):
    metrics = Metrics(service.url)
    hf.script(ServerError(500))
    object_id = upload(supabase, "flaky.png", make_image())

    wait_for_caption(supabase.db_url, object_id)

    assert job_of(supabase.db_url, object_id)["attempts"] == 2
    assert readyz(service).status_code == 200
    assert metrics.grew("captioner_job_outcomes_total", outcome="retried") == 1


def test_the_captioner_away_pauses_and_refunds_the_attempt(service, supabase, hf):
    metrics = Metrics(service.url)
    hf.script(Loading(estimated_time=0.1))
    object_id = upload(supabase, "loading.png", make_image())

    wait_for_caption(supabase.db_url, object_id)

    assert job_of(supabase.db_url, object_id)["attempts"] == 1  # the loading one was refunded
    assert readyz(service).status_code == 200
    assert metrics.grew("captioner_worker_pauses_total", failure="away") == 1
    assert metrics.grew("captioner_job_outcomes_total", outcome="deferred") == 1


def test_a_configuration_failure_pauses_until_a_recheck_passes(service, supabase, hf, caplog):
    caplog.set_level(logging.INFO, logger="app")
    metrics = Metrics(service.url)
    hf.credits = False
    ids = [upload(supabase, f"unpaid-{n}.png", make_image()) for n in range(3)]

    def paused() -> httpx.Response | None:
        response = readyz(service)
        return response if response.status_code == 503 else None

    not_ready = wait_until(paused, timeout=10, message="/readyz never said paused")
    reason = not_ready.json()["checks"]["captioner"]
    assert reason.startswith("paused: no credits left") and "(change HF_TOKEN)" in reason
    assert metrics.now("captioner_worker_paused", failure="configuration") == 1
    jobs = [job_of(supabase.db_url, object_id) for object_id in ids]
    assert all(job["state"] == "pending" and job["attempts"] == 0 for job in jobs if job)

    hf.credits = True  # the operator adds credits: the re-check passes, work resumes
    for object_id in ids:
        wait_for_caption(supabase.db_url, object_id)
    assert all(job_of(supabase.db_url, object_id)["attempts"] == 1 for object_id in ids)
    assert readyz(service).status_code == 200
    assert metrics.now("captioner_worker_paused", failure="configuration") == 0
    assert metrics.grew("captioner_worker_pauses_total", failure="configuration") == 1
    pause_lines = [r for r in caplog.records if r.getMessage().startswith("paused:")]
    assert len(pause_lines) == 1  # one line per pause, not one per job
    assert any(r.getMessage().startswith("resumed") for r in caplog.records)


def test_an_unexpected_error_counts_and_ends_failed_with_its_text(service_factory, supabase, pgnet):
    create_bucket(supabase.db_url, "images")
    service = service_factory(max_attempts=2)
    metrics = Metrics(service.url)

    async def boom(image: object) -> str:
        raise RuntimeError("a bug nobody foresaw")

    service.app.state.runtime.captioner.caption = boom
    object_id = upload(supabase, "bug.png", make_image())

    job = wait_for_job_state(supabase.db_url, object_id, "failed")

    assert job["attempts"] == 2
    expected = "gave up after 2 attempts: unexpected RuntimeError: a bug nobody foresaw"
    assert job["last_error"] == expected
    assert readyz(service).status_code == 200
    assert metrics.grew("captioner_job_outcomes_total", outcome="failed") == 1
    assert metrics.grew("captioner_job_outcomes_total", outcome="retried") == 1


# The Hub-id path, as users configure it -------------------------------------------------
@pytest.mark.parametrize(
    ("model", "providers", "path"),
    [
        (BLIP, {"hf-inference": "image-to-text"}, f"/hf-inference/models/{BLIP}"),
        (VLM, {"together": "conversational"}, "/v1/chat/completions"),
    ],
    ids=["image-to-text", "chat"],
)
def test_upload_to_caption_through_the_hub_and_the_router(
    service_factory, supabase, pgnet, hf, model, providers, path
):
    create_bucket(supabase.db_url, "images")
    hf.add_model(model, providers)
    service = service_factory(caption_model=model, caption_backend="auto")

    object_id = upload(supabase, "hub.png", make_image((30, 60, 220)))
    row = wait_for_caption(supabase.db_url, object_id)

    assert row["model"] == model
    assert "blue" in row["caption"]
    assert hf.hub_calls and hf.hub_calls[0]["path"] == f"/api/models/{model}"
    assert hf.calls[0]["path"] == path
    ready = readyz(service).json()
    assert ready["ready"] is True
    assert ready["route"].startswith(f"{model} → ")


def test_a_model_that_loses_its_provider_pauses_instead_of_spinning(
    service_factory, supabase, pgnet, hf
):
    """The measured bug: an empty provider mapping made every job 'unreachable', forever."""
    create_bucket(supabase.db_url, "images")
    hf.add_model(BLIP, {"hf-inference": "image-to-text"})
    service = service_factory(caption_model=BLIP, caption_backend="auto")
    hf.hub[BLIP].providers.clear()
    object_id = upload(supabase, "orphan.png", make_image())

    wait_until(lambda: readyz(service).status_code == 503, timeout=10, message="never paused")

    reason = readyz(service).json()["checks"]["captioner"]
    assert "CAPTION_MODEL" in reason
    job = job_of(supabase.db_url, object_id)
    assert job["state"] == "pending" and job["attempts"] == 0
    hf.hub[BLIP].providers["hf-inference"] = "image-to-text"  # served again
    wait_for_caption(supabase.db_url, object_id)
    assert json.loads(httpx.get(service.url + "/readyz").text)["ready"] is True


def test_a_failure_is_counted_only_when_the_job_was_still_held(supabase, hf, caplog):
    """A job that ended done meanwhile (lease lost) is not counted or logged as failed."""
    import asyncio

    from prometheus_client import REGISTRY

    from app.main import connect_supabase
    from app.pipeline.jobs import JobQueue
    from app.pipeline.settle import Settler
    from tests.support import service_settings

    create_bucket(supabase.db_url, "images")
    settings = service_settings(supabase, hf)
    upload(supabase, "late.png", make_image())

    def outcomes(outcome: str) -> float:
        value = REGISTRY.get_sample_value("captioner_job_outcomes_total", {"outcome": outcome})
        return value or 0.0

    async def scenario() -> None:
        async with httpx.AsyncClient() as http:
            queue = JobQueue(await connect_supabase(settings, http), "test-worker")
            await queue.configure(settings)
            await queue.sweep(10)
            [job] = await queue.claim(1, 30, 5)
            assert await queue.complete(job, "captioned by someone else", "m")
            settler = Settler(queue, None, settings, "m")  # type: ignore[arg-type]
            await settler.fail(job, "too late")

    caplog.set_level(logging.INFO, logger="app")
    failed, discarded = outcomes("failed"), outcomes("discarded")
    asyncio.run(scenario())

    assert outcomes("failed") == failed
    assert outcomes("discarded") == discarded + 1
    assert "discarded: lease lost" in caplog.text


def test_a_hub_unreachable_at_start_is_resolved_later(service_factory, supabase, pgnet, hf):
    """Start-up only logs an unreachable Hub; /readyz says so and resolves the route once
    the Hub answers."""
    create_bucket(supabase.db_url, "images")
    hf.add_model(BLIP, {"hf-inference": "image-to-text"})
    hf.refuse_connections(True)
    try:
        service = service_factory(caption_model=BLIP, caption_backend="auto")
        not_ready = readyz(service)
    finally:
        hf.refuse_connections(False)

    assert not_ready.status_code == 503
    assert "caption route not resolved" in not_ready.json()["checks"]["captioner"]
    ready = readyz(service).json()
    assert ready["ready"] is True and ready["route"] == f"{BLIP} → hf-inference → image-to-text"
