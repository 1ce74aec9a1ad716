"""EST request bodies (protocols/est/wire.py, csr.py, serverkeygen.py): base64 with or
without line breaks (RFC 8951), PEM-armoured or raw DER, then the PKCS#10 and the
attributes EST reads from it, as /simpleenroll, /simplereenroll and /serverkeygen do.

EST takes no multipart request bodies (multipart/mixed is only the /serverkeygen
response, which the server builds); /fullcmc is refused before reading the body.
Declared error: :class:`gateway.errors.GatewayError` (routes.est_errors maps it).
"""

from __future__ import annotations

from gateway.errors import GatewayError
from protocols.est import wire

from ..seeds import capture_files, exchanges, request_body
from .csr import _BUILTIN, _est

DESCRIPTION = "EST request body: base64 / PEM / DER, then the PKCS#10 and its attributes"


def seeds() -> list[bytes]:
    out = [request_body(x) for x in exchanges("est") if x.get("request_body")]
    out += capture_files("est", "rfc7030/A3-simpleenroll-request.b64")
    out += capture_files("est", "rfc7030/A3-simpleenroll-request.p10.der")
    out.append(wire.encode_base64(_BUILTIN))
    return out


def test_one_input(data: bytes) -> None:
    try:
        der = wire.decode_body(data, "PKCS#10")
        _est(der)
    except GatewayError:
        pass
