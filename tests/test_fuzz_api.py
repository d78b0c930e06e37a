"""Property-based fuzzing of every operation in the app's OpenAPI schema (schemathesis 4.x).

The app runs for real (lifespan, worker, Supabase and Hugging Face stand-ins) in a thread;
schemathesis loads /openapi.json from it and sends positive and negative examples, with
and without the right credentials. Whatever it sends, the answer is never a 5xx."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.support import TEST_SECRET, query

AUTH = {"Authorization": f"Bearer {TEST_SECRET}"}
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture
def api_schema(service):
    """The live service's schema (`service`: images bucket, pg_net delivery, running app)."""
    schema = schemathesis.openapi.from_url(service.url + "/openapi.json")
    assert "/webhooks/storage" in schema.raw_schema["paths"]
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@FUZZ
def test_no_server_error_with_the_secret(case):
    case.call_and_validate(headers=AUTH, checks=[not_a_server_error])


@schema.parametrize()
@settings(FUZZ, max_examples=20)
def test_no_server_error_without_credentials(case):
    case.call_and_validate(checks=[not_a_server_error])


def test_webhook_fuzz_queues_nothing_and_leaves_the_service_ready(service, supabase):
    """Fuzzed webhooks name random objects: never queued, never a 5xx, service still ready."""
    loaded = schemathesis.openapi.from_url(service.url + "/openapi.json")
    operations = [result.ok() for result in loaded.get_all_operations()]
    webhook = next(op for op in operations if op.path == "/webhooks/storage")
    statuses: list[int] = []

    @FUZZ
    @given(case=webhook.as_strategy())
    def fuzz(case):
        response = case.call(headers=AUTH)
        statuses.append(response.status_code)
        assert response.status_code < 500, response.text

    fuzz()
    assert statuses and max(statuses) < 500
    assert query(supabase.db_url, "select * from captioner.jobs") == []
    assert httpx.get(service.url + "/readyz").status_code == 200
