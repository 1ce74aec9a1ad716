"""Persistence for the gateway: one async store over SQLite or PostgreSQL.

``async with store.read() as q`` / ``async with store.transaction() as q``, then
``q.certificates``, ``q.events``, ... (:class:`~gateway.store.queries.Queries`).
"""

from .errors import SerialCollision, StoreError
from .queries import Queries
from .store import Store

__all__ = ["Queries", "SerialCollision", "Store", "StoreError"]
