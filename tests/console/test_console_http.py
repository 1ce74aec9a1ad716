"""The console's sign-in and session rules over real HTTPS, without a browser: security
headers, cookie flags, the sign-in form's CSRF token, lockout after failed passwords,
no open redirect, TLS client-certificate sign-in, sign-in audited, and console sessions
never accepted by the public admin API."""

from __future__ import annotations

import json
import re
import ssl
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conformance.harness import GatewayInfo, GatewayProcess, run_cli


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayInfo]:
    data_dir = tmp_path_factory.mktemp("console-http") / "data"
    run_cli("init", data_dir=data_dir)
    with GatewayProcess(data_dir) as info:
        yield info


def _session(gateway: GatewayInfo, ssl_context: ssl.SSLContext | None = None) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(ssl=ssl_context or gateway.ssl_context())
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _login_token(s: aiohttp.ClientSession, gateway: GatewayInfo) -> str:
    async with s.get(f"{gateway.https}/console/login") as resp:
        assert resp.status == 200
        match = re.search(r'name="login_csrf" value="([^"]+)"', await resp.text())
    assert match
    return match.group(1)


async def _sign_in(s: aiohttp.ClientSession, gateway: GatewayInfo, username: str, password: str,
                   next_path: str = "/console/") -> aiohttp.ClientResponse:
    token = await _login_token(s, gateway)
    return await s.post(f"{gateway.https}/console/login", allow_redirects=False,
                        data={"login_csrf": token, "username": username, "password": password, "next": next_path})


def _admin(gateway: GatewayInfo, path: str) -> Any:
    req = urllib.request.Request(f"{gateway.https}/admin{path}", headers={"Authorization": f"Bearer {gateway.api_key}"})
    with urllib.request.urlopen(req, context=gateway.ssl_context(), timeout=30) as resp:
        return json.loads(resp.read())


async def test_pages_carry_the_security_headers_and_the_cookie_its_flags(gateway: GatewayInfo) -> None:
    owner = gateway.data["console"]
    async with _session(gateway) as s:
        async with s.get(f"{gateway.https}/console/login") as resp:
            csp = resp.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
            assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
            assert resp.headers["X-Frame-Options"] == "DENY"
            assert "<script>" not in await resp.text()  # no inline script anywhere
        resp = await _sign_in(s, gateway, owner["username"], owner["password"])
        assert resp.status == 303 and resp.headers["Location"] == "/console/"
        cookie = next(v for k, v in resp.headers.items() if k == "Set-Cookie" and "__Host-gateway-console=" in v)
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        async with s.get(f"{gateway.https}/console/") as page:
            assert page.status == 200 and "Dashboard" in await page.text()
            assert page.headers["Cache-Control"] == "no-store"


async def test_sign_in_without_the_form_token_is_refused(gateway: GatewayInfo) -> None:
    owner = gateway.data["console"]
    async with _session(gateway) as s:
        await _login_token(s, gateway)  # the cookie, but a forged form without its token
        async with s.post(f"{gateway.https}/console/login", allow_redirects=False,
                          data={"username": owner["username"], "password": owner["password"]}) as resp:
            assert resp.status == 403
            assert not any("__Host-gateway-console=" in v for k, v in resp.headers.items() if k == "Set-Cookie")


async def test_repeated_wrong_passwords_lock_the_user_out(gateway: GatewayInfo) -> None:
    name, password = f"locked-{uuid.uuid4().hex[:6]}", "right-" + uuid.uuid4().hex
    run_cli("user", "add", name, "--role", "ca-auditor", "--password-env", "PW", data_dir=gateway.data_dir,
            env={"PW": password})
    async with _session(gateway) as s:
        for attempt in range(5):
            resp = await _sign_in(s, gateway, name, "wrong-password")
            assert resp.status == (401 if attempt < 4 else 429)  # the fifth failure locks
        resp = await _sign_in(s, gateway, name, password)  # right, but locked now
        assert resp.status == 429 and "Too many failed attempts" in await resp.text()
    failures = [e for e in _admin(gateway, "/events?type=console_login&limit=50")["items"]
                if e["detail"].get("username") == name]
    assert len(failures) == 6 and all(e["status"] == "failure" for e in failures)
    assert not any("wrong-password" in json.dumps(e) or password in json.dumps(e) for e in failures)  # no secret


