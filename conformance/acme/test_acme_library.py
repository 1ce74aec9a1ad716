"""The ``acme`` Python library (certbot's) as a client, for what the CLIs do not exercise:
keyChange, account and authorization deactivation, the orders list, revocation by the
certificate's key, ARI renewalInfo and ``replaces``, badNonce retry, and the negative cases
of the issue, each refused with the right problem type and nothing stored.

The library is synchronous; its calls run in a worker thread while the gateway
serves on this test's event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
from pathlib import Path
from typing import Any, AsyncIterator, Callable, TypeVar

import josepy as jose
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conformance.acme.support import (
    Http01Responder,
    RawClient,
    directory_url,
    make_csr,
    new_config,
    require_module,
    served,
)
from conformance.harness import GatewayInfo
from gateway.store.records import CertificateFilter, EventFilter

acme_client = require_module("acme.client", "pip install acme")
from acme import crypto_util, errors, jws, messages  # noqa: E402

from protocols.acme.wfe import TAPS  # noqa: E402
from protocols.acme.ari import CertID  # noqa: E402
from protocols.acme.store import AcmeStore  # noqa: E402

T = TypeVar("T")
ClientV2 = acme_client.ClientV2
ClientNetwork = acme_client.ClientNetwork


async def call(fn: Callable[..., T], *args: Any, **kw: Any) -> T:
    return await asyncio.to_thread(functools.partial(fn, *args, **kw))


class Env:
    """A served gateway, one ACME configuration, and an http-01 responder."""

    def __init__(self, gw: Any, info: GatewayInfo, config_id: str, web01: Http01Responder) -> None:
        self.gw, self.info, self.config_id, self.web01 = gw, info, config_id, web01

    @property
    def url(self) -> str:
        return directory_url(self.info, self.config_id)

    def client(self, key: jose.JWK | None = None, config_id: str | None = None) -> Any:
        """A ClientV2 (call in a thread: it fetches the directory)."""
        key = key or jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        alg = jose.ES256 if isinstance(key, jose.JWKEC) else jose.RS256
        net = ClientNetwork(key, alg=alg, verify_ssl=self.info.tls_ca, user_agent="gateway-conformance")  # type: ignore[arg-type]
        url = directory_url(self.info, config_id or self.config_id)
        return ClientV2(ClientV2.get_directory(url, net), net)

    def register(self, client: Any, **kw: Any) -> Any:
        return client.new_account(messages.NewRegistration.from_data(
            email="ops@example.test", terms_of_service_agreed=True, **kw))

    def authorize(self, client: Any, orderr: Any) -> None:
        for authzr in orderr.authorizations:
            if authzr.body.status == messages.STATUS_VALID:
                continue
            challb = next(c for c in authzr.body.challenges if c.chall.typ == "http-01")
            response, validation = challb.response_and_validation(client.net.key)
            self.web01.tokens[challb.chall.encode("token")] = validation
            client.answer_challenge(challb, response)

    def obtain(self, client: Any, *names: str, key: Any = None) -> tuple[Any, x509.Certificate, Any]:
        key = key or ec.generate_private_key(ec.SECP256R1())
        csr = crypto_util.make_csr(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()), list(names))
        orderr = client.new_order(csr)
        self.authorize(client, orderr)
        done = client.poll_and_finalize(orderr, dt.datetime.now() + dt.timedelta(seconds=60))
        return done, x509.load_pem_x509_certificates(done.fullchain_pem.encode())[0], key

    async def stored(self) -> dict[str, int]:
        counts = await AcmeStore(self.gw.door("acme").tables).counts()
        counts.pop("used_nonces")
        async with self.gw.store.read() as q:
            counts["certificates"] = await q.certificates.count()
            counts["revoked"] = await q.certificates.count(CertificateFilter(status="revoked"))
        return counts


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with served(tmp_path) as (gw, info), Http01Responder() as web01:
        cid = await new_config(gw, http01_port=web01.port, validation_address="127.0.0.1",
                               identifiers={"allow": ["*.example.test"]}, pre_authorization=True)
        yield Env(gw, info, cid, web01)


def problem_type(exc: BaseException) -> str:
    assert isinstance(exc, messages.Error), exc
    return str(exc.typ).rsplit(":", 1)[-1]


# --- accounts ------------------------------------------------------------------------------------
def _key_change(client: Any, new_key: jose.JWK) -> Any:
    """RFC 8555 section 7.3.5 with the library's JWS: inner JWS by the new key, outer by the account key."""
    url = client.directory["keyChange"]
    body = {"account": client.net.account.uri, "oldKey": client.net.key.public_key().to_partial_json()}
    inner = jws.JWS.sign(json.dumps(body).encode(), key=new_key, alg=jose.ES256, nonce=None, url=url)
    return client._post(url, inner)


