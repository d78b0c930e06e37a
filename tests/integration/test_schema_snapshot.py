"""The schema the migrations make is the one in docs/schema.sql (a pg_dump of it).

A change to migrations/ changes the snapshot too, so a review sees what the database will
look like, not only the SQL that gets it there. After changing a migration:
`make schema-snapshot` (this test with UPDATE_SCHEMA_SNAPSHOT=1)."""

import difflib
import os
from pathlib import Path

from tests.harness.postgres import PostgresServer, database_url, dump_schema

SNAPSHOT = Path(__file__).resolve().parents[2] / "docs" / "schema.sql"


def test_the_migrations_make_the_schema_of_the_snapshot(
    pg_server: PostgresServer, db_template: str
):
    schema = dump_schema(database_url(pg_server.admin_url, db_template))
    if os.environ.get("UPDATE_SCHEMA_SNAPSHOT"):
        SNAPSHOT.write_text(schema)
    diff = difflib.unified_diff(
        SNAPSHOT.read_text().splitlines(), schema.splitlines(), "docs/schema.sql", "migrations"
    )

    assert schema == SNAPSHOT.read_text(), "\n".join(list(diff)[:60]) + "\n(make schema-snapshot)"
