"""The SCEP pkiMessage (protocols/scep/message.py, cms.py over gateway/edge/cms.py): the
PKIOperation message parameter as http.py decodes it, the SignedData and its signed
attributes, the leniently read signer certificate, signature verification, and the
FAILURE CertRep addressed back to it (transactionID and senderNonce echoed).

Declared errors: :class:`MalformedMessage` and the core's :class:`BadRequest` (HTTP 400),
:class:`ScepFailure` (a FAILURE CertRep).
"""

from __future__ import annotations

import datetime as dt
import functools

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from gateway.edge.cms import DIGESTS, Signer
from gateway.errors import GatewayError
from protocols.scep.http import decode_message
from protocols.scep.message import Outcome, build_cert_rep, parse_pki_message, verify_pki_message
from protocols.scep.types import FailInfo, MalformedMessage, ScepFailure

from ..seeds import exchanges
from .scep_envelope import _messages

DESCRIPTION = "SCEP pkiMessage: message= base64, SignedData, signed attributes, signer, CertRep"
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)


@functools.cache
def signer() -> Signer:
    meta = exchanges("scep")[0]["meta"] if exchanges("scep") else None
    if meta is None:
        from .ocsp import issuer

        cert, key = issuer()
        return Signer(cert, key)
    return Signer(x509.load_pem_x509_certificate(meta["ra_certificate"].encode()),
                  load_pem_private_key(meta["ra_key"].encode(), None))  # type: ignore[arg-type]


def seeds() -> list[bytes]:
    import base64

    out = _messages()
    out += [base64.b64encode(m) for m in out[:2]]  # the GET form's message parameter
    return out


def test_one_input(data: bytes) -> None:
    if data[:1] != b"\x30":
        try:
            data = decode_message(data.decode("ascii", "replace"))
        except GatewayError:
            return
    try:
        msg = parse_pki_message(data)
    except MalformedMessage:
        return
    try:
        verify_pki_message(msg, now=NOW, allowed_digests=tuple(DIGESTS), max_skew=dt.timedelta(hours=1))
        failure = ScepFailure(FailInfo.BAD_REQUEST, "fuzz")
    except ScepFailure as exc:
        failure = exc
    build_cert_rep(msg, Outcome.failed(failure), signer=signer(), certificates=[signer().certificate], now=NOW)
