"""PKCS#10 requests as each protocol reads them: ACME finalize (protocols/acme/wfe/orders.py),
EST (protocols/est/csr.py) and SCEP's PKCSReq content (protocols/scep/service.py).

Declared errors: :class:`gateway.errors.GatewayError` (the core's BadCSR/BadKey/...,
mapped by each protocol's edge), ACME's :class:`Problem`, SCEP's :class:`ScepFailure`.
"""

from __future__ import annotations

import base64

from gateway.ca.builder import check_proof_of_possession, load_csr
from gateway.errors import GatewayError
from gateway.keys import check_key_strength
from protocols.acme import problems
from protocols.acme.wfe.orders import csr_identifiers
from protocols.est import csr as est_csr
from protocols.est import serverkeygen
from protocols.scep.service import _entity_name, parse_request_csr
from protocols.scep.types import ScepFailure

from ..seeds import capture_files, exchanges, request_body

DESCRIPTION = "PKCS#10 CSR as ACME finalize, EST and SCEP PKCSReq parse it"

# A minimal valid CSR (EC P-256, CN=fuzz, SAN fuzz.example), used when no other seed exists.
_BUILTIN = base64.b64decode(
    "MIH0MIGbAgEAMA8xDTALBgNVBAMMBGZ1enowWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARUkMsvkcI0qrzeRju0ks/or+gxxI3Y"
    "BrGY1xIR1b0C//2Uy41UxD6DxNGaHe0ojgJzMMye5TcPkjkjae6qnytyoCowKAYJKoZIhvcNAQkOMRswGTAXBgNVHREEEDAOggxm"
    "dXp6LmV4YW1wbGUwCgYIKoZIzj0EAwIDSAAwRQIgTjZPVaVY0Yfu/VZPPMAvN4lKgzrFN4s9Bt8HpVwViHoCIQDgiqfxZI6Mzrel"
    "m1qETjTPQEOfpmRRhnXbw79yNZrDQQ=="
)


def seeds() -> list[bytes]:
    from protocols.est.wire import decode_body

    out = [_BUILTIN]
    for x in exchanges("est"):
        body = request_body(x)
        if body:
            try:
                out.append(decode_body(body))
            except GatewayError:
                pass
    from .scep_envelope import fixture_plaintexts

    out += fixture_plaintexts()
    out += capture_files("est", "rfc7030/*.p10.der")
    out += capture_files("mde2", "*/*.p10.der")
    out += capture_files("xcep-wstep", "*/*.p10.der")
    out += capture_files("scep", "cryptlib-samples/scep_req0.der")
    return out


def _acme_finalize(der: bytes) -> None:
    """What finalize does with the decoded ``csr`` before it reaches the core."""
    try:
        csr = load_csr(der)
        check_proof_of_possession(csr)
        check_key_strength(csr.public_key())
    except GatewayError:
        return
    csr_identifiers(csr)


def _est(der: bytes) -> None:
    request = est_csr.parse(der)
    est_csr.refuse_weak_signature(request.csr)
    est_csr.challenge_password(request)
    est_csr.octet_attribute(request, est_csr.ASYMM_DECRYPT_KEY_ID)
    est_csr.smime_capabilities(request)
    est_csr.subject_alt_names(request.csr)
    est_csr.entity_name(request.csr)
    serverkeygen.requested_encryption(request)
    check_proof_of_possession(request.csr)


def _scep(der: bytes) -> None:
    csr = parse_request_csr(der)
    _entity_name(csr, "tid")


def test_one_input(data: bytes) -> None:
    try:
        _acme_finalize(data)
    except problems.Problem:
        pass
    try:
        _est(data)
    except GatewayError:
        pass
    try:
        _scep(data)
    except (ScepFailure, GatewayError):
        pass
