"""The Certificate Enrollment Web Service (MS-WSTEP) endpoints.

Served at ``/windows/<config>/ces/<auth>`` and at AD CS's ``/<CA-name>_CES_<mode>/
service.svc/CES`` (:func:`add_routes`). One request, in order:

1. authenticate as the path says (:mod:`.wssecurity`: UsernameToken, TLS client
   certificate; Kerberos: :mod:`.negotiate` when a keytab is configured, else a fault);
2. read the RequestSecurityToken (:mod:`.wstep`) and dispatch on its RequestType:
   ``Issue``, ``QueryTokenStatus``, ``KET``; anything else is a fault;
3. Issue: read the token (:mod:`.cmc`); a renewal's signer must be a certificate this
   gateway issued on the configuration's CA, valid in the store and within its validity
   (its signature was checked by :mod:`.cmc`); pick the template (the request's
   ``CertificateTemplate`` name-value pair or context item, the template extension of the
   CSR, or for a renewal the old certificate's), check the caller may enroll in it, and
   enroll through the door with the template's extension and subject rule. The row in
   ``windows_ces_requests`` that gives the request its numeric RequestID (Windows and
   cepces parse it as an integer; core request ids are hex) is written first; an issued
   certificate's serial is recorded in the issuance transaction (``within``); a refused
   request deletes it again, so a refusal leaves nothing behind;
4. QueryTokenStatus: the RequestID is answered only to the caller who made the request,
   by polling the core.

Every error is a SOAP 1.2 fault carrying ``CertificateEnrollmentWSDetail``
(:class:`.wstep.EnrollmentFault`), HTTP 500, never a traceback (:func:`.soap.endpoint`).
Key archival is not offered: a KET request is answered with the fault the spec asks for
when the issuer has no exchange certificate (3.1.4.2.2.1), ErrorCode
CERTSRV_E_KEY_ARCHIVAL_NOT_CONFIGURED.

The CMC response is signed with the HTTPS listener's certificate and key (as EST signs
its key packages), so no CA key leaves the core.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import re
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import BigInteger, Column, Index, MetaData, String, Table, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.columns import NAMING_CONVENTION, AutoId, UTCDateTime
from gateway.door import (
    CertificateRecord,
    Door,
    IssuedCertificate,
    IssueOverrides,
    PendingRequest,
    ProtocolConfigRecord,
    serial_hex,
)
from gateway.door import door as door_of
from gateway.edge import cms as ecms
from gateway.errors import ConfigError, ErrorKind, GatewayError

from . import cmc, negotiate, paths, soap, wssecurity, wstep
from .access import Access, NamedAccess
from .directory import policy as directory_policy
from .directory.ldap import Account
from .directory.names import NameRequired, directory_names
from .paths import CERTIFICATE, KERBEROS, USERNAME
from .settings import TemplateSettings, WindowsSettings, adcs_configuration
from .templates import TEMPLATE_INFORMATION, TEMPLATE_NAME, Template, build_template
from .wstep import EnrollmentFault

log = logging.getLogger("gateway.windows")

PROTOCOL = "windows"
UPN = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
_CONTROL = re.compile("[\x00-\x1f\x7f]")

metadata = MetaData(naming_convention=NAMING_CONVENTION)

requests = Table(
    "windows_ces_requests",
    metadata,
    Column("id", AutoId(), primary_key=True, autoincrement=True),  # the WSTEP RequestID
    Column("config_id", String(64), nullable=False),
    Column("caller", String(255), nullable=False),  # Caller.key: QueryTokenStatus answers only them
    Column("request_id", String(64), nullable=False),  # the core's request id given to enroll
    Column("body_part_id", BigInteger, nullable=True),  # of a CMC request, for the response
    Column("serial", String(64), nullable=True),  # once issued
    Column("template", String(64), nullable=False),  # commonName: what a renewal of it asks for
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "request_id"),
    Index(None, "serial"),
)
"""Numeric RequestIDs for CES requests (``migrations/windows_0002``)."""


# --- faults ----------------------------------------------------------------------------------


def _refused(exc: GatewayError, *, request_id: str | None = None, body_part_id: int | None = None,
             now: dt.datetime | None = None) -> EnrollmentFault:
    """A core or parser error as the fault Windows understands."""
    kind = exc.kind
    codes = {
        ErrorKind.BAD_REQUEST: (wstep.E_INVALIDARG, True),
        ErrorKind.BAD_CSR: (wstep.E_INVALIDARG, True),
        ErrorKind.BAD_SIGNATURE: (wstep.NTE_BAD_SIGNATURE, True),
        ErrorKind.BAD_KEY: (wstep.CERTSRV_E_KEY_LENGTH, True),
        ErrorKind.POLICY: (wstep.CERTSRV_E_BAD_REQUESTSUBJECT, True),
        ErrorKind.UNAUTHORIZED: (wstep.E_ACCESSDENIED, False),
        ErrorKind.FORBIDDEN: (wstep.E_ACCESSDENIED, False),
        ErrorKind.NOT_FOUND: (wstep.CERTSRV_E_PROPERTY_EMPTY, False),
        ErrorKind.REJECTED: (wstep.CERTSRV_E_ADMIN_DENIED_REQUEST, False),
        ErrorKind.UNAVAILABLE: (wstep.RPC_S_SERVER_UNAVAILABLE, False),
    }
    code, invalid = codes.get(kind, (wstep.E_FAIL, False))
    receiver = kind in (ErrorKind.UNAVAILABLE, ErrorKind.INTERNAL)
    binary = None
    if body_part_id is not None and not receiver:
        binary = cmc.pki_response(
            cmc.response_content(cmc.FAILED, body_part_id, exc.detail[:200], fail_info=cmc.BAD_REQUEST_FAIL_INFO),
            [], signer=None, signing_time=now or dt.datetime.now(dt.timezone.utc))
    subcode = (wssecurity.WSSE, exc.fault) if isinstance(exc, wssecurity.WsSecurityError) else None
    return EnrollmentFault(exc.detail, code, invalid_request=invalid, receiver=receiver, request_id=request_id,
                           binary_response=binary, subcode=subcode)


def _fault(reason: str, code: int, *, invalid_request: bool, request_id: str | None = None) -> EnrollmentFault:
    return EnrollmentFault(reason, code, invalid_request=invalid_request, request_id=request_id)


# --- context ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Service:
    """One CES endpoint as a request found it."""

    door: Door
    rec: ProtocolConfigRecord
    settings: WindowsSettings
    auth: str
    url: str  # this endpoint's URL, where QueryTokenStatus goes
    access: Access | None = None  # the caller's rights, once resolved (:func:`_resolved`)
    account: Account | None = None  # its directory account, with a ``directory``


async def authenticate(request: web.Request, svc: Service, env: soap.Envelope) -> wssecurity.Caller:
    if svc.auth not in svc.settings.auth:
        raise _fault(f"the {svc.auth} endpoint is not offered by this configuration", wstep.E_ACCESSDENIED,
                     invalid_request=False)
    try:
        if svc.auth == USERNAME:
            directory = svc.settings.directory
            if directory is not None and directory.password_logon:
                return await directory_policy.username_caller(svc.door, svc.rec, directory, env.security)
            return await wssecurity.username_caller(svc.door, svc.rec.id, env.security)
        if svc.auth == CERTIFICATE:
            return await wssecurity.certificate_caller(request, svc.door, {svc.rec.ca_id})
        if svc.settings.kerberos is not None:
            return await negotiate.kerberos_caller(request, svc.door, svc.settings.kerberos)
    except wssecurity.WsSecurityError as exc:
        raise _refused(exc) from None
    raise EnrollmentFault("Kerberos (Negotiate) authentication is not configured on this gateway: use the "
                          "UsernamePassword or Certificate endpoint", wstep.E_ACCESSDENIED,
                          invalid_request=False, receiver=True)


async def serve(request: web.Request, env: soap.Envelope, svc: Service) -> soap.Reply:
    """One RequestSecurityToken; any core error left unmapped becomes an enrollment fault."""
    soap.require_action(env, wstep.ACTION_RST, wstep.ACTION_KET)
    from . import mde2_http  # noqa: PLC0415 - MDM enrollment builds on this module

    if mde2_http.is_device_enrollment(env):  # MS-MDE2: same issuance, its own answer and faults
        return await mde2_http.serve(request, env, svc)
    try:
        return await _serve(request, env, svc)
    except GatewayError as exc:
        raise _refused(exc, now=svc.door.clock()) from None


async def _serve(request: web.Request, env: soap.Envelope, svc: Service) -> soap.Reply:
    caller = await authenticate(request, svc, env)
    try:
        rst = wstep.parse_rst(env.payload)
    except wstep.InvalidRst as exc:
        raise _refused(exc) from None
    if rst.token_type is not None and rst.token_type != wstep.X509V3:
        raise _fault(f"TokenType {rst.token_type[:200]!r} is not issued here (only X.509v3 certificates)",
                     wstep.E_INVALIDARG, invalid_request=True)
    if rst.request_type == wstep.ISSUE:
        return await issue(await _resolved(svc, caller), caller, rst)
    if rst.request_type == wstep.QUERY_TOKEN_STATUS:
        return await query_token_status(svc, caller, rst)
    if rst.request_type == wstep.KET:
        if not rst.request_ket:
            raise _fault("a KET request needs a RequestKET element", wstep.E_INVALIDARG, invalid_request=True)
        raise _fault("key archival is not offered: this CA has no key exchange certificate",
                     wstep.CERTSRV_E_KEY_ARCHIVAL_NOT_CONFIGURED, invalid_request=False)
    raise _fault(f"unknown RequestType {rst.request_type[:200]!r}", wstep.E_INVALIDARG, invalid_request=True)


# --- Issue -----------------------------------------------------------------------------------


async def _resolved(svc: Service, caller: wssecurity.Caller) -> Service:
    """The service with the templates on offer and the caller's rights (with a directory:
    what AD publishes and what the account's SIDs are granted)."""
    try:
        resolved = await directory_policy.resolve(svc.door, svc.rec, svc.settings, caller)
    except GatewayError as exc:
        raise _refused(exc) from None
    return dataclasses.replace(svc, settings=resolved.settings, access=resolved.access, account=resolved.account)


