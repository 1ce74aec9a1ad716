"""OCSP requests (gateway/status/ocsp.py, as responder.py and http.py use it): the GET
path's base64, the DER OCSPRequest, its CertIDs, extensions and optional signature,
the issuer match, and the signed response that echoes CertIDs and the nonce.

Declared error: :class:`gateway.errors.BadRequest` from :func:`parse_request` (the
responder answers ``malformedRequest``); nothing after parsing may raise.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp as x509_ocsp

from gateway.errors import BadRequest
from gateway.status.ocsp import (
    ResponderIdentity,
    SingleStatus,
    build_response,
    matches_issuer,
    parse_request,
)
from gateway.store.records import serial_hex

DESCRIPTION = "OCSP request: GET base64, DER OCSPRequest, CertIDs, nonce, signature, response"
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)


@functools.cache
def issuer() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A throwaway self-signed CA (made once per process) that signs the responses."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "fuzz CA")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def seeds() -> list[bytes]:
    cert, key = issuer()
    out = []
    for digest in (hashes.SHA1(), hashes.SHA256()):
        builder = x509_ocsp.OCSPRequestBuilder().add_certificate(cert, cert, digest)
        out.append(builder.build().public_bytes(Encoding.DER))
        with_nonce = builder.add_extension(x509.OCSPNonce(b"0123456789abcdef"), critical=False)
        out.append(with_nonce.build().public_bytes(Encoding.DER))
    out.append(b"GET " + base64.b64encode(out[-1]))
    return out


def test_one_input(data: bytes) -> None:
    if data.startswith(b"GET "):  # the GET form: url-encoded base64 in the path
        try:
            data = base64.b64decode(unquote(data[4:].decode("latin-1")).replace(" ", "+"), validate=True)
        except (binascii.Error, ValueError):
            return
    try:
        request = parse_request(data)
    except BadRequest:
        return
    cert, key = issuer()
    statuses = []
    for cert_id in request.cert_ids:
        matches_issuer(cert_id, cert)
        serial_hex(cert_id.serial)
        statuses.append(SingleStatus(cert_id, "unknown", None, None, NOW, NOW + dt.timedelta(hours=1)))
    build_response(responder=ResponderIdentity(cert, key, (cert,)), statuses=statuses,
                   nonce=request.nonce, produced_at=NOW)
