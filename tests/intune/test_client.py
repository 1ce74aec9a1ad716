"""The Intune client against the simulator over real HTTPS: tokens through msal, Graph discovery,
validation and its refusals, retries, notifications as the library shapes them, revocations."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import uuid

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AttributeOID, NameOID

from conformance.intune.simulator import GRAPH_SCOPE, INTUNE_SCOPE, PKI_SERVICE, SCEP_SERVICE, IntuneSimulator
from gateway.errors import ErrorKind
from protocols.scep.intune.client import (NOT_FOUND, IntuneAuthError, IntuneClient, IntuneRefused,
                                          IntuneUnavailable, RevocationRequest, RevocationResult)

from .conftest import connection_for

PROVIDER = "enrollment-gateway-test/1.0"


def make_csr(challenge: str | None, cn: str = "device-1") -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    if challenge is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge.encode())
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def make_certificate(serial: int, not_after: dt.datetime) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Org"),
                        x509.NameAttribute(NameOID.COMMON_NAME, "Test Issuing CA")])
    return (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device-1")]))
            .issuer_name(issuer).public_key(key.public_key()).serial_number(serial)
            .not_valid_before(not_after - dt.timedelta(days=30)).not_valid_after(not_after)
            .sign(key, hashes.SHA256()))


async def test_validate_success(simulator: IntuneSimulator, intune: IntuneClient,
                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    challenge = simulator.issue_challenge("device-1", "user@contoso.com", subject_cn="device-1")
    csr = make_csr(challenge)

    activity = await intune.validate("txn-1", csr)

    assert uuid.UUID(activity).version == 4
    assert simulator.validations == [{"transactionId": "txn-1", "certificateRequest": base64.b64encode(csr).decode(),
                                      "callerInfo": PROVIDER}]
    (call,) = simulator.intune_calls("validateRequest")
    assert call.status == 200
    assert call.headers["api-version"] == "2018-02-20"
    assert call.headers["client-request-id"] == activity
    assert call.headers["UserAgent"] == PROVIDER
    assert call.headers["content-type"] == "application/json"
    assert simulator.token_requests == [GRAPH_SCOPE, INTUNE_SCOPE]  # one each: msal caches the tokens
    infos = [r.getMessage() for r in caplog.records if r.name == "gateway.scep.intune" and r.levelno == logging.INFO
             and "validateRequest" in r.getMessage()]
    assert len(infos) == 1 and activity in infos[0] and SCEP_SERVICE in infos[0] and "Success" in infos[0]
    everything = caplog.text
    assert simulator.client_secret not in everything
    for token in simulator._tokens:  # noqa: SLF001 - the bearer tokens it issued
        assert token not in everything


async def test_replayed_challenge_is_refused(simulator: IntuneSimulator, intune: IntuneClient) -> None:
    challenge = simulator.issue_challenge("device-1")
    await intune.validate("txn-1", make_csr(challenge))
    with pytest.raises(IntuneRefused) as caught:
        await intune.validate("txn-2", make_csr(challenge))
    assert caught.value.code == "ChallengeDecryptionError"
    assert caught.value.kind is ErrorKind.FORBIDDEN
    assert caught.value.activity_id == simulator.calls[-1].headers["client-request-id"]


async def test_unknown_challenge_is_refused(simulator: IntuneSimulator, intune: IntuneClient) -> None:
    with pytest.raises(IntuneRefused) as caught:
        await intune.validate("txn-1", make_csr("not-a-challenge-intune-issued"))
    assert caught.value.code == "ChallengeDecryptionError"


async def test_missing_challenge_and_subject_mismatch(simulator: IntuneSimulator, intune: IntuneClient) -> None:
    with pytest.raises(IntuneRefused) as caught:
        await intune.validate("txn-1", make_csr(None))
    assert caught.value.code == "ChallengePasswordMissing"
    challenge = simulator.issue_challenge("device-1", subject_cn="device-1")
    with pytest.raises(IntuneRefused) as caught:
        await intune.validate("txn-2", make_csr(challenge, cn="someone-else"))
    assert caught.value.code == "SubjectNameMismatch"


async def test_expired_challenge_is_refused(simulator: IntuneSimulator, intune: IntuneClient) -> None:
    challenge = simulator.issue_challenge("device-1")
    simulator.expire(challenge)
    with pytest.raises(IntuneRefused) as caught:
        await intune.validate("txn-1", make_csr(challenge))
    assert caught.value.code == "ChallengeExpired"


async def test_wrong_secret_is_an_auth_error_without_the_secret(simulator: IntuneSimulator,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong~" + uuid.uuid4().hex
    client = IntuneClient(connection_for(simulator, client_secret=wrong))
    try:
        with pytest.raises(IntuneAuthError) as caught:
            await client.validate("txn-1", make_csr(simulator.issue_challenge("device-1")))
    finally:
        await client.close()
    assert "invalid_client" in caught.value.detail and "AADSTS7000215" in caught.value.detail
    assert caught.value.kind is ErrorKind.UNAVAILABLE
    for text in (caught.value.detail, str(caught.value), repr(caught.value), caplog.text):
        assert wrong not in text and simulator.client_secret not in text
    assert simulator.calls == [] and simulator.graph_calls == 0
    assert wrong not in repr(connection_for(simulator, client_secret=wrong))


async def test_unknown_tenant_is_an_auth_error(simulator: IntuneSimulator) -> None:
    client = IntuneClient(connection_for(simulator, tenant=str(uuid.uuid4())))
    try:
        with pytest.raises(IntuneAuthError):
            await client.validate("txn-1", make_csr("x"))
    finally:
        await client.close()


@pytest.mark.parametrize("retries", [1, 3])
async def test_intune_down_is_unavailable_after_the_attempts(simulator: IntuneSimulator, retries: int,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.scep.intune")
    simulator.down = True
    client = IntuneClient(connection_for(simulator, retries=retries))
    try:
        with pytest.raises(IntuneUnavailable):
            await client.validate("txn-1", make_csr(simulator.issue_challenge("device-1")))
    finally:
        await client.close()
    assert [c.status for c in simulator.calls] == [503] * retries
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == retries - 1


async def test_retries_recover_from_transient_failures(simulator: IntuneSimulator,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.scep.intune")
    simulator.fail_next = 2
    client = IntuneClient(connection_for(simulator, retries=3))
    try:
        activity = await client.validate("txn-1", make_csr(simulator.issue_challenge("device-1")))
    finally:
        await client.close()
    assert [c.status for c in simulator.calls] == [503, 503, 200]
    assert {c.headers["client-request-id"] for c in simulator.calls} == {activity}  # one activity, three attempts
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


async def test_discovery_is_cached_and_refreshed_when_the_service_moves(simulator: IntuneSimulator,
                                                                        intune: IntuneClient) -> None:
    for n in range(3):
        await intune.validate(f"txn-{n}", make_csr(simulator.issue_challenge(f"device-{n}")))
    assert simulator.graph_calls == 1
    old = simulator.service_uri(SCEP_SERVICE)
    new = simulator.move_service(SCEP_SERVICE)
    assert new != old

    await intune.validate("txn-moved", make_csr(simulator.issue_challenge("device-moved")))

    assert simulator.graph_calls == 2
    assert simulator.calls[-1].path == new.removeprefix(simulator.base_url) + "/ScepActions/validateRequest"
    await intune.validate("txn-after", make_csr(simulator.issue_challenge("device-after")))
    assert simulator.graph_calls == 2


async def test_success_notification_body(simulator: IntuneSimulator, intune: IntuneClient) -> None:
    csr = make_csr("any")
    serial = 0x1A2B3C4D5E6F708192
    certificate = make_certificate(serial, dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=dt.UTC))

    activity = await intune.notify_success("txn-1", csr, certificate, "intune-ca")

    der = certificate.public_bytes(serialization.Encoding.DER)
    assert simulator.successes == [{
        "transactionId": "txn-1",
        "certificateRequest": base64.b64encode(csr).decode(),
        "certificateThumbprint": hashlib.sha1(der).hexdigest().upper(),  # noqa: S324
        "certificateSerialNumber": "1A2B3C4D5E6F708192",
        "certificateExpirationDateUtc": "2031-05-06T07:08:09.000Z",
        "issuingCertificateAuthority": "CN=Test Issuing CA,O=Example Org",
        "callerInfo": PROVIDER,
    }]
    assert simulator.calls[-1].headers["client-request-id"] == activity


async def test_failure_notification_body(simulator: IntuneSimulator, intune: IntuneClient) -> None:
    csr = make_csr("any")
    await intune.notify_failure("txn-1", csr, 0x80070005, "denied by policy " + "x" * 300)
    assert simulator.successes == []
    assert simulator.failures == [{
        "transactionId": "txn-1",
        "certificateRequest": base64.b64encode(csr).decode(),
        "hResult": 0x80070005,
        "errorDescription": ("denied by policy " + "x" * 300)[:255],
        "callerInfo": PROVIDER,
    }]


async def test_notification_refusal_carries_the_code(simulator: IntuneSimulator, intune: IntuneClient) -> None:
    certificate = make_certificate(7, dt.datetime(2031, 1, 1, tzinfo=dt.UTC))
    with pytest.raises(IntuneRefused) as caught:
        await intune.notify_success("txn-1", b"not a csr", certificate, "ca")
    assert caught.value.code == "CertificateRequestDecodingFailed"


async def test_revocations_round_trip(simulator: IntuneSimulator, intune: IntuneClient) -> None:
    first = simulator.queue_revocation("0A1B", "CN=Issuing A", "gateway\\ca-a")
    second = simulator.queue_revocation("0C2D", "CN=Issuing A")
    simulator.queue_revocation("0E3F", "CN=Issuing B")

    got = await intune.download_revocations(max_requests=10, issuer_name="CN=Issuing A")

    assert got == [RevocationRequest(first, "0A1B", "CN=Issuing A", "gateway\\ca-a"),
                   RevocationRequest(second, "0C2D", "CN=Issuing A", None)]
    assert simulator.revocation_downloads == [{"maxRequests": 10, "issuerName": "CN=Issuing A"}]
    assert await intune.download_revocations(issuer_name="CN=Issuing A") == []
    assert [r.serial_number for r in await intune.download_revocations(max_requests=1)] == ["0E3F"]

    await intune.upload_revocation_results([RevocationResult(first, True),
                                            RevocationResult(second, False, NOT_FOUND, "no such certificate")])

    assert simulator.revocation_results == [
        {"requestContext": first, "succeeded": True, "errorCode": 0, "errorMessage": ""},
        {"requestContext": second, "succeeded": False, "errorCode": 4004, "errorMessage": "no such certificate"},
    ]
    assert {c.headers["api-version"] for c in simulator.calls} == {"5019-05-05"}
    assert {c.service for c in simulator.calls} == {PKI_SERVICE}
    with pytest.raises(IntuneUnavailable):  # Intune answers {"value": false} for a context it never sent
        await intune.upload_revocation_results([RevocationResult(str(uuid.uuid4()), True)])


async def _token(session: aiohttp.ClientSession, simulator: IntuneSimulator) -> str:
    form = {"grant_type": "client_credentials", "client_id": simulator.client_id,
            "client_secret": simulator.client_secret, "scope": INTUNE_SCOPE}
    async with session.post(f"{simulator.base_url}/{simulator.tenant}/oauth2/v2.0/token", data=form) as resp:
        assert resp.status == 200
        token: str = (await resp.json())["access_token"]
        return token


@pytest.mark.parametrize(("api_version", "status"), [("2018-02-20", 200), ("2019-01-01", 400), (None, 400)])
async def test_simulator_checks_the_api_version(simulator: IntuneSimulator, api_version: str | None,
                                                status: int) -> None:
    import ssl
    context = ssl.create_default_context(cafile=str(simulator.ca_file))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
        headers = {"Authorization": f"Bearer {await _token(session, simulator)}",
                   "client-request-id": str(uuid.uuid4()), "UserAgent": PROVIDER}
        if api_version is not None:
            headers["api-version"] = api_version
        body = {"request": {"transactionId": "t", "certificateRequest": "", "callerInfo": PROVIDER}}
        url = simulator.service_uri(SCEP_SERVICE) + "/ScepActions/validateRequest"
        async with session.post(url, json=body, headers=headers) as resp:
            assert resp.status == status
            if status == 200:
                assert (await resp.json())["code"] == "CertificateRequestDecodingFailed"
