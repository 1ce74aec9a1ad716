"""A Windows enrollment client simulator (named as one: it is not Windows), built from the
specifications and independent of the server's code: what certenroll does during
autoenrollment, written from MS-XCEP, MS-WSTEP and MS-WCCE.

1. GetPolicies from a CEP URL (MS-XCEP 3.1.4.1), reading templates, OIDs and CAs;
2. pick a template the caller may enroll in and a ``cAURI`` for the authentication mode
   (lowest ``priority``; ``renewalOnly`` ones only for renewals);
3. build the request the template asks for: an RSA key of ``minimalKeyLength``, the
   template's extensions in the PKCS#10 extensionRequest (MS-WCCE 3.1.1.4.3.1.1) --
   a bare PKCS#10, a CMC Full PKI Request (RFC 5272, signed with the request key and
   named by its key identifier), or a PKCS#7 renewal signed by the certificate it renews
   (made with ``openssl cms``);
4. RequestSecurityToken ``Issue`` to the CES (MS-WSTEP 3.1.4.1), UsernameToken
   (PasswordText, as Windows sends it over HTTPS) or the TLS client certificate;
5. read the RequestSecurityTokenResponseCollection and "install" the certificate: key and
   certificate into a store directory, checked with ``openssl verify`` against the CA.

XML is built as text and read by namespace with lxml; DER is written by the few lines
below, not by the gateway's encoders.
"""

from __future__ import annotations

import base64
import datetime as dt
import socket
import ssl
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import aiohttp
from aiohttp.abc import AbstractResolver
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from lxml import etree

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
XCEP = "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy"
WST = "http://docs.oasis-open.org/ws-sx/ws-trust/200512"
ENROLL = "http://schemas.microsoft.com/windows/pki/2009/01/enrollment"
X509V3 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
PKCS7 = f"{WSSE}#PKCS7"
PKCS10 = f"{ENROLL}#PKCS10"  # MS-WSTEP 2.2.1 (certenroll itself sends #PKCS7 for all three)
BASE64 = f"{WSSE}#base64binary"
GET_POLICIES = f"{XCEP}/IPolicy/GetPolicies"
RST_ISSUE_ACTION = f"{ENROLL}/RST/wstep"
ISSUE = f"{WST}/Issue"
QUERY_TOKEN_STATUS = f"{ENROLL}/QueryTokenStatus"
TEMPLATE_INFORMATION = "1.3.6.1.4.1.311.21.7"
TEMPLATE_NAME = "1.3.6.1.4.1.311.20.2"
ID_CCT_PKI_DATA = "1.3.6.1.5.5.7.12.2"
USERNAME, KERBEROS, CERTIFICATE = 4, 2, 8


# --- a little DER, written from X.690 ----------------------------------------------------


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _len(len(content)) + content


def seq(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def integer(n: int) -> bytes:
    return tlv(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True))


# --- the policy --------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyExtension:
    oid: str
    critical: bool
    value: bytes


@dataclass(frozen=True)
class PolicyTemplate:
    name: str
    oid: str
    major: int
    minor: int
    schema: int
    min_key_bits: int
    enroll: bool
    auto_enroll: bool
    enrollment_flags: int
    subject_name_flags: int
    general_flags: int
    extensions: tuple[PolicyExtension, ...]
    ca_refs: tuple[int, ...]


@dataclass(frozen=True)
class CaUri:
    client_authentication: int
    uri: str
    priority: int
    renewal_only: bool


@dataclass(frozen=True)
class PolicyCa:
    ref: int
    certificate: x509.Certificate
    uris: tuple[CaUri, ...]
    enroll: bool


