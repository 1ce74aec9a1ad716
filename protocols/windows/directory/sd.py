"""Active Directory security descriptors: who holds Enroll and AutoEnroll on a template.

A certificate template's ``nTSecurityDescriptor`` is a self-relative SECURITY_DESCRIPTOR
(MS-DTYP 2.4.6) whose DACL (2.4.5) holds ACEs (2.4.4) naming SIDs (2.4.2); the
Certificate-Enrollment and Certificate-AutoEnrollment extended rights (MS-CRTD 4.1.2.1)
are granted by object ACEs carrying the right's GUID, or by ACEs granting every extended
right. :func:`parse` reads a descriptor, :func:`has_right` is Windows' access check for
one such right.

Our own parser rather than winacl's: these bytes come from the directory, shaped by
whoever may write a template's ACL, so they are read strictly, every offset and size
bounded by the buffer, the result typed (winacl is not), and the parser fuzzed
(``python -m fuzz ad-security-descriptor``). Only what the check needs is kept: the
owner, group and DACL; the SACL is checked for shape and dropped.
"""

from __future__ import annotations

import re
import struct
import uuid
from dataclasses import dataclass
from typing import Iterable

from gateway.errors import ErrorKind, GatewayError

ENROLL = uuid.UUID("0e10c968-78fb-11d2-90d4-00c04f79dc55")
"""Certificate-Enrollment extended right (MS-CRTD 4.1.2.1)."""
AUTOENROLL = uuid.UUID("a05b8cc2-17bc-4802-a710-e7c15ab866a2")
"""Certificate-AutoEnrollment extended right (MS-CRTD 4.1.2.1)."""

ADS_RIGHT_DS_CONTROL_ACCESS = 0x00000100  # "CR": extended rights
GENERIC_ALL = 0x10000000  # "GA"
FULL_CONTROL = 0x000F01FF  # AD's "Full Control" (includes CONTROL_ACCESS)

ACCESS_ALLOWED_ACE_TYPE = 0x00
ACCESS_DENIED_ACE_TYPE = 0x01
ACCESS_ALLOWED_OBJECT_ACE_TYPE = 0x05
ACCESS_DENIED_OBJECT_ACE_TYPE = 0x06
INHERIT_ONLY_ACE = 0x08
ACE_OBJECT_TYPE_PRESENT = 0x1
ACE_INHERITED_OBJECT_TYPE_PRESENT = 0x2

SE_DACL_PRESENT = 0x0004
SE_SACL_PRESENT = 0x0010
SE_SELF_RELATIVE = 0x8000

MAX_ACES = 1000
"""More ACEs than any template carries; the format itself allows ~16000 in 64 KiB."""
MAX_SUB_AUTHORITIES = 15

_SD_HEADER, _ACL_HEADER, _ACE_HEADER, _SID_HEADER = 20, 8, 4, 8
_ALLOW = (ACCESS_ALLOWED_ACE_TYPE, ACCESS_ALLOWED_OBJECT_ACE_TYPE)
_DENY = (ACCESS_DENIED_ACE_TYPE, ACCESS_DENIED_OBJECT_ACE_TYPE)
_OBJECT = (ACCESS_ALLOWED_OBJECT_ACE_TYPE, ACCESS_DENIED_OBJECT_ACE_TYPE)
_ACCESS = _ALLOW + _DENY
_SID_TEXT = re.compile(r"S-1-(?:([0-9]{1,10})|0X([0-9A-F]{12}))((?:-[0-9]{1,10}){0,15})", re.IGNORECASE)


class SecurityDescriptorError(GatewayError):
    """A descriptor or SID from the directory is not well formed: a directory problem
    (the template cannot be offered), not the client's."""

    kind = ErrorKind.UNAVAILABLE


@dataclass(frozen=True)
class Ace:
    """One ACE. Types other than the four access ACEs are kept with only ``type`` and
    ``flags`` (``mask`` 0, ``sid`` empty) and are ignored by :func:`has_right`."""

    type: int
    flags: int
    mask: int
    sid: str
    object_type: uuid.UUID | None
    inherited_object_type: uuid.UUID | None


