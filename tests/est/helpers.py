"""Test helpers for EST: a real gateway over real TLS, labels, client certificates, CSRs.

Every request goes over a socket to the in-process HTTPS listener; client
certificates are issued by the gateway's own CA (or a test manufacturer CA the
listener is told to trust), exactly as a device would hold them.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import shutil
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AttributeOID, NameOID

from conformance.harness import GatewayInfo
from gateway import keys
from gateway.runtime import Gateway
from gateway.secrets import hash_secret
from gateway.store.records import CertificateFilter

PREFIX = "/.well-known/est"


def pem(obj: Any) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def general_names(sans: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for san in sans:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            out.append(x509.DNSName(san))
    return out


def make_csr(cn: str | None = "device-1", sans: Iterable[str] = (), key: Any = None, *,
             challenge: str | None = None, subject: x509.Name | None = None, algorithm: hashes.HashAlgorithm | None = None,
             ) -> tuple[x509.CertificateSigningRequest, Any]:
    key = key or keys.generate_private_key("EC-P256")
    name = subject if subject is not None else x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    names = general_names(sans)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    if challenge is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
    return builder.sign(key, algorithm or keys.signature_hash_for(key) or hashes.SHA256()), key


def b64(csr: x509.CertificateSigningRequest, width: int | None = 64) -> bytes:
    text = base64.b64encode(csr.public_bytes(serialization.Encoding.DER))
    if width is None:
        return text
    return b"\n".join(text[i:i + width] for i in range(0, len(text), width)) + b"\n"


def der_certs(body: bytes) -> list[x509.Certificate]:
    """The certificates of a base64 certs-only response body."""
    from cryptography.hazmat.primitives.serialization import pkcs7

    return pkcs7.load_der_pkcs7_certificates(base64.b64decode(b"".join(body.split())))


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@dataclass
class Reply:
    status: int
    headers: Any
    body: bytes

    @property
    def certificates(self) -> list[x509.Certificate]:
        return der_certs(self.body)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


@dataclass
class ClientCredential:
    certificate: x509.Certificate
    key: Any
    cert_path: Path
    key_path: Path
    chain: list[x509.Certificate] = field(default_factory=list)


@dataclass
class EstServer:
    gw: Gateway
    info: GatewayInfo
    tmp: Path

    @property
    def dev(self) -> dict[str, str]:
        return next(e for e in self.info.data["protocols"]["est"] if e["config"] == "est")

    def url(self, op: str, label: str | None = "est") -> str:
        return f"{self.info.https}{PREFIX}/{label}/{op}" if label else f"{self.info.https}{PREFIX}/{op}"

    async def label(self, label: str, *, users: dict[str, str] | None = None, profiles: list[str] | None = None,
                    ca: str = "issuing", **settings: Any) -> str:
        await self.gw.authority.create_config(label, "est", ca, profiles or ["device"], None, settings=settings)
        await set_users(self.gw, label, users or {})
        return label

    async def client_cert(self, cn: str, sans: Iterable[str] = (), *, profile: str = "device",
                          key: Any = None, ca: str = "issuing") -> ClientCredential:
        csr, key = make_csr(cn, sans, key)
        issued = await self.gw.authority.issue_direct(ca, csr, profile, actor="test")
        return self._files(cn, issued.certificate, key, list(issued.chain[:-1]))

    def _files(self, name: str, cert: x509.Certificate, key: Any,
               chain: list[x509.Certificate] | None = None) -> ClientCredential:
        cert_path, key_path = self.tmp / f"{name}.pem", self.tmp / f"{name}.key"
        cert_path.write_bytes(pem(cert) + b"".join(pem(c) for c in chain or []))
        key_path.write_bytes(pem(key))
        return ClientCredential(cert, key, cert_path, key_path, chain or [])

    def ssl(self, cred: ClientCredential | None = None, *, tls12: bool = False) -> ssl.SSLContext:
        ctx = self.info.ssl_context()
        if tls12:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if cred is not None:
            ctx.load_cert_chain(cred.cert_path, cred.key_path)
        return ctx

    async def request(self, method: str, op: str, body: bytes | None = None, *, label: str | None = "est",
                      auth: tuple[str, str] | str | None = None, cert: ClientCredential | None = None,
                      headers: dict[str, str] | None = None, content_type: str | None = "application/pkcs10",
                      tls12: bool = False) -> Reply:
        h: dict[str, str] = {}
        if body is not None and content_type is not None:
            h["Content-Type"] = content_type
        if auth is not None:
            h["Authorization"] = auth if isinstance(auth, str) else basic(*auth)
        h.update(headers or {})
        connector = aiohttp.TCPConnector(ssl=self.ssl(cert, tls12=tls12), force_close=True)
        async with aiohttp.ClientSession(connector=connector, skip_auto_headers=["Content-Type"]) as session:
            async with session.request(method, self.url(op, label), data=body, headers=h) as resp:
                return Reply(resp.status, resp.headers, await resp.read())

    async def get(self, op: str, **kw: Any) -> Reply:
        return await self.request("GET", op, **kw)

    async def post(self, op: str, body: bytes, **kw: Any) -> Reply:
        return await self.request("POST", op, body, **kw)

    async def dev_auth(self) -> tuple[str, str]:
        return self.dev["username"], self.dev["password"]

    async def issued(self, label: str = "est") -> int:
        async with self.gw.store.read() as q:
            return await q.certificates.count(CertificateFilter(protocol_config=label))

    async def events(self, **flt: Any) -> list[Any]:
        from gateway.store.records import EventFilter

        async with self.gw.store.read() as q:
            return await q.events.list(EventFilter(**flt), limit=500)


class CoreTables:
    """What tests read and change in the core's tables, one store block per call
    (the Store has per-table queries inside ``read()`` / ``transaction()`` blocks only)."""

    def __init__(self, gw: Gateway) -> None:
        self._store = gw.store

    async def config(self, label: str) -> Any:
        async with self._store.read() as q:
            return await q.configs.get(label)

    async def update_config(self, label: str, **fields: Any) -> None:
        async with self._store.transaction() as q:
            await q.configs.update(label, **fields)

    async def requests(self, status: str | None = None) -> list[Any]:
        async with self._store.read() as q:
            return await q.requests.list(status=status)

    async def entity(self, entity_id: str) -> Any:
        async with self._store.read() as q:
            return await q.entities.get(entity_id)

    async def find_entity(self, name: str, label: str | None) -> Any:
        async with self._store.read() as q:
            return await q.entities.find(name, label)

    async def entities(self, **flt: Any) -> list[Any]:
        async with self._store.read() as q:
            return await q.entities.list(**flt)

    async def events(self, flt: Any = None, limit: int = 500) -> list[Any]:
        async with self._store.read() as q:
            return await q.events.list(flt, limit=limit)


def core(gw: Gateway) -> CoreTables:
    return CoreTables(gw)


async def set_users(gw: Gateway, label: str, users: dict[str, str]) -> None:
    """Make ``users`` (name: password) the label's Basic users, replacing any it had.

    Adopted with ``import_hash`` of ``hash_secret(password)``, the way users created
    before the shared credential rules were moved: the short passwords of these tests
    and of the recorded client exchanges predate ``gateway est user add``'s 8-character
    minimum (the CLI tests create users the operator's way).
    """
    creds = gw.door("est").credentials
    for user in await creds.list(label, kind="user"):
        await creds.delete(label, user.id, actor="test")
    for username, password in users.items():
        await creds.import_hash(label, "user", hash_secret(password), username=username, actor="test")


async def raw_exchange(server: EstServer, request_for: Any, *, cert: ClientCredential | None = None,
                       tls12: bool = True) -> tuple[int, dict[str, str], bytes, bytes | None]:
    """One HTTP/1.1 exchange on a raw TLS socket; ``request_for(tls_unique)`` makes the bytes.

    aiohttp cannot show a request the connection's tls-unique before it is sent;
    EST's proof-of-possession linking needs exactly that.
    """
    host, port = "127.0.0.1", int(server.info.https.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection(host, port, ssl=server.ssl(cert, tls12=tls12),
                                                   server_hostname="localhost")
    unique = writer.get_extra_info("ssl_object").get_channel_binding("tls-unique")
    writer.write(request_for(unique))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    writer.close()
    return status, headers, body, unique


def http_post(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: localhost", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def manufacturer_ca(tmp: Path, name: str = "Acme Devices IDevID CA") -> tuple[x509.Certificate, Any, Path]:
    """A self-signed CA outside the gateway, as a device maker's would be."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = tmp / f"{name.replace(' ', '-')}.pem"
    path.write_bytes(pem(cert))
    return cert, key, path


def device_certificate(ca: x509.Certificate, ca_key: Any, serial_number: str, tmp: Path,
                       *, days: int = 365) -> ClientCredential:
    """An IDevID-style certificate: subject serialNumber, no SAN, issued by ``ca``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number),
                                 x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Devices")]))
        .issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"idevid-{serial_number}.pem", tmp / f"idevid-{serial_number}.key"
    cert_path.write_bytes(pem(cert))
    key_path.write_bytes(pem(key))
    return ClientCredential(cert, key, cert_path, key_path)


def trust_at_listener(data_dir: Path, *anchor_paths: Path) -> None:
    """List extra client-certificate trust anchors in config.toml ([tls].client_trust_anchors)."""
    from gateway.config import load_config

    cfg = load_config(data_dir)
    for path in anchor_paths:
        target = data_dir / "tls" / path.name
        shutil.copy(path, target)
        cfg.tls.client_trust_anchors.append(f"tls/{path.name}")
    cfg.save()


def dev_credentials(data_dir: Path) -> dict[str, Any]:
    return json.loads((data_dir / "secrets" / "dev-credentials.json").read_text())


def csrattrs_items(der_bytes: bytes) -> list[tuple[str, list[bytes]]]:
    """CsrAttrs as (OID, [value DER, ...]) pairs; a bare OID has no values."""
    from asn1crypto import core

    from gateway.edge.der import children

    out = []
    for item in children(der_bytes):
        if item[0] == 0x06:
            out.append((core.ObjectIdentifier.load(item).dotted, []))
        else:
            oid, values = children(item)
            out.append((core.ObjectIdentifier.load(oid).dotted, children(values)))
    return out


def csr_with_attributes(cn: str, attributes: list[tuple[str, list[bytes]]], key: Any = None,
                        sans: Iterable[str] = ()) -> tuple[x509.CertificateSigningRequest, Any]:
    """A PKCS#10 request carrying arbitrary DER attribute values (cryptography only writes strings)."""
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    from gateway.edge import der

    key = key or keys.generate_private_key("EC-P256")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]).public_bytes()
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    attrs = [der.sequence(der.oid(oid), der.set_of(values)) for oid, values in attributes]
    names = general_names(sans)
    if names:
        ext = x509.SubjectAlternativeName(names).public_bytes()
        extension = der.sequence(der.oid("2.5.29.17"), der.octet_string(ext))
        attrs.append(der.sequence(der.oid("1.2.840.113549.1.9.14"), der.set_of([der.sequence(extension)])))
    tbs = der.sequence(der.integer(0), name, spki, der.context(0, b"".join(sorted(attrs))))
    if isinstance(key, rsa.RSAPrivateKey):
        algorithm = der.sequence(der.oid("1.2.840.113549.1.1.11"), der.null())
        signature = key.sign(tbs, padding.PKCS1v15(), hashes.SHA256())
    else:
        algorithm = der.sequence(der.oid("1.2.840.10045.4.3.2"))
        signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return x509.load_der_x509_csr(der.sequence(tbs, algorithm, der.bit_string(signature))), key
