"""Manual approval (PENDING, CertPoll, resent PKCSReq) and GetCert / GetCRL."""

from __future__ import annotations

from cryptography import x509

from conformance.scep.simulator import ScepTestClient, make_csr
from gateway.store.records import EventFilter
from protocols.scep.types import FailInfo, MessageType, PkiStatus

from .conftest import STATIC, Env

MANUAL = "/scep/manual"


async def pending_request(env: Env) -> tuple[ScepTestClient, bytes, str, bytes]:
    await env.add_manual_config()
    device = await env.device("manual", cn="held")
    csr = make_csr(device.key, "held-device", challenge=STATIC)
    body, tid, nonce = device.pkcs_req(csr)
    rep = await env.post(body, MANUAL)
    assert rep.status is PkiStatus.PENDING and rep.fail_info is None
    assert (rep.transaction_id, rep.recipient_nonce) == (tid, nonce)
    assert rep.envelope == b""  # nothing to deliver yet
    return device, body, tid, csr


async def poll(env: Env, device: ScepTestClient, tid: str) -> object:
    ca = (await env.ca_chain("manual"))[0]
    body, _poll_tid, nonce = device.cert_poll(ca.subject, x509.Name.from_rfc4514_string("CN=held-device"), tid)
    rep = await env.post(body, MANUAL)
    assert (rep.transaction_id, rep.recipient_nonce) == (tid, nonce)
    return rep


async def test_pending_then_approved_with_certpoll(env: Env) -> None:
    device, _body, tid, _csr = await pending_request(env)
    held = await env.core.get_request(tid)  # the transactionID names the core request
    assert held is not None and held.status == "pending" and held.protocol_config == "manual"
    assert (await poll(env, device, tid)).status is PkiStatus.PENDING
    assert await env.certificate_count("manual") == 0
    issued = await env.gw.authority.approve(tid, "operator")
    rep = await poll(env, device, tid)
    assert rep.status is PkiStatus.SUCCESS
    assert device.issued(rep)[0].serial_number == issued.serial
    events = await env.core.list_events(EventFilter(type="issue", status="pending", protocol_config="manual"))
    assert events and events[0].request_id == tid


async def test_resent_pkcsreq_polls_instead_of_requesting_again(env: Env) -> None:
    """certmonger polls by resending its PKCSReq (same transactionID and CSR)."""
    device, body, tid, _csr = await pending_request(env)
    again = await env.post(body, MANUAL)  # the one-time semantics are per transaction
    assert again.status is PkiStatus.PENDING
    assert len(await env.core.list_requests(status="pending")) == 1
    await env.gw.authority.approve(tid, "operator")
    rep = await env.post(body, MANUAL)
    assert rep.status is PkiStatus.SUCCESS and device.issued(rep)[0].subject.rfc4514_string() == "CN=held-device"


async def test_rejected_request_fails_the_poll(env: Env) -> None:
    device, _body, tid, _csr = await pending_request(env)
    await env.gw.authority.reject(tid, "operator", "unknown device")
    rep = await poll(env, device, tid)
    assert rep.status is PkiStatus.FAILURE and rep.fail_info is FailInfo.BAD_REQUEST
    assert "unknown device" in (rep.fail_text or "")


async def test_poll_for_unknown_transaction_or_by_another_key(env: Env) -> None:
    device, _body, tid, _csr = await pending_request(env)
    unknown = await poll(env, device, "no-such-transaction")
    assert unknown.fail_info is FailInfo.BAD_CERT_ID
    stranger = await env.device("manual")
    other = await poll(env, stranger, tid)
    assert (other.status, other.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_REQUEST)


async def test_a_second_request_under_a_pending_transaction_id_is_refused(env: Env) -> None:
    device, _body, tid, _csr = await pending_request(env)
    body, _, _ = device.pkcs_req(make_csr(device.key, "held-device-2", challenge=STATIC), transaction_id=tid)
    rep = await env.post(body, MANUAL)
    assert rep.fail_info is FailInfo.BAD_REQUEST and "awaiting approval" in (rep.fail_text or "")


async def test_get_cert_and_get_crl(env: Env) -> None:
    device = await env.device()
    cert = device.issued(await env.post(device.pkcs_req(make_csr(device.key, "fetch-me", challenge=STATIC))[0]))[0]
    ca = (await env.ca_chain())[0]
    rep = await env.post(device.issuer_and_serial(MessageType.GET_CERT, ca.subject, cert.serial_number)[0])
    assert rep.status is PkiStatus.SUCCESS and device.issued(rep) == [cert]
    missing = await env.post(device.issuer_and_serial(MessageType.GET_CERT, ca.subject, 12345)[0])
    assert missing.fail_info is FailInfo.BAD_CERT_ID
    crl_rep = await env.post(device.issuer_and_serial(MessageType.GET_CRL, ca.subject, cert.serial_number)[0])
    assert crl_rep.status is PkiStatus.SUCCESS
    from asn1crypto import cms

    sd = cms.ContentInfo.load(device.open(crl_rep))["content"]
    crl = x509.load_der_x509_crl(sd["crls"][0].chosen.dump())
    assert crl.issuer == ca.subject and crl.is_signature_valid(ca.public_key())
    wrong = await env.post(device.issuer_and_serial(
        MessageType.GET_CRL, x509.Name.from_rfc4514_string("CN=Somebody Else"), 1)[0])
    assert wrong.fail_info is FailInfo.BAD_CERT_ID
