"""The console in a real browser: Playwright drives Debian's chromium against a real
``gateway serve`` over HTTPS.

What an operator does every day, end to end: sign in, find a certificate issued through
the admin API by the filters, revoke it from its page and see OCSP answer revoked,
approve a request an EST client (curl) left pending, make an EAB key and see it shown
once, and what an auditor may not do (not offered, and refused when forced), and a form
without its CSRF token refused. Every page is photographed into
``test-output/console/`` (kept by CI as artefacts; the README's images come from there).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from conformance.harness import ROOT, GatewayInfo, GatewayProcess, require_client, run_cli

SHOTS = ROOT / "test-output" / "console"


def _chromium() -> str:
    wrapper = require_client("chromium", "Debian's chromium package (.ci/run installs it)")
    real = Path("/usr/lib/chromium/chromium")
    return str(real) if real.exists() else wrapper


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayInfo]:
    data_dir = tmp_path_factory.mktemp("console") / "data"
    run_cli("init", data_dir=data_dir)
    with GatewayProcess(data_dir) as info:
        yield info


@pytest.fixture(scope="module")
def browser(gateway: GatewayInfo) -> Iterator[Any]:
    from playwright import sync_api

    executable = _chromium()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def _page(browser: Any) -> Any:
    # the dev TLS certificate chains to the gateway's own root, which this browser profile does not know
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1360, "height": 900})
    return context.new_page()


def _sign_in(page: Any, gateway: GatewayInfo, username: str, password: str) -> None:
    page.goto(f"{gateway.https}/console/")
    assert "/console/login" in page.url
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{gateway.https}/console/")


def _owner(gateway: GatewayInfo) -> tuple[str, str]:
    console = gateway.data["console"]
    return console["username"], console["password"]


def _shot(page: Any, name: str) -> None:
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 1000


def _admin(gateway: GatewayInfo, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    req = urllib.request.Request(
        f"{gateway.https}/admin{path}", method=method, data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {gateway.api_key}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=gateway.ssl_context(), timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def _csr(cn: str) -> tuple[x509.CertificateSigningRequest, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
           .sign(key, hashes.SHA256()))
    return csr, key


def _est_enroll(gateway: GatewayInfo, url: str, user: str, csr_body: Path, out: str = "/dev/null") -> str:
    """curl's /simpleenroll with HTTP Basic ``user`` (``name:password``): the HTTP status."""
    curl = require_client("curl")
    done = subprocess.run([curl, "-s", "-o", out, "-w", "%{http_code}", "--cacert", gateway.tls_ca, "-u", user,
                           "-H", "Content-Type: application/pkcs10", "--data-binary", f"@{csr_body}",
                           f"{url}/simpleenroll"], capture_output=True, text=True, timeout=60)
    return done.stdout


def _csr_body(tmp_path: Path, cn: str) -> Path:
    """A fresh CSR for ``cn`` as EST sends it (base64 DER) in a file."""
    csr, _key = _csr(cn)
    body = tmp_path / "csr.b64"
    body.write_bytes(base64.encodebytes(csr.public_bytes(serialization.Encoding.DER)))
    return body