async def test_the_next_parameter_never_leaves_the_console(gateway: GatewayInfo) -> None:
    owner = gateway.data["console"]
    async with _session(gateway) as s:
        resp = await _sign_in(s, gateway, owner["username"], owner["password"], next_path="https://evil.example/")
        assert resp.headers["Location"] == "/console/"
    async with _session(gateway) as s:
        resp = await _sign_in(s, gateway, owner["username"], owner["password"], next_path="/console/events")
        assert resp.headers["Location"] == "/console/events"
    async with _session(gateway) as s:
        async with s.get(f"{gateway.https}/console/certificates?status=valid", allow_redirects=False) as resp:
            target = resp.headers["Location"]
            assert resp.status == 303 and target.startswith("/console/login?next=") and "/console/certificates" in target


async def test_a_console_session_is_not_an_admin_api_credential(gateway: GatewayInfo) -> None:
    owner = gateway.data["console"]
    async with _session(gateway) as s:
        await _sign_in(s, gateway, owner["username"], owner["password"])
        token = next(c.value for c in s.cookie_jar if c.key == "__Host-gateway-console")
        async with s.get(f"{gateway.https}/admin/certificates", headers={"X-Console-Session": token}) as resp:
            assert resp.status == 401  # only the console's private socket takes sessions


