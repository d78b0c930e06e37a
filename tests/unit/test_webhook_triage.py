"""Which webhook events need no caption (app/api/webhook.py `triage`), as a property of the
event: only storage.objects events, never deletes, and an update only when the version
changed or the old row had no metadata yet (the upload finishing)."""

import uuid

from hypothesis import given
from hypothesis import strategies as st

from app.api.webhook import WebhookPayload, triage

OBJECT_ID = str(uuid.uuid4())


def row(version: str, metadata: dict | None) -> dict:
    return {
        "id": OBJECT_ID,
        "bucket_id": "images",
        "name": "a.png",
        "version": version,
        "metadata": metadata,
    }


@given(
    schema=st.sampled_from(["storage", "public", "auth"]),
    table=st.sampled_from(["objects", "buckets", "image_caption"]),
    kind=st.sampled_from(["INSERT", "UPDATE", "DELETE"]),
    same_version=st.booleans(),
    old_metadata=st.sampled_from([None, {}, {"size": 1}]),
)
def test_only_a_new_or_changed_object_may_need_a_caption(
    schema, table, kind, same_version, old_metadata
):
    old = row("v1", old_metadata)
    new = row("v1" if same_version else "v2", {"size": 2})
    payload = WebhookPayload.model_validate(
        {"type": kind, "schema": schema, "table": table, "record": new, "old_record": old}
    )

    reason = triage(payload)

    if (schema, table) != ("storage", "objects"):
        assert reason == f"not a storage.objects event ({schema}.{table})"
    elif kind == "DELETE":
        assert reason is not None and reason.startswith("deletes need nothing")
    elif kind == "UPDATE" and same_version and old_metadata:
        assert reason == "same version (metadata changed): the caption still holds"
    else:
        assert reason is None


def test_an_update_without_its_old_row_may_need_a_caption():
    payload = WebhookPayload.model_validate(
        {"type": "UPDATE", "schema": "storage", "table": "objects", "record": row("v1", {})}
    )

    assert triage(payload) is None