@dataclass(frozen=True)
class Policy:
    policy_id: str
    next_update_hours: int | None
    not_changed: bool
    templates: tuple[PolicyTemplate, ...]
    cas: tuple[PolicyCa, ...]

    def template(self, name: str) -> PolicyTemplate:
        return next(t for t in self.templates if t.name == name)

    def cauri(self, template: PolicyTemplate, auth: int, *, renewal: bool = False) -> CaUri:
        """What certenroll picks: among the template's CAs, a URI for the mode, the lowest
        priority value first; renewal-only URIs are for renewals only."""
        found = [u for ca in self.cas if ca.ref in template.ca_refs and ca.enroll for u in ca.uris
                 if u.client_authentication == auth and (renewal or not u.renewal_only)]
        return sorted(found, key=lambda u: u.priority)[0]


def _q(*names: str) -> str:
    return "/".join(f"{{{XCEP}}}{n}" for n in names)


def _nil(el: Any) -> bool:
    return el is None or el.get("{http://www.w3.org/2001/XMLSchema-instance}nil") in ("true", "1")


def _int(el: Any, path: str) -> int:
    return int((el.findtext(_q(*path.split("/"))) or "0").strip() or 0)


def read_policy(response: Any) -> Policy:
    """A GetPoliciesResponse element, as the client uses it."""
    r = response.find(_q("response"))
    oids = {int(o.findtext(_q("oIDReferenceID"))): o.findtext(_q("value")).strip()
            for o in response.findall(_q("oIDs", "oID"))}
    templates = []
    for p in r.findall(_q("policies", "policy")):
        a = p.find(_q("attributes"))
        exts = tuple(PolicyExtension(oids[int(e.findtext(_q("oIDReference")))], e.findtext(_q("critical")) == "true",
                                     base64.b64decode(e.findtext(_q("value")) or ""))
                     for e in a.findall(_q("extensions", "extension")))
        templates.append(PolicyTemplate(
            name=a.findtext(_q("commonName")), oid=oids[int(p.findtext(_q("policyOIDReference")))],
            major=_int(a, "revision/majorRevision"), minor=_int(a, "revision/minorRevision"),
            schema=_int(a, "policySchema"), min_key_bits=_int(a, "privateKeyAttributes/minimalKeyLength"),
            enroll=a.findtext(_q("permission", "enroll")) == "true",
            auto_enroll=a.findtext(_q("permission", "autoEnroll")) == "true",
            enrollment_flags=_int(a, "enrollmentFlags"), subject_name_flags=_int(a, "subjectNameFlags"),
            general_flags=_int(a, "generalFlags"), extensions=exts,
            ca_refs=tuple(int(c.text) for c in p.findall(_q("cAs", "cAReference"))),
        ))
    cas = []
    for ca in response.findall(_q("cAs", "cA")):
        uris = tuple(CaUri(int(u.findtext(_q("clientAuthentication"))), u.findtext(_q("uri")).strip(),
                           int(u.findtext(_q("priority")) or 0), u.findtext(_q("renewalOnly")) == "true")
                     for u in ca.findall(_q("uris", "cAURI")))
        cert = x509.load_der_x509_certificate(base64.b64decode(ca.findtext(_q("certificate"))))
        cas.append(PolicyCa(int(ca.findtext(_q("cAReferenceID"))), cert, uris,
                            ca.findtext(_q("enrollPermission")) == "true"))
    next_update = r.find(_q("nextUpdateHours"))
    return Policy(r.findtext(_q("policyID")), None if _nil(next_update) else int(next_update.text),
                  r.findtext(_q("policiesNotChanged")) == "true", tuple(templates), tuple(cas))


# --- requests ----------------------------------------------------------------------------


def template_extension(t: PolicyTemplate) -> x509.UnrecognizedExtension:
    """The extension naming the template in the request (MS-WCCE 2.2.2.7.7.1/2.2.2.7.7.2)."""
    if t.schema >= 2:
        value = seq(tlv(0x06, _oid_body(t.oid)), integer(t.major), integer(t.minor))
        return x509.UnrecognizedExtension(x509.ObjectIdentifier(TEMPLATE_INFORMATION), value)
    return x509.UnrecognizedExtension(x509.ObjectIdentifier(TEMPLATE_NAME), tlv(0x1E, t.name.encode("utf-16-be")))