@dataclass(frozen=True)
class SecurityDescriptor:
    """``dacl`` None: no DACL (absent or NULL), everyone is allowed everything, as on
    Windows; an empty tuple: nobody is allowed anything."""

    owner: str | None
    group: str | None
    dacl: tuple[Ace, ...] | None


@dataclass(frozen=True)
class _Buffer:
    data: bytes
    what: str

    def fail(self, message: str) -> SecurityDescriptorError:
        return SecurityDescriptorError(f"{self.what}: {message}")

    def take(self, offset: int, size: int, end: int, part: str, within: str) -> bytes:
        if offset + size > end:
            raise self.fail(f"{part} runs past {within}")
        return self.data[offset:offset + size]


def parse(data: bytes, *, what: str = "security descriptor") -> SecurityDescriptor:
    """A self-relative descriptor; ``what`` names it in errors ("template X's security descriptor")."""
    buf = _Buffer(bytes(data), what)
    end = len(buf.data)
    head = buf.take(0, _SD_HEADER, end, "the header", "the descriptor")
    revision, _sbz1, control, owner_at, group_at, sacl_at, dacl_at = struct.unpack("<BBHIIII", head)
    if revision != 1:
        raise buf.fail(f"revision {revision}, not 1")
    if not control & SE_SELF_RELATIVE:
        raise buf.fail("not self-relative (SE_SELF_RELATIVE unset)")
    owner = _sid_part(buf, owner_at, "the owner SID")
    group = _sid_part(buf, group_at, "the group SID")
    if control & SE_SACL_PRESENT and sacl_at:
        _acl(buf, _offset(buf, sacl_at, "the SACL"), "SACL")
    dacl = None
    if control & SE_DACL_PRESENT and dacl_at:  # present with offset 0: a NULL DACL
        dacl = _acl(buf, _offset(buf, dacl_at, "the DACL"), "DACL")
    return SecurityDescriptor(owner, group, dacl)


def has_right(sd: SecurityDescriptor, sids: Iterable[str], right: uuid.UUID) -> bool:
    """Whether a caller holding ``sids`` (S-1-... as :func:`sid_to_str` writes them: its own,
    its groups', Everyone's and Authenticated Users') has the extended right ``right``.

    Windows' check for one right: the DACL in order, inherit-only ACEs skipped; an ACE
    applies when its SID is the caller's, its mask has CONTROL_ACCESS or GENERIC_ALL and,
    for an object ACE, it names no object type or this right; the first applying ACE
    decides (deny or allow), none means denied. A template's DACL is in canonical order
    (explicit deny, explicit allow, inherited deny, inherited allow), so this first match
    is the Windows result.
    """
    if sd.dacl is None:
        return True
    held = frozenset(sids)
    for ace in sd.dacl:
        if ace.flags & INHERIT_ONLY_ACE or ace.type not in _ACCESS:
            continue
        if ace.sid not in held or not ace.mask & (ADS_RIGHT_DS_CONTROL_ACCESS | GENERIC_ALL):
            continue
        if ace.type in _OBJECT and ace.object_type is not None and ace.object_type != right:
            continue
        return ace.type in _ALLOW
    return False


def sid_to_str(raw: bytes) -> str:
    """A binary SID (objectSid, tokenGroups) as S-1-...; exactly one SID, nothing after it."""
    buf = _Buffer(bytes(raw), "SID")
    text, size = _sid(buf, 0, len(buf.data), "the SID", "its bytes")
    if size != len(buf.data):
        raise buf.fail(f"{len(buf.data) - size} bytes after its sub-authorities")
    return text


def sid_from_str(text: str) -> bytes:
    """S-1-... (MS-DTYP 2.4.2.1) as its binary form, for LDAP filters; ValueError if it is not one."""
    match = _SID_TEXT.fullmatch(text)
    if match is None:
        raise ValueError(f"not a SID: {text!r}")
    decimal, hexadecimal, tail = match.groups()
    authority = int(decimal) if decimal is not None else int(hexadecimal, 16)
    subs = [int(part) for part in tail.split("-")[1:]]
    if (decimal is not None and authority >= 2**32) or any(sub >= 2**32 for sub in subs):
        raise ValueError(f"not a SID (a value is too large): {text!r}")
    return bytes([1, len(subs)]) + authority.to_bytes(6, "big") + struct.pack(f"<{len(subs)}I", *subs)


