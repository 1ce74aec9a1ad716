"""MS-MDE2 Discover bodies (protocols/windows/soap.py, mde2.py): the SOAP envelope, then the
Discover request, the policy and version choice, and the DiscoverResponse built from it, as
the Discovery endpoint runs them.

Declared errors: :class:`protocols.windows.soap.SoapFault` (every malformed request is one;
:class:`protocols.windows.mde2.Mde2Fault` is a subclass).
"""

from __future__ import annotations

from protocols.windows import mde2, soap

from ..seeds import capture_files

DESCRIPTION = "MS-MDE2 body: SOAP envelope and Discover request"

_BUILTIN = (b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing">'
            b'<s:Header><a:Action>' + mde2.ACTION_DISCOVER.encode() + b'</a:Action></s:Header><s:Body>'
            b'<Discover xmlns="' + mde2.NS.encode() + b'"><request><EmailAddress>a@b.c</EmailAddress>'
            b'<RequestVersion>4.0</RequestVersion><AuthPolicies><AuthPolicy>OnPremise</AuthPolicy>'
            b'<AuthPolicy>Federated</AuthPolicy></AuthPolicies></request></Discover></s:Body></s:Envelope>')


def seeds() -> list[bytes]:
    out = capture_files("mde2", "*/*Discover-request*.xml")
    out.append(_BUILTIN)
    return out


def test_one_input(data: bytes) -> None:
    try:
        env = soap.parse_envelope(data)
        soap.require_action(env, mde2.ACTION_DISCOVER)
        query = mde2.parse_discover(env.payload)
        policy = mde2.choose_policy(query.auth_policies, (mde2.ON_PREMISE, mde2.CERTIFICATE))
        version = mde2.negotiate_version(query.request_version)
        mde2.discover_response(policy, version, "https://gw/cep", "https://gw/ces")
    except soap.SoapFault:
        pass