async def test_key_change_and_account_deactivation(env: Env) -> None:
    client = await call(env.client)
    regr = await call(env.register, client)
    other = await call(env.client)
    other_regr = await call(env.register, other)

    # a key that already belongs to another account: 409 with that account's URL
    with pytest.raises(errors.ConflictError) as conflict:
        await call(_key_change, client, other.net.key)
    assert conflict.value.location == other_regr.uri

    new_key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    old_key = client.net.key
    response = await call(_key_change, client, new_key)
    assert response.status_code == 200 and response.json()["key"] == new_key.public_key().to_partial_json()
    client.net.key = new_key
    assert (await call(client.query_registration, regr)).uri == regr.uri
    # the old key no longer signs for the account
    client.net.key = old_key
    with pytest.raises(messages.Error) as stale:
        await call(client.query_registration, regr)
    assert problem_type(stale.value) == "accountDoesNotExist"  # onlyReturnExisting with the old key
    client.net.key = new_key
    async with env.gw.store.read() as q:
        events = await q.events.list(EventFilter(type="acme_key_change"))
    assert len(events) == 1

    deactivated = await call(client.deactivate_registration, regr)
    assert deactivated.body.status == "deactivated"
    with pytest.raises(messages.Error) as refused:
        await call(client.new_order, crypto_util.make_csr(
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
            ["x.example.test"]))
    assert problem_type(refused.value) == "unauthorized"
    async with env.gw.store.read() as q:
        entity = await q.entities.find(f"acme:{regr.uri.rsplit('/', 1)[1]}", env.config_id)
    assert entity.status == "inactive"
    again = await call(env.client, new_key)
    with pytest.raises(messages.Error) as reuse:
        await call(env.register, again)
    assert problem_type(reuse.value) == "unauthorized"


async def test_authorization_deactivation_invalidates_the_order(env: Env) -> None:
    client = await call(env.client)
    await call(env.register, client)
    der, _ = make_csr(["d1.example.test", "d2.example.test"])
    pem = x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM)
    orderr = await call(client.new_order, pem)
    authzr = await call(client.deactivate_authorization, orderr.authorizations[0])
    assert authzr.body.status == messages.STATUS_DEACTIVATED
    order = (await call(client._post_as_get, orderr.uri)).json()
    assert order["status"] == "invalid"
    with pytest.raises(messages.Error) as again:
        await call(client.deactivate_authorization, orderr.authorizations[0])
    assert problem_type(again.value) == "malformed"


async def test_orders_list(env: Env) -> None:
    client = await call(env.client)
    regr = await call(env.register, client)
    first, _, _ = await call(env.obtain, client, "o1.example.test")
    pem = x509.load_der_x509_csr(make_csr(["o2.example.test"])[0]).public_bytes(serialization.Encoding.PEM)
    pending = await call(client.new_order, pem)
    orders_url = (await call(client._post_as_get, regr.uri)).json()["orders"]
    listed = (await call(client._post_as_get, orders_url)).json()["orders"]
    assert listed == [first.uri, pending.uri]


# --- revocation and ARI -------------------------------------------------------------------------
async def test_revocation_by_the_certificate_key_and_twice(env: Env) -> None:
    client = await call(env.client)
    await call(env.register, client)
    _, cert, key = await call(env.obtain, client, "rk.example.test")
    holder = await call(env.client, jose.JWKEC(key=key))  # no account: the JWS carries the cert key as jwk
    await call(holder.revoke, cert, 1)
    rec = await env.gw.authority.certificate(format(cert.serial_number, "x"))
    assert rec.status == "revoked" and rec.revocation_reason == 1
    async with env.gw.store.read() as q:
        events = await q.events.list(EventFilter(type="revoke", serial=rec.serial))
    assert events[0].detail["actor"] == "acme:certificate-key"
    with pytest.raises(messages.Error) as twice:
        await call(client.revoke, cert, 0)
    assert problem_type(twice.value) == "alreadyRevoked"


