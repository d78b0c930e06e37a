"""Health, readiness, metrics and structured logs."""

import json
import logging

import httpx

from app.core.logs import configure_logging
from tests.harness.hf_stub import Loading
from tests.support import TEST_SECRET, make_image, upload, wait_for_caption

AUTH = {"Authorization": f"Bearer {TEST_SECRET}"}


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    wanted = name + (
        "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""
    )
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_health_needs_no_auth_and_readiness_explains_itself(service, hf):
    assert httpx.get(service.url + "/healthz").json() == {"status": "ok"}

    ready = httpx.get(service.url + "/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "ready": True,
        "checks": {"supabase": "ok", "captioner": "ok"},
        "route": f"{service.settings.caption_model} → endpoint → image-to-text",
    }

    hf.refuse_connections(True)
    try:
        down = httpx.get(service.url + "/readyz")
    finally:
        hf.refuse_connections(False)
    assert down.status_code == 503
    assert "unreachable" in down.json()["checks"]["captioner"]


def test_readiness_reports_missing_migrations(service, supabase):
    from tests.support import query

    query(supabase.db_url, "drop function public.caption_jobs_stats(text)")

    response = httpx.get(service.url + "/readyz")

    assert response.status_code == 503
    assert "migrations" in response.json()["checks"]["supabase"]


def test_metrics_count_webhooks_jobs_latency_and_bytes(service, supabase, hf, pgnet):
    assert httpx.get(service.url + "/metrics").status_code == 401
    before = httpx.get(service.url + "/metrics", headers=AUTH).text
    hf.script(Loading(estimated_time=0.1))
    object_id = upload(supabase, "metered.png", make_image(size=(300, 200)))
    wait_for_caption(supabase.db_url, object_id)
    pgnet.wait_idle()
    httpx.post(service.webhook_url, json={}, headers={"Authorization": "Bearer nope"})

    after = httpx.get(service.url + "/metrics", headers=AUTH).text

    def grew(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert (
        grew("captioner_webhooks_total", outcome="queued")
        + grew("captioner_webhooks_total", outcome="duplicate")
        >= 1
    )
    assert grew("captioner_webhooks_total", outcome="refused_401") == 1
    assert grew("captioner_job_outcomes_total", outcome="deferred") == 1  # model loading
    assert grew("captioner_job_outcomes_total", outcome="done") == 1
    assert grew("captioner_caption_errors_total", kind="loading") == 1
    assert grew("captioner_caption_seconds_count") == 3  # two tries and the probe between
    # two attempts: the image was downloaded and sent twice
    assert grew("captioner_downloaded_bytes_total") == 2 * len(make_image(size=(300, 200)))
    assert grew("captioner_sent_bytes_total") == sum(call["n_bytes"] for call in hf.calls)
    assert metric(after, "captioner_jobs", state="done") == 1
    assert metric(after, "captioner_queue_depth") == 0


def test_logs_are_json_lines_with_the_object_id():
    configure_logging("INFO")
    configure_logging("INFO")
    handlers = [h for h in logging.getLogger("app").handlers if h.get_name() == "captioner-json"]
    record = logging.getLogger("app.pipeline.worker").makeRecord(
        "app.pipeline.worker",
        logging.INFO,
        __file__,
        1,
        "captioned %s",
        ("x",),
        None,
        extra={"object_id": "abc", "attempt": 2},
    )

    line = handlers[0].format(record)

    assert len(handlers) == 1  # configuring twice adds no second handler
    assert "\n" not in line
    event = json.loads(line)
    assert event["message"] == "captioned x"
    assert event["object_id"] == "abc" and event["attempt"] == 2
    assert event["level"] == "INFO" and event["logger"] == "app.pipeline.worker"


def test_start_waits_for_supabase_before_reporting_ready(supabase, hf):
    from app.main import create_app
    from tests.harness.servers import ThreadedServer
    from tests.harness.waiting import wait_until
    from tests.support import service_settings

    supabase.faults.add("rpc:caption_configure", status=503, times=3)
    app = create_app(service_settings(supabase, hf, retry_base_seconds=0.1))
    with ThreadedServer(app).start() as server:
        first = httpx.get(server.url + "/readyz")
        wait_until(
            lambda: httpx.get(server.url + "/readyz").status_code == 200,
            timeout=15,
            message="never ready after Supabase recovered",
        )

    assert first.status_code == 503
    assert first.json()["checks"]["supabase"].startswith("waiting")
    configure_calls = [
        status for route, status in supabase.calls if route == "rpc:caption_configure"
    ]
    assert configure_calls == [503, 503, 503, 204]  # void function: 204, like PostgREST
