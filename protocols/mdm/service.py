"""The MDM web service: one SOAP endpoint per MDM configuration, eight operations.

``POST /mdmws/<config-id>/AdminService`` (HTTPS only): the body is parsed once
(:mod:`.soap`), the caller authenticated (:mod:`.users`: HTTP Basic or a WS-Security
UsernameToken), the configuration's settings read (:mod:`.settings`), the operation
run, and the call audited (``mdm_call``: operation, platform, user, device, digital ID,
outcome and fault code; never a password, challenge or key). Whatever goes wrong is a
SOAP fault with a stable code (:mod:`.faults`); nothing is issued or changed by a
refused call.

Operations (names are ours, DIVERGENCES.md): ``Authenticate``, ``ListDigitalIds``,
``ListProfiles``, ``RequestScepChallenge`` (a one-time challenge from the SCEP
configuration the MDM configuration names, bound to the subject the digital ID's RDN
format yields and to its profile), ``Enroll`` (a key generated here, the certificate and
key returned as a password-protected PKCS#12), ``Renew`` (by the previous certificate's
serial, keeping its subject and profile, or by digital ID like ``Enroll``), ``Revoke``
and ``GetCertificateStatus`` (certificates issued through this configuration, or through
its SCEP configuration with a challenge it handed out). Every call is audited with the
device's end entity ``<platform>:<device>``, the name both flows give it.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import isodate
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from gateway.door import CertificateRecord, Door, ProtocolConfigRecord, RevocationReason
from gateway.edge import xml as X
from gateway.edge.basic import parse_basic
from gateway.edge.xml import Element
from gateway.errors import BadRequest, ConfigError, GatewayError
from gateway.keygen import check_password
from gateway.profiles.model import EKU_NAMES

from .faults import MdmFault, fault_for
from .profiles import is_mdmws, server_keys
from .rdn import check_values, render
from .settings import DEFAULT_KEY_ALGORITHM, DEFAULT_PKCS12_ENCRYPTION, DigitalId, MdmSettings, parse_settings
from .soap import NS, Envelope, fault_response, parse_envelope, response, version_of
from .users import authenticate

log = logging.getLogger("gateway.mdm")

PROTOCOL = "mdm"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
PASSWORD_DIGEST = ("http://docs.oasis-open.org/wss/2004/01/"
                   "oasis-200401-wss-username-token-profile-1.0#PasswordDigest")
MAX_CHALLENGE_MINUTES = 30 * 24 * 60
REASONS = ("unspecified", "keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation",
           "privilegeWithdrawn")
"""Revocation reasons an MDM may give (RFC 5280): not CA compromise, hold or removeFromCRL."""
MDM_CONFIG_ATTRIBUTE = "mdm_config"
"""The end-entity attribute a SCEP-redeemed challenge carries: the MDM configuration that
asked for it, what makes the certificate this configuration's to revoke or report on."""
DEVICE_VARIABLES = ("deviceId", "udid", "serialNumber", "imei", "meid", "deviceName")
"""Where the device's identifier is taken from when the request has no DeviceId, in order."""


def admin_service_url(https_url: str, config_id: str) -> str:
    """The configuration's Web Service URL (``https_url``: the gateway's HTTPS base)."""
    return f"{https_url}/mdmws/{config_id}/AdminService"


