"""EST bodies on the wire: base64 in (RFC 8951), base64 out, media types, multipart.

RFC 7030 carries every DER body base64-encoded. RFC 8951 settled that the
``Content-Transfer-Encoding`` header means nothing in HTTP, so a request body is
decoded the same way whether the header is there or not, with or without line
breaks. Responses are base64 in lines of 76 characters (the MIME limit) *and*
carry ``Content-Transfer-Encoding: base64``: Bouncy Castle's client (1.72, the
Debian one) only decodes a body when that header is present, and clients that
follow RFC 8951 ignore it.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from gateway.edge import der as der_codec
from gateway.errors import BadRequest

CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"
"""Spelled exactly so: some clients compare the whole header value."""
SERVER_GENERATED_KEY = "application/pkcs7-mime; smime-type=server-generated-key"
PKCS8 = "application/pkcs8"
CSRATTRS = "application/csrattrs"
PKCS10 = "application/pkcs10"

LINE = 76
_B64_BODY = re.compile(rb"^[A-Za-z0-9+/=\s]*$")
_PEM_CSR = re.compile(rb"-----BEGIN (?:NEW )?CERTIFICATE REQUEST-----(.*?)-----END (?:NEW )?CERTIFICATE REQUEST-----", re.S)

ACCEPTED_REQUEST_TYPES = frozenset(
    {PKCS10, "application/x-pkcs10", "application/octet-stream", "application/x-www-form-urlencoded", ""}
)
"""Request media types taken as a PKCS#10 body. curl sends ``x-www-form-urlencoded``
for ``--data-binary`` unless told otherwise; an absent type is taken at its word."""


def encode_base64(der: bytes) -> bytes:
    """Base64 in CRLF-terminated lines of at most 76 characters (RFC 2045 section 6.8)."""
    text = base64.b64encode(der)
    return b"".join(text[i:i + LINE] + b"\r\n" for i in range(0, len(text), LINE))


def decode_body(body: bytes, what: str = "request") -> bytes:
    """DER from an EST request body.

    Base64 with any line breaks or none (RFC 8951), with or without the
    Content-Transfer-Encoding header. A PEM-armoured CSR and raw DER are taken
    too: operators paste PEM into curl, and a DER request body is never all
    base64 characters (its long-form length octet is above 0x7f).
    """
    data = body.strip()
    if not data:
        raise BadRequest(f"empty {what} body")
    pem = _PEM_CSR.search(data)
    if pem is not None:
        data = pem.group(1)
    if _B64_BODY.match(data):
        compact = re.sub(rb"\s+", b"", data)
        try:
            der = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"{what} body is not valid base64") from None
    elif data[:1] == b"\x30":
        # Raw DER: cut at its own length, not at whitespace (its last byte may be 0x20 or 0x0a).
        der = _der_prefix(body.lstrip(), what)
    else:
        raise BadRequest(f"{what} body is neither base64 nor DER")
    if not der or der[:1] != b"\x30":
        raise BadRequest(f"{what} body does not decode to a DER structure")
    return der


def _der_prefix(raw: bytes, what: str) -> bytes:
    """The DER TLV at the start of ``raw``; only whitespace may follow it."""
    try:
        head = der_codec.header(raw)
    except ValueError:
        raise BadRequest(f"{what} body is truncated or not valid DER") from None
    if head.indefinite:
        raise BadRequest(f"{what} body is not valid DER (indefinite length)")
    total = head.total_length
    if raw[total:].strip():
        raise BadRequest(f"{what} body has data after its DER structure")
    return raw[:total]


def media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type value (parameters dropped, lower case)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def certs_only(certificates: list[x509.Certificate]) -> bytes:
    """A certs-only CMC Simple PKI Response: a degenerate SignedData (DER)."""
    return pkcs7.serialize_certificates(certificates, serialization.Encoding.DER)


@dataclass(frozen=True)
class Part:
    """One body part of a multipart/mixed response (base64-encoded DER)."""

    content_type: str
    der: bytes


def multipart(parts: list[Part]) -> tuple[str, bytes]:
    """(Content-Type header value, body) of a multipart/mixed response.

    The boundary is a bare token, never quoted: Bouncy Castle takes everything
    after ``boundary=`` literally.
    """
    boundary = "est-" + secrets.token_hex(12)
    out = bytearray()
    for part in parts:
        out += f"--{boundary}\r\n".encode()
        out += f"Content-Type: {part.content_type}\r\n".encode()
        out += b"Content-Transfer-Encoding: base64\r\n\r\n"
        out += encode_base64(part.der)
    out += f"--{boundary}--\r\n".encode()
    return f"multipart/mixed; boundary={boundary}", bytes(out)
