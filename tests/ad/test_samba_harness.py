"""The Samba AD DC the Active Directory tests run against: Kerberos, keytabs, LDAPS, the
AD objects the gateway reads (SIDs, tokenGroups, certificate templates). Real samba,
real kinit/klist/kvno, real ldap3 and pyspnego/gssapi; nothing of the gateway yet."""

from __future__ import annotations

import ssl
import struct
import subprocess
from pathlib import Path

import ldap3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ldap3.core.exceptions import LDAPException, LDAPInvalidCredentialsResult, LDAPStrongerAuthRequiredResult

from .samba import (
    AUTOENROLL_RIGHT,
    ENROLL_RIGHT,
    ENROLLMENT_SERVICES_DN,
    SambaDC,
    _samba_python,
    run,
    sid_to_str,
)

SD_FLAGS_DACL = ("1.2.840.113556.1.4.801", True, b"\x30\x03\x02\x01\x04")  # LDAP_SERVER_SD_FLAGS_OID


def _klist(dc: SambaDC, ccache: Path) -> str:
    return run(["klist"], env=dc.krb5_env(ccache)).stdout


def test_admin_kinit_with_password_and_wrong_password_refused(samba_dc: SambaDC, tmp_path: Path) -> None:
    ok = samba_dc.kinit("administrator", ccache=tmp_path / "cc", password=samba_dc.admin_password)
    assert ok.returncode == 0
    assert "krbtgt/GW.TEST@GW.TEST" in _klist(samba_dc, tmp_path / "cc")

    bad = samba_dc.kinit("administrator", ccache=tmp_path / "bad", password="not-the-password", check=False)
    assert bad.returncode != 0
    assert "Password incorrect" in bad.stderr or "Preauthentication failed" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_user_and_computer_get_tickets(samba_dc: SambaDC, tmp_path: Path) -> None:
    password = samba_dc.create_user("h-alice", mail="alice@gw.test")
    samba_dc.kinit("h-alice", ccache=tmp_path / "user", password=password)
    assert "Default principal: h-alice@GW.TEST" in _klist(samba_dc, tmp_path / "user")

    samba_dc.create_computer("HWS1", dns_host_name="hws1.gw.test")
    keytab = samba_dc.export_keytab("HWS1$", tmp_path / "hws1.keytab")
    samba_dc.kinit("HWS1$", ccache=tmp_path / "computer", keytab=keytab)
    assert "Default principal: HWS1$@GW.TEST" in _klist(samba_dc, tmp_path / "computer")

    conn = samba_dc.ldap()
    conn.search(samba_dc.base_dn, "(sAMAccountName=HWS1$)", attributes=["dNSHostName", "objectClass"])
    assert conn.entries[0].dNSHostName.value == "hws1.gw.test"
    assert "computer" in conn.entries[0].objectClass.values


def test_http_service_keytab_accepts_a_users_spnego_token(samba_dc: SambaDC, tmp_path: Path) -> None:
    """The shape the gateway's Negotiate acceptor will have: a keytab for HTTP/harness.gw.test (not
    gateway.gw.test: test_negotiate.py gives that SPN to its own account in the same DC)
    (AES keys), a user's ticket for it, and pyspnego over python-gssapi on both ends."""
    import spnego

    keytab = samba_dc.create_service("h-gwsvc", "HTTP/harness.gw.test", tmp_path / "http.keytab")
    listing = run(["klist", "-k", "-e", str(keytab)]).stdout
    assert "HTTP/harness.gw.test@GW.TEST (aes256-cts-hmac-sha1-96)" in listing

    password = samba_dc.create_user("h-bob")
    ccache = tmp_path / "bob"
    samba_dc.kinit("h-bob", ccache=ccache, password=password)
    kvno = run(["kvno", "HTTP/harness.gw.test"], env=samba_dc.krb5_env(ccache))
    assert "HTTP/harness.gw.test@GW.TEST: kvno" in kvno.stdout

    # python-gssapi reads KRB5_* from the environment when a context is made.
    mp = pytest.MonkeyPatch()
    try:
        for key, value in samba_dc.krb5_env(ccache, keytab=keytab).items():
            if key.startswith("KRB5"):
                mp.setenv(key, value)
        client = spnego.client(hostname="harness.gw.test", service="HTTP", protocol="negotiate")
        server = spnego.server(protocol="negotiate")
        reply = server.step(client.step())
        if reply:
            client.step(reply)
        assert server.complete and client.complete
        assert server.negotiated_protocol == "kerberos"
        assert server.client_principal == "h-bob@GW.TEST"
    finally:
        mp.undo()


