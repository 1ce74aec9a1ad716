"""SCEP challenges from the MDM web service, redeemed by micromdm's real scepclient.

The MDM asks ``RequestScepChallenge`` (zeep over HTTPS); the device enrolls at the
returned SCEP URL with it. The challenge is single use, bound to the digital ID's subject
and profile, and expires; the issued certificate is the configuration's to report on."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import zeep.exceptions
from cryptography import x509
from cryptography.x509.oid import NameOID

from protocols.mdm.manage import add_digital_id

from .conftest import CONFIG, SCEP_CONFIG, MdmServer, scep_certificates, scep_refusals, scepclient, variables

NS = "urn:enrollment-gateway:mdmws:1"
DID = "scep-device"
PROFILE = "mdmws-digsig-keyenc-client-auth"
SPEC = {"profile": PROFILE, "rdn_format": "CN=<deviceName>,OU=<igusername>", "parent_dn": "O=Acme,C=US"}


async def scep_digital_id(server: MdmServer) -> None:
    """A digital ID whose subject scepclient can produce (it always sends C and O)."""
    await add_digital_id(server.gw.door("mdm"), CONFIG, DID, dict(SPEC), actor="test")


async def challenge(server: MdmServer, svc: Any, device: str, user: str, **extra: Any) -> Any:
    return await server.call(svc, "RequestScepChallenge", DigitalId=DID,
                             Variables=variables(deviceName=device, igusername=user), **extra)


def subject_args(cn: str, ou: str) -> tuple[str, ...]:
    return ("-cn", cn, "-ou", ou, "-organization", "Acme", "-country", "US")


def load(workdir: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((workdir / "client.pem").read_bytes())


async def test_device_enrolls_with_bound_subject_and_profile_and_challenge_is_single_use(
        mdm: MdmServer, tmp_path: Path) -> None:
    await scep_digital_id(mdm)
    svc = await mdm.client()
    got = await challenge(mdm, svc, "ipad-7", "alice")
    assert got.ScepUrl.endswith(f"/scep/{SCEP_CONFIG}")
    assert x509.Name.from_rfc4514_string(got.Subject) == x509.Name.from_rfc4514_string("CN=ipad-7,OU=alice,O=Acme,C=US")
    before = await scep_certificates(mdm)

    code, out = await scepclient(mdm, got.ScepUrl, tmp_path / "dev", got.Challenge, *subject_args("ipad-7", "alice"))
    assert code == 0, out
    cert = load(tmp_path / "dev")
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "ipad-7"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "alice"
    assert cert.subject == x509.Name.from_rfc4514_string(got.Subject)
    rec = await mdm.gw.door("mdm").find_certificate(f"{cert.serial_number:x}")
    assert rec is not None
    assert rec.profile == PROFILE
    assert rec.protocol_config == SCEP_CONFIG
    # the device's end entity is named as in the PKCS#12 flow (<platform>:<device>), not by the CN
    entity = await mdm.gw.door("mdm").entity(rec.entity_id)
    assert entity is not None and entity.name == "jamf:ipad-7" and entity.attributes["mdm_config"] == CONFIG
    assert "end_entity" not in entity.attributes
    after = await scep_certificates(mdm)
    assert len(after) == len(before) + 1

    # the same challenge again (a fresh key, same subject): refused, nothing new issued
    refused = len(await scep_refusals(mdm))
    code, out = await scepclient(mdm, got.ScepUrl, tmp_path / "again", got.Challenge, *subject_args("ipad-7", "alice"))
    assert code != 0, out
    assert (await scep_refusals(mdm))[refused:] == ["the challenge password was already used"]
    assert not (tmp_path / "again" / "client.pem").exists()
    assert len(await scep_certificates(mdm)) == len(after)

    # GetCertificateStatus finds the SCEP-issued certificate (its configuration's SCEP config)
    status = await mdm.call(svc, "GetCertificateStatus", SerialNumber=f"{cert.serial_number:x}")
    assert status.Status == "valid"
    assert status.Profile == PROFILE
    assert int(status.SerialNumber, 16) == cert.serial_number


async def test_challenge_used_with_another_subject_is_refused(mdm: MdmServer, tmp_path: Path) -> None:
    await scep_digital_id(mdm)
    svc = await mdm.client()
    got = await challenge(mdm, svc, "ipad-8", "bob")
    before = await scep_certificates(mdm)
    refused = len(await scep_refusals(mdm))
    code, out = await scepclient(mdm, got.ScepUrl, tmp_path / "other", got.Challenge, *subject_args("other", "bob"))
    assert code != 0, out
    assert not (tmp_path / "other" / "client.pem").exists()
    assert len(await scep_certificates(mdm)) == len(before)
    assert (await scep_refusals(mdm))[refused:] == ["the challenge password was issued for another subject"]
    # control: the refusal did not spend the challenge; with the bound subject it enrolls
    code, out = await scepclient(mdm, got.ScepUrl, tmp_path / "right", got.Challenge, *subject_args("ipad-8", "bob"))
    assert code == 0, out
    assert load(tmp_path / "right").subject == x509.Name.from_rfc4514_string(got.Subject)


async def test_expired_challenge_is_refused(mdm_timed: MdmServer, mdm_clock: Any, tmp_path: Path) -> None:
    await scep_digital_id(mdm_timed)
    svc = await mdm_timed.client()
    control = await challenge(mdm_timed, svc, "ipad-10", "dave", ValidityMinutes=1)
    got = await challenge(mdm_timed, svc, "ipad-9", "carol", ValidityMinutes=1)
    expires = got.ExpiresAt if isinstance(got.ExpiresAt, dt.datetime) else dt.datetime.fromisoformat(
        str(got.ExpiresAt).replace("Z", "+00:00"))
    assert expires.replace(microsecond=0) == (mdm_clock() + dt.timedelta(minutes=1)).replace(microsecond=0)
    # control: a challenge of the same kind enrolls while the clock has not moved
    code, out = await scepclient(mdm_timed, control.ScepUrl, tmp_path / "early", control.Challenge,
                                 *subject_args("ipad-10", "dave"))
    assert code == 0, out
    before = await scep_certificates(mdm_timed)
    refused = len(await scep_refusals(mdm_timed))
    mdm_clock.advance(dt.timedelta(minutes=2))
    code, out = await scepclient(mdm_timed, got.ScepUrl, tmp_path / "late", got.Challenge,
                                 *subject_args("ipad-9", "carol"))
    assert code != 0, out
    assert len(await scep_certificates(mdm_timed)) == len(before)
    assert (await scep_refusals(mdm_timed))[refused:] == ["the challenge password has expired"]


async def test_status_of_an_unknown_serial_is_a_fault(mdm: MdmServer) -> None:
    """The status lookup can say no (so the SCEP-issued finding above means something)."""
    svc = await mdm.client()
    with pytest.raises(zeep.exceptions.Fault):
        await mdm.call(svc, "GetCertificateStatus", SerialNumber="00ff")


async def test_a_shared_scep_configuration_s_other_certificates_are_not_this_configuration_s(
        mdm: MdmServer, tmp_path: Path) -> None:
    """Two MDM configurations of one platform share ``mdm-scep``, which also serves
    challenges of its own: each MDM credential revokes and reads only the certificates of
    the challenges its configuration handed out."""
    from protocols.mdm.manage import add_credential, create_configuration

    door = mdm.gw.door("mdm")
    await scep_digital_id(mdm)
    await create_configuration(door, "neighbour", "issuing", "jamf", actor="test", scep_config=SCEP_CONFIG)
    await add_digital_id(door, "neighbour", DID, dict(SPEC), actor="test")
    made = await add_credential(door, "neighbour", "neighbour-api", actor="test")
    neighbour = await mdm.client("neighbour-api", made.secret, config="neighbour")
    mine = await mdm.client()

    got = await challenge(mdm, mine, "ipad-5", "erin")
    code, out = await scepclient(mdm, got.ScepUrl, tmp_path / "mine", got.Challenge, *subject_args("ipad-5", "erin"))
    assert code == 0, out
    serial = f"{load(tmp_path / 'mine').serial_number:x}"
    # a challenge of the SCEP configuration itself (an operator's, no MDM configuration's)
    issuer = door.challenge_issuer("scep")
    assert issuer is not None
    own = await issuer.issue(SCEP_CONFIG, bound_subject="CN=kiosk,OU=ops,O=Acme,C=US", profile=PROFILE,
                             issued_by="api:operator")
    code, out = await scepclient(mdm, own.url, tmp_path / "kiosk", own.value, *subject_args("kiosk", "ops"))
    assert code == 0, out
    kiosk = f"{load(tmp_path / 'kiosk').serial_number:x}"

    assert (await mdm.call(mine, "GetCertificateStatus", SerialNumber=serial)).Status == "valid"
    for svc, theirs in ((neighbour, serial), (mine, kiosk), (neighbour, kiosk)):
        for op in ("GetCertificateStatus", "Revoke"):
            with pytest.raises(zeep.exceptions.Fault) as caught:
                await mdm.call(svc, op, SerialNumber=theirs)
            assert caught.value.detail.find(f"{{{NS}}}Fault/{{{NS}}}Code").text == "CertificateNotFound"
    assert (await door.find_certificate(serial)).status == "valid"
    assert (await door.find_certificate(kiosk)).status == "valid"
    assert (await mdm.call(mine, "Revoke", SerialNumber=serial)).Status == "revoked"