async def test_ari_renewal_info_and_replaces(env: Env) -> None:
    client = await call(env.client)
    regr = await call(env.register, client)
    first, cert, _ = await call(env.obtain, client, "ari.example.test")
    renew_at, _ = await call(client.renewal_time, first.fullchain_pem.encode())
    assert renew_at is not None
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert cert.not_valid_before_utc + lifetime / 2 < renew_at < cert.not_valid_after_utc

    cert_id = str(CertID.of(cert))
    raw = RawClient(env.info, env.config_id, key=client.net.key, kid=regr.uri)
    async with raw:
        replacing = await raw.order("ari.example.test", replaces=cert_id)
        assert replacing.status == 201 and replacing.json["replaces"] == cert_id
        second = await raw.order("ari.example.test", replaces=cert_id)
        assert second.status == 409 and second.problem == "alreadyReplaced"
        unrelated = await raw.order("other.example.test", replaces=cert_id)
        assert unrelated.problem == "malformed"
        stranger = RawClient(env.info, env.config_id)
        async with stranger:
            await stranger.register()
            theft = await stranger.order("ari.example.test", replaces=cert_id)
            assert theft.problem == "unauthorized"
        ready = await raw.poll(replacing.location, ("ready",))
        der, _ = make_csr(["ari.example.test"])
        done = await raw.post(ready.json["finalize"], {"csr": jose.b64.b64encode(der).decode()})
        assert done.json["status"] == "valid"
    async with env.gw.store.read() as q:
        renewals = await q.events.list(EventFilter(type="renew", protocol_config=env.config_id))
    assert len(renewals) == 1 and renewals[0].status == "success"


async def test_bad_nonce_is_retried_by_the_library(env: Env) -> None:
    client = await call(env.client)
    regr = await call(env.register, client)
    spent = await call(client.net._get_nonce, env.url, client.directory["newNonce"])
    assert (await call(_signed_post, client, regr.uri, None, nonce=jose.b64.b64encode(spent).decode())).status_code == 200
    seen: list[tuple[int, str]] = []

    def tap(request: Any, body: bytes, response: Any) -> None:
        if request.path.endswith(regr.uri.rsplit("/", 1)[1]):
            seen.append((response.status, json.loads(response.body or b"{}").get("type", "")))

    TAPS.append(tap)
    try:
        client.net._nonces = {spent}  # the pool holds a nonce the server has seen
        again = await call(client._post_as_get, regr.uri)
    finally:
        TAPS.remove(tap)
    assert again.json()["status"] == "valid"
    assert seen == [(400, "urn:ietf:params:acme:error:badNonce"), (200, "")]


# --- negative cases: right problem type, nothing stored ------------------------------------------
def _signed_post(client: Any, url: str, payload: Any, *, nonce: str | None = None, signed_url: str | None = None) -> Any:
    """The library's own JWS, sent as-is (no retry), so a refusal is seen as the server sent it."""
    net = client.net
    raw = jose.b64.b64decode(nonce) if nonce else net._get_nonce(url, client.directory["newNonce"])
    data = net._wrap_in_jws(payload, raw, signed_url or url)
    return net._send_request("POST", url, data=data, headers={"Content-Type": "application/jose+json"})


