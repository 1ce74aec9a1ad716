"""Enroll / AutoEnroll from security descriptors (protocols/windows/directory/sd.py) that
Samba's own encoder builds from SDDL, for SIDs and group memberships of the real DC, and
from a certificate template's descriptor as the DC stores it and returns it over LDAP."""

from __future__ import annotations

import json
import subprocess
import uuid
from dataclasses import dataclass

import ldap3
import pytest

from protocols.windows.directory import sd

from .samba import SambaDC, _samba_python

ENROLL, AUTOENROLL = sd.ENROLL, sd.AUTOENROLL
EVERYONE, AUTHENTICATED_USERS = "S-1-1-0", "S-1-5-11"
SD_FLAGS_DACL = ("1.2.840.113556.1.4.801", True, b"\x30\x03\x02\x01\x04")  # LDAP_SERVER_SD_FLAGS_OID: DACL only


@dataclass(frozen=True)
class People:
    """The SIDs the gateway checks for two users of the DC: their own, tokenGroups', S-1-1-0, S-1-5-11."""

    member: set[str]  # sd-member, in group sd-enrollers
    outsider: set[str]  # sd-outsider, in no group of its own
    group: str
    member_sid: str


def _caller_sids(dc: SambaDC, name: str) -> set[str]:
    conn = dc.ldap()
    conn.search(dc.dn_of(name), "(objectClass=*)", search_scope=ldap3.BASE, attributes=["objectSid", "tokenGroups"])
    entry = conn.entries[0]
    groups = {sd.sid_to_str(raw) for raw in entry.tokenGroups.raw_values}
    return {sd.sid_to_str(entry.objectSid.raw_values[0]), *groups, EVERYONE, AUTHENTICATED_USERS}


@pytest.fixture(scope="module")
def people(samba_dc: SambaDC) -> People:
    samba_dc.create_user("sd-member")
    samba_dc.create_user("sd-outsider")
    group = samba_dc.create_group("sd-enrollers", members=("sd-member",))
    return People(_caller_sids(samba_dc, "sd-member"), _caller_sids(samba_dc, "sd-outsider"), group,
                  samba_dc.sid_of("sd-member"))


def _rights(dc: SambaDC, sddl: str, sids: set[str]) -> tuple[bool, bool]:
    parsed = sd.parse(dc.security_descriptor(sddl))
    return sd.has_right(parsed, sids, ENROLL), sd.has_right(parsed, sids, AUTOENROLL)


def test_member_sids_come_from_token_groups(samba_dc: SambaDC, people: People) -> None:
    assert people.group in people.member and people.group not in people.outsider
    assert people.member_sid in people.member and people.member_sid not in people.outsider
    member = people.member
    assert f"{samba_dc.domain_sid}-513" in member  # Domain Users


def test_enroll_object_ace_to_a_group(samba_dc: SambaDC, people: People) -> None:
    group, member, outsider = people.group, people.member, people.outsider
    sddl = f"O:DAG:DAD:PAI(A;;RPLCLORC;;;AU)(OA;;CR;{ENROLL};;{group})(A;;CCDCLCSWRPWPDTLOSDRCWDWO;;;DA)"
    assert _rights(samba_dc, sddl, member) == (True, False)
    assert _rights(samba_dc, sddl, outsider) == (False, False)


def test_autoenroll_object_ace(samba_dc: SambaDC, people: People) -> None:
    group, member = people.group, people.member
    assert _rights(samba_dc, f"D:PAI(OA;;CR;{AUTOENROLL};;{group})", member) == (False, True)
    both = f"D:PAI(OA;;CR;{ENROLL};;{group})(OA;;CR;{AUTOENROLL};;{group})"
    assert _rights(samba_dc, both, member) == (True, True)


