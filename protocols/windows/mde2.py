"""MS-MDE2 (Windows MDM enrollment) messages: Discover, the provisioning document, faults.

Windows' MDM enrollment client ("Access work or school") speaks MS-XCEP and MS-WSTEP to
the CEP and CES this package already serves; MS-MDE2 adds three things, built here:

- **Discover** (3.1.4.1): the request names the client's versions and authentication
  policies; the DiscoverResponse names the one policy chosen, the EnrollmentVersion and
  the CEP and CES URLs (:func:`parse_discover`, :func:`choose_policy`,
  :func:`negotiate_version`, :func:`discover_response`);
- the **RequestSecurityTokenResponseCollection** for TokenType DeviceEnrollmentToken
  (3.4.4.1.1.2): no PKCS#7, the answer is a ``wap-provisioningdoc`` (2.2.9.1) in a
  BinarySecurityToken of ValueType DeviceEnrollmentProvisionDoc
  (:func:`provisioning_document`, :func:`rstrc`);
- **faults** (2.2.10): a Subcode from MS-MDE2's list (MessageFormat, Authentication,
  Authorization, CertificateRequest, EnrollmentServer) which Windows maps to its
  MENROLL_E_* errors, and a ``DeviceEnrollmentServiceError`` detail with ErrorType
  CustomServerError so Windows shows the reason text (:class:`Mde2Fault`).

Reading is namespace-strict like the rest of the package; the spec's own Discover examples
(4.1.1.x) write the namespace with a trailing slash, so both spellings are read.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from . import soap
from gateway.edge import xml as X
from .wssecurity import WSSE
from .wstep import BASE64, WST, WSTEP
from gateway.edge.xml import Element

NS = "http://schemas.microsoft.com/windows/management/2012/01/enrollment"
READ_NAMESPACES = (NS, NS + "/")
ACTION_DISCOVER = NS + "/IDiscoveryService/Discover"
ACTION_DISCOVER_RESPONSE = NS + "/IDiscoveryService/DiscoverResponse"

_CM = "http://schemas.microsoft.com/5.0.0.0/ConfigurationManager/Enrollment/"
DEVICE_ENROLLMENT_TOKEN = _CM + "DeviceEnrollmentToken"
PROVISION_DOC = _CM + "DeviceEnrollmentProvisionDoc"
RENEW = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Renew"

ON_PREMISE = "OnPremise"
CERTIFICATE = "Certificate"
FEDERATED = "Federated"
AUTH_POLICIES = (ON_PREMISE, CERTIFICATE, FEDERATED)

VERSIONS = (Decimal("3.0"), Decimal("4.0"))
"""EnrollmentVersions answered. 5.0 and later add TPM attestation (AIK claims, Azure
Attestation), which this gateway does not check, so a newer client is answered 4.0."""

MAX_POLICIES = 8

# --- faults ------------------------------------------------------------------------------

MESSAGE_FORMAT = "MessageFormat"
AUTHENTICATION = "Authentication"
AUTHORIZATION = "Authorization"
CERTIFICATE_REQUEST = "CertificateRequest"
ENROLLMENT_SERVER = "EnrollmentServer"
CUSTOM_SERVER_ERROR = "CustomServerError"
DEVICE_NOT_SUPPORTED = "DeviceNotSupported"
NOT_SUPPORTED = "NotSupported"


def error_detail(error_type: str, message: str, trace_id: str) -> Element:
    """``DeviceEnrollmentServiceError`` (2.2.10)."""
    detail = X.element(WSTEP, "DeviceEnrollmentServiceError", nsmap={None: WSTEP})
    X.sub(detail, WSTEP, "ErrorType", error_type)
    X.sub(detail, WSTEP, "Message", message)
    X.sub(detail, WSTEP, "TraceId", trace_id)
    return detail


class Mde2Fault(soap.SoapFault):
    """A fault as MS-MDE2 2.2.10 shapes it; ``trace_id`` is logged with the reason."""

    def __init__(self, reason: str, subcode: str, *, error_type: str = CUSTOM_SERVER_ERROR,
                 receiver: bool = False) -> None:
        self.trace_id = str(uuid.uuid4())
        self.error_type = error_type
        super().__init__(reason, code=soap.RECEIVER if receiver else soap.SENDER,
                         subcode=(soap.SOAP12, subcode), detail=error_detail(error_type, reason, self.trace_id))


# --- Discover ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiscoverRequest:
    email: str | None
    request_version: Decimal | None
    device_type: str | None
    application_version: str | None
    os_edition: str | None
    auth_policies: tuple[str, ...]


def _malformed(detail: str) -> Mde2Fault:
    return Mde2Fault(detail, MESSAGE_FORMAT)


def parse_discover(payload: Element) -> DiscoverRequest:
    """The Body's ``Discover/request`` (3.1.4.1.3.1); anything unreadable is MessageFormat."""
    ns, local = X.split_tag(payload)
    if ns not in READ_NAMESPACES or local != "Discover":
        raise _malformed("the Body must hold an MS-MDE2 Discover request")
    try:
        request = X.child(payload, ns, "request")
        if request is None or X.is_nil(request):
            raise _malformed("the Discover request has no request element")
        fields = {name: X.child_text(request, ns, name) for name in
                  ("EmailAddress", "RequestVersion", "DeviceType", "ApplicationVersion", "OSEdition")}
        policies_el = X.child(request, ns, "AuthPolicies")
        policies = [] if policies_el is None else [X.text(p) for p in X.children(policies_el, ns, "AuthPolicy")]
    except X.XmlError as exc:
        raise _malformed(exc.detail) from None
    if not policies:
        raise _malformed("the Discover request lists no AuthPolicy")
    if len(policies) > MAX_POLICIES:
        raise _malformed("too many AuthPolicy elements")
    version = None
    if fields["RequestVersion"]:
        try:
            version = Decimal(fields["RequestVersion"])
        except InvalidOperation:
            raise _malformed("RequestVersion is not a decimal") from None
        if not version.is_finite():
            raise _malformed("RequestVersion is not a decimal")
    return DiscoverRequest(
        email=(fields["EmailAddress"] or None), request_version=version, device_type=fields["DeviceType"],
        application_version=fields["ApplicationVersion"], os_edition=fields["OSEdition"],
        auth_policies=tuple(p[:64] for p in policies),
    )


