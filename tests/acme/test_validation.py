"""The validators against real listeners on 127.0.0.1: http-01, dns-01 (UDP DNS), tls-alpn-01."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from conformance.acme.support import DnsServer, Http01Responder, TlsAlpn01Responder
from conformance.harness import free_port
from protocols.acme.identifiers import Identifier
from protocols.acme.settings import AcmeSettings
from protocols.acme.validation import dns01, http01, tlsalpn01

KA = "token123.thumbprint456"
NAME = Identifier("dns", "www.example.test")


def settings(**raw: object) -> AcmeSettings:
    return AcmeSettings.parse("t", {"validation_timeout": 3, **raw})


async def test_http01_fetches_from_the_configured_port_and_address() -> None:
    async with Http01Responder() as web01:
        s = settings(http01_port=web01.port, validation_address="127.0.0.1")
        web01.tokens["token123"] = KA + "\r\n"
        assert await http01.validate(NAME, "token123", KA, s) is None
        assert web01.requests == [f"www.example.test:{web01.port}"]
        web01.tokens["token123"] = "token123.someone-else"
        wrong = await http01.validate(NAME, "token123", KA, s)
        assert wrong is not None and wrong.type == "incorrectResponse"
        missing = await http01.validate(NAME, "unknown", KA, s)
        assert missing is not None and missing.type == "unauthorized" and "404" in missing.detail


async def test_http01_for_an_ip_identifier_connects_to_it() -> None:
    async with Http01Responder() as web01:
        web01.tokens["t"] = "t.x"
        assert await http01.validate(Identifier("ip", "127.0.0.1"), "t", "t.x", settings(http01_port=web01.port)) is None


async def test_http01_follows_redirects_and_reports_connection_errors() -> None:
    port = free_port()
    app = web.Application()

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://other.example.test:{port}/final")

    async def final(request: web.Request) -> web.Response:
        return web.Response(text=KA)

    app.router.add_get("/.well-known/acme-challenge/{token}", redirect)
    app.router.add_get("/final", final)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        assert await http01.validate(NAME, "token123", KA, settings(http01_port=port, validation_address="127.0.0.1")) is None
    finally:
        await runner.cleanup()
    refused = await http01.validate(NAME, "token123", KA, settings(http01_port=port, validation_address="127.0.0.1"))
    assert refused is not None and refused.type == "connection"


async def test_dns01_reads_txt_through_the_configured_resolver() -> None:
    async with DnsServer() as dns:
        s = settings(dns_resolver=f"127.0.0.1:{dns.port}")
        dns.txt["_acme-challenge.www.example.test"] = ["unrelated", dns01.txt_value(KA)]
        assert await dns01.validate(NAME, "token123", KA, s) is None
        wildcard = Identifier("dns", "*.www.example.test")
        assert await dns01.validate(wildcard, "token123", KA, s) is None
        assert ("_acme-challenge.www.example.test", "TXT") in dns.queries
        dns.txt["_acme-challenge.www.example.test"] = [dns01.txt_value("other.ka")]
        wrong = await dns01.validate(NAME, "token123", KA, s)
        assert wrong is not None and wrong.type == "incorrectResponse"
        nx = await dns01.validate(Identifier("dns", "nothing.example.test"), "t", KA, s)
        assert nx is not None and nx.type == "dns"


async def test_dns01_timeout_is_a_dns_problem() -> None:
    silent = free_port()
    sock_transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", silent))
    try:
        result = await dns01.validate(NAME, "t", KA, settings(dns_resolver=f"127.0.0.1:{silent}", validation_timeout=1))
    finally:
        sock_transport.close()
    assert result is not None and result.type == "dns"


async def test_http01_with_a_dead_dns_resolver_is_a_dns_problem_naming_it() -> None:
    """The lookup's own failure is reported, not the fetch timeout it used to run into."""
    silent = free_port()
    sock_transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", silent))
    try:
        result = await http01.validate(NAME, "t", KA, settings(dns_resolver=f"127.0.0.1:{silent}", validation_timeout=1))
    finally:
        sock_transport.close()
    assert result is not None and result.type == "dns", result
    assert "www.example.test" in result.detail and f"127.0.0.1:{silent}" in result.detail
    assert "timeout fetching" not in result.detail


async def test_tls_alpn01_checks_alpn_san_and_acme_identifier(tmp_path: Path) -> None:
    async with TlsAlpn01Responder(tmp_path) as alpn:
        s = settings(tlsalpn01_port=alpn.port, validation_address="127.0.0.1")
        alpn.serve("www.example.test", KA)
        assert await tlsalpn01.validate(NAME, "token123", KA, s) is None
        assert alpn.snis[-1] == "www.example.test"
        alpn.serve("www.example.test", "other.ka")
        wrong = await tlsalpn01.validate(NAME, "token123", KA, s)
        assert wrong is not None and wrong.type == "incorrectResponse" and "acmeIdentifier" in wrong.detail
        alpn.serve("www.example.test", KA, critical=False)
        lax = await tlsalpn01.validate(NAME, "token123", KA, s)
        assert lax is not None and "critical" in lax.detail
        alpn.serve("other.example.test", KA)
        other = await tlsalpn01.validate(NAME, "token123", KA, s)
        assert other is not None and "exactly www.example.test" in other.detail


async def test_tls_alpn01_for_an_ip_uses_the_reverse_name_as_sni(tmp_path: Path) -> None:
    async with TlsAlpn01Responder(tmp_path) as alpn:
        alpn.serve("127.0.0.1", KA)
        ip = Identifier("ip", "127.0.0.1")
        assert await tlsalpn01.validate(ip, "t", KA, settings(tlsalpn01_port=alpn.port)) is None
        assert alpn.snis[-1] == "1.0.0.127.in-addr.arpa"


async def test_tls_alpn01_without_a_listener_is_a_connection_problem() -> None:
    result = await tlsalpn01.validate(NAME, "t", KA, settings(tlsalpn01_port=free_port(), validation_address="127.0.0.1"))
    assert result is not None and result.type == "connection"
