"""Queries on the core tables, one object per table, on one connection.

:meth:`gateway.store.Store.read` and :meth:`~gateway.store.Store.transaction` yield a
:class:`Queries`; everything in the block runs on that block's connection, so
related reads share one checkout and related writes commit together::

    async with store.transaction() as q:
        await q.certificates.insert(rec)
        await q.events.add(event)

Each table's queries are built on first use (a block that touches one table, or
only :attr:`Queries.connection`, builds one object).
"""

from __future__ import annotations

from functools import cached_property

from sqlalchemy.ext.asyncio import AsyncConnection

from .api_keys import ApiKeyQueries
from .base import TableQueries, normalize_fingerprint, normalize_serial
from .cas import CAQueries
from .certificates import CertificateQueries
from .configs import ConfigQueries
from .entities import EntityQueries
from .events import EventQueries
from .generations import CONFIG, GenerationQueries
from .leases import LeaseQueries
from .notifications import NotificationQueries
from .outbox import DestinationQueries, OutboxQueries
from .requests import RequestQueries

__all__ = [
    "Queries", "TableQueries", "CAQueries", "CertificateQueries", "RequestQueries", "ConfigQueries",
    "EntityQueries", "EventQueries", "DestinationQueries", "OutboxQueries", "NotificationQueries", "ApiKeyQueries", "GenerationQueries", "LeaseQueries", "CONFIG",
    "normalize_serial", "normalize_fingerprint",
]


class Queries:
    """The core tables' queries on :attr:`connection` (one read or one transaction)."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection
        """The block's connection, for protocol tables and :mod:`gateway.credentials`
        (statements on it share the block's transaction)."""

    @cached_property
    def cas(self) -> CAQueries:
        return CAQueries(self.connection)

    @cached_property
    def certificates(self) -> CertificateQueries:
        return CertificateQueries(self.connection)

    @cached_property
    def requests(self) -> RequestQueries:
        return RequestQueries(self.connection)

    @cached_property
    def destinations(self) -> DestinationQueries:
        return DestinationQueries(self.connection)

    @cached_property
    def outbox(self) -> OutboxQueries:
        return OutboxQueries(self.connection)

    @cached_property
    def notifications(self) -> NotificationQueries:
        return NotificationQueries(self.connection)

    @cached_property
    def configs(self) -> ConfigQueries:
        return ConfigQueries(self.connection)

    @cached_property
    def entities(self) -> EntityQueries:
        return EntityQueries(self.connection)

    @cached_property
    def events(self) -> EventQueries:
        return EventQueries(self.connection)

    @cached_property
    def api_keys(self) -> ApiKeyQueries:
        return ApiKeyQueries(self.connection)

    @cached_property
    def generations(self) -> GenerationQueries:
        return GenerationQueries(self.connection)

    @cached_property
    def leases(self) -> LeaseQueries:
        return LeaseQueries(self.connection)
