"""What a one-time challenge binds, how long it may live, what the mscep_admin page says
about it, and turning the signingTime check off through the admin API."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiohttp.test_utils import TestClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from conformance.scep.simulator import make_csr
from protocols.scep.challenge import issue_dynamic_challenge
from protocols.scep.types import FailInfo, PkiStatus

from .conftest import STATIC, Env
from .test_challenges import API_KEY, NDES_RE, admin, allow_plain_http, basic

__all__ = ["admin"]  # the admin API fixture, shared with test_challenges

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def csr_with(key: rsa.RSAPrivateKey, subject: str | x509.Name, challenge: str) -> bytes:
    name = x509.Name.from_rfc4514_string(subject) if isinstance(subject, str) else subject
    return (x509.CertificateSigningRequestBuilder().subject_name(name)
            .add_attribute(x509.oid.AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


async def bound_challenge(env: Env, subject: str) -> str:
    issued = await issue_dynamic_challenge(env.repo, "scep", ttl=dt.timedelta(minutes=10), limit=100, source="api",
                                           issued_by="test", bound_subject=subject)
    return issued.challenge


async def enroll(env: Env, subject: str | x509.Name, challenge: str) -> Any:
    device = await env.device()
    return await env.post(device.pkcs_req(csr_with(device.key, subject, challenge))[0])


async def test_a_bound_challenge_binds_the_whole_subject_not_just_the_cn(env: Env) -> None:
    challenge = await bound_challenge(env, "CN=kiosk-12")
    before = await env.certificate_count()
    for other in ("CN=kiosk-12,O=Other", "CN=kiosk-12,OU=Lobby", "O=Other,CN=kiosk-12"):
        rep = await enroll(env, other, challenge)
        assert (rep.status, rep.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_REQUEST)
        assert "another subject" in (rep.fail_text or "")
    assert await env.certificate_count() == before
    # none of the refusals spent it: the device it was issued for still enrolls
    assert (await enroll(env, "CN=kiosk-12", challenge)).status is PkiStatus.SUCCESS


async def test_a_full_dn_binding_compares_rdn_order_and_types_but_not_case_or_spacing(env: Env) -> None:
    challenge = await bound_challenge(env, "CN=kiosk-12,OU=Lobby,O=Acme Corp")
    for wrong in ("OU=Lobby,CN=kiosk-12,O=Acme Corp",  # same attributes, another order
                  "CN=kiosk-12,L=Lobby,O=Acme Corp",  # same values, another attribute type
                  "CN=kiosk-12,O=Acme Corp"):  # an RDN missing
        rep = await enroll(env, wrong, challenge)
        assert rep.fail_info is FailInfo.BAD_REQUEST, wrong
    same = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, " Acme  Corp "),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "lobby"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "KIOSK-12")])
    rep = await enroll(env, same, challenge)
    assert rep.status is PkiStatus.SUCCESS, rep.fail_text


async def test_challenge_lifetime_has_a_configurable_maximum(env: Env, admin: tuple[TestClient, Any]) -> None:
    client, _doc = admin
    # default maximum P7D: 8 days refused, 7 days given
    async with client.post("/scep/scep/challenges", json={"ttl_seconds": 8 * 86400}, headers=AUTH) as resp:
        assert resp.status == 400
        assert "max_challenge_lifetime" in (await resp.json())["detail"]
    async with client.post("/scep/scep/challenges", json={"ttl_seconds": 7 * 86400}, headers=AUTH) as resp:
        assert resp.status == 201
    async with client.patch("/protocol-configs/scep", json={"settings": {"max_challenge_lifetime": "PT2H"}},
                            headers=AUTH) as resp:
        assert resp.status == 200
    async with client.post("/scep/scep/challenges", json={"ttl_seconds": 3 * 3600}, headers=AUTH) as resp:
        assert resp.status == 400
        assert "PT3H" in (await resp.json())["detail"]
    async with client.post("/scep/scep/challenges", json={"ttl_seconds": 2 * 3600}, headers=AUTH) as resp:
        assert resp.status == 201
    assert len(await env.repo.list_challenges("scep", env.clock())) == 2  # the refusals stored nothing


async def test_mscep_admin_page_says_seconds_below_one_minute(env: Env) -> None:
    await allow_plain_http(env, dynamic_challenge_ttl="PT45S")
    async with env.client.get("/certsrv/mscep_admin/", headers=basic()) as resp:
        assert resp.status == 200
        page = (await resp.read())[2:].decode("utf-16-le")
    assert NDES_RE.search(page)
    assert "will expire within 45 seconds." in page
    await env.core.update_protocol_config("scep", settings={"ndes": True, "admin_over_http": True,
                                                            "dynamic_challenge_ttl": "PT90S"})
    async with env.client.get("/certsrv/mscep_admin/", headers=basic()) as resp:
        page = (await resp.read())[2:].decode("utf-16-le")
    assert "will expire within 1 minute 30 seconds." in page


async def test_max_clock_skew_false_through_the_admin_api_disables_the_check(
        env: Env, admin: tuple[TestClient, Any]) -> None:
    client, _doc = admin
    device = await env.device()
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)

    async def send() -> Any:
        return await env.post(device.pkcs_req(make_csr(device.key, "old-clock", challenge=STATIC),
                                              signing_time=stale)[0])

    assert (await send()).fail_info is FailInfo.BAD_TIME
    async with client.patch("/protocol-configs/scep", json={"settings": {"max_clock_skew": False}},
                            headers=AUTH) as resp:
        assert resp.status == 200
        assert (await resp.json())["settings"]["max_clock_skew"] is False
    assert (await send()).status is PkiStatus.SUCCESS
    # null removes the key (JSON merge patch): the default check is back
    async with client.patch("/protocol-configs/scep", json={"settings": {"max_clock_skew": None}},
                            headers=AUTH) as resp:
        assert resp.status == 200 and "max_clock_skew" not in (await resp.json())["settings"]
    assert (await send()).fail_info is FailInfo.BAD_TIME
