"""SCEP operations of one gateway: GetCACert, GetCACaps, GetNextCACert and PKIOperation.

The HTTP layer (:mod:`.http`) only decodes transport quirks and calls this. A
PKIOperation runs as a pipeline: parse (enough to address a reply), verify (signature,
digest, signingTime), open the envelope with an RA key, dispatch on messageType, and
answer with a CertRep signed by the current RA. Every refusal after parsing becomes a
FAILURE CertRep with its failInfo; the core's typed errors are mapped at this edge.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from asn1crypto import csr as asn1_csr
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway import keys
from gateway.ca.builder import check_proof_of_possession, load_csr
from gateway.clock import Clock
from gateway.door import (
    Door,
    IssuedCertificate,
    PendingRequest,
    ProtocolConfigRecord,
    door,
    serial_hex,
)
from gateway.errors import BadKey, ErrorKind, GatewayError, NotFound

from . import cms as scms
from .challenge import (
    ChallengeGrant,
    ChallengeRequest,
    ChallengeVerifier,
    IssuedInfo,
    challenge_password,
    verifiers_for,
)
from .envelope import open_envelope, seal_envelope
from .intune.clients import IntuneClients
from .intune.verifier import IntuneChallengeVerifier
from .message import (
    Outcome,
    PkiMessage,
    asn1_name,
    build_cert_rep,
    load_issuer_and_serial,
    load_issuer_and_subject,
    parse_pki_message,
    verify_pki_message,
)
from .ra import RA_PROFILE, RaKeyring, RaSet, issue_ra
from .repository import ScepRepository, TransactionRecord
from .settings import ScepSettings
from .types import (
    CONTENT_TYPE_CA_CERT,
    CONTENT_TYPE_CA_RA_CERT,
    CONTENT_TYPE_NEXT_CA_CERT,
    FailInfo,
    MalformedMessage,
    MessageType,
    PkiStatus,
    ScepFailure,
    fail_info_for,
)

log = logging.getLogger("gateway.scep")

PROTOCOL = "scep"
ENROLL_TYPES = (MessageType.PKCS_REQ, MessageType.RENEWAL_REQ, MessageType.UPDATE_REQ)
RENEWAL_TYPES = (MessageType.RENEWAL_REQ, MessageType.UPDATE_REQ)
REQUEST_ID_LENGTH = 64
TRANSACTION_TYPES = (*ENROLL_TYPES, MessageType.CERT_POLL)
"""Requests answered from what their transactionID led to before."""
CLAIM_ATTEMPTS = 3
CLAIM_WAIT_SECONDS = 5.0
"""How long a concurrent copy of a request waits for the first one's answer before PENDING."""
CLAIM_STALE = dt.timedelta(seconds=60)
"""A claim this old is abandoned (its process died mid-enrollment) and may be taken over."""

Generations = tuple[int, int]
"""(configuration generation of the core, generation of the SCEP tables)."""


@dataclass(frozen=True)
class ConfigContext:
    """Everything one request needs about its configuration."""

    record: ProtocolConfigRecord
    settings: ScepSettings
    ra: RaSet
    ca_chain: tuple[x509.Certificate, ...]  # the configuration's CA first, up to its root
    generations: Generations  # what the store said when this context was built

    @property
    def ca_certificate(self) -> x509.Certificate:
        return self.ca_chain[0]

    def fresh(self, generations: Generations, now: dt.datetime) -> bool:
        """Still what a fresh read would build: nothing was written since (by any process)
        and no RA is due for renewal or expiry yet."""
        return self.generations == generations and (self.ra.refresh_at is None or now < self.ra.refresh_at)


