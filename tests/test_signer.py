"""gateway.ca.signer: certificates and CRLs put back together around a token's signature.

A :class:`TokenKey` here wraps a software key (the same calls SoftHSM2 gets in
conformance/backends/test_pkcs11.py); the bytes must be what cryptography and openssl
accept as signed by that key, and a token that signs with the wrong key is caught."""

from __future__ import annotations

import datetime as dt
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from gateway import keys
from gateway.ca.signer import TokenKey, hash_for, sign_certificate, sign_crl
from gateway.errors import Unavailable


class SoftwareToken(TokenKey):
    def __init__(self, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
                 signer: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None) -> None:
        self.key, self.signer = key, signer or key

    def public_key(self):  # type: ignore[no-untyped-def]
        return self.key.public_key()

    def sign(self, data, algorithm):  # type: ignore[no-untyped-def]
        if isinstance(self.signer, rsa.RSAPrivateKey):
            return self.signer.sign(data, padding.PKCS1v15(), algorithm)
        return self.signer.sign(data, ec.ECDSA(algorithm))


NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Token CA")])


def _builder(key: TokenKey) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return (x509.CertificateBuilder().subject_name(NAME).issuer_name(NAME).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True))


@pytest.mark.parametrize("algorithm", ["RSA-2048", "RSA-3072", "EC-P256", "EC-P384", "EC-P521"])
def test_certificate_and_crl_signed_by_the_token_key(algorithm: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    token = SoftwareToken(keys.generate_private_key(algorithm))  # type: ignore[arg-type]
    cert = sign_certificate(_builder(token), token)
    cert.verify_directly_issued_by(cert)
    assert cert.signature_hash_algorithm.name == hash_for(token).name  # type: ignore[union-attr]
    path = tmp_path / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out = subprocess.run(["openssl", "verify", "-CAfile", path, path], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr

    now = dt.datetime.now(dt.timezone.utc)
    crl = sign_crl(x509.CertificateRevocationListBuilder().issuer_name(NAME).last_update(now)
                   .next_update(now + dt.timedelta(days=1)), token)
    assert crl.is_signature_valid(token.public_key())  # type: ignore[arg-type]


def test_a_token_that_signs_with_another_key_is_caught() -> None:
    token = SoftwareToken(keys.generate_private_key("EC-P256"), signer=keys.generate_private_key("EC-P256"))  # type: ignore[arg-type]
    with pytest.raises(Unavailable, match="does not verify under the CA's public key"):
        sign_certificate(_builder(token), token)
