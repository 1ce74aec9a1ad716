"""BER that real SCEP clients send and asn1crypto will not load, rewritten as DER.

Go's pkcs7 (micromdm scepclient, many MDM servers) and Java encoders write OCTET
STRINGs in the *constructed* form with definite lengths: ``encryptedContent [0]``
as ``A0 .. 04 .. 04 ..`` and sometimes ``24 .. 04 ..``. BER allows it; asn1crypto only
accepts the constructed form with indefinite lengths. The value is the concatenation
of the chunks, so flattening changes nothing a signature or digest covers here (only
envelope contents and eContent octets are rewritten, never signed attributes).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_DEPTH = 64


class BerError(ValueError):
    pass


@dataclass
class Node:
    tag: bytes  # identifier octets
    constructed: bool
    value: bytes  # contents (primitive) or b"" when children are used
    children: list[Node]
    tag_class: int  # 0 universal, 2 context
    tag_number: int


def _read_tag(data: bytes, i: int) -> tuple[bytes, int, bool, int, int]:
    if i >= len(data):
        raise BerError("truncated tag")
    first = data[i]
    cls, constructed, number = first >> 6, bool(first & 0x20), first & 0x1F
    j = i + 1
    if number == 0x1F:
        number = 0
        while True:
            if j >= len(data):
                raise BerError("truncated tag")
            b = data[j]
            j += 1
            number = (number << 7) | (b & 0x7F)
            if not b & 0x80:
                break
    return data[i:j], j, constructed, cls, number


def _read_length(data: bytes, i: int) -> tuple[int | None, int]:
    if i >= len(data):
        raise BerError("truncated length")
    first = data[i]
    if first < 0x80:
        return first, i + 1
    if first == 0x80:
        return None, i + 1  # indefinite
    n = first & 0x7F
    if n > 4 or i + 1 + n > len(data):
        raise BerError("bad length")
    return int.from_bytes(data[i + 1 : i + 1 + n], "big"), i + 1 + n


def _parse(data: bytes, i: int, depth: int) -> tuple[Node, int]:
    if depth > MAX_DEPTH:
        raise BerError("nesting too deep")
    tag, j, constructed, cls, number = _read_tag(data, i)
    length, j = _read_length(data, j)
    if not constructed:
        if length is None:
            raise BerError("indefinite primitive")
        if j + length > len(data):
            raise BerError("truncated value")
        return Node(tag, False, data[j : j + length], [], cls, number), j + length
    children: list[Node] = []
    if length is None:
        while True:
            if data[j : j + 2] == b"\x00\x00":
                j += 2
                break
            child, j = _parse(data, j, depth + 1)
            children.append(child)
    else:
        end = j + length
        if end > len(data):
            raise BerError("truncated value")
        while j < end:
            child, j = _parse(data, j, depth + 1)
            children.append(child)
        if j != end:
            raise BerError("length mismatch")
    return Node(tag, True, b"", children, cls, number), j


def parse(data: bytes) -> Node:
    node, end = _parse(data, 0, 0)
    if end != len(data):
        raise BerError("trailing bytes")
    return node


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _octets(node: Node) -> bytes:
    """The value of an OCTET STRING in either form."""
    if not node.constructed:
        return node.value
    return b"".join(_octets(c) for c in node.children)


def encode(node: Node) -> bytes:
    if node.constructed:
        body = b"".join(encode(c) for c in node.children)
        return node.tag + _length(len(body)) + body
    return node.tag + _length(len(node.value)) + node.value


def _flatten_octet_strings(node: Node) -> Node:
    """Universal constructed OCTET STRINGs (0x24) become primitive (0x04), recursively."""
    if node.constructed and node.tag_class == 0 and node.tag_number == 4:
        return Node(b"\x04", False, _octets(node), [], 0, 4)
    if node.constructed:
        node.children = [_flatten_octet_strings(c) for c in node.children]
    return node


def _is_octet_string(node: Node) -> bool:
    return node.tag_class == 0 and node.tag_number == 4


def _flatten_encrypted_content(node: Node) -> None:
    """``EncryptedContentInfo.encryptedContent [0] IMPLICIT OCTET STRING`` in constructed
    form (a sequence of OCTET STRING chunks) becomes the primitive ``80`` form."""
    if not node.constructed:
        return
    kids = node.children
    is_eci = (
        node.tag == b"\x30" and len(kids) == 3 and kids[0].tag == b"\x06" and kids[1].tag == b"\x30"
        and kids[2].tag_class == 2 and kids[2].tag_number == 0 and kids[2].constructed
        and all(_is_octet_string(c) for c in kids[2].children)
    )
    if is_eci:
        kids[2] = Node(b"\x80", False, b"".join(_octets(c) for c in kids[2].children), [], 2, 0)
        return
    for child in kids:
        _flatten_encrypted_content(child)


def normalize_envelope(data: bytes) -> bytes:
    """DER-friendly form of an EnvelopedData/AuthEnvelopedData ContentInfo (unchanged when
    it is not BER we know how to flatten)."""
    try:
        root = parse(data)
    except BerError:
        return data
    root = _flatten_octet_strings(root)
    _flatten_encrypted_content(root)
    return encode(root)


def normalize_octet_strings(data: bytes) -> bytes:
    """Flatten only universal constructed OCTET STRINGs (for a SignedData's eContent)."""
    try:
        return encode(_flatten_octet_strings(parse(data)))
    except BerError:
        return data