@dataclass
class Call:
    """One request as the operations and the audit see it."""

    door: Door
    record: ProtocolConfigRecord
    settings: MdmSettings
    username: str
    envelope: Envelope
    audit: dict[str, str | None] = field(default_factory=dict)

    @property
    def actor(self) -> str:
        return f"mdm:{self.record.id}:{self.username}"

    @property
    def payload(self) -> Element:
        return self.envelope.payload

    def text(self, name: str, *, required: bool = False) -> str | None:
        try:
            value = X.child_text(self.payload, NS, name)
        except X.XmlError as exc:
            raise MdmFault("InvalidRequest", exc.detail) from None
        if value is not None and value == "":
            value = None
        if required and value is None:
            raise MdmFault("InvalidRequest", f"{self.envelope.operation} needs {name}")
        return value

    def variables(self) -> dict[str, str]:
        try:
            holder = X.child(self.payload, NS, "Variables")
            values: dict[str, str] = {}
            for var in X.children(holder, NS, "Variable") if holder is not None else []:
                name = X.child_text(var, NS, "Name") or ""
                value = X.child_text(var, NS, "Value") or ""
                if name in values:
                    raise MdmFault("InvalidRequest", f"variable {name} is given twice")
                values[name] = value
        except X.XmlError as exc:
            raise MdmFault("InvalidRequest", exc.detail) from None
        return check_values(values)

    @property
    def login_for(self) -> str | None:
        """The digital ID this credential is the login of: a credential named like a digital
        ID, so that a platform whose connector has only URL, username and password fields
        enters the digital ID as the username. Such a login serves that digital ID alone."""
        return self.username if self.username in self.settings.digital_ids else None

    def has_digital_id(self) -> bool:
        """Whether the request names a digital ID, itself or through its login."""
        return self.text("DigitalId") is not None or self.login_for is not None

    def digital_id(self) -> DigitalId:
        name = self.text("DigitalId") or self.login_for
        if name is None:
            raise MdmFault("InvalidRequest", f"{self.envelope.operation} needs DigitalId")
        self.audit["digital_id"] = name[:64]
        found = self.settings.digital_ids.get(name)
        if found is None:
            raise MdmFault("UnknownDigitalId", f"no digital ID {name!r} in MDM configuration {self.record.id}")
        if self.login_for is not None and name != self.login_for:
            raise MdmFault("Forbidden", f"credential {self.username} is the login of digital ID {self.login_for} "
                                        f"only, not of {name}")
        return found

    def device(self, values: dict[str, str]) -> str:
        """The device's identifier for the end entity and the audit."""
        given = self.text("DeviceId")
        if given is not None and (len(given) > 128 or not given.isprintable()):
            raise MdmFault("InvalidRequest", "DeviceId must be 1-128 printable characters")
        device = given or next((values[v] for v in DEVICE_VARIABLES if v in values), None)
        if device is None:
            raise MdmFault("InvalidRequest", "give DeviceId or one of the variables " + ", ".join(DEVICE_VARIABLES))
        self.audit["device"] = device
        self.audit["entity"] = self.entity(device)
        return device

    def entity(self, device: str) -> str:
        """The device's end entity, in both flows (PKCS#12 and SCEP challenge)."""
        return f"{self.settings.platform}:{device}"

    def entity_known(self, name: str) -> None:
        """Audit the end entity of a certificate the call acts on (Revoke, status, Renew)."""
        self.audit["entity"] = name[:255]
        prefix = self.settings.platform + ":"
        self.audit["device"] = name[len(prefix):] if name.startswith(prefix) else name


Operation = Callable[[Call], Awaitable[Element]]


# --- operations ------------------------------------------------------------------------


def _out(name: str) -> Element:
    return X.element(NS, name)


def _put(parent: Element, name: str, value: str | None) -> None:
    if value is not None:
        X.sub(parent, NS, name, value)


