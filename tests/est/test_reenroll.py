"""simplereenroll (RFC 7030 4.2.2): the certificate being renewed authenticates, and binds the identity."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from gateway.ca.backend import RevocationReason
from gateway.clock import FakeClock
from gateway.errors import Forbidden
from protocols.est import auth as est_auth
from protocols.est.policy import policy_for

from .helpers import EstServer, b64, core, device_certificate, make_csr, manufacturer_ca, trust_at_listener


async def _enrolled(est: EstServer, cn: str, sans: list[str]):  # type: ignore[no-untyped-def]
    """A device enrolled over EST with Basic auth, holding its key and certificate files."""
    csr, key = make_csr(cn, sans)
    reply = await est.post("simpleenroll", b64(csr), auth=await est.dev_auth())
    assert reply.status == 200
    return est._files(cn, reply.certificates[0], key)


async def test_rekey_and_renew_keep_the_identity_and_the_entity(est: EstServer) -> None:
    device = await _enrolled(est, "meter-1", ["meter-1.grid.example"])
    rekey, new_key = make_csr("meter-1", ["meter-1.grid.example"])
    reply = await est.post("simplereenroll", b64(rekey), cert=device)
    assert reply.status == 200
    [renewed] = reply.certificates
    assert renewed.subject == device.certificate.subject
    assert renewed.serial_number != device.certificate.serial_number
    assert renewed.public_key().public_numbers() == new_key.public_key().public_numbers()
    same_key, _ = make_csr("meter-1", ["meter-1.grid.example"], key=device.key)
    assert (await est.post("simplereenroll", b64(same_key), cert=device)).status == 200
    old = await est.gw.authority.certificate(format(device.certificate.serial_number, "x"))
    new = await est.gw.authority.certificate(format(renewed.serial_number, "x"))
    assert new.entity_id == old.entity_id
    events = await est.events(type="renew", protocol_config="est")
    assert [e.status for e in events] == ["success", "success"]
    assert events[0].detail["actor"] == "est-cert:CN=meter-1"


async def test_reenroll_with_another_subject_or_names_is_403(est: EstServer) -> None:
    device = await _enrolled(est, "meter-2", ["meter-2.grid.example"])
    before = await est.issued()
    for cn, sans in (("meter-3", ["meter-2.grid.example"]), ("meter-2", ["meter-3.grid.example"]),
                     ("meter-2", ["meter-2.grid.example", "extra.grid.example"]), ("meter-2", [])):
        reply = await est.post("simplereenroll", b64(make_csr(cn, sans)[0]), cert=device)
        assert reply.status == 403, (cn, sans)
    assert await est.issued() == before
    assert {e.status for e in await est.events(type="renew")} == {"failure"}


async def test_reenroll_with_a_revoked_or_held_certificate_is_403(est: EstServer) -> None:
    device = await _enrolled(est, "meter-4", [])
    serial = format(device.certificate.serial_number, "x")
    await est.gw.authority.suspend(serial, actor="test")
    csr, _ = make_csr("meter-4")
    reply = await est.post("simplereenroll", b64(csr), cert=device)
    assert reply.status == 403 and "revoked" in reply.text
    await est.gw.authority.revoke(serial, RevocationReason.key_compromise, actor="test")
    assert (await est.post("simplereenroll", b64(csr), cert=device, auth=await est.dev_auth())).status == 403
    assert await est.issued() == 1


async def test_reenroll_needs_a_certificate_this_label_issued(manufacturer: tuple, est: EstServer,
                                                              tmp_path: Path) -> None:
    csr, _ = make_csr("meter-5")
    reply = await est.post("simplereenroll", b64(csr), auth=await est.dev_auth())
    assert reply.status == 403 and "certificate being renewed" in reply.text
    ca, ca_key, path = manufacturer
    await est.label("factory", auth="certificate", client_trust_anchors=[path.read_text()])
    idevid = device_certificate(ca, ca_key, "SN-5", tmp_path)
    idevid_csr, _ = make_csr(None, subject=idevid.certificate.subject)
    reply = await est.post("simplereenroll", b64(idevid_csr), label="factory", cert=idevid)
    assert reply.status == 403 and "not issued by this gateway" in reply.text
    assert await est.issued() == 0 and await est.issued("factory") == 0


@pytest.fixture
def manufacturer(tmp_path: Path, prepare: list) -> tuple:
    ca, key, path = manufacturer_ca(tmp_path)
    prepare.append(lambda data_dir: trust_at_listener(data_dir, path))
    return ca, key, path


@pytest.fixture
def router_profile(prepare: list) -> str:
    """tls-server plus clientAuth: the listener's OpenSSL refuses a client certificate whose
    extended key usage lacks clientAuth, so a server certificate renewed over EST needs both."""

    def add(data_dir: Path) -> None:
        text = (data_dir / "profiles" / "tls-server.toml").read_text()
        text = text.replace('name = "tls-server"', 'name = "router"')
        text = text.replace('extended_key_usage = ["server_auth"]', 'extended_key_usage = ["server_auth", "client_auth"]')
        (data_dir / "profiles" / "router.toml").write_text(text)

    prepare.append(add)
    return "router"


async def test_dns_name_the_profile_added_from_the_cn_need_not_be_repeated(router_profile: str, est: EstServer) -> None:
    await est.label("web", users={"user": "p"}, profiles=[router_profile])
    csr, key = make_csr("www.shop.example")  # no SAN: the profile copies the CN into a DNS SAN
    reply = await est.post("simpleenroll", b64(csr), label="web", auth=("user", "p"))
    assert reply.status == 200
    cert = reply.certificates[0]
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == ["www.shop.example"]
    cred = est._files("web", cert, key)
    again = await est.post("simplereenroll", b64(make_csr("www.shop.example")[0]), label="web", cert=cred)
    assert again.status == 200
    both = await est.post("simplereenroll", b64(make_csr("www.shop.example", ["www.shop.example"])[0]),
                          label="web", cert=cred)
    assert both.status == 200


async def test_both_mode_asks_the_password_on_reenroll_too(est: EstServer) -> None:
    await est.label("strict", users={"user": "p"}, auth="both", accept_issued_certificates=True)
    cred = await est.client_cert("strict-1")
    csr, key = make_csr("strict-2")
    first = await est.post("simpleenroll", b64(csr), label="strict", cert=cred, auth=("user", "p"))
    device = est._files("strict-2", first.certificates[0], key)
    renewal = b64(make_csr("strict-2")[0])
    assert (await est.post("simplereenroll", renewal, label="strict", cert=device)).status == 401
    assert (await est.post("simplereenroll", renewal, label="strict", cert=device, auth=("user", "p"))).status == 200


async def test_expired_gateway_certificate_is_refused(est: EstServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """An expired certificate never gets past the TLS handshake; the label checks anyway.

    The store record and the certificate are real; only the socket is a stand-in,
    since no TLS stack hands over an expired client certificate."""
    cred = await est.client_cert("old-meter")
    cert = cred.certificate

    class Transport:
        def get_extra_info(self, name: str):  # type: ignore[no-untyped-def]
            class SSLObject:
                def getpeercert(self, binary_form: bool = False) -> bytes:
                    from cryptography.hazmat.primitives import serialization
                    return cert.public_bytes(serialization.Encoding.DER)
            return SSLObject() if name == "ssl_object" else None

    class Request:
        transport = Transport()

    policy = policy_for(await core(est.gw).config("est"))
    door = est.gw.door("est")
    presented = await est_auth.presented_certificate(Request(), door, policy)  # type: ignore[arg-type]
    assert presented is not None and presented.standing is est_auth.CertificateStanding.ISSUED
    # The injected clock, moved past the certificate's end (no real TLS stack sends an expired one).
    monkeypatch.setattr(est.gw, "clock", FakeClock(dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=400)))
    presented = await est_auth.presented_certificate(Request(), door, policy)  # type: ignore[arg-type]
    assert presented is not None and presented.standing is est_auth.CertificateStanding.EXPIRED
    with pytest.raises(Forbidden, match="expired"):
        est_auth.refuse_bad_certificate(presented)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "old-meter"
