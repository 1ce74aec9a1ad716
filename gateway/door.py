"""The one door from a protocol adapter into the core.

Every adapter gets, at start, a :class:`Door` scoped to its protocol: the verbs a
protocol needs (enroll, poll, approve, reject, revoke, look up, chain and CRL,
internal certificates, end entities, audit events, enrollment credentials) and a
handle on its own tables. Nothing else of the core is reachable from
``protocols/`` (the import contracts in ``.ci/run`` keep it so): the store, the CA
registry and the backends stay behind this module and the Authority.

Why a door per protocol and not the Authority itself: the door fixes the protocol
name on every call (a SCEP adapter cannot enroll under an ACME configuration), and
it is the one place that decides what an adapter may see.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Iterator, Mapping, Protocol

from aiohttp import web
from cryptography import x509
from sqlalchemy.ext.asyncio import AsyncConnection

from .ca.backend import (
    CertificateStatus,
    CsrPolicy,
    GeneratedKeyCertificate,
    IssuedCertificate,
    IssueOverrides,
    PendingRequest,
    RevocationReason,
)
from .clock import Clock
from .config import Config
from .credentials import (
    DEFAULT_LOCKOUT,
    NO_LOCKOUT,
    CredentialInfo,
    Credentials,
    IssuedCredential,
    LockedOut,
    LockoutPolicy,
    check_username,
)
from . import metrics, sealing
from .errors import BadRequest, ErrorKind, GatewayError, NotFound
from .leases import new_holder, release_lease, take_lease
from .profiles.model import Profile
from .sealing import Sealer
from .store.direct_reads import PreparedRead
from .store.errors import connection_lost, once_more_if_connection_lost
from .store.queries import CONFIG as CONFIG_GENERATION
from .store.queries import EntityQueries, GenerationQueries
from .store.queries.entities import PREPARED_STATUS_BY_ID as ENTITY_STATUS_BY_ID
from .store.records import (
    CertificateRecord,
    EndEntityRecord,
    ProtocolConfigRecord,
    RequestRecord,
    serial_hex,
    serial_int,
    utcnow,
)

__all__ = [
    # the door
    "Door", "DOORS", "door", "open_door", "ProtocolTables", "OwnTablesInTransaction", "Enrollment",
    # records and values an adapter reads through it
    "CertificateRecord", "EndEntityRecord", "ProtocolConfigRecord", "RequestRecord",
    "CertificateStatus", "GeneratedKeyCertificate", "IssuedCertificate", "IssueOverrides",
    "CsrPolicy", "PendingRequest", "RevocationReason", "serial_hex", "serial_int", "utcnow", "Clock",
    # one-time challenges one protocol hands out for another (door.challenge_issuer)
    "ChallengeIssuer", "OneTimeChallenge",
    # enrollment credentials (door.credentials)
    "Credentials", "CredentialInfo", "IssuedCredential", "LockedOut", "LockoutPolicy", "DEFAULT_LOCKOUT",
    "NO_LOCKOUT", "check_username",
    # a holder id for door.take_lease
    "new_holder",
    # whether an error is a lost store connection (a read may then run once more), and that run
    "connection_lost", "once_more_if_connection_lost",
    # a point read every request makes, compiled once (ProtocolTables.read_rows)
    "PreparedRead",
]

if TYPE_CHECKING:
    from .runtime import Gateway

Enrollment = IssuedCertificate | PendingRequest

OwnTablesInTransaction = Callable[[AsyncConnection, x509.Certificate], Awaitable[None]]
"""Protocol state that must commit with the certificate (an ACME order turning valid,
a SCEP transaction recorded): runs on the issuance transaction's connection."""


@dataclass(frozen=True)
class OneTimeChallenge:
    """A challenge just issued: its value in clear (returned once, stored hashed by the
    protocol that redeems it), when it expires and the subject it is bound to."""

    value: str = field(repr=False)
    config_id: str
    expires_at: dt.datetime
    bound_subject: str
    url: str
    """Where the device redeems it (the configuration's enrollment URL)."""