async def test_a_registered_client_certificate_signs_in(gateway: GatewayInfo, tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "operator@example.test")]))
           .sign(key, hashes.SHA256()))
    req = urllib.request.Request(
        f"{gateway.https}/admin/certificates", method="POST",
        data=json.dumps({"ca": "issuing", "profile": "tls-client",
                         "csr": csr.public_bytes(serialization.Encoding.PEM).decode()}).encode(),
        headers={"Authorization": f"Bearer {gateway.api_key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=gateway.ssl_context(), timeout=30) as resp:
        issued = json.loads(resp.read())
    cert_path, key_path = tmp_path / "op.pem", tmp_path / "op.key"
    cert_path.write_text(issued["pem"] + "".join(issued["chain"]))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    name = f"certop-{uuid.uuid4().hex[:6]}"
    run_cli("user", "add", name, "--role", "certificate-admin", "--client-cert", str(cert_path),
            data_dir=gateway.data_dir)
    ctx = gateway.ssl_context()
    ctx.load_cert_chain(str(cert_path), str(key_path))
    async with _session(gateway, ctx) as s:
        async with s.get(f"{gateway.https}/console/login") as page:
            text = await page.text()
            assert "Sign in with your client certificate" in text
            token = re.search(r'name="login_csrf" value="([^"]+)"', text)
        assert token
        async with s.post(f"{gateway.https}/console/login/certificate", allow_redirects=False,
                          data={"login_csrf": token.group(1), "next": "/console/"}) as resp:
            assert resp.status == 303
        async with s.get(f"{gateway.https}/console/") as page:
            assert f"{name} · Certificate Administrator" in await page.text()
    async with _session(gateway) as s:  # without the certificate: refused
        token2 = await _login_token(s, gateway)
        async with s.post(f"{gateway.https}/console/login/certificate", allow_redirects=False,
                          data={"login_csrf": token2}) as resp:
            assert resp.status == 401


async def test_the_console_can_be_switched_off(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    run_cli("init", data_dir=data_dir)
    config = data_dir / "config.toml"
    config.write_text(config.read_text() + "\n[console]\nenabled = false\n" if "[console]" not in config.read_text()
                      else config.read_text().replace("enabled = true", "enabled = false"))
    with GatewayProcess(data_dir) as info:
        assert info.data["console"]["url"] is None
        async with _session(info) as s:
            for path in ("/console/", "/console/login", "/"):
                async with s.get(f"{info.https}{path}", allow_redirects=False) as resp:
                    assert resp.status == 404, path
            async with s.get(f"{info.https}/admin/certificates",
                             headers={"Authorization": f"Bearer {info.api_key}"}) as resp:
                assert resp.status == 200  # the admin API stays


BAD_POSTS = (
    ("/console/cas", {"kind": "nonsense", "id": "x", "name": ""}),
    ("/console/cas", {"kind": "intermediate", "id": "ok-id", "name": "n", "parent": "no-such-ca"}),
    ("/console/cas/no-such-ca/crl", {}),
    ("/console/configs", {"id": "!!", "protocol": "acme", "ca": "issuing", "profiles": ""}),
    ("/console/configs/no-such-config", {"enabled": "on", "profiles": "no-such-profile"}),
    ("/console/configs/no-such-config/credentials", {"username": "x"}),
    ("/console/configs/mdm/credentials", {"username": "UPPER CASE not allowed"}),
    ("/console/certificates/zz-not-hex/revoke", {"reason": "keyCompromise"}),
    ("/console/certificates/abcdef/revoke", {"reason": "noSuchReason"}),
    ("/console/certificates/bulk-revoke/preview", {}),
    ("/console/certificates/bulk-revoke", {}),
    ("/console/certificates/bulk-revoke", {"issued_after": "not-a-date"}),
    ("/console/requests/no-such-request/approve", {}),
    ("/console/requests/no-such-request/reject", {"reason": ""}),
    ("/console/entities/no-such-entity/status", {"status": "flying"}),
    ("/console/users", {"username": "", "role": "emperor"}),
    ("/console/users/no-such-user", {"role": "owner"}),
    ("/console/api-keys", {"name": " ", "role": "owner", "expires_in": "forever"}),
    ("/console/api-keys/no-such-key/revoke", {}),
)
BAD_GETS = ("/console/certificates?issued_after=garbage", "/console/certificates?offset=-5&status=flying",
            "/console/certificates/zz/download/der", "/console/cas/no-such-ca", "/console/profiles/no-such-profile",
            "/console/configs/no-such-config", "/console/events?since=yesterday", "/console/requests?status=odd",
            "/console/entities?status=odd", "/console/events.csv?serial=zz", "/console/certificates/abc/download/exe")


async def test_bad_forms_and_queries_get_an_error_page_and_change_nothing(gateway: GatewayInfo) -> None:
    owner = gateway.data["console"]
    before = _admin(gateway, "/events?limit=1")["items"][0]["id"]
    async with _session(gateway) as s:
        await _sign_in(s, gateway, owner["username"], owner["password"])
        async with s.get(f"{gateway.https}/console/") as page:
            csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text())
        assert csrf
        for path, fields in BAD_POSTS:
            async with s.post(f"{gateway.https}{path}", data={"csrf": csrf.group(1), **fields},
                              allow_redirects=False) as resp:
                text = await resp.text()
                assert 400 <= resp.status < 500, (path, fields, resp.status, text[:300])
                assert "Traceback" not in text and resp.headers["Content-Security-Policy"]
        for path in BAD_GETS:
            async with s.get(f"{gateway.https}{path}", allow_redirects=False) as resp:
                assert 400 <= resp.status < 500 or resp.status == 200, (path, resp.status)
                assert "Traceback" not in await resp.text()
    changes = [e for e in _admin(gateway, f"/events?limit=200")["items"]
               if e["id"] > before and e["status"] == "success" and e["type"] not in ("console_login",)]
    assert changes == [], changes
    log = (gateway.data_dir.parent / f"{gateway.data_dir.name}-serve.log").read_text()
    assert "Traceback" not in log and "unhandled error" not in log
