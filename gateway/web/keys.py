"""Typed application state keys."""

from __future__ import annotations

from aiohttp import web

from ..runtime import Gateway

GATEWAY = web.AppKey("gateway", Gateway)
