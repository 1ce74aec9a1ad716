"""gateway.edge.der: length encoding and parsing checked against X.690 by brute force.

Fuzz-ish: seeded random lengths, random trees written in every BER length form the
standard allows (short, minimal long, padded long, indefinite), and random garbage,
which may only ever raise the module's own ValueError kinds.
"""

from __future__ import annotations

import random

import pytest
from asn1crypto import core

from gateway.edge import der
from gateway.errors import BadRequest

SEED = 20240611


def x690_length(n: int) -> bytes:
    """X.690 8.1.3 / 10.1, written from the standard: short form below 128, else the
    minimal long form (first octet 0x80 | number of length octets)."""
    if n < 128:
        return bytes([n])
    octets: list[int] = []
    while n:
        octets.insert(0, n & 0xFF)
        n >>= 8
    return bytes([0x80 | len(octets)] + octets)


BOUNDARIES = [0, 1, 126, 127, 128, 129, 254, 255, 256, 257, 65534, 65535, 65536, 65537]


def _lengths() -> list[int]:
    rng = random.Random(SEED)
    return BOUNDARIES + [rng.randrange(0, 1 << rng.choice((7, 8, 12, 16, 20))) for _ in range(300)]


@pytest.mark.parametrize("tag", [0x04, 0x30, 0x31, 0xA0, 0x80, 0x0C])
def test_tlv_header_is_the_minimal_x690_form_and_reads_back(tag: int) -> None:
    for n in _lengths():
        content = bytes(n)
        encoded = der.tlv(tag, content)
        assert encoded[:1] == bytes([tag])
        assert encoded[1:-n or None] == x690_length(n), n
        head = der.header(encoded)
        assert (head.content_length, head.header_length, head.indefinite) == (n, 1 + len(x690_length(n)), False)
        assert head.constructed == bool(tag & 0x20) and head.number == tag & 0x1F
        assert der.value_length(encoded + b"trailing") == len(encoded)


def test_four_octet_lengths() -> None:
    n = (1 << 24) + 3  # 16 MiB: the first length needing four octets
    encoded = der.octet_string(bytes(n))
    assert encoded[:6] == b"\x04\x84\x01\x00\x00\x03"
    assert der.header(encoded).content_length == n


