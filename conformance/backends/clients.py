"""certbot, scepclient and curl EST issue through one CA, whatever its backend kind.

Each backend suite (a key on a token, an upstream CA) creates its CA and calls
:func:`issue_with_every_client`: an ACME, a SCEP and an EST configuration are made
on that CA as an operator makes them (the admin path for ACME, the CLI for SCEP and
EST), and each real client enrolls once. What comes back is checked by the suite
(who signed it, how the CA's status services answer).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from conformance.acme.test_certbot import Certbot
from conformance.est.support import sh
from conformance.harness import GatewayInfo, require_client, run_cli
from conformance.scep.support import run
from protocols.scep.service import ScepService


@dataclass
class Issued:
    """The certificate each client received (leaf first in ``chain`` where the client keeps one)."""

    certbot: x509.Certificate
    scep: x509.Certificate
    curl_est: x509.Certificate

    def all(self) -> dict[str, x509.Certificate]:
        return {"certbot": self.certbot, "scepclient": self.scep, "curl_est": self.curl_est}


async def certbot_through(gw: Any, info: GatewayInfo, ca_id: str, tmp: Path, key: str = "ecdsa") -> x509.Certificate:
    certbot = Certbot(info, tmp / "certbot")
    config_id = f"{ca_id[:20]}-acme"
    await gw.authority.create_config(config_id, "acme", ca_id, ["tls-server"],
                                     settings={"validation_address": "127.0.0.1", "http01_port": certbot.port})
    certbot.use(config_id)
    name = f"{ca_id}.example.test"
    await certbot.certonly(name, extra=("--key-type", key) if key != "ecdsa" else ())
    return certbot.cert(name)


def _scep_config(info: GatewayInfo, ca_id: str, ra_ca: str | None) -> tuple[str, str]:
    config_id = f"{ca_id[:20]}-scep"
    challenge = secrets.token_hex(8)
    run_cli("scep", "config", "create", config_id, "--ca", ca_id, "--static-challenge", challenge,
            *(("--ra-ca", ra_ca) if ra_ca else ()), data_dir=info.data_dir)
    return config_id, challenge


async def _csr_with_dns_san(work: Path, name: str, challenge: str) -> None:
    """The key and ``csr.pem`` that scepclient sends as they are when it finds them beside its
    key (Debian's scepclient 2.1 has no flag for a SAN): a PKCS#1 RSA key, the challenge as the
    CSR's challengePassword attribute and ``name`` as CN and DNS SAN."""
    (work / "req.cnf").write_text(
        "[req]\nprompt = no\ndistinguished_name = dn\nattributes = attrs\nreq_extensions = ext\n"
        f"[dn]\nCN = {name}\n[attrs]\nchallengePassword = {challenge}\n"
        f"[ext]\nsubjectAltName = DNS:{name}\n")
    made = await sh("openssl genrsa -traditional -out key.pem 2048 2>/dev/null && "
                    "openssl req -new -key key.pem -config req.cnf -out csr.pem", work, {})
    assert made.returncode == 0, made.stdout + made.stderr


async def scepclient_run(gw: Any, info: GatewayInfo, ca_id: str, tmp: Path,
                         ra_ca: str | None = None, dns_san: bool = False) -> tuple[Any, Path]:
    """scepclient enrolls once through a new SCEP configuration on ``ca_id``: (its result, its
    directory). ``dns_san``: the CSR carries the name as a DNS SAN too (made with openssl
    beforehand), for an upstream CA that reads names from SANs only (Pebble)."""
    binary = require_client("scepclient", "Debian package scep")
    config_id, challenge = _scep_config(info, ca_id, ra_ca)
    ra = (await ScepService(gw.door("scep")).context(config_id)).ra.current.certificate
    work = tmp / "scepclient"
    work.mkdir(parents=True, exist_ok=True)
    if dns_san:
        await _csr_with_dns_san(work, f"{ca_id}-device.example.test", challenge)
    result = await run(binary, "-server-url", f"{info.http}/scep/{config_id}", "-private-key", str(work / "key.pem"),
                       "-ca-fingerprint", ra.fingerprint(hashes.SHA256()).hex(), "-challenge", challenge,
                       "-cn", f"{ca_id}-device.example.test", cwd=work)
    return result, work


async def scepclient_through(gw: Any, info: GatewayInfo, ca_id: str, tmp: Path,
                             ra_ca: str | None = None, dns_san: bool = False) -> x509.Certificate:
    """:func:`scepclient_run`, which must succeed: the certificate it received."""
    result, work = await scepclient_run(gw, info, ca_id, tmp, ra_ca, dns_san)
    assert result.returncode == 0, result.stdout + result.stderr
    return x509.load_pem_x509_certificate((work / "client.pem").read_bytes())


def est_label(info: GatewayInfo, ca_id: str, label: str | None = None) -> tuple[str, str]:
    """An EST label with Basic auth on ``ca_id`` and its user ``device``: (label, password)."""
    label = label or f"{ca_id[:20]}-est"
    run_cli("est", "create", label, "--ca", ca_id, "--auth", "basic", data_dir=info.data_dir)
    password = secrets.token_urlsafe(16)
    run_cli("est", "user", "add", label, "device", "--password-stdin", data_dir=info.data_dir,
            input=password.encode())
    return label, password


async def curl_est_enroll(info: GatewayInfo, label: str, password: str, work: Path, name: str,
                          key: str = "ecdsa") -> x509.Certificate:
    """curl + openssl /simpleenroll for ``name`` (CN and DNS SAN), as the README shows."""
    require_client("curl", "Debian package curl")
    work.mkdir(parents=True, exist_ok=True)
    env = {"EST": f"{info.https}/.well-known/est/{label}", "CA": info.tls_ca, "EST_PASSWORD": password}
    result = await sh(
        f'openssl req -new -newkey {"rsa:2048" if key == "rsa" else "ec -pkeyopt ec_paramgen_curve:P-256"} '
        f'-nodes -keyout device.key -subj "/CN={name}" -addext "subjectAltName=DNS:{name}" '
        '-outform DER | openssl base64 -out device.b64 && '
        'curl -sS --fail-with-body --cacert "$CA" -u "device:$EST_PASSWORD" -H "Content-Type: application/pkcs10" '
        '--data-binary @device.b64 -o device.p7 "$EST/simpleenroll" && '
        'openssl base64 -d -in device.p7 | openssl pkcs7 -inform DER -print_certs -out device.pem', work, env)
    assert result.returncode == 0, result.stdout + result.stderr
    return x509.load_pem_x509_certificate((work / "device.pem").read_bytes())


async def curl_est_through(info: GatewayInfo, ca_id: str, tmp: Path, key: str = "ecdsa") -> x509.Certificate:
    label, password = est_label(info, ca_id)
    return await curl_est_enroll(info, label, password, tmp / "curl-est", f"{ca_id}-est-device.example.test", key)


async def issue_with_every_client(gw: Any, info: GatewayInfo, ca_id: str, tmp: Path,
                                  ra_ca: str | None = None, key: str = "ecdsa",
                                  dns_san: bool = False) -> Issued:
    """``ra_ca``: the CA of the SCEP RA certificate, where ``ca_id`` cannot issue one.
    Every name is DNS-shaped, so that an ACME upstream can validate it; ``dns_san`` where the
    CA needs scepclient's name in a SAN too; ``key`` ``rsa`` for a CA whose
    policy takes RSA keys only (AD CS templates often do; scepclient's keys are RSA anyway)."""
    scep = await scepclient_through(gw, info, ca_id, tmp, ra_ca, dns_san=dns_san)
    return Issued(
        certbot=await certbot_through(gw, info, ca_id, tmp, key),
        scep=scep,
        curl_est=await curl_est_through(info, ca_id, tmp, key),
    )


async def refuse_inserts(gw: Any, table: str, when: str | None = None) -> None:
    """A storage fault for atomicity tests: SQLite refuses inserts into ``table`` (those
    matching the SQL condition ``when``) until :func:`allow_inserts`."""
    condition = f" WHEN {when}" if when else ""
    async with gw.store.transaction() as q:
        await q.connection.exec_driver_sql(
            f"CREATE TRIGGER refuse_inserts BEFORE INSERT ON {table}{condition} "
            "BEGIN SELECT RAISE(ABORT, 'injected'); END")


async def allow_inserts(gw: Any) -> None:
    """Ends :func:`refuse_inserts`."""
    async with gw.store.transaction() as q:
        await q.connection.exec_driver_sql("DROP TRIGGER refuse_inserts")
