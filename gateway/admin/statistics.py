"""``GET /statistics``: what the console's dashboard draws, counted in the store.

Enrollment outcomes per day and protocol configuration over the last ``days`` days
(from the audit trail: ``issue``/``renew`` events by status, ``revoke`` successes),
valid certificates expiring within 7, 30 and 90 days, the age of each CA's newest
CRL, and the latest failures. Counting happens in SQL: the dashboard costs a handful
of grouped queries however many certificates the store holds.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ..store import schema as t
from ..web.keys import GATEWAY
from .inputs import QueryArgs
from .spec import Query, Reply, Route

TAG = "Events"
ENROLLMENT_TYPES = ("issue", "renew")
OUTCOMES = ("issued", "pending", "refused", "revoked")
EXPIRY_WINDOWS = (7, 30, 90)
MAX_DAYS = 90
RECENT_FAILURES = 10
_FAILED = ("refused", "failure", "error")


def _outcome(kind: str, status: str) -> str | None:
    if kind in ENROLLMENT_TYPES:
        return "issued" if status == "success" else "pending" if status == "pending" else \
            "refused" if status in _FAILED else None
    return "revoked" if kind == "revoke" and status == "success" else None


def _day(conn: AsyncConnection) -> Any:
    c = t.events.c.created_at
    if conn.dialect.name == "sqlite":  # stored as naive UTC text 'YYYY-MM-DD HH:MM:SS...'
        return func.substr(c, 1, 10)
    return func.to_char(func.timezone("UTC", c), "YYYY-MM-DD")


async def _series(conn: AsyncConnection, since: dt.datetime) -> list[dict[str, Any]]:
    e = t.events.c
    day = _day(conn).label("day")
    stmt = (select(day, e.type, e.status, e.protocol_config, func.count().label("n"))
            .where(e.created_at >= since, e.type.in_((*ENROLLMENT_TYPES, "revoke")))
            .group_by(day, e.type, e.status, e.protocol_config))
    counts: dict[tuple[str, str | None, str], int] = {}
    for row in (await conn.execute(stmt)).all():
        outcome = _outcome(row.type, row.status)
        if outcome is not None:
            key = (str(row.day), row.protocol_config, outcome)
            counts[key] = counts.get(key, 0) + int(row.n)
    return [{"day": d, "protocol_config": pc, "outcome": o, "count": n}
            for (d, pc, o), n in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1] or "", kv[0][2]))]


async def _expiring(conn: AsyncConnection, now: dt.datetime) -> dict[str, int]:
    c = t.certificates.c
    out = {}
    for days in EXPIRY_WINDOWS:
        stmt = select(func.count()).where(c.status == "valid", c.not_after > now,
                                          c.not_after <= now + dt.timedelta(days=days))
        out[str(days)] = int((await conn.execute(stmt)).scalar_one())
    return out


async def _crl_ages(conn: AsyncConnection, now: dt.datetime) -> list[dict[str, Any]]:
    c = t.cas.c
    stmt = (select(c.id, c.name, c.crl_this_update, c.crl_next_update)
            .where(c.crl_this_update.is_not(None)).order_by(c.name, c.id))
    return [{"ca": r.id, "name": r.name, "this_update": r.crl_this_update.isoformat(),
             "next_update": r.crl_next_update.isoformat() if r.crl_next_update else None,
             "age_seconds": int((now - r.crl_this_update).total_seconds())}
            for r in (await conn.execute(stmt)).all()]


async def _failures(conn: AsyncConnection) -> list[dict[str, Any]]:
    e = t.events.c
    stmt = (select(e.id, e.type, e.status, e.protocol_config, e.detail, e.created_at)
            .where(e.status.in_(_FAILED)).order_by(e.created_at.desc(), e.id.desc()).limit(RECENT_FAILURES))
    return [{"id": r.id, "type": r.type, "status": r.status, "protocol_config": r.protocol_config,
             "detail": str((r.detail or {}).get("detail") or (r.detail or {}).get("error") or ""),
             "created_at": r.created_at.isoformat()} for r in (await conn.execute(stmt)).all()]


async def get_statistics(request: web.Request) -> web.Response:
    args = QueryArgs(request)
    days = args.integer("days", default=14, minimum=1, maximum=MAX_DAYS)
    args.done()
    gw = request.app[GATEWAY]
    now = gw.clock()
    since = (now - dt.timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    async with gw.store.read() as q:
        with gw.store.translated("statistics"):
            conn = q.connection
            body = {"days": days, "since": since.isoformat(), "series": await _series(conn, since),
                    "expiring": await _expiring(conn, now), "crls": await _crl_ages(conn, now),
                    "recent_failures": await _failures(conn)}
    return web.json_response(body)


_STR = {"type": "string"}
_NSTR = {"type": ["string", "null"]}
_INT = {"type": "integer"}
SCHEMAS: dict[str, dict[str, Any]] = {
    "Statistics": {"type": "object", "required": ["days", "since", "series", "expiring", "crls", "recent_failures"],
                   "properties": {
        "days": _INT, "since": _STR,
        "series": {"type": "array", "items": {"type": "object", "properties": {
            "day": _STR, "protocol_config": _NSTR, "outcome": {"type": "string", "enum": list(OUTCOMES)},
            "count": _INT}}},
        "expiring": {"type": "object", "properties": {str(d): _INT for d in EXPIRY_WINDOWS}},
        "crls": {"type": "array", "items": {"type": "object", "properties": {
            "ca": _STR, "name": _STR, "this_update": _STR, "next_update": _NSTR, "age_seconds": _INT}}},
        "recent_failures": {"type": "array", "items": {"type": "object", "properties": {
            "id": _INT, "type": _STR, "status": _STR, "protocol_config": _NSTR, "detail": _STR,
            "created_at": _STR}}}}},
}

ROUTES = (
    Route("GET", "/statistics", get_statistics, "getStatistics",
          "Enrollment outcomes per day and configuration, expiring certificates, CRL ages, recent failures", TAG,
          (Reply(200, "Dashboard figures", "Statistics"),),
          query=(Query("days", {"type": "integer", "minimum": 1, "maximum": MAX_DAYS, "default": 14},
                       "Days of history, today included."),)),
)
