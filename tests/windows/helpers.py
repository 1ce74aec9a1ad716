"""Test helpers for the Windows services: a real gateway over real TLS, SOAP requests as
Windows sends them, client certificates from the gateway's own CA, schema validation."""

from __future__ import annotations

import ssl
import uuid
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import xmlschema
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from conformance.harness import SHARED_CAPTURES, GatewayInfo, in_ci
from gateway.runtime import Gateway
from tests.support import make_csr, make_key

XSD = Path(__file__).resolve().parents[2] / "protocols" / "windows" / "xsd"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
XCEP = "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
GET_POLICIES = f"{XCEP}/IPolicy/GetPolicies"
CONTENT_TYPE = "application/soap+xml; charset=utf-8"


def capture(*parts: str) -> Path:
    path = SHARED_CAPTURES.joinpath(*parts)
    if path.exists():
        return path
    if in_ci():
        pytest.fail(f"shared capture missing at {path}")
    pytest.skip(f"shared capture missing at {path}")
    raise AssertionError("unreachable")


@lru_cache(maxsize=None)
def schema(name: str) -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(XSD / name))


def assert_valid(element: Any, xsd: str = "xcep.xsd") -> None:
    errors = [str(e.reason) for e in schema(xsd).iter_errors(element)]
    assert errors == [], errors


@dataclass
class SoapReply:
    status: int
    headers: Any
    body: bytes
    root: Any = None

    def __post_init__(self) -> None:
        self.root = etree.fromstring(self.body) if self.body.startswith(b"<") else None

    @property
    def payload(self) -> Any:
        body = self.root.find(f"{{{SOAP12}}}Body")
        return body[0]

    @property
    def action(self) -> str:
        return str(self.root.find(f"{{{SOAP12}}}Header/{{{WSA}}}Action").text)

    @property
    def relates_to(self) -> str | None:
        el = self.root.find(f"{{{SOAP12}}}Header/{{{WSA}}}RelatesTo")
        return None if el is None else str(el.text)

    @property
    def is_fault(self) -> bool:
        return self.root is not None and self.payload.tag == f"{{{SOAP12}}}Fault"

    @property
    def fault_code(self) -> str:
        return str(self.payload.find(f"{{{SOAP12}}}Code/{{{SOAP12}}}Value").text)

    @property
    def fault_subcode(self) -> str | None:
        el = self.payload.find(f"{{{SOAP12}}}Code/{{{SOAP12}}}Subcode/{{{SOAP12}}}Value")
        return None if el is None else str(el.text).split(":")[-1]

    @property
    def reason(self) -> str:
        return str(self.payload.find(f"{{{SOAP12}}}Reason/{{{SOAP12}}}Text").text)

    def assert_fault(self) -> None:
        """A SOAP 1.2 fault as WCF answers one: HTTP 500, application/soap+xml, nothing else."""
        assert self.status == 500, (self.status, self.body[:500])
        assert self.headers["Content-Type"].startswith("application/soap+xml")
        assert self.is_fault, self.body[:500]


@dataclass
class ClientCredential:
    certificate: x509.Certificate
    key: Any
    cert_path: Path
    key_path: Path


def username_token(username: str, password: str) -> str:
    return (f'<o:Security xmlns:o="{WSSE}" s:mustUnderstand="1"><o:UsernameToken>'
            f"<o:Username>{username}</o:Username><o:Password>{password}</o:Password>"
            "</o:UsernameToken></o:Security>")


def get_policies_body(*, to: str = "https://gateway/cep", security: str = "", last_update: str | None = None,
                      request_filter: str = '<requestFilter xsi:nil="true"/>', message_id: str | None = None) -> bytes:
    """A GetPolicies request shaped as Windows certenroll sends it (MS-XCEP 4.1.1.1)."""
    lu = f"<lastUpdate>{last_update}</lastUpdate>" if last_update else '<lastUpdate xsi:nil="true"/>'
    return f"""<s:Envelope xmlns:s="{SOAP12}" xmlns:a="{WSA}">
<s:Header>
<a:Action s:mustUnderstand="1">{GET_POLICIES}</a:Action>
<a:MessageID>{message_id or "urn:uuid:" + str(uuid.uuid4())}</a:MessageID>
<a:ReplyTo><a:Address>http://www.w3.org/2005/08/addressing/anonymous</a:Address></a:ReplyTo>
<a:To s:mustUnderstand="1">{to}</a:To>
{security}
</s:Header>
<s:Body xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema">
<GetPolicies xmlns="{XCEP}"><client>{lu}<preferredLanguage xsi:nil="true"/></client>{request_filter}</GetPolicies>
</s:Body>
</s:Envelope>""".encode()


@dataclass
class WindowsServer:
    gw: Gateway
    info: GatewayInfo
    tmp: Path
    _certs: dict[str, ClientCredential] = field(default_factory=dict)

    @property
    def dev(self) -> dict[str, Any]:
        """``gateway info --json``'s ``protocols.xcep`` entry of the dev configuration."""
        return next(e for e in self.info.data["protocols"]["xcep"] if e["config"] == "windows")

    def security(self, username: str | None = None, password: str | None = None) -> str:
        return username_token(username or self.dev["username"], password or self.dev["password"])

    async def client_cert(self, cn: str, *, profile: str = "windows-computer", ca: str = "issuing-rsa",
                          sans: tuple[str, ...] = ()) -> ClientCredential:
        csr, key = make_csr(cn, sans or (cn,), make_key("RSA-2048"))
        issued = await self.gw.authority.issue_direct(ca, csr, profile, actor="test")
        cert_path, key_path = self.tmp / f"{cn}.pem", self.tmp / f"{cn}.key"
        cert_path.write_bytes(issued.certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        return ClientCredential(issued.certificate, key, cert_path, key_path)

    def ssl(self, cert: ClientCredential | None = None) -> ssl.SSLContext:
        ctx = self.info.ssl_context()
        if cert is not None:
            ctx.load_cert_chain(cert.cert_path, cert.key_path)
        return ctx

    async def post(self, url: str, body: bytes, *, cert: ClientCredential | None = None,
                   content_type: str = CONTENT_TYPE) -> SoapReply:
        if url.startswith("/"):
            url = self.info.https + url
        connector = aiohttp.TCPConnector(ssl=self.ssl(cert), force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.post(url, data=body, headers={"Content-Type": content_type}) as resp:
                return SoapReply(resp.status, resp.headers, await resp.read())

    async def table_rows(self, table: Any) -> list[Any]:
        """Rows of one of the protocol's own tables."""
        from sqlalchemy import select

        door = self.gw.door("windows")
        async with door.tables.read() as conn:
            return list((await conn.execute(select(table))).all())
