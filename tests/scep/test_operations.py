"""GetCACert, GetCACaps, GetNextCACert, the transport quirks, and the NDES paths."""

from __future__ import annotations

import base64
import urllib.parse

import pytest
from cryptography import x509

from conformance.scep.simulator import make_csr, openssl_verify
from protocols.scep import cms as scms
from protocols.scep.ra import import_ra
from protocols.scep.types import PkiStatus

from .conftest import STATIC, Env


async def test_get_ca_caps_lists_what_the_configuration_supports(env: Env) -> None:
    async with env.client.get(f"{env.path}?operation=GetCACaps") as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        caps = (await resp.text()).split()
    assert set(caps) == {"POSTPKIOperation", "SHA-1", "SHA-256", "SHA-512", "AES", "DES3", "Renewal", "SCEPStandard"}
    await env.core.update_protocol_config("scep", settings={
        "content_encryption": ["des-ede3-cbc"], "digests": ["sha1"], "renewal": False})
    async with env.client.get(f"{env.path}?operation=GetCACaps&message=CA") as resp:
        assert (await resp.text()).split() == ["POSTPKIOperation", "SHA-1", "DES3"]


async def test_get_ca_cert_returns_ra_and_ca_chain(env: Env) -> None:
    async with env.client.get(f"{env.path}?operation=GetCACert&message=anything") as resp:
        assert resp.status == 200 and resp.content_type == "application/x-x509-ca-ra-cert"
        certs = scms.certificates_of_degenerate(await resp.read())
    ra = await env.ra_certificate()
    chain = await env.ca_chain()
    assert {c.subject.rfc4514_string() for c in certs} == {
        ra.subject.rfc4514_string(), *(c.subject.rfc4514_string() for c in chain)}
    ku = ra.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment and not ku.key_cert_sign
    with pytest.raises(x509.ExtensionNotFound):
        ra.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert ra.issuer == chain[0].subject


