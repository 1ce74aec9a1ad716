"""RFC 7030 appendix A messages (../shared/captures/est) replayed against the gateway.

* A.1 /cacerts and A.3 /simpleenroll responses: what a client expects back. Ours
  must have the same certs-only shape (degenerate SignedData: no signers, no
  content, id-data) so every parser that reads the RFC's examples reads ours.
* A.2 /csrattrs: served byte for byte from an equivalent label setting.
* A.3 /simpleenroll request: POSTed as the client sent it. Its challengePassword
  is the tls-unique value of the RFC author's own TLS session and it is signed
  with SHA-1. Expected outcome (documented in DIVERGENCES.md): a label that
  checks linking sees a replayed CSR and answers 401 (libest's answer to a
  tls-unique mismatch); a label with linking off answers 400 for the SHA-1
  signature. Nothing is issued either way.
"""

from __future__ import annotations

import base64

import pytest
from asn1crypto import cms

from conformance.harness import SHARED_CAPTURES, in_ci

from .helpers import EstServer, basic, core, http_post, raw_exchange

CAPTURES = SHARED_CAPTURES / "est" / "rfc7030"


def capture(name: str) -> bytes:
    path = CAPTURES / name
    if not path.exists():
        if in_ci():
            pytest.fail(f"shared capture {name} not present (CI runs with ../shared beside the clone)")
        pytest.skip(f"shared capture {name} not present")
    return path.read_bytes()


def shape(der: bytes) -> dict:
    info = cms.ContentInfo.load(der, strict=True)
    signed = info["content"]
    return {
        "content_type": info["content_type"].native,
        "version": signed["version"].native,
        "digest_algorithms": len(signed["digest_algorithms"]),
        "encap": signed["encap_content_info"]["content_type"].native,
        "encap_content": signed["encap_content_info"]["content"].native,
        "signer_infos": len(signed["signer_infos"]),
        "crls": len(signed["crls"]) if signed["crls"].native else 0,
    }


async def test_cacerts_has_the_shape_of_rfc7030_a1(est: EstServer) -> None:
    a1 = capture("A1-cacerts-response.p7b.der")
    assert base64.b64decode(capture("A1-cacerts-response.b64")) == a1
    reply = await est.get("cacerts")
    ours = base64.b64decode(reply.body)
    assert shape(ours) == shape(a1)
    assert len(cms.ContentInfo.load(a1)["content"]["certificates"]) == 4  # the RFC's rollover set
    assert len(cms.ContentInfo.load(ours)["content"]["certificates"]) == 2


async def test_simpleenroll_response_has_the_shape_of_rfc7030_a3(est: EstServer) -> None:
    from .helpers import b64, make_csr

    a3 = capture("A3-simpleenroll-response.p7b.der")
    reply = await est.post("simpleenroll", b64(make_csr("shape-check")[0]), auth=await est.dev_auth())
    ours = base64.b64decode(reply.body)
    assert shape(ours) == shape(a3)
    assert len(cms.ContentInfo.load(a3)["content"]["certificates"]) == 1 == len(reply.certificates)


async def test_csrattrs_a2_served_byte_for_byte(est: EstServer) -> None:
    await est.label("a2", users={"user": "p"}, csrattrs={"oids": ["macAddress", "challengePassword", "secp384r1", "sha384"]})
    reply = await est.get("csrattrs", label="a2")
    assert reply.status == 200 and base64.b64decode(reply.body) == capture("A2-csrattrs-response.der")


def _a3_request(label: str, body: bytes):  # type: ignore[no-untyped-def]
    def build(_unique: bytes | None) -> bytes:
        return http_post(f"/.well-known/est/{label}/simpleenroll", body, {
            "Content-Type": "application/pkcs10", "Content-Transfer-Encoding": "base64",
            "Authorization": basic("user", "p"),
        })
    return build


@pytest.mark.parametrize("pop_linking,tls12,expected,reason", [
    ("optional", True, 401, "replayed tls-unique"),
    ("required", True, 401, "replayed tls-unique"),
    ("required", False, 401, "no tls-unique in TLS 1.3"),
    ("off", True, 400, "SHA-1 signature"),
])
async def test_a3_simpleenroll_request_is_refused_and_nothing_issued(est: EstServer, pop_linking: str, tls12: bool,
                                                                      expected: int, reason: str) -> None:
    await est.label("a3", users={"user": "p"}, pop_linking=pop_linking)
    for body in (capture("A3-simpleenroll-request.b64"),
                 base64.b64encode(capture("A3-simpleenroll-request.p10.der"))):
        status, headers, text, _ = await raw_exchange(est, _a3_request("a3", body), tls12=tls12)
        assert status == expected, reason
        if expected == 400:
            assert b"SHA1" in text
        else:
            assert headers["www-authenticate"] == 'Basic realm="EST a3"'
    assert await est.issued("a3") == 0
    assert await core(est.gw).entities(protocol_config="a3") == []