def _named_template(token: cmc.RequestToken, rst: wstep.Rst) -> str | None:
    for name, value in token.name_values:
        if name.lower() == "certificatetemplate" and value:
            return value
    return rst.context_value("CertificateTemplate")


def _extension_template(cert_or_csr: x509.Certificate | x509.CertificateSigningRequest,
                        settings: WindowsSettings) -> TemplateSettings | None:
    """The template a CSR or certificate names in its template extension (v2 by OID, v1 by name)."""
    for ext in cert_or_csr.extensions:
        value = ext.value
        if isinstance(value, x509.MSCertificateTemplate):
            return settings.template_by_oid(value.template_id.dotted_string)
        if ext.oid.dotted_string == TEMPLATE_NAME and isinstance(value, x509.UnrecognizedExtension):
            try:
                return settings.template(str(core.BMPString.load(value.value).native))
            except (ValueError, TypeError):
                continue
    return None


async def renewed_template(svc: Service, renewed: x509.Certificate) -> TemplateSettings | None:
    """The template a certificate was issued under: its template extension, else what this
    service recorded when it issued it (profiles may drop the extension)."""
    found = _extension_template(renewed, svc.settings)
    if found is not None:
        return found
    stmt = select(requests.c.template).where(requests.c.config_id == svc.rec.id,
                                             requests.c.serial == serial_hex(renewed.serial_number))
    async with svc.door.tables.read() as conn:
        name = (await conn.execute(stmt)).scalar()
    return None if name is None else svc.settings.template(str(name))


