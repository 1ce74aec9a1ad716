"""Logging set-up: human text by default, one JSON object per line with ``--log-format json``.

Log records carry identifiers and outcomes only; callers never pass secrets, keys or
CSRs, and the JSON formatter drops any extra field whose name suggests a secret.

Nobody can fill the disk from outside: :class:`FloodFilter` lets at most ``burst``
warnings per message per interval through, then writes one "suppressed K similar
messages" line, and shows a bug's traceback once per code site (later hits of the
same site are one line). :class:`ClientHTTPErrors` turns aiohttp's traceback for
bad HTTP from a client (``LineTooLong``, ``BadHttpMessage``) into one WARNING line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import traceback
from collections.abc import Callable, Hashable
from typing import TextIO

from aiohttp.http_exceptions import HttpProcessingError

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_SECRET_HINTS = ("password", "passphrase", "secret", "api_key", "hmac", "private", "challenge")


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, str | int | float | bool | None] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key in _STANDARD or key.startswith("_"):
                continue
            if any(h in key.lower() for h in _SECRET_HINTS):
                continue
            doc[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


class RateLimiter:
    """At most ``burst`` events per key per ``interval`` seconds (``clock``: injectable).

    :meth:`admit` says whether to log this event and how many of the key's events
    were dropped since the last one logged (to report them once)."""

    def __init__(self, burst: int = 10, interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 4096) -> None:
        self.burst, self.interval, self.clock, self.max_keys = burst, interval, clock, max_keys
        self._windows: dict[Hashable, list[float]] = {}  # key -> [start, admitted, suppressed]

    def admit(self, key: Hashable) -> tuple[bool, int]:
        now = self.clock()
        window = self._windows.get(key)
        reported = 0
        if window is None or now - window[0] >= self.interval:
            reported = int(window[2]) if window is not None else 0
            if window is None and len(self._windows) >= self.max_keys:
                self._windows.clear()  # keys are message templates, so this is a safety net
            window = self._windows[key] = [now, 0, 0]
        if window[1] < self.burst:
            window[1] += 1
            return True, reported
        window[2] += 1
        return False, 0


def _site(exc_info: tuple[type[BaseException], BaseException, object]) -> tuple[str, str, int]:
    """Where an exception was raised: its type and innermost frame."""
    frames = traceback.extract_tb(exc_info[1].__traceback__)
    last = frames[-1] if frames else None
    return exc_info[0].__name__, last.filename if last else "?", (last.lineno or 0) if last else 0


class FloodFilter(logging.Filter):
    """Bounds what warnings and errors can write (see the module docstring).

    INFO and below pass untouched (the per-request access line is the operator's to
    turn off with ``--log-level WARNING``)."""

    def __init__(self, limiter: RateLimiter | None = None, max_sites: int = 1024) -> None:
        super().__init__()
        self.limiter = limiter or RateLimiter()
        self.max_sites = max_sites
        self._sites: set[tuple[str, str, int]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING and not record.exc_info:
            return True
        key = (record.name, str(record.msg), record.levelno)
        admitted, suppressed = self.limiter.admit(key)
        if not admitted:
            return False
        if record.exc_info and record.exc_info[1] is not None:
            site = _site(record.exc_info)
            if site in self._sites or len(self._sites) >= self.max_sites:
                exc = record.exc_info[1]
                note = f" [{type(exc).__name__}: {exc}; traceback logged once at {site[1]}:{site[2]}]"
                record.msg = str(record.msg) + note.replace("%", "%%")
                record.exc_info, record.exc_text = None, None
            else:
                self._sites.add(site)
        if suppressed:
            record.msg = str(record.msg) + f" (and {suppressed} similar messages suppressed)"
        return True


class ClientHTTPErrors(logging.Filter):
    """aiohttp's server logger: a client's malformed HTTP is one WARNING line, no traceback.

    aiohttp logs ``LineTooLong``/``BadHttpMessage`` with ``logger.exception``; they are
    the client's fault, so they are warnings (and rate-limited by :class:`FloodFilter`).
    Anything else it logs (a handler crash) keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            # the reason only: what follows its colon echoes the client's bytes
            detail = (exc.message or type(exc).__name__).split(":", 1)[0].splitlines()[0][:120]
            record.msg = "bad HTTP request from %s: %s: %s"
            record.args = (record.args[0] if isinstance(record.args, tuple) and record.args else "?",
                           type(exc).__name__, detail)
            record.exc_info, record.exc_text = None, None
        return True


_CLIENT_HTTP_ERRORS = ClientHTTPErrors()


def quiet_client_http_errors() -> None:
    """Install :class:`ClientHTTPErrors` on aiohttp's server logger (idempotent)."""
    server = logging.getLogger("aiohttp.server")
    if _CLIENT_HTTP_ERRORS not in server.filters:
        server.addFilter(_CLIENT_HTTP_ERRORS)


_format = "text"


def emit_banner(text: str, stream: TextIO | None = None) -> None:
    """The start-up banner (stdout) or a notice (``stream``), whatever the log level: as
    is under text logs; under ``--log-format json`` one JSON record (its first line the
    message, the whole text in ``banner``) so a consumer of JSON lines parses every line."""
    out = stream or sys.stdout
    if _format != "json":
        print(text, file=out, flush=True)
        return
    lines = text.splitlines()
    record = logging.LogRecord("gateway", logging.INFO, __file__, 0, lines[0] if lines else "", None, None)
    record.__dict__["banner"] = text
    print(JSONFormatter().format(record), file=out, flush=True)


def configure(fmt: str = "text", level: str = "INFO") -> None:
    global _format
    _format = fmt
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(FloodFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    quiet_client_http_errors()
