"""ACME request bodies: the flattened JWS, its protected header and JSON payload, the
account JWK, and a newOrder's identifiers (protocols/acme/jws.py, identifiers.py).

Declared error: :class:`protocols.acme.problems.Problem` (a problem document, 4xx).
"""

from __future__ import annotations

import base64
import json

from protocols.acme import jws, problems
from protocols.acme.identifiers import parse_identifiers

from ..seeds import exchanges, request_body

DESCRIPTION = "ACME flattened JWS + protected header + JSON payload + JWK + identifiers"


def _b64(doc: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()


def seeds() -> list[bytes]:
    out = [request_body(x) for x in exchanges("acme")]
    jwk = {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
           "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}
    out.append(json.dumps({
        "protected": _b64({"alg": "ES256", "jwk": jwk, "nonce": "abc", "url": "https://x/acme/new-account"}),
        "payload": _b64({"termsOfServiceAgreed": True}), "signature": "AAAA",
    }).encode())
    out.append(json.dumps({
        "protected": _b64({"alg": "HS256", "kid": "k", "url": "https://x/acme/new-account"}),
        "payload": _b64(jwk), "signature": "AAAA",
    }).encode())
    return out


def test_one_input(data: bytes) -> None:
    for mac, inner in ((False, False), (True, False), (False, True)):
        try:
            parsed = jws.parse(data, mac=mac, inner=inner)
        except problems.Problem:
            continue
        try:
            payload = parsed.json_payload() if not parsed.post_as_get else {}
            if "identifiers" in payload:
                parse_identifiers(payload["identifiers"])
        except problems.Problem:
            payload = {}
        # a keyChange payload is an inner JWS; a newAccount one may carry an EAB binding
        for nested, kind in ((payload, {"inner": True}), (payload.get("externalAccountBinding"), {"mac": True})):
            if isinstance(nested, dict):
                try:
                    jws.parse(nested, **kind)
                except problems.Problem:
                    pass
        if parsed.jwk is not None:
            try:
                key = jws.load_jwk(parsed.jwk)
                jws.thumbprint(key)
                jws.verify(parsed, key)
            except problems.Problem:
                pass
        if mac:
            jws.verify_mac(parsed, b"k" * 32)