def choose_template(settings: WindowsSettings, token: cmc.RequestToken, rst: wstep.Rst,
                    renewed: x509.Certificate | None, old: TemplateSettings | None = None) -> TemplateSettings:
    named = _named_template(token, rst)
    chosen: TemplateSettings | None
    if named is not None:
        found = settings.template(named) or settings.template_by_oid(named)
        if found is None:
            raise _fault(f"no template {named[:64]!r} in this enrollment policy",
                         wstep.CERTSRV_E_UNSUPPORTED_CERT_TYPE, invalid_request=False)
        chosen = found
    else:
        from_csr = _extension_template(token.csr, settings)
        from_old = old if renewed is not None else None
        if from_csr is None and from_old is None:
            raise _fault("the request names no certificate template", wstep.CERTSRV_E_NO_CERT_TYPE,
                         invalid_request=False)
        chosen = from_csr if from_csr is not None else from_old
    assert chosen is not None
    if renewed is not None:
        if old is not None and old.name != chosen.name:
            raise _fault("a renewal must ask for the template of the certificate it renews",
                         wstep.CERTSRV_E_BAD_RENEWAL_CERT_ATTRIBUTE, invalid_request=False)
    return chosen


async def renewal_standing(svc: Service, signer: x509.Certificate) -> wssecurity.Caller:
    """The renewed certificate: ours, on this CA, valid in the store, within its validity."""
    try:
        return await wssecurity.certificate_standing(svc.door, signer, {svc.rec.ca_id})
    except wssecurity.FailedAuthentication as exc:
        code = (wstep.CRYPT_E_REVOKED if "revoked" in exc.detail
                else wstep.CERT_E_EXPIRED if "expired" in exc.detail else wstep.CERT_E_UNTRUSTEDROOT)
        raise _fault(f"renewal refused: {exc.detail}", code, invalid_request=False) from None


