"""RDN formats: the subject a digital ID gives each device, from values the MDM fills in.

A format is an RFC 4514 style string with ``<variables>``, most specific RDN first,
e.g. ``CN=<deviceName>,OU=<igusername>``; the subject is the format's result followed by
the digital ID's parent DN (``O=Example,C=US``), so ``CN=ipad-7,OU=alice,O=Example,C=US``.

Variables are a fixed vocabulary (:data:`VARIABLES`), the device and user fields the
MDM platforms put in their certificate payloads. A format naming any other variable is
refused when the digital ID is saved; a request that leaves a format's variable out, or
sends a variable outside the vocabulary, is refused before anything is issued.

Values are placed as attribute values (never spliced into a DN string), and a value
holding ``, + = " \\ < > ;``, a ``#`` first, control characters or white space at either
end is refused outright: an MDM that forwards a user-editable device name must not be
able to add an RDN (``CN=x,O=Other``) or a multi-valued RDN (``CN=x+UID=admin``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography import x509

from gateway.ca.overrides import parse_subject
from gateway.errors import BadRequest
from gateway.profiles.model import SubjectTemplate, parse_subject_format

VARIABLES: dict[str, str] = {
    "deviceName": "the device's name (Jamf $COMPUTERNAME, Workspace ONE {DeviceName})",
    "deviceId": "the MDM's identifier of the device (Jamf ID, Workspace ONE {DeviceUid})",
    "udid": "Apple UDID",
    "serialNumber": "hardware serial number",
    "imei": "IMEI",
    "meid": "MEID",
    "macAddress": "Wi-Fi MAC address",
    "assetTag": "asset tag",
    "username": "the enrolled user's user name",
    "igusername": "the user's directory (Identity Guard) user name",
    "email": "the user's e-mail address",
    "upn": "the user's principal name",
    "userId": "the MDM's identifier of the user",
    "groupName": "the device or user group",
}
"""Every variable an RDN format may use, with what the MDM fills it with."""

MAX_VALUE = 128
_FORBIDDEN = re.compile(r'[,+="\\<>;\x00-\x1f\x7f]')


class RdnError(BadRequest):
    """A format or a value refused; ``code`` is the fault code the web service answers."""

    def __init__(self, detail: str, code: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True)
class RdnFormat:
    text: str
    template: SubjectTemplate

    @property
    def variables(self) -> tuple[str, ...]:
        seen: list[str] = []
        for rdn in self.template:
            for attr in rdn:
                seen.extend(v for v in attr.variables if v not in seen)
        return tuple(seen)


def parse_format(text: str) -> RdnFormat:
    """A digital ID's RDN format, or RdnError (``InvalidRdnFormat``, ``UnknownVariable``)."""
    try:
        template = parse_subject_format(text)
    except ValueError as exc:
        raise RdnError(f"RDN format {text!r}: {exc}", "InvalidRdnFormat") from None
    fmt = RdnFormat(text, template)
    unknown = [v for v in fmt.variables if v not in VARIABLES]
    if unknown:
        raise RdnError(f"RDN format {text!r} uses unknown variable <{unknown[0]}> "
                       f"(supported: {', '.join(VARIABLES)})", "UnknownVariable")
    return fmt


def parse_parent_dn(text: str) -> x509.Name:
    """The digital ID's parent DN (may be empty)."""
    if not text.strip():
        return x509.Name([])
    return parse_subject(text)


def check_values(values: Mapping[str, str]) -> dict[str, str]:
    """The request's variables, each known and safe to place in a name."""
    out: dict[str, str] = {}
    for name, value in values.items():
        if name not in VARIABLES:
            raise RdnError(f"unknown variable {name!r} (supported: {', '.join(VARIABLES)})", "UnknownVariable")
        if not value or len(value) > MAX_VALUE:
            raise RdnError(f"variable {name} must be 1-{MAX_VALUE} characters", "InvalidVariableValue")
        if _FORBIDDEN.search(value) or value.startswith("#") or value != value.strip():
            raise RdnError(f"variable {name} holds a character not allowed in a name value "
                           '(, + = " \\ < > ; control characters, # first, spaces at either end)',
                           "InvalidVariableValue")
        out[name] = value
    return out


def render(fmt: RdnFormat, parent: x509.Name, values: Mapping[str, str]) -> x509.Name:
    """The device's subject: the format filled with ``values`` (already checked), then the parent DN."""
    missing = [v for v in fmt.variables if v not in values]
    if missing:
        raise RdnError(f"the RDN format {fmt.text!r} needs <{missing[0]}>, which the request lacks",
                       "MissingVariable")
    written: list[x509.RelativeDistinguishedName] = []
    for rdn in fmt.template:
        attrs = []
        for tmpl in rdn:
            value = "".join(values[text] if is_var else text for is_var, text in tmpl.parts)
            try:
                attrs.append(x509.NameAttribute(tmpl.oid, value))
            except ValueError as exc:
                raise RdnError(f"the subject would be invalid: {exc}", "InvalidVariableValue") from None
        written.append(x509.RelativeDistinguishedName(attrs))
    return x509.Name(list(parent.rdns) + list(reversed(written)))