class ChallengeIssuer(Protocol):
    """What a protocol that redeems one-time challenges (SCEP) offers the protocols that
    hand them out (the MDM web service): its adapter's ``challenge_issuer(door)``, reached
    through :meth:`Door.challenge_issuer`, so no protocol imports another."""

    async def issue(
        self, config_id: str, *, bound_subject: str, profile: str, issued_by: str,
        ttl: dt.timedelta | None = None, attributes: Mapping[str, str] | None = None,
        entity: str | None = None,
    ) -> OneTimeChallenge:
        """A one-time challenge for the configuration ``config_id``, valid once, for a
        request whose subject is ``bound_subject``, issued under ``profile``; ``ttl``
        None takes the configuration's default. ``entity`` names the end entity the
        certificate will belong to (None: the redeeming protocol's own naming), so the
        protocol that asked keeps one name per device across its flows.
        NotFound / BadRequest / Conflict."""

    async def provision(self, config_id: str, ca_id: str, *, profiles: list[str], actor: str) -> str:
        """Create a configuration of the redeeming protocol that accepts only these
        one-time challenges, offering ``profiles``; returns its URL."""

    def url(self, config_id: str) -> str:
        """The enrollment URL of the configuration ``config_id``."""


class ProtocolTables:
    """The adapter's own tables: connections on the core's engines, nothing else.

    Adapters run SQLAlchemy Core statements on tables they declare in their own
    ``schema.py`` (and migrate with their own Alembic branch); core tables are
    reached through the :class:`Door` verbs only.
    """

    def __init__(self, gateway: "Gateway") -> None:
        self._store = gateway.store
        self._replicated = gateway.config.store_has_replicas

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._store.dialect

    @property
    def replicated(self) -> bool:
        """True when other processes share these tables (workers, replicas): state that
        must be seen by all of them has to live here, not in memory."""
        return self._replicated

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read connection (no transaction is held open beyond the block)."""
        async with self._store.read() as q:
            yield q.connection

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction: commits when the block ends, rolls back if it raises.
        Database errors surface as :class:`gateway.errors.GatewayError` kinds."""
        async with self._store.transaction() as q:
            yield q.connection

    def translated(self, what: str) -> contextlib.AbstractContextManager[None]:
        """Map driver errors raised inside the block to gateway errors (for adapters that
        run statements on a connection they hold)."""
        return self._store.translated(what)

    async def read_rows(self, prepared: PreparedRead, params: dict[str, Any], what: str) -> list[Any]:
        """The rows of one prepared SELECT on these tables (a point read each request
        makes: on the bare driver where the store allows it, see gateway.store.direct_reads).
        Rows offer ``row._mapping`` and attribute access."""
        return await self._store.read_rows(prepared, params, what)


@dataclass(frozen=True)
class Urls:
    """Where this gateway is reachable, for the URLs a protocol hands out."""

    https: str
    http: str


