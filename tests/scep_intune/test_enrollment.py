"""Intune-validated SCEP end to end: micromdm's scepclient against the served gateway,
whose ``intune`` configuration asks the Intune simulator (msal + aiohttp over HTTPS)."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.errors import ConfigError
from gateway.store.records import CertificateFilter, EventFilter
from protocols.scep.intune.settings import client_secret
from protocols.scep.intune.verifier import E_FAIL, device_attributes
from protocols.scep.ra import RA_PROFILE

from .conftest import CONFIG, IntuneEnv


def certificate(workdir: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((workdir / "client.pem").read_bytes())


async def issued(env: IntuneEnv) -> list[object]:
    """Device certificates of the configuration (not its RA's)."""
    return [c for c in await env.served.core.list_certificates(CertificateFilter(protocol_config=CONFIG))
            if c.profile != RA_PROFILE]


async def test_a_device_with_a_valid_challenge_enrolls_and_intune_hears_of_it(env: IntuneEnv, tmp_path: Path) -> None:
    challenge = env.sim.issue_challenge("device-1", user="alice@contoso.example", subject_cn="device-1")
    code, out = await env.scepclient(tmp_path / "d1", "-challenge", challenge, "-cn", "device-1")
    assert code == 0, out
    cert = certificate(tmp_path / "d1")

    assert len(env.sim.validations) == 1 and len(env.sim.successes) == 1 and env.sim.failures == []
    validation, success = env.sim.validations[0], env.sim.successes[0]
    assert success["transactionId"] == validation["transactionId"]
    der = cert.public_bytes(serialization.Encoding.DER)
    assert success["certificateThumbprint"] == hashlib.sha1(der).hexdigest().upper()  # noqa: S324
    assert int(success["certificateSerialNumber"], 16) == cert.serial_number
    assert success["issuingCertificateAuthority"] == cert.issuer.rfc4514_string()
    # validate came before success on the wire
    actions = [c.action for c in env.sim.intune_calls()]
    assert actions.index("validateRequest") < actions.index("successNotification")

    # the device is the end entity, with what Intune vouched for
    rec = (await issued(env))[0]
    entity = await env.served.core.get_end_entity(rec.entity_id)  # type: ignore[attr-defined]
    assert entity.name == "device-1" and entity.attributes["intune_device"] == "device-1"
    assert entity.attributes["intune_activity_id"]
    events = await env.served.core.list_events(EventFilter(type="intune_notification", protocol_config=CONFIG))
    assert [e.status for e in events] == ["success"]
    # the secret is stored sealed, never as given
    stored = (await env.door.configuration(CONFIG)).settings["intune"]["client_secret"]
    assert stored.startswith("v1.") and env.sim.client_secret not in json.dumps(
        (await env.door.configuration(CONFIG)).settings)


async def test_a_replayed_challenge_is_refused_and_nothing_is_issued(env: IntuneEnv, tmp_path: Path) -> None:
    challenge = env.sim.issue_challenge("device-2")
    code, out = await env.scepclient(tmp_path / "first", "-challenge", challenge, "-cn", "device-2")
    assert code == 0, out
    code, out = await env.scepclient(tmp_path / "replay", "-challenge", challenge, "-cn", "device-2b")
    assert code != 0 and "badRequest" in out, out
    assert not (tmp_path / "replay" / "client.pem").exists()
    assert len(await issued(env)) == 1
    assert len(env.sim.validations) == 2 and len(env.sim.successes) == 1
    failures = await env.served.core.list_events(EventFilter(type="scep_request", protocol_config=CONFIG))
    assert any("ChallengeDecryptionError" in (e.detail.get("detail") or "") for e in failures)


async def test_intune_down_refuses_with_a_clear_log_and_no_certificate(
        env: IntuneEnv, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    challenge = env.sim.issue_challenge("device-3")
    env.sim.down = True
    with caplog.at_level(logging.WARNING, logger="gateway.scep.intune"):
        code, out = await env.scepclient(tmp_path / "down", "-challenge", challenge, "-cn", "device-3")
    assert code != 0, out
    assert not (tmp_path / "down" / "client.pem").exists() and await issued(env) == []
    assert env.sim.successes == [] and env.sim.failures == []
    lines = [r.getMessage() for r in caplog.records if r.name == "gateway.scep.intune" and r.levelno == logging.WARNING]
    assert any("cannot validate" in line and "nothing issued" in line for line in lines), lines
    # "try again later" was not final: the challenge was never spent, the device retries
    env.sim.down = False
    code, out = await env.scepclient(tmp_path / "down", "-challenge", challenge, "-cn", "device-3")
    assert code == 0, out
    assert len(await issued(env)) == 1


async def test_a_wrong_client_secret_refuses_like_intune_down(
        env: IntuneEnv, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    await env.cli("scep", "intune", "set", "--config", CONFIG, "--client-secret-stdin", stdin="not-the-secret\n")
    challenge = env.sim.issue_challenge("device-7")
    with caplog.at_level(logging.WARNING, logger="gateway.scep.intune"):
        code, out = await env.scepclient(tmp_path / "bad-secret", "-challenge", challenge, "-cn", "device-7")
    assert code != 0 and await issued(env) == [] and env.sim.validations == []
    assert any("cannot validate" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "not-the-secret" not in caplog.text


async def test_no_challenge_or_a_wrong_one_is_refused(env: IntuneEnv, tmp_path: Path) -> None:
    code, out = await env.scepclient(tmp_path / "none", "-cn", "device-4")
    assert code != 0 and "badRequest" in out
    code, out = await env.scepclient(tmp_path / "wrong", "-challenge", "not-from-intune", "-cn", "device-4")
    assert code != 0 and "badRequest" in out
    assert await issued(env) == []


def test_device_and_user_come_from_the_csr_cn_and_upn() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    upn = x509.OtherName(x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.3"), b"\x0c\x11alice@contoso.com")
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "aad-device-7")]))
           .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("a@x.example"), upn]), critical=False)
           .sign(key, hashes.SHA256()))
    assert device_attributes(csr) == {"intune_device": "aad-device-7", "intune_user": "alice@contoso.com"}
    mail_only = (x509.CertificateSigningRequestBuilder()
                 .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "d")]))
                 .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("a@x.example")]), critical=False)
                 .sign(key, hashes.SHA256()))
    assert device_attributes(mail_only)["intune_user"] == "a@x.example"