def test_curl_negotiate_gets_a_ticket_for_the_url_host(samba_dc: SambaDC, tmp_path: Path) -> None:
    """curl --negotiate asks for HTTP/<URL host>: with --resolve, no name needs to resolve.
    The acceptor here is a throwaway stdlib server over pyspnego, not the gateway."""
    import base64
    import http.server
    import threading

    import spnego

    from conformance.harness import free_port

    keytab = samba_dc.create_service("h-curlsvc", "HTTP/curl.gw.test", tmp_path / "curl.keytab")
    password = samba_dc.create_user("h-erin")
    ccache = tmp_path / "erin"
    samba_dc.kinit("h-erin", ccache=ccache, password=password)
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Negotiate "):
                self.send_response(401)
                self.send_header("WWW-Authenticate", "Negotiate")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            acceptor = spnego.server(protocol="negotiate")
            out = acceptor.step(base64.b64decode(auth.split(" ", 1)[1]))
            seen.append(str(acceptor.client_principal))
            body = str(acceptor.client_principal).encode()
            self.send_response(200)
            if out:
                self.send_header("WWW-Authenticate", "Negotiate " + base64.b64encode(out).decode())
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    mp = pytest.MonkeyPatch()
    mp.setenv("KRB5_CONFIG", str(samba_dc.krb5_conf))
    mp.setenv("KRB5_KTNAME", f"FILE:{keytab}")
    thread.start()
    try:
        proc = run(["curl", "-sS", "--fail", "--negotiate", "-u", ":", "--resolve", f"curl.gw.test:{port}:127.0.0.1",
                    f"http://curl.gw.test:{port}/"], env=samba_dc.krb5_env(ccache))
    finally:
        httpd.shutdown()
        httpd.server_close()
        mp.undo()
    assert proc.stdout == "h-erin@GW.TEST"
    assert seen == ["h-erin@GW.TEST"]
    assert "HTTP/curl.gw.test@GW.TEST" in _klist(samba_dc, ccache)


def test_ldaps_verified_reads_sid_and_token_groups(samba_dc: SambaDC) -> None:
    samba_dc.create_user("h-carol")
    group_sid = samba_dc.create_group("h-enrollers", members=("h-carol",))
    conn = samba_dc.ldap()
    conn.search(samba_dc.base_dn, "(sAMAccountName=h-carol)", attributes=["objectSid", "userPrincipalName"])
    entry = conn.entries[0]
    sid = sid_to_str(entry.objectSid.raw_values[0])
    shown = samba_dc.samba_tool("user", "show", "h-carol", "--attributes=objectSid").stdout
    assert f"objectSid: {sid}" in shown
    assert entry.userPrincipalName.value == "h-carol@gw.test"

    conn.search(entry.entry_dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["tokenGroups"])
    groups = {sid_to_str(raw) for raw in conn.entries[0].tokenGroups.raw_values}
    assert group_sid in groups
    assert f"{samba_dc.domain_sid}-513" in groups  # Domain Users


def test_ldap_transport_security_is_real(samba_dc: SambaDC, tmp_path: Path) -> None:
    """Plain simple binds are refused (strong auth), StartTLS works, and a CA that did not issue
    the DC's certificate is rejected: the verification in samba_dc.ldap() is not a no-op."""
    plain = ldap3.Connection(ldap3.Server(samba_dc.address, port=389, get_info=ldap3.NONE),
                             user="administrator@gw.test", password=samba_dc.admin_password,
                             raise_exceptions=True)
    with pytest.raises(LDAPStrongerAuthRequiredResult):
        plain.bind()

    starttls = ldap3.Connection(ldap3.Server(samba_dc.address, port=389, tls=samba_dc.tls(), get_info=ldap3.NONE),
                                user="administrator@gw.test", password=samba_dc.admin_password)
    starttls.open()
    assert starttls.start_tls() and starttls.bind()

    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_bytes(_self_signed_ca().public_bytes(serialization.Encoding.PEM))
    tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(other_ca), valid_names=[samba_dc.hostname])
    wrong = ldap3.Connection(ldap3.Server(samba_dc.address, port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE),
                             user="administrator@gw.test", password=samba_dc.admin_password)
    with pytest.raises(LDAPException):
        wrong.open()


def test_user_bind_checks_password_and_disabled_accounts(samba_dc: SambaDC, tmp_path: Path) -> None:
    password = samba_dc.create_user("h-dave")
    assert samba_dc.ldap("h-dave@gw.test", password).bound
    with pytest.raises(LDAPInvalidCredentialsResult):
        samba_dc.ldap("h-dave@gw.test", password + "x")
    samba_dc.samba_tool("user", "disable", "h-dave")
    with pytest.raises(LDAPInvalidCredentialsResult):
        samba_dc.ldap("h-dave@gw.test", password)
    refused = samba_dc.kinit("h-dave", ccache=tmp_path / "cc", password=password, check=False)
    assert refused.returncode != 0 and "revoked" in refused.stderr.lower()