async def test_ca_answering_itself_returns_the_single_ca_certificate(env: Env, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A CA that is its own RA (imported as such) is returned as application/x-x509-ca-cert."""
    from cryptography.hazmat.primitives import serialization

    await env.gw.cas.hierarchy.create_root("rsaroot", "RSA Root", "RSA-2048")
    await env.gw.cas.load()
    ca = await env.gw.cas.local("rsaroot")
    await env.gw.authority.create_config("selfra", "scep", "rsaroot", ["device"])
    key_pem = ca.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())
    await import_ra(env.door, env.repo, "selfra", ca.certificate.public_bytes(serialization.Encoding.PEM), key_pem)
    async with env.client.get("/scep/selfra?operation=GetCACert") as resp:
        assert resp.content_type == "application/x-x509-ca-cert"
        assert x509.load_der_x509_certificate(await resp.read()) == ca.certificate


async def test_get_next_ca_cert_during_rollover(env: Env) -> None:
    async with env.client.get(f"{env.path}?operation=GetNextCACert") as resp:
        assert resp.status == 404
    await env.gw.cas.hierarchy.create_intermediate(await env.gw.cas.local("root"), "issuing2", "Next Issuing CA", "EC-P256")
    await env.gw.cas.load()
    await env.core.update_protocol_config("scep", settings={"ndes": True, "next_ca": "issuing2"})
    async with env.client.get(f"{env.path}?operation=GetCACaps") as resp:
        assert "GetNextCACert" in (await resp.text()).split()
    async with env.client.get(f"{env.path}?operation=GetNextCACert") as resp:
        assert resp.status == 200 and resp.content_type == "application/x-x509-next-ca-cert"
        body = await resp.read()
    chain = await env.ca_chain()
    inner = openssl_verify(body, [chain[-1]])  # signed by the current RA
    certs = scms.certificates_of_degenerate(inner)
    subjects = {c.subject.rfc4514_string() for c in certs}
    assert "CN=Next Issuing CA" in subjects and "CN=SCEP RA scep,O=Enrollment Gateway" in subjects
    next_ra = next(c for c in certs if "SCEP RA" in c.subject.rfc4514_string())
    assert next_ra.issuer.rfc4514_string() == "CN=Next Issuing CA"
    # the next RA already decrypts: a client that fetched it early can enroll
    device = await env.device()
    device.recipient = next_ra
    rep = await env.post(device.pkcs_req(make_csr(device.key, "early", challenge=STATIC))[0])
    assert rep.status is PkiStatus.SUCCESS, rep.fail_text
    # promote it: the next RA becomes current
    assert await env.repo.promote_next_ra("scep")
    assert (await env.ra_certificate()) == next_ra


async def test_unknown_operations_and_configurations(env: Env) -> None:
    async with env.client.get(env.path) as resp:
        assert resp.status == 400 and "operation" in await resp.text()
    async with env.client.get(f"{env.path}?operation=Frobnicate") as resp:
        assert resp.status == 400 and "Frobnicate" in await resp.text()
    async with env.client.get("/scep/nosuch?operation=GetCACaps") as resp:
        assert resp.status == 404
    await env.core.update_protocol_config("scep", enabled=False)
    async with env.client.get(f"{env.path}?operation=GetCACaps") as resp:
        assert resp.status == 403


@pytest.mark.parametrize("path", [
    "/certsrv/mscep/mscep.dll", "/certsrv/mscep/mscep.dll/pkiclient.exe", "/cgi-bin/pkiclient.exe",
    "/scep/scep/pkiclient.exe",
])
async def test_ndes_paths_serve_the_default_configuration(env: Env, path: str) -> None:
    async with env.client.get(f"{path}?operation=GetCACert") as resp:
        assert resp.status == 200 and resp.content_type == "application/x-x509-ca-ra-cert"
    device = await env.device()
    rep = await env.post(device.pkcs_req(make_csr(device.key, "via-ndes", challenge=STATIC))[0], path=path)
    assert rep.status is PkiStatus.SUCCESS, rep.fail_text


# --- transport quirks ------------------------------------------------------------------


async def get_pki(env: Env, raw_query_message: str) -> tuple[int, bytes]:
    from yarl import URL

    url = URL(f"{env.path}?operation=PKIOperation&message={raw_query_message}", encoded=True)
    async with env.client.get(url) as resp:
        return resp.status, await resp.read()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


QUIRKS = {
    "url-encoded": lambda s: urllib.parse.quote(s, safe=""),
    "raw-plus-and-slash": lambda s: s,
    "plus-as-space": lambda s: s.replace("+", "%20"),
    "line-breaks": lambda s: urllib.parse.quote("\n".join(s[i:i + 64] for i in range(0, len(s), 64)), safe="+/"),
    "crlf-and-no-padding": lambda s: "%0D%0A".join(s.rstrip("=")[i:i + 76] for i in range(0, len(s.rstrip("=")), 76)),
    "url-safe-alphabet": lambda s: s.replace("+", "-").replace("/", "_"),
}


@pytest.mark.parametrize("quirk", list(QUIRKS))
async def test_get_pkioperation_tolerates_base64_quirks(env: Env, quirk: str) -> None:
    from conformance.scep.simulator import parse_cert_rep

    device = await env.device()
    body, tid, _ = device.pkcs_req(make_csr(device.key, f"quirk-{quirk}", challenge=STATIC))
    encoded = b64(body)
    assert "+" in encoded or "/" in encoded  # the quirks matter for this message
    status, data = await get_pki(env, QUIRKS[quirk](encoded))
    assert status == 200, data
    rep = parse_cert_rep(data)
    assert rep.status is PkiStatus.SUCCESS and rep.transaction_id == tid


async def test_post_accepts_der_and_base64_text_and_refuses_empty(env: Env) -> None:
    from conformance.scep.simulator import parse_cert_rep

    device = await env.device()
    body, _, _ = device.pkcs_req(make_csr(device.key, "post-b64", challenge=STATIC))
    async with env.client.post(f"{env.path}?operation=PKIOperation", data=b64(body).encode()) as resp:
        assert resp.status == 200 and parse_cert_rep(await resp.read()).status is PkiStatus.SUCCESS
    async with env.client.post(f"{env.path}?operation=PKIOperation", data=b"") as resp:
        assert resp.status == 400 and "empty PKIOperation POST body" in await resp.text()


@pytest.mark.parametrize("message", ["", "%%%", "bm90IGEgcGtpTWVzc2FnZQ==", b64(b"\x30\x03\x02\x01\x01")])
async def test_garbage_message_is_a_400_and_issues_nothing(env: Env, message: str) -> None:
    before = await env.certificate_count()
    status, data = await get_pki(env, message)
    assert status == 400 and data.endswith(b"\n")
    assert await env.certificate_count() == before


async def test_configuration_created_elsewhere_gets_its_ra_on_first_use(env: Env) -> None:
    await env.gw.authority.create_config("plain", "scep", "issuing", ["device"])  # e.g. the core admin API
    assert await env.repo.ra_certificates("plain") == []
    async with env.client.get("/scep/plain?operation=GetCACert") as resp:
        assert resp.status == 200
    (ra,) = await env.repo.ra_certificates("plain")
    assert ra.role == "current"


async def test_a_cached_ra_is_renewed_when_it_falls_due_without_any_write(env: Env) -> None:
    """The served RA set is cached until something is written, or until its RA falls due
    by time alone: then the next request renews it (on the core's clock)."""
    import datetime as dt

    from gateway.clock import FakeClock

    old = await env.ra_certificate()  # cached now
    env.gw.clock = FakeClock(old.not_valid_after_utc - dt.timedelta(days=30))  # the last fifth of its life
    async with env.client.get(f"{env.path}?operation=GetCACert") as resp:
        certs = scms.certificates_of_degenerate(await resp.read())
    ras = [c for c in certs if "SCEP RA" in c.subject.rfc4514_string()]
    assert len(ras) == 1 and ras[0] != old and ras[0].issuer == old.issuer
    assert sorted(r.role for r in await env.repo.ra_certificates("scep")) == ["current", "retired"]


async def test_ra_is_renewed_before_it_expires_and_the_old_key_still_decrypts(env: Env) -> None:
    import datetime as dt

    old = await env.ra_certificate()
    later = old.not_valid_after_utc - dt.timedelta(days=30)  # inside the last fifth of its life
    renewed = await env.service.keyring.ra_set("scep", "issuing", now=later)
    new = renewed.current.certificate
    assert new != old and new.serial_number != old.serial_number
    assert [r.certificate for r in renewed.retired] == [old]
    assert await env.ra_certificate() == new  # what GetCACert hands out from now on
    device = await env.device()
    device.recipient = old  # a client that cached the old RA certificate
    rep = await env.post(device.pkcs_req(make_csr(device.key, "cached-ra", challenge=STATIC))[0])
    assert rep.status is PkiStatus.SUCCESS and rep.signer == new
