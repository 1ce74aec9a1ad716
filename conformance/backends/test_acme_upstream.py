"""Pebble, with real validation, as the ACME upstream of the gateway under test:
``gateway ca create --backend acme`` makes the account; certbot, scepclient and curl EST
then get certificates Pebble signed after it validated each name over http-01 against the
gateway's own HTTP listener; dns-01 through an operator's hook; an account bound with
EAB where Pebble requires it; revocation here is revocation at Pebble; names an ACME CA
cannot validate are refused before any order."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any, AsyncIterator

from cryptography import x509

from conformance.harness import GatewayInfo, run_cli, running_gateway
from gateway import bootstrap
from gateway.ca.backend import RevocationReason
from gateway.store.records import EventFilter, serial_hex

from .clients import curl_est_through, issue_with_every_client
from .pebble import Pebble


@contextlib.asynccontextmanager
async def _front_and_pebble(tmp_path: Path, eab_keys: dict[str, str] | None = None,
                            ) -> AsyncIterator[tuple[Any, GatewayInfo, Pebble]]:
    """The gateway under test in this process, and Pebble validating against its HTTP listener
    (requiring external account binding with ``eab_keys``)."""
    front = tmp_path / "front"
    await bootstrap.initialize(front)
    async with running_gateway(front) as (gw, info):
        pebble = Pebble(tmp_path / "pebble", http_port=int(info.http.rsplit(":", 1)[1]),
                        eab_keys=eab_keys or {}).start()
        try:
            (tmp_path / "chain.pem").write_bytes(pebble.chain_pem())
            yield gw, info, pebble
        finally:
            pebble.stop()


def _create_ca(info: GatewayInfo, pebble: Pebble, tmp_path: Path, ca_id: str, *extra: str,
               env: dict[str, str] | None = None, check: bool = True) -> str:
    """``gateway ca create --backend acme`` against Pebble, as the README shows it; its stderr."""
    out = run_cli("ca", "create", ca_id, "--backend", "acme", "--upstream-url", pebble.directory,
                  "--upstream-trust", str(pebble.tls_ca), "--upstream-chain", str(tmp_path / "chain.pem"),
                  *extra, data_dir=info.data_dir, env=env, check=check)
    if not check:
        assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
    return out.stderr


async def test_every_client_issues_through_pebble(tmp_path: Path) -> None:
    async with _front_and_pebble(tmp_path) as (gw, info, pebble):
        created = _create_ca(info, pebble, tmp_path, "up-acme", "--upstream-email", "pki@example.test")
        assert "signed for by the ACME CA" in created
        async with gw.store.read() as q:
            settings = (await q.cas.get("up-acme")).backend_settings
        assert settings["account_url"].startswith(f"https://127.0.0.1:{pebble.port}/")
        assert settings["account_key"].startswith("v1.") and '"d"' not in json.dumps(settings)
        intermediate = x509.load_pem_x509_certificates((tmp_path / "chain.pem").read_bytes())[0]

        # Pebble reads names from SANs only: scepclient sends a CSR made with a DNS SAN beforehand
        issued = await issue_with_every_client(gw, info, "up-acme", tmp_path, ra_ca="issuing", dns_san=True)
        for client, cert in issued.all().items():
            cert.verify_directly_issued_by(intermediate)  # Pebble signed it
            assert pebble.cert_status(cert.serial_number)["Status"] == "Valid", client
            assert (await gw.authority.certificate(serial_hex(cert.serial_number))).ca_id == "up-acme"
        names = issued.scep.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert names.get_values_for_type(x509.DNSName) == ["up-acme-device.example.test"]

        # revoked here, revoked at Pebble (revokeCert with the account key)
        await gw.authority.revoke(serial_hex(issued.certbot.serial_number), RevocationReason.key_compromise,
                                  actor="test")
        status = pebble.cert_status(issued.certbot.serial_number)
        assert status["Status"] == "Revoked" and status["Reason"] == 1, status
        assert pebble.cert_status(issued.curl_est.serial_number)["Status"] == "Valid"

        # dns-01 through the operator's hook (here: challtestsrv's management API)
        hook = tmp_path / "dns-hook"
        hook.write_text(f"#!{sys.executable}\nimport json, sys, urllib.request\n"
                        "action, domain, value = sys.argv[1:4]\n"
                        "path = 'set-txt' if action == 'present' else 'clear-txt'\n"
                        "body = {'host': '_acme-challenge.' + domain + '.', 'value': value}\n"
                        f"req = urllib.request.Request('http://127.0.0.1:{pebble.dns_management}/' + path, "
                        "data=json.dumps(body).encode(), method='POST')\n"
                        "urllib.request.urlopen(req).close()\n")
        hook.chmod(0o755)
        _create_ca(info, pebble, tmp_path, "up-dns", "--upstream-challenge", "dns-01", "--upstream-dns-hook", str(hook))
        cert = await curl_est_through(info, "up-dns", tmp_path / "dns")
        cert.verify_directly_issued_by(intermediate)


async def test_names_an_acme_ca_cannot_validate_are_refused_before_ordering(tmp_path: Path) -> None:
    async with _front_and_pebble(tmp_path) as (gw, info, pebble):
        _create_ca(info, pebble, tmp_path, "up-acme")
        run_cli("est", "create", "plain", "--ca", "up-acme", "--auth", "basic", data_dir=info.data_dir)
        run_cli("est", "user", "add", "plain", "dev1", "--password-stdin", data_dir=info.data_dir, input=b"pass-word-1\n")
        from conformance.est.support import sh

        env = {"EST": f"{info.https}/.well-known/est/plain", "CA": info.tls_ca}
        made = await sh('openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout d.key '
                        '-subj "/CN=not a host name" -outform DER | openssl base64 -out d.b64 && '
                        'curl -sS --cacert "$CA" -u "dev1:pass-word-1" -H "Content-Type: application/pkcs10" '
                        '--data-binary @d.b64 -w "%{http_code}" -o out "$EST/simpleenroll"', tmp_path, env)
        assert made.stdout.startswith("4"), made.stdout + made.stderr
        async with gw.store.read() as q:
            events = list(await q.events.list(EventFilter(status="failure", protocol_config="plain"), limit=5))
        assert any("no DNS name" in (e.detail.get("detail") or "") for e in events), [e.detail for e in events]


async def test_an_account_with_external_account_binding(tmp_path: Path) -> None:
    """Pebble requiring EAB: without it, or with a wrong HMAC key, the CA is refused with
    Pebble's reason and not made; with the key id and HMAC key (from the environment) the
    account is bound and issues; the HMAC key is not kept."""
    import base64
    import secrets

    hmac_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    wrong = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    async with _front_and_pebble(tmp_path, eab_keys={"kid-gateway": hmac_key}) as (gw, info, pebble):
        said = _create_ca(info, pebble, tmp_path, "up-noeab", check=False)
        assert "externalAccountRequired" in said, said
        said = _create_ca(info, pebble, tmp_path, "up-wrongeab", "--upstream-eab-kid", "kid-gateway",
                          "--upstream-eab-hmac-env", "EAB_HMAC", env={"EAB_HMAC": wrong}, check=False)
        assert "refused the account" in said, said
        assert wrong not in said
        _create_ca(info, pebble, tmp_path, "up-eab", "--upstream-eab-kid", "kid-gateway",
                   "--upstream-eab-hmac-env", "EAB_HMAC", env={"EAB_HMAC": hmac_key})
        listed = json.loads(run_cli("ca", "list", "--json", data_dir=info.data_dir).stdout)
        assert {r["id"] for r in listed} & {"up-noeab", "up-wrongeab", "up-eab"} == {"up-eab"}
        async with gw.store.read() as q:
            settings = (await q.cas.get("up-eab")).backend_settings
        assert hmac_key not in json.dumps(settings) and "kid-gateway" not in json.dumps(settings)
        cert = await curl_est_through(info, "up-eab", tmp_path / "eab")
        cert.verify_directly_issued_by(x509.load_pem_x509_certificates((tmp_path / "chain.pem").read_bytes())[0])
