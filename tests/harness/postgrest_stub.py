"""PostgREST's side of the Supabase stand-in: RPC calls and table requests (filters,
select lists, order/limit, inserts with on_conflict), shaped like PostgREST's answers."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from starlette.requests import Request
from starlette.responses import Response

from .stub_common import json_response, pgrst_error


def check_profile(request: Request) -> None:
    for header in ("accept-profile", "content-profile"):
        schema = request.headers.get(header)
        if schema and schema != "public":
            raise pgrst_error(
                406,
                "PGRST106",
                f"Invalid schema: {schema}",
                hint="Only the following schemas are exposed: public",
            )


FUNCTION_SQL = """
select p.proretset, p.prorettype::regtype::text, t.typtype,
       coalesce(p.proargnames, '{}'::text[]),
       coalesce(p.proargmodes::text[], array_fill('i'::text, array[p.pronargs])),
       coalesce(p.proallargtypes, p.proargtypes::oid[])::regtype[]::text[]
from pg_proc p join pg_type t on t.oid = p.prorettype
where p.pronamespace = 'public'::regnamespace and p.proname = %s
"""


def reject_nul(value: Any) -> None:
    """PostgreSQL cannot hold U+0000 in text: the JSON PostgREST hands it fails with 22P05
    (untranslatable_character), which PostgREST answers with 400 (a class-22 error)."""
    if isinstance(value, str) and "\x00" in value:
        raise pgrst_error(
            400,
            "22P05",
            "unsupported Unicode escape sequence",
            "\\u0000 cannot be converted to text.",
        )
    if isinstance(value, dict):
        for item in value.values():
            reject_nul(item)
    elif isinstance(value, list):
        for item in value:
            reject_nul(item)


async def call_function(
    conn: psycopg.AsyncConnection[Any], fn: str, args: dict[str, Any]
) -> Response:
    """Call public.fn with named args; shape the answer like PostgREST."""
    if not isinstance(args, dict):
        raise pgrst_error(400, "PGRST102", "RPC arguments must be a JSON object")
    reject_nul(args)
    found = await _resolve_function(conn, fn, args)
    if found is None:
        raise pgrst_error(
            404,
            "PGRST202",
            f"Could not find the function public.{fn}({', '.join(sorted(args))})"
            " in the schema cache",
        )
    retset, rettype, typtype, inputs = found
    call = sql.SQL("public.{}({})").format(
        sql.Identifier(fn),
        sql.SQL(", ").join(
            sql.SQL("{} => %s::{}").format(sql.Identifier(k), sql.SQL(inputs[k])) for k in args
        ),
    )
    params = [_adapt(v, inputs[k]) for k, v in args.items()]
    if retset:
        query = sql.SQL("select coalesce(jsonb_agg(to_jsonb(_r)), '[]') from {} _r")
    elif rettype == "void":
        await conn.execute(sql.SQL("select {}").format(call), params)
        return Response(status_code=204)
    elif typtype == "c" or rettype == "record":
        query = sql.SQL("select to_jsonb(_r) from {} _r")
    else:
        query = sql.SQL("select to_jsonb({})")
    row = await (await conn.execute(query.format(call), params)).fetchone()
    return json_response(200, row[0] if row else None)


async def _resolve_function(
    conn: psycopg.AsyncConnection[Any], fn: str, args: dict[str, Any]
) -> tuple[bool, str, str, dict[str, str]] | None:
    """The overload of public.fn whose input argument names cover ``args``."""
    rows = await (await conn.execute(FUNCTION_SQL, (fn,))).fetchall()
    for retset, rettype, typtype, names, modes, types in rows:
        inputs = {n: t for n, m, t in zip(names, modes, types, strict=False) if m in "ibv"}
        if set(args) <= set(inputs):
            return retset, rettype, typtype, inputs
    return None


def _adapt(value: Any, pg_type: str) -> Any:
    if pg_type in ("json", "jsonb") or isinstance(value, dict):
        return Jsonb(value)
    return value


FILTER_OPS = {
    "eq": "=",
    "neq": "<>",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "like": "like",
    "ilike": "ilike",
}
RESERVED = {"select", "order", "limit", "offset", "on_conflict", "columns"}


def _where(request: Request) -> tuple[sql.Composable, list[Any]]:
    """PostgREST horizontal filters: col=eq.v, neq, gt(e), lt(e), (i)like, is, in.(...)."""
    parts: list[sql.Composable] = []
    params: list[Any] = []
    for col, expr in request.query_params.multi_items():
        if col in RESERVED:
            continue
        op, _, value = expr.partition(".")
        ident = sql.Identifier(col)
        if op in FILTER_OPS:
            parts.append(sql.SQL("{} {} %s").format(ident, sql.SQL(FILTER_OPS[op])))
            params.append(value.replace("*", "%") if "like" in op else value)
        elif op == "is":
            parts.append(
                sql.SQL("{} is {}").format(
                    ident, sql.SQL({"null": "null", "true": "true", "false": "false"}[value])
                )
            )
        elif op == "in":
            items = [v.strip().strip('"') for v in value.strip("()").split(",") if v.strip()]
            if not items:
                parts.append(sql.SQL("false"))
                continue
            parts.append(
                sql.SQL("{} in ({})").format(
                    ident, sql.SQL(", ").join(sql.Placeholder() * len(items))
                )
            )
            params.extend(items)
        else:
            raise pgrst_error(400, "PGRST100", f'"failed to parse filter ({expr})"')
    if not parts:
        return sql.SQL(""), params
    return sql.SQL(" where ") + sql.SQL(" and ").join(parts), params


def _select_list(request: Request) -> sql.Composable:
    raw = request.query_params.get("select", "*").strip() or "*"
    if raw == "*":
        return sql.SQL("*")
    cols = []
    for item in raw.split(","):
        alias, _, col = item.strip().rpartition(":")
        col = col.strip()
        ident = sql.Identifier(col)
        cols.append(sql.SQL("{} as {}").format(ident, sql.Identifier(alias)) if alias else ident)
    return sql.SQL(", ").join(cols)


def _order_limit(request: Request) -> sql.Composable:
    out: list[sql.Composable] = []
    if order := request.query_params.get("order"):
        terms = []
        for term in order.split(","):
            col, *mods = term.strip().split(".")
            words = [
                {
                    "asc": "asc",
                    "desc": "desc",
                    "nullsfirst": "nulls first",
                    "nullslast": "nulls last",
                }[m]
                for m in mods
            ]
            terms.append(sql.SQL(" ").join([sql.Identifier(col), *map(sql.SQL, words)]))
        out.append(sql.SQL(" order by ") + sql.SQL(", ").join(terms))
    if (limit := request.query_params.get("limit")) is not None:
        out.append(sql.SQL(" limit {}").format(sql.Literal(int(limit))))
    if (offset := request.query_params.get("offset")) is not None:
        out.append(sql.SQL(" offset {}").format(sql.Literal(int(offset))))
    return sql.Composed(out)


def _prefer(request: Request) -> set[str]:
    return {p.strip() for p in request.headers.get("prefer", "").split(",") if p.strip()}


async def _primary_key(conn: psycopg.AsyncConnection[Any], table: str) -> list[str]:
    rows = await (
        await conn.execute(
            "select a.attname from pg_index i join pg_attribute a"
            " on a.attrelid = i.indrelid and a.attnum = any(i.indkey)"
            " where i.indrelid = %s::regclass and i.indisprimary",
            (f"public.{table}",),
        )
    ).fetchall()
    return [r[0] for r in rows]


async def table_request(
    conn: psycopg.AsyncConnection[Any], request: Request, table: str, body: Any
) -> Response:
    reject_nul(body)
    tbl = sql.Identifier("public", table)
    where, params = _where(request)
    prefer = _prefer(request)
    returning = "return=representation" in prefer
    if request.method == "GET":
        query = sql.SQL(
            "select coalesce(jsonb_agg(to_jsonb(_t)), '[]') from (select {} from {}{}{}) _t"
        ).format(_select_list(request), tbl, where, _order_limit(request))
        row = await (await conn.execute(query, params)).fetchone()
        return json_response(200, row[0])
    if request.method == "POST":
        query, params = await _insert_sql(conn, request, table, body, prefer)
        status_ok = 201
    elif request.method == "PATCH":
        if not isinstance(body, dict):
            raise pgrst_error(400, "PGRST102", "PATCH body must be a JSON object")
        cols = sql.SQL(", ").join(map(sql.Identifier, body))
        query = (
            sql.SQL(
                "update {} set ({}) = (select {} from jsonb_populate_record(null::{}, %s))"
            ).format(tbl, cols, cols, tbl)
            + where
        )
        params = [Jsonb(body), *params]
        status_ok = 200
    else:
        query = sql.SQL("delete from {}").format(tbl) + where
        status_ok = 200
    rows = await (
        await conn.execute(
            sql.SQL(
                "with _w as ({} returning *) select coalesce(jsonb_agg(to_jsonb(_w)), '[]') from _w"
            ).format(query),
            params,
        )
    ).fetchone()
    if returning:
        return json_response(status_ok, rows[0])
    return Response(status_code=201 if request.method == "POST" else 204)


async def _insert_sql(
    conn: psycopg.AsyncConnection[Any], request: Request, table: str, body: Any, prefer: set[str]
) -> tuple[sql.Composable, list[Any]]:
    rows = body if isinstance(body, list) else [body]
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise pgrst_error(400, "PGRST102", "Body must be a JSON object or array of objects")
    if columns := request.query_params.get("columns"):
        names = [c.strip().strip('"') for c in columns.split(",")]
    else:
        names = list(dict.fromkeys(k for r in rows for k in r))
    tbl = sql.Identifier("public", table)
    cols = sql.SQL(", ").join(map(sql.Identifier, names))
    query = sql.SQL(
        "insert into {} ({}) select {} from jsonb_populate_recordset(null::{}, %s)"
    ).format(tbl, cols, cols, tbl)
    merge = "resolution=merge-duplicates" in prefer
    if merge or "resolution=ignore-duplicates" in prefer:
        target = request.query_params.get("on_conflict")
        keys = [c.strip() for c in target.split(",")] if target else await _primary_key(conn, table)
        query += sql.SQL(" on conflict ({}) ").format(sql.SQL(", ").join(map(sql.Identifier, keys)))
        updates = [
            sql.SQL("{} = excluded.{}").format(sql.Identifier(c), sql.Identifier(c))
            for c in names
            if c not in keys
        ]
        if merge and updates:
            query += sql.SQL("do update set ") + sql.SQL(", ").join(updates)
        else:
            query += sql.SQL("do nothing")
    return query, [Jsonb(rows)]
