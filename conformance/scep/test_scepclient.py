"""micromdm's scepclient (Debian ``scep``) against the gateway.

scepclient encrypts to every certificate GetCACert returns; the dev SCEP CA is RSA, but
these tests still say which one is the RA with ``-ca-fingerprint``, as for NDES. It sends
DES + SHA-1 (scepclient 2.1.0 ignores AES in GetCACaps), which the gateway answers in
kind. With ``GATEWAY_RECORD_FIXTURES=1`` the PKCSReq and RenewalReq exchanges are
written to ``fixtures/scep/`` for the ordinary suite's replay.
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conformance.harness import require_client
from gateway.store.records import EventFilter

from .support import Served, run, served, tool_version

NDES_RE = re.compile(r"The enrollment challenge password is: <B> ([0-9A-F]{16}) </B>")


@pytest.fixture
async def gateway(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with served(tmp_path) as s:
        yield s


async def scepclient(served_: Served, workdir: Path, *args: str, url: str | None = None) -> tuple[int, str]:
    binary = require_client("scepclient", "Debian package scep")
    workdir.mkdir(parents=True, exist_ok=True)
    result = await run(binary, "-server-url", url or served_.url(), "-private-key", str(workdir / "key.pem"),
                       "-ca-fingerprint", await served_.ra_fingerprint(), *args, cwd=workdir)
    return result.returncode, result.stdout + result.stderr


def key_spki(path: Path) -> bytes:
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def cert_spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


async def test_scepclient_enrolls_with_the_static_challenge_and_renews(gateway: Served, tmp_path: Path) -> None:
    work = tmp_path / "device"
    code, out = await scepclient(gateway, work, "-challenge", gateway.dev["challenge"], "-cn", "scepclient-device",
                                 "-organization", "Example")
    assert code == 0, out
    first = x509.load_pem_x509_certificate((work / "client.pem").read_bytes())
    assert first.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "scepclient-device"
    assert cert_spki(first) == key_spki(work / "key.pem")
    ca = x509.load_pem_x509_certificate(Path(gateway.info.ca("issuing-rsa")["certificate"]).read_bytes())
    first.verify_directly_issued_by(ca)

    # renewal: scepclient sends a RenewalReq signed with the certificate it holds
    code, out = await scepclient(gateway, work, "-certificate", str(work / "client.pem"), "-cn", "scepclient-device",
                                 "-organization", "Example")
    assert code == 0, out
    renewed = x509.load_pem_x509_certificate((work / "client.pem").read_bytes())
    assert renewed.serial_number != first.serial_number and renewed.subject == first.subject
    events = await gateway.core.list_events(EventFilter(type="renew", protocol_config="scep"))
    assert events and events[0].status == "success" and events[0].serial == format(renewed.serial_number, "x")

    ops = gateway.recorder.pki_operations()
    assert len(ops) == 2 and all(e.status == 200 for e in ops)
    meta = await gateway.run_meta("scep", challenge=gateway.dev["challenge"],
                                  client_key=(work / "key.pem").read_text(), client_version=tool_version("scepclient", "-version"),
                                  first_certificate=first.public_bytes(serialization.Encoding.PEM).decode())
    gateway.recorder.save("scepclient-pkcsreq", ops[0], "scepclient", {**meta, "expect": "SUCCESS"})
    gateway.recorder.save("scepclient-renewalreq", ops[1], "scepclient", {**meta, "expect": "SUCCESS", "renewal": True})


async def test_scepclient_refused_with_a_wrong_challenge(gateway: Served, tmp_path: Path) -> None:
    code, out = await scepclient(gateway, tmp_path / "d", "-challenge", "not-the-challenge", "-cn", "intruder")
    assert code != 0 and "failInfo: badRequest (2)" in out, out
    assert not (tmp_path / "d" / "client.pem").exists()
    ops = gateway.recorder.pki_operations()
    meta = await gateway.run_meta("scep", challenge=gateway.dev["challenge"],
                                  client_key=(tmp_path / "d" / "key.pem").read_text(),
                                  client_version=tool_version("scepclient", "-version"))
    gateway.recorder.save("scepclient-wrong-challenge", ops[-1], "scepclient", {**meta, "expect": "FAILURE", "fail_info": "2"})


def basic(gateway: Served) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(gateway.dev["admin_username"], gateway.dev["admin_password"])}


async def https_get(gateway: Served, path: str, **kw: object) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{gateway.info.https}{path}", ssl=gateway.ssl(), **kw) as resp:  # type: ignore[arg-type]
            return resp.status, await resp.read()


async def test_scepclient_with_a_challenge_from_the_mscep_admin_page(gateway: Served, tmp_path: Path) -> None:
    """Jamf's "Dynamic-Microsoft CA" flow: scrape NDES's page over HTTPS, enroll once."""
    status, page = await https_get(gateway, "/certsrv/mscep_admin/", headers=basic(gateway))
    assert status == 200 and page.startswith(b"\xff\xfe")
    found = NDES_RE.search(page[2:].decode("utf-16-le"))
    assert found, page
    challenge = found.group(1)
    code, out = await scepclient(gateway, tmp_path / "a", "-challenge", challenge, "-cn", "ndes-device",
                                 url=f"{gateway.recorder.url}/certsrv/mscep/mscep.dll")
    assert code == 0, out
    # one-time: a second device with the same password is refused
    code, out = await scepclient(gateway, tmp_path / "b", "-challenge", challenge, "-cn", "second-device")
    assert code != 0 and not (tmp_path / "b" / "client.pem").exists()


async def test_scepclient_with_challenges_from_the_admin_api_and_the_webhook(gateway: Served, tmp_path: Path) -> None:
    # a bound challenge binds the whole subject: scepclient adds OU=MDM, O=scep-client, C=US
    # to -cn by default, so a challenge bound to the CN alone is refused (and not used up) ...
    cn_only = await gateway.admin("POST", "/scep/scep/challenges", {"subject": "CN=api-device"})
    code, out = await scepclient(gateway, tmp_path / "cn-only", "-challenge", cn_only["challenge"], "-cn", "api-device")
    assert code != 0 and "badRequest" in out and not (tmp_path / "cn-only" / "client.pem").exists()
    # ... and one bound to the subject the device sends is accepted
    issued = await gateway.admin("POST", "/scep/scep/challenges",
                                 {"subject": "CN=api-device,OU=MDM,O=scep-client,C=US"})
    code, out = await scepclient(gateway, tmp_path / "api", "-challenge", issued["challenge"], "-cn", "api-device")
    assert code == 0, out

    event = {"webhook": {"webhookEvent": "SCEPChallenge", "id": 1, "name": "gw"},
             "event": {"udid": "UDID-1", "targetType": "COMPUTER"}}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{gateway.info.https}/scep/scep/webhook/jamf", json=event, headers=basic(gateway),
                                ssl=gateway.ssl()) as resp:
            assert resp.status == 200
            challenge = (await resp.text()).strip()
    code, out = await scepclient(gateway, tmp_path / "hook", "-challenge", challenge, "-cn", "UDID-1")
    assert code == 0, out
    entity = [e for e in await gateway.core.list_end_entities(protocol_config="scep") if e.name == "UDID-1"]
    assert entity and entity[0].attributes.get("udid") == "UDID-1"



