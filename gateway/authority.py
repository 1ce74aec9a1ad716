"""The registration authority behind every protocol's door (and the admin API).

A protocol adapter parses its wire format, authenticates its client, and then asks
its door (:mod:`gateway.door`) to enroll, poll, revoke or look up; the door asks
here. The Authority applies what is common to every protocol and owns every write:
the protocol configuration (which CA, which profiles, manual approval), the end
entity's state (a deactivated one gets nothing), the approval queue, the issuance
record, revocation state, CRLs, and the audit trail. A CA backend only signs,
revokes and returns its chain (:class:`gateway.ca.backend.CABackend`), so a new
backend kind needs no change here. Order of an issuance: the backend signs with a
fresh serial, then the certificate, its audit event and the protocol's own state
commit in one transaction; a serial collision signs again, so no serial is reused
and no half record is left.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from sqlalchemy.ext.asyncio import AsyncConnection

from . import distribution, keys
from .ca.backend import (
    CABackend,
    CertificateStatus,
    GeneratedKeyCertificate,
    IssuedCertificate,
    IssueOverrides,
    PendingRequest,
    PendingUpstream,
    RevocationReason,
    RevokedEntry,
    Signed,
    SignRequest,
)
from .ca.builder import check_proof_of_possession, load_csr
from .ca.local import certificate_record, status_from_record
from .ca.overrides import overrides_from_json, overrides_to_json
from .ca.pkcs12 import build_pkcs12
from .ca.registry import CARegistry
from .clock import Clock, system_clock
from .errors import BadRequest, Conflict, ErrorKind, Forbidden, GatewayError, NotFound, PolicyViolation, Unavailable
from .events import EventRecorder, log_committed
from .metrics import CERTIFICATES_ISSUED, count_enrollment
from .profiles.model import Profile
from .store import SerialCollision, Store
from .store.queries.base import normalize_serial, record
from .store.queries.certificates import PREPARED_BY_SERIAL as CERT_BY_SERIAL
from .store.queries.entities import PREPARED_BY_NAME as ENTITY_BY_NAME
from .store.queries.entities import PREPARED_BY_NAME_UNBOUND as ENTITY_BY_NAME_UNBOUND
from .store.records import (
    CARecord,
    CertificateRecord,
    EndEntityRecord,
    EventRecord,
    ProtocolConfigRecord,
    RequestRecord,
    serial_hex,
    serial_int,
)

log = logging.getLogger(__name__)

MAX_SERIAL_ATTEMPTS = 5

InTransaction = Callable[[AsyncConnection, x509.Certificate], Awaitable[None]]
"""A protocol's own state that commits with the certificate, on the issuance transaction."""


CONFIG_ID = re.compile(r"^[a-z0-9_-]{2,18}$")
ENTITY_STATES = ("active", "inactive", "decommissioned")

Enrollment = IssuedCertificate | PendingRequest


@dataclass(frozen=True)
class EntityStatusChange:
    """An end entity after a status change, and what became of its certificates:
    ``revoked`` by this change (decommissioning with revocation), ``failed`` to revoke,
    and ``remaining_valid`` (unrevoked and unexpired) afterwards."""

    entity: EndEntityRecord
    revoked: int
    failed: int
    remaining_valid: int


class EntityRefused(Forbidden):
    """An end entity that is not active; carries its id so the refusal is audited against it."""

    def __init__(self, entity_id: str, detail: str) -> None:
        super().__init__(detail)
        self.entity_id = entity_id


def is_private_key(value: object) -> bool:
    return isinstance(value, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey,
                              ed448.Ed448PrivateKey))


def _csr_for(backend: CABackend, key: Any, overrides: IssueOverrides) -> x509.CertificateSigningRequest | None:
    """A CSR for a key the gateway holds, when the CA signs only CSRs (an upstream CA):
    the subject and SANs the request asks for, signed with the key itself."""
    if key is None or not backend.capabilities.needs_csr:
        return None
    builder = x509.CertificateSigningRequestBuilder().subject_name(overrides.subject or x509.Name([]))
    if overrides.sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(overrides.sans)), critical=False)
    return builder.sign(key, keys.signature_hash_for(key))


def check_config_id(config_id: str) -> str:
    if not CONFIG_ID.match(config_id):
        raise BadRequest(
            "protocol configuration id must be 2-18 chars of lowercase letters, digits, '-' and '_'"
        )
    return config_id


@dataclass(frozen=True)
class CRLPolicy:
    validity: dt.timedelta
    overlap: dt.timedelta  # a CRL is reissued this long before its nextUpdate