def _time(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def op_authenticate(call: Call) -> Element:
    out = _out("AuthenticateResponse")
    _put(out, "ConfigurationId", call.record.id)
    _put(out, "Platform", call.settings.platform)
    _put(out, "Username", call.username)
    _put(out, "ServerTime", _time(call.door.clock()))
    return out


async def op_list_digital_ids(call: Call) -> Element:
    out = _out("ListDigitalIdsResponse")
    issuer = call.door.challenge_issuer("scep")
    scep_url = issuer.url(call.settings.scep_config) if issuer and call.settings.scep_config else None
    for did in call.settings.digital_ids.values():
        if call.login_for is not None and did.name != call.login_for:
            continue  # a digital ID's own login sees that digital ID alone
        el = X.sub(out, NS, "DigitalId")
        _put(el, "Name", did.name)
        _put(el, "Description", did.description)
        _put(el, "CaId", call.record.ca_id)
        _put(el, "Profile", did.profile)
        _put(el, "ParentDn", did.parent_dn.rfc4514_string())
        _put(el, "RdnFormat", did.rdn_format.text)
        for var in did.rdn_format.variables:
            _put(el, "RequiredVariable", var)
        _put(el, "ServerKeyGeneration", "true" if did.server_keys else "false")
        _put(el, "WebServiceUrl", admin_service_url(call.door.config.https_url, call.record.id))
        _put(el, "ScepUrl", scep_url)
    return out


async def op_list_profiles(call: Call) -> Element:
    out = _out("ListProfilesResponse")
    for name in call.record.profiles:
        profile = call.door.profile(name)
        if profile is None or not is_mdmws(name):
            continue
        el = X.sub(out, NS, "Profile")
        _put(el, "Name", name)
        _put(el, "Description", profile.description)
        _put(el, "Validity", _iso_period(profile.validity))
        for ku in sorted(profile.key_usage):
            _put(el, "KeyUsage", ku)
        for oid in profile.extended_key_usage:
            _put(el, "ExtendedKeyUsage", _EKU_NAMES.get(oid, oid.dotted_string))
        _put(el, "ServerKeyGeneration", "true" if server_keys(name) else "false")
    return out


async def op_request_scep_challenge(call: Call) -> Element:
    did = call.digital_id()
    values = call.variables()
    device = call.device(values)
    subject = render(did.rdn_format, did.parent_dn, values)
    scep_config = call.settings.scep_config
    issuer = call.door.challenge_issuer("scep")
    if scep_config is None or issuer is None:
        raise MdmFault("ScepNotAvailable", f"MDM configuration {call.record.id} hands out no SCEP challenges")
    minutes = call.text("ValidityMinutes")
    ttl = call.settings.challenge_ttl
    if minutes is not None:
        if not minutes.isdigit() or not 1 <= int(minutes) <= MAX_CHALLENGE_MINUTES:
            raise MdmFault("InvalidRequest", f"ValidityMinutes must be 1-{MAX_CHALLENGE_MINUTES}")
        ttl = dt.timedelta(minutes=int(minutes))
    issued = await issuer.issue(
        scep_config, bound_subject=subject.rfc4514_string(), profile=did.profile, issued_by=call.actor, ttl=ttl,
        attributes={MDM_CONFIG_ATTRIBUTE: call.record.id, "mdm_platform": call.settings.platform,
                    "mdm_device": device, "digital_id": did.name},
        entity=call.entity(device),
    )
    out = _out("RequestScepChallengeResponse")
    _put(out, "Challenge", issued.value)
    _put(out, "ExpiresAt", _time(issued.expires_at))
    _put(out, "Subject", issued.bound_subject)
    _put(out, "ScepUrl", issued.url)
    return out


async def op_enroll(call: Call) -> Element:
    did = call.digital_id()
    values = call.variables()
    device = call.device(values)
    subject = render(did.rdn_format, did.parent_dn, values)
    return await _keygen(call, "EnrollResponse", did.profile, subject, call.entity(device), did.key_algorithm,
                         did.pkcs12_encryption, server_keys=did.server_keys)


async def op_renew(call: Call) -> Element:
    serial = call.text("SerialNumber")
    if serial is None:
        if not call.has_digital_id():
            raise MdmFault("InvalidRequest", "Renew needs SerialNumber (the certificate renewed) or DigitalId")
        did = call.digital_id()
        values = call.variables()
        device = call.device(values)
        subject = render(did.rdn_format, did.parent_dn, values)
        return await _keygen(call, "RenewResponse", did.profile, subject, call.entity(device), did.key_algorithm,
                             did.pkcs12_encryption, server_keys=did.server_keys)
    rec, entity = await _own_certificate(call, serial)
    if rec.status != "valid":
        raise MdmFault("Conflict", f"certificate {rec.serial} is {rec.status}: renew by digital ID instead")
    cert = x509.load_der_x509_certificate(rec.der)
    same = next((d for d in call.settings.digital_ids.values() if d.profile == rec.profile), None)
    call.audit["renewed"] = rec.serial
    return await _keygen(call, "RenewResponse", rec.profile, cert.subject, entity or f"{call.settings.platform}:"
                         f"{rec.serial}", same.key_algorithm if same else rec.key_algorithm or DEFAULT_KEY_ALGORITHM,
                         same.pkcs12_encryption if same else DEFAULT_PKCS12_ENCRYPTION,
                         server_keys=server_keys(rec.profile) and rec.profile in call.record.profiles)


async def _keygen(call: Call, answer: str, profile: str, subject: x509.Name, entity: str, algorithm: str,
                  encryption: str, *, server_keys: bool) -> Element:
    if not server_keys:
        raise MdmFault("ServerKeyGenerationNotAllowed",
                       f"profile {profile} is for keys the device holds: request a SCEP challenge instead")
    algorithm = call.text("KeyAlgorithm") or algorithm
    given = call.text("Password")
    try:
        password = check_password(given) if given is not None else None
    except BadRequest as exc:
        raise MdmFault("InvalidPassword", exc.detail) from None
    generated = None
    if password is None:
        generated = secrets.token_urlsafe(12)
        password = generated.encode()
    result = await call.door.keygen(
        call.record.id, entity=entity, key_algorithm=algorithm, subject=subject, profile=profile,
        pkcs12_password=password, pkcs12_encryption=encryption, actor=call.actor,
    )
    cert = result.issued.certificate
    assert result.pkcs12 is not None
    call.audit["serial"] = f"{cert.serial_number:x}"
    out = _out(answer)
    _put(out, "SerialNumber", f"{cert.serial_number:x}")
    _put(out, "Subject", cert.subject.rfc4514_string())
    _put(out, "NotBefore", _time(cert.not_valid_before_utc))
    _put(out, "NotAfter", _time(cert.not_valid_after_utc))
    _put(out, "Certificate", base64.b64encode(cert.public_bytes(Encoding.DER)).decode())
    _put(out, "Pkcs12", base64.b64encode(result.pkcs12).decode())
    _put(out, "Password", generated)
    return out


async def op_revoke(call: Call) -> Element:
    rec, _ = await _own_certificate(call, call.text("SerialNumber", required=True) or "")
    reason_text = call.text("Reason") or "unspecified"
    if reason_text not in REASONS:
        raise MdmFault("InvalidRequest", f"Reason must be one of {', '.join(REASONS)}")
    await call.door.revoke(rec.serial, RevocationReason.parse(reason_text), actor=call.actor,
                           config_id=rec.protocol_config)
    return _status("RevokeResponse", await call.door.certificate(rec.serial), call.door.clock())


async def op_status(call: Call) -> Element:
    rec, _ = await _own_certificate(call, call.text("SerialNumber", required=True) or "")
    return _status("GetCertificateStatusResponse", rec, call.door.clock())


async def _own_certificate(call: Call, serial: str) -> tuple[CertificateRecord, str | None]:
    """A certificate this configuration caused, with its end entity's name: issued through
    the configuration itself (PKCS#12), or through its SCEP configuration with a challenge
    this configuration handed out (the entity says so). A SCEP configuration may be shared
    (``scep_config`` naming one that also serves other clients): its other certificates
    are not this configuration's to revoke or look at."""
    call.audit["serial"] = serial[:64]
    rec = await call.door.find_certificate(serial.strip().lower())
    ent = await call.door.entity(rec.entity_id) if rec is not None and rec.entity_id is not None else None
    mine = rec is not None and (
        rec.protocol_config == call.record.id
        or (call.settings.scep_config is not None and rec.protocol_config == call.settings.scep_config
            and ent is not None and ent.attributes.get(MDM_CONFIG_ATTRIBUTE) == call.record.id))
    if rec is None or not mine:
        raise MdmFault("CertificateNotFound", f"no certificate {serial[:64]!r} issued through MDM configuration "
                       f"{call.record.id}")
    if ent is not None:
        call.entity_known(ent.name)
    return rec, ent.name if ent is not None else None


def _status(answer: str, rec: CertificateRecord, now: dt.datetime) -> Element:
    out = _out(answer)
    state = {"revoked": "revoked", "hold": "suspended"}.get(rec.status, "valid")
    if state == "valid" and rec.not_after < now:
        state = "expired"
    _put(out, "SerialNumber", rec.serial)
    _put(out, "Status", state)
    _put(out, "Subject", rec.subject)
    _put(out, "Profile", rec.profile)
    _put(out, "NotBefore", _time(rec.not_before))
    _put(out, "NotAfter", _time(rec.not_after))
    if rec.revoked_at is not None:
        _put(out, "RevokedAt", _time(rec.revoked_at))
    if rec.revocation_reason is not None:
        name = RevocationReason(rec.revocation_reason).name
        head, *rest = name.split("_")
        _put(out, "RevocationReason", head + "".join(w.title() for w in rest))
    return out


def _iso_period(value: object) -> str:
    return str(isodate.duration_isoformat(value))


_EKU_NAMES = {oid: name for name, oid in EKU_NAMES.items()}


OPERATIONS: dict[str, Operation] = {
    "Authenticate": op_authenticate,
    "ListDigitalIds": op_list_digital_ids,
    "ListProfiles": op_list_profiles,
    "RequestScepChallenge": op_request_scep_challenge,
    "Enroll": op_enroll,
    "Renew": op_renew,
    "Revoke": op_revoke,
    "GetCertificateStatus": op_status,
}


# --- the endpoint -------------------------------------------------------------------------


def credentials_of(request: web.Request, envelope: Envelope) -> tuple[str, str]:
    """(user name, password) from HTTP Basic or a UsernameToken; AuthenticationFailed otherwise."""
    header = request.headers.get("Authorization")
    if header is not None:
        try:
            basic = parse_basic(header)
        except GatewayError as exc:
            raise MdmFault("AuthenticationFailed", exc.detail) from None
        return basic.username, basic.password
    return username_token(envelope)


def username_token(envelope: Envelope) -> tuple[str, str]:
    """(user name, password) of the WS-Security UsernameToken (PasswordText only)."""
    try:
        security = X.child(envelope.header, WSSE, "Security") if envelope.header is not None else None
        token = X.child(security, WSSE, "UsernameToken") if security is not None else None
        if token is None:
            raise MdmFault("AuthenticationFailed",
                           "authenticate with HTTP Basic or a WS-Security UsernameToken")
        password_el = X.one(token, WSSE, "Password")
        if (password_el.get("Type") or "").strip() == PASSWORD_DIGEST:
            raise MdmFault("AuthenticationFailed", "PasswordDigest is not supported: send PasswordText (over TLS)")
        return X.child_text(token, WSSE, "Username") or "", X.text(password_el)
    except X.XmlError as exc:
        raise MdmFault("AuthenticationFailed", f"UsernameToken: {exc.detail}") from None


class MdmService:
    def __init__(self, door: Door) -> None:
        self.door = door

    async def handle(self, request: web.Request, rec: ProtocolConfigRecord, data: bytes) -> web.Response:
        version = version_of(data)
        audit: dict[str, str | None] = {}
        operation = None
        username = None
        platform = rec.settings.get("platform")
        if isinstance(platform, str) and platform:  # known before authentication: refusals carry it too
            audit["platform"] = platform[:32]
        try:
            envelope = parse_envelope(data)
            version = envelope.version
            operation = envelope.operation
            handler = OPERATIONS.get(operation)
            if handler is None:
                raise MdmFault("UnknownOperation", f"{operation} is not an operation of this service")
            username, password = credentials_of(request, envelope)
            await authenticate(self.door.credentials, rec.id, username, password)
            settings = parse_settings(rec)
            audit["platform"] = settings.platform
            call = Call(self.door, rec, settings, username, envelope, audit)
            answer = await handler(call)
        except MdmFault as fault:
            return await self._refused(rec, operation, username, audit, fault, version)
        except GatewayError as exc:
            if isinstance(exc, ConfigError):
                log.warning("mdm %s: %s", rec.id, exc.detail)
            return await self._refused(rec, operation, username, audit, fault_for(exc), version)
        except Exception:
            log.exception("mdm %s %s: internal error", rec.id, operation)
            internal = MdmFault("InternalError", "the gateway could not complete the call; the log has the details")
            return await self._refused(rec, operation, username, audit, internal, version)
        await self._audit(rec, operation, username, audit, "success", None)
        return response(version, answer)

    async def _refused(self, rec: ProtocolConfigRecord, operation: str | None, username: str | None,
                       audit: dict[str, str | None], fault: MdmFault, version: str) -> web.Response:
        log.info("mdm %s %s refused: %s %s", rec.id, operation or "-", fault.code, fault.message)
        self.door.count_error(rec.id, fault.code)
        try:
            await self._audit(rec, operation, username, audit, "failure", fault.code)
        except GatewayError:
            log.warning("mdm %s: the refusal could not be audited (store unavailable)", rec.id)
        return fault_response(fault, version)

    async def _audit(self, rec: ProtocolConfigRecord, operation: str | None, username: str | None,
                     audit: dict[str, str | None], status: str, code: str | None) -> None:
        platform = audit.get("platform")
        device = audit.get("device")
        await self.door.record_event(
            "mdm_call", status, protocol_config=rec.id, serial=audit.get("serial"),
            operation=operation, username=username[:64] if username else None, platform=platform,
            device=device, entity=audit.get("entity"),
            digital_id=audit.get("digital_id"), renewed=audit.get("renewed"), fault=code,
        )
