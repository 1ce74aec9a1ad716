"""Active Directory security descriptors (protocols/windows/directory/sd.py): a certificate
template's ``nTSecurityDescriptor`` as read over LDAP, parsed, then checked for the Enroll and
AutoEnroll rights as the gateway checks a caller's SIDs. The bytes come from the directory,
written by whoever may edit a template's ACL.

Declared errors: :class:`protocols.windows.directory.sd.SecurityDescriptorError`.
"""

from __future__ import annotations

import struct
import uuid

from protocols.windows.directory import sd

DESCRIPTION = "AD nTSecurityDescriptor: SD, owner/group SIDs, DACL/SACL ACEs, Enroll/AutoEnroll check"

_DOMAIN = "S-1-5-21-1004336348-1177238915-682003330"
_CALLER = [f"{_DOMAIN}-1104", f"{_DOMAIN}-513", "S-1-1-0", "S-1-5-11"]
_USER_CLASS = uuid.UUID("bf967aba-0de6-11d0-a285-00aa003049e2")


def _ace(ace_type: int, flags: int, mask: int, sid: str, object_type: uuid.UUID | None = None,
         inherited: uuid.UUID | None = None) -> bytes:
    body = struct.pack("<I", mask)
    if ace_type in (sd.ACCESS_ALLOWED_OBJECT_ACE_TYPE, sd.ACCESS_DENIED_OBJECT_ACE_TYPE):
        body += struct.pack("<I", (1 if object_type else 0) | (2 if inherited else 0))
        body += (object_type.bytes_le if object_type else b"") + (inherited.bytes_le if inherited else b"")
    body += sd.sid_from_str(sid)
    return struct.pack("<BBH", ace_type, flags, 4 + len(body)) + body


def _acl(aces: list[bytes]) -> bytes:
    body = b"".join(aces)
    return struct.pack("<BBHHH", 4, 0, 8 + len(body), len(aces), 0) + body


def _descriptor(owner: str | None, group: str | None, sacl: bytes | None, dacl: bytes | None) -> bytes:
    control = sd.SE_SELF_RELATIVE | (sd.SE_DACL_PRESENT if dacl is not None else 0)
    control |= sd.SE_SACL_PRESENT if sacl is not None else 0
    parts = [sd.sid_from_str(owner) if owner else None, sd.sid_from_str(group) if group else None, sacl, dacl]
    offsets, body = [], b""
    for part in parts:
        offsets.append(20 + len(body) if part else 0)
        body += part or b""
    return struct.pack("<BBHIIII", 1, 0, control, *offsets) + body


def seeds() -> list[bytes]:
    group = f"{_DOMAIN}-1104"
    template = _acl([
        _ace(sd.ACCESS_DENIED_OBJECT_ACE_TYPE, 0, sd.ADS_RIGHT_DS_CONTROL_ACCESS, group, sd.AUTOENROLL),
        _ace(sd.ACCESS_ALLOWED_OBJECT_ACE_TYPE, 0, sd.ADS_RIGHT_DS_CONTROL_ACCESS, group, sd.ENROLL),
        _ace(sd.ACCESS_ALLOWED_OBJECT_ACE_TYPE, 0, sd.ADS_RIGHT_DS_CONTROL_ACCESS, "S-1-5-11", sd.AUTOENROLL,
             _USER_CLASS),
        _ace(sd.ACCESS_ALLOWED_ACE_TYPE, 0x0A, sd.ADS_RIGHT_DS_CONTROL_ACCESS, "S-1-5-11"),  # CI|IO
        _ace(sd.ACCESS_ALLOWED_ACE_TYPE, 0x10, sd.FULL_CONTROL, f"{_DOMAIN}-512"),  # inherited
        _ace(sd.ACCESS_DENIED_ACE_TYPE, 0, sd.GENERIC_ALL, "S-1-5-7"),
    ])
    audit = struct.pack("<BBHI", 0x02, 0xC0, 8 + 12, 0x000F01FF) + sd.sid_from_str("S-1-1-0")  # SYSTEM_AUDIT
    label = struct.pack("<BBHI", 0x11, 0, 8 + 12, 1) + sd.sid_from_str("S-1-16-4096")  # mandatory label
    return [
        _descriptor(f"{_DOMAIN}-512", f"{_DOMAIN}-513", None, template),
        _descriptor(f"{_DOMAIN}-512", "S-1-5-32-544", _acl([audit, label]), template),
        _descriptor(None, None, None, template),  # as read with the SD-flags control (DACL only)
        _descriptor("S-1-5-18", None, None, _acl([])),
        _descriptor(f"{_DOMAIN}-512", f"{_DOMAIN}-512", None, None),
    ]


def test_one_input(data: bytes) -> None:
    try:
        sd.sid_to_str(data)  # a tokenGroups / objectSid value
    except sd.SecurityDescriptorError:
        pass
    try:
        parsed = sd.parse(data)
    except sd.SecurityDescriptorError:
        return
    for sids in (_CALLER, ["S-1-1-0"]):
        sd.has_right(parsed, sids, sd.ENROLL)
        sd.has_right(parsed, sids, sd.AUTOENROLL)
    # every SID the parser writes is one sid_from_str reads back (LDAP filters are built from them)
    for sid in (parsed.owner, parsed.group, *(ace.sid for ace in parsed.dacl or () if ace.sid)):
        if sid is not None and sd.sid_to_str(sd.sid_from_str(sid)) != sid:
            raise AssertionError(f"SID {sid!r} does not round-trip")
