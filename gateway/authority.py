"""The one door from protocols (and the admin API) into the CA core.

A protocol adapter parses its wire format, authenticates its client, and then asks
the Authority to enroll, poll, revoke or look up. The Authority applies what is
common to every protocol: the protocol configuration (which CA, which profiles,
manual approval), the end entity's state (a deactivated one gets nothing), and the
audit trail. Only this module and the admin tooling reach the CA backends.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any, Mapping

from cryptography import x509

from .ca.backend import (
    CertificateStatus,
    GeneratedKeyCertificate,
    IssuedCertificate,
    IssueOverrides,
    IssueRequest,
    KeygenRequest,
    PendingRequest,
    RevocationReason,
)
from .ca.builder import load_csr
from .ca.local import InTransaction, LocalCA
from .ca.registry import CARegistry
from .errors import BadRequest, Conflict, Forbidden, GatewayError, NotFound
from .events import EventRecorder, log_committed
from .profiles.model import Profile
from .store import Store
from .store.records import (
    CertificateRecord,
    EndEntityRecord,
    EventRecord,
    ProtocolConfigRecord,
    serial_hex,
    utcnow,
)
from .store.store import Tx


CONFIG_ID = re.compile(r"^[a-z0-9_-]{2,18}$")
PROTOCOLS = ("acme", "scep", "est", "xcep", "wstep", "mdm")
ENTITY_STATES = ("active", "inactive", "decommissioned")

Enrollment = IssuedCertificate | PendingRequest


class EntityRefused(Forbidden):
    """An end entity that is not active; carries its id so the refusal is audited against it."""

    def __init__(self, entity_id: str, detail: str) -> None:
        super().__init__(detail)
        self.entity_id = entity_id


def check_config_id(config_id: str) -> str:
    if not CONFIG_ID.match(config_id):
        raise BadRequest(
            "protocol configuration id must be 2-18 chars of lowercase letters, digits, '-' and '_'"
        )
    return config_id


class Authority:
    def __init__(self, store: Store, cas: CARegistry, profiles: Mapping[str, Profile]) -> None:
        self.store = store
        self.cas = cas
        self.profiles = profiles
        self.events = EventRecorder(store)

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
        if protocol not in PROTOCOLS:
            raise BadRequest(f"unknown protocol {protocol!r}; one of {list(PROTOCOLS)}")
        await self.cas.local(ca_id)
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
        await self.store.insert_protocol_config(rec)
        await self.events.record(
            "config_create", "success", protocol_config=config_id, ca_id=ca_id, actor=actor
        )
        return rec

    async def config(self, config_id: str, protocol: str | None = None) -> ProtocolConfigRecord:
        return self.checked_config(await self.store.get_protocol_config(config_id), config_id, protocol)

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
        rec = await self.store.find_end_entity(name, config_id)
        if rec is None:
            rec = EndEntityRecord(
                id=uuid.uuid4().hex, name=name, kind=kind, protocol_config=config_id,
                attributes=attributes or {},
            )
            try:
                await self.store.insert_end_entity(rec)
            except Conflict:  # registered concurrently by another request
                found = await self.store.find_end_entity(name, config_id)
                if found is None:
                    raise
                rec = found
        if rec.status != "active":
            raise EntityRefused(rec.id, f"end entity {name!r} is {rec.status}")
        return rec

    async def set_entity_status(self, entity_id: str, status: str, actor: str) -> EndEntityRecord:
        if status not in ENTITY_STATES:
            raise BadRequest(f"end entity status must be one of {list(ENTITY_STATES)}")
        rec = await self.store.get_end_entity(entity_id)
        if rec is None:
            raise NotFound(f"no end entity {entity_id}")
        if rec.status == "decommissioned" and status != "decommissioned":
            raise Conflict("a decommissioned end entity cannot be reactivated")
        await self.store.update_end_entity(entity_id, status=status)
        await self.events.record(
            f"entity_{status}", "success", entity_id=entity_id,
            protocol_config=rec.protocol_config, actor=actor,
        )
        updated = await self.store.get_end_entity(entity_id)
        assert updated is not None
        return updated

    # --- enrollment --------------------------------------------------------------
    def _profile_for(self, config: ProtocolConfigRecord, profile: str | None) -> str:
        name = profile or config.default_profile
        if name not in config.profiles:
            raise NotFound(f"profile {name!r} is not offered by configuration {config.id!r}")
        return name

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
        ``record``: the configuration as the caller read it moments ago (its cache of
        about a second), checked here like a fresh one; saves a read per enrollment.
        """
        config = self.checked_config(record, config_id, protocol) if record is not None \
            else await self.config(config_id, protocol)
        entity_id: str | None = None
        try:
            ent = await self.entity_for(config, entity, entity_kind, entity_attributes)
            entity_id = ent.id
            parsed = load_csr(csr) if isinstance(csr, bytes) else csr
            request = IssueRequest(
                csr=parsed, profile=self._profile_for(config, profile), overrides=overrides,
                entity_id=ent.id, protocol_config=config.id, request_id=request_id,
            )
            backend = await self.cas.backend(config.ca_id)
            if config.settings.get("approval") == "manual":
                pending = await backend.submit_pending(request)
                await self.events.record(
                    event_type, "pending", entity_id=ent.id, protocol_config=config.id,
                    ca_id=config.ca_id, request_id=pending.request_id, actor=actor,
                )
                return pending
            issued = await self._issue_with_event(
                backend, request, within, EventRecord(
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
        return issued

    async def _issue_with_event(
        self, backend: Any, request: IssueRequest, within: InTransaction | None, event: EventRecord,
    ) -> IssuedCertificate:
        """Issue, writing the success event (and ``within``) in the certificate's transaction."""
        if not isinstance(backend, LocalCA):  # a backend that commits on its own: two steps
            issued = await backend.issue(request)
            if within is not None:
                async with self.store.transaction() as tx:
                    await within(tx, issued.certificate)
            event.serial = serial_hex(issued.serial)
            await self.events.add(event)
            return issued
        event_id = 0

        async def in_transaction(tx: Tx, cert: x509.Certificate) -> None:
            nonlocal event_id
            event.serial, event.created_at = serial_hex(cert.serial_number), utcnow()
            event_id = await tx.add_event(event)
            if within is not None:
                await within(tx, cert)

        issued = await backend.issue(request, within=in_transaction)
        log_committed(event, event_id)
        return issued

    async def issue_direct(
        self,
        ca_id: str,
        csr: x509.CertificateSigningRequest | bytes,
        profile: str,
        overrides: IssueOverrides = IssueOverrides(),
        *,
        actor: str,
    ) -> IssuedCertificate:
        """Operator issuance (CLI, admin API) outside any protocol configuration."""
        try:
            parsed = load_csr(csr) if isinstance(csr, bytes) else csr
            backend = await self.cas.backend(ca_id)
            issued = await backend.issue(IssueRequest(csr=parsed, profile=profile, overrides=overrides))
        except GatewayError as exc:
            await self.events.record(
                "issue", "failure", ca_id=ca_id, error=exc.kind.value, detail=exc.detail, actor=actor
            )
            raise
        await self.events.record(
            "issue", "success", ca_id=ca_id, serial=serial_hex(issued.serial), actor=actor,
            profile=profile,
        )
        return issued

    async def issue_internal(
        self, ca_id: str, profile: str, public_key: object, overrides: IssueOverrides, *,
        purpose: str, protocol: str, protocol_config: str | None, actor: str,
    ) -> IssuedCertificate:
        """A certificate for a key a protocol generated for itself (SCEP RA, signing or
        exchange certificates): stored and audited like every other issuance."""
        try:
            backend = await self.cas.local(ca_id)
            issued = await backend.sign_public_key(
                profile, public_key, overrides, protocol_config=protocol_config,
            )
        except GatewayError as exc:
            await self.events.record(
                "internal_issue", "failure", ca_id=ca_id, protocol_config=protocol_config,
                error=exc.kind.value, detail=exc.detail, actor=actor, purpose=purpose, protocol=protocol,
            )
            raise
        await self.events.record(
            "internal_issue", "success", ca_id=ca_id, protocol_config=protocol_config,
            serial=serial_hex(issued.serial), actor=actor, purpose=purpose, protocol=protocol,
            profile=profile,
        )
        return issued

    async def chain(self, ca_id: str) -> tuple[x509.Certificate, ...]:
        """An issuing CA's chain, its own certificate first."""
        return await (await self.cas.backend(ca_id)).chain()

    async def crl(self, ca_id: str) -> bytes:
        return await (await self.cas.backend(ca_id)).crl()

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
        entity_kind: str = "device",
        actor: str | None = None,
    ) -> GeneratedKeyCertificate:
        """Server-side key generation for an end entity (EST serverkeygen, MDM PKCS#12)."""
        config = await self.config(config_id, protocol)
        entity_id: str | None = None
        try:
            ent = await self.entity_for(config, entity, entity_kind)
            entity_id = ent.id
            backend = await self.cas.backend(config.ca_id)
            result = await backend.generate_and_issue(
                KeygenRequest(
                    profile=self._profile_for(config, profile), key_algorithm=key_algorithm,
                    subject=subject, sans=sans, pkcs12_password=pkcs12_password,
                    entity_id=ent.id, protocol_config=config.id,
                )
            )
        except GatewayError as exc:
            entity_id = entity_id or getattr(exc, "entity_id", None)
            await self.events.record(
                "keygen", "failure", entity_id=entity_id, protocol_config=config.id,
                ca_id=config.ca_id, error=exc.kind.value, detail=exc.detail, actor=actor,
            )
            raise
        await self.events.record(
            "keygen", "success", entity_id=ent.id, protocol_config=config.id, ca_id=config.ca_id,
            serial=serial_hex(result.issued.serial), actor=actor,
        )
        return result

    # --- pending requests ----------------------------------------------------------
    async def _request_backend(self, request_id: str):  # type: ignore[no-untyped-def]
        rec = await self.store.get_request(request_id)
        if rec is None:
            raise NotFound(f"no pending request {request_id}")
        return rec, await self.cas.backend(rec.ca_id)

    async def poll(self, request_id: str) -> Enrollment:
        """A held request: the certificate once issued, else its pending/rejected state."""
        rec, backend = await self._request_backend(request_id)
        state = await backend.pending_status(request_id)
        if state.status == "issued" and state.serial is not None:
            cert = await self.certificate(serial_hex(state.serial))
            return IssuedCertificate(
                rec.ca_id, state.serial, x509.load_der_x509_certificate(cert.der), await backend.chain()
            )
        return state

    async def approve(self, request_id: str, operator: str) -> IssuedCertificate:
        rec, backend = await self._request_backend(request_id)
        try:
            issued = await backend.approve(request_id, operator)
        except GatewayError as exc:
            await self.events.record(
                "approve", "failure", entity_id=rec.entity_id, protocol_config=rec.protocol_config,
                ca_id=rec.ca_id, request_id=request_id, actor=operator, detail=exc.detail,
            )
            raise
        await self.events.record(
            "approve", "success", entity_id=rec.entity_id, protocol_config=rec.protocol_config,
            ca_id=rec.ca_id, request_id=request_id, serial=serial_hex(issued.serial), actor=operator,
        )
        return issued

    async def reject(self, request_id: str, operator: str, reason: str) -> PendingRequest:
        rec, backend = await self._request_backend(request_id)
        result = await backend.reject(request_id, operator, reason)
        await self.events.record(
            "reject", "success", entity_id=rec.entity_id, protocol_config=rec.protocol_config,
            ca_id=rec.ca_id, request_id=request_id, actor=operator, reason=reason,
        )
        return result

    # --- certificates and revocation ------------------------------------------------
    async def certificate(self, serial: str) -> CertificateRecord:
        """Look up by hex serial (case-insensitive, colons and leading zeros tolerated)."""
        norm = serial.replace(":", "").strip().lower().lstrip("0") or "0"
        try:
            int(norm, 16)
        except ValueError:
            raise BadRequest(f"{serial!r} is not a hexadecimal serial number") from None
        rec = await self.store.get_certificate(norm)
        if rec is None:
            raise NotFound(f"no certificate with serial {norm}")
        return rec

    async def _status_change(
        self, verb: str, serial: str, actor: str, protocol_config: str | None, **kwargs: Any
    ) -> CertificateStatus:
        rec = await self.certificate(serial)
        backend = await self.cas.backend(rec.ca_id)
        try:
            if verb == "revoke":
                status = await backend.revoke(int(rec.serial, 16), kwargs["reason"], kwargs.get("invalidity_date"))
            elif verb == "suspend":
                status = await backend.suspend(int(rec.serial, 16))
            else:
                status = await backend.unsuspend(int(rec.serial, 16))
        except GatewayError as exc:
            await self.events.record(
                verb, "failure", entity_id=rec.entity_id, protocol_config=protocol_config or rec.protocol_config,
                ca_id=rec.ca_id, serial=rec.serial, actor=actor, detail=exc.detail,
            )
            raise
        reason = kwargs.get("reason")
        await self.events.record(
            verb, "success", entity_id=rec.entity_id, protocol_config=protocol_config or rec.protocol_config,
            ca_id=rec.ca_id, serial=rec.serial, actor=actor,
            reason=reason.name if reason is not None else None,
        )
        return status

    async def revoke(
        self, serial: str, reason: RevocationReason, *, actor: str,
        invalidity_date: dt.datetime | None = None, protocol_config: str | None = None,
    ) -> CertificateStatus:
        return await self._status_change(
            "revoke", serial, actor, protocol_config, reason=reason, invalidity_date=invalidity_date
        )

    async def suspend(self, serial: str, *, actor: str, protocol_config: str | None = None) -> CertificateStatus:
        return await self._status_change("suspend", serial, actor, protocol_config)

    async def unsuspend(self, serial: str, *, actor: str, protocol_config: str | None = None) -> CertificateStatus:
        return await self._status_change("unsuspend", serial, actor, protocol_config)