def _offset(buf: _Buffer, offset: int, part: str) -> int:
    if offset < _SD_HEADER:
        raise buf.fail(f"{part} offset {offset} points into the header")
    return offset


def _sid_part(buf: _Buffer, offset: int, part: str) -> str | None:
    if offset == 0:
        return None
    return _sid(buf, _offset(buf, offset, part), len(buf.data), part, "the descriptor")[0]


def _sid(buf: _Buffer, offset: int, end: int, part: str, within: str) -> tuple[str, int]:
    head = buf.take(offset, _SID_HEADER, end, part, within)
    if head[0] != 1:
        raise buf.fail(f"{part} has revision {head[0]}, not 1")
    count = head[1]
    if count > MAX_SUB_AUTHORITIES:
        raise buf.fail(f"{part} has {count} sub-authorities (at most {MAX_SUB_AUTHORITIES})")
    subs = struct.unpack(f"<{count}I", buf.take(offset + _SID_HEADER, 4 * count, end, part, within))
    authority = int.from_bytes(head[2:8], "big")
    shown = str(authority) if authority < 2**32 else f"0x{authority:012X}"
    return "-".join(["S-1", shown, *map(str, subs)]), _SID_HEADER + 4 * count


def _acl(buf: _Buffer, offset: int, name: str) -> tuple[Ace, ...]:
    head = buf.take(offset, _ACL_HEADER, len(buf.data), f"the {name} header", "the descriptor")
    revision, _sbz1, size, count, _sbz2 = struct.unpack("<BBHHH", head)
    if revision not in (2, 4):
        raise buf.fail(f"the {name} has revision {revision}, not 2 or 4")
    if size < _ACL_HEADER:
        raise buf.fail(f"the {name} size {size} is smaller than its header")
    end = offset + size
    if end > len(buf.data):
        raise buf.fail(f"the {name} runs past the descriptor")
    if count > MAX_ACES:
        raise buf.fail(f"the {name} has {count} ACEs (at most {MAX_ACES})")
    aces = []
    at = offset + _ACL_HEADER
    for index in range(count):
        label = f"ACE {index}"
        ace_type, flags, ace_size = struct.unpack("<BBH", buf.take(at, _ACE_HEADER, end, label, f"the {name}"))
        if ace_size < _ACE_HEADER or ace_size % 4:
            raise buf.fail(f"{label} has size {ace_size} (a multiple of 4, at least {_ACE_HEADER})")
        if at + ace_size > end:
            raise buf.fail(f"{label} runs past the {name}")
        if revision == 2 and ace_type in _OBJECT:
            raise buf.fail(f"{label} is an object ACE in a revision 2 {name}")
        aces.append(_ace(buf, ace_type, flags, at, at + ace_size, label))
        at += ace_size
    return tuple(aces)


def _ace(buf: _Buffer, ace_type: int, flags: int, start: int, end: int, label: str) -> Ace:
    if ace_type not in _ACCESS:
        return Ace(ace_type, flags, 0, "", None, None)
    (mask,) = struct.unpack("<I", buf.take(start + 4, 4, end, f"{label}'s mask", "the ACE"))
    at = start + 8
    object_type = inherited = None
    if ace_type in _OBJECT:
        (present,) = struct.unpack("<I", buf.take(at, 4, end, f"{label}'s object flags", "the ACE"))
        at += 4
        if present & ~(ACE_OBJECT_TYPE_PRESENT | ACE_INHERITED_OBJECT_TYPE_PRESENT):
            raise buf.fail(f"{label} has unknown object flags 0x{present:x}")
        if present & ACE_OBJECT_TYPE_PRESENT:
            object_type = uuid.UUID(bytes_le=buf.take(at, 16, end, f"{label}'s object type", "the ACE"))
            at += 16
        if present & ACE_INHERITED_OBJECT_TYPE_PRESENT:
            inherited = uuid.UUID(bytes_le=buf.take(at, 16, end, f"{label}'s inherited object type", "the ACE"))
            at += 16
    sid, _size = _sid(buf, at, end, f"{label}'s SID", "the ACE")
    return Ace(ace_type, flags, mask, sid, object_type, inherited)
