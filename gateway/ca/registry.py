"""All CAs of one gateway, by id: each active CA that can sign becomes a backend.

Which backend signs for a CA comes from its record (``backend``: a kind from
:mod:`gateway.ca.kinds`; ``local`` by default). Replicas sharing a database see CAs
created elsewhere: an unknown id triggers one reload from the store before it is
reported missing.
"""

from __future__ import annotations

import asyncio
from typing import Any, Mapping

from cryptography import x509

from .. import keys
from ..sealing import Sealer
from ..errors import BadRequest, Conflict, NotFound, Unavailable
from ..profiles.model import Profile
from ..store import Store
from ..store.records import CARecord
from .backend import CABackend
from .hierarchy import CAHierarchy, check_ca_id
from .kinds import KINDS, BackendContext, BackendKinds, BackendStartupError
from .upstream.http01 import Http01Tokens
from .local import LocalCA, LocalCASettings
from .pem import cert_to_pem, certs_to_pem, load_certificate


def _can_sign(rec: CARecord) -> bool:
    if rec.state != "active" or not rec.certificate_pem:
        return False
    return rec.backend != "local" or rec.key_pem_encrypted is not None


class CARegistry:
    def __init__(self, store: Store, settings: LocalCASettings, profiles: Mapping[str, Profile],
                 kinds: BackendKinds = KINDS) -> None:
        self._store = store
        self._settings = settings
        self._kinds = kinds
        self._backends: dict[str, CABackend] = {}
        self._records: dict[str, CARecord] = {}
        self.startup_errors: dict[str, str] = {}
        """CA id -> why its backend could not start (a missing token, a wrong PIN), from the last load."""
        self._lock = asyncio.Lock()
        self.hierarchy = CAHierarchy(store, settings.passphrase, profiles)
        self._context = BackendContext(settings, self.hierarchy)

    async def load(self) -> None:
        async with self._lock:
            async with self._store.read() as q:
                records = {r.id: r for r in await q.cas.list()}
            backends: dict[str, CABackend] = {}
            errors: dict[str, str] = {}
            for rec in records.values():
                if not _can_sign(rec):
                    continue
                existing = self._backends.get(rec.id)
                old = self._records.get(rec.id)
                if existing is not None and old is not None and (old.certificate_pem, old.backend,
                                                                 old.backend_settings) == (
                        rec.certificate_pem, rec.backend, rec.backend_settings):
                    backends[rec.id] = existing
                    continue
                try:
                    backends[rec.id] = self._kinds.build(rec, self._context)
                except BackendStartupError as exc:
                    errors[rec.id] = exc.detail
                except Unavailable:
                    continue  # reported when the CA is asked for (a kind not installed here)
            retired = [b for b in self._backends.values() if all(b is not n for n in backends.values())]
            self._records, self._backends, self.startup_errors = records, backends, errors
            for backend in retired:
                await backend.close()

    def require_startable(self) -> None:
        """Refuse to serve while a CA's backend cannot start (``gateway serve`` calls this)."""
        if self.startup_errors:
            from ..errors import ConfigError

            raise ConfigError("; ".join(f"CA {ca_id}: {why}" for ca_id, why in sorted(self.startup_errors.items())))

    async def record(self, ca_id: str) -> CARecord:
        if ca_id not in self._records:
            await self.load()
        try:
            return self._records[ca_id]
        except KeyError:
            raise NotFound(f"unknown CA {ca_id!r}") from None

    async def backend(self, ca_id: str) -> CABackend:
        """The backend for a CA that can issue; clear errors for those that cannot."""
        if ca_id not in self._backends:
            await self.load()
        backend = self._backends.get(ca_id)
        if backend is None:
            rec = await self.record(ca_id)
            if rec.state == "awaiting_certificate":
                raise Unavailable(f"CA {ca_id} is waiting for its signed certificate to be imported")
            if rec.backend != "local":
                self._kinds.build(rec, self._context)  # raises the kind's own reason
            raise Unavailable(f"CA {ca_id} ({rec.kind}) holds no key and cannot issue")
        return backend

    async def local(self, ca_id: str) -> LocalCA:
        """A CA whose key this gateway holds (CA tooling: sub-CAs, OCSP signers)."""
        backend = await self.backend(ca_id)
        if not isinstance(backend, LocalCA):
            raise BadRequest(f"CA {ca_id} is signed for by the {(await self.record(ca_id)).backend!r} backend, "
                             "not a key held here")
        return backend

    async def add_backend_ca(
        self, ca_id: str, name: str, backend: str, certificate: x509.Certificate,
        chain: list[x509.Certificate], settings: dict[str, Any] | None = None,
    ) -> CARecord:
        """A CA that another backend kind signs for (an upstream CA, an HSM key): the
        gateway keeps its certificate and chain, never its key."""
        if backend == "local":
            raise BadRequest("a local CA is created with its key (gateway ca create)")
        if backend not in self._kinds.names():
            raise BadRequest(f"unknown CA backend kind {backend!r}; one of {self._kinds.names()}")
        async with self._store.read() as q:
            existing = await q.cas.get(ca_id)
        if existing is not None:
            raise Conflict(f"CA {ca_id!r} exists")
        rec = CARecord(
            id=check_ca_id(ca_id), name=name, kind="upstream", state="active", parent_id=None,
            certificate_pem=cert_to_pem(certificate), chain_pem=certs_to_pem(chain),
            key_pem_encrypted=None, key_algorithm=keys.describe_public_key(certificate.public_key()).name,
            backend=backend, backend_settings=dict(settings or {}),
        )
        async with self._store.transaction() as q:
            await q.cas.insert(rec)
        await self.load()
        return rec

    @property
    def http01(self) -> Http01Tokens:
        """The http-01 answers ACME upstreams are waiting for (served on plain HTTP)."""
        return self._context.http01

    def sealer(self, kind: str) -> Sealer:
        """What seals a backend kind's secrets in a CA record (see BackendContext.sealer)."""
        return self._context.sealer(kind)

    async def close(self) -> None:
        for backend in self._backends.values():
            await backend.close()

    def records(self) -> list[CARecord]:
        return sorted(self._records.values(), key=lambda r: (r.parent_id is not None, r.created_at, r.id))

    def issuing(self) -> list[CABackend]:
        return list(self._backends.values())

    def certificate(self, ca_id: str) -> x509.Certificate | None:
        rec = self._records.get(ca_id)
        return load_certificate(rec.certificate_pem) if rec and rec.certificate_pem else None

    def trust_anchors(self) -> list[x509.Certificate]:
        """Every CA certificate the gateway knows (for client-certificate verification)."""
        return [load_certificate(r.certificate_pem) for r in self._records.values() if r.certificate_pem]
