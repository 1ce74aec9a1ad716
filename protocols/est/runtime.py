"""The EST app's runtime: its door, its labels and its table of held requests.

One per app (an aiohttp app key on the EST sub-app), so two gateways in one process
never share state; started and stopped with the app through ``cleanup_ctx``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator

from aiohttp import web

from gateway.door import Door

from .labels import Labels
from .pending import PendingRequests


@dataclass(frozen=True)
class EstRuntime:
    door: Door
    labels: Labels
    pending: PendingRequests

    @classmethod
    def for_door(cls, door: Door) -> "EstRuntime":
        return cls(door, Labels(door), PendingRequests(door.tables, lambda: door.clock()))


RUNTIME = web.AppKey("est_runtime", EstRuntime)


def install(app: web.Application, door: Door) -> None:
    """Give ``app`` its runtime, dropped again when the app stops."""
    app[RUNTIME] = EstRuntime.for_door(door)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        yield
        app[RUNTIME].labels.forget()

    app.cleanup_ctx.append(lifecycle)
