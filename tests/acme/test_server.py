"""The ACME server over real TLS with hand-made JWS requests (RFC 8555, RFC 9773, profiles).

Each test makes its own ACME configuration with the settings it needs and talks
to the in-process gateway through :class:`RawClient`; challenges are answered by
real listeners on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import func, select

from conformance.acme.support import (
    DnsServer,
    Http01Responder,
    RawClient,
    b64url,
    directory_url,
    make_csr,
    new_config,
    sign_jws,
)
from conformance.harness import GatewayInfo, running_gateway
from gateway.ca.backend import RevocationReason
from gateway.clock import FakeClock
from gateway.config import load_config
from gateway.store.records import EventFilter
from protocols.acme.ari import CertID
from protocols.acme.settings import ALWAYS_VALID_ENV
from protocols.acme import schema as acme_schema
from protocols.acme.store import AcmeStore
from protocols.acme.validation.dns01 import txt_value

Pair = tuple[Any, GatewayInfo]


async def authorize(client: RawClient, order: dict[str, Any], web01: Http01Responder) -> None:
    for url in order["authorizations"]:
        authz = (await client.post(url)).json
        if authz["status"] == "valid":
            continue
        ch = next(c for c in authz["challenges"] if c["type"] == "http-01")
        web01.tokens[ch["token"]] = client.key_authorization(ch["token"])
        assert (await client.post(ch["url"], {})).status == 200
        done = await client.poll(url, ("valid", "invalid"))
        assert done.json["status"] == "valid", done.json


async def issue(client: RawClient, web01: Http01Responder, *names: str, **extra: Any) -> tuple[dict[str, Any], x509.Certificate, Any]:
    reply = await client.order(*names, **extra)
    assert reply.status == 201, reply.json
    await authorize(client, reply.json, web01)
    ready = await client.poll(reply.location, ("ready", "invalid"))
    assert ready.json["status"] == "ready", ready.json
    der, key = make_csr(list(names))
    done = await client.post(ready.json["finalize"], {"csr": b64url(der)})
    assert done.status == 200 and done.json["status"] == "valid", done.json
    pem = (await client.post(done.json["certificate"])).body
    return done.json, x509.load_pem_x509_certificates(pem)[0], key


async def counts(gw: Any) -> dict[str, int]:
    values = await AcmeStore(gw.door("acme").tables).counts()
    values.pop("used_nonces")
    async with gw.store.read() as q:
        values["certificates"] = await q.certificates.count()
    return values


# --- directory, nonces, problem documents ------------------------------------------------------
async def test_directory_lists_every_resource_and_the_meta(gateway: Pair) -> None:
    gw, info = gateway
    cid = await new_config(gw, terms_of_service="https://example.test/tos", website="https://example.test",
                           eab_required=True, pre_authorization=True, caa_identities=["ca.example.test"])
    async with aiohttp.ClientSession() as s:
        async with s.get(directory_url(info, cid), ssl=info.ssl_context()) as resp:
            assert resp.status == 200 and resp.content_type == "application/json"
            doc = await resp.json()
            assert "Replay-Nonce" not in resp.headers
    base = f"{info.https}/acme/{cid}"
    assert doc["newNonce"] == f"{base}/new-nonce" and doc["newAccount"] == f"{base}/new-account"
    assert {"newOrder", "newAuthz", "revokeCert", "keyChange", "renewalInfo"} <= set(doc)
    assert doc["meta"] == {
        "termsOfService": "https://example.test/tos", "website": "https://example.test",
        "caaIdentities": ["ca.example.test"], "externalAccountRequired": True,
        "profiles": {"tls-server": "TLS server certificates", "tls-client": "TLS client certificates"},
    }
    plain = await new_config(gw)
    async with RawClient(info, plain) as c:
        assert "newAuthz" not in c.directory and c.directory["meta"]["externalAccountRequired"] is False


async def test_unknown_or_disabled_directories_are_problem_documents(gateway: Pair) -> None:
    gw, info = gateway
    cid = await new_config(gw)
    async with gw.store.transaction() as q:
        await q.configs.update(cid, enabled=False)
    async with aiohttp.ClientSession() as s:
        for config_id, status in (("nope", 404), ("scep", 404), (cid, 403)):
            async with s.get(directory_url(info, config_id), ssl=info.ssl_context()) as resp:
                assert resp.status == status
                assert resp.headers["Content-Type"] == "application/problem+json"
                doc = await resp.json(content_type=None)
                assert doc["type"].startswith("urn:ietf:params:acme:error:") and doc["status"] == status


async def test_new_nonce_head_and_get(gateway: Pair) -> None:
    gw, info = gateway
    cid = await new_config(gw)
    async with RawClient(info, cid) as c:
        head = await c.get(c.directory["newNonce"], "HEAD")
        get = await c.get(c.directory["newNonce"])
    assert head.status == 200 and get.status == 204
    for reply in (head, get):
        assert reply.headers["Cache-Control"] == "no-store"
        assert reply.headers["Link"] == f'<{directory_url(info, cid)}>;rel="index"'
    assert head.headers["Replay-Nonce"] != get.headers["Replay-Nonce"]


async def test_jws_pipeline_refusals(gateway: Pair) -> None:
    gw, info = gateway
    cid = await new_config(gw)
    async with RawClient(info, cid) as c:
        url = c.directory["newAccount"]
        body = json.dumps(sign_jws({}, c.key, url, nonce=await c.nonce())).encode()
        wrong_type = await c.post_raw(url, body, content_type="application/json")
        assert (wrong_type.status, wrong_type.problem) == (415, "malformed")
        assert wrong_type.headers["Replay-Nonce"]  # every POST answer carries a fresh nonce
        assert wrong_type.headers["Content-Type"] == "application/problem+json"
        garbage = await c.post_raw(url, b"{not json")
        assert (garbage.status, garbage.problem) == (400, "malformed")
        no_nonce = await c.post_raw(url, json.dumps(sign_jws({}, c.key, url, nonce=None)).encode())
        assert no_nonce.problem == "badNonce"
        forged = await c.post(url, {}, kid=False, nonce=b64url(b"x" * 28))
        assert forged.problem == "badNonce"
        none_alg = await c.post(url, {}, kid=False, extra={"alg": "none"})
        assert none_alg.problem == "badSignatureAlgorithm" and "ES256" in none_alg.json["algorithms"]
        # GET on a POST resource
        get = await c.get(url)
        assert get.status == 405 and get.headers["Allow"] == "POST" and get.problem == "malformed"
        assert (await c.register()).status == 201
        kid_on_new_account = await c.post(url, {}, kid=c.kid, embed_jwk=False)
        assert kid_on_new_account.problem == "malformed" and "jwk" in kid_on_new_account.json["detail"]
        jwk_on_order = await c.post(c.directory["newOrder"], {"identifiers": []}, kid=False)
        assert jwk_on_order.problem == "malformed" and "kid" in jwk_on_order.json["detail"]


async def test_bad_nonce_reply_carries_a_fresh_nonce_that_works(gateway: Pair) -> None:
    gw, info = gateway
    cid = await new_config(gw)
    async with RawClient(info, cid) as c:
        used = await c.nonce()
        assert (await c.register()).status == 201
        first = await c.post(c.kid, None, nonce=used)
        assert first.status == 200
        again = await c.post(c.kid, None, nonce=used)
        assert again.status == 400 and again.problem == "badNonce"
        retry = await c.post(c.kid, None, nonce=again.headers["Replay-Nonce"])
        assert retry.status == 200


# --- accounts -------------------------------------------------------------------------------------
async def test_accounts_are_end_entities_and_contacts_are_checked(gateway: Pair) -> None:
    gw, info = gateway
    cid = await new_config(gw, terms_of_service="https://example.test/tos")
    before = await counts(gw)
    async with RawClient(info, cid) as c:
        no_tos = await c.post(c.directory["newAccount"], {"contact": ["mailto:a@example.test"]}, kid=False)
        assert no_tos.problem == "userActionRequired" and no_tos.json["instance"] == "https://example.test/tos"
        bad = await c.register(contact=["mailto:not an address"])
        assert bad.problem == "invalidContact"
        tel = await c.register(contact=["tel:+1555"])
        assert tel.problem == "unsupportedContact"
        missing = await c.post(c.directory["newAccount"], {"onlyReturnExisting": True}, kid=False)
        assert missing.problem == "accountDoesNotExist"
        assert await counts(gw) == before
        created = await c.register(contact=["mailto:a@example.test"])
        assert created.status == 201 and created.location.startswith(f"{info.https}/acme/{cid}/acct/")
        assert created.json["status"] == "valid" and created.json["contact"] == ["mailto:a@example.test"]
        again = await c.register()
        assert again.status == 200 and again.location == created.location
        existing = await c.post(c.directory["newAccount"], {"onlyReturnExisting": True}, kid=False)
        assert existing.status == 200 and existing.location == created.location
        updated = await c.post(c.kid, {"contact": ["mailto:b@example.test"]})
        assert updated.json["contact"] == ["mailto:b@example.test"]
    account_id = created.location.rsplit("/", 1)[1]
    async with gw.store.read() as q:
        entity = await q.entities.find(f"acme:{account_id}", cid)
    assert entity.kind == "account" and entity.attributes["acme_account"] == created.location
    async with gw.store.read() as q:
        events = await q.events.list(EventFilter(type="acme_account", protocol_config=cid))
    assert [e.entity_id for e in events] == [entity.id]


async def test_operator_deactivating_the_end_entity_locks_the_account_out(gateway: Pair) -> None:
    gw, info = gateway
    cid = await new_config(gw)
    async with RawClient(info, cid) as c:
        await c.register()
        account_id = c.kid.rsplit("/", 1)[1]
        async with gw.store.read() as q:
            entity = await q.entities.find(f"acme:{account_id}", cid)
        await gw.authority.set_entity_status(entity.id, "inactive", actor="test")
        refused = await c.order("x.example.test")
        assert refused.status == 403 and refused.problem == "unauthorized"


# --- orders, challenges, certificates ------------------------------------------------------------
async def test_full_issuance_with_http01_and_the_chains(gateway: Pair) -> None:
    gw, info = gateway
    async with Http01Responder() as web01:
        cid = await new_config(gw, http01_port=web01.port, validation_address="127.0.0.1")
        async with RawClient(info, cid) as c:
            await c.register()
            order, cert, key = await issue(c, web01, "www.example.test", "api.example.test")
            assert order["profile"] == "tls-server"
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert set(sans.get_values_for_type(x509.DNSName)) == {"www.example.test", "api.example.test"}
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
            resp = await c.post(order["certificate"])
            assert resp.headers["Content-Type"] == "application/pem-certificate-chain"
            chain = x509.load_pem_x509_certificates(resp.body)
            issuing = await gw.cas.local("issuing")
            assert [x.subject for x in chain[1:]] == [issuing.certificate.subject]
            chain[0].verify_directly_issued_by(issuing.certificate)
            alternates = [l for l in resp.headers.getall("Link") if 'rel="alternate"' in l]
            alt_url = alternates[0].split(">")[0].lstrip("<")
            alt = x509.load_pem_x509_certificates((await c.post(alt_url)).body)
            assert alt[-1].subject == alt[-1].issuer and len(alt) == len(chain) + 1  # ends with the root
            stranger = RawClient(info, cid)
            async with stranger:
                await stranger.register()
                assert (await stranger.post(order["certificate"])).problem == "unauthorized"
    serial = format(cert.serial_number, "x")
    rec = await gw.authority.certificate(serial)
    account_id = c.kid.rsplit("/", 1)[1]
    async with gw.store.read() as q:
        entity = await q.entities.find(f"acme:{account_id}", cid)
    assert rec.entity_id == entity.id and rec.protocol_config == cid and rec.profile == "tls-server"
    async with gw.store.read() as q:
        issued = await q.events.list(EventFilter(type="issue", serial=serial))
    assert issued and issued[0].status == "success" and issued[0].entity_id == entity.id


async def test_profiles_select_the_certificate_profile(gateway: Pair) -> None:
    gw, info = gateway
    async with Http01Responder() as web01:
        cid = await new_config(gw, http01_port=web01.port, validation_address="127.0.0.1")
        async with RawClient(info, cid) as c:
            await c.register()
            bad = await c.order("p.example.test", profile="sub-ca")
            assert bad.status == 400 and bad.problem == "invalidProfile"
            order, cert, _ = await issue(c, web01, "client.example.test", profile="tls-client")
    assert order["profile"] == "tls-client"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.subject.rfc4514_string() == "CN=client.example.test"  # tls-client needs a CN; the order gives it


async def test_challenge_types_per_identifier_kind(gateway: Pair) -> None:
    gw, info = gateway
    cid = await new_config(gw)
    async with RawClient(info, cid) as c:
        await c.register()
        order = (await c.order("*.wild.example.test", "plain.example.test", "192.0.2.7", "2001:db8::7")).json
        kinds = {}
        for url in order["authorizations"]:
            a = (await c.post(url)).json
            kinds[(a["identifier"]["value"], a.get("wildcard", False))] = sorted(x["type"] for x in a["challenges"])
    assert kinds == {
        ("wild.example.test", True): ["dns-01"],
        ("plain.example.test", False): ["dns-01", "http-01", "tls-alpn-01"],
        ("192.0.2.7", False): ["http-01", "tls-alpn-01"],
        ("2001:db8::7", False): ["http-01", "tls-alpn-01"],
    }


async def test_dns01_wildcard_issuance(gateway: Pair) -> None:
    gw, info = gateway
    async with DnsServer() as dns:
        cid = await new_config(gw, dns_resolver=f"127.0.0.1:{dns.port}")
        async with RawClient(info, cid) as c:
            await c.register()
            reply = await c.order("*.w.example.test")
            authz_url = reply.json["authorizations"][0]
            ch = (await c.post(authz_url)).json["challenges"][0]
            dns.txt["_acme-challenge.w.example.test"] = [txt_value(c.key_authorization(ch["token"]))]
            await c.post(ch["url"], {})
            assert (await c.poll(authz_url, ("valid", "invalid"))).json["status"] == "valid"
            der, _ = make_csr(["*.w.example.test"])
            ready = await c.poll(reply.location, ("ready",))
            done = await c.post(ready.json["finalize"], {"csr": b64url(der)})
            assert done.json["status"] == "valid"


async def test_failed_validation_invalidates_authz_and_order_with_subproblems(gateway: Pair) -> None:
    gw, info = gateway
    async with Http01Responder() as web01:
        cid = await new_config(gw, http01_port=web01.port, validation_address="127.0.0.1")
        async with RawClient(info, cid) as c:
            await c.register()
            reply = await c.order("fail.example.test")
            authz_url = reply.json["authorizations"][0]
            ch = next(x for x in (await c.post(authz_url)).json["challenges"] if x["type"] == "http-01")
            web01.tokens[ch["token"]] = "wrong"
            answered = await c.post(ch["url"], {})
            assert answered.json["status"] == "processing"
            assert f'<{authz_url}>;rel="up"' in answered.headers.getall("Link")
            authz = (await c.poll(authz_url, ("valid", "invalid"))).json
            assert authz["status"] == "invalid"
            failed = next(x for x in authz["challenges"] if x["type"] == "http-01")
            assert failed["status"] == "invalid"
            assert failed["error"]["type"] == "urn:ietf:params:acme:error:incorrectResponse"
            order = (await c.post(reply.location)).json
            assert order["status"] == "invalid"
            sub = order["error"]["subproblems"][0]
            assert sub["identifier"] == {"type": "dns", "value": "fail.example.test"}
            again = await c.post(ch["url"], {})
            assert again.status == 200 and again.json["status"] == "invalid"  # decided once
    async with gw.store.read() as q:
        failures = await q.events.list(EventFilter(type="acme_challenge", status="failure"))
    assert failures and failures[0].detail["identifier"] == "fail.example.test"


async def test_identifier_policy_at_new_order(gateway: Pair) -> None:
    gw, info = gateway
    cid = await new_config(gw, identifiers={"allow": ["*.corp.example", "10.0.0.0/8"], "wildcards": False})
    async with RawClient(info, cid) as c:
        await c.register()
        before = await counts(gw)
        reply = await c.order("ok.corp.example", "evil.example.test", "*.x.corp.example", "192.0.2.1")
        assert reply.status == 400 and reply.problem == "rejectedIdentifier"
        assert [s["identifier"]["value"] for s in reply.json["subproblems"]] == [
            "evil.example.test", "*.x.corp.example", "192.0.2.1"]
        assert await counts(gw) == before
        assert (await c.order("ok.corp.example", "10.1.2.3")).status == 201


async def test_rate_limits_answer_429_with_retry_after(gateway: Pair) -> None:
    gw, info = gateway
    cid = await new_config(gw, rate_limits={"orders_per_account": "2/PT1H", "accounts_per_config": "3/PT1H"})
    async with RawClient(info, cid) as c:
        await c.register()
        for n in range(2):
            assert (await c.order(f"r{n}.example.test")).status == 201
        before = await counts(gw)
        limited = await c.order("r3.example.test")
        assert limited.status == 429 and limited.problem == "rateLimited"
        assert 0 < int(limited.headers["Retry-After"]) <= 3601
        assert await counts(gw) == before
    for _ in range(2):
        async with RawClient(info, cid) as other:
            assert (await other.register()).status == 201
    async with RawClient(info, cid) as fourth:
        refused = await fourth.register()
        assert refused.status == 429 and refused.problem == "rateLimited" and "Retry-After" in refused.headers


async def test_orders_and_authorizations_expire(gateway: Pair) -> None:
    gw, info = gateway
    clock = gw.clock = FakeClock()  # the gateway's injected clock: time moves when the test says
    cid = await new_config(gw, order_lifetime="PT1S", authz_lifetime="PT1S")
    async with RawClient(info, cid) as c:
        await c.register()
        reply = await c.order("late.example.test")
        authz_url = reply.json["authorizations"][0]
        assert (await c.post(reply.location)).json["status"] == "pending"
        clock.advance(1.2)
        order = (await c.post(reply.location)).json
        assert order["status"] == "invalid"
        authz = (await c.post(authz_url)).json
        assert authz["status"] == "expired"
        answered = await c.post(authz["challenges"][0]["url"], {})
        assert answered.problem == "malformed" and "expired" in answered.json["detail"]
        der, _ = make_csr(["late.example.test"])
        assert (await c.post(order["finalize"], {"csr": b64url(der)})).problem == "orderNotReady"
        listed = (await c.post(c.kid + "/orders")).json["orders"]
        assert reply.location not in listed


async def test_requested_validity_is_honoured_within_the_profile(gateway: Pair) -> None:
    gw, info = gateway
    async with Http01Responder() as web01:
        cid = await new_config(gw, http01_port=web01.port, validation_address="127.0.0.1")
        async with RawClient(info, cid) as c:
            await c.register()
            now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
            too_long = await c.order("v.example.test", notAfter=(now + dt.timedelta(days=800)).isoformat())
            assert too_long.problem == "malformed" and "maximum" in too_long.json["detail"]
            na = now + dt.timedelta(days=10)
            order, cert, _ = await issue(c, web01, "v.example.test", notAfter=na.strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert order["notAfter"] == na.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert cert.not_valid_after_utc == na


async def test_finalize_refuses_bad_csrs_and_leaves_the_order_ready(gateway: Pair, tmp_path: Path) -> None:
    from tests.support import openssl

    gw, info = gateway
    # SHA-1 stays refused here (only a Windows configuration accepts it): openssl still signs so
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "sha1.key"),
            "-subj", "/CN=csr.example.test", "-addext", "subjectAltName=DNS:csr.example.test", "-sha1",
            "-outform", "DER", "-out", str(tmp_path / "sha1.der"))
    async with Http01Responder() as web01:
        cid = await new_config(gw, http01_port=web01.port, validation_address="127.0.0.1")
        async with RawClient(info, cid) as c:
            await c.register()
            async with gw.store.read() as q:
                certificates = await q.certificates.count()
            reply = await c.order("csr.example.test")
            await authorize(c, reply.json, web01)
            ready = (await c.poll(reply.location, ("ready",))).json
            account_csr, _ = make_csr(["csr.example.test"], key=c.key.key._wrapped)
            weak, _ = make_csr(["csr.example.test"], key=rsa.generate_private_key(65537, 1024))
            missing, _ = make_csr(["other.example.test"])
            sha1 = (tmp_path / "sha1.der").read_bytes()
            for der, needle in ((account_csr, "account key"), (weak, "RSA"), (missing, "not in the order"),
                                (b"garbage", "CSR"), (sha1, "SHA-1")):
                refused = await c.post(ready["finalize"], {"csr": b64url(der)})
                assert refused.problem == "badCSR" and needle in refused.json["detail"], refused.json
            assert (await c.post(reply.location)).json["status"] == "ready"
            async with gw.store.read() as q:
                assert await q.certificates.count() == certificates


async def test_manual_approval_keeps_the_order_processing_until_decided(gateway: Pair) -> None:
    gw, info = gateway
    async with Http01Responder() as web01:
        cid = await new_config(gw, approval="manual", http01_port=web01.port, validation_address="127.0.0.1")
        async with RawClient(info, cid) as c:
            await c.register()
            results = []
            for name in ("approve.example.test", "reject.example.test"):
                reply = await c.order(name)
                await authorize(c, reply.json, web01)
                ready = (await c.poll(reply.location, ("ready",))).json
                der, _ = make_csr([name])
                held = await c.post(ready["finalize"], {"csr": b64url(der)})
                assert held.json["status"] == "processing" and held.headers["Retry-After"] == "60"
                results.append(reply.location)
            async with gw.store.read() as q:
                pending = {r.id for r in await q.requests.list(status="pending")}
            approve_id, reject_id = (f"acme-{url.rsplit('/', 1)[1]}" for url in results)
            assert pending == {approve_id, reject_id}
            await gw.authority.approve(approve_id, "operator")
            await gw.authority.reject(reject_id, "operator", "no")
            approved = (await c.post(results[0])).json
            rejected = (await c.post(results[1])).json
    assert approved["status"] == "valid" and "certificate" in approved
    assert rejected["status"] == "invalid" and "rejected" in rejected["error"]["detail"]


async def test_pre_authorization_and_authz_reuse(gateway: Pair) -> None:
    gw, info = gateway
    async with Http01Responder() as web01:
        cid = await new_config(gw, pre_authorization=True, http01_port=web01.port, validation_address="127.0.0.1")
        async with RawClient(info, cid) as c:
            await c.register()
            wild = await c.post(c.directory["newAuthz"], {"identifier": {"type": "dns", "value": "*.p.example.test"}})
            assert wild.problem == "rejectedIdentifier"
            pre = await c.post(c.directory["newAuthz"], {"identifier": {"type": "dns", "value": "pre.example.test"}})
            assert pre.status == 201 and pre.json["status"] == "pending"
            await authorize(c, {"authorizations": [pre.location]}, web01)
            order = await c.order("pre.example.test")
            assert order.json["status"] == "ready" and order.json["authorizations"] == [pre.location]
        off = await new_config(gw)
        async with RawClient(info, off) as c:
            await c.register()
            assert (await c.post(f"{info.https}/acme/{off}/new-authz",
                                 {"identifier": {"type": "dns", "value": "x.example.test"}})).status == 404


async def test_orders_list_pages(gateway: Pair) -> None:
    gw, info = gateway
    cid = await new_config(gw, orders_per_page=2)
    async with RawClient(info, cid) as c:
        await c.register()
        made = [(await c.order(f"l{n}.example.test")).location for n in range(3)]
        first = await c.post(c.kid + "/orders")
        assert first.json["orders"] == made[:2]
        nxt = [l for l in first.headers.getall("Link") if 'rel="next"' in l][0].split(">")[0].lstrip("<")
        second = await c.post(nxt)
        assert second.json["orders"] == made[2:] and not [l for l in second.headers.getall("Link") if "next" in l]
        other = RawClient(info, cid)
        async with other:
            await other.register()
            assert (await other.post(c.kid + "/orders")).problem == "unauthorized"


async def test_renewal_info_windows(gateway: Pair) -> None:
    gw, info = gateway
    async with Http01Responder() as web01:
        cid = await new_config(gw, http01_port=web01.port, validation_address="127.0.0.1", ari_retry_after="PT1H")
        async with RawClient(info, cid) as c:
            await c.register()
            _, cert, _ = await issue(c, web01, "ari.example.test")
            url = f"{c.directory['renewalInfo']}/{CertID.of(cert)}"
            window = await c.get(url)
            assert window.status == 200 and window.headers["Retry-After"] == "3600"
            start = dt.datetime.fromisoformat(window.json["suggestedWindow"]["start"].replace("Z", "+00:00"))
            end = dt.datetime.fromisoformat(window.json["suggestedWindow"]["end"].replace("Z", "+00:00"))
            nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
            assert nb < start < end < na and abs((start - nb) / (na - nb) - 0.667) < 0.01
            await gw.authority.revoke(format(cert.serial_number, "x"), RevocationReason.superseded, actor="test")
            urgent = (await c.get(url)).json["suggestedWindow"]
            assert dt.datetime.fromisoformat(urgent["end"].replace("Z", "+00:00")) <= dt.datetime.now(dt.timezone.utc)
            unknown = await c.get(f"{c.directory['renewalInfo']}/{CertID(b'x' * 20, 12345)}")
            assert unknown.status == 404 and unknown.problem == "malformed"
            assert (await c.get(f"{c.directory['renewalInfo']}/junk")).status == 400


async def test_always_valid_needs_setting_and_environment(gateway: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    gw, info = gateway
    guarded = await new_config(gw, challenge_validation="always-valid", validation_timeout=1,
                               http01_port=1, validation_address="127.0.0.1")
    monkeypatch.setenv(ALWAYS_VALID_ENV, "some-other-config")
    async with RawClient(info, guarded) as c:
        await c.register()
        order = (await c.order("g.example.test")).json
        ch = (await c.post(order["authorizations"][0])).json["challenges"][0]
        await c.post(ch["url"], {})
        assert (await c.poll(order["authorizations"][0], ("valid", "invalid"))).json["status"] == "invalid"
    bench = await new_config(gw, challenge_validation="always-valid", http01_port=1, validation_address="127.0.0.1")
    monkeypatch.setenv(ALWAYS_VALID_ENV, f"x,{bench}")
    async with RawClient(info, bench) as c:
        await c.register()
        order = (await c.order("b.example.test")).json
        ch = (await c.post(order["authorizations"][0])).json["challenges"][0]
        answered = await c.post(ch["url"], {})
        assert answered.json["status"] == "valid"


def _replica_of(info: GatewayInfo, where: Path, replicas: str) -> Path:
    """A second data directory serving the same SQLite file, with ``[store] replicas`` set."""
    shutil.copytree(info.data_dir, where, ignore=shutil.ignore_patterns("gateway.db*"))
    cfg = load_config(where)
    cfg.store.url, cfg.store.replicas = f"sqlite+aiosqlite:///{info.data_dir / 'gateway.db'}", replicas
    cfg.save()
    return where


async def test_two_replicas_share_nonces_and_accounts(tmp_path: Path, gateway: Pair) -> None:
    gw, info = gateway
    cid = await new_config(gw)
    async with running_gateway(_replica_of(info, tmp_path / "r1", "yes")) as (_, one), \
            running_gateway(_replica_of(info, tmp_path / "r2", "yes")) as (_, two):
        async with RawClient(one, cid) as a, RawClient(two, cid) as b:
            b.key = a.key
            await a.register()
            nonce = await a.nonce()
            b.kid = a.kid.replace(one.https, two.https)
            first = await b.post(b.kid, None, nonce=nonce)
            assert first.status == 200
            reused = await a.post(a.kid, None, nonce=nonce)
            assert reused.problem == "badNonce"
    # the store recorded it: that is what lets any replica refuse it
    async with gw.store.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(acme_schema.used_nonces))).scalar_one() >= 1


async def test_without_replicas_nonces_are_the_process_own_and_single_use(tmp_path: Path, gateway: Pair) -> None:
    """SQLite's default (replicas = auto -> no): nonces live in memory, per process."""
    gw, info = gateway
    cid = await new_config(gw)
    async with running_gateway(_replica_of(info, tmp_path / "r", "no")) as (_, other):
        async with RawClient(info, cid) as a, RawClient(other, cid) as b:
            b.key = a.key
            await a.register()
            b.kid = a.kid.replace(info.https, other.https)
            nonce = await a.nonce()
            elsewhere = await b.post(b.kid, None, nonce=nonce)  # minted by the other process
            assert elsewhere.problem == "badNonce"
            assert elsewhere.headers["Replay-Nonce"]  # the client retries with this one
            assert (await b.post(b.kid, None, nonce=elsewhere.headers["Replay-Nonce"])).status == 200
            assert (await a.post(a.kid, None, nonce=nonce)).status == 200
            assert (await a.post(a.kid, None, nonce=nonce)).problem == "badNonce"
    async with gw.store.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(acme_schema.used_nonces))).scalar_one() == 0


