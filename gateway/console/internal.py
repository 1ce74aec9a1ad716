"""The console's way into the admin API: the same admin sub-app, served again on a
private abstract Unix socket of this process, and a client for it.

Pages and forms call admin operations over real HTTP (no second code path for
validation, roles or audit); console sessions authenticate only here (the header
``X-Console-Session``), never on the public listener. The socket lives in a fresh
directory only this user may enter (mode 0700, under the system's temporary directory:
socket paths are limited to 107 bytes), one per process, so the console in a worker
talks to that worker's copy; it is removed when the process stops serving.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Mapping

import aiohttp
from aiohttp import web

from ..runtime import Gateway

SESSION_HEADER = "X-Console-Session"
INTERNAL = web.AppKey("console_internal_admin", object)


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # parsed JSON, or bytes for other media types
    content_type: str
    headers: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error(self) -> str:
        """The admin API's error detail, for a flash message."""
        if isinstance(self.body, dict):
            return str(self.body.get("detail") or self.body.get("error") or self.status)
        return f"HTTP {self.status}"


class InternalAdmin:
    """Serves the admin app on a private Unix socket and calls it."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway
        self._dir: str | None = None
        self.path = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._starting = asyncio.Lock()

    async def start(self) -> None:
        """Nothing yet: the socket is made on the console's first call (most processes,
        and most tests, never serve a console page)."""

    async def _serve(self) -> None:
        from ..admin.api import create_admin_app
        from ..composition import adapters

        admin = create_admin_app(self._gateway, console=True)
        for adapter in adapters():
            adapter.mount_admin(admin)
        root = web.Application(client_max_size=self._gateway.config.server.max_body_bytes)
        root.add_subapp("/admin/", admin)
        self._dir = tempfile.mkdtemp(prefix="gateway-console-")  # 0700
        self.path = os.path.join(self._dir, "admin.sock")
        self._runner = web.AppRunner(root, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.UnixSite(self._runner, self.path).start()
        self._session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=self.path),
                                              timeout=aiohttp.ClientTimeout(total=120))

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)

    async def call(self, token: str, method: str, path: str, *, query: Mapping[str, str] | None = None,
                   body: Mapping[str, Any] | None = None) -> Answer:
        """``method`` on ``/admin<path>`` as the session's user."""
        if self._session is None:
            async with self._starting:
                if self._session is None:
                    await self._serve()
        assert self._session is not None
        headers = {SESSION_HEADER: token}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        params = {k: v for k, v in (query or {}).items() if v not in (None, "")}
        async with self._session.request(method, "http://console/admin" + path, params=params, data=data,
                                         headers=headers) as resp:
            raw = await resp.read()
            ctype = resp.content_type
            parsed: Any = raw
            if ctype == "application/json":
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    parsed = {"error": "internal", "detail": "unreadable admin API answer"}
            return Answer(resp.status, parsed, ctype, dict(resp.headers))
