"""What an upstream CES (AD CS over MS-WSTEP) answers the gateway
(gateway/ca/upstream/wstep.py :func:`parse_answer`): a SOAP 1.2 envelope holding an RSTRC
(issued: the certificate in RequestedSecurityToken, the PKCS#7/CMC response with the chain;
pending: a RequestID) or a SOAP fault with CertificateEnrollmentWSDetail, then the fault's
mapping to the gateway's error. The upstream is a server the operator chose, not a client,
but its bytes are still untrusted input.
Declared error: :class:`gateway.errors.GatewayError` (an upstream failure the core maps).
"""

from __future__ import annotations

import datetime as dt

from gateway.ca.upstream.wstep import FAULT, parse_answer, refusal
from gateway.errors import GatewayError

from ..seeds import capture_files

DESCRIPTION = "AD CS (MS-WSTEP) upstream answer: RSTRC issued/pending or an enrollment fault"


def _built() -> list[bytes]:
    """Answers as this gateway's own CES writes them (issued, pending, faults)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from gateway.edge import xml as X
    from protocols.windows import cmc, soap, wssecurity, wstep

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz")])
    now = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    issued = cmc.pki_response(cmc.response_content(cmc.SUCCESS, 1, "Issued"), [cert], signer=None, signing_time=now)
    held = cmc.pki_response(cmc.response_content(cmc.PENDING, 1, "Taken Under Submission"), [], signer=None,
                            signing_time=now)
    out = []
    for reply in (wstep.issued(der, issued, "61"), wstep.pending(held, "62", "https://ces.example/CES")):
        out.append(X.serialize(soap.envelope(reply.action, reply.body)))
    faults = [
        wstep.EnrollmentFault("The request was denied by the certificate manager", wstep.CERTSRV_E_ADMIN_DENIED_REQUEST,
                              invalid_request=False, request_id="63"),
        wstep.EnrollmentFault("the username or password is wrong", wstep.E_ACCESSDENIED, invalid_request=False,
                              subcode=(wssecurity.WSSE, "FailedAuthentication")),
        wstep.EnrollmentFault("the CA is unreachable", wstep.RPC_S_SERVER_UNAVAILABLE, invalid_request=False,
                              receiver=True),
    ]
    out += [X.serialize(soap.fault_envelope(f)) for f in faults]
    return out


def seeds() -> list[bytes]:
    out = capture_files("xcep-wstep", "ms-wstep/4.1.*-response.xml")
    out += capture_files("xcep-wstep", "adcs_python-reference/CES-RSTRC*.xml")
    try:
        out += _built()
    except Exception:  # noqa: BLE001 - seeds are a help, never a reason not to fuzz
        pass
    return [s for s in out if s]


def test_one_input(data: bytes) -> None:
    try:
        answer = parse_answer(data)
        if answer.outcome == FAULT:
            refusal("fuzz", answer)
    except GatewayError:
        pass