async def test_ip_identifier_issuance(gateway: Pair) -> None:
    gw, info = gateway
    async with Http01Responder() as web01:
        cid = await new_config(gw, http01_port=web01.port)
        async with RawClient(info, cid) as c:
            await c.register()
            _, cert, _ = await issue(c, web01, "127.0.0.1")
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert web01.requests == [f"127.0.0.1:{web01.port}"]


async def test_policy_is_checked_again_at_finalize(gateway: Pair) -> None:
    gw, info = gateway
    async with Http01Responder() as web01:
        cid = await new_config(gw, http01_port=web01.port, validation_address="127.0.0.1",
                               identifiers={"allow": ["*.example.test"]})
        async with RawClient(info, cid) as c:
            await c.register()
            reply = await c.order("later-banned.example.test")
            await authorize(c, reply.json, web01)
            ready = (await c.poll(reply.location, ("ready",))).json
            async with gw.store.read() as q:
                rec = await q.configs.get(cid)
            async with gw.store.transaction() as q:
                await q.configs.update(cid, settings={
                    **rec.settings, "identifiers": {"allow": ["*.example.test"], "deny": ["later-banned.example.test"]}})
            # no waiting: the front end sees the store's configuration generation move at once
            der, _ = make_csr(["later-banned.example.test"])
            refused = await c.post(ready["finalize"], {"csr": b64url(der)})
            assert refused.problem == "rejectedIdentifier"
            assert (await c.post(reply.location)).json["status"] == "ready"


async def test_revocation_reasons_and_refusals(gateway: Pair) -> None:
    gw, info = gateway
    async with Http01Responder() as web01:
        cid = await new_config(gw, http01_port=web01.port, validation_address="127.0.0.1")
        async with RawClient(info, cid) as c:
            await c.register()
            _, cert, _ = await issue(c, web01, "rev.example.test")
            der = b64url(cert.public_bytes(serialization.Encoding.DER))
            url = c.directory["revokeCert"]
            for reason in (2, 6, 7, 8, 10, "1", True):
                bad = await c.post(url, {"certificate": der, "reason": reason})
                assert bad.problem == "badRevocationReason", reason
            assert (await c.post(url, {"certificate": "bm90IGEgY2VydA"})).problem == "malformed"
            ok = await c.post(url, {"certificate": der, "reason": 4})
            assert ok.status == 200 and ok.body == b""
            again = await c.post(url, {"certificate": der, "reason": 4})
            assert again.problem == "alreadyRevoked"
    rec = await gw.authority.certificate(format(cert.serial_number, "x"))
    assert rec.status == "revoked" and rec.revocation_reason == 4
