"""http-01 answers for upstream ACME CAs, served by the gateway's own plain-HTTP listener.

An ACME upstream validating a name the gateway ordered fetches
``http://<name>/.well-known/acme-challenge/<token>``; the listener answers from here
while the order is open. One per gateway process (see :mod:`gateway.ca.upstream.acme`
on replicas).
"""

from __future__ import annotations

import threading


class Http01Tokens:
    """Key authorizations the gateway's plain-HTTP listener serves under
    ``/.well-known/acme-challenge/<token>`` while an upstream validates (one per gateway)."""

    def __init__(self) -> None:
        self._tokens: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, token: str, key_authorization: str) -> None:
        with self._lock:
            self._tokens[token] = key_authorization

    def remove(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(token, None)

    def get(self, token: str) -> str | None:
        with self._lock:
            return self._tokens.get(token)
