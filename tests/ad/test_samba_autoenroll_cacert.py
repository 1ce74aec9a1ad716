"""The CA chain over plain HTTP as Samba's group-policy autoenrollment fetches it from NDES.

Samba's ``samba.gp.gp_cert_auto_enroll_ext`` (4.16 up to the CVE-2026-3012 fix) asked
``GET http://<pKIEnrollmentService dNSHostName>/CertSrv/mscep/mscep.dll/pkiclient.exe?
operation=GetCACert&message=CAIdentifier`` and went by the exact Content-Type:
``application/x-x509-ca-cert`` is one DER certificate, ``application/x-x509-ca-ra-cert`` a
certs-only PKCS#7 whose every certificate it installs as a trust anchor; anything else
(a 404's ``text/plain`` too) installs nothing. The fixed Samba (Debian 4.17.12+dfsg-0+deb12u4
here) no longer fetches over HTTP: ``getca(ca, trust_dir)`` installs the ``cACertificate``
read from LDAP only. So the request is replayed with aiohttp and the answer parsed by Samba's
own module (its ``load_der_pkcs7_certificates``, in Samba's interpreter); where Samba still
has the HTTP ``getca(ca, url, trust_dir)`` it is called itself, pointed at the gateway.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from conformance.harness import GatewayInfo, in_ci, running_gateway
from gateway.runtime import Gateway

from .samba import _samba_python, missing_tools

PATH = "/CertSrv/mscep/mscep.dll/pkiclient.exe"  # Samba's spelling
QUERY = {"operation": "GetCACert", "message": "CAIdentifier"}
CA_CERT, CA_RA_CERT = "application/x-x509-ca-cert", "application/x-x509-ca-ra-cert"
MODULE = "samba.gp.gp_cert_auto_enroll_ext"

# Run in Samba's interpreter: parse with the module's own PKCS#7 loader; call its getca.
PARSE = f"""import sys, json
from cryptography.hazmat.primitives.serialization import Encoding
from {MODULE} import load_der_pkcs7_certificates
certs = load_der_pkcs7_certificates(sys.stdin.buffer.read())
json.dump([c.public_bytes(Encoding.DER).hex() for c in certs], sys.stdout)
"""
GETCA = f"""import sys, json, inspect
from {MODULE} import getca
url, trust_dir, der = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])
if "url" in inspect.signature(getca).parameters:  # fetches over HTTP; no LDAP fallback here
    files, mode = getca({{"name": "gateway"}}, url, trust_dir), "http"
else:  # CVE-2026-3012 fixed: the LDAP cACertificate only
    files, mode = getca({{"name": "gateway", "cACertificate": der}}, trust_dir), "ldap"
json.dump({{"mode": mode, "files": files}}, sys.stdout)
"""


@pytest.fixture(scope="module")
def samba_python() -> str:
    """Samba's interpreter, able to import the autoenrollment module (fails under CI without it)."""
    missing = missing_tools()
    python = _samba_python()
    if not missing:
        probe = subprocess.run([python, "-c", f"import {MODULE}"], capture_output=True, text=True, timeout=60)
        if probe.returncode != 0:
            missing.append(f"{MODULE} ({probe.stderr.strip().splitlines()[-1:]})")
    if missing:
        message = f"Samba not available, missing: {', '.join(missing)}"
        if in_ci():
            pytest.fail(message + " (CI must install it: see .ci/run)")
        pytest.skip(message)
    return python


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[Gateway, GatewayInfo]]:
    async with running_gateway(tmp_path / "data") as (gw, info):
        yield gw, info


def fingerprints(certs: list[x509.Certificate] | tuple[x509.Certificate, ...]) -> set[bytes]:
    return {c.fingerprint(hashes.SHA256()) for c in certs}


async def ndes_chain(gw: Gateway) -> tuple[x509.Certificate, ...]:
    """The CA chain (issuing CA first) of ``scep``, the SCEP configuration of a new data
    directory marked ``ndes`` (the other, ``mdm-scep``, is not), which the NDES paths serve."""
    door = gw.door("scep")
    assert [c.id for c in await door.configurations(enabled_only=True) if c.settings.get("ndes")] == ["scep"]
    return await door.chain((await door.configuration("scep")).ca_id)


def samba(python: str, script: str, *args: str, stdin: bytes = b"") -> str:
    proc = subprocess.run([python, "-c", script, *args], input=stdin, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout.decode()


async def test_get_ca_cert_over_plain_http_as_samba_fetches_it(
        gateway: tuple[Gateway, GatewayInfo], samba_python: str) -> None:
    gw, info = gateway
    assert urlsplit(info.http).scheme == "http"
    async with aiohttp.ClientSession() as session:
        async with session.get(info.http + PATH, params=QUERY) as resp:
            status, content_type, body = resp.status, resp.headers.get("Content-Type"), await resp.read()
    assert status == 200, body[:200]
    assert content_type in (CA_CERT, CA_RA_CERT), content_type  # Samba compares the header exactly
    if content_type == CA_CERT:
        certs = [x509.load_der_x509_certificate(body)]
    else:
        certs = [x509.load_der_x509_certificate(bytes.fromhex(h))
                 for h in json.loads(samba(samba_python, PARSE, stdin=body))]
    assert certs, "Samba's PKCS#7 loader found no certificate"
    chain = await ndes_chain(gw)
    assert fingerprints(chain) <= fingerprints(certs)  # the whole chain: issuing CA and root


async def test_samba_getca_installs_the_gateway_ca(
        gateway: tuple[Gateway, GatewayInfo], samba_python: str, tmp_path: Path) -> None:
    """Samba's own ``getca``: over HTTP at the gateway where it still fetches, else from the
    ``cACertificate`` an operator publishes (the gateway's issuing CA)."""
    gw, info = gateway
    chain = await ndes_chain(gw)
    trust_dir = tmp_path / "trust"
    trust_dir.mkdir()
    der = chain[0].public_bytes(serialization.Encoding.DER)
    out = json.loads(samba(samba_python, GETCA, f"{info.http}{PATH}?", str(trust_dir), der.hex()))
    installed = [c for f in out["files"] for c in x509.load_pem_x509_certificates(Path(f).read_bytes())]
    assert all(Path(f).parent == trust_dir for f in out["files"])
    if out["mode"] == "http":
        assert fingerprints(chain) <= fingerprints(installed)
    else:
        assert fingerprints(installed) == fingerprints(chain[:1])