def choose_policy(requested: tuple[str, ...], offered: tuple[str, ...]) -> str:
    """The policy to answer: OnPremise before Certificate, among those the client lists and
    the configuration offers. Federated (an STS the gateway cannot check tokens of) is never
    answered: a client that asks for it is offered what the gateway has, as MS-MDE2 lets the
    server decide; a client that lists nothing the gateway has is refused."""
    for policy in (ON_PREMISE, CERTIFICATE):
        if policy in requested and policy in offered:
            return policy
    if FEDERATED in requested and offered:
        return offered[0]
    raise Mde2Fault(f"none of the authentication policies asked for ({', '.join(requested)[:200]}) is offered; "
                    f"this server offers {', '.join(offered) or 'none'}", MESSAGE_FORMAT, error_type=NOT_SUPPORTED)


def negotiate_version(requested: Decimal | None) -> Decimal:
    """The highest EnrollmentVersion this server speaks that the client does (none given: 3.0)."""
    if requested is None:
        return VERSIONS[0]
    usable = [v for v in VERSIONS if v <= requested]
    if not usable:
        raise Mde2Fault(f"RequestVersion {requested} is older than this server supports (3.0)", MESSAGE_FORMAT,
                        error_type=DEVICE_NOT_SUPPORTED)
    return usable[-1]


def discover_response(policy: str, version: Decimal, policy_url: str, service_url: str) -> Element:
    """``DiscoverResponse/DiscoverResult`` in the order the spec's examples (4.1.2) use."""
    response = X.element(NS, "DiscoverResponse", nsmap={None: NS})
    result = X.sub(response, NS, "DiscoverResult")
    X.sub(result, NS, "AuthPolicy", policy)
    X.sub(result, NS, "EnrollmentVersion", f"{version:.1f}")
    X.sub(result, NS, "EnrollmentPolicyServiceUrl", policy_url)
    X.sub(result, NS, "EnrollmentServiceUrl", service_url)
    return response


# --- the provisioning document ------------------------------------------------------------------


@dataclass(frozen=True)
class DmServer:
    """The OMA-DM server the device is told to talk to (the w7 APPLICATION node)."""

    url: str
    provider_id: str
    name: str


@dataclass(frozen=True)
class Provisioning:
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # issuer first, up to the root
    store: str  # "User" (EnrollmentType Full) or "System" (Device)
    renew_days: int
    dm_server: DmServer | None = None


