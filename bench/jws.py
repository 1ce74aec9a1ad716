"""Just enough JOSE for an ACME client: ES256 JWS in flattened JSON, built by hand.

A load generator must not be the bottleneck, so this avoids josepy's object model:
one EC P-256 account key, its JWK and thumbprint computed once, and per request one
ECDSA signature converted from DER to the fixed-size r||s that JWS wants.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class AccountKey:
    """An ES256 signing key with its public JWK."""

    def __init__(self, key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self.key = key or ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        self.jwk = {
            "crv": "P-256",
            "kty": "EC",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
        }

    def sign(self, url: str, nonce: str, payload: Any | None, kid: str | None = None) -> bytes:
        """A flattened JWS body; ``payload=None`` is POST-as-GET (empty payload)."""
        protected: dict[str, Any] = {"alg": "ES256", "nonce": nonce, "url": url}
        if kid is None:
            protected["jwk"] = self.jwk
        else:
            protected["kid"] = kid
        p64 = b64url(_json(protected))
        pl64 = "" if payload is None else b64url(_json(payload))
        der = self.key.sign(f"{p64}.{pl64}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return _json({"protected": p64, "payload": pl64, "signature": b64url(sig)})