@dataclass(frozen=True)
class RequestState:
    """What one read at the start of a PKIOperation returns: the generations its caches
    are checked against, and what the message's transactionID led to before."""

    generations: Generations
    previous: TransactionRecord | None


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _unique(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    seen: set[bytes] = set()
    out = []
    for cert in certs:
        if _der(cert) not in seen:
            seen.add(_der(cert))
            out.append(cert)
    return out


def capabilities(settings: ScepSettings) -> list[str]:
    """GetCACaps from what the configuration really supports (RFC 8894 section 3.5.2)."""
    caps = ["POSTPKIOperation"]
    caps += [name for digest, name in (("sha1", "SHA-1"), ("sha256", "SHA-256"), ("sha512", "SHA-512"))
             if digest in settings.digests]
    if settings.aes:
        caps.append("AES")
    if settings.des3:
        caps.append("DES3")
    if settings.renewal:
        caps.append("Renewal")
    if settings.next_ca:
        caps.append("GetNextCACert")
    if settings.aes and "sha256" in settings.digests:
        caps.append("SCEPStandard")  # implies AES, POSTPKIOperation and SHA-256
    return caps


class ScepService:
    """The SCEP protocol behind one door (every SCEP configuration), one per app.

    Caches (a configuration's context, its RA keys, secret hashes) are keyed by the
    core's configuration generation and the SCEP tables' generation, read once per
    request, so a change made by any worker or replica is served on the next request.
    ``clock`` judges messages (signingTime); it is the door's clock unless a test
    replaying captures sets its own.
    """

    def __init__(self, door: Door, *, clock: Clock | None = None) -> None:
        self.door = door
        self.repo = ScepRepository(door.tables)
        self.keyring = RaKeyring(door, self.repo)
        self.clock: Clock = clock or door.clock
        self._contexts: dict[str, ConfigContext] = {}
        self.intune = IntuneClients(door)
        self._verifiers: dict[str, ChallengeVerifier] = {"intune": IntuneChallengeVerifier(door, self.intune)}

    def close(self) -> None:
        """Drop the caches (decrypted RA keys among them): the app is stopping."""
        self._contexts.clear()
        self.keyring.forget()
        self.repo.forget()

    # --- configuration ---------------------------------------------------------------
    async def _generations_in(self, conn: AsyncConnection) -> Generations:
        return await self.door.configuration_generation_on(conn), await self.repo.generation_in(conn)

    async def generations(self) -> Generations:
        """Both generations, in one read."""
        async with self.door.tables.read() as conn:
            return await self._generations_in(conn)

    async def request_state(self, config_id: str, msg: PkiMessage) -> RequestState:
        """The generations and, for requests that have one, the transactionID's earlier
        record, in one read (an enrollment's only read of its own besides the challenge)."""
        async with self.door.tables.read() as conn:
            generations = await self._generations_in(conn)
            previous = None
            if msg.message_type in TRANSACTION_TYPES:
                previous = await self.repo.transaction_in(conn, config_id, msg.transaction_id)
        return RequestState(generations, previous)

    def knows(self, config_id: str) -> bool:
        """Whether ``config_id`` is a configuration this service has served (metrics labels)."""
        return config_id in self._contexts

    async def context(self, config_id: str, generations: Generations | None = None) -> ConfigContext:
        """The configuration, its RA set and CA chain, kept while ``generations`` (read now
        unless the caller just did) are unchanged: a burst of enrollments costs no lookup,
        an admin edit or an RA change anywhere is seen at once."""
        key = generations if generations is not None else await self.generations()
        cached = self._contexts.get(config_id)
        if cached is not None and cached.fresh(key, self.door.clock()):
            return cached
        rec = await self.door.configuration(config_id)
        settings = ScepSettings.of(rec)
        ra = await self.keyring.ra_set(rec.id, settings.ra_ca or rec.ca_id)  # on the door's clock
        ctx = ConfigContext(rec, settings, ra, await self.door.chain(rec.ca_id), key)
        if len(self._contexts) > 1000:
            self._contexts.clear()
        self._contexts[config_id] = ctx
        return ctx

    async def ndes_config_id(self) -> str:
        """The configuration served on the NDES paths: the one marked ``ndes``, else ``scep``."""
        configs = await self.door.configurations(enabled_only=True)
        marked = [c for c in configs if c.settings.get("ndes") is True]
        if marked:
            return marked[0].id
        if any(c.id == PROTOCOL for c in configs):
            return PROTOCOL
        raise NotFound("no SCEP configuration is served on the NDES paths (set settings.ndes on one)")

    # --- GetCACert / GetCACaps / GetNextCACert ------------------------------------------
    async def ca_certificates(self, config_id: str) -> tuple[str, bytes]:
        """RA and CA chain as a certs-only PKCS#7, or the bare CA certificate when the CA
        (a root) answers SCEP itself."""
        ctx = await self.context(config_id)
        ra = ctx.ra.current
        if _der(ra.certificate) == _der(ctx.ca_certificate):
            if len(ctx.ca_chain) == 1:
                return CONTENT_TYPE_CA_CERT, _der(ctx.ca_certificate)
            return CONTENT_TYPE_CA_RA_CERT, scms.degenerate_certificates(ctx.ca_chain)
        # The RA's own issuers first: where another CA issued the RA (settings.ra_ca), clients
        # such as certmonger take the first root they meet as the anchor of the RA's signature.
        certs = _unique([ra.certificate, *ra.chain, *ctx.ca_chain])
        return CONTENT_TYPE_CA_RA_CERT, scms.degenerate_certificates(certs)

    async def ca_caps(self, config_id: str) -> str:
        ctx = await self.context(config_id)
        return "\n".join(capabilities(ctx.settings)) + "\n"

    async def next_ca_certificates(self, config_id: str) -> tuple[str, bytes]:
        """The rollover CA and its RA, signed by the current RA (RFC 8894 section 4.7)."""
        ctx = await self.context(config_id)
        if not ctx.settings.next_ca:
            raise NotFound(f"SCEP configuration {config_id!r} has no CA rollover in progress")
        next_chain = await self.door.chain(ctx.settings.next_ca)
        nxt = ctx.ra.next
        if nxt is None or nxt.chain[:1] != next_chain[:1]:
            await issue_ra(self.door, self.repo, ctx.record.id, ctx.settings.next_ca, role="next")
            ra = await self.keyring.ra_set(ctx.record.id, ctx.settings.ra_ca or ctx.record.ca_id)
            nxt = ra.next
            assert nxt is not None
        inner = scms.degenerate_certificates(_unique([nxt.certificate, *next_chain]))
        body = scms.sign(
            inner, ctx.ra.current.signer, digest_name="sha256", attributes=[],
            certificates=self._response_certificates(ctx), signing_time=self.clock(),
        )
        return CONTENT_TYPE_NEXT_CA_CERT, body

    # --- PKIOperation ----------------------------------------------------------------
    def _response_certificates(self, ctx: ConfigContext) -> list[x509.Certificate]:
        ra = ctx.ra.current
        return _unique([ra.certificate, *ra.chain])

    async def pki_operation(self, config_id: str, body: bytes) -> bytes:
        """Answer a pkiMessage with a CertRep (raises MalformedMessage for bytes that
        cannot be answered at all, and the core's errors for unknown configurations)."""
        try:
            msg = parse_pki_message(body)
        except MalformedMessage:
            await self.context(config_id)  # an unknown or disabled configuration answers first
            raise
        state = await self.request_state(config_id, msg)
        ctx = await self.context(config_id, state.generations)
        now = self.clock()
        outcome: Outcome
        algorithms = None
        try:
            verify_pki_message(msg, now=now, allowed_digests=ctx.settings.digests,
                               max_skew=ctx.settings.max_clock_skew)
            if msg.message_type is None or msg.message_type is MessageType.CERT_REP:
                raise ScepFailure(FailInfo.BAD_REQUEST, f"messageType {msg.message_type_text!r} is not a request")
            if not msg.content:
                raise ScepFailure(FailInfo.BAD_REQUEST, "the pkiMessage carries no pkcsPKIEnvelope")
            # RSA private-key operations (here and in build_cert_rep) run in a worker thread:
            # OpenSSL releases the GIL, so they use the other core instead of the loop's
            opened = await asyncio.to_thread(open_envelope, msg.content, ctx.ra.recipients(), ctx.settings.ciphers)
            algorithms = opened.algorithms
            outcome = await self._dispatch(ctx, msg, opened.plaintext, now, state.previous)
        except ScepFailure as failure:
            outcome = Outcome.failed(failure)
        except GatewayError as exc:
            if exc.kind is ErrorKind.UNAVAILABLE:
                raise  # HTTP 503 (http.py), never a final FAILURE: see DIVERGENCES.md "Store unavailable"
            outcome = Outcome.failed(ScepFailure(fail_info_for(exc), exc.detail))
        envelope = b""
        if outcome.status is PkiStatus.SUCCESS:
            assert algorithms is not None and msg.signer_certificate is not None
            envelope = seal_envelope(outcome.payload, msg.signer_certificate, algorithms)
        if outcome.status is PkiStatus.FAILURE:
            assert outcome.failure is not None
            self.door.count_error(ctx.record.id, outcome.failure.fail_info.rfc_name)
            await self.door.record_event(
                "scep_request", "failure", protocol_config=ctx.record.id,
                message_type=msg.message_type_text, transaction_id=msg.transaction_id,
                fail_info=outcome.failure.fail_info.name, detail=outcome.failure.text,
            )
        log.info("scep %s tid=%s -> %s", msg.message_type_text, msg.transaction_id, outcome.status.name)
        return await asyncio.to_thread(
            build_cert_rep, msg, outcome, signer=ctx.ra.current.signer,
            certificates=self._response_certificates(ctx), envelope=envelope, now=now,
        )

    async def _dispatch(self, ctx: ConfigContext, msg: PkiMessage, plaintext: bytes, now: dt.datetime,
                        previous: TransactionRecord | None) -> Outcome:
        assert msg.message_type is not None and msg.signer_certificate is not None
        if not isinstance(msg.signer_certificate.public_key(), rsa.RSAPublicKey):
            # A response is encrypted to the signer certificate with RSA key transport.
            raise ScepFailure(FailInfo.BAD_ALG, "the pkiMessage must be signed with an RSA certificate")
        if msg.message_type in ENROLL_TYPES:
            return await self._enroll(ctx, msg, plaintext, now, previous)
        if msg.message_type is MessageType.CERT_POLL:
            return await self._poll(ctx, msg, plaintext, previous)
        if msg.message_type is MessageType.GET_CERT:
            return await self._get_cert(ctx, plaintext)
        if msg.message_type is MessageType.GET_CRL:
            return await self._get_crl(ctx, plaintext)
        raise ScepFailure(FailInfo.BAD_REQUEST, f"messageType {msg.message_type_text} is not supported")

    # --- PKCSReq / RenewalReq --------------------------------------------------------
    async def _enroll(self, ctx: ConfigContext, msg: PkiMessage, der: bytes, now: dt.datetime,
                      previous: TransactionRecord | None) -> Outcome:
        """``previous``: what this transactionID led to before (read with the generations).

        One certificate per transaction whatever the timing (RFC 8894 section 4.7): the
        transactionID is claimed in the store before anything is issued, so of K copies
        of one request sent at once (to any worker or replica) one enrolls; the others
        wait for its answer and get the same CertRep, or PENDING if it takes longer."""
        csr = parse_request_csr(der)
        csr_sha = hashlib.sha256(der).hexdigest()
        assert msg.message_type is not None
        for _ in range(CLAIM_ATTEMPTS):
            if previous is not None and previous.in_progress and not self._stale(previous):
                previous = await self._settled(previous)
            answer = await self._answer_from(ctx, msg, csr_sha, now, previous)
            if answer is not None:
                return answer
            claim = TransactionRecord(
                config_id=ctx.record.id, transaction_id=msg.transaction_id, message_type=msg.message_type.value,
                signer_key_sha256=msg.signer_key_sha256, csr_sha256=csr_sha, created_at=self.door.clock(),
            )
            if await self.repo.claim_transaction(claim, previous):
                try:
                    return await self._enroll_claimed(ctx, msg, csr, now, claim)
                except BaseException:
                    await asyncio.shield(self.repo.release_transaction(claim, previous))
                    raise
            previous = await self.repo.transaction(ctx.record.id, msg.transaction_id)
        return Outcome.pending()

    def _stale(self, tx: TransactionRecord) -> bool:
        """A claim older than :data:`CLAIM_STALE`: its process died (or hangs); it may be taken over."""
        return self.door.clock() - tx.created_at > CLAIM_STALE

    async def _settled(self, claim: TransactionRecord) -> TransactionRecord | None:
        """Wait (briefly, polling the store) for another request's claim to settle: the
        row then says what it led to, or is gone (refused); else the claim itself."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLAIM_WAIT_SECONDS
        delay = 0.01
        current: TransactionRecord | None = claim
        while current is not None and current.in_progress and not self._stale(current) and loop.time() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
            current = await self.repo.transaction(claim.config_id, claim.transaction_id)
        return current

    async def _answer_from(self, ctx: ConfigContext, msg: PkiMessage, csr_sha: str, now: dt.datetime,
                           previous: TransactionRecord | None) -> Outcome | None:
        """The answer this transactionID already has (a resend, a claim still in progress,
        a refusal), or None: enroll."""
        assert msg.message_type is not None
        if previous is None:
            return None
        if previous.signer_key_sha256 != msg.signer_key_sha256:
            raise ScepFailure(FailInfo.BAD_REQUEST, "this transactionID belongs to another requester")
        if previous.in_progress:
            return None if self._stale(previous) else Outcome.pending()
        if previous.csr_sha256 == csr_sha and previous.message_type == msg.message_type.value:
            resent = await self._resent(ctx, previous, now)  # a resend: the same answer
            if resent is not None:
                return resent
        if previous.request_id is not None and previous.serial is None:
            state = await self.door.poll(previous.request_id)
            if isinstance(state, PendingRequest) and state.status in ("pending", "approved"):
                raise ScepFailure(FailInfo.BAD_REQUEST, "this transactionID has a request awaiting approval")
        return None

    async def _enroll_claimed(self, ctx: ConfigContext, msg: PkiMessage, csr: x509.CertificateSigningRequest,
                              now: dt.datetime, claim: TransactionRecord) -> Outcome:
        """Enroll under our claim on the transactionID; the claim settles with the result."""
        assert msg.message_type is not None
        renewal_of = await self._renewal_source(ctx, msg, csr, now)
        request_id = await self._request_id(ctx, msg.transaction_id)
        grant: ChallengeGrant | None = None
        verifier: ChallengeVerifier | None = None
        challenge_req = ChallengeRequest(ctx.record, msg.transaction_id, csr, challenge_password(csr), now)
        if renewal_of is None:
            verifier, grant = await self._authorize(ctx, challenge_req)
            entity = (grant.entity if grant is not None and grant.entity else None) or _entity_name(
                csr, msg.transaction_id)
            attributes = dict(grant.entity_attributes) if grant else {}
        else:
            entity = renewal_of.entity_name
            attributes = {}
            if ctx.settings.intune is not None:  # Intune vouches for renewals too (its challenge)
                verifier, grant = await self._authorize(ctx, challenge_req)
                attributes = dict(grant.entity_attributes) if grant else {}

        async def save_with_certificate(conn: AsyncConnection, cert: x509.Certificate) -> None:
            await self.repo.settle_transaction_in(conn, claim, serial=serial_hex(cert.serial_number))

        try:
            result = await self.door.enroll(
                ctx.record.id, csr, entity=entity, entity_kind="device",
                profile=(renewal_of.profile if renewal_of is not None
                         else grant.profile if grant is not None else None),
                event_type="renew" if renewal_of else "issue", actor=f"scep:{msg.transaction_id}",
                request_id=request_id, entity_attributes=attributes or None,
                record=ctx.record, within=save_with_certificate,
            )
        except GatewayError as exc:
            if verifier is not None and grant is not None:
                await verifier.notify_failure(challenge_req, grant, exc.detail)
            raise
        if isinstance(result, PendingRequest):
            await self.repo.settle_transaction(claim, request_id=result.request_id)
            if verifier is not None and grant is not None:
                await verifier.notify_success(challenge_req, grant, None)
            return Outcome.pending()
        if verifier is not None and grant is not None:
            await verifier.notify_success(challenge_req, grant, _issued_info(result))
        return Outcome.success(scms.degenerate_certificates([result.certificate]), result.certificate)

    async def _authorize(
        self, ctx: ConfigContext, request: ChallengeRequest
    ) -> tuple[ChallengeVerifier | None, ChallengeGrant | None]:
        """Ask the configured verifiers in order; the first grant authorizes."""
        if not ctx.settings.challenge_required:
            return None, None
        if not request.challenge:
            raise ScepFailure(FailInfo.BAD_REQUEST, "a challenge password is required")
        for verifier in verifiers_for(ctx.settings.verifiers, self.repo, self._verifiers):
            grant = await verifier.verify(request)
            if grant is not None:
                return verifier, grant
        raise ScepFailure(FailInfo.BAD_REQUEST, "the challenge password is not valid")

    async def _renewal_source(
        self, ctx: ConfigContext, msg: PkiMessage, csr: x509.CertificateSigningRequest, now: dt.datetime
    ) -> _Renewal | None:
        """For RenewalReq (or a PKCSReq without challenge signed by a certificate from here):
        the certificate being renewed, which must be valid, ours and this configuration's."""
        assert msg.signer_certificate is not None and msg.message_type is not None
        signer = msg.signer_certificate
        is_renewal = msg.message_type in RENEWAL_TYPES
        if not is_renewal:
            if challenge_password(csr) is not None or signer.self_issued:
                return None
        rec = None
        # only a certificate that parses strictly can be one issued here; self-made
        # ones may carry negative serials
        if signer.strict is not None and signer.serial_number > 0:
            try:
                rec = await self.door.certificate(serial_hex(signer.serial_number))
            except NotFound:
                rec = None
        if rec is None or rec.der != signer.der:
            if is_renewal:
                raise ScepFailure(FailInfo.BAD_CERT_ID, "the certificate being renewed was not issued here")
            return None
        if not is_renewal and not ctx.settings.renewal:
            return None
        if not ctx.settings.renewal:
            raise ScepFailure(FailInfo.BAD_REQUEST, "renewal is not enabled for this configuration")
        if rec.protocol_config != ctx.record.id or rec.ca_id != ctx.record.ca_id or rec.profile == RA_PROFILE:
            raise ScepFailure(FailInfo.BAD_REQUEST, "the certificate being renewed belongs to another configuration")
        if rec.status != "valid":
            raise ScepFailure(FailInfo.BAD_REQUEST, f"the certificate being renewed is {rec.status}")
        if not rec.not_before <= now <= rec.not_after:
            raise ScepFailure(FailInfo.BAD_REQUEST, "the certificate being renewed is not within its validity")
        profile = self.door.profile(rec.profile)
        if (profile is None or profile.subject.mode == "csr") and asn1_name(csr.subject) != signer.subject:
            raise ScepFailure(FailInfo.BAD_REQUEST, "a renewal must keep the certificate's subject")
        entity = None
        if rec.entity_id is not None:
            ent = await self.door.entity(rec.entity_id)
            entity = ent.name if ent is not None else None
        kept = rec.profile if rec.profile in ctx.record.profiles else None
        return _Renewal(rec.serial, entity or _entity_name(csr, msg.transaction_id), kept)

    async def _request_id(self, ctx: ConfigContext, transaction_id: str) -> str:
        """The core request id for this transaction (:func:`request_id_for`); a fresh one
        when an earlier request already took that id."""
        candidate = request_id_for(transaction_id)
        if ctx.settings.approval != "manual" or await self.door.pending_request(candidate) is None:
            return candidate
        return f"scep-{secrets.token_hex(16)}"

    async def _resent(self, ctx: ConfigContext, tx: TransactionRecord, now: dt.datetime) -> Outcome | None:
        """The answer to a resent request; None when its certificate is no longer good (the
        request is then served as a new one)."""
        if tx.serial is None:
            return await self._transaction_state(ctx, tx)
        rec = await self.door.certificate(tx.serial)
        if rec.status != "valid" or rec.not_after <= now:
            return None
        cert = x509.load_der_x509_certificate(rec.der)
        return Outcome.success(scms.degenerate_certificates([cert]), cert)

    async def _transaction_state(self, ctx: ConfigContext, tx: TransactionRecord) -> Outcome:
        """Where a transaction stands: its certificate, still pending, or rejected."""
        if tx.in_progress:  # another request with this transactionID is being enrolled
            if self._stale(tx):
                raise ScepFailure(FailInfo.BAD_CERT_ID, "no certificate for this transaction")
            return Outcome.pending()
        serial = tx.serial
        if serial is None and tx.request_id is not None:
            state = await self.door.poll(tx.request_id)
            if isinstance(state, IssuedCertificate):
                serial = serial_hex(state.serial)
                await self.repo.set_transaction_serial(tx.config_id, tx.transaction_id, serial)
            elif state.status == "rejected":
                raise ScepFailure(FailInfo.BAD_REQUEST, f"the request was rejected: {state.reason or 'no reason given'}")
            else:
                return Outcome.pending()
        if serial is None:
            raise ScepFailure(FailInfo.BAD_CERT_ID, "no certificate for this transaction")
        rec = await self.door.certificate(serial)
        cert = x509.load_der_x509_certificate(rec.der)
        return Outcome.success(scms.degenerate_certificates([cert]), cert)

    # --- CertPoll / GetCert / GetCRL ----------------------------------------------------
    async def _poll(self, ctx: ConfigContext, msg: PkiMessage, content: bytes,
                    tx: TransactionRecord | None) -> Outcome:
        load_issuer_and_subject(content)
        if tx is None:
            raise ScepFailure(FailInfo.BAD_CERT_ID, "no request with this transactionID")
        if tx.signer_key_sha256 != msg.signer_key_sha256:
            raise ScepFailure(FailInfo.BAD_REQUEST, "CertPoll must be signed with the requester's key")
        return await self._transaction_state(ctx, tx)

    async def _get_cert(self, ctx: ConfigContext, content: bytes) -> Outcome:
        issuer, serial = load_issuer_and_serial(content)
        try:
            rec = await self.door.certificate(serial_hex(serial))
        except NotFound:
            raise ScepFailure(FailInfo.BAD_CERT_ID, "no certificate with this issuer and serial number") from None
        cert = x509.load_der_x509_certificate(rec.der)
        if rec.ca_id != ctx.record.ca_id or asn1_name(cert.issuer) != issuer:
            raise ScepFailure(FailInfo.BAD_CERT_ID, "no certificate with this issuer and serial number")
        return Outcome.success(scms.degenerate_certificates([cert]), cert)

    async def _get_crl(self, ctx: ConfigContext, content: bytes) -> Outcome:
        issuer, _serial = load_issuer_and_serial(content)
        if asn1_name(ctx.ca_certificate.subject) != issuer:
            raise ScepFailure(FailInfo.BAD_CERT_ID, "this configuration's CA did not issue that certificate")
        return Outcome.success(scms.degenerate_certificates([], crls=[await self.door.crl(ctx.record.ca_id)]))


@dataclass(frozen=True)
class _Renewal:
    serial: str
    entity_name: str
    profile: str | None = None  # the renewed certificate's, when this configuration still offers it


_URL_SAFE = re.compile(r"[A-Za-z0-9._~-]*[A-Za-z0-9][A-Za-z0-9._~-]*")
"""Characters a path segment carries as they are (RFC 3986 unreserved), not only dots."""


def request_id_for(transaction_id: str) -> str:
    """The core request id of a transaction, safe in a URL path (``POST /admin/requests/<id>/approve``).

    The transactionID itself when it is made of unreserved characters and fits, so
    operators see the client's id in the approval queue; standard base64 (scepclient's
    SHA-1 of the key, with ``+``, ``/`` and ``=``) in its URL-safe form without padding;
    anything else as a digest. (Ids stored before are moved by migration scep_0004.)"""
    if len(transaction_id) <= REQUEST_ID_LENGTH and _URL_SAFE.fullmatch(transaction_id):
        return transaction_id
    url_safe = transaction_id.replace("+", "-").replace("/", "_").rstrip("=")
    if len(url_safe) <= REQUEST_ID_LENGTH and _URL_SAFE.fullmatch(url_safe):
        return url_safe
    return "scep-" + hashlib.sha256(transaction_id.encode()).hexdigest()[:40]


def _entity_name(csr: x509.CertificateSigningRequest, transaction_id: str) -> str:
    """The device is the end entity: named by the CSR's CN, else by the transactionID."""
    cns = csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if cns and isinstance(cns[0].value, str) and cns[0].value.strip():
        return cns[0].value.strip()[:255]
    return transaction_id[:255]


def _issued_info(issued: IssuedCertificate) -> IssuedInfo:
    cert = issued.certificate
    return IssuedInfo(
        serial_hex=serial_hex(issued.serial),
        sha1_thumbprint=cert.fingerprint(hashes.SHA1()).hex(),
        not_after=cert.not_valid_after_utc,
        issuer=cert.issuer.rfc4514_string(),
        certificate=cert,
    )


def parse_request_csr(der: bytes) -> x509.CertificateSigningRequest:
    """The PKCS#10 inside a PKCSReq, checked in the order that names the real problem:
    structure, key strength (badAlg), version (badRequest), proof of possession."""
    try:
        info = asn1_csr.CertificationRequest.load(der, strict=True)
        cri = info["certification_request_info"]
        spki = cri["subject_pk_info"].dump()
        version = cri["version"].native
    except (ValueError, TypeError) as exc:
        raise ScepFailure(FailInfo.BAD_REQUEST, "the pkcsPKIEnvelope does not hold a PKCS#10 request") from exc
    try:
        public_key = serialization.load_der_public_key(spki)
    except (ValueError, TypeError, UnsupportedAlgorithm):  # unknown key algorithm OID or EC curve
        raise ScepFailure(FailInfo.BAD_ALG, "the request's public key algorithm is not supported") from None
    try:
        keys.check_key_strength(public_key)  # type: ignore[arg-type]
    except BadKey as exc:
        raise ScepFailure(FailInfo.BAD_ALG, exc.detail) from None
    if version not in (0, "v1"):
        raise ScepFailure(FailInfo.BAD_REQUEST, f"PKCS#10 version {version} is not v1 (0)")
    csr = load_csr(der)
    check_proof_of_possession(csr)
    return csr


SERVICE = web.AppKey("scep_service", ScepService)
"""The app's :class:`ScepService` (set by :func:`install`; the admin sub-app has its own)."""


def install(app: web.Application) -> ScepService:
    """A :class:`ScepService` on ``app``'s SCEP door, under :data:`SERVICE`, whose caches
    are dropped when the app stops."""
    service = ScepService(door(app, PROTOCOL))
    app[SERVICE] = service

    async def lifecycle(_app: web.Application) -> AsyncIterator[None]:
        yield
        service.close()
        await service.intune.close()

    app.cleanup_ctx.append(lifecycle)
    return service


def service_of(request: web.Request) -> ScepService:
    """The service of the app (or parent app) serving ``request``."""
    return request.config_dict[SERVICE]
