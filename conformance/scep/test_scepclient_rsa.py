"""The dev SCEP configuration with micromdm's scepclient as an old device runs it: no
``-ca-fingerprint``, so scepclient encrypts to every certificate GetCACert returns and
needs RSA throughout (it crashed on the ECDSA CA certificate the dev chain used to have)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from conformance.harness import require_client

from .support import run, served


async def test_scepclient_without_ca_fingerprint_enrolls_from_the_rsa_chain(tmp_path: Path) -> None:
    binary = require_client("scepclient", "Debian package scep")
    async with served(tmp_path) as gateway:
        ctx = await gateway.scep.context("scep")
        assert all(isinstance(c.public_key(), rsa.RSAPublicKey) for c in ctx.ca_chain)
        work = tmp_path / "device"
        work.mkdir()
        result = await run(binary, "-server-url", gateway.url(), "-private-key", str(work / "key.pem"),
                           "-challenge", gateway.dev["challenge"], "-cn", "old-device", cwd=work)
        out = result.stdout + result.stderr
        assert result.returncode == 0 and "panic" not in out, out
        cert = x509.load_pem_x509_certificate((work / "client.pem").read_bytes())
        issuer = x509.load_pem_x509_certificate(Path(gateway.info.ca("issuing-rsa")["certificate"]).read_bytes())
        cert.verify_directly_issued_by(issuer)
        assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "old-device"

