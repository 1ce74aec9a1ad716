"""The local CA behind the Authority, on SQLite and on the real PostgreSQL.

Every refusal is checked for what it leaves behind: no certificate row, a failure
event, and the right typed error.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from gateway import errors
from gateway.ca import local as local_module
from gateway.ca.backend import IssuedCertificate, IssueOverrides, PendingRequest, RevocationReason
from gateway.config import Config
from gateway.runtime import Gateway
from gateway.store.records import CertificateFilter, EventFilter, serial_hex, utcnow

from .support import csr_pem, make_csr, make_key, openssl, tamper_signature, write_pem

STRICT_PROFILE = """
name = "strict"
description = "refuses unknown request extensions"
validity = "P30D"
key_usage = ["digital_signature"]
extended_key_usage = ["client_auth"]
[key_policy]
allowed = ["RSA-2048", "EC-P256"]
[basic_constraints]
ca = false
[subject]
mode = "csr"
[san]
mode = "csr"
allowed_types = ["dns"]
[extensions]
allowed = []
ignore_unknown_extensions = false
"""


@pytest.fixture
async def core(store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Gateway:
    monkeypatch.setenv("GATEWAY_CA_PASSPHRASE", "correct horse battery staple")
    cfg = Config(data_dir=tmp_path / "data")
    cfg.profiles_dir.mkdir(parents=True)
    (cfg.profiles_dir / "strict.toml").write_text(STRICT_PROFILE)
    gw = await Gateway.open(cfg, store=store)
    await gw.cas.hierarchy.create_root("root", "Test Root CA", "EC-P384")
    await gw.cas.load()
    await gw.cas.hierarchy.create_intermediate(await gw.cas.local("root"), "issuing", "Test Issuing CA", "EC-P256")
    await gw.cas.load()
    await gw.authority.create_config("dev", "est", "issuing", ["tls-server", "device", "strict"])
    return gw


async def certificate_count(gw: Gateway) -> int:
    async with gw.store.read() as q:
        return await q.certificates.count(CertificateFilter(protocol_config="dev"))


async def enroll(gw: Gateway, csr: x509.CertificateSigningRequest | bytes, **kw: object) -> IssuedCertificate:
    result = await gw.authority.enroll("dev", "est", csr, entity=kw.pop("entity", "device-1"), **kw)  # type: ignore[arg-type]
    assert isinstance(result, IssuedCertificate)
    return result


def verify_with_openssl(tmp_path: Path, issued: IssuedCertificate) -> None:
    root = write_pem(tmp_path / "root.pem", issued.chain[-1])
    untrusted = write_pem(tmp_path / "untrusted.pem", *issued.chain[:-1])
    leaf = write_pem(tmp_path / "leaf.pem", issued.certificate)
    out = openssl("verify", "-CAfile", str(root), "-untrusted", str(untrusted), str(leaf))
    assert out.stdout.strip().endswith(": OK")


async def test_issue_is_committed_verified_and_audited(core: Gateway, tmp_path: Path) -> None:
    csr, _ = make_csr("web.example.com", ["web.example.com", "192.0.2.7"])
    issued = await enroll(core, csr, profile="tls-server")
    verify_with_openssl(tmp_path, issued)
    async with core.store.read() as q:
        rec = await q.certificates.get(serial_hex(issued.serial))
        assert rec is not None and rec.status == "valid" and rec.profile == "tls-server"
        events = await q.events.list(EventFilter(serial=rec.serial))
        entity = await q.entities.get(rec.entity_id or "")
    assert rec.der == issued.certificate.public_bytes(serialization.Encoding.DER)
    assert "DNS:web.example.com" in rec.sans and "IP:192.0.2.7" in rec.sans
    assert [(e.type, e.status) for e in events] == [("issue", "success")]
    assert entity is not None and entity.name == "device-1" and entity.status == "active"


@pytest.mark.parametrize("algorithm", ["RSA-2048", "RSA-3072", "RSA-4096", "EC-P256", "EC-P384", "EC-P521"])
async def test_subscriber_key_algorithms(core: Gateway, tmp_path: Path, algorithm: str) -> None:
    csr, _ = make_csr("dev.example.com", ["dev.example.com"], key=make_key(algorithm))
    issued = await enroll(core, csr, profile="device")
    verify_with_openssl(tmp_path, issued)
    async with core.store.read() as q:
        rec = await q.certificates.get(serial_hex(issued.serial))
    assert rec is not None and rec.key_algorithm == algorithm


@pytest.mark.parametrize("algorithm", ["RSA-2048", "RSA-3072", "RSA-4096", "EC-P256", "EC-P384", "EC-P521"])
async def test_ca_key_algorithms(core: Gateway, tmp_path: Path, algorithm: str) -> None:
    ca_id = "ca-" + algorithm.lower()
    await core.cas.hierarchy.create_root(ca_id + "-root", f"{algorithm} Root", algorithm)
    await core.cas.load()
    await core.cas.hierarchy.create_intermediate(await core.cas.local(ca_id + "-root"), ca_id, f"{algorithm} CA", algorithm)
    await core.cas.load()
    csr, _ = make_csr("alg.example.com", ["alg.example.com"])
    issued = await core.authority.issue_direct(ca_id, csr, "tls-server", actor="test")
    verify_with_openssl(tmp_path, issued)
    assert (await core.cas.record(ca_id)).key_pem_encrypted.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")  # type: ignore[union-attr]


async def test_rsa_below_2048_is_refused_for_cas(core: Gateway) -> None:
    with pytest.raises(errors.BadKey):
        await core.cas.hierarchy.create_root("weak", "Weak Root", "RSA-1024")
    async with core.store.read() as q:
        assert await q.cas.get("weak") is None


async def _refused(core: Gateway, exc: type[errors.GatewayError], csr: object, **kw: object) -> None:
    before = await certificate_count(core)
    async with core.store.read() as q:
        failures_before = len(await q.events.list(EventFilter(status="failure")))
    with pytest.raises(exc):
        await core.authority.enroll("dev", "est", csr, entity=kw.pop("entity", "device-1"), **kw)  # type: ignore[arg-type]
    assert await certificate_count(core) == before, "a refused request left a certificate behind"
    async with core.store.read() as q:
        assert len(await q.events.list(EventFilter(status="failure"))) == failures_before + 1


async def test_garbage_csr_is_refused(core: Gateway) -> None:
    await _refused(core, errors.BadCSR, b"this is not a CSR")
    await _refused(core, errors.BadCSR, b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n")


async def test_csr_with_bad_signature_is_refused(core: Gateway) -> None:
    csr, _ = make_csr()
    await _refused(core, errors.BadSignature, tamper_signature(csr), profile="device")


async def test_rsa_1024_subscriber_key_is_refused(core: Gateway) -> None:
    csr, _ = make_csr(key=make_key("RSA-1024"))
    await _refused(core, errors.BadKey, csr, profile="device")


async def test_key_not_allowed_by_profile_is_refused(core: Gateway) -> None:
    csr, _ = make_csr(key=make_key("EC-P384"))
    await _refused(core, errors.BadKey, csr, profile="strict")


async def test_disallowed_extension_is_refused(core: Gateway) -> None:
    odd = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    csr, _ = make_csr(extensions=[(odd, False)])
    await _refused(core, errors.PolicyViolation, csr, profile="strict")


async def test_validity_beyond_the_ca_is_refused(core: Gateway) -> None:
    ca = await core.cas.local("issuing")
    csr, _ = make_csr()
    too_late = ca.certificate.not_valid_after_utc + dt.timedelta(days=1)
    await _refused(core, errors.PolicyViolation, csr, profile="device", overrides=IssueOverrides(not_after=too_late))


async def test_unknown_profile_is_refused(core: Gateway) -> None:
    csr, _ = make_csr()
    await _refused(core, errors.NotFound, csr, profile="no-such-profile")
    with pytest.raises(errors.NotFound):
        await core.authority.issue_direct("issuing", csr, "no-such-profile", actor="test")


async def test_deactivated_end_entity_gets_nothing(core: Gateway) -> None:
    csr, _ = make_csr()
    issued = await enroll(core, csr, profile="device", entity="laptop-7")
    async with core.store.read() as q:
        rec = await q.certificates.get(serial_hex(issued.serial))
    assert rec is not None and rec.entity_id
    await core.authority.set_entity_status(rec.entity_id, "inactive", actor="test")
    await _refused(core, errors.Forbidden, make_csr()[0], profile="device", entity="laptop-7")
    async with core.store.read() as q:
        refusals = await q.events.list(EventFilter(entity_id=rec.entity_id, status="failure"))
    assert [e.type for e in refusals] == ["issue"]
    await core.authority.set_entity_status(rec.entity_id, "active", actor="test")
    await enroll(core, make_csr()[0], profile="device", entity="laptop-7")
    await core.authority.set_entity_status(rec.entity_id, "decommissioned", actor="test")
    await _refused(core, errors.Forbidden, make_csr()[0], profile="device", entity="laptop-7")
    with pytest.raises(errors.Conflict):
        await core.authority.set_entity_status(rec.entity_id, "active", actor="test")


async def test_serials_are_random_positive_and_unique(core: Gateway) -> None:
    serials = {(await enroll(core, make_csr()[0], profile="device")).serial for _ in range(12)}
    assert len(serials) == 12
    assert all(2**63 < s < 2**159 for s in serials)


async def test_serial_collision_resigns_and_keeps_the_first_record(
    core: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await enroll(core, make_csr()[0], profile="device")
    real_new_serial = local_module.new_serial
    handed_out = iter([first.serial])

    def colliding_serial() -> int:
        return next(handed_out, None) or real_new_serial()

    monkeypatch.setattr(local_module, "new_serial", colliding_serial)
    second = await enroll(core, make_csr("other")[0], profile="device", entity="device-2")
    assert second.serial != first.serial
    async with core.store.read() as q:
        kept = await q.certificates.get(serial_hex(first.serial))
    assert kept is not None and kept.der == first.certificate.public_bytes(serialization.Encoding.DER)


async def test_pending_requests_are_approved_or_rejected(core: Gateway) -> None:
    await core.authority.create_config("held", "scep", "issuing", ["device"], settings={"approval": "manual"})
    result = await core.authority.enroll("held", "scep", make_csr()[0], entity="router-1")
    assert isinstance(result, PendingRequest) and result.status == "pending"
    async with core.store.read() as q:
        assert await q.certificates.count(CertificateFilter(protocol_config="held")) == 0
    polled = await core.authority.poll(result.request_id)
    assert isinstance(polled, PendingRequest) and polled.status == "pending"

    issued = await core.authority.approve(result.request_id, operator="alice")
    polled = await core.authority.poll(result.request_id)
    assert isinstance(polled, IssuedCertificate) and polled.serial == issued.serial
    with pytest.raises(errors.Conflict):
        await core.authority.approve(result.request_id, operator="alice")

    other = await core.authority.enroll("held", "scep", make_csr()[0], entity="router-2")
    assert isinstance(other, PendingRequest)
    await core.authority.reject(other.request_id, operator="bob", reason="unknown device")
    polled = await core.authority.poll(other.request_id)
    assert isinstance(polled, PendingRequest) and polled.status == "rejected"
    with pytest.raises(errors.Conflict):
        await core.authority.approve(other.request_id, operator="alice")
    async with core.store.read() as q:
        assert await q.certificates.count(CertificateFilter(protocol_config="held")) == 1


async def test_policy_errors_surface_at_submission_not_approval(core: Gateway) -> None:
    await core.authority.create_config("held2", "scep", "issuing", ["strict"], settings={"approval": "manual"})
    with pytest.raises(errors.BadKey):
        await core.authority.enroll("held2", "scep", make_csr(key=make_key("EC-P521"))[0], entity="r")
    async with core.store.read() as q:
        assert await q.requests.list(status="pending") == []


async def test_revoke_suspend_unsuspend_and_crl(core: Gateway, tmp_path: Path) -> None:
    ca = await core.cas.local("issuing")
    a = await enroll(core, make_csr()[0], profile="device")
    b = await enroll(core, make_csr()[0], profile="device")
    c = await enroll(core, make_csr()[0], profile="device")
    invalid_since = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    await core.authority.revoke(serial_hex(a.serial), RevocationReason.key_compromise, actor="t", invalidity_date=invalid_since)
    await core.authority.suspend(serial_hex(b.serial), actor="t")
    crl = x509.load_der_x509_crl(await core.authority.crl(ca.id))
    assert crl.is_signature_valid(ca.certificate.public_key())  # type: ignore[arg-type]
    entry_a = crl.get_revoked_certificate_by_serial_number(a.serial)
    entry_b = crl.get_revoked_certificate_by_serial_number(b.serial)
    assert entry_a is not None and entry_b is not None
    assert crl.get_revoked_certificate_by_serial_number(c.serial) is None
    assert entry_a.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
    assert entry_a.extensions.get_extension_for_class(x509.InvalidityDate).value.invalidity_date_utc == invalid_since
    assert entry_b.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.certificate_hold
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number

    await core.authority.unsuspend(serial_hex(b.serial), actor="t")
    crl2 = x509.load_der_x509_crl(await core.authority.crl(ca.id))
    assert crl2.get_revoked_certificate_by_serial_number(b.serial) is None
    assert crl2.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number > number

    with pytest.raises(errors.Conflict):
        await core.authority.revoke(serial_hex(a.serial), RevocationReason.superseded, actor="t")
    with pytest.raises(errors.Conflict):
        await core.authority.unsuspend(serial_hex(c.serial), actor="t")
    with pytest.raises(errors.NotFound):
        await core.authority.revoke("abcdef", RevocationReason.superseded, actor="t")
    path = tmp_path / "ca.crl"
    path.write_bytes(await core.authority.crl(ca.id))
    text = openssl("crl", "-inform", "DER", "-in", str(path), "-noout", "-text").stdout
    assert format(a.serial, "X")[:16] in text.replace(":", "").upper() and "Key Compromise" in text


async def test_crl_is_cached_until_its_overlap_period(core: Gateway) -> None:
    ca = await core.cas.local("issuing")
    first = await core.authority.crl(ca.id)
    assert await core.authority.crl(ca.id) == first
    forced = await core.authority.crl(ca.id, force=True)
    assert forced != first


async def test_server_side_keygen_with_pkcs12(core: Gateway, tmp_path: Path) -> None:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "phone-42")])
    result = await core.authority.keygen(
        "dev", "est", entity="phone-42", key_algorithm="RSA-2048", subject=subject,
        profile="device", pkcs12_password=b"s3cret",
    )
    key, cert, extra = pkcs12.load_key_and_certificates(result.pkcs12 or b"", b"s3cret")
    assert cert == result.issued.certificate and key is not None
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()  # type: ignore[union-attr]
    assert extra and extra[0] == (await core.cas.local("issuing")).certificate
    p12 = tmp_path / "k.p12"
    p12.write_bytes(result.pkcs12 or b"")
    openssl("pkcs12", "-in", str(p12), "-passin", "pass:s3cret", "-noout")
    assert openssl("pkcs12", "-in", str(p12), "-passin", "pass:wrong", "-noout", check=False).returncode != 0
    with pytest.raises(errors.BadKey):
        await core.authority.keygen("dev", "est", entity="phone-43", key_algorithm="RSA-1024",
                                    subject=subject, profile="device")


async def test_externally_signed_issuing_ca(core: Gateway, tmp_path: Path) -> None:
    from gateway.ca.hierarchy import self_signed_root

    ext_key = make_key("RSA-3072")
    ext_root = self_signed_root(ext_key, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "External Root")]),
                                dt.timedelta(days=3650))
    rec, csr_bytes = await core.cas.hierarchy.create_external_csr("ext", "Externally Signed CA", "EC-P384")
    assert rec.state == "awaiting_certificate"
    with pytest.raises(errors.Unavailable):
        await core.cas.local("ext")
    csr = x509.load_pem_x509_csr(csr_bytes)
    assert csr.is_signature_valid
    now = dt.datetime.now(dt.timezone.utc)
    signed = (
        x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ext_root.subject)
        .public_key(csr.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1000))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(ext_key, core_hash())
    )
    root_pem = ext_root.public_bytes(serialization.Encoding.PEM)
    wrong_key_cert = (
        x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ext_root.subject)
        .public_key(make_key("EC-P384").public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ext_key, core_hash())
    )
    with pytest.raises(errors.PolicyViolation):
        await core.cas.hierarchy.import_signed_certificate(
            "ext", wrong_key_cert.public_bytes(serialization.Encoding.PEM), root_pem)
    await core.cas.hierarchy.import_external_root("extroot", "External Root", root_pem)
    await core.cas.hierarchy.import_signed_certificate("ext", signed.public_bytes(serialization.Encoding.PEM), root_pem)
    await core.cas.load()
    assert (await core.cas.record("ext")).parent_id == "extroot"
    with pytest.raises(errors.Unavailable):
        await core.cas.local("extroot")  # no key held for an imported root
    issued = await core.authority.issue_direct("ext", make_csr()[0], "device", actor="test")
    assert issued.chain[-1] == ext_root
    verify_with_openssl(tmp_path, issued)


def core_hash():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


async def test_wrong_passphrase_cannot_load_ca_keys(core: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_CA_PASSPHRASE", "not the passphrase")
    with pytest.raises(errors.GatewayError, match="passphrase"):
        await Gateway.open(core.config, store=core.store)


async def test_protocol_config_ids_are_validated(core: Gateway) -> None:
    for bad in ("A", "x", "has space", "UPPER", "a" * 19, "dot.ted"):
        with pytest.raises(errors.BadRequest):
            await core.authority.create_config(bad, "est", "issuing", ["device"])
    with pytest.raises(errors.NotFound):
        await core.authority.create_config("okid", "est", "issuing", ["nope"])
    with pytest.raises(errors.Conflict):
        await core.authority.create_config("dev", "est", "issuing", ["device"])
    await core.authority.create_config("ok_id-2", "scep", "issuing", ["device"])


async def test_scheduled_crl_refresh_reissues_only_when_due(core: Gateway) -> None:
    ca = await core.cas.local("issuing")
    await core.authority.crl(ca.id)
    async with core.store.read() as q:
        number = (await q.cas.get("issuing")).crl_number  # type: ignore[union-attr]
    await core.refresh_crls()
    async with core.store.read() as q:
        assert (await q.cas.get("issuing")).crl_number == number  # type: ignore[union-attr]
    # Move the CRL into its overlap period: the next scheduled pass reissues it.
    soon = dt.datetime.now(dt.timezone.utc) + core.config.duration("crl_overlap") / 2
    async with core.store.transaction() as q:
        await q.cas.update("issuing", crl_next_update=soon)
    await core.refresh_crls()
    async with core.store.read() as q:
        rec = await q.cas.get("issuing")
    assert rec is not None and rec.crl_number > number and rec.crl_next_update > soon  # type: ignore[operator]
    crl = x509.load_der_x509_crl(rec.crl_der or b"")
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == rec.crl_number


async def test_one_process_of_the_cluster_runs_the_crl_refresh_and_another_takes_over(core: Gateway) -> None:
    """Two gateways on one store (two replicas): the CRL scheduler runs where the
    ``crl-refresh`` lease is held; when its holder gives it up, the other runs it."""
    from gateway.leases import release_lease
    from gateway.runtime import CRL_REFRESH_JOB

    other = await Gateway.open(core.config, store=core.store)
    core.config.ca.crl_check_interval = 0.05
    refreshed: dict[str, int] = {"core": 0, "other": 0}

    def counting(name: str, gw: Gateway) -> None:
        async def refresh(force: bool = False) -> int:
            refreshed[name] += 1
            return 0
        gw.refresh_crls = refresh  # type: ignore[method-assign]

    counting("core", core)
    counting("other", other)
    first = asyncio.create_task(core._crl_loop())
    await asyncio.sleep(0.02)
    second = asyncio.create_task(other._crl_loop())
    try:
        await asyncio.sleep(0.4)
        assert refreshed["core"] >= 3 and refreshed["other"] == 0, refreshed
        async with core.store.read() as q:
            assert await q.leases.holder(CRL_REFRESH_JOB, utcnow()) == core.holder
        first.cancel()
        await release_lease(core.store, CRL_REFRESH_JOB, core.holder)  # what close() does
        await asyncio.sleep(0.3)
        assert refreshed["other"] >= 2, refreshed
    finally:
        first.cancel()
        second.cancel()
        await asyncio.gather(first, second, return_exceptions=True)
