"""MS-XCEP GetPolicies bodies (protocols/windows/soap.py, xcep.py): the SOAP envelope, then
the GetPolicies request (client, lastUpdate, requestFilter with its versions), as a CEP
endpoint reads them around authentication.

Declared errors: :class:`protocols.windows.soap.SoapFault` (every malformed request is one).
"""

from __future__ import annotations

from protocols.windows import soap, xcep

from ..seeds import capture_files

DESCRIPTION = "MS-XCEP body: SOAP envelope and GetPolicies request"

_BUILTIN = (b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing">'
            b'<s:Header><a:Action>' + xcep.GET_POLICIES.encode() + b'</a:Action></s:Header><s:Body>'
            b'<GetPolicies xmlns="' + xcep.NS.encode() + b'"><client><lastUpdate>2026-01-01T00:00:00.1234567Z'
            b'</lastUpdate></client><requestFilter><policyOIDs><oid>1.2.3</oid></policyOIDs><clientVersion>6'
            b'</clientVersion></requestFilter></GetPolicies></s:Body></s:Envelope>')


def seeds() -> list[bytes]:
    out = capture_files("xcep-wstep", "ms-xcep/*GetPolicies*request*.xml")
    out += capture_files("mde2", "*/*GetPolicies*request*.xml")
    out.append(_BUILTIN)
    return out


def test_one_input(data: bytes) -> None:
    try:
        env = soap.parse_envelope(data)
        soap.require_action(env, xcep.GET_POLICIES)
        xcep.parse_get_policies(env.payload)
    except soap.SoapFault:
        pass