class Authority:
    def __init__(self, store: Store, cas: CARegistry, profiles: Mapping[str, Profile],
                 protocols: tuple[str, ...], crl_policy: CRLPolicy, clock: Clock = system_clock) -> None:
        self.protocols = protocols
        self.store = store
        self.cas = cas
        self.profiles = profiles
        self.crl_policy = crl_policy
        self.clock = clock
        self.events = EventRecorder(store)
        self._crl_locks: dict[str, asyncio.Lock] = {}

    def _now(self) -> dt.datetime:
        """The clock at the store's precision (whole seconds), for what is recorded."""
        return self.clock().replace(microsecond=0)

    # --- protocol configurations -------------------------------------------------
    async def create_config(
        self,
        config_id: str,
        protocol: str,
        ca_id: str,
        profiles: list[str],
        default_profile: str | None = None,
        settings: dict[str, Any] | None = None,
        credentials: dict[str, Any] | None = None,
        actor: str | None = None,
    ) -> ProtocolConfigRecord:
        check_config_id(config_id)
        if protocol not in self.protocols:
            raise BadRequest(f"unknown protocol {protocol!r}; one of {list(self.protocols)}")
        await self.cas.backend(ca_id)
        if not profiles:
            raise BadRequest("a protocol configuration needs at least one profile")
        for name in profiles:
            if name not in self.profiles:
                raise NotFound(f"unknown certificate profile {name!r}")
        default = default_profile or profiles[0]
        if default not in profiles:
            raise BadRequest("the default profile must be one of the configuration's profiles")
        approval = (settings or {}).get("approval", "auto")
        if approval not in ("auto", "manual"):
            raise BadRequest("settings.approval must be 'auto' or 'manual'")
        rec = ProtocolConfigRecord(
            id=config_id, protocol=protocol, ca_id=ca_id, profiles=list(profiles),
            default_profile=default, credentials=credentials or {}, settings=settings or {},
        )
        async with self.store.transaction() as q:
            await q.configs.insert(rec)
        await self.events.record(
            "config_create", "success", protocol_config=config_id, ca_id=ca_id, actor=actor
        )
        return rec

    async def config(self, config_id: str, protocol: str | None = None) -> ProtocolConfigRecord:
        async with self.store.read() as q:
            rec = await q.configs.get(config_id)
        return self.checked_config(rec, config_id, protocol)

    @staticmethod
    def checked_config(rec: ProtocolConfigRecord | None, config_id: str,
                        protocol: str | None) -> ProtocolConfigRecord:
        if rec is not None and rec.id != config_id:
            rec = None
        if rec is None or (protocol is not None and rec.protocol != protocol):
            raise NotFound(f"no {protocol or ''} protocol configuration {config_id!r}".replace("  ", " "))
        if not rec.enabled:
            raise Forbidden(f"protocol configuration {config_id!r} is disabled")
        return rec

    # --- end entities ------------------------------------------------------------
    async def entity_for(
        self, config: ProtocolConfigRecord | None, name: str, kind: str = "device",
        attributes: dict[str, Any] | None = None,
    ) -> EndEntityRecord:
        """Find or register the end entity; refuse one that is not active."""
        config_id = config.id if config else None
        rec = await self._find_entity(name, config_id)
        if rec is None:
            rec = EndEntityRecord(
                id=uuid.uuid4().hex, name=name, kind=kind, protocol_config=config_id,
                attributes=attributes or {},
            )
            try:
                async with self.store.transaction() as q:
                    await q.entities.insert(rec)
            except Conflict:  # registered concurrently by another request
                async with self.store.read() as q:
                    found = await q.entities.find(name, config_id)
                if found is None:
                    raise
                rec = found
        if rec.status != "active":
            raise EntityRefused(rec.id, f"end entity {name!r} is {rec.status}")
        return rec

    async def _find_entity(self, name: str, config_id: str | None) -> EndEntityRecord | None:
        """q.entities.find as a prepared point read (every enrollment makes it)."""
        if config_id is None:
            rows = await self.store.read_rows(ENTITY_BY_NAME_UNBOUND, {"name": name}, "end entity")
        else:
            rows = await self.store.read_rows(ENTITY_BY_NAME, {"name": name, "config_id": config_id}, "end entity")
        return record(EndEntityRecord, rows[0]) if rows else None

    async def set_entity_status(self, entity_id: str, status: str, actor: str) -> EndEntityRecord:
        if status not in ENTITY_STATES:
            raise BadRequest(f"end entity status must be one of {list(ENTITY_STATES)}")
        async with self.store.transaction() as q:
            rec = await q.entities.get(entity_id)
            if rec is None:
                raise NotFound(f"no end entity {entity_id}")
            if rec.status == "decommissioned" and status != "decommissioned":
                raise Conflict("a decommissioned end entity cannot be reactivated")
            await q.entities.update(entity_id, status=status)
            updated = await q.entities.get(entity_id)
        assert updated is not None
        await self.events.record(
            f"entity_{status}", "success", entity_id=entity_id,
            protocol_config=rec.protocol_config, actor=actor,
        )
        return updated

    async def change_entity_status(
        self, entity_id: str, status: str, actor: str, *, revoke_certificates: bool = False,
    ) -> EntityStatusChange:
        """Set the status; when decommissioning with ``revoke_certificates``, also revoke
        every certificate of the entity still in force (reason cessationOfOperation, each
        audited), then reissue each affected CA's CRL once. Asking again revokes what a
        failure left, since a decommissioned entity may be decommissioned again."""
        if revoke_certificates and status != "decommissioned":
            raise BadRequest("revoke_certificates applies only to status 'decommissioned'")
        entity = await self.set_entity_status(entity_id, status, actor)
        revoked = failed = 0
        if revoke_certificates:
            async with self.store.read() as q:
                live = await q.certificates.live_for_entity(entity_id, self._now())
            touched: set[str] = set()
            for rec in live:
                try:
                    await self._status_change("revoke", rec.serial, actor, None,
                                              RevocationReason.cessation_of_operation, reissue_crl=False)
                    revoked += 1
                except Conflict:
                    pass  # revoked meanwhile by someone else: nothing left to do
                except GatewayError as exc:
                    failed += 1
                    log.warning("decommissioning %s: certificate %s not revoked: %s",
                                entity_id, rec.serial, exc.detail)
                touched.add(rec.ca_id)
            for ca_id in sorted(touched):
                backend = await self.cas.backend(ca_id)
                if backend.capabilities.crl:
                    await self.crl(ca_id, force=True)
        async with self.store.read() as q:
            remaining = len(await q.certificates.live_for_entity(entity_id, self._now()))
        return EntityStatusChange(entity, revoked, failed, remaining)

    # --- enrollment --------------------------------------------------------------
    def _profile_for(self, config: ProtocolConfigRecord, profile: str | None) -> str:
        name = profile or config.default_profile
        if name not in config.profiles:
            raise NotFound(f"profile {name!r} is not offered by configuration {config.id!r}")
        return name

    def profile(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            raise NotFound(f"unknown certificate profile {name!r}") from None

    async def enroll(
        self,
        config_id: str,
        protocol: str,
        csr: x509.CertificateSigningRequest | bytes,
        *,
        entity: str,
        entity_kind: str = "device",
        profile: str | None = None,
        overrides: IssueOverrides = IssueOverrides(),
        event_type: str = "issue",
        actor: str | None = None,
        request_id: str | None = None,
        entity_attributes: dict[str, Any] | None = None,
        within: InTransaction | None = None,
        record: ProtocolConfigRecord | None = None,
    ) -> Enrollment:
        """Issue (or hold for approval) a certificate for an end entity of a configuration.

        ``request_id`` names a held request (SCEP uses its transactionID) so the
        client can poll for it; ``event_type`` is ``issue`` or ``renew``.
        The certificate, its success event and ``within`` (the protocol's own state,
        e.g. an ACME order turning valid) commit in one transaction: a failure in
        any of them stores none of them. ``within`` does not run for held requests.
        ``record``: the configuration as the caller read it moments ago (its cache),
        checked here like a fresh one; saves a read per enrollment.
        """
        config = self.checked_config(record, config_id, protocol) if record is not None \
            else await self.config(config_id, protocol)
        entity_id: str | None = None
        try:
            ent = await self.entity_for(config, entity, entity_kind, entity_attributes)
            entity_id = ent.id
            policy = overrides.csr_policy  # what the protocol configuration accepts (SHA-1, ...)
            parsed = load_csr(csr, legacy_strings=policy.legacy_strings) if isinstance(csr, bytes) else csr
            check_proof_of_possession(parsed, policy)
            backend = await self.cas.backend(config.ca_id)
            request = SignRequest(
                profile=self.profile(self._profile_for(config, profile)), public_key=parsed.public_key(),
                csr=parsed, overrides=overrides, entity_id=ent.id, protocol_config=config.id,
            )
            if config.settings.get("approval") == "manual":
                return await self._hold(backend, request, request_id, EventRecord(
                    type=event_type, status="pending", entity_id=ent.id, protocol_config=config.id,
                    ca_id=config.ca_id, detail={"actor": actor} if actor is not None else {},
                ))
            result = await self._issue(
                backend, request, request_id=request_id, within=within, event=EventRecord(
                    type=event_type, status="success", entity_id=ent.id, protocol_config=config.id,
                    ca_id=config.ca_id, detail={"actor": actor} if actor is not None else {},
                ),
            )
        except GatewayError as exc:
            entity_id = entity_id or getattr(exc, "entity_id", None)
            await self.events.record(
                event_type, "failure", entity_id=entity_id, protocol_config=config.id,
                ca_id=config.ca_id, error=exc.kind.value, detail=exc.detail, actor=actor,
            )
            raise
        return result

    async def _issue(
        self, backend: CABackend, request: SignRequest, *, request_id: str | None,
        within: InTransaction | None = None, event: EventRecord | None = None,
        approve_request: str | None = None, expect: str = "approved",
    ) -> Enrollment:
        """Sign, then commit the certificate with its event, ``within`` and (when it
        issues a held request) the request's move to ``issued``, in one transaction."""
        for _ in range(MAX_SERIAL_ATTEMPTS):
            result = await backend.sign(request)
            if isinstance(result, PendingUpstream):
                return await self._held_upstream(backend, request, request_id or approve_request, result,
                                                  existing=approve_request, expect=expect, event=event)
            try:
                return await self._commit(backend, request, result, request_id=request_id, within=within,
                                          event=event, approve_request=approve_request, expect=expect)
            except SerialCollision:
                log.warning("serial collision on CA %s; signing again with a new serial", backend.id)
        raise Unavailable("could not allocate a unique serial number")

    async def _commit(
        self, backend: CABackend, request: SignRequest, signed: Signed, *, request_id: str | None,
        within: InTransaction | None, event: EventRecord | None, approve_request: str | None,
        expect: str,
    ) -> IssuedCertificate:
        cert = signed.certificate
        rec = certificate_record(
            cert, ca_id=backend.id, profile=request.profile.name, entity_id=request.entity_id,
            protocol_config=request.protocol_config, request_id=request_id or approve_request,
        )
        event_id = 0
        async with self.store.transaction() as q:
            await q.certificates.insert(rec)
            if approve_request is not None:
                if not await q.requests.update(approve_request, expect=expect, status="issued", serial=rec.serial):
                    raise Conflict(f"request {approve_request} is no longer {expect}")
            if event is not None:
                event.serial, event.created_at = rec.serial, self._now()
                event_id = await q.events.add(event)
            if within is not None:
                await within(q.connection, cert)
            if rec.protocol_config is not None:  # pushed to its destinations after the commit
                await distribution.enqueue_issued(q, rec, cert, backend.chain)
        if event is not None:
            log_committed(event, event_id)
        CERTIFICATES_ISSUED.labels(ca=backend.id).inc()
        log.info("issued serial=%s ca=%s profile=%s", rec.serial, backend.id, request.profile.name)
        return IssuedCertificate(backend.id, cert.serial_number, cert, await backend.chain())

    def _request_record(self, backend: CABackend, request: SignRequest, request_id: str | None,
                        status: str, handle: str | None = None) -> RequestRecord:
        if request.csr is None:
            raise BadRequest("only requests with a CSR can be held")
        return RequestRecord(
            id=request_id or uuid.uuid4().hex, ca_id=backend.id, profile=request.profile.name,
            csr_pem=request.csr.public_bytes(serialization.Encoding.PEM).decode(),
            overrides=overrides_to_json(request.overrides), status=status,
            entity_id=request.entity_id, protocol_config=request.protocol_config, upstream_handle=handle,
        )

    async def _hold(self, backend: CABackend, request: SignRequest, request_id: str | None,
                    event: EventRecord) -> PendingRequest:
        """Hold for operator approval; what the CA would refuse is refused now. The
        ``pending`` event commits with the request (the approvers' notification reads it)."""
        await backend.check(request)
        rec = self._request_record(backend, request, request_id, "pending")
        async with self.store.transaction() as q:
            await q.requests.insert(rec)
            event.request_id, event.created_at = rec.id, self._now()
            event_id = await q.events.add(event)
        log_committed(event, event_id)
        return PendingRequest(rec.id, backend.id, "pending")

    async def _held_upstream(self, backend: CABackend, request: SignRequest, request_id: str | None,
                             result: PendingUpstream, *, existing: str | None, expect: str,
                             event: EventRecord | None = None) -> PendingRequest:
        """The CA holds it: keep its handle, so a poll can ask again. A new request's
        ``pending`` event (``event`` held by the upstream) commits with it, as in :meth:`_hold`."""
        if existing is not None:
            async with self.store.transaction() as q:
                moved = await q.requests.update(existing, expect=expect, status="upstream",
                                                upstream_handle=result.handle)
            if not moved:
                raise Conflict(f"request {existing} is no longer {expect}")
            return PendingRequest(existing, backend.id, "pending")
        rec = self._request_record(backend, request, request_id, "upstream", result.handle)
        held = None if event is None else dataclasses.replace(
            event, status="pending", request_id=rec.id, created_at=self._now(),
            detail={**event.detail, "held_by": "upstream"})
        event_id = 0
        async with self.store.transaction() as q:
            await q.requests.insert(rec)
            if held is not None:
                event_id = await q.events.add(held)
        if held is not None:
            log_committed(held, event_id)
        return PendingRequest(rec.id, backend.id, "pending")

    def _sign_request(self, rec: RequestRecord) -> SignRequest:
        csr = load_csr(rec.csr_pem.encode())
        return SignRequest(
            profile=self.profile(rec.profile), public_key=csr.public_key(), csr=csr,
            overrides=overrides_from_json(rec.overrides), entity_id=rec.entity_id,
            protocol_config=rec.protocol_config,
        )

    async def issue_direct(
        self,
        ca_id: str,
        csr: x509.CertificateSigningRequest | bytes,
        profile: str,
        overrides: IssueOverrides = IssueOverrides(),
        *,
        actor: str,
        source: str = "admin",
    ) -> IssuedCertificate:
        """Operator issuance (CLI, admin API) outside any protocol configuration; counted
        in ``gateway_enrollments_total`` under protocol ``source`` (``cli`` or ``admin``).
        The ``issue`` event commits with the certificate, so a scrape of
        ``gateway_direct_issued_total`` never sees the certificate without its actor."""
        event = EventRecord(type="issue", status="success", ca_id=ca_id,
                            detail={"actor": actor, "profile": profile})
        try:
            policy = overrides.csr_policy  # what the protocol configuration accepts (SHA-1, ...)
            parsed = load_csr(csr, legacy_strings=policy.legacy_strings) if isinstance(csr, bytes) else csr
            check_proof_of_possession(parsed, policy)
            backend = await self.cas.backend(ca_id)
            result = await self._issue(backend, SignRequest(
                profile=self.profile(profile), public_key=parsed.public_key(), csr=parsed, overrides=overrides,
            ), request_id=None, event=event)
            if not isinstance(result, IssuedCertificate):
                raise Unavailable(f"CA {ca_id} holds the request ({result.request_id}); poll it later")
        except GatewayError as exc:
            outcome = "error" if exc.kind in (ErrorKind.UNAVAILABLE, ErrorKind.INTERNAL) else "refused"
            count_enrollment(source, "", outcome, exc.kind.value)
            await self.events.record(
                "issue", "failure", ca_id=ca_id, error=exc.kind.value, detail=exc.detail, actor=actor
            )
            raise
        count_enrollment(source, "", "issued")
        return result

    async def issue_internal(
        self, ca_id: str, profile: str, public_key: Any, overrides: IssueOverrides, *,
        purpose: str, protocol: str | None, protocol_config: str | None, actor: str,
    ) -> IssuedCertificate:
        """A certificate for a key the gateway generated for itself (SCEP RA, the HTTPS
        listener, signing or exchange certificates): stored and audited like any other.
        ``public_key`` may be the private key itself, so that a CA that signs only CSRs
        (an upstream CA) gets one made with it."""
        event = EventRecord(
            type="internal_issue", status="success", ca_id=ca_id, protocol_config=protocol_config,
            detail={k: v for k, v in {"actor": actor, "purpose": purpose, "protocol": protocol,
                                      "profile": profile}.items() if v is not None},
        )
        try:
            backend = await self.cas.backend(ca_id)
            held = public_key if is_private_key(public_key) else None
            result = await self._issue(backend, SignRequest(
                profile=self.profile(profile), public_key=held.public_key() if held is not None else public_key,
                csr=_csr_for(backend, held, overrides), overrides=overrides, protocol_config=protocol_config,
            ), request_id=None, event=event)
            if not isinstance(result, IssuedCertificate):
                raise Unavailable(f"CA {ca_id} cannot issue internal certificates without approval")
        except GatewayError as exc:
            await self.events.record(
                "internal_issue", "failure", ca_id=ca_id, protocol_config=protocol_config,
                error=exc.kind.value, detail=exc.detail, actor=actor, purpose=purpose, protocol=protocol,
            )
            raise
        return result

    async def keygen(
        self,
        config_id: str,
        protocol: str,
        *,
        entity: str,
        key_algorithm: str,
        subject: x509.Name,
        sans: tuple[x509.GeneralName, ...] = (),
        profile: str | None = None,
        pkcs12_password: bytes | None = None,
        pkcs12_encryption: str = "modern",
        entity_kind: str = "device",
        actor: str | None = None,
    ) -> GeneratedKeyCertificate:
        """Server-side key generation for an end entity (EST serverkeygen, MDM PKCS#12):
        the key is made here, whatever backend signs."""
        config = await self.config(config_id, protocol)
        entity_id: str | None = None
        try:
            ent = await self.entity_for(config, entity, entity_kind)
            entity_id = ent.id
            spec = self.profile(self._profile_for(config, profile))
            desc = keys.parse_algorithm(key_algorithm)
            if desc.name not in spec.key_policy.allowed:
                raise PolicyViolation(f"key algorithm {desc.name} is not allowed by profile {spec.name}")
            backend = await self.cas.backend(config.ca_id)
            key = keys.generate_private_key(desc)
            overrides = IssueOverrides(subject=subject, sans=sans or None)
            result = await self._issue(backend, SignRequest(
                profile=spec, public_key=key.public_key(), csr=_csr_for(backend, key, overrides),
                overrides=overrides, entity_id=ent.id, protocol_config=config.id,
            ), request_id=None)
            if not isinstance(result, IssuedCertificate):
                raise Unavailable(f"CA {config.ca_id} holds the request; server key generation needs "
                                  "a CA that signs at once")
        except GatewayError as exc:
            entity_id = entity_id or getattr(exc, "entity_id", None)
            await self.events.record(
                "keygen", "failure", entity_id=entity_id, protocol_config=config.id,
                ca_id=config.ca_id, error=exc.kind.value, detail=exc.detail, actor=actor,
            )
            raise
        await self.events.record(
            "keygen", "success", entity_id=ent.id, protocol_config=config.id, ca_id=config.ca_id,
            serial=serial_hex(result.serial), actor=actor,
        )
        return GeneratedKeyCertificate(
            issued=result, private_key=key,
            pkcs12=(build_pkcs12(key, result.certificate, result.chain, pkcs12_password, pkcs12_encryption)
                    if pkcs12_password else None),
        )

    # --- pending requests ----------------------------------------------------------
    async def _request_backend(self, request_id: str) -> tuple[RequestRecord, CABackend]:
        async with self.store.read() as q:
            rec = await q.requests.get(request_id)
        if rec is None:
            raise NotFound(f"no pending request {request_id}")
        return rec, await self.cas.backend(rec.ca_id)

    async def poll(self, request_id: str) -> Enrollment:
        """A held request: the certificate once issued, else its pending/rejected state.
        A request an upstream CA holds is asked about again at that CA."""
        rec, backend = await self._request_backend(request_id)
        retry_after = None
        if rec.status == "upstream" and rec.upstream_handle is not None:
            try:
                result = await backend.poll(rec.upstream_handle)
            except (PolicyViolation, BadRequest, Forbidden) as exc:  # the upstream decided: refused
                await self._upstream_rejected(rec, exc.detail)
                return PendingRequest(rec.id, rec.ca_id, "rejected", reason=exc.detail)
            if isinstance(result, Signed):
                try:
                    issued = await self._commit(
                        backend, self._sign_request(rec), result, request_id=rec.id, within=None,
                        event=EventRecord(type="issue", status="success", entity_id=rec.entity_id,
                                          protocol_config=rec.protocol_config, ca_id=rec.ca_id,
                                          request_id=rec.id, detail={"held_by": "upstream"}),
                        approve_request=rec.id, expect="upstream",
                    )
                except Conflict:  # another replica's poll recorded it first
                    rec, backend = await self._request_backend(request_id)
                else:
                    return issued
            else:
                retry_after = result.retry_after
                if result.handle != rec.upstream_handle:
                    async with self.store.transaction() as q:
                        await q.requests.update(rec.id, expect="upstream", upstream_handle=result.handle)
        if rec.status == "issued" and rec.serial is not None:
            cert = await self.certificate(rec.serial)
            return IssuedCertificate(
                rec.ca_id, serial_int(rec.serial), x509.load_der_x509_certificate(cert.der), await backend.chain()
            )
        status = "pending" if rec.status in ("upstream", "approved") else rec.status
        return PendingRequest(rec.id, rec.ca_id, status,
                              serial=serial_int(rec.serial) if rec.serial else None, reason=rec.reason,
                              retry_after=retry_after)

    async def _upstream_rejected(self, rec: RequestRecord, reason: str) -> None:
        async with self.store.transaction() as q:
            moved = await q.requests.update(rec.id, expect="upstream", status="rejected", decided_by="upstream",
                                            decided_at=self._now(), reason=reason)
        if moved:
            await self.events.record(
                "reject", "success", entity_id=rec.entity_id, protocol_config=rec.protocol_config,
                ca_id=rec.ca_id, request_id=rec.id, actor="upstream", reason=reason,
            )

    async def approve(self, request_id: str, operator: str) -> IssuedCertificate:
        rec, backend = await self._request_backend(request_id)
        try:
            async with self.store.transaction() as q:
                approved = await q.requests.update(
                    request_id, expect="pending", status="approved", decided_by=operator, decided_at=self._now()
                )
            if not approved:
                raise Conflict(f"request {request_id} is {rec.status}, not pending")
            try:  # the approve event commits with the certificate: it is the "issued" notification
                result = await self._issue(backend, self._sign_request(rec), request_id=None,
                                           approve_request=rec.id, event=EventRecord(
                                               type="approve", status="success", entity_id=rec.entity_id,
                                               protocol_config=rec.protocol_config, ca_id=rec.ca_id,
                                               request_id=request_id, detail={"actor": operator}))
            except Exception:
                # Signing failed (e.g. the CA expired meanwhile): hand the request back to the queue.
                async with self.store.transaction() as q:
                    await q.requests.update(request_id, expect="approved", status="pending")
                raise
            if not isinstance(result, IssuedCertificate):
                raise Unavailable(f"request {request_id} is now held by CA {rec.ca_id}; it issues when that CA decides")
        except GatewayError as exc:
            await self.events.record(
                "approve", "failure", entity_id=rec.entity_id, protocol_config=rec.protocol_config,
                ca_id=rec.ca_id, request_id=request_id, actor=operator, detail=exc.detail,
            )
            raise
        return result

    async def reject(self, request_id: str, operator: str, reason: str) -> PendingRequest:
        async with self.store.transaction() as q:
            rec = await q.requests.get(request_id)
            if rec is None:
                raise NotFound(f"no pending request {request_id}")
            if not await q.requests.update(
                request_id, expect="pending", status="rejected", decided_by=operator,
                decided_at=self._now(), reason=reason,
            ):
                raise Conflict(f"request {request_id} is {rec.status}, not pending")
        await self.events.record(
            "reject", "success", entity_id=rec.entity_id, protocol_config=rec.protocol_config,
            ca_id=rec.ca_id, request_id=request_id, actor=operator, reason=reason,
        )
        return PendingRequest(rec.id, rec.ca_id, "rejected", reason=reason)

    # --- certificates and revocation ------------------------------------------------
    async def certificate(self, serial: str) -> CertificateRecord:
        """Look up by hex serial (case-insensitive, colons and leading zeros tolerated)."""
        norm = serial.replace(":", "").strip().lower().lstrip("0") or "0"
        try:
            int(norm, 16)
        except ValueError:
            raise BadRequest(f"{serial!r} is not a hexadecimal serial number") from None
        rows = await self.store.read_rows(CERT_BY_SERIAL, {"serial": normalize_serial(norm)}, "certificate")
        if not rows:
            raise NotFound(f"no certificate with serial {norm}")
        return record(CertificateRecord, rows[0])

    async def status(self, serial: str) -> CertificateStatus:
        return status_from_record(await self.certificate(serial))

    _TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
        "revoke": (frozenset({"valid", "hold"}), "revoked"),
        "suspend": (frozenset({"valid"}), "hold"),
        "unsuspend": (frozenset({"hold"}), "valid"),
    }

    async def _transition(self, verb: str, rec: CertificateRecord, backend: CABackend,
                          reason: RevocationReason | None, invalidity_date: dt.datetime | None,
                          reissue_crl: bool = True) -> tuple[CertificateStatus, str | None]:
        """The new status, and why the CA was not told when it could not be (audited by the caller)."""
        expect, status = self._TRANSITIONS[verb]
        not_told = None
        if rec.status not in expect:
            raise Conflict(f"certificate {rec.serial} is {rec.status}; cannot {verb}")
        if verb == "unsuspend":
            if not backend.capabilities.hold:
                raise Unavailable(f"CA {rec.ca_id} cannot release a hold")
            await backend.release_hold(serial_int(rec.serial))
        else:
            assert reason is not None
            not_told = await backend.revoke_certificate(x509.load_der_x509_certificate(rec.der), reason,
                                                        invalidity_date)
        async with self.store.transaction() as q:
            updated = await q.certificates.update_status(
                rec.serial, expect=set(expect), status=status,
                reason=int(reason) if reason is not None else None,
                revoked_at=self._now() if status != "valid" else None,
                invalidity_date=invalidity_date,
            )
            if updated is not None:
                await distribution.enqueue_revoked(q, rec, status, int(reason) if reason is not None else None,
                                                   self._now())
        if updated is None:
            raise Conflict(f"certificate {rec.serial} changed meanwhile; cannot {verb}")
        if backend.capabilities.crl and reissue_crl:
            await self.crl(rec.ca_id, force=True)  # CRLs are reissued on every status change
        return status_from_record(updated), not_told

    async def _status_change(
        self, verb: str, serial: str, actor: str, protocol_config: str | None,
        reason: RevocationReason | None = None, invalidity_date: dt.datetime | None = None,
        reissue_crl: bool = True,
    ) -> CertificateStatus:
        rec = await self.certificate(serial)
        config = protocol_config or rec.protocol_config
        try:
            if verb == "revoke":
                assert reason is not None
                if reason == RevocationReason.certificate_hold:
                    verb = "suspend"
                elif reason == RevocationReason.remove_from_crl:
                    raise BadRequest("removeFromCRL is not a revocation reason; unsuspend instead")
                if invalidity_date is not None and invalidity_date > self._now() + dt.timedelta(minutes=5):
                    raise BadRequest("invalidity date lies in the future")
            if verb == "suspend":
                reason, invalidity_date = RevocationReason.certificate_hold, None
            backend = await self.cas.backend(rec.ca_id)
            status, not_told = await self._transition(verb, rec, backend, reason, invalidity_date, reissue_crl)
        except GatewayError as exc:
            await self.events.record(
                verb, "failure", entity_id=rec.entity_id, protocol_config=config,
                ca_id=rec.ca_id, serial=rec.serial, actor=actor, detail=exc.detail,
            )
            raise
        await self.events.record(
            verb, "success", entity_id=rec.entity_id, protocol_config=config,
            ca_id=rec.ca_id, serial=rec.serial, actor=actor,
            reason=reason.name if reason is not None and verb == "revoke" else None,
        )
        if not_told is not None:  # an upstream without revocation: its operator must act there
            await self.events.record(
                "revoke_not_upstream", "warning", entity_id=rec.entity_id, protocol_config=config,
                ca_id=rec.ca_id, serial=rec.serial, actor=actor, detail=not_told, verb=verb,
            )
        return status

    async def revoke(
        self, serial: str, reason: RevocationReason, *, actor: str,
        invalidity_date: dt.datetime | None = None, protocol_config: str | None = None,
    ) -> CertificateStatus:
        return await self._status_change("revoke", serial, actor, protocol_config, reason, invalidity_date)

    async def suspend(self, serial: str, *, actor: str, protocol_config: str | None = None) -> CertificateStatus:
        return await self._status_change("suspend", serial, actor, protocol_config)

    async def unsuspend(self, serial: str, *, actor: str, protocol_config: str | None = None) -> CertificateStatus:
        return await self._status_change("unsuspend", serial, actor, protocol_config)

    # --- CA material -------------------------------------------------------------------
    async def chain(self, ca_id: str) -> tuple[x509.Certificate, ...]:
        """An issuing CA's chain, its own certificate first."""
        return await (await self.cas.backend(ca_id)).chain()

    def crl_due(self, record: CARecord, now: dt.datetime) -> bool:
        if record.crl_der is None or record.crl_next_update is None:
            return True
        return record.crl_next_update - now <= self.crl_policy.overlap

    async def crl(self, ca_id: str, force: bool = False) -> bytes:
        """The CA's current full CRL (DER): reissued when due (or forced), numbered and
        stored here; the backend only signs it.

        Number, revoked set and stored CRL are taken in one transaction that first locks
        the CA row (PostgreSQL ``FOR UPDATE``; on SQLite the write transaction serialises),
        so across replicas CRL n+1 holds every revocation CRL n holds, each number is
        used once, and the stored CRL never goes back to a lower number. The asyncio lock
        only keeps this process's callers from queueing on database locks."""
        backend = await self.cas.backend(ca_id)
        if not backend.capabilities.crl:
            raise Unavailable(f"CA {ca_id} does not publish CRLs through this gateway")
        lock = self._crl_locks.setdefault(ca_id, asyncio.Lock())
        async with lock:
            now = self._now()
            async with self.store.read() as q:
                record = await q.cas.get(ca_id)
            if record is None:
                raise NotFound(f"unknown CA {ca_id}")
            if not force and not self.crl_due(record, now) and record.crl_der is not None:
                return record.crl_der
            own = (await backend.chain())[0]
            async with self.store.transaction() as q:
                record = await q.cas.lock(ca_id)
                now = self._now()  # after the wait: thisUpdate never precedes the CRL before
                next_update = min(now + self.crl_policy.validity, own.not_valid_after_utc)
                if not force and not self.crl_due(record, now) and record.crl_der is not None:
                    return record.crl_der  # another replica issued it while this one waited
                revoked = await q.certificates.revoked(ca_id, include_expired=True)
                entries = [
                    RevokedEntry(
                        serial=serial_int(r.serial),
                        revoked_at=r.revoked_at or now,
                        reason=RevocationReason(r.revocation_reason or 0),
                        invalidity_date=r.invalidity_date,
                    )
                    for r in revoked
                ]
                number = await q.cas.next_crl_number(ca_id)
                der = await backend.sign_crl(entries, number, now, next_update)
                await q.cas.update(ca_id, crl_der=der, crl_this_update=now, crl_next_update=next_update)
            log.info("CRL %d issued for CA %s with %d entries", number, ca_id, len(entries))
            return der
