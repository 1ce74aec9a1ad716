"""The audit trail: every enrollment event goes to the store and to the log.

Events carry identifiers and outcomes, never secrets, CSRs or keys.
"""

from __future__ import annotations

import logging
from typing import Any

from .store import Store
from .store.records import EventRecord

log = logging.getLogger("gateway.audit")


class EventRecorder:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def record(
        self,
        type: str,
        status: str,
        *,
        entity_id: str | None = None,
        protocol_config: str | None = None,
        ca_id: str | None = None,
        serial: str | None = None,
        request_id: str | None = None,
        **detail: Any,
    ) -> int:
        event = EventRecord(
            type=type, status=status, entity_id=entity_id, protocol_config=protocol_config,
            ca_id=ca_id, serial=serial, request_id=request_id,
            detail={k: v for k, v in detail.items() if v is not None},
        )
        return await self.add(event)

    async def add(self, event: EventRecord) -> int:
        """Store a prepared event in its own transaction, then log it."""
        async with self._store.transaction() as q:
            event_id = await q.events.add(event)
        log_committed(event, event_id)
        return event_id


def log_committed(event: EventRecord, event_id: int) -> None:
    """The audit log line for an event already committed (also for events written
    inside another transaction, e.g. with the certificate they record)."""
    log.info(
        "event %s %s", event.type, event.status,
        extra={
            "event_id": event_id, "event_type": event.type, "status": event.status,
            "entity_id": event.entity_id, "protocol_config": event.protocol_config,
            "ca_id": event.ca_id, "serial": event.serial, "request_id": event.request_id,
            **event.detail,
        },
    )
