"""All CAs of one gateway, by id: the active local CAs become backends.

Replicas sharing a database see CAs created elsewhere: an unknown id triggers one
reload from the store before it is reported missing.
"""

from __future__ import annotations

import asyncio
from typing import Mapping

from cryptography import x509

from ..errors import NotFound, Unavailable
from ..profiles.model import Profile
from ..store import Store
from ..store.records import CARecord
from .backend import CABackend
from .hierarchy import CAHierarchy
from .local import LocalCA, LocalCASettings
from .pem import load_certificate


class CARegistry:
    def __init__(self, store: Store, profiles: Mapping[str, Profile], settings: LocalCASettings) -> None:
        self._store = store
        self._profiles = profiles
        self._settings = settings
        self._backends: dict[str, LocalCA] = {}
        self._records: dict[str, CARecord] = {}
        self._lock = asyncio.Lock()
        self.hierarchy = CAHierarchy(store, settings.passphrase)

    async def load(self) -> None:
        async with self._lock:
            records = {r.id: r for r in await self._store.list_cas()}
            backends: dict[str, LocalCA] = {}
            for rec in records.values():
                if rec.state == "active" and rec.key_pem_encrypted and rec.certificate_pem:
                    existing = self._backends.get(rec.id)
                    if existing is not None and existing.record.certificate_pem == rec.certificate_pem:
                        backends[rec.id] = existing
                    else:
                        backends[rec.id] = LocalCA(rec, self._store, self._profiles, self._settings)
            self._records, self._backends = records, backends

    async def record(self, ca_id: str) -> CARecord:
        if ca_id not in self._records:
            await self.load()
        try:
            return self._records[ca_id]
        except KeyError:
            raise NotFound(f"unknown CA {ca_id!r}") from None

    async def local(self, ca_id: str) -> LocalCA:
        """The local backend for a CA that can issue; clear errors for those that cannot."""
        if ca_id not in self._backends:
            await self.load()
        backend = self._backends.get(ca_id)
        if backend is None:
            rec = await self.record(ca_id)
            if rec.state == "awaiting_certificate":
                raise Unavailable(f"CA {ca_id} is waiting for its signed certificate to be imported")
            raise Unavailable(f"CA {ca_id} ({rec.kind}) holds no key and cannot issue")
        return backend

    async def backend(self, ca_id: str) -> CABackend:
        return await self.local(ca_id)

    def records(self) -> list[CARecord]:
        return sorted(self._records.values(), key=lambda r: (r.parent_id is not None, r.created_at, r.id))

    def issuing(self) -> list[LocalCA]:
        return list(self._backends.values())

    def certificate(self, ca_id: str) -> x509.Certificate | None:
        rec = self._records.get(ca_id)
        return load_certificate(rec.certificate_pem) if rec and rec.certificate_pem else None

    def trust_anchors(self) -> list[x509.Certificate]:
        """Every CA certificate the gateway knows (for client-certificate verification)."""
        return [load_certificate(r.certificate_pem) for r in self._records.values() if r.certificate_pem]
