"""A few DER building blocks for the small structures EST adds (CSR attributes).

asn1crypto has no schema for RFC 9908's templates; writing the handful of
tag-length-value triples directly keeps the encoding exact and readable.
"""

from __future__ import annotations

import re

from asn1crypto import core, parser

from gateway.errors import BadRequest

_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + content


def sequence(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def set_of(items: list[bytes]) -> bytes:
    """SET OF with its elements in DER order (sorted by encoding)."""
    return tlv(0x31, b"".join(sorted(items)))


def context(number: int, content: bytes, constructed: bool = True) -> bytes:
    return tlv((0xA0 if constructed else 0x80) | number, content)


def check_oid(value: str) -> str:
    if not isinstance(value, str) or not _OID.match(value):
        raise BadRequest(f"{value!r} is not a dotted object identifier")
    return value


def oid(value: str) -> bytes:
    return core.ObjectIdentifier(check_oid(value)).dump()


def integer(value: int) -> bytes:
    return core.Integer(value).dump()


def boolean(value: bool) -> bytes:
    return core.Boolean(value).dump()


def octet_string(value: bytes) -> bytes:
    return tlv(0x04, value)


def bit_string(value: bytes) -> bytes:
    return tlv(0x03, b"\x00" + value)


def utf8(value: str) -> bytes:
    return tlv(0x0C, value.encode())


def printable(value: str) -> bytes:
    return core.PrintableString(value).dump()


def null() -> bytes:
    return b"\x05\x00"


def children(der: bytes) -> list[bytes]:
    """The encodings of the elements inside one constructed value (definite lengths only)."""
    _, method, _, _, contents, trailer = parser.parse(der, strict=True)
    if method != 1 or trailer:
        raise ValueError("not a constructed value with a definite length")
    out, offset = [], 0
    while offset < len(contents):
        _, _, _, h, c, t = parser.parse(contents[offset:])
        if t:
            raise ValueError("indefinite length inside")
        out.append(contents[offset:offset + len(h) + len(c)])
        offset += len(h) + len(c)
    return out


def _walk(der: bytes, depth: int = 0) -> None:
    if depth > 32:
        raise ValueError("nested too deeply")
    _, method, _, _, _, trailer = parser.parse(der, strict=True)
    if trailer:
        raise ValueError("indefinite length")
    if method == 1:
        for child in children(der):
            _walk(child, depth + 1)


def parse_any(der: bytes, what: str) -> bytes:
    """``der`` if it is exactly one well-formed (tag-length-value) DER value, else BadRequest."""
    try:
        _walk(der)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"{what} is not a DER value: {exc}") from None
    return der
