"""JWS parsing and verification: the structure, algorithm and key checks of RFC 8555 section 6.2."""

from __future__ import annotations

import json
from typing import Any

import josepy
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from conformance.acme.support import account_key, b64url, sign_jws
from protocols.acme import jws
from protocols.acme.problems import Problem

URL = "https://acme.example/acme/x/new-order"


def problem(fn: Any, *args: Any, **kw: Any) -> Problem:
    with pytest.raises(Problem) as info:
        fn(*args, **kw)
    return info.value


def test_a_signed_request_parses_and_verifies_with_its_key() -> None:
    key = account_key()
    parsed = jws.parse(json.dumps(sign_jws({"a": 1}, key, URL, nonce="n")))
    assert parsed.url == URL and parsed.nonce == "n" and parsed.jwk is not None and parsed.kid is None
    jws.verify(parsed, jws.load_jwk(parsed.jwk))
    assert parsed.json_payload() == {"a": 1}


@pytest.mark.parametrize("kind", ["RSA", "EC"])
def test_another_keys_signature_is_refused(kind: str) -> None:
    signer, other = account_key(kind), account_key(kind)
    parsed = jws.parse(json.dumps(sign_jws({}, signer, URL, nonce="n", kid="k")))
    p = problem(jws.verify, parsed, jws.load_jwk(other.public_key().to_partial_json()))
    assert p.type == "malformed" and "does not verify" in p.detail


def test_algorithm_must_fit_the_key_and_curve() -> None:
    key = account_key("EC")
    body = sign_jws({}, key, URL, nonce="n", kid="k")
    protected = json.loads(josepy.b64.b64decode(body["protected"]))
    protected["alg"] = "ES384"
    body["protected"] = b64url(json.dumps(protected).encode())
    p = problem(jws.verify, jws.parse(json.dumps(body)), jws.load_jwk(key.public_key().to_partial_json()))
    assert "does not match the key" in p.detail


@pytest.mark.parametrize("alg", ["none", "HS256", "EdDSA", None])
def test_disallowed_algorithms_are_badSignatureAlgorithm(alg: str | None) -> None:
    key = account_key()
    body = sign_jws({}, key, URL, nonce="n")
    protected = json.loads(josepy.b64.b64decode(body["protected"]))
    protected["alg"] = alg
    body["protected"] = b64url(json.dumps(protected).encode())
    p = problem(jws.parse, json.dumps(body))
    assert p.type == "badSignatureAlgorithm" and "ES256" in p.to_json()["algorithms"]


def test_hmac_is_only_for_external_account_bindings() -> None:
    secret = josepy.JWKOct(key=b"s" * 32)
    body = sign_jws({}, secret, URL, nonce=None, kid="kid-1", alg="HS256", embed_jwk=False)
    assert jws.parse(body, mac=True).kid == "kid-1"
    assert problem(jws.parse, body).type == "badSignatureAlgorithm"


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: {"signatures": [d]}, "flattened"),
    (lambda d: {**d, "header": {"kid": "x"}}, "unprotected"),
    (lambda d: {k: v for k, v in d.items() if k != "signature"}, "exactly"),
    (lambda d: {**d, "extra": 1}, "exactly"),
    (lambda d: {**d, "payload": "a+b/"}, "base64url"),
    (lambda d: {**d, "payload": "YQ=="}, "base64url"),
    (lambda d: {**d, "signature": ""}, "empty"),
])
def test_structure_is_strict(mutate: Any, needle: str) -> None:
    body = sign_jws({}, account_key(), URL, nonce="n")
    assert needle in problem(jws.parse, json.dumps(mutate(body))).detail


@pytest.mark.parametrize("extra, needle", [
    ({"kid": "https://x/acct/1"}, "exactly one of"),
    ({"crit": ["b64"], "b64": False}, "'crit' and 'b64'"),
    ({"url": 5}, "'url'"),
])
def test_protected_header_rules(extra: dict[str, Any], needle: str) -> None:
    body = sign_jws({}, account_key(), URL, nonce="n", extra=extra)
    assert needle in problem(jws.parse, json.dumps(body)).detail


def test_neither_jwk_nor_kid_is_refused() -> None:
    body = sign_jws({}, account_key(), URL, nonce="n", embed_jwk=False)
    assert "exactly one of" in problem(jws.parse, json.dumps(body)).detail


def test_inner_keychange_jws_needs_jwk_and_no_nonce() -> None:
    key = account_key()
    assert "nonce" in problem(jws.parse, sign_jws({}, key, URL, nonce="n"), inner=True).detail
    assert jws.parse(sign_jws({}, key, URL, nonce=None), inner=True).jwk is not None


def test_weak_private_and_symmetric_keys_are_refused() -> None:
    weak = josepy.JWKRSA(key=rsa.generate_private_key(65537, 1024)).public_key().to_partial_json()
    assert problem(jws.load_jwk, weak).type == "badPublicKey"
    private = josepy.JWKEC(key=ec.generate_private_key(ec.SECP256R1())).to_partial_json()
    assert "public key" in problem(jws.load_jwk, private).detail
    assert problem(jws.load_jwk, {"kty": "oct", "k": "c2VjcmV0"}).type in ("badPublicKey", "malformed")
    nums = ec.generate_private_key(ec.SECP256K1()).public_key().public_numbers()
    k1 = {"kty": "EC", "crv": "secp256k1", "x": b64url(nums.x.to_bytes(32, "big")),
          "y": b64url(nums.y.to_bytes(32, "big"))}
    assert problem(jws.load_jwk, k1).type == "badPublicKey"


def test_thumbprint_is_rfc7638() -> None:
    # RFC 7638 section 3.1 example key and thumbprint.
    jwk = {
        "kty": "RSA", "e": "AQAB",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKR"
             "XjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSq"
             "zs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G"
             "_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    }
    assert jws.thumbprint(jws.load_jwk(jwk)) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_json_nested_too_deeply_is_malformed_not_a_crash() -> None:
    """A body or payload nested beyond the JSON parser's stack (RecursionError) is a
    client error: 400 malformed, never a 500."""
    deep = "[" * 20_000 + "]" * 20_000
    assert len(deep) < jws.MAX_JWS_BYTES
    p = problem(jws.parse, deep)
    assert p.type == "malformed" and "nested too deeply" in p.detail
    key = account_key()
    signed = sign_jws({"a": 1}, key, URL, nonce="n")
    signed["payload"] = b64url(('{"a":' * 20_000 + "1" + "}" * 20_000).encode())
    parsed = jws.parse(json.dumps(signed))
    p = problem(parsed.json_payload)
    assert p.type == "malformed" and "nested too deeply" in p.detail
