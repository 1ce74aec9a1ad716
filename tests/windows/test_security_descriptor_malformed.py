"""Malformed security descriptors (protocols/windows/directory/sd.py) raise
SecurityDescriptorError and nothing else. The descriptors are built here by hand from
MS-DTYP 2.4.2/2.4.4/2.4.5/2.4.6, so these run without the Samba DC (tests/ad has the
descriptors Samba encodes)."""

from __future__ import annotations

import struct
import uuid

import pytest

from gateway.errors import ErrorKind
from protocols.windows.directory import sd
from protocols.windows.directory.sd import SecurityDescriptorError

DOMAIN = "S-1-5-21-1004336348-1177238915-682003330"
USERS = f"{DOMAIN}-1104"
ENROLL = uuid.UUID("0e10c968-78fb-11d2-90d4-00c04f79dc55")
AUTOENROLL = uuid.UUID("a05b8cc2-17bc-4802-a710-e7c15ab866a2")


def _sid(text: str, *, count: int | None = None) -> bytes:
    _, revision, authority, *subs = text.split("-")
    values = [int(s) for s in subs]
    return (bytes([int(revision), len(values) if count is None else count]) + int(authority).to_bytes(6, "big")
            + b"".join(v.to_bytes(4, "little") for v in values))


def _ace(ace_type: int, flags: int, mask: int, sid: bytes, object_type: uuid.UUID | None = None,
         inherited: uuid.UUID | None = None) -> bytes:
    body = mask.to_bytes(4, "little")
    if ace_type in (5, 6):
        present = (1 if object_type else 0) | (2 if inherited else 0)
        body += present.to_bytes(4, "little")
        body += object_type.bytes_le if object_type else b""
        body += inherited.bytes_le if inherited else b""
    body += sid
    body += b"\0" * (-(len(body) + 4) % 4)
    return bytes([ace_type, flags]) + (len(body) + 4).to_bytes(2, "little") + body


def _acl(aces: list[bytes], revision: int = 4, count: int | None = None) -> bytes:
    body = b"".join(aces)
    return struct.pack("<BBHHH", revision, 0, 8 + len(body), len(aces) if count is None else count, 0) + body


def _descriptor(owner: bytes | None, group: bytes | None, dacl: bytes | None, *, revision: int = 1,
                control: int = 0x8004) -> bytes:
    """Header, then owner, group and DACL in that order (the DACL last, as Windows writes it)."""
    parts, offsets, at = b"", [], 20
    for part in (owner, group, dacl):
        offsets.append(at + len(parts) if part is not None else 0)
        parts += part or b""
    return struct.pack("<BBHIIII", revision, 0, control, offsets[0], offsets[1], 0, offsets[2]) + parts


ACES = [
    _ace(6, 0, 0x100, _sid(USERS), AUTOENROLL),  # deny AutoEnroll to the group
    _ace(5, 0, 0x100, _sid(USERS), ENROLL),
    _ace(5, 0, 0x100, _sid(USERS), AUTOENROLL, uuid.UUID("bf967aba-0de6-11d0-a285-00aa003049e2")),
    _ace(0, 0x0A, 0x100, _sid("S-1-5-11")),  # inherit-only, generic CONTROL_ACCESS
    _ace(0, 0, 0x000F01FF, _sid(f"{DOMAIN}-512")),
    _ace(0x11, 0, 0, b""),  # a mandatory label: another ACE type, skipped by size
]
GOOD = _descriptor(_sid(f"{DOMAIN}-512"), _sid("S-1-5-32-544"), _acl(ACES))
DACL_AT = 20 + 28 + 16
FIRST_ACE = DACL_AT + 8


def test_the_hand_built_descriptor_parses() -> None:
    """What the malformed variants below start from is itself well formed."""
    parsed = sd.parse(GOOD)
    assert parsed.owner == f"{DOMAIN}-512" and parsed.group == "S-1-5-32-544"
    assert parsed.dacl is not None and len(parsed.dacl) == 6
    assert parsed.dacl[2] == sd.Ace(5, 0, 0x100, USERS, AUTOENROLL, uuid.UUID("bf967aba-0de6-11d0-a285-00aa003049e2"))
    assert parsed.dacl[5] == sd.Ace(0x11, 0, 0, "", None, None)
    member = [USERS, "S-1-1-0", "S-1-5-11"]
    assert sd.has_right(parsed, member, ENROLL)
    assert not sd.has_right(parsed, member, AUTOENROLL)  # the deny comes first
    assert not sd.has_right(parsed, ["S-1-1-0", "S-1-5-11"], ENROLL)  # its generic ACE is inherit-only
    assert sd.has_right(parsed, [f"{DOMAIN}-512"], AUTOENROLL)  # full control


@pytest.mark.parametrize("length", range(len(GOOD)))
def test_every_truncation_is_refused(length: int) -> None:
    with pytest.raises(SecurityDescriptorError) as caught:
        sd.parse(GOOD[:length])
    assert caught.value.kind is ErrorKind.UNAVAILABLE


def _patched(offset: int, fmt: str, value: int) -> bytes:
    data = bytearray(GOOD)
    struct.pack_into(fmt, data, offset, value)
    return bytes(data)


