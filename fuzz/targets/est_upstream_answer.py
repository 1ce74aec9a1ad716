"""What an upstream EST server answers the gateway (gateway/ca/upstream/est.py): a
base64 (or DER) PKCS#7 certs-only body, for /cacerts (then the issuing CA and its chain
are picked out of the bag) and for /simpleenroll. The upstream is a server the operator
chose, not a client, but its bytes are still untrusted input.
Declared error: :class:`gateway.errors.GatewayError` (an upstream failure the core maps).
"""

from __future__ import annotations

import base64

from gateway.ca.upstream.est import issuing_and_chain, parse_certs_only
from gateway.errors import GatewayError

from ..seeds import capture_files, exchanges

DESCRIPTION = "EST upstream answer: base64/DER PKCS#7 certs-only, then the issuing CA and chain"


def seeds() -> list[bytes]:
    out = [base64.b64decode(x["response_body"]) for x in exchanges("est") if x.get("response_body")]
    for name in ("A1-cacerts-response.b64", "A1-cacerts-response.p7b.der", "A3-simpleenroll-response.b64"):
        out += capture_files("est", f"rfc7030/{name}")
    return [s for s in out if s]


def test_one_input(data: bytes) -> None:
    try:
        issuing_and_chain(parse_certs_only(data))
    except GatewayError:
        pass
