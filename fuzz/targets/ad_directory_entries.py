"""Directory entries as the LDAP client reads them (protocols/windows/directory/ldap.py): a
pKICertificateTemplate's attributes into a TemplateEntry, an account's into an Account (SID,
GUID, userAccountControl, tokenGroups SIDs), from raw attribute values.

Declared errors: ``ValueError`` (UnicodeDecodeError included) and the client's internal
``_Failed``, both of which the client turns into DirectoryUnavailable (a SOAP fault); the
security descriptor a template carries has its own target (ad-security-descriptor).
"""

from __future__ import annotations

from protocols.windows.directory import ldap

DESCRIPTION = "AD entries: template and account attributes (flags, periods, SIDs, GUIDs) into typed values"

_TEMPLATE_KEYS = ("cn", "mspki-cert-template-oid", "displayname", "mspki-template-schema-version", "revision",
                  "mspki-template-minor-revision", "flags", "mspki-enrollment-flag", "mspki-certificate-name-flag",
                  "mspki-private-key-flag", "mspki-ra-signature", "mspki-minimal-key-size", "pkidefaultkeyspec",
                  "pkiextendedkeyusage", "pkikeyusage", "pkiexpirationperiod", "pkioverlapperiod", "pkidefaultcsps",
                  "mspki-supersede-templates", "ntsecuritydescriptor")
_ACCOUNT_KEYS = ("samaccountname", "objectsid", "objectguid", "objectclass", "useraccountcontrol",
                 "userprincipalname", "mail", "dnshostname", "cn")


def _attributes(data: bytes, keys: tuple[str, ...]) -> dict[str, list[bytes]]:
    """Values separated by 0xFF, each given to the key its first byte picks."""
    attrs: dict[str, list[bytes]] = {}
    for chunk in data.split(b"\xff"):
        if chunk:
            attrs.setdefault(keys[chunk[0] % len(keys)], []).append(chunk[1:])
    return attrs


def seeds() -> list[bytes]:
    year = (-365 * 86400 * 10**7).to_bytes(8, "little", signed=True)
    template = [b"\x00ADUser", b"\x011.3.6.1.4.1.311.21.8.1.2", b"\x06131680", b"\x08-1509949440",
                b"\x0f" + year, b"\x121,Microsoft Software Key Storage Provider"]
    sid = bytes.fromhex("010500000000000515000000a1b2c3d4e5f60718293a4b5c50040000")
    account = [b"\x00alice", b"\x01" + sid, b"\x02" + bytes(range(16)), b"\x03user", b"\x04514"]
    return [b"\xff".join(template), b"\xfe" + b"\xff".join(account)]


def test_one_input(data: bytes) -> None:
    if data[:1] == b"\xfe":
        attrs = _attributes(data[1:], _ACCOUNT_KEYS)
        groups = tuple(attrs.pop("cn", []))
        try:
            ldap._account("CN=x,DC=gw,DC=test", attrs, ())
            for raw in groups:
                ldap.sid_to_str(raw)
        except (ValueError, ldap._Failed):
            pass
    else:
        try:
            ldap._template(_attributes(data, _TEMPLATE_KEYS))
        except ValueError:
            pass