class Door:
    """A protocol's view of the core. Built by the composition root, one per protocol."""

    def __init__(self, gateway: "Gateway", protocol: str) -> None:
        self._gw = gateway
        self.protocol = protocol
        self.tables = ProtocolTables(gateway)
        self._sealing_master: bytes | None = None

    # --- settings --------------------------------------------------------------------
    @property
    def config(self) -> Config:
        """The gateway's configuration file (read-only by convention)."""
        return self._gw.config

    @property
    def clock(self) -> Clock:
        return self._gw.clock

    def sealing_passphrase(self) -> bytes:
        """The key-encryption passphrase for secrets the protocol keeps in its own tables
        (EAB keys, RA keys): encrypted at rest under the same passphrase as CA keys."""
        return self._gw.config.ca_passphrase()

    def sealer(self, purpose: str) -> Sealer:
        """A :class:`gateway.sealing.Sealer` for this protocol's ``purpose`` (e.g. a
        directory password); the passphrase is stretched once per door."""
        if self._sealing_master is None:
            self._sealing_master = sealing.stretch(self.sealing_passphrase())
        return Sealer(sealing.derive(self._sealing_master, f"{self.protocol}:{purpose}".encode()))

    # --- protocol configurations ------------------------------------------------------
    async def configuration(self, config_id: str) -> ProtocolConfigRecord:
        """An enabled configuration of this protocol (NotFound / Forbidden otherwise)."""
        return await self._gw.authority.config(config_id, self.protocol)

    def check_configuration(self, rec: ProtocolConfigRecord | None, config_id: str) -> ProtocolConfigRecord:
        """The checks of :meth:`configuration` on a record read moments ago (a cache)."""
        return self._gw.authority.checked_config(rec, config_id, self.protocol)

    async def find_configuration(self, config_id: str) -> ProtocolConfigRecord | None:
        """This protocol's configuration, enabled or not (for admin commands)."""
        async with self._gw.store.read() as q:
            rec = await q.configs.get(config_id)
        return rec if rec is not None and rec.protocol == self.protocol else None

    async def configurations(self, *, enabled_only: bool = False) -> list[ProtocolConfigRecord]:
        async with self._gw.store.read() as q:
            recs = await q.configs.list(self.protocol)
        return [r for r in recs if r.enabled] if enabled_only else recs

    async def create_configuration(
        self, config_id: str, ca_id: str, profiles: list[str], *, default_profile: str | None = None,
        settings: dict[str, Any] | None = None, credentials: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> ProtocolConfigRecord:
        return await self._gw.authority.create_config(
            config_id, self.protocol, ca_id, profiles, default_profile=default_profile,
            settings=settings, credentials=credentials, actor=actor,
        )

    async def update_configuration(
        self, config_id: str, *, settings: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
    ) -> None:
        """Replace the settings and/or credentials documents; bumps the configuration
        generation so every worker and replica sees the change on its next request."""
        fields: dict[str, Any] = {}
        if settings is not None:
            fields["settings"] = settings
        if credentials is not None:
            fields["credentials"] = credentials
        async with self._gw.store.transaction() as q:
            rec = await q.configs.get(config_id)
            if rec is None or rec.protocol != self.protocol:
                raise NotFound(f"no {self.protocol} protocol configuration {config_id!r}")
            if fields:
                await q.configs.update(config_id, **fields)

    async def configuration_generation(self) -> int:
        """A number that changes whenever any protocol configuration changes, in any
        process on this store: caches keyed by it are never stale past one request."""
        return await self._gw.store.config_generation_now()

    async def configuration_generation_on(self, conn: AsyncConnection) -> int:
        """:meth:`configuration_generation` read on ``conn``, a connection of :attr:`tables`:
        an adapter that reads its own tables at the start of every request checks its
        caches in that same round trip (SCEP's PKIOperation)."""
        return await GenerationQueries(conn).get(CONFIG_GENERATION)

    # --- profiles ----------------------------------------------------------------------
    @property
    def profiles(self) -> Mapping[str, Profile]:
        return self._gw.profiles

    def profile(self, name: str) -> Profile | None:
        return self._gw.profiles.get(name)

    # --- enrollment -----------------------------------------------------------------------
    async def enroll(
        self, config_id: str, csr: x509.CertificateSigningRequest | bytes, *, entity: str,
        entity_kind: str = "device", profile: str | None = None,
        overrides: IssueOverrides = IssueOverrides(), event_type: str = "issue",
        actor: str | None = None, request_id: str | None = None,
        entity_attributes: dict[str, Any] | None = None,
        within: OwnTablesInTransaction | None = None, record: ProtocolConfigRecord | None = None,
    ) -> Enrollment:
        """Issue (or hold for approval) a certificate; see :meth:`Authority.enroll`.
        Its outcome is counted here (``gateway_enrollments_total``)."""
        with self._counted(config_id):
            result = await self._gw.authority.enroll(
                config_id, self.protocol, csr, entity=entity, entity_kind=entity_kind, profile=profile,
                overrides=overrides, event_type=event_type, actor=actor, request_id=request_id,
                entity_attributes=entity_attributes, within=within, record=record,
            )
        metrics.count_enrollment(self.protocol, config_id,
                                 "pending" if isinstance(result, PendingRequest) else "issued")
        return result

    @contextlib.contextmanager
    def _counted(self, config_id: str) -> Iterator[None]:
        """Count an enrollment the core refused (``refused``, by error kind) or could not
        serve (``error``: store or CA unavailable, a bug)."""
        try:
            yield
        except GatewayError as exc:
            outcome = "error" if exc.kind in (ErrorKind.UNAVAILABLE, ErrorKind.INTERNAL) else "refused"
            metrics.count_enrollment(self.protocol, config_id, outcome, exc.kind.value)
            raise
        except Exception:
            metrics.count_enrollment(self.protocol, config_id, "error", ErrorKind.INTERNAL.value)
            raise

    def count_error(self, config_id: str | None, reason: str) -> None:
        """Count an error answer at the protocol's edge (``gateway_protocol_errors_total``):
        ``reason`` is the protocol's own name for it (ACME problem type, SCEP failInfo, EST
        error kind), a fixed set; ``config_id`` only of a configuration that exists, else None."""
        metrics.count_protocol_error(self.protocol, config_id, reason)

    async def keygen(
        self, config_id: str, *, entity: str, key_algorithm: str, subject: x509.Name,
        sans: tuple[x509.GeneralName, ...] = (), profile: str | None = None,
        pkcs12_password: bytes | None = None, pkcs12_encryption: str = "modern", entity_kind: str = "device",
        actor: str | None = None,
    ) -> GeneratedKeyCertificate:
        with self._counted(config_id):
            result = await self._gw.authority.keygen(
                config_id, self.protocol, entity=entity, key_algorithm=key_algorithm, subject=subject,
                sans=sans, profile=profile, pkcs12_password=pkcs12_password,
                pkcs12_encryption=pkcs12_encryption, entity_kind=entity_kind, actor=actor,
            )
        metrics.count_enrollment(self.protocol, config_id, "issued")
        return result

    async def issue_internal(
        self, ca_id: str, profile: str, public_key: object, overrides: IssueOverrides, *,
        purpose: str, config_id: str | None = None, actor: str = "system",
    ) -> IssuedCertificate:
        """A certificate the protocol itself needs (SCEP RA, a signing or exchange
        certificate) for a key it generated: recorded and audited like any issuance.
        Pass the private key rather than its public half where a CA that signs only
        CSRs (an upstream CA) may be asked: the core makes the CSR with it."""
        return await self._gw.authority.issue_internal(
            ca_id, profile, public_key, overrides, purpose=purpose, protocol=self.protocol,
            protocol_config=config_id, actor=actor,
        )

    async def pending_request(self, request_id: str) -> RequestRecord | None:
        async with self._gw.store.read() as q:
            return await q.requests.get(request_id)

    async def ca_holds_requests(self, ca_id: str) -> bool:
        """Whether the CA may hold a request and decide later (an upstream CA with its own
        approval queue), so that the protocol keeps what it needs to answer a retry."""
        return (await self._gw.cas.backend(ca_id)).capabilities.holds

    async def poll(self, request_id: str) -> Enrollment:
        return await self._gw.authority.poll(request_id)

    async def approve(self, request_id: str, operator: str) -> IssuedCertificate:
        return await self._gw.authority.approve(request_id, operator)

    async def reject(self, request_id: str, operator: str, reason: str) -> PendingRequest:
        return await self._gw.authority.reject(request_id, operator, reason)

    # --- certificates and revocation -------------------------------------------------------
    async def certificate(self, serial: str) -> CertificateRecord:
        """By hex serial (NotFound / BadRequest otherwise)."""
        return await self._gw.authority.certificate(serial)

    async def find_certificate(self, serial: str) -> CertificateRecord | None:
        """By hex serial, None when unknown or not a serial."""
        try:
            return await self._gw.authority.certificate(serial)
        except (NotFound, BadRequest):  # BadRequest: not a hex serial, so no such certificate
            return None

    async def certificate_by_fingerprint(self, sha256_hex: str) -> CertificateRecord | None:
        async with self._gw.store.read() as q:
            return await q.certificates.by_fingerprint(sha256_hex)

    async def revoke(
        self, serial: str, reason: RevocationReason, *, actor: str,
        invalidity_date: dt.datetime | None = None, config_id: str | None = None,
    ) -> CertificateStatus:
        return await self._gw.authority.revoke(
            serial, reason, actor=actor, invalidity_date=invalidity_date, protocol_config=config_id,
        )

    async def suspend(self, serial: str, *, actor: str, config_id: str | None = None) -> CertificateStatus:
        return await self._gw.authority.suspend(serial, actor=actor, protocol_config=config_id)

    async def unsuspend(self, serial: str, *, actor: str, config_id: str | None = None) -> CertificateStatus:
        return await self._gw.authority.unsuspend(serial, actor=actor, protocol_config=config_id)

    # --- CA material --------------------------------------------------------------------
    async def chain(self, ca_id: str) -> tuple[x509.Certificate, ...]:
        """The CA's certificate first, then its issuers up to the root (issuing CAs only)."""
        return await self._gw.authority.chain(ca_id)

    async def crl(self, ca_id: str) -> bytes:
        """The CA's current full CRL (DER)."""
        return await self._gw.authority.crl(ca_id)

    def ca_certificate(self, ca_id: str) -> x509.Certificate | None:
        """Any known CA's certificate (root, issuing or external), None if it has none."""
        return self._gw.cas.certificate(ca_id)

    def trust_anchors(self) -> list[x509.Certificate]:
        """Every CA certificate the gateway knows (for client-certificate verification)."""
        return self._gw.cas.trust_anchors()

    # --- end entities and events ------------------------------------------------------------
    async def entity(self, entity_id: str) -> EndEntityRecord | None:
        async with self._gw.store.read() as q:
            return await q.entities.get(entity_id)

    async def entity_status(self, entity_id: str) -> str | None:
        """An end entity's status (one prepared point read; None: no such entity)."""
        rows = await self._gw.store.read_rows(ENTITY_STATUS_BY_ID, {"entity_id": entity_id}, "end entity")
        return str(rows[0].status) if rows else None

    async def entity_status_on(self, conn: AsyncConnection, entity_id: str) -> str | None:
        """An end entity's status read on ``conn``, a connection of :attr:`tables`: an
        adapter that reads its own tables for a request (ACME's account) gets it in that
        same round trip instead of a read of its own. None: no such entity."""
        rec = await EntityQueries(conn).get(entity_id)
        return rec.status if rec is not None else None

    async def register_entity(
        self, conn: AsyncConnection, name: str, *, entity_id: str, kind: str = "device",
        config_id: str | None = None, attributes: dict[str, Any] | None = None,
    ) -> EndEntityRecord:
        """Register a new end entity on ``conn``, a transaction of the adapter's own tables
        (:meth:`ProtocolTables.transaction`): the protocol's row that stands for it (an ACME
        account) and the entity commit together or not at all. Conflict if ``name`` is
        taken in the configuration."""
        rec = EndEntityRecord(id=entity_id, name=name, kind=kind, protocol_config=config_id,
                              attributes=attributes or {})
        await EntityQueries(conn).insert(rec)
        return rec

    async def set_entity_status(self, entity_id: str, status: str, *, actor: str) -> EndEntityRecord:
        """Activate, deactivate or decommission an end entity (audited)."""
        return await self._gw.authority.set_entity_status(entity_id, status, actor=actor)

    async def record_event(self, type: str, status: str, **fields: Any) -> int:
        """An audit event (identifiers and outcomes only: never secrets, CSRs or keys)."""
        return await self._gw.authority.events.record(type, status, **fields)

    # --- other protocols' offers -------------------------------------------------------
    def challenge_issuer(self, protocol: str) -> ChallengeIssuer | None:
        """The one-time challenges ``protocol`` redeems (SCEP's), None when that protocol
        is not installed or offers none. Its own door does the work, so what it writes
        is audited and scoped as that protocol's."""
        from .composition import adapter

        found = adapter(protocol)
        offer = getattr(found, "challenge_issuer", None) if found is not None else None
        return None if offer is None else offer(self._gw.door(protocol))

    # --- cluster-wide jobs --------------------------------------------------------------
    async def take_lease(self, job: str, holder: str, *, ttl: dt.timedelta) -> bool:
        """Take or renew the lease on this protocol's ``job`` (run it only while this is
        True): one holder across every worker and replica (:mod:`gateway.leases`)."""
        return await take_lease(self._gw.store, f"{self.protocol}:{job}", holder, now=self.clock(), ttl=ttl)

    async def release_lease(self, job: str, holder: str) -> None:
        await release_lease(self._gw.store, f"{self.protocol}:{job}", holder)

    # --- enrollment credentials ----------------------------------------------------------
    @functools.cached_property
    def credentials(self) -> Credentials:
        """Users and shared secrets of this protocol's configurations (scrypt hashes,
        lockout after repeated failures held in the store): see :mod:`gateway.credentials`."""
        return Credentials(self._gw.store, self._gw.authority.events, self._gw.clock, self.protocol)


DOORS = web.AppKey("doors", dict)
"""Every protocol's door, by protocol name (set by the app factory)."""


def door(where: web.Application | web.Request, protocol: str) -> Door:
    """The door of ``protocol``, from the app being built or from a request on it or
    any of its sub-apps."""
    doors: dict[str, Door] = where.config_dict[DOORS] if isinstance(where, web.Request) else where[DOORS]
    return doors[protocol]


@contextlib.asynccontextmanager
async def open_door(config: Config, protocol: str) -> AsyncIterator[Door]:
    """A door on a gateway opened for one command (the protocol CLIs). Refuses a data
    directory ``gateway init`` has not made (opening it would create an empty store)."""
    from .bootstrap import is_initialized
    from .errors import ConfigError
    from .runtime import Gateway

    if not is_initialized(config.data_dir):
        raise ConfigError(f"{config.data_dir} is not initialized; run 'gateway init' first")
    gw = await Gateway.open(config)
    try:
        yield gw.door(protocol)
    finally:
        await gw.close()


DoorCommand = Callable[[Door, argparse.Namespace], Awaitable[int]]


def door_command(protocol: str, fn: DoorCommand) -> Callable[[argparse.Namespace], Awaitable[int]]:
    """An argparse ``fn=`` for a protocol CLI command run on a door of ``--data-dir``."""
    from .config import load_config

    async def run(args: argparse.Namespace) -> int:
        async with open_door(load_config(Path(args.data_dir)), protocol) as door:
            return await fn(door, args)
    return run


def is_configuration_id(text: str) -> bool:
    """Whether ``text`` has the shape of a protocol configuration id: a URL segment that
    cannot name one is answered without a store read."""
    from .authority import CONFIG_ID

    return CONFIG_ID.match(text) is not None


def default_issuing_ca() -> str:
    """The issuing CA ``gateway init`` makes (the default ``--ca`` of protocol CLIs)."""
    from .bootstrap import ISSUING_CA

    return ISSUING_CA


def cli_actor() -> str:
    """Who an operator command is audited as: ``cli:<os user>`` (``cli`` when the
    user cannot be told), the same for the core's and every protocol's commands."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"