def test_truncated_values_are_value_errors() -> None:
    rng = random.Random(SEED)
    for n in _lengths()[:120]:
        encoded = der.tlv(0x04, rng.randbytes(n))
        for cut in {0, 1, len(encoded) // 2, len(encoded) - 1}:
            if cut >= len(encoded):
                continue
            with pytest.raises(ValueError):
                der.header(encoded[:cut])


def test_tags_above_30_and_context_tags() -> None:
    assert der.emit(der.CONTEXT, False, 31, b"x") == b"\x9f\x1f\x01x"
    assert der.emit(der.APPLICATION, True, 200, b"") == b"\x7f\x81\x48\x00"
    assert der.context(2, b"\x04\x00") == b"\xa2\x02\x04\x00"
    assert der.context(0, b"ab", constructed=False) == b"\x80\x02ab"
    with pytest.raises(ValueError):
        der.tlv(0x1F, b"")  # the high-tag-number escape needs emit()


def test_typed_helpers_match_asn1crypto() -> None:
    assert der.oid("1.2.840.113549.1.9.7") == core.ObjectIdentifier("1.2.840.113549.1.9.7").dump()
    assert der.integer(-129) == core.Integer(-129).dump()
    assert der.boolean(True) == core.Boolean(True).dump()
    assert der.utf8("é" * 100) == core.UTF8String("é" * 100).dump()
    assert der.printable("abc") == core.PrintableString("abc").dump()
    assert der.bit_string(b"\xff") == core.BitString((1,) * 8).dump()
    assert der.null() == core.Null().dump()
    assert der.set_of([b"\x05\x00", b"\x02\x01\x01"]) == b"\x31\x05\x02\x01\x01\x05\x00"
    with pytest.raises(BadRequest):
        der.oid("1.2.bad")


# --- random trees in every BER length form ----------------------------------------------


def random_tree(rng: random.Random, depth: int = 0) -> der.Node:
    tag_class = rng.choice((der.UNIVERSAL, der.CONTEXT, der.CONTEXT, der.APPLICATION))
    number = rng.choice((0, 1, 2, 4, 16, 17, 30, 31, 127, 128, 1000))
    if depth < 5 and rng.random() < 0.45:
        kids = [random_tree(rng, depth + 1) for _ in range(rng.randrange(0, 5))]
        return der.Node(tag_class, True, number, children=kids)
    if tag_class == der.UNIVERSAL and number == 0:
        number = 4  # a primitive universal 0 with length 0 would read as end-of-contents
    return der.Node(tag_class, False, number, rng.randbytes(rng.choice((0, 1, 5, 127, 128, 300))))


def identifier(node: der.Node) -> bytes:
    """X.690 8.1.2: one octet for tag numbers below 31, else 0x1F and base-128 digits."""
    first = (node.tag_class << 6) | (0x20 if node.constructed else 0)
    if node.number < 31:
        return bytes([first | node.number])
    digits: list[int] = []
    n = node.number
    while n:
        digits.insert(0, n & 0x7F)
        n >>= 7
    return bytes([first | 0x1F] + [d | 0x80 for d in digits[:-1]] + digits[-1:])


def ber(node: der.Node, rng: random.Random) -> bytes:
    """``node`` with lengths in a random legal BER form (the writer under test is not used)."""
    body = b"".join(ber(c, rng) for c in node.children) if node.constructed else node.value
    form = rng.choice(("minimal", "padded", "indefinite") if node.constructed else ("minimal", "padded"))
    if form == "indefinite":
        return identifier(node) + b"\x80" + body + b"\x00\x00"
    if form == "padded":  # BER allows leading zero length octets (DER does not)
        raw = len(body).to_bytes(rng.randrange(1, 4) + (len(body).bit_length() + 7) // 8, "big")
        return identifier(node) + bytes([0x80 | len(raw)]) + raw + body
    return identifier(node) + x690_length(len(body)) + body


def der_reference(node: der.Node) -> bytes:
    body = b"".join(der_reference(c) for c in node.children) if node.constructed else node.value
    return identifier(node) + x690_length(len(body)) + body


def has_constructed_octet_string(node: der.Node) -> bool:
    if not node.constructed:
        return False
    return node.is_universal(4) or any(has_constructed_octet_string(c) for c in node.children)


def test_random_trees_round_trip_through_every_length_form() -> None:
    rng = random.Random(SEED)
    for _ in range(400):
        tree = random_tree(rng)
        expected = der_reference(tree)
        assert der.encode(tree) == expected
        written = ber(tree, rng)
        assert der.value_length(written + b"\x00") == len(written)
        parsed = der.parse_ber(written)
        assert parsed == tree
        assert der.encode(parsed) == expected
        if not has_constructed_octet_string(tree):
            assert der.normalize_octet_strings(written) == expected


def test_garbage_raises_only_value_errors() -> None:
    rng = random.Random(SEED)
    samples = [rng.randbytes(rng.randrange(0, 64)) for _ in range(1500)]
    valid = [der.encode(random_tree(rng)) for _ in range(60)]
    for data in valid:
        for _ in range(20):
            i = rng.randrange(len(data))
            samples.append(data[:i] + bytes([rng.randrange(256)]) + data[i + 1:])
            samples.append(data[:i])
    for data in samples:
        for reader in (der.parse_ber, der.children, der.header):
            try:
                reader(data)
            except ValueError:
                pass
        try:
            der.parse_any(data, "sample")
        except BadRequest:
            pass
        der.normalize_envelope(data)  # unchanged when it is not BER
        der.normalize_octet_strings(data)


def test_nesting_is_bounded() -> None:
    deep = b"\x05\x00"
    for _ in range(der.MAX_DEPTH + 5):
        deep = der.sequence(deep)
    with pytest.raises(der.BerError, match="too deep"):
        der.parse_ber(deep)
    with pytest.raises(BadRequest):
        der.parse_any(deep, "deep")
    assert der.normalize_octet_strings(deep) == deep
    indefinite = b"\x30\x80" * 40 + b"\x00\x00" * 40
    with pytest.raises(der.BerError):
        der.parse_ber(indefinite)


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(der.BerError, match="trailing"):
        der.parse_ber(der.null() + b"\x00")
    with pytest.raises(ValueError):
        der.children(der.sequence(der.null()) + b"\x00")


# --- BER from real clients --------------------------------------------------------------


def test_constructed_octet_strings_are_flattened() -> None:
    chunks = der.tlv(0x24, der.octet_string(b"abc") + der.tlv(0x24, der.octet_string(b"de")) + der.octet_string(b""))
    wrapped = der.sequence(der.oid("1.2.840.113549.1.7.1"), der.context(0, chunks))
    assert der.normalize_octet_strings(wrapped) == der.sequence(
        der.oid("1.2.840.113549.1.7.1"), der.context(0, der.octet_string(b"abcde"))
    )
    indefinite = b"\x24\x80" + der.octet_string(b"ab") + der.octet_string(b"c") + b"\x00\x00"
    assert der.normalize_octet_strings(indefinite) == der.octet_string(b"abc")


def test_encrypted_content_in_constructed_form_becomes_primitive() -> None:
    algorithm = der.sequence(der.oid("2.16.840.1.101.3.4.1.2"), der.octet_string(bytes(16)))
    go_style = der.sequence(
        der.oid("1.2.840.113549.1.7.1"), algorithm,
        der.context(0, der.octet_string(b"0123") + der.octet_string(b"4567")),
    )
    assert der.normalize_envelope(go_style) == der.sequence(
        der.oid("1.2.840.113549.1.7.1"), algorithm, der.context(0, b"01234567", constructed=False)
    )
    already = der.sequence(der.oid("1.2.840.113549.1.7.1"), algorithm, der.context(0, b"x", constructed=False))
    assert der.normalize_envelope(already) == already


def test_children_and_parse_any() -> None:
    items = [der.integer(1), der.utf8("x"), der.sequence()]
    assert der.children(der.sequence(*items)) == items
    with pytest.raises(ValueError):
        der.children(der.integer(5))
    assert der.parse_any(der.sequence(*items), "v") == der.sequence(*items)
    with pytest.raises(BadRequest, match="not a DER value"):
        der.parse_any(b"\x30\x80\x00\x00", "v")