async def test_negative_cases_change_nothing(env: Env) -> None:
    client = await call(env.client)
    regr = await call(env.register, client)
    order = messages.NewOrder(identifiers=[messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="n.example.test")])
    new_order_url = client.directory["newOrder"]
    before = await env.stored()

    # reused nonce
    nonce = await call(client.net._get_nonce, env.url, client.directory["newNonce"])
    spent = await call(_signed_post, client, regr.uri, None, nonce=jose.b64.b64encode(nonce).decode())
    assert spent.status_code == 200
    reused = await call(_signed_post, client, new_order_url, order, nonce=jose.b64.b64encode(nonce).decode())
    assert reused.status_code == 400 and reused.json()["type"].endswith(":badNonce")
    # wrong url in the protected header
    wrong_url = await call(_signed_post, client, new_order_url, order, signed_url=regr.uri)
    assert wrong_url.status_code == 403 and wrong_url.json()["type"].endswith(":unauthorized")
    # unknown kid
    ghost = await call(env.client)
    ghost.net.account = messages.RegistrationResource(uri=regr.uri[:-4] + "XXXX", body=messages.Registration())
    unknown = await call(_signed_post, ghost, new_order_url, order)
    assert unknown.status_code == 400 and unknown.json()["type"].endswith(":accountDoesNotExist")
    # signed by another key than the account's
    impostor = await call(env.client)
    impostor.net.account = regr
    forged = await call(_signed_post, impostor, new_order_url, order)
    assert forged.status_code == 400 and forged.json()["type"].endswith(":malformed")
    # order outside the identifier policy
    with pytest.raises(messages.Error) as outside:
        await call(client.new_order, x509.load_der_x509_csr(make_csr(["www.elsewhere.test"])[0]).public_bytes(
            serialization.Encoding.PEM))
    assert problem_type(outside.value) == "rejectedIdentifier"
    assert outside.value.subproblems[0].identifier.value == "www.elsewhere.test"
    assert await env.stored() == before

    # finalize before the authorizations are valid
    csr_pem = x509.load_der_x509_csr(make_csr(["f.example.test"])[0]).public_bytes(serialization.Encoding.PEM)
    orderr = await call(client.new_order, csr_pem)
    before = await env.stored()
    with pytest.raises(messages.Error) as early:
        await call(client.begin_finalization, orderr)
    assert problem_type(early.value) == "orderNotReady"
    assert await env.stored() == before

    # CSR with an extra name
    await call(env.authorize, client, orderr)
    await call(client.poll_authorizations, orderr, dt.datetime.now() + dt.timedelta(seconds=30))
    extra = orderr.update(csr_pem=x509.load_der_x509_csr(make_csr(["f.example.test", "g.example.test"])[0])
                          .public_bytes(serialization.Encoding.PEM))
    before = await env.stored()
    with pytest.raises(messages.Error) as bad_csr:
        await call(client.begin_finalization, extra)
    assert problem_type(bad_csr.value) == "badCSR" and "g.example.test" in bad_csr.value.detail
    assert await env.stored() == before
    assert (await call(client._post_as_get, orderr.uri)).json()["status"] == "ready"

    # revoke by a stranger
    _, cert, _ = await call(env.obtain, client, "s.example.test")
    stranger = await call(env.client)
    await call(env.register, stranger)
    before = await env.stored()
    with pytest.raises(messages.Error) as theft:
        await call(stranger.revoke, cert, 0)
    assert problem_type(theft.value) == "unauthorized"
    assert (await env.gw.authority.certificate(format(cert.serial_number, "x"))).status == "valid"
    assert await env.stored() == before


async def test_eab_wrong_mac_and_used_key_change_nothing(env: Env) -> None:
    from protocols.acme import eab
    from protocols.acme.keyring import Keyring

    cid = await new_config(env.gw, eab_required=True)
    key = await eab.create_key(AcmeStore(env.gw.door("acme").tables), Keyring(env.gw.door("acme").sealing_passphrase()), cid)
    first = await call(env.client, None, cid)
    binding = messages.ExternalAccountBinding.from_data(first.net.key.public_key(), key.record.kid, key.hmac_key,
                                                       first.directory)
    await call(env.register, first, external_account_binding=binding)
    before = await env.stored()

    wrong = await call(env.client, None, cid)
    forged = messages.ExternalAccountBinding.from_data(wrong.net.key.public_key(), key.record.kid,
                                                      jose.b64.b64encode(b"\x01" * 32).decode(), wrong.directory)
    with pytest.raises(messages.Error) as bad_mac:
        await call(env.register, wrong, external_account_binding=forged)
    assert problem_type(bad_mac.value) == "unauthorized" and "signature" in bad_mac.value.detail

    second = await call(env.client, None, cid)
    reused = messages.ExternalAccountBinding.from_data(second.net.key.public_key(), key.record.kid, key.hmac_key,
                                                      second.directory)
    with pytest.raises(messages.Error) as used:
        await call(env.register, second, external_account_binding=reused)
    assert problem_type(used.value) == "unauthorized" and "already bound" in used.value.detail
    assert await env.stored() == before
    bound = await AcmeStore(env.gw.door("acme").tables).get_eab(cid, key.record.kid)
    assert bound is not None and bound.account_id is not None
