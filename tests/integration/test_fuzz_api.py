"""Property-based fuzzing of every operation in the app's OpenAPI schema (schemathesis 4.x).

The app runs for real (lifespan, worker, Supabase and Hugging Face stand-ins) in a thread
(`service` fixture); schemathesis loads /openapi.json from it and sends schema-conforming
(positive) and schema-violating (negative) requests, with and without the right secret.
Whatever it sends, no answer is a 5xx (check `not_a_server_error`).

(`schemathesis.pytest.from_fixture` fails under pytest 9 — "'Function' object has no
attribute '_nodeid'" — so each operation's strategy is driven with hypothesis directly.)"""

from __future__ import annotations

from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.support import TEST_SECRET, query

AUTH = {"Authorization": f"Bearer {TEST_SECRET}"}

RUNS = {
    "positive-with-secret": (GenerationMode.POSITIVE, AUTH, 50),
    "negative-with-secret": (GenerationMode.NEGATIVE, AUTH, 50),
    "positive-without-secret": (GenerationMode.POSITIVE, {}, 15),
}


def fuzz_operation(
    operation, mode: GenerationMode, headers: dict[str, str], max_examples: int
) -> Counter[int]:
    statuses: Counter[int] = Counter()

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        response = case.call(headers=headers, timeout=10)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=[not_a_server_error], headers=headers)

    try:
        run()
    except Unsatisfiable:
        if mode is GenerationMode.POSITIVE:
            raise
        # nothing to violate: an operation without parameters or body (GET /healthz)
    return statuses


@pytest.mark.parametrize("run", RUNS.values(), ids=RUNS.keys())
def test_no_operation_answers_a_server_error(service, supabase, run):
    mode, headers, max_examples = run
    loaded = schemathesis.openapi.from_url(service.url + "/openapi.json", headers=AUTH)
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert any(op.path == "/webhooks/storage" for op in operations)

    seen = {}
    for operation in operations:
        seen[f"{operation.method.upper()} {operation.path}"] = fuzz_operation(
            operation, mode, headers, max_examples
        )

    fuzzed = [name for name, statuses in seen.items() if statuses]
    assert "POST /webhooks/storage" in fuzzed
    assert mode is GenerationMode.NEGATIVE or len(fuzzed) == len(seen), seen
    assert all(code < 500 for statuses in seen.values() for code in statuses), seen
    if not headers:  # nothing that needs the secret is let through without it
        webhook = seen["POST /webhooks/storage"]
        assert set(webhook) <= {401, 413, 422}, webhook
    # the fuzzer's webhooks name random objects: nothing gets queued; the service is fine
    assert query(supabase.db_url, "select * from captioner.jobs") == []
    assert httpx.get(service.url + "/readyz").status_code == 200
