"""EST body encoding: RFC 8951 input leniency, 76-column base64 output, multipart."""

from __future__ import annotations

import base64
import email
import email.policy

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.errors import BadRequest
from protocols.est import wire

from .helpers import make_csr


@pytest.fixture(scope="module")
def csr_der() -> bytes:
    csr, _ = make_csr("wire-test", ["wire.example"])
    return csr.public_bytes(serialization.Encoding.DER)


def test_output_is_base64_in_crlf_lines_of_at_most_76(csr_der: bytes) -> None:
    out = wire.encode_base64(csr_der * 3)
    lines = out.split(b"\r\n")
    assert lines[-1] == b"" and all(len(line) == 76 for line in lines[:-2]) and 0 < len(lines[-2]) <= 76
    assert b"\n" not in out.replace(b"\r\n", b"")
    assert base64.b64decode(out) == csr_der * 3


@pytest.mark.parametrize("variant", ["one-line", "lf-64", "crlf-76", "spaces-and-tabs", "trailing-newlines"])
def test_request_base64_with_or_without_line_breaks(csr_der: bytes, variant: str) -> None:
    text = base64.b64encode(csr_der)
    body = {
        "one-line": text,
        "lf-64": b"\n".join(text[i:i + 64] for i in range(0, len(text), 64)),
        "crlf-76": wire.encode_base64(csr_der),
        "spaces-and-tabs": b" \t".join(text[i:i + 10] for i in range(0, len(text), 10)),
        "trailing-newlines": text + b"\r\n\r\n",
    }[variant]
    assert wire.decode_body(body) == csr_der


def test_request_pem_and_raw_der_are_taken(csr_der: bytes) -> None:
    pem = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(csr_der) + b"-----END CERTIFICATE REQUEST-----\n"
    assert wire.decode_body(pem) == csr_der
    assert wire.decode_body(csr_der) == csr_der


@pytest.mark.parametrize("body,message", [
    (b"", "empty"),
    (b"   \r\n", "empty"),
    (b"MIIB!!!notbase64", "neither base64 nor DER"),
    (b"MIIBxyz", "not valid base64"),  # bad padding
    (base64.b64encode(b"hello world, not DER"), "does not decode to a DER structure"),
])
def test_malformed_bodies_are_bad_requests(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        wire.decode_body(body)


def test_media_type_ignores_parameters_and_case() -> None:
    assert wire.media_type("Application/PKCS10; charset=binary") == "application/pkcs10"
    assert wire.media_type(None) == ""


def test_certs_only_content_type_is_spelled_exactly() -> None:
    assert wire.CERTS_ONLY == "application/pkcs7-mime; smime-type=certs-only"


def test_multipart_parts_parse_with_a_mime_parser(csr_der: bytes) -> None:
    content_type, body = wire.multipart([wire.Part(wire.PKCS8, b"\x30\x03\x02\x01\x00"), wire.Part(wire.CERTS_ONLY, csr_der)])
    boundary = content_type.split("boundary=", 1)[1]
    assert content_type.startswith("multipart/mixed; boundary=") and '"' not in boundary
    message = email.message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body,
                                       policy=email.policy.HTTP)
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["application/pkcs8", "application/pkcs7-mime"]
    assert f"\r\nContent-Type: {wire.CERTS_ONLY}\r\n".encode() in body  # verbatim, unquoted
    assert all(p["Content-Transfer-Encoding"] == "base64" for p in parts)
    assert parts[0].get_payload(decode=True) == b"\x30\x03\x02\x01\x00"
    assert parts[1].get_payload(decode=True) == csr_der
    assert body.endswith(f"--{boundary}--\r\n".encode())


@pytest.mark.parametrize("last", [b" ", b"\n", b"\r", b"\t"])
def test_raw_der_ending_in_a_whitespace_byte_is_kept_whole(csr_der: bytes, last: bytes) -> None:
    """A signature's last byte can be 0x20/0x0a/...: stripping it would corrupt the CSR."""
    der = csr_der[:-1] + last
    assert wire.decode_body(der) == der
    assert wire.decode_body(der + b"\r\n") == der  # a client's trailing newline is tolerated


def test_raw_der_with_trailing_garbage_or_truncated_is_refused(csr_der: bytes) -> None:
    with pytest.raises(BadRequest, match="after its DER"):
        wire.decode_body(csr_der + b"junk")
    with pytest.raises(BadRequest, match="truncated"):
        wire.decode_body(csr_der[:-5])
