"""pytest plugin with the harness fixtures (registered from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .hf_stub import HuggingFaceStandIn
from .pgnet import WebhookDelivery
from .postgres import PostgresServer, build_template, create_database, drop_database
from .supabase_stub import SupabaseStandIn


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session ($TEST_DATABASE_URL or throwaway)."""
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def db_template(pg_server: PostgresServer) -> str:
    """Template database with supabase.sql and migrations/*.sql applied."""
    return build_template(pg_server.admin_url)


@pytest.fixture
def db_url(pg_server: PostgresServer, db_template: str) -> Iterator[str]:
    """URL (superuser) of a fresh database cloned from the template."""
    url = create_database(pg_server.admin_url, db_template)
    try:
        yield url
    finally:
        drop_database(pg_server.admin_url, url)


@pytest.fixture
def supabase(db_url: str, tmp_path) -> Iterator[SupabaseStandIn]:
    """A started Supabase stand-in (.url, .secret_key, .publishable_key, the legacy
    .service_key and .anon_key, .gateway, .faults, .db_url)."""
    with SupabaseStandIn(db_url, tmp_path / "storage") as standin:
        yield standin


@pytest.fixture
def pgnet(db_url: str) -> Iterator[WebhookDelivery]:
    """pg_net's worker stand-in delivering queued webhooks from the test database."""
    with WebhookDelivery(db_url, seed=1234) as worker:
        yield worker


@pytest.fixture
def hf() -> Iterator[HuggingFaceStandIn]:
    """A started Hugging Face inference stand-in (.url)."""
    with HuggingFaceStandIn() as standin:
        yield standin