def _directory_subject(template: TemplateSettings, caller: wssecurity.Caller) -> tuple[x509.Name, tuple[x509.GeneralName, ...]]:
    """The subject the gateway builds (``subject = directory``): from the caller, until the
    next issue brings a directory (a certificate caller: its certificate's names)."""
    if caller.certificate is not None:
        return caller.certificate.subject, _sans_of(caller.certificate)
    name = caller.name
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])])
    sans: list[x509.GeneralName] = []
    if template.machine:
        if "." in name and " " not in name:
            sans.append(x509.DNSName(name))
    elif "@" in name:
        sans.append(x509.OtherName(UPN, core.UTF8String(name).dump()))
    return subject, tuple(sans)


def _sans_of(cert: x509.Certificate) -> tuple[x509.GeneralName, ...]:
    try:
        return tuple(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return ()


@dataclass(frozen=True)
class Enrolled:
    """What :func:`enroll` did: the RequestID given, the CMC body part answered, the outcome."""

    number: int
    body_part_id: int
    result: IssuedCertificate | PendingRequest
    template: TemplateSettings


async def issue(svc: Service, caller: wssecurity.Caller, rst: wstep.Rst) -> soap.Reply:
    done = await enroll(svc, caller, rst)
    if isinstance(done.result, PendingRequest):
        return _pending_reply(svc, done.number, done.body_part_id, done.result)
    return _issued_reply(svc, done.number, done.body_part_id, done.result.certificate, done.result.chain)


async def enroll(svc: Service, caller: wssecurity.Caller, rst: wstep.Rst) -> Enrolled:
    """An Issue request through the door (WSTEP and MDM enrollment answer it each their way)."""
    if rst.token is None:
        raise _fault("an Issue request needs a BinarySecurityToken", wstep.CERTSRV_E_NO_REQUEST, invalid_request=True)
    try:
        token = cmc.parse_request_token(rst.token, svc.settings.csr_policy)
    except GatewayError as exc:
        raise _refused(exc) from None
    renewed: wssecurity.Caller | None = None
    if token.signer is not None:
        renewed = await renewal_standing(svc, token.signer)
    old_template = await renewed_template(svc, token.signer) if token.signer is not None else None
    template_settings = choose_template(svc.settings, token, rst, token.signer, old_template)
    key_renewal = (renewed is not None and template_settings.key_based_renewal and caller.method == CERTIFICATE
                   and caller.record is not None and renewed.record is not None
                   and caller.record.fingerprint_sha256 == renewed.record.fingerprint_sha256)
    access = svc.access if svc.access is not None else NamedAccess(caller.name)
    if not key_renewal and not access.may_enroll(template_settings):
        raise _fault(f"{caller.name!r} may not enroll for template {template_settings.name!r}",
                     wstep.CERTSRV_E_TEMPLATE_DENIED, invalid_request=False)
    profile = svc.door.profile(template_settings.profile)
    if profile is None:
        raise _fault(f"template {template_settings.name!r} has no profile", wstep.E_FAIL, invalid_request=False)
    template = build_template(template_settings, profile, where=f"windows configuration {svc.rec.id!r}:")

    overrides = _request_names(_overrides(template, renewed, caller, svc.account), token.csr, svc.settings)
    entity = await _entity_name(svc, renewed or caller)

    core_id = uuid.uuid4().hex
    number = await _remember(svc, caller, core_id, token.body_part_id, template_settings.name)
    body_part_id = token.body_part_id if token.body_part_id is not None else 1

    async def record_serial(conn: AsyncConnection, cert: x509.Certificate) -> None:
        await conn.execute(update(requests).where(requests.c.id == number).values(serial=serial_hex(cert.serial_number)))

    try:
        result = await svc.door.enroll(
            svc.rec.id, token.csr, entity=entity[:255], entity_kind="device" if template_settings.machine else "user",
            profile=template_settings.profile, overrides=overrides,
            event_type="renew" if renewed is not None else "issue", actor=caller.actor, request_id=core_id,
            entity_attributes={"windows_template": template_settings.name, "enrolled_with": caller.method},
            within=record_serial, record=svc.rec,
        )
    except GatewayError as exc:
        await _forget(svc, number)
        raise _refused(exc, body_part_id=body_part_id, now=svc.door.clock()) from None
    except Exception:
        await _forget(svc, number)
        raise
    return Enrolled(number, body_part_id, result, template_settings)


def _overrides(template: Template, renewed: wssecurity.Caller | None, caller: wssecurity.Caller,
               account: Account | None = None) -> IssueOverrides:
    """What the CES decides beyond the CSR: the template's extension (v2 information or v1
    name, which Windows reads back), and the names: a renewal keeps the old certificate's
    (OLD_CERT_SUPPLIES_SUBJECT_AND_ALT_NAME), a ``directory`` template gets the caller's."""
    extensions = tuple(
        x509.Extension(x509.ObjectIdentifier(e.oid), e.critical,
                       x509.UnrecognizedExtension(x509.ObjectIdentifier(e.oid), e.value))
        for e in template.extensions if e.oid in (TEMPLATE_INFORMATION, TEMPLATE_NAME)
    )
    if renewed is not None and renewed.certificate is not None:
        return IssueOverrides(subject=renewed.certificate.subject, sans=_sans_of(renewed.certificate),
                              extensions=extensions)
    ad = template.settings.directory
    if template.settings.subject == "directory" and ad is not None and account is not None:
        try:
            found = directory_names(account, ad.name_flag, ad.enrollment_flag)
        except NameRequired as exc:
            raise _fault(exc.detail, exc.code, invalid_request=False) from None
        return IssueOverrides(subject=found.subject, sans=found.sans, extensions=extensions + found.extensions)
    if template.settings.subject == "directory":
        subject, sans = _directory_subject(template.settings, caller)
        return IssueOverrides(subject=subject, sans=sans, extensions=extensions)
    return IssueOverrides(extensions=extensions)


def _request_names(overrides: IssueOverrides, csr: x509.CertificateSigningRequest,
                   settings: WindowsSettings) -> IssueOverrides:
    """The configuration's CSR policy (SHA-1, legacy strings) for the core's proof of
    possession, and a subject from the request made sane: the MDM client ends its CN with
    a C string's NUL, which is dropped; any other control character is refused."""
    subject = overrides.subject
    if subject is None and any(isinstance(a.value, str) and _CONTROL.search(a.value) for a in csr.subject):
        rdns = []
        for rdn in csr.subject.rdns:
            attrs = []
            for a in rdn:
                value = a.value.rstrip("\x00") if isinstance(a.value, str) else a.value
                if isinstance(value, str) and _CONTROL.search(value):
                    raise _fault("the request's subject holds control characters", wstep.CERTSRV_E_BAD_REQUESTSUBJECT,
                                 invalid_request=True)
                if value:
                    attrs.append(x509.NameAttribute(a.oid, value))
            if attrs:
                rdns.append(x509.RelativeDistinguishedName(attrs))
        subject = x509.Name(rdns)
    return dataclasses.replace(overrides, subject=subject, csr_policy=settings.csr_policy)


async def _entity_name(svc: Service, who: wssecurity.Caller) -> str:
    """The end entity a request is for: a certificate's own entity when the gateway knows
    it (a renewal, a certificate caller), else the caller's name."""
    if who.record is not None and who.record.entity_id is not None:
        ent = await svc.door.entity(who.record.entity_id)
        if ent is not None:
            return ent.name
    return who.name


async def _remember(svc: Service, caller: wssecurity.Caller, core_id: str, body_part_id: int | None,
                    template: str) -> int:
    async with svc.door.tables.transaction() as conn:
        row = (await conn.execute(requests.insert().values(
            config_id=svc.rec.id, caller=caller.key[:255], request_id=core_id, body_part_id=body_part_id,
            serial=None, template=template, created_at=svc.door.clock(),
        ).returning(requests.c.id))).one()
    return int(row.id)


async def _forget(svc: Service, number: int) -> None:
    try:
        async with svc.door.tables.transaction() as conn:
            await conn.execute(delete(requests).where(requests.c.id == number, requests.c.serial.is_(None)))
    except GatewayError:
        log.warning("could not delete refused CES request %s", number)


def _issued_reply(svc: Service, number: int, body_part_id: int, cert: x509.Certificate,
                  chain: tuple[x509.Certificate, ...]) -> soap.Reply:
    now = svc.door.clock()
    content = cmc.response_content(cmc.SUCCESS, body_part_id, wstep.ISSUED, issued=cert)
    response = cmc.pki_response(content, [cert, *chain], signer=_signer(svc.door), signing_time=now)
    return wstep.issued(cert.public_bytes(serialization.Encoding.DER), response, str(number))


def _pending_reply(svc: Service, number: int, body_part_id: int, pending: PendingRequest) -> soap.Reply:
    now = svc.door.clock()
    content = cmc.response_content(cmc.PENDING, body_part_id, wstep.PENDING,
                                   pend_token=str(number).encode(), pend_time=now)
    response = cmc.pki_response(content, [], signer=_signer(svc.door), signing_time=now)
    return wstep.pending(response, str(number), svc.url)


# --- QueryTokenStatus --------------------------------------------------------------------------


async def query_token_status(svc: Service, caller: wssecurity.Caller, rst: wstep.Rst) -> soap.Reply:
    raw = (rst.request_id or "").strip().rstrip("\x00")
    if not raw:
        raise _fault("QueryTokenStatus needs a RequestID", wstep.E_INVALIDARG, invalid_request=True)
    if not raw.isdigit() or len(raw) > 18:
        raise _fault(f"no request {raw[:32]!r}", wstep.CERTSRV_E_PROPERTY_EMPTY, invalid_request=False, request_id=raw[:32])
    number = int(raw)
    stmt = select(requests).where(requests.c.id == number, requests.c.config_id == svc.rec.id)
    async with svc.door.tables.read() as conn:
        row = (await conn.execute(stmt)).first()
    if row is None or row.caller != caller.key[:255]:  # another caller's request: as if unknown
        raise _fault(f"no request {raw}", wstep.CERTSRV_E_PROPERTY_EMPTY, invalid_request=False, request_id=raw)
    body_part_id = row.body_part_id if row.body_part_id is not None else 1
    if row.serial is not None:
        rec = await svc.door.certificate(row.serial)
        return await _issued_from_record(svc, number, body_part_id, rec)
    try:
        result = await svc.door.poll(row.request_id)
    except GatewayError as exc:
        raise _refused(exc, request_id=raw) from None
    if isinstance(result, IssuedCertificate):
        async with svc.door.tables.transaction() as conn:
            await conn.execute(update(requests).where(requests.c.id == number)
                               .values(serial=serial_hex(result.serial)))
        return _issued_reply(svc, number, body_part_id, result.certificate, result.chain)
    if result.status == "rejected":
        raise _fault(f"the request was denied{': ' + result.reason if result.reason else ''}",
                     wstep.CERTSRV_E_ADMIN_DENIED_REQUEST, invalid_request=False, request_id=raw)
    if result.status == "issued" and result.serial is not None:
        rec = await svc.door.certificate(serial_hex(result.serial))
        return await _issued_from_record(svc, number, body_part_id, rec)
    return _pending_reply(svc, number, body_part_id, result)


async def _issued_from_record(svc: Service, number: int, body_part_id: int, rec: CertificateRecord) -> soap.Reply:
    cert = x509.load_der_x509_certificate(rec.der)
    return _issued_reply(svc, number, body_part_id, cert, await svc.door.chain(rec.ca_id))


# --- the CMC response signer ---------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _load_signer(cert_path: Path, key_path: Path, _mtime: float) -> ecms.Signer | None:
    try:
        cert = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, IndexError, TypeError):
        log.warning("the HTTPS certificate cannot sign CMC responses; they go unsigned")
        return None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        return None
    return ecms.Signer(cert, key)


