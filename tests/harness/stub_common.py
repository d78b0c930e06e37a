"""What the Supabase stand-ins share: the error answered as JSON, the caller a JWT names,
PostgreSQL errors as PostgREST maps them, and JSON bodies."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import psycopg
from starlette.requests import Request
from starlette.responses import Response

STORAGE_ADMIN = "supabase_storage_admin"
# storage-api's isValidKey: the characters S3 handles without special encoding.
VALID_KEY = re.compile(r"[A-Za-z0-9_/!\-.*'() &$@=;:+,?]+")


class ApiError(Exception):
    """An error answered as JSON with an HTTP status."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


def storage_error(code: str, message: str, status: int = 400, error: str | None = None) -> ApiError:
    """storage-api style: HTTP 400 (500 for a 5xx) with the real status in the body."""
    body = {"statusCode": str(status), "code": code, "error": error or code, "message": message}
    return ApiError(500 if status >= 500 else 400, body)


def not_found() -> ApiError:
    return storage_error("NoSuchKey", "Object not found", 404, "not_found")


def check_key(name: str) -> None:
    if not VALID_KEY.fullmatch(name):
        raise storage_error("InvalidKey", f"Invalid key: {name}")


def pgrst_error(
    status: int, code: str, message: str, details: Any = None, hint: Any = None
) -> ApiError:
    return ApiError(status, {"code": code, "details": details, "hint": hint, "message": message})


# PostgREST's SQLSTATE -> HTTP status table (docs: "Errors from PostgreSQL").
_STATUS_BY_CODE = {
    "23503": 409,
    "23505": 409,
    "25006": 405,
    "42883": 404,
    "42P01": 404,
    "42P17": 500,
    "P0001": 400,
}
_STATUS_BY_CLASS = {
    "08": 503,
    "09": 500,
    "0L": 403,
    "0P": 403,
    "25": 500,
    "28": 403,
    "2D": 500,
    "38": 500,
    "39": 500,
    "3B": 500,
    "40": 500,
    "53": 503,
    "54": 500,
    "55": 500,
    "57": 500,
    "58": 500,
    "F0": 500,
    "HV": 500,
    "P0": 500,
    "XX": 500,
}


def db_error(exc: psycopg.Error, role: str) -> ApiError:
    """Map a PostgreSQL error to a PostgREST error response."""
    code = exc.sqlstate or "XX000"
    if code == "42501":
        status = 401 if role == "anon" else 403
    elif code.startswith("PT") and code[2:].isdigit():
        status = int(code[2:])
    else:
        status = _STATUS_BY_CODE.get(code) or _STATUS_BY_CLASS.get(code[:2], 400)
    diag = exc.diag
    return pgrst_error(
        status, code, diag.message_primary or str(exc), diag.message_detail, diag.message_hint
    )


@dataclass
class Caller:
    role: str
    claims: dict[str, Any]

    @property
    def sub(self) -> str | None:
        return self.claims.get("sub")


def fault_body(status: int, storage: bool) -> dict[str, Any]:
    if storage:
        return {
            "statusCode": str(status),
            "code": "InternalError",
            "error": "InternalError",
            "message": f"injected fault ({status})",
        }
    return {
        "code": "PGRST000",
        "details": None,
        "hint": None,
        "message": f"injected fault ({status})",
    }


async def json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise pgrst_error(400, "PGRST102", "Empty or invalid json") from exc


def json_response(status: int, data: Any) -> Response:
    return Response(json.dumps(data), status_code=status, media_type="application/json")
