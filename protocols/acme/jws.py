"""JWS as ACME uses it (RFC 8555 section 6.2): flattened JSON, one signature, checked strictly.

:func:`parse` turns request bytes into a :class:`ParsedJWS` (structure and
protected header checked, nothing verified yet); :func:`verify` checks the
signature with a key. Only a :class:`ParsedJWS` that passed :func:`verify` is used
by the resource handlers, and it can only be made by :func:`parse`.

josepy supplies JWK parsing, RFC 7638 thumbprints and the signature algorithms;
the checks around them (allowed algorithms, key sizes, curve matching the
algorithm, no unprotected header, no ``b64``/``crit``) live here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

import josepy
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from . import problems
from .nonces import b64url, b64url_decode

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
MAC_ALGORITHMS = ("HS256", "HS384", "HS512")  # EAB only
_EC_CURVE_FOR = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
MAX_JWS_BYTES = 256 * 1024


@dataclass(frozen=True)
class ParsedJWS:
    """A structurally valid flattened JWS; the signature is not verified yet."""

    protected: dict[str, Any]
    protected_b64: str
    payload_b64: str
    payload: bytes
    signature: bytes
    alg: str

    @property
    def url(self) -> str | None:
        value = self.protected.get("url")
        return value if isinstance(value, str) else None

    @property
    def nonce(self) -> str | None:
        value = self.protected.get("nonce")
        return value if isinstance(value, str) else None

    @property
    def kid(self) -> str | None:
        value = self.protected.get("kid")
        return value if isinstance(value, str) else None

    @property
    def jwk(self) -> dict[str, Any] | None:
        value = self.protected.get("jwk")
        return value if isinstance(value, dict) else None

    @property
    def signing_input(self) -> bytes:
        return f"{self.protected_b64}.{self.payload_b64}".encode()

    @property
    def post_as_get(self) -> bool:
        return self.payload_b64 == ""

    def json_payload(self) -> dict[str, Any]:
        """The payload as a JSON object (malformed otherwise)."""
        return _json_object(self.payload, "JWS payload")


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = _DECODER.decode(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise problems.malformed(f"{what} is not valid JSON") from None
    except RecursionError:  # JSON nested deeper than the parser's stack: hostile, not valid ACME
        raise problems.malformed(f"{what} is nested too deeply") from None
    if not isinstance(value, dict):
        raise problems.malformed(f"{what} must be a JSON object")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(name)


_DECODER = json.JSONDecoder(parse_constant=_no_constant)
"""Built once: ``json.loads`` with any keyword builds a decoder per call."""


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise problems.malformed(f"JWS {what} must be a base64url string")
    try:
        return b64url_decode(value)
    except ValueError:
        raise problems.malformed(f"JWS {what} is not valid base64url") from None


def parse(body: bytes | str | dict[str, Any], *, mac: bool = False, inner: bool = False) -> ParsedJWS:
    """Parse a flattened JWS; ``mac`` for an EAB binding (HMAC algorithms), ``inner`` for keyChange.

    Refuses the general and compact serialisations, unprotected headers, unknown
    critical extensions, ``b64: false`` and algorithms outside the allow-list.
    """
    if isinstance(body, dict):
        doc = body
    else:
        raw = body.encode() if isinstance(body, str) else body
        if len(raw) > MAX_JWS_BYTES:
            raise problems.malformed("request body too large", 413)
        doc = _json_object(raw, "request body")
    if "signatures" in doc:
        raise problems.malformed("JWS must use the flattened JSON serialization with one signature")
    if "header" in doc:
        raise problems.malformed("JWS must not have an unprotected header")
    unknown = set(doc) - {"protected", "payload", "signature"}
    if unknown or not {"protected", "payload", "signature"} <= set(doc):
        raise problems.malformed("JWS must have exactly 'protected', 'payload' and 'signature'")
    protected_b64 = doc["protected"]
    protected = _json_object(_b64(protected_b64, "protected header"), "JWS protected header")
    payload_b64 = doc["payload"]
    payload = _b64(payload_b64, "payload")
    signature = _b64(doc["signature"], "signature")
    if not signature:
        raise problems.malformed("JWS signature is empty")
    alg = protected.get("alg")
    allowed = MAC_ALGORITHMS if mac else ALGORITHMS
    if not isinstance(alg, str) or alg not in allowed:
        raise problems.bad_signature_algorithm(
            f"JWS algorithm {alg!r} is not allowed (use one of {', '.join(allowed)})", list(allowed)
        )
    if "crit" in protected or "b64" in protected:
        raise problems.malformed("JWS 'crit' and 'b64' header parameters are not supported")
    has_jwk, has_kid = "jwk" in protected, "kid" in protected
    if mac:
        if not isinstance(protected.get("kid"), str) or has_jwk:
            raise problems.malformed("the external account binding must name its key with 'kid' only")
        if "nonce" in protected:
            raise problems.malformed("the external account binding must not carry a nonce")
    else:
        if has_jwk == has_kid:
            raise problems.malformed("JWS header must contain exactly one of 'jwk' and 'kid'")
        if has_jwk and not isinstance(protected["jwk"], dict):
            raise problems.malformed("JWS 'jwk' must be a JSON object")
        if has_kid and not isinstance(protected["kid"], str):
            raise problems.malformed("JWS 'kid' must be a string")
        if inner:
            if not has_jwk:
                raise problems.malformed("the inner keyChange JWS must carry the new key as 'jwk'")
            if "nonce" in protected:
                raise problems.malformed("the inner keyChange JWS must not carry a nonce")
        elif "nonce" in protected and not isinstance(protected["nonce"], str):
            raise problems.bad_nonce("JWS 'nonce' must be a string")
    if not isinstance(protected.get("url"), str):
        raise problems.malformed("JWS header must contain a 'url' string")
    return ParsedJWS(protected, protected_b64, payload_b64, payload, signature, alg)


def raw_key(key: josepy.JWK) -> Any:
    """The cryptography key inside a josepy JWK (josepy wraps it for comparisons)."""
    inner = key.key
    return getattr(inner, "_wrapped", inner)


def load_jwk(obj: dict[str, Any]) -> josepy.JWK:
    """A public account key from its JWK; refuses private keys, weak RSA, unknown curves."""
    if "d" in obj or "p" in obj or "k" in obj:
        raise problems.malformed("the JWK must be a public key")
    if obj.get("kty") not in ("RSA", "EC"):
        raise problems.bad_public_key(f"key type {obj.get('kty')!r} is not supported (use RSA or EC)")
    try:
        key = cast(josepy.JWK, josepy.JWK.from_json(obj))
    except (josepy.errors.DeserializationError, ValueError, TypeError, KeyError):  # KeyError: a missing member
        raise problems.bad_public_key("the JWK is not a valid public key") from None
    public = raw_key(key)
    if isinstance(public, rsa.RSAPublicKey):
        if not MIN_RSA_BITS <= public.key_size <= MAX_RSA_BITS:
            raise problems.bad_public_key(
                f"RSA keys must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits (got {public.key_size})"
            )
        if public.public_numbers().e < 3 or public.public_numbers().e % 2 == 0:
            raise problems.bad_public_key("RSA public exponent is not acceptable")
    elif isinstance(public, ec.EllipticCurvePublicKey):
        if public.curve.name not in _EC_CURVE_FOR.values():
            raise problems.bad_public_key(f"curve {public.curve.name} is not supported")
    else:
        raise problems.bad_public_key("unsupported key")
    return key


def thumbprint(key: josepy.JWK) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url."""
    return b64url(key.thumbprint())


def public_jwk(key: josepy.JWK) -> dict[str, Any]:
    return key.public_key().to_partial_json()


def verify(jws: ParsedJWS, key: josepy.JWK) -> None:
    """Check the signature (and that the algorithm suits the key); malformed if it fails."""
    public = raw_key(key)
    if jws.alg.startswith(("RS", "PS")):
        ok_type = isinstance(public, rsa.RSAPublicKey)
    else:
        ok_type = isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == _EC_CURVE_FOR[jws.alg]
    if not ok_type:
        raise problems.malformed(f"JWS algorithm {jws.alg} does not match the key")
    algorithm = josepy.JWASignature.from_json(jws.alg)
    if not algorithm.verify(public, jws.signing_input, jws.signature):
        raise problems.malformed("JWS signature does not verify")


def verify_mac(jws: ParsedJWS, secret: bytes) -> bool:
    algorithm = josepy.JWASignature.from_json(jws.alg)
    return bool(algorithm.verify(secret, jws.signing_input, jws.signature))