def test_certificate_template_and_enrollment_service_objects(samba_dc: SambaDC) -> None:
    """The AD CS objects the gateway reads can be created with the real AD schema."""
    group_sid = samba_dc.create_group("h-template-users")
    sddl = (f"O:DAG:DAD:PAI(A;;RPLCLORC;;;AU)(OA;;CR;{ENROLL_RIGHT};;{group_sid})"
            f"(OA;;CR;{AUTOENROLL_RIGHT};;{group_sid})(A;;CCDCLCSWRPWPDTLOSDRCWDWO;;;DA)")
    year = struct.pack("<q", -365 * 24 * 3600 * 10**7)  # FILETIME interval, negative
    six_weeks = struct.pack("<q", -42 * 24 * 3600 * 10**7)
    dn = samba_dc.add_certificate_template("HGWUser", {
        "flags": 131642, "revision": 100, "pKIDefaultKeySpec": 1, "pKIKeyUsage": b"\xa0\x00",
        "pKIMaxIssuingDepth": 0, "pKICriticalExtensions": ["2.5.29.15"],
        "pKIExpirationPeriod": year, "pKIOverlapPeriod": six_weeks,
        "pKIExtendedKeyUsage": ["1.3.6.1.5.5.7.3.2", "1.3.6.1.4.1.311.10.3.4"],
        "msPKI-RA-Signature": 0, "msPKI-Enrollment-Flag": 41, "msPKI-Private-Key-Flag": 16,
        "msPKI-Certificate-Name-Flag": -1509949440, "msPKI-Minimal-Key-Size": 2048,
        "msPKI-Template-Schema-Version": 2, "msPKI-Template-Minor-Revision": 1,
        "msPKI-Cert-Template-OID": "1.3.6.1.4.1.311.21.8.1.2.3.4.5.6.7",
        "msPKI-Certificate-Application-Policy": ["1.3.6.1.5.5.7.3.2"],
    }, sddl)

    conn = samba_dc.ldap()
    conn.search(dn, "(objectClass=pKICertificateTemplate)", search_scope=ldap3.BASE,
                attributes=["msPKI-Cert-Template-OID", "pKIExpirationPeriod", "msPKI-Certificate-Name-Flag",
                            "pKIExtendedKeyUsage", "nTSecurityDescriptor"], controls=[SD_FLAGS_DACL])
    entry = conn.entries[0]
    assert entry["msPKI-Cert-Template-OID"].value == "1.3.6.1.4.1.311.21.8.1.2.3.4.5.6.7"
    assert entry["pKIExpirationPeriod"].raw_values[0] == year
    assert int(entry["msPKI-Certificate-Name-Flag"].value) == -1509949440
    assert set(entry["pKIExtendedKeyUsage"].values) == {"1.3.6.1.5.5.7.3.2", "1.3.6.1.4.1.311.10.3.4"}
    dacl = _sddl_of(entry["nTSecurityDescriptor"].raw_values[0])
    assert f"(OA;;CR;{ENROLL_RIGHT};;{group_sid})" in dacl
    assert f"(OA;;CR;{AUTOENROLL_RIGHT};;{group_sid})" in dacl

    ca_dn = f"CN=GW Issuing CA,{ENROLLMENT_SERVICES_DN}"
    conn.add(ca_dn, "pKIEnrollmentService", {
        "dNSHostName": "gateway.gw.test", "certificateTemplates": ["HGWUser"],
        "cACertificate": _self_signed_ca().public_bytes(serialization.Encoding.DER),
        "cACertificateDN": "CN=GW Issuing CA", "flags": 10,
    })
    conn.search(ca_dn, "(objectClass=pKIEnrollmentService)", search_scope=ldap3.BASE,
                attributes=["certificateTemplates", "dNSHostName"])
    assert conn.entries[0].certificateTemplates.values == ["HGWUser"]


def _sddl_of(descriptor: bytes) -> str:
    script = ("import sys\nfrom samba.dcerpc import security\nfrom samba.ndr import ndr_unpack\n"
              "print(ndr_unpack(security.descriptor, bytes.fromhex(sys.argv[1])).as_sddl())\n")
    return subprocess.run([_samba_python(), "-c", script, descriptor.hex()], check=True,
                          capture_output=True, text=True).stdout


def _self_signed_ca() -> x509.Certificate:
    import datetime

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Not the DC's CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