def thumbprint(cert: x509.Certificate) -> str:
    """The CertificateStore node name: the SHA-1 hash of the DER certificate, upper-case hex."""
    return hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()  # noqa: S324 - CSP node name


def _is_self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject


def _char(parent: Element, kind: str) -> Element:
    return X.sub(parent, "", "characteristic", attrib={"type": kind})


def _parm(parent: Element, name: str, value: str | None = None, datatype: str | None = None) -> Element:
    attrib = {"name": name}
    if value is not None:
        attrib["value"] = value
    if datatype is not None:
        attrib["datatype"] = datatype
    return X.sub(parent, "", "parm", attrib=attrib)


def _store_cert(parent: Element, cert: x509.Certificate) -> Element:
    node = _char(parent, thumbprint(cert))
    _parm(node, "EncodedCertificate", base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode("ascii"))
    return node


def provisioning_document(p: Provisioning) -> bytes:
    """The ``wap-provisioningdoc`` (2.2.9.1): the root in Root/System, intermediates in
    CA/System, the client certificate in My/User or My/System with the WSTEP renewal
    settings, and the w7 APPLICATION (OMA-DM account) only when a DM server is known."""
    doc = X.element("", "wap-provisioningdoc", attrib={"version": "1.1"})
    store = _char(doc, "CertificateStore")
    roots = [c for c in p.chain if _is_self_signed(c)]
    intermediates = [c for c in p.chain if not _is_self_signed(c)]
    if roots:
        system = _char(_char(store, "Root"), "System")
        for cert in roots:
            _store_cert(system, cert)
    if intermediates:
        system = _char(_char(store, "CA"), "System")
        for cert in intermediates:
            _store_cert(system, cert)
    my_store = _char(store, "My")
    my = _char(my_store, p.store)
    _store_cert(my, p.certificate)
    _char(my, "PrivateKeyContainer")
    renew = _char(_char(my_store, "WSTEP"), "Renew")
    _parm(renew, "ROBOSupport", "true", "boolean")
    _parm(renew, "RenewPeriod", str(p.renew_days), "integer")
    _parm(renew, "RetryInterval", "4", "integer")
    if p.dm_server is not None:
        app = _char(doc, "APPLICATION")
        _parm(app, "APPID", "w7")
        _parm(app, "PROVIDER-ID", p.dm_server.provider_id)
        _parm(app, "NAME", p.dm_server.name)
        _parm(app, "ADDR", p.dm_server.url)
        _parm(app, "BACKCOMPATRETRYDISABLED")
        _parm(app, "DEFAULTENCODING", "application/vnd.syncml.dm+xml")
        subject = quote(p.certificate.subject.rfc4514_string(), safe="")
        _parm(app, "SSLCLIENTCERTSEARCHCRITERIA", f"Subject={subject}&Stores=My%5C{p.store}")
    return X.serialize(doc)


# --- the RSTRC -----------------------------------------------------------------------------


def rstrc(document: bytes, request_id: str) -> Element:
    """The RequestSecurityTokenResponseCollection of 3.4.4.1.1.2 (as in 4.3.2)."""
    collection = X.element(WST, "RequestSecurityTokenResponseCollection", nsmap={None: WST})
    rstr = X.sub(collection, WST, "RequestSecurityTokenResponse")
    X.sub(rstr, WST, "TokenType", DEVICE_ENROLLMENT_TOKEN)
    rstr.append(X.element(WSTEP, "DispositionMessage", nsmap={None: WSTEP}))
    requested = X.sub(rstr, WST, "RequestedSecurityToken")
    requested.append(X.element(WSSE, "BinarySecurityToken", base64.b64encode(document).decode("ascii"),
                               attrib={"ValueType": PROVISION_DOC, "EncodingType": BASE64}, nsmap={None: WSSE}))
    rstr.append(X.element(WSTEP, "RequestID", request_id, nsmap={None: WSTEP}))
    return collection


def read_provisioning(payload: Element) -> bytes:
    """The provisioning document of an RSTRC payload, as the client reads it (tests)."""
    rstr = X.one(payload, WST, "RequestSecurityTokenResponse")
    token = X.one(X.one(rstr, WST, "RequestedSecurityToken"), WSSE, "BinarySecurityToken")
    if token.get("ValueType") != PROVISION_DOC:
        raise X.MalformedXml("not a DeviceEnrollmentProvisionDoc token")
    return base64.b64decode(X.text(token))