async def test_issuance_failing_after_validation_is_reported_to_intune(env: IntuneEnv, tmp_path: Path) -> None:
    # RSA-2560 passes the gateway's floor but not the device profile's key policy: the
    # request is refused by the core after Intune validated it
    challenge = env.sim.issue_challenge("device-5")
    code, out = await env.scepclient(tmp_path / "odd-key", "-challenge", challenge, "-cn", "device-5",
                                     "-keySize", "2560")
    assert code != 0 and "failInfo" in out, out
    assert await issued(env) == []
    assert len(env.sim.validations) == 1 and env.sim.successes == []
    assert len(env.sim.failures) == 1
    failure = env.sim.failures[0]
    assert failure["hResult"] == E_FAIL == 0x80004005
    assert failure["transactionId"] == env.sim.validations[0]["transactionId"] and failure["errorDescription"]
    events = await env.served.core.list_events(EventFilter(type="intune_notification", protocol_config=CONFIG))
    assert [(e.status, e.detail["notification"]) for e in events] == [("success", "failure")]


async def test_a_renewal_is_validated_by_intune_too(env: IntuneEnv, tmp_path: Path) -> None:
    work = tmp_path / "renewing"
    code, out = await env.scepclient(work, "-challenge", env.sim.issue_challenge("device-6"), "-cn", "device-6")
    assert code == 0, out
    first = certificate(work)
    # a RenewalReq signed with the certificate, without an Intune challenge: refused
    # (scepclient reuses csr.pem, which holds the spent challenge: a new CSR each time)
    (work / "csr.pem").unlink()
    code, out = await env.scepclient(work, "-certificate", str(work / "client.pem"), "-cn", "device-6")
    assert code != 0 and "badRequest" in out, out
    assert certificate(work).serial_number == first.serial_number and len(env.sim.validations) == 1
    # with a fresh one from Intune (as a device renewing its profile has): renewed, and notified
    (work / "csr.pem").unlink()
    code, out = await env.scepclient(work, "-certificate", str(work / "client.pem"), "-cn", "device-6",
                                     "-challenge", env.sim.issue_challenge("device-6"))
    assert code == 0, out
    renewed = certificate(work)
    assert renewed.serial_number != first.serial_number
    assert len(env.sim.validations) == 2 and len(env.sim.successes) == 2
    assert int(env.sim.successes[1]["certificateSerialNumber"], 16) == renewed.serial_number


async def test_info_and_show_print_what_the_intune_profiles_need(env: IntuneEnv) -> None:
    info = json.loads(await env.cli("info", "--json"))
    entry = next(e for e in info["protocols"]["scep"] if e["config"] == CONFIG)
    intune = entry["intune"]
    assert intune["scep_server_url"].endswith(f"/scep/{CONFIG}") and intune["tenant"] == env.sim.tenant
    chain = x509.load_pem_x509_certificates(Path(intune["trusted_certificate_chain"]).read_bytes())
    assert chain[0].subject == (await env.served.scep.context(CONFIG)).ca_certificate.subject
    assert chain[-1].subject == chain[-1].issuer  # ends at the root, the trusted certificate profile's
    assert "intune" not in next(e for e in info["protocols"]["scep"] if e["config"] == "scep")
    shown = json.loads(await env.cli("scep", "intune", "show", "--config", CONFIG))
    assert shown["trusted_certificate_chain"] == intune["trusted_certificate_chain"]
    assert env.sim.client_secret not in json.dumps(info) + json.dumps(shown)


async def test_the_sealed_secret_opens_only_for_its_configuration(env: IntuneEnv) -> None:
    settings = (await env.served.scep.context(CONFIG)).settings.intune
    assert settings is not None
    assert client_secret(env.door, CONFIG, settings) == env.sim.client_secret
    with pytest.raises(ConfigError, match="does not open"):
        client_secret(env.door, "scep", settings)
