"""MDM web service bodies (protocols/mdm/soap.py, service.py, rdn.py): the SOAP 1.1/1.2
envelope through the safe XML parser, the UsernameToken, then every request field an
operation reads (DigitalId, DeviceId, Variables, ValidityMinutes, Password, SerialNumber)
and the subject the dev digital ID's RDN format renders from the variables.

Declared errors: :class:`protocols.mdm.faults.MdmFault` and the RDN refusals
(:class:`protocols.mdm.rdn.RdnError`, a BadRequest).
"""

from __future__ import annotations

from gateway.door import ProtocolConfigRecord
from protocols.mdm import adapter, rdn, settings, soap
from protocols.mdm.faults import MdmFault
from protocols.mdm.service import Call, username_token

DESCRIPTION = "MDM web service body: SOAP envelope, UsernameToken, operation fields, RDN format"

_DID = settings.digital_id(adapter.DEV_DIGITAL_ID, dict(adapter.DEV_SPEC), [adapter.DEV_SPEC["profile"]])
_SETTINGS = settings.MdmSettings("jamf", "mdm-scep", digital_ids={_DID.name: _DID})
_RECORD = ProtocolConfigRecord("mdm", "mdm", "issuing", [_DID.profile], _DID.profile, {}, {})
_WSSE = (b'<s:Header><w:Security xmlns:w="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-'
         b'secext-1.0.xsd"><w:UsernameToken><w:Username>mdm-dev</w:Username><w:Password>secret-password'
         b'</w:Password></w:UsernameToken></w:Security></s:Header>')


def seeds() -> list[bytes]:
    m = b'xmlns:m="' + soap.NS.encode() + b'"'
    enroll = (b'<m:Enroll ' + m + b'><m:DigitalId>dev-device</m:DigitalId><m:DeviceId>ipad-7</m:DeviceId>'
              b'<m:Variables><m:Variable><m:Name>deviceName</m:Name><m:Value>ipad-7</m:Value></m:Variable>'
              b'<m:Variable><m:Name>igusername</m:Name><m:Value>alice</m:Value></m:Variable></m:Variables>'
              b'<m:Password>device-password</m:Password></m:Enroll>')
    challenge = enroll.replace(b"m:Enroll", b"m:RequestScepChallenge").replace(
        b"<m:Password>device-password</m:Password>", b"<m:ValidityMinutes>30</m:ValidityMinutes>")
    revoke = b'<m:Revoke ' + m + b'><m:SerialNumber>1a2b</m:SerialNumber><m:Reason>superseded</m:Reason></m:Revoke>'
    out = []
    for ns in (soap.SOAP11.encode(), soap.SOAP12.encode()):
        out.append(b'<s:Envelope xmlns:s="' + ns + b'">' + _WSSE + b'<s:Body>' + enroll + b'</s:Body></s:Envelope>')
        out.append(b'<s:Envelope xmlns:s="' + ns + b'"><s:Body>' + challenge + b'</s:Body></s:Envelope>')
        out.append(b'<s:Envelope xmlns:s="' + ns + b'"><s:Body>' + revoke + b'</s:Body></s:Envelope>')
    return out


def test_one_input(data: bytes) -> None:
    try:
        env = soap.parse_envelope(data)
        try:
            username_token(env)
        except MdmFault:
            pass
        call = Call(None, _RECORD, _SETTINGS, "fuzz", env)  # type: ignore[arg-type]  # no door: parsing only
        for name in ("DeviceId", "ValidityMinutes", "Password", "SerialNumber", "Reason", "KeyAlgorithm"):
            call.text(name)
        values = call.variables()
        if call.text("DigitalId") is not None:
            did = call.digital_id()
            call.device(values)
            rdn.render(did.rdn_format, did.parent_dn, values).rfc4514_string()
    except (MdmFault, rdn.RdnError):
        pass
