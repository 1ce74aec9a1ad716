"""The core's clock: injected so tests move time instead of sleeping (Boulder's way)."""

from __future__ import annotations

import datetime as dt
from typing import Callable

Clock = Callable[[], dt.datetime]
"""Returns the current time, timezone-aware UTC."""


def system_clock() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class FakeClock:
    """A clock that moves only when told (tests)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self.now = start or system_clock()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, delta: dt.timedelta | float) -> None:
        self.now += delta if isinstance(delta, dt.timedelta) else dt.timedelta(seconds=delta)