def test_the_first_applying_ace_decides(samba_dc: SambaDC, people: People) -> None:
    group, member, outsider = people.group, people.member, people.outsider
    deny_first = f"D:PAI(OD;;CR;{ENROLL};;{group})(OA;;CR;{ENROLL};;AU)(OA;;CR;{AUTOENROLL};;AU)"
    assert _rights(samba_dc, deny_first, member) == (False, True)  # the deny names Enroll only
    assert _rights(samba_dc, deny_first, outsider) == (True, True)
    generic_deny = f"D:PAI(D;;CR;;;{people.member_sid})(OA;;CR;{ENROLL};;AU)(OA;;CR;{AUTOENROLL};;AU)"
    assert _rights(samba_dc, generic_deny, member) == (False, False)
    allow_first = f"D:PAI(OA;;CR;{ENROLL};;AU)(OD;;CR;{ENROLL};;{group})"
    assert _rights(samba_dc, allow_first, member) == (True, False)


def test_inherit_only_aces_are_skipped(samba_dc: SambaDC, people: People) -> None:
    group, member = people.group, people.member
    assert _rights(samba_dc, f"D:PAI(OA;IO;CR;{ENROLL};;{group})(OA;CIIO;CR;;;{group})", member) == (False, False)
    # an inherit-only deny does not hide the allow after it
    assert _rights(samba_dc, f"D:PAI(OD;CIIO;CR;{ENROLL};;{group})(OA;;CR;{ENROLL};;{group})", member) == (True, False)


def test_generic_control_access_generic_all_and_full_control(samba_dc: SambaDC, people: People) -> None:
    group, member, outsider = people.group, people.member, people.outsider
    assert _rights(samba_dc, f"D:PAI(A;;CR;;;{group})", member) == (True, True)
    assert _rights(samba_dc, f"D:PAI(OA;;CR;;;{group})", member) == (True, True)  # object ACE, no object type
    assert _rights(samba_dc, f"D:PAI(A;;GA;;;{group})", member) == (True, True)
    assert _rights(samba_dc, f"D:PAI(A;;GA;;;{group})", outsider) == (False, False)
    full = sd.parse(samba_dc.security_descriptor(f"D:PAI(A;;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;{group})"))
    assert full.dacl is not None and full.dacl[0].mask == sd.FULL_CONTROL
    assert sd.has_right(full, member, ENROLL)
    # read and write rights are not the extended rights
    assert _rights(samba_dc, f"D:PAI(A;;RPWPLCLORC;;;{group})(OA;;RPWP;{ENROLL};;{group})", member) == (False, False)


def test_no_matching_sid_and_empty_or_absent_dacl(samba_dc: SambaDC, people: People) -> None:
    member = people.member
    assert _rights(samba_dc, f"D:PAI(OA;;CR;{ENROLL};;DA)(OA;;CR;{AUTOENROLL};;BA)", member) == (False, False)
    assert _rights(samba_dc, "D:P", member) == (False, False)  # an empty DACL: nobody
    assert _rights(samba_dc, "O:DAG:DA", member) == (True, True)  # no DACL: everybody, as on Windows
    assert sd.parse(samba_dc.security_descriptor("O:DAG:DA")).dacl is None


def test_owner_and_group_and_every_ace_as_samba_reads_them(samba_dc: SambaDC, people: People) -> None:
    group = people.group
    domain = samba_dc.domain_sid
    parsed = sd.parse(samba_dc.security_descriptor("O:DAG:DA"))
    assert (parsed.owner, parsed.group) == (f"{domain}-512", f"{domain}-512")
    parsed = sd.parse(samba_dc.security_descriptor("O:SYG:BA"))
    assert (parsed.owner, parsed.group) == ("S-1-5-18", "S-1-5-32-544")
    sddl = (f"O:{group}G:DUD:AI(OD;;CR;{AUTOENROLL};;DU)(OA;CIIO;CR;{ENROLL};bf967aba-0de6-11d0-a285-00aa003049e2;"
            f"{group})(A;;GA;;;DA)(OA;ID;RPWPCR;;{ENROLL};AU)(A;OICI;CCDCLCSWRPWPDTLOCRSDRCWDWO;;;SY)")
    data = samba_dc.security_descriptor(sddl)
    parsed = sd.parse(data)
    assert (parsed.owner, parsed.group) == (group, f"{domain}-513")
    assert parsed.dacl is not None
    assert [_as_samba(ace) for ace in parsed.dacl] == _samba_aces(data)


