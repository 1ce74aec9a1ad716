"""DER for the small structures the edges build by hand, and BER from real clients made DER.

Three jobs, one module, because all three are tag-length-value work:

* **Building**: :func:`tlv` and the few typed helpers EST's CSR attributes and the CMS
  module need (RFC 9908 templates, ECC-CMS-SharedInfo's cousins) where asn1crypto has
  no schema. Every header is written by asn1crypto's :func:`asn1crypto.parser.emit`, so
  the length encoding (X.690 8.1.3: short form below 128, else the minimal long form)
  lives in one library function and nowhere here.
* **Reading**: :func:`children`, :func:`parse_any` and :func:`value_length` walk encodings
  with asn1crypto's :func:`asn1crypto.parser.parse` (which checks every length against
  the bytes present).
* **Client BER**: Go's pkcs7 (micromdm scepclient, many MDM servers) and Java encoders
  write OCTET STRINGs in the *constructed* form with definite lengths, which BER allows
  and asn1crypto's schemas refuse (they take the constructed form only with indefinite
  lengths). :func:`normalize_octet_strings` and :func:`normalize_envelope` rewrite those
  values as primitive OCTET STRINGs. The value of a constructed OCTET STRING is the
  concatenation of its chunks, so flattening changes no value a signature or digest
  covers here (only envelope contents and eContent octets are rewritten, never signed
  attributes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from asn1crypto import core, parser

from gateway.errors import BadRequest

UNIVERSAL, APPLICATION, CONTEXT, PRIVATE = 0, 1, 2, 3
"""Tag classes (X.690 8.1.2.2), as asn1crypto numbers them."""

MAX_DEPTH = 64
"""Deepest nesting :func:`parse_ber` and :func:`parse_any` follow (real CMS is under 15)."""

_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


# --- building ---------------------------------------------------------------------------


def tlv(tag: int, content: bytes) -> bytes:
    """One DER value: ``tag`` is the identifier octet (class, constructed bit and a tag
    number below 31, e.g. ``0x30`` SEQUENCE, ``0xA0`` [0] constructed)."""
    if not 0 <= tag <= 0xFF or tag & 0x1F == 0x1F:
        raise ValueError(f"identifier octet {tag:#x} is not a low-tag-number form")
    return emit(tag >> 6, bool(tag & 0x20), tag & 0x1F, content)


def emit(tag_class: int, constructed: bool, number: int, content: bytes) -> bytes:
    """One DER value with any tag number (high numbers take the multi-octet form)."""
    return bytes(parser.emit(tag_class, int(constructed), number, content))


def sequence(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def set_of(items: list[bytes]) -> bytes:
    """SET OF with its elements in DER order (sorted by encoding, X.690 11.6)."""
    return tlv(0x31, b"".join(sorted(items)))


def context(number: int, content: bytes, constructed: bool = True) -> bytes:
    """A context-specific ``[number]`` value: constructed for EXPLICIT tagging or IMPLICIT
    over a constructed type, primitive for IMPLICIT over a primitive one."""
    return emit(CONTEXT, constructed, number, content)


def check_oid(value: str) -> str:
    """``value`` if it is a dotted object identifier, else :class:`BadRequest`."""
    if not isinstance(value, str) or not _OID.match(value):
        raise BadRequest(f"{value!r} is not a dotted object identifier")
    return value


def oid(value: str) -> bytes:
    return bytes(core.ObjectIdentifier(check_oid(value)).dump())


def integer(value: int) -> bytes:
    return bytes(core.Integer(value).dump())


def boolean(value: bool) -> bytes:
    return bytes(core.Boolean(value).dump())


def octet_string(value: bytes) -> bytes:
    return tlv(0x04, value)


def bit_string(value: bytes) -> bytes:
    """A BIT STRING of whole octets (no unused bits)."""
    return tlv(0x03, b"\x00" + value)


def utf8(value: str) -> bytes:
    return tlv(0x0C, value.encode())


def printable(value: str) -> bytes:
    return bytes(core.PrintableString(value).dump())


def null() -> bytes:
    return b"\x05\x00"


# --- reading ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """The identifier and length of one encoded value, and where its contents are."""

    tag_class: int
    constructed: bool
    number: int
    header_length: int
    content_length: int
    indefinite: bool  # BER indefinite length: contents end with an end-of-contents 00 00

    @property
    def total_length(self) -> int:
        return self.header_length + self.content_length + (2 if self.indefinite else 0)


def header(data: bytes) -> Header:
    """The header of the value at the start of ``data`` (the whole value must be present;
    ``ValueError`` when it is truncated or not BER at all)."""
    tag_class, method, number, head, contents, trailer = parser.parse(bytes(data))
    return Header(int(tag_class), bool(method), int(number), len(head), len(contents), bool(trailer))


def value_length(data: bytes) -> int:
    """How many bytes the one value at the start of ``data`` occupies (header, contents and
    any end-of-contents octets); ``ValueError`` when it is truncated."""
    return header(data).total_length


def children(der: bytes) -> list[bytes]:
    """The encodings of the elements inside one constructed value (definite lengths only)."""
    _, method, _, _, contents, trailer = parser.parse(der, strict=True)
    if method != 1 or trailer:
        raise ValueError("not a constructed value with a definite length")
    out: list[bytes] = []
    offset = 0
    while offset < len(contents):
        _, _, _, h, c, t = parser.parse(contents[offset:])
        if t:
            raise ValueError("indefinite length inside")
        out.append(contents[offset:offset + len(h) + len(c)])
        offset += len(h) + len(c)
    return out


def _walk(der: bytes, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
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


# --- client BER -------------------------------------------------------------------------


class BerError(ValueError):
    """Bytes that are not BER (truncated, too deep, trailing data)."""


@dataclass
class Node:
    """One BER value as a tree: contents for a primitive value, children for a constructed one."""

    tag_class: int
    constructed: bool
    number: int
    value: bytes = b""
    children: list[Node] = field(default_factory=list)

    def is_universal(self, number: int) -> bool:
        return self.tag_class == UNIVERSAL and self.number == number

    def is_context(self, number: int) -> bool:
        return self.tag_class == CONTEXT and self.number == number


def _parse(data: bytes, depth: int) -> tuple[Node, int]:
    """The value at the start of ``data`` and how many bytes it took."""
    if depth > MAX_DEPTH:
        raise BerError("nesting too deep")
    try:
        tag_class, method, number, head, contents, trailer = parser.parse(data)
    except (ValueError, TypeError) as exc:
        raise BerError(str(exc)) from None
    consumed = len(head) + len(contents) + len(trailer)
    if not method:
        return Node(tag_class, False, number, contents), consumed
    node = Node(tag_class, True, number)
    offset = 0
    while offset < len(contents):
        child, used = _parse(contents[offset:], depth + 1)
        node.children.append(child)
        offset += used
    return node, consumed


def parse_ber(data: bytes) -> Node:
    """The one BER value ``data`` holds (definite or indefinite lengths), as a tree."""
    node, end = _parse(bytes(data), 0)
    if end != len(data):
        raise BerError("trailing bytes")
    return node


def encode(node: Node) -> bytes:
    """DER lengths for a tree (definite everywhere; the children keep their order)."""
    if node.constructed:
        return emit(node.tag_class, True, node.number, b"".join(encode(c) for c in node.children))
    return emit(node.tag_class, False, node.number, node.value)


def _octets(node: Node) -> bytes:
    """The value of an OCTET STRING in either form."""
    if not node.constructed:
        return node.value
    return b"".join(_octets(c) for c in node.children)


def _flatten_octet_strings(node: Node) -> Node:
    """Universal constructed OCTET STRINGs become primitive, recursively."""
    if node.constructed and node.is_universal(4):
        return Node(UNIVERSAL, False, 4, _octets(node))
    if node.constructed:
        node.children = [_flatten_octet_strings(c) for c in node.children]
    return node


def _flatten_encrypted_content(node: Node) -> None:
    """``EncryptedContentInfo.encryptedContent [0] IMPLICIT OCTET STRING`` in constructed
    form (a sequence of OCTET STRING chunks) becomes the primitive ``80`` form."""
    if not node.constructed:
        return
    kids = node.children
    is_eci = (
        node.is_universal(16) and node.constructed and len(kids) == 3
        and kids[0].is_universal(6) and not kids[0].constructed
        and kids[1].is_universal(16) and kids[1].constructed
        and kids[2].is_context(0) and kids[2].constructed
        and all(c.is_universal(4) for c in kids[2].children)
    )
    if is_eci:
        kids[2] = Node(CONTEXT, False, 0, b"".join(_octets(c) for c in kids[2].children))
        return
    for child in kids:
        _flatten_encrypted_content(child)


def normalize_envelope(data: bytes) -> bytes:
    """DER-friendly form of an EnvelopedData/AuthEnvelopedData ContentInfo (unchanged when
    it is not BER we know how to flatten)."""
    try:
        root = parse_ber(data)
    except BerError:
        return data
    root = _flatten_octet_strings(root)
    _flatten_encrypted_content(root)
    return encode(root)


def normalize_octet_strings(data: bytes) -> bytes:
    """Flatten only universal constructed OCTET STRINGs (for a SignedData's eContent)."""
    try:
        return encode(_flatten_octet_strings(parse_ber(data)))
    except BerError:
        return data
