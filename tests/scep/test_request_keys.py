"""A PKCSReq's CSR with a key algorithm or curve nobody supports is badAlg, not a 500."""

from __future__ import annotations

import pytest
from asn1crypto import keys
from asn1crypto import csr as asn1_csr
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography import x509

from protocols.scep.service import parse_request_csr
from protocols.scep.types import FailInfo, ScepFailure


def _csr_der() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "odd-key")]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.DER)


def _with_spki_change(algorithm: str | None = None, curve: str | None = None) -> bytes:
    info = asn1_csr.CertificationRequest.load(_csr_der())
    alg = info["certification_request_info"]["subject_pk_info"]["algorithm"]
    if algorithm is not None:
        alg["algorithm"] = algorithm
    if curve is not None:
        alg["parameters"] = keys.ECDomainParameters(name="named", value=curve)
    return info.dump(force=True)


@pytest.mark.parametrize("der", [
    _with_spki_change(algorithm="1.3.6.1.4.1.99999.1"),  # an algorithm OID nobody knows
    _with_spki_change(curve="1.3.132.0.99"),  # an EC curve nobody knows
], ids=["unknown-algorithm", "unknown-curve"])
def test_an_unknown_key_algorithm_or_curve_is_badAlg(der: bytes) -> None:
    with pytest.raises(ScepFailure) as info:
        parse_request_csr(der)
    assert info.value.fail_info == FailInfo.BAD_ALG