def _signer(door: Door) -> ecms.Signer | None:
    """The HTTPS listener's certificate and key (reloaded when the file changes)."""
    config = door.config
    cert_path, key_path = config.path(config.tls.certificate), config.path(config.tls.key)
    try:
        mtime = cert_path.stat().st_mtime
    except OSError:
        return None
    return _load_signer(cert_path, key_path, mtime)


# --- routes ---------------------------------------------------------------------------------------


def _base_url(request: web.Request, door: Door) -> str:
    return door.config.https_url


async def _configured(make: Awaitable[tuple[ProtocolConfigRecord, WindowsSettings]]) -> tuple[
        ProtocolConfigRecord, WindowsSettings]:
    """The endpoint's configuration; none (or a broken one) is an enrollment fault too."""
    try:
        return await make
    except ConfigError as exc:
        raise EnrollmentFault(exc.detail, wstep.E_FAIL, invalid_request=False, receiver=True) from None
    except GatewayError as exc:
        raise _refused(exc) from None


async def _by_id(door: Door, config_id: str) -> tuple[ProtocolConfigRecord, WindowsSettings]:
    rec = await door.configuration(config_id)
    return rec, WindowsSettings.of(rec)


@soap.endpoint
async def gateway_ces(request: web.Request, env: soap.Envelope) -> soap.Reply:
    """``/windows/<config>/ces/<auth>``."""
    auth = request.match_info["auth"]
    if auth not in (USERNAME, CERTIFICATE, KERBEROS):
        raise web.HTTPNotFound()
    door = door_of(request, PROTOCOL)
    rec, settings = await _configured(_by_id(door, request.match_info["config"]))
    url = _base_url(request, door) + paths.ces_path(rec.id, auth)
    return await serve(request, env, Service(door, rec, settings, auth, url))


