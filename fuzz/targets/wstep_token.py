"""MS-WSTEP request bodies (protocols/windows/soap.py, wssecurity.py, wstep.py, cmc.py): the
SOAP envelope, the UsernameToken of its wsse:Security header, the RequestSecurityToken,
then its BinarySecurityToken as a PKCS#10, a CMC Full PKI Request or a PKCS#7 renewal
(signatures checked), as a CES endpoint reads them before authenticating against the store.

Declared errors: :class:`gateway.errors.GatewayError` (the CES maps it to an enrollment
fault) and :class:`protocols.windows.soap.SoapFault`.
"""

from __future__ import annotations

from gateway.errors import GatewayError
from protocols.windows import cmc, soap, wssecurity, wstep

from ..seeds import capture_files

DESCRIPTION = "MS-WSTEP body: SOAP envelope, UsernameToken, RequestSecurityToken, request token (PKCS#10/CMC/PKCS#7)"

_BUILTIN = (b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://www.w3.org/2005/08/addressing">'
            b'<s:Header><a:Action>' + wstep.ACTION_RST.encode() + b'</a:Action></s:Header><s:Body>'
            b'<RequestSecurityToken xmlns="' + wstep.WST.encode() + b'"><RequestType>' + wstep.ISSUE.encode()
            + b'</RequestType></RequestSecurityToken></s:Body></s:Envelope>')


def seeds() -> list[bytes]:
    out = capture_files("xcep-wstep", "ms-wstep/4.1.*-request.xml")
    out += capture_files("mde2", "*/*RST-request*.xml")
    out.append(_BUILTIN)
    return out


def test_one_input(data: bytes) -> None:
    try:
        env = soap.parse_envelope(data)
        try:
            wssecurity.parse_username_token(env.security)
        except GatewayError:
            pass
        rst = wstep.parse_rst(env.payload)
        if rst.token is not None:
            cmc.parse_request_token(rst.token)
    except (GatewayError, soap.SoapFault):
        pass