def test_sids_round_trip_against_the_directory(samba_dc: SambaDC, people: People) -> None:
    conn = samba_dc.ldap()
    conn.search(samba_dc.base_dn, "(|(sAMAccountName=sd-member)(sAMAccountName=sd-enrollers)"
                "(sAMAccountName=Domain Admins)(sAMAccountName=krbtgt))", attributes=["objectSid", "sAMAccountName"])
    assert len(conn.entries) == 4
    for entry in conn.entries:
        raw = entry.objectSid.raw_values[0]
        text = sd.sid_to_str(raw)
        assert text == samba_dc.sid_of(entry.sAMAccountName.value) and text.startswith(samba_dc.domain_sid + "-")
        assert sd.sid_from_str(text) == raw
    assert sd.sid_to_str(sd.sid_from_str(samba_dc.domain_sid)) == samba_dc.domain_sid
    # the binary form is what an LDAP filter on objectSid matches
    escaped = "".join(f"\\{byte:02x}" for byte in sd.sid_from_str(people.member_sid))
    conn.search(samba_dc.base_dn, f"(objectSid={escaped})", attributes=["sAMAccountName"])
    assert [entry.sAMAccountName.value for entry in conn.entries] == ["sd-member"]


def test_template_descriptor_read_back_over_ldap(samba_dc: SambaDC, people: People) -> None:
    """The DC appends the ACEs the template inherits from its container; the DACL it returns
    parses as Samba reads it and decides as its SDDL says (canonical order: the deny first)."""
    group, member, outsider = people.group, people.member, people.outsider
    sddl = (f"O:DAG:DAD:AI(OD;;CR;{AUTOENROLL};;{people.member_sid})(A;;RPLCLORC;;;AU)(OA;;CR;{ENROLL};;{group})"
            f"(OA;;CR;{AUTOENROLL};;{group})(A;;CCDCLCSWRPWPDTLOSDRCWDWO;;;DA)")
    dn = samba_dc.add_certificate_template("SDGWUser", {"flags": 131642, "revision": 100}, sddl)
    conn = samba_dc.ldap()
    conn.search(dn, "(objectClass=pKICertificateTemplate)", search_scope=ldap3.BASE,
                attributes=["nTSecurityDescriptor"], controls=[SD_FLAGS_DACL])
    data = conn.entries[0]["nTSecurityDescriptor"].raw_values[0]
    parsed = sd.parse(data, what="template SDGWUser's security descriptor")
    assert parsed.owner is None and parsed.group is None  # the SD-flags control asked for the DACL only
    assert parsed.dacl is not None
    assert any(ace.flags & 0x10 for ace in parsed.dacl)  # INHERITED_ACE: the container's, added by the DC
    assert [_as_samba(ace) for ace in parsed.dacl] == _samba_aces(data)
    assert (sd.has_right(parsed, member, ENROLL), sd.has_right(parsed, member, AUTOENROLL)) == (True, False)
    assert (sd.has_right(parsed, outsider, ENROLL), sd.has_right(parsed, outsider, AUTOENROLL)) == (False, False)


def _as_samba(ace: sd.Ace) -> list[object]:
    def guid(value: uuid.UUID | None) -> str | None:
        return None if value is None else str(value)

    return [ace.type, ace.flags, ace.mask, ace.sid, guid(ace.object_type), guid(ace.inherited_object_type)]


def _samba_aces(descriptor: bytes) -> list[list[object]]:
    """The DACL as Samba's NDR decoder reads it (type, flags, mask, trustee, object GUIDs)."""
    script = (
        "import json, sys\nfrom samba.dcerpc import security\nfrom samba.ndr import ndr_unpack\n"
        "d = ndr_unpack(security.descriptor, bytes.fromhex(sys.argv[1]))\nout = []\n"
        "for a in d.dacl.aces:\n"
        "    o = a.object if a.type in (5, 6) else None\n"
        "    t = str(o.type) if o is not None and o.flags & 1 else None\n"
        "    i = str(o.inherited_type) if o is not None and o.flags & 2 else None\n"
        "    out.append([a.type, a.flags, a.access_mask, str(a.trustee), t, i])\n"
        "print(json.dumps(out))\n")
    result = subprocess.run([_samba_python(), "-c", script, descriptor.hex()], check=True,
                            capture_output=True, text=True)
    decoded: list[list[object]] = json.loads(result.stdout)
    return decoded
