"""Declarative admin routes: one table feeds both the router and the OpenAPI document.

Each resource module lists its :class:`Route` entries; :mod:`gateway.admin.api`
registers them and :mod:`gateway.admin.openapi` describes them, so a route cannot
be served without being documented (and the tests check the other direction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aiohttp import web

from .inputs import MAX_OFFSET

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JSON = "application/json"


@dataclass(frozen=True)
class Query:
    """One query parameter (always optional)."""

    name: str
    schema: dict[str, Any]
    description: str


@dataclass(frozen=True)
class Reply:
    """One successful response; ``schema`` names a component schema (JSON bodies only)."""

    status: int
    description: str
    schema: str | None = None
    media_type: str = JSON


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # relative to the /admin mount point, aiohttp (= OpenAPI) template syntax
    handler: Handler
    operation_id: str
    summary: str
    tag: str
    replies: tuple[Reply, ...]
    query: tuple[Query, ...] = ()
    body: str | None = None  # component schema name of the JSON request body
    body_optional: bool = False
    errors: tuple[int, ...] = ()  # statuses worth listing beyond 400, 401 and 500
    public: bool = False  # served without authentication


PAGE: tuple[Query, ...] = (
    Query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},
          "Page size (at most 500)."),
    Query("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0}, "Items to skip."),
)