def _oid_body(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([arcs[0] * 40 + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def pkcs10(t: PolicyTemplate, key: rsa.RSAPrivateKey, subject: x509.Name,
           sans: list[x509.GeneralName] | None = None) -> x509.CertificateSigningRequest:
    """The PKCS#10 certenroll makes for a template: its extensions, then the template's own."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
    for ext in t.extensions:
        if ext.oid not in (TEMPLATE_INFORMATION, TEMPLATE_NAME):
            builder = builder.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(ext.oid), ext.value),
                                            critical=ext.critical)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    builder = builder.add_extension(template_extension(t), critical=False)
    return builder.sign(key, hashes.SHA256())


def _openssl(*args: str, input: bytes | None = None) -> bytes:
    done = subprocess.run(["openssl", *args], input=input, capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {done.stderr.decode(errors='replace')}")
    return done.stdout


def _pem(obj: Any) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return bytes(obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))


def pkcs7_renewal(csr: x509.CertificateSigningRequest, old: x509.Certificate, old_key: Any, work: Path) -> bytes:
    """The key-based renewal request: the new PKCS#10 inside CMS SignedData signed by the
    certificate being renewed (MS-WCCE 3.2.2.6.2.1.4.5.6), made by ``openssl cms``."""
    (work / "old.pem").write_bytes(_pem(old))
    (work / "old.key").write_bytes(_pem(old_key))
    return _openssl("cms", "-sign", "-binary", "-nodetach", "-nosmimecap", "-md", "sha256", "-outform", "DER",
                    "-signer", str(work / "old.pem"), "-inkey", str(work / "old.key"),
                    input=csr.public_bytes(serialization.Encoding.DER))


def cmc_request(csr: x509.CertificateSigningRequest, key: Any, work: Path, *, body_part_id: int = 1) -> bytes:
    """A CMC Full PKI Request (RFC 5272 3.2): PKIData with one TaggedCertificationRequest,
    signed with the request's key and named by its subject key identifier."""
    # TaggedRequest ::= CHOICE { tcr [0] TaggedCertificationRequest, ... } (implicit tagging)
    tcr = tlv(0xA0, integer(body_part_id) + csr.public_bytes(serialization.Encoding.DER))
    pki_data = seq(seq(), seq(tcr), seq(), seq())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cmc signer")])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    now = dt.datetime.now(dt.timezone.utc)
    signer = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
              .not_valid_after(now + dt.timedelta(days=1)).add_extension(ski, critical=False)
              .sign(key, hashes.SHA256()))
    (work / "cmc.pem").write_bytes(_pem(signer))
    (work / "cmc.key").write_bytes(_pem(key))
    return _openssl("cms", "-sign", "-binary", "-nodetach", "-nosmimecap", "-nocerts", "-keyid", "-md", "sha256",
                    "-econtent_type", ID_CCT_PKI_DATA, "-outform", "DER",
                    "-signer", str(work / "cmc.pem"), "-inkey", str(work / "cmc.key"), input=pki_data)


# --- the wire ----------------------------------------------------------------------------


def username_token(username: str, password: str) -> str:
    return (f'<o:Security xmlns:o="{WSSE}" s:mustUnderstand="1"><o:UsernameToken>'
            f"<o:Username>{username}</o:Username><o:Password o:Type=\"http://docs.oasis-open.org/wss/2004/01/"
            f'oasis-200401-wss-username-token-profile-1.0#PasswordText">{password}</o:Password>'
            "</o:UsernameToken></o:Security>")


def _envelope(action: str, to: str, security: str, body: str) -> bytes:
    return f"""<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA}"><s:Header>
<a:Action s:mustUnderstand="1">{action}</a:Action><a:MessageID>urn:uuid:{uuid.uuid4()}</a:MessageID>
<a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address></a:ReplyTo>
<a:To s:mustUnderstand="1">{to}</a:To>{security}</s:Header>
<s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">{body}</s:Body>
</s:Envelope>""".encode()


class SoapFaultError(Exception):
    def __init__(self, status: int, reason: str, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {reason}")
        self.status, self.reason, self.body = status, reason, body


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate | None  # None while the request is pending
    request_id: str | None
    disposition: str | None
    chain: tuple[x509.Certificate, ...]  # from the PKCS#7/CMC response


@dataclass
class WindowsClientSimulator:
    """One enrolling identity: a UsernameToken, a TLS client certificate, or Kerberos."""

    tls_ca: str
    work: Path
    username: str | None = None
    password: str | None = None
    client_cert: tuple[Path, Path] | None = None
    store: dict[str, tuple[x509.Certificate, Any]] = field(default_factory=dict)
    negotiate: Callable[[], Any] | None = None
    """Kerberos endpoints (clientAuthentication 2): a new pyspnego client context per
    request, as ``spnego.client(hostname=, service="HTTP", ...)``. The first POST goes
    without credentials (as Windows does it); the 401's Negotiate challenge is answered
    with the context's token, and the answer's AP-REP must complete it (mutual auth)."""
    hosts: dict[str, str] = field(default_factory=dict)
    """Host name -> address, for URLs naming a host no DNS knows (curl's ``--resolve``)."""
    validate: Callable[[Any], None] | None = None
    """Called with every answer's Body element (a response or an ``s:Fault``) before it is
    read: the conformance tests check it against the specifications' schemas."""

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.tls_ca)
        if self.client_cert is not None:
            ctx.load_cert_chain(*map(str, self.client_cert))
        return ctx

    def _security(self, auth: int) -> str:
        if auth == USERNAME:
            assert self.username is not None and self.password is not None
            return username_token(self.username, self.password)
        return ""

    async def _post(self, url: str, body: bytes, auth: int | None = None) -> Any:
        connector = aiohttp.TCPConnector(ssl=self._ssl(), force_close=True, resolver=_StaticResolver(self.hosts))
        headers = {"Content-Type": "application/soap+xml; charset=utf-8"}
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.post(url, data=body, headers=headers) as r:
                data = await r.read()
            if auth == KERBEROS and r.status == 401 and self.negotiate is not None:
                assert "Negotiate" in r.headers.getall("WWW-Authenticate", [])
                ctx = self.negotiate()
                headers["Authorization"] = "Negotiate " + base64.b64encode(ctx.step()).decode()
                async with session.post(url, data=body, headers=headers) as r:
                    data = await r.read()
                if r.status == 401:
                    raise SoapFaultError(401, data.decode(errors="replace").strip(), data)
                scheme, _, reply = r.headers.get("WWW-Authenticate", "").partition(" ")
                assert scheme == "Negotiate" and reply, "no mutual-authentication token"
                ctx.step(base64.b64decode(reply))
                assert ctx.complete
        if r.status == 401:
            raise SoapFaultError(401, data.decode(errors="replace").strip(), data)
        root = etree.fromstring(data)
        payload = root.find(f"{{{SOAP12}}}Body")[0]
        if self.validate is not None:
            self.validate(payload)
        if payload.tag == f"{{{SOAP12}}}Fault":
            raise SoapFaultError(r.status, payload.findtext(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text") or "", data)
        assert r.status == 200
        return payload

    async def get_policies(self, cep_url: str, auth: int, *, last_update: str | None = None) -> Policy:
        lu = f"<lastUpdate>{last_update}</lastUpdate>" if last_update else '<lastUpdate xsi:nil="true"/>'
        body = (f'<GetPolicies xmlns="{XCEP}"><client>{lu}<preferredLanguage xsi:nil="true"/></client>'
                '<requestFilter xsi:nil="true"/></GetPolicies>')
        return read_policy(await self._post(cep_url, _envelope(GET_POLICIES, cep_url, self._security(auth), body), auth))

    async def request(self, cauri: CaUri, token: bytes, value_type: str = PKCS7) -> Issued:
        """RST Issue (MS-WSTEP 3.1.4.1.2.1): the certificate, or a pending answer."""
        wrapped = base64.b64encode(token).decode()
        body = (f'<RequestSecurityToken xmlns="{WST}"><TokenType>{X509V3}</TokenType><RequestType>{ISSUE}</RequestType>'
                f'<BinarySecurityToken xmlns="{WSSE}" EncodingType="{BASE64}" ValueType="{value_type}">{wrapped}'
                f'</BinarySecurityToken><RequestID xmlns="{ENROLL}" xsi:nil="true"/></RequestSecurityToken>')
        return await self._rst(cauri, body)

    async def query_status(self, cauri: CaUri, request_id: str) -> Issued:
        """RST QueryTokenStatus (MS-WSTEP 3.1.4.1.2.2): a held request asked for again."""
        body = (f'<RequestSecurityToken xmlns="{WST}"><TokenType>{X509V3}</TokenType>'
                f'<RequestType>{QUERY_TOKEN_STATUS}</RequestType>'
                f'<RequestID xmlns="{ENROLL}">{request_id}</RequestID></RequestSecurityToken>')
        return await self._rst(cauri, body)

    async def _rst(self, cauri: CaUri, body: str) -> Issued:
        payload = await self._post(cauri.uri, _envelope(RST_ISSUE_ACTION, cauri.uri, self._security(cauri.client_authentication),
                                                        body), cauri.client_authentication)
        rstr = payload.find(f"{{{WST}}}RequestSecurityTokenResponse")
        cert_b64 = rstr.findtext(f"{{{WST}}}RequestedSecurityToken/{{{WSSE}}}BinarySecurityToken")
        chain: tuple[x509.Certificate, ...] = ()
        for bst in rstr.findall(f"{{{WSSE}}}BinarySecurityToken"):
            if bst.get("ValueType") == PKCS7:
                der = base64.b64decode(bst.text)
                pem = _openssl("pkcs7", "-inform", "DER", "-print_certs", input=der)
                chain = tuple(x509.load_pem_x509_certificates(pem)) if b"BEGIN" in pem else ()
        cert = x509.load_der_x509_certificate(base64.b64decode(cert_b64)) if cert_b64 else None
        return Issued(cert, rstr.findtext(f"{{{ENROLL}}}RequestID"), rstr.findtext(f"{{{ENROLL}}}DispositionMessage"), chain)

    def install(self, name: str, issued: Issued, key: Any, ca_file: Path) -> tuple[Path, Path]:
        """Into the store, after ``openssl verify`` says it chains to the CA."""
        assert issued.certificate is not None, f"nothing to install: {issued.disposition}"
        cert_path, key_path = self.work / f"{name}.pem", self.work / f"{name}.key"
        cert_path.write_bytes(_pem(issued.certificate))
        key_path.write_bytes(_pem(key))
        untrusted = self.work / f"{name}-chain.pem"
        untrusted.write_bytes(b"".join(_pem(c) for c in issued.chain if c != issued.certificate))
        args = ["verify", "-CAfile", str(ca_file)]
        if untrusted.read_bytes():
            args += ["-untrusted", str(untrusted)]
        out = _openssl(*args, str(cert_path))
        assert out.strip().endswith(b"OK"), out
        self.store[name] = (issued.certificate, key)
        return cert_path, key_path


class _StaticResolver(AbstractResolver):
    """``hosts`` first, then the system's resolver."""

    def __init__(self, hosts: dict[str, str]) -> None:
        self.hosts = hosts
        self.system = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: Any = 0) -> Any:
        if host in self.hosts:
            return [{"hostname": host, "host": self.hosts[host], "port": port, "family": socket.AF_INET,
                     "proto": 0, "flags": socket.AI_NUMERICHOST}]
        return await self.system.resolve(host, port, family)

    async def close(self) -> None:
        await self.system.close()


def rsa_key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=max(bits, 2048))
