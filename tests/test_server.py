"""The listeners over real sockets: TLS policy, client certificates, ops routes, limits."""

from __future__ import annotations

import warnings
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import AsyncIterator

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conformance.harness import GatewayInfo, running_gateway
from gateway.runtime import Gateway

from .support import make_csr, make_key


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Gateway, GatewayInfo]]:
    async with running_gateway(tmp_path / "data") as pair:
        yield pair


def _client_ctx(info: GatewayInfo, **kw: object) -> ssl.SSLContext:
    ctx = info.ssl_context()
    for key, value in kw.items():
        setattr(ctx, key, value)
    return ctx


async def test_healthz_and_metrics_on_both_listeners(served: tuple[Gateway, GatewayInfo]) -> None:
    _, info = served
    async with aiohttp.ClientSession() as session:
        for base, ctx in ((info.http, None), (info.https, info.ssl_context())):
            async with session.get(f"{base}/healthz", ssl=ctx) as resp:
                assert resp.status == 200 and (await resp.json())["status"] == "ok"
        await served[0].authority.issue_direct("issuing", make_csr()[0], "device", actor="test")
        async with session.get(f"{info.https}/metrics", ssl=info.ssl_context(),
                               headers={"Authorization": f"Bearer {info.api_key}"}) as resp:
            text = await resp.text()
            assert resp.status == 200 and "gateway_http_requests_total" in text
            assert 'gateway_certificates_issued_total{ca="issuing"}' in text


async def test_tls_is_1_2_or_newer_with_ecdhe_aes_gcm(served: tuple[Gateway, GatewayInfo]) -> None:
    _, info = served
    host, port = "127.0.0.1", int(info.https.rsplit(":", 1)[1])
    import asyncio

    async def handshake(ctx: ssl.SSLContext) -> tuple[str, str] | None:
        try:
            reader, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost")
        except (ssl.SSLError, ConnectionResetError):
            return None
        obj = writer.get_extra_info("ssl_object")
        result = (obj.version(), obj.cipher()[0])
        writer.close()
        return result

    assert (await handshake(info.ssl_context()))[0] == "TLSv1.3"  # type: ignore[index]
    tls12 = info.ssl_context()
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    version, cipher = await handshake(tls12)  # type: ignore[misc]
    assert version == "TLSv1.2" and cipher.startswith("ECDHE-") and "GCM" in cipher
    cbc_only = info.ssl_context()
    cbc_only.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc_only.set_ciphers("ECDHE+AES256+SHA384:ECDHE+AES128+SHA256:AES128-SHA")
    assert await handshake(cbc_only) is None
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        old.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    assert await handshake(old) is None


async def _client_cert_files(gw: Gateway, tmp_path: Path, name: str, ca_id: str | None = "issuing") -> tuple[Path, Path]:
    key = make_key("EC-P256")
    csr, _ = make_csr(name, [], key=key)
    if ca_id is not None:
        cert = (await gw.authority.issue_direct(ca_id, csr, "tls-client", actor="test")).certificate
    else:  # self-signed: from no CA the gateway trusts
        from gateway.ca.hierarchy import self_signed_root
        import datetime as dt

        cert = self_signed_root(key, csr.subject, dt.timedelta(days=1))
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


async def test_client_certificate_is_requested_verified_and_usable(
    served: tuple[Gateway, GatewayInfo], tmp_path: Path
) -> None:
    from gateway.admin.auth import client_certificate_record

    gw, info = served
    url = f"{info.https}/admin/certificates"
    registered = await _client_cert_files(gw, tmp_path, "ops-admin")
    async with gw.store.transaction() as q:
        await q.api_keys.insert(client_certificate_record(
            "ops-admin", x509.load_pem_x509_certificate(registered[0].read_bytes())))
    unregistered = await _client_cert_files(gw, tmp_path, "someone")
    untrusted = await _client_cert_files(gw, tmp_path, "stranger", ca_id=None)

    async with aiohttp.ClientSession() as session:
        ctx = info.ssl_context()
        ctx.load_cert_chain(*registered)
        async with session.get(url, ssl=ctx) as resp:  # no API key: the certificate authenticates
            assert resp.status == 200
        ctx = info.ssl_context()
        ctx.load_cert_chain(*unregistered)
        async with session.get(url, ssl=ctx) as resp:  # trusted chain but not an admin
            assert resp.status == 401
        async with session.get(f"{info.https}/healthz", ssl=info.ssl_context()) as resp:
            assert resp.status == 200  # requested, not required
        ctx = info.ssl_context()
        ctx.load_cert_chain(*untrusted)
        with pytest.raises(aiohttp.ClientError):  # a certificate from an unknown CA is refused
            async with session.get(url, ssl=ctx) as resp:
                await resp.read()


async def test_request_body_limit(served: tuple[Gateway, GatewayInfo]) -> None:
    gw, info = served
    big = b"0" * (gw.config.server.max_body_bytes + 1)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{info.https}/admin/certificates", data=big, ssl=info.ssl_context(),
                                headers={"Content-Type": "application/json",
                                         "Authorization": f"Bearer {info.api_key}"}) as resp:
            assert resp.status == 413
        async with gw.store.read() as q:
            before = await q.certificates.count()
        async with session.post(f"{info.http}/ocsp/issuing", data=big,
                                headers={"Content-Type": "application/ocsp-request"}) as resp:
            assert resp.status == 200 and resp.content_type == "application/ocsp-response"
            assert (await resp.read()) == bytes.fromhex("30030a0101")  # malformedRequest
        async with gw.store.read() as q:
            assert await q.certificates.count() == before


async def test_admin_api_refuses_unauthenticated_calls_over_https(served: tuple[Gateway, GatewayInfo]) -> None:
    _, info = served
    ctx = info.ssl_context()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{info.https}/admin/certificates", ssl=ctx) as resp:
            assert resp.status == 401 and "Bearer" in resp.headers.get("WWW-Authenticate", "")
        async with session.get(f"{info.https}/admin/certificates", ssl=ctx,
                               headers={"Authorization": "Bearer wrong"}) as resp:
            assert resp.status == 401
        async with session.get(f"{info.https}/admin/certificates", ssl=ctx,
                               headers={"Authorization": f"Bearer {info.api_key}"}) as resp:
            assert resp.status == 200
        async with session.get(f"{info.https}/admin/openapi.json", ssl=ctx) as resp:
            spec = await resp.json()
        # The admin API is not served on the plain HTTP listener at all.
        async with session.get(f"{info.http}/admin/certificates",
                               headers={"Authorization": f"Bearer {info.api_key}"}) as resp:
            assert resp.status == 404
    from openapi_spec_validator import validate

    validate(spec)


async def test_unknown_routes_and_bad_input_never_500(served: tuple[Gateway, GatewayInfo]) -> None:
    _, info = served
    async with aiohttp.ClientSession() as session:
        for path in ("/crl/nope.crl", "/ca/nope.cer", "/nothing"):
            async with session.get(f"{info.http}{path}") as resp:
                assert resp.status == 404
                assert "Traceback" not in await resp.text()
        async with session.get(f"{info.http}/ocsp/issuing/%%%notbase64") as resp:
            assert resp.status == 200 and resp.content_type == "application/ocsp-response"