@soap.endpoint
async def adcs_ces(request: web.Request, env: soap.Envelope) -> soap.Reply:
    """``/<CA-name>_CES_<mode>/service.svc/CES``."""
    service = paths.parse_adcs_service(request.match_info["application"], request.match_info["endpoint"])
    if service is None or service.service != "ces":
        raise web.HTTPNotFound()
    door = door_of(request, PROTOCOL)
    rec, settings = await _configured(adcs_configuration(door, ca_name=service.ca_name))
    url = _base_url(request, door) + paths.adcs_ces_path(settings.ca_name, service.auth)
    return await serve(request, env, Service(door, rec, settings, service.auth, url))


def add_routes(app: web.Application) -> None:
    """Mount the CES endpoints (HTTPS app). The AD CS route matches only ``..._CES_<mode>``
    applications and the ``CES`` endpoint (case-insensitively, as IIS does), so it sits
    beside the CEP route (``.../CEP``) without overlap."""
    app.router.add_post(f"{paths.PREFIX}/{paths.CONFIG_PATTERN}/ces/{{auth}}", negotiate.mutual(gateway_ces))
    app.router.add_post(r"/{application:[A-Za-z0-9.-]+_(?i:ces)_[A-Za-z]+}/{svc:(?i:service\.svc)}/{endpoint:(?i:ces)}",
                        negotiate.mutual(adcs_ces))