def _ocsp_status(gateway: GatewayInfo, cert_pem: str) -> ocsp.OCSPCertStatus:
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    issuer = x509.load_pem_x509_certificates(Path(gateway.ca("issuing")["chain"]).read_bytes())[0]
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    req = urllib.request.Request(gateway.ca("issuing")["ocsp"], data=request.public_bytes(serialization.Encoding.DER),
                                 headers={"Content-Type": "application/ocsp-request"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        answer = ocsp.load_der_ocsp_response(resp.read())
    assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    return answer.certificate_status


def test_sign_in_find_revoke_and_ocsp_says_revoked(gateway: GatewayInfo, browser: Any) -> None:
    cn = f"console-{uuid.uuid4().hex[:8]}.example.test"
    csr, _key = _csr(cn)
    issued = _admin(gateway, "POST", "/certificates", {
        "ca": "issuing", "profile": "tls-server", "csr": csr.public_bytes(serialization.Encoding.PEM).decode()})
    assert _ocsp_status(gateway, issued["pem"]) == ocsp.OCSPCertStatus.GOOD

    page = _page(browser)
    _sign_in(page, gateway, *_owner(gateway))
    assert page.locator("h1").inner_text() == "Dashboard"
    _shot(page, "dashboard")

    page.goto(f"{gateway.https}/console/certificates")
    page.fill("input[name=subject]", cn[:16])
    page.select_option("select[name=status]", "valid")
    page.click("form.filters button[type=submit]")
    rows = page.locator("#certificates tr", has_text=cn)
    assert rows.count() == 1, page.content()
    assert "1 certificate match" in page.content()
    _shot(page, "certificates")
    page.fill("input[name=san]", "no-such-name.invalid")  # the SAN filter narrows too
    page.click("form.filters button[type=submit]")
    assert page.locator("#certificates tr", has_text=cn).count() == 0

    page.goto(f"{gateway.https}/console/certificates?subject={cn}")
    page.locator("#certificates a", has_text=issued["serial"][:16]).click()
    page.wait_for_url(re.compile(r".*/console/certificates/[0-9a-f]+$"))
    assert cn in page.content()
    _shot(page, "certificate")
    page.select_option("#reason", "keyCompromise")
    page.once("dialog", lambda dialog: dialog.accept())  # the page asks before revoking
    page.click("#revoke")
    page.wait_for_url(re.compile(r".*done=revoke$"))
    assert page.locator("#cert-status").inner_text().startswith("revoked")
    assert _ocsp_status(gateway, issued["pem"]) == ocsp.OCSPCertStatus.REVOKED

    events = _admin(gateway, "GET", f"/events?serial={issued['serial']}&type=revoke")["items"]
    assert [e["detail"].get("actor") for e in events] == [f"console:{_owner(gateway)[0]}"]

    page.goto(f"{gateway.https}/console/events?type=revoke")
    assert page.locator("#events tr", has_text=f"console:{_owner(gateway)[0]}").count() >= 1
    _shot(page, "events")


def test_a_pending_est_request_is_approved_in_the_console(gateway: GatewayInfo, browser: Any,
                                                          tmp_path: Path) -> None:
    est = gateway.data["protocols"]["est"][0]
    _admin(gateway, "PATCH", f"/protocol-configs/{est['config']}", {"settings": {"approval": "manual"}})
    cn = f"held-{uuid.uuid4().hex[:8]}.example.test"
    body = _csr_body(tmp_path, cn)
    dev_user = f"{est['username']}:{est['password']}"
    assert _est_enroll(gateway, est["url"], dev_user, body) == "202"

    page = _page(browser)
    _sign_in(page, gateway, *_owner(gateway))
    page.goto(f"{gateway.https}/console/requests")
    row = page.locator("#requests tr", has_text=cn)
    assert row.count() == 1, page.content()
    _shot(page, "requests")
    row.locator("button.approve").click()
    page.wait_for_url(re.compile(r".*done=approve$"))
    page.goto(f"{gateway.https}/console/requests?status=issued")
    assert page.locator("#requests tr", has_text=cn).count() == 1

    # the approved request is collected with the same CSR
    assert _est_enroll(gateway, est["url"], dev_user, body, out=str(tmp_path / "issued.p7")) == "200"
    _admin(gateway, "PATCH", f"/protocol-configs/{est['config']}", {"settings": {"approval": "auto"}})


def test_an_eab_key_is_shown_once(gateway: GatewayInfo, browser: Any) -> None:
    acme = gateway.data["protocols"]["acme"][0]["config"]
    page = _page(browser)
    _sign_in(page, gateway, *_owner(gateway))
    page.goto(f"{gateway.https}/console/configs/{acme}")
    assert "/directory" in page.content()  # the URL clients need, with a copy button
    page.fill("input[name=label]", "console-test")
    page.click("#create-credential")
    secret = page.locator("#secret-value").inner_text().strip()
    assert len(secret) >= 40
    _shot(page, "eab-key-shown-once")
    page.goto(f"{gateway.https}/console/configs/{acme}")
    assert page.locator("#secret").count() == 0
    assert secret not in page.content()
    assert "console-test" in page.content()  # listed, without its key
    _shot(page, "config")
    for name in ("cas", "cas/issuing", "profiles", "profiles/tls-server", "configs", "entities"):
        page.goto(f"{gateway.https}/console/{name}")
        assert page.locator("h1").count() == 1
        _shot(page, name.replace("/", "-"))


def test_an_auditor_cannot_revoke_and_forcing_it_is_refused(gateway: GatewayInfo, browser: Any) -> None:
    password = "auditor-" + uuid.uuid4().hex
    run_cli("user", "add", "auditor1", "--role", "ca-auditor", "--password-env", "AUDITOR_PW",
            data_dir=gateway.data_dir, env={"AUDITOR_PW": password})
    csr, _key = _csr(f"audited-{uuid.uuid4().hex[:8]}.example.test")
    issued = _admin(gateway, "POST", "/certificates", {
        "ca": "issuing", "profile": "tls-server", "csr": csr.public_bytes(serialization.Encoding.PEM).decode()})
    page = _page(browser)
    _sign_in(page, gateway, "auditor1", password)
    assert page.locator("header nav a", has_text="Protocols").count() == 0  # not a protocol role
    page.goto(f"{gateway.https}/console/certificates/{issued['serial']}")
    assert page.locator("#cert-status").inner_text().startswith("valid")
    assert page.locator("#revoke").count() == 0 and page.locator("#suspend").count() == 0
    _shot(page, "certificate-as-auditor")
    csrf = page.locator("header form.who input[name=csrf]").get_attribute("value")
    forced = page.request.post(f"{gateway.https}/console/certificates/{issued['serial']}/revoke",
                               form={"csrf": csrf, "reason": "keyCompromise"})
    assert forced.status == 403
    assert "may not change certificates" in forced.text()
    assert _admin(gateway, "GET", f"/certificates/{issued['serial']}")["status"] == "valid"
    page.goto(f"{gateway.https}/console/configs")
    assert page.locator("p.error").count() == 1  # the API refused protocol reads to this role


def test_a_form_without_its_csrf_token_is_refused(gateway: GatewayInfo, browser: Any) -> None:
    csr, _key = _csr(f"csrf-{uuid.uuid4().hex[:8]}.example.test")
    issued = _admin(gateway, "POST", "/certificates", {
        "ca": "issuing", "profile": "tls-server", "csr": csr.public_bytes(serialization.Encoding.PEM).decode()})
    page = _page(browser)
    _sign_in(page, gateway, *_owner(gateway))
    for form in ({}, {"csrf": "not-the-token"}):
        answer = page.request.post(f"{gateway.https}/console/certificates/{issued['serial']}/suspend", form=form)
        assert answer.status == 403 and "CSRF" in answer.text()
    assert _admin(gateway, "GET", f"/certificates/{issued['serial']}")["status"] == "valid"
    page.click("header form.who button")  # sign out
    page.wait_for_url(re.compile(r".*/console/login$"))
    _shot(page, "login")
    page.goto(f"{gateway.https}/console/certificates")
    assert "/console/login" in page.url  # the session is gone


def test_bulk_revoke_confirms_the_count_and_csv_exports_the_match(gateway: GatewayInfo, browser: Any) -> None:
    batch = f"bulk-{uuid.uuid4().hex[:8]}"
    serials = []
    for n in range(3):
        csr, _key = _csr(f"{batch}-{n}.example.test")
        serials.append(_admin(gateway, "POST", "/certificates", {
            "ca": "issuing", "profile": "tls-server",
            "csr": csr.public_bytes(serialization.Encoding.PEM).decode()})["serial"])
    page = _page(browser)
    _sign_in(page, gateway, *_owner(gateway))
    page.goto(f"{gateway.https}/console/certificates?subject={batch}")
    csv_answer = page.request.get(f"{gateway.https}/console/certificates.csv?subject={batch}")
    assert csv_answer.status == 200 and csv_answer.headers["content-type"].startswith("text/csv")
    lines = csv_answer.text().strip().splitlines()
    assert lines[0].startswith("serial,status,subject") and len(lines) == 4
    assert {line.split(",")[0] for line in lines[1:]} == set(serials)
    page.select_option("form.bulk select[name=reason]", "superseded")
    page.click("form.bulk button[type=submit]")
    assert page.locator("h1").inner_text() == "Revoke 3 certificates?"
    _shot(page, "bulk-revoke-confirm")
    page.click("#confirm-bulk")
    assert page.locator("#bulk-result").inner_text() == "Matched 3, revoked 3, failed 0."
    for serial in serials:
        cert = _admin(gateway, "GET", f"/certificates/{serial}")
        assert (cert["status"], cert["revocation_reason"]) == ("revoked", "superseded")


def test_an_owner_adds_a_user_whose_password_is_shown_once(gateway: GatewayInfo, browser: Any) -> None:
    name = f"op-{uuid.uuid4().hex[:6]}"
    page = _page(browser)
    _sign_in(page, gateway, *_owner(gateway))
    page.goto(f"{gateway.https}/console/users")
    page.fill("input[name=username]", name)
    page.select_option("form.grid select[name=role]", "protocol-operator")
    page.click("#add-user")
    password = page.locator("#secret-value").inner_text().strip()
    _shot(page, "users")
    page.goto(f"{gateway.https}/console/users")
    assert password not in page.content() and page.locator("#users tr", has_text=name).count() == 1
    other = _page(browser)
    _sign_in(other, gateway, name, password)
    nav = other.locator("header nav").inner_text()
    assert "Protocols" in nav and "Users" not in nav and "Certificates" not in nav
    assert other.request.get(f"{gateway.https}/console/users").status == 403


def test_an_est_user_made_in_the_console_enrolls_with_curl(gateway: GatewayInfo, browser: Any,
                                                          tmp_path: Path) -> None:
    est = gateway.data["protocols"]["est"][0]
    name = f"router-{uuid.uuid4().hex[:6]}"
    page = _page(browser)
    _sign_in(page, gateway, *_owner(gateway))
    page.goto(f"{gateway.https}/console/configs/{est['config']}")
    assert f"{est['url']}" in page.content()
    page.fill("input[name=username]", name)
    page.click("#create-credential")
    password = page.locator("#secret-value").inner_text().strip()
    page.goto(f"{gateway.https}/console/configs/{est['config']}")
    assert password not in page.content() and page.locator("#credentials tr", has_text=name).count() == 1
    body = _csr_body(tmp_path, f"{name}.example.test")
    for user, expected in ((f"{name}:{password}", "200"), (f"{name}:wrong-password", "401")):
        assert _est_enroll(gateway, est["url"], user, body) == expected, user


def test_an_api_key_made_in_the_console_carries_its_role(gateway: GatewayInfo, browser: Any) -> None:
    import urllib.error

    name = f"key-{uuid.uuid4().hex[:6]}"
    page = _page(browser)
    _sign_in(page, gateway, *_owner(gateway))
    page.goto(f"{gateway.https}/console/users")
    page.fill("input[name=name]", name)
    page.select_option("form.grid >> nth=1 >> select[name=role]", "ca-auditor")
    page.click("#add-key")
    key = page.locator("#key-value").inner_text().strip()
    page.goto(f"{gateway.https}/console/users")
    assert key not in page.content() and page.locator("#api-keys tr", has_text=name).count() == 1

    def call(method: str, path: str) -> int:
        req = urllib.request.Request(f"{gateway.https}/admin{path}", method=method,
                                     data=b"{}" if method == "POST" else None,
                                     headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=gateway.ssl_context(), timeout=30) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    assert call("GET", "/certificates?limit=1") == 200
    assert call("POST", "/certificates/abcdef/revoke") == 403
    assert call("GET", "/protocol-configs") == 403


def test_suspend_and_reinstate_from_the_page(gateway: GatewayInfo, browser: Any) -> None:
    csr, _key = _csr(f"hold-{uuid.uuid4().hex[:8]}.example.test")
    issued = _admin(gateway, "POST", "/certificates", {
        "ca": "issuing", "profile": "tls-server", "csr": csr.public_bytes(serialization.Encoding.PEM).decode()})
    page = _page(browser)
    _sign_in(page, gateway, *_owner(gateway))
    page.goto(f"{gateway.https}/console/certificates/{issued['serial']}")
    page.click("#suspend")
    page.wait_for_url(re.compile(r".*done=suspend$"))
    assert page.locator("#cert-status").inner_text().startswith("hold")
    assert _ocsp_status(gateway, issued["pem"]) == ocsp.OCSPCertStatus.REVOKED  # on hold: revoked, certificateHold
    page.click("#unsuspend")
    page.wait_for_url(re.compile(r".*done=unsuspend$"))
    assert page.locator("#cert-status").inner_text().startswith("valid")
    assert _ocsp_status(gateway, issued["pem"]) == ocsp.OCSPCertStatus.GOOD


def test_a_ca_is_created_and_a_crl_forced_from_the_console(gateway: GatewayInfo, browser: Any) -> None:
    ca_id = f"c{uuid.uuid4().hex[:8]}"
    page = _page(browser)
    _sign_in(page, gateway, *_owner(gateway))
    page.goto(f"{gateway.https}/console/cas")
    page.select_option("form.grid select[name=kind]", "root")
    page.fill("input[name=id]", ca_id)
    page.fill("input[name=name]", "Console Test Root")
    page.select_option("select[name=key_algorithm]", "EC-P256")
    page.click("form.grid button[type=submit]")
    page.wait_for_url(re.compile(rf".*/console/cas/{ca_id}\?done=created$"))
    assert "Console Test Root" in page.locator("h1").inner_text()
    before = _admin(gateway, "GET", f"/cas/{ca_id}")["crl_number"]
    page.click("#force-crl")
    page.wait_for_url(re.compile(r".*done=crl$"))
    assert _admin(gateway, "GET", f"/cas/{ca_id}")["crl_number"] == before + 1
    crl = page.request.get(f"{gateway.https}/console/cas/{ca_id}/download/crl")
    assert crl.status == 200 and x509.load_der_x509_crl(crl.body()).issuer.rfc4514_string().endswith(
        "CN=Console Test Root")
    _shot(page, "ca")


def test_a_scep_challenge_from_the_console_enrolls_scepclient_once(gateway: GatewayInfo, browser: Any,
                                                                   tmp_path: Path) -> None:
    scepclient = require_client("scepclient", "Debian package scep")
    scep = gateway.data["protocols"]["scep"][0]
    page = _page(browser)
    _sign_in(page, gateway, *_owner(gateway))
    page.goto(f"{gateway.https}/console/configs/{scep['config']}")
    page.click("#create-credential")
    challenge = page.locator("#secret-value").inner_text().strip()
    assert challenge
    _shot(page, "scep-challenge")

    def enroll(workdir: Path) -> subprocess.CompletedProcess[str]:
        workdir.mkdir()
        return subprocess.run([scepclient, "-server-url", scep["url"], "-private-key", str(workdir / "key.pem"),
                               "-challenge", challenge, "-cn", "console-scep.example.test"],
                              cwd=workdir, capture_output=True, text=True, timeout=120)

    first = enroll(tmp_path / "one")
    assert first.returncode == 0 and (tmp_path / "one" / "client.pem").exists(), first.stdout + first.stderr
    cert = x509.load_pem_x509_certificate((tmp_path / "one" / "client.pem").read_bytes())
    assert "console-scep.example.test" in cert.subject.rfc4514_string()
    second = enroll(tmp_path / "two")  # a one-time challenge: refused the second time
    assert second.returncode != 0 and not (tmp_path / "two" / "client.pem").exists()


def test_an_end_entity_is_deactivated_and_activated_again(gateway: GatewayInfo, browser: Any,
                                                          tmp_path: Path) -> None:
    est = gateway.data["protocols"]["est"][0]
    cn = f"entity-{uuid.uuid4().hex[:8]}.example.test"
    body = _csr_body(tmp_path, cn)
    assert _est_enroll(gateway, est["url"], f"{est['username']}:{est['password']}", body) == "200"
    entities = _admin(gateway, "GET", "/end-entities?limit=500")["items"]
    (entity,) = [e for e in entities if e["name"] == cn]
    page = _page(browser)
    _sign_in(page, gateway, *_owner(gateway))
    page.goto(f"{gateway.https}/console/entities")
    row = page.locator("tr", has_text=cn)
    row.locator("select[name=status]").select_option("inactive")
    row.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r".*done=status$"))
    assert _admin(gateway, "GET", f"/end-entities/{entity['id']}")["status"] == "inactive"
    page.locator("tr", has_text=cn).locator("select[name=status]").select_option("active")
    page.locator("tr", has_text=cn).locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r".*done=status$"))
    assert _admin(gateway, "GET", f"/end-entities/{entity['id']}")["status"] == "active"
