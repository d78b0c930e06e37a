"""The rows storage-api writes in ``storage.objects``, by the bucket's versioning status, as
storage-api v1.77.0 does (S: its source; tests read in src/test/object-versioning*.test.ts):

- A new key: one INSERT; ``is_versioned`` is true in an ENABLED bucket only.
- An overwrite (upsert): DISABLED, and SUSPENDED when the current row is the null version,
  UPDATE that row in place (same id, new version). ENABLED (and SUSPENDED over a versioned
  row) UPDATE the current row's ``archived_at`` (it becomes history), then INSERT a new
  current row with its own id ("ENABLED: each version gets its own row id").
- A delete without a versionId: DISABLED deletes the row; ENABLED archives the current row
  and INSERTs a current delete marker (``is_delete_marker``, no metadata, a new id and
  version); SUSPENDED turns the null-version row into the marker.
- An upload onto a delete marker needs no upsert: the marker is archived (or overwritten).

The current row of a key is the one with ``archived_at`` null (unique index
``idx_objects_current_version``); a delete marker is current but is not an object: reads answer
``NoSuchKey``. Every function runs on a connection in a transaction as
``supabase_storage_admin``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from .stub_common import storage_error

ROW = (
    "id::text, bucket_id, name, owner_id, version, metadata, user_metadata, is_delete_marker,"
    " is_versioned, created_at, updated_at, last_accessed_at"
)


@dataclass
class Row:
    id: str
    bucket_id: str
    name: str
    owner_id: str | None
    version: str | None
    metadata: dict[str, Any] | None
    user_metadata: Any
    is_delete_marker: bool
    is_versioned: bool
    created_at: Any
    updated_at: Any
    last_accessed_at: Any

    def answer(self) -> dict[str, Any]:
        """The row as storage-api's JSON answers carry it."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for key in ("created_at", "updated_at", "last_accessed_at"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


def key_exists(name: str) -> Exception:
    """codes.ts ERRORS.KeyAlreadyExists: an upload or copy onto an existing key."""
    return storage_error("KeyAlreadyExists", "The resource already exists", 409, "Duplicate")


def resource_exists() -> Exception:
    """codes.ts ERRORS.ResourceAlreadyExists: a move onto an existing key (measured)."""
    return storage_error("ResourceAlreadyExists", "The resource already exists", 409, "Duplicate")


async def versioning(conn: psycopg.AsyncConnection[Any], bucket: str) -> str:
    row = await (
        await conn.execute("select versioning_status from storage.buckets where id = %s", (bucket,))
    ).fetchone()
    if row is None:
        raise storage_error("NoSuchBucket", "Bucket not found", 404, "Bucket not found")
    return str(row[0])


async def current(
    conn: psycopg.AsyncConnection[Any], bucket: str, name: str, lock: bool = False
) -> Row | None:
    """The key's current row (a delete marker included)."""
    query = (
        f"select {ROW} from storage.objects"
        " where bucket_id = %s and name = %s and archived_at is null"
    )
    row = await (
        await conn.execute(query + (" for update" if lock else ""), (bucket, name))
    ).fetchone()
    return Row(*row) if row else None


async def archive(conn: psycopg.AsyncConnection[Any], object_id: str) -> None:
    """The row stops being current: it is kept as the key's history."""
    await conn.execute("update storage.objects set archived_at = now() where id = %s", (object_id,))


async def allow_delete(conn: psycopg.AsyncConnection[Any]) -> None:
    """storage-api's own deletes pass storage.protect_delete()."""
    await conn.execute("select set_config('storage.allow_delete_query', 'true', true)")


async def write_version(
    conn: psycopg.AsyncConnection[Any],
    bucket: str,
    name: str,
    owner: str | None,
    version: str,
    metadata: dict[str, Any] | None,
    user_metadata: Any,
    upsert: bool,
) -> str:
    """An upload's row (storage-api's upsertObject); returns the current row's id."""
    status = await versioning(conn, bucket)
    now = await current(conn, bucket, name, lock=True)
    if now is not None and not now.is_delete_marker and not upsert:
        raise key_exists(name)
    if now is not None and (
        status == "DISABLED" or (status == "SUSPENDED" and not now.is_versioned)
    ):
        await conn.execute(
            "update storage.objects set version = %s, metadata = %s, user_metadata = %s,"
            " owner_id = %s, is_delete_marker = false where id = %s",
            (version, _json(metadata), _json(user_metadata), owner, now.id),
        )
        return now.id
    if now is not None:
        await archive(conn, now.id)
    if status == "SUSPENDED":  # the new null version replaces an archived one
        await allow_delete(conn)
        await conn.execute(
            "delete from storage.objects where bucket_id = %s and name = %s and not is_versioned",
            (bucket, name),
        )
    object_id = str(uuid.uuid4())
    await conn.execute(
        "insert into storage.objects (id, bucket_id, name, owner_id, version, metadata,"
        " user_metadata, is_versioned) values (%s, %s, %s, %s, %s, %s, %s, %s)",
        (
            object_id,
            bucket,
            name,
            owner,
            version,
            _json(metadata),
            _json(user_metadata),
            status == "ENABLED",
        ),
    )
    return object_id


async def delete_current(
    conn: psycopg.AsyncConnection[Any], bucket: str, name: str, status: str
) -> tuple[Row | None, bool]:
    """A delete without a versionId (storage-api's deleteObject), run as the caller: the
    key's row that was current (None: nothing the caller may delete), and whether it is
    gone (an unversioned bucket) or only hidden by a delete marker."""
    now = await current(conn, bucket, name, lock=True)
    if now is None or now.is_delete_marker:
        return None, False
    if status == "DISABLED":
        done = await conn.execute("delete from storage.objects where id = %s", (now.id,))
        return (now, True) if done.rowcount else (None, False)
    marker_version = str(uuid.uuid4())
    if status == "SUSPENDED" and not now.is_versioned:
        await conn.execute(
            "update storage.objects set version = %s, metadata = null, user_metadata = null,"
            " is_delete_marker = true where id = %s",
            (marker_version, now.id),
        )
        return now, True
    await archive(conn, now.id)
    await conn.execute(
        "insert into storage.objects (bucket_id, name, owner_id, version, is_delete_marker,"
        " is_versioned) values (%s, %s, %s, %s, true, %s)",
        (bucket, name, now.owner_id, marker_version, status == "ENABLED"),
    )
    return now, False


def _json(value: Any) -> Any:
    return None if value is None else Jsonb(value)