@pytest.mark.parametrize(("offset", "fmt", "value", "message"), [
    (0, "<B", 2, "revision 2, not 1"),
    (2, "<H", 0x0004, "not self-relative"),
    (4, "<I", 8, "the owner SID offset 8 points into the header"),
    (16, "<I", len(GOOD) + 4, "the DACL header runs past the descriptor"),
    (DACL_AT, "<B", 3, "the DACL has revision 3"),
    (DACL_AT, "<B", 2, "ACE 0 is an object ACE in a revision 2 DACL"),
    (DACL_AT + 2, "<H", 4, "the DACL size 4 is smaller than its header"),
    (DACL_AT + 2, "<H", len(GOOD) - DACL_AT + 4, "the DACL runs past the descriptor"),
    (DACL_AT + 4, "<H", 7, "ACE 6 runs past the DACL"),
    (DACL_AT + 4, "<H", 1001, "1001 ACEs (at most 1000)"),
    (FIRST_ACE + 2, "<H", 0, "ACE 0 has size 0"),
    (FIRST_ACE + 2, "<H", 6, "ACE 0 has size 6"),
    (FIRST_ACE + 2, "<H", 0xFFFC, "ACE 0 runs past the DACL"),
    (FIRST_ACE + 2, "<H", 28, "ACE 0's SID runs past the ACE"),
    (FIRST_ACE + 8, "<I", 4, "ACE 0 has unknown object flags 0x4"),
    (FIRST_ACE + 28, "<B", 2, "ACE 0's SID has revision 2"),
    (FIRST_ACE + 29, "<B", 16, "ACE 0's SID has 16 sub-authorities"),
    (20 + 1, "<B", 16, "the owner SID has 16 sub-authorities"),
])
def test_malformed_fields_are_refused(offset: int, fmt: str, value: int, message: str) -> None:
    data = _patched(offset, fmt, value)
    with pytest.raises(SecurityDescriptorError) as caught:
        sd.parse(data, what="template GWUser's security descriptor")
    assert caught.value.detail.startswith("template GWUser's security descriptor: ")
    assert message in caught.value.detail


def test_ace_count_above_the_limit_is_refused_even_when_the_aces_are_there() -> None:
    label = _ace(0x11, 0, 0, b"")
    assert sd.parse(_descriptor(None, None, _acl([label] * 1000))).dacl is not None
    with pytest.raises(SecurityDescriptorError, match="1001 ACEs"):
        sd.parse(_descriptor(None, None, _acl([label] * 1001)))


def test_every_single_byte_change_parses_or_is_refused() -> None:
    """Each byte of the descriptor set to values that hit sizes, counts and flags: the parser
    returns or raises SecurityDescriptorError, never IndexError/struct.error/ValueError."""
    refused = 0
    for offset in range(len(GOOD)):
        for value in (0x00, 0x01, 0x04, 0x0F, 0x10, 0x7F, 0x80, 0xFF):
            data = bytearray(GOOD)
            data[offset] = value
            try:
                parsed = sd.parse(bytes(data))
            except SecurityDescriptorError:
                refused += 1
                continue
            sd.has_right(parsed, [USERS, "S-1-5-11"], ENROLL)
    assert refused > len(GOOD)  # the loop did reach the checks


def test_descriptor_without_dacl_null_dacl_and_empty_dacl() -> None:
    """No DACL (SE_DACL_PRESENT unset) and a NULL DACL (present, offset 0) allow everyone,
    as on Windows; an empty DACL allows no one."""
    absent = sd.parse(_descriptor(_sid(f"{DOMAIN}-512"), None, None, control=0x8000))
    null = sd.parse(_descriptor(None, None, None, control=0x8004))
    empty = sd.parse(_descriptor(None, None, _acl([])))
    assert absent.dacl is None and null.dacl is None and empty.dacl == ()
    assert sd.has_right(absent, [], ENROLL) and sd.has_right(null, ["S-1-1-0"], AUTOENROLL)
    assert not sd.has_right(empty, [USERS, "S-1-1-0", "S-1-5-11"], ENROLL)


def test_sid_strings_and_bytes() -> None:
    raw = _sid(USERS)
    assert sd.sid_to_str(raw) == USERS and sd.sid_from_str(USERS) == raw
    big = bytes([1, 1]) + (2**40).to_bytes(6, "big") + (7).to_bytes(4, "little")
    assert sd.sid_to_str(big) == "S-1-0x010000000000-7" and sd.sid_from_str("S-1-0x010000000000-7") == big
    for bad in (_sid(USERS, count=16) + b"\0" * 36, raw[:-1], raw + b"\0", b"\x02" + raw[1:], b""):
        with pytest.raises(SecurityDescriptorError):
            sd.sid_to_str(bad)
    fifteen = "S-1-5" + "-1" * 15
    assert sd.sid_to_str(sd.sid_from_str(fifteen)) == fifteen
    for text in ("S-1-5-21-", "S-2-5-21", "S-1-5-4294967296", "S-1-4294967296-1", fifteen + "-1",
                 "S-1-5-\u0663", "S-1-0x0100-1", " S-1-5-18", "S-1-5-18\n"):
        with pytest.raises(ValueError):
            sd.sid_from_str(text)
