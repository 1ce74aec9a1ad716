"""Hostile XML against the safe parser and the SOAP envelope checks, then over a real socket:
every one is a SOAP 1.2 fault, and nothing else happens (no file read, no entity expanded,
no authentication attempted, no policy state written)."""

from __future__ import annotations

import pytest

from protocols.windows import soap
from gateway.edge import xml as X
from protocols.windows.schema import policy_versions

from .helpers import GET_POLICIES, SOAP12, WSA, XCEP, WindowsServer, get_policies_body

SECRET = b"root:x:0:0"  # what /etc/passwd would leak

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE s:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header/><s:Body>
<GetPolicies xmlns="http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy">&xxe;</GetPolicies>
</s:Body></s:Envelope>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header/><s:Body><x>&lol9;</x></s:Body></s:Envelope>"""

PLAIN_DOCTYPE = b"""<?xml version="1.0"?><!DOCTYPE s:Envelope SYSTEM "http://127.0.0.1:9/evil.dtd">
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header/><s:Body><x/></s:Body></s:Envelope>"""

# an external parameter entity, the DTD-only variant of XXE (out-of-band exfiltration)
PARAMETER_ENTITY = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>
<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header/><s:Body><x/></s:Body></s:Envelope>"""

DEPTH_BOMB = (b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header/><s:Body>'
              + b"<a>" * 20_000 + b"</a>" * 20_000 + b"</s:Body></s:Envelope>")


def envelope(header: str = "", body: str = "", *, ns: str = SOAP12, after: str = "") -> bytes:
    return (f'<s:Envelope xmlns:s="{ns}" xmlns:a="{WSA}"><s:Header>'
            f'<a:Action s:mustUnderstand="1">{GET_POLICIES}</a:Action>{header}</s:Header>'
            f"<s:Body>{body or f'<GetPolicies xmlns={chr(34)}{XCEP}{chr(34)}/>'}</s:Body>{after}</s:Envelope>").encode()


SECOND_BODY = envelope(after=f'<s:Body><GetPolicies xmlns="{XCEP}"/></s:Body>')
WRAPPED_BODY_IN_HEADER = envelope(header=f'<w:Wrapper xmlns:w="urn:x"><s:Body><GetPolicies xmlns="{XCEP}"/></s:Body></w:Wrapper>')
WRAPPED_BODY_IN_BODY = envelope(body=f'<w:Wrapper xmlns:w="urn:x"><s:Body><GetPolicies xmlns="{XCEP}"/></s:Body></w:Wrapper>')
SOAP11 = envelope(ns="http://schemas.xmlsoap.org/soap/envelope/")
NOT_AN_ENVELOPE = b'<GetPolicies xmlns="http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy"/>'
NO_HEADER = f'<s:Envelope xmlns:s="{SOAP12}"><s:Body><x/></s:Body></s:Envelope>'.encode()
TWO_BODY_ELEMENTS = envelope(body=f'<GetPolicies xmlns="{XCEP}"/><GetPolicies xmlns="{XCEP}"/>')
TWO_ACTIONS = envelope(header=f'<a:Action>{GET_POLICIES}</a:Action>')
UNKNOWN_MUST_UNDERSTAND = envelope(header='<x:Thing xmlns:x="urn:x" s:mustUnderstand="true"/>')
UTF16 = "<?xml version='1.0' encoding='utf-16'?><a/>".encode("utf-16")
NOT_XML = b"\x30\x82\x01\x00 this is DER, not XML"
TOO_LARGE = envelope(body="<x>" + "A" * (X.MAX_BYTES + 1) + "</x>")
# found by the wstep-token fuzz target: these escaped parse_envelope's mapping (a Receiver fault)
MESSAGE_ID_WITH_ELEMENTS = envelope(header="<a:MessageID><x/></a:MessageID>")
TO_WITH_ELEMENTS = envelope(header="<a:To>https://h/<x/></a:To>")

HOSTILE = {
    "xxe": XXE, "billion-laughs": BILLION_LAUGHS, "doctype": PLAIN_DOCTYPE, "parameter-entity": PARAMETER_ENTITY,
    "depth-bomb": DEPTH_BOMB, "second-body": SECOND_BODY, "body-wrapped-in-header": WRAPPED_BODY_IN_HEADER,
    "body-wrapped-in-body": WRAPPED_BODY_IN_BODY, "soap-1.1-envelope": SOAP11, "not-an-envelope": NOT_AN_ENVELOPE,
    "no-header": NO_HEADER, "two-body-elements": TWO_BODY_ELEMENTS, "two-actions": TWO_ACTIONS,
    "unknown-must-understand": UNKNOWN_MUST_UNDERSTAND, "utf-16": UTF16, "not-xml": NOT_XML, "too-large": TOO_LARGE,
    "message-id-with-elements": MESSAGE_ID_WITH_ELEMENTS, "to-with-elements": TO_WITH_ELEMENTS,
}
EXPECTED_CODE = {"soap-1.1-envelope": "VersionMismatch", "not-an-envelope": "VersionMismatch",
                 "unknown-must-understand": "MustUnderstand"}


@pytest.mark.parametrize("data", [XXE, BILLION_LAUGHS, PLAIN_DOCTYPE, PARAMETER_ENTITY], ids=["xxe", "laughs", "doctype", "pe"])
def test_the_parser_refuses_any_doctype(data: bytes) -> None:
    with pytest.raises(X.ForbiddenXml):
        X.parse(data)


def test_the_parser_stops_a_depth_bomb() -> None:
    with pytest.raises(X.TooDeep):
        X.parse(DEPTH_BOMB)


@pytest.mark.parametrize("levels", [40, 200, 300])
def test_our_depth_limit_holds_below_and_above_libxml2s_own(levels: int) -> None:
    """libxml2 2.14 stops at 256 by itself; our limit (32) must trip on either side of it."""
    deep = (b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body>'
            + b"<a>" * levels + b"</a>" * levels + b"</s:Body></s:Envelope>")
    with pytest.raises(X.TooDeep):
        X.parse(deep)
    if levels + 2 < 256:  # within libxml2's own limit a larger max_depth lets it through
        assert X.parse(deep, max_depth=levels + 2).tag.endswith("}Envelope")


def test_the_parser_refuses_oversized_and_non_utf8_bodies() -> None:
    with pytest.raises(X.TooLarge):
        X.parse(TOO_LARGE)
    with pytest.raises(X.MalformedXml):
        X.parse(UTF16)


def test_lookups_go_by_namespace_not_prefix() -> None:
    """A child in another namespace under the expected prefix is not found; the real one is,
    whatever prefix it carries."""
    root = X.parse(f'<r xmlns:xcep="urn:evil" xmlns:p="{XCEP}"><xcep:client/><p:client>x</p:client></r>'.encode())
    found = X.one(root, XCEP, "client")
    assert X.text(found) == "x"
    with pytest.raises(X.MalformedXml):
        X.one(X.parse(b'<r xmlns:xcep="urn:evil"><xcep:client/></r>'), XCEP, "client")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_every_hostile_envelope_is_a_soap_fault(name: str) -> None:
    with pytest.raises(soap.SoapFault) as info:
        soap.parse_envelope(HOSTILE[name])
    assert info.value.code == EXPECTED_CODE.get(name, soap.SENDER)


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_hostile_bodies_over_the_wire_are_faults_and_change_nothing(windows: WindowsServer, name: str) -> None:
    url = windows.dev["cep"]["username"]
    rep = await windows.post(url, HOSTILE[name])
    rep.assert_fault()
    assert rep.fault_code == "s:" + EXPECTED_CODE.get(name, soap.SENDER)
    assert SECRET not in rep.body and b"lollollol" not in rep.body
    assert b"Traceback" not in rep.body
    assert await windows.table_rows(policy_versions) == []  # no policy was served
    info = await windows.gw.door("windows").credentials.find_user("windows", windows.dev["username"])
    assert info is not None and info.failures == 0  # no authentication was even attempted
    # and the endpoint is unharmed: a real request right after is answered
    ok = await windows.post(url, get_policies_body(security=windows.security()))
    assert ok.status == 200 and ok.payload.tag == f"{{{XCEP}}}GetPoliciesResponse"


# --- the same attacks on the CES, around an Issue that would otherwise be granted ----------------

def _ces_variants(clean: bytes) -> dict[str, bytes]:
    """``clean`` (a valid RST Issue with valid credentials) made hostile in each way."""
    text = clean.decode()
    head, _, rest = text.partition("<s:Body")
    body = "<s:Body" + rest[:rest.index("</s:Body>") + len("</s:Body>")]
    entity_in_context = text.replace("</RequestSecurityToken>", '<AdditionalContext xmlns="'
                                     'http://schemas.xmlsoap.org/ws/2006/12/authorization"><ContextItem Name="x">'
                                     "<Value>&e;</Value></ContextItem></AdditionalContext></RequestSecurityToken>")
    laughs = BILLION_LAUGHS.decode().split("<s:Envelope")[0].replace("lolz", "s:Envelope")
    return {
        "xxe": '<!DOCTYPE s:Envelope [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n' + entity_in_context,
        "billion-laughs": laughs + entity_in_context.replace("&e;", "&lol9;"),
        "internal-entity": '<!DOCTYPE s:Envelope [<!ENTITY e "x">]>\n' + entity_in_context,
        "second-body": text.replace("</s:Envelope>", body + "</s:Envelope>"),
        "body-wrapped-in-header": text.replace("</s:Header>", f'<w:W xmlns:w="urn:x">{body}</w:W></s:Header>'),
        "truncated": text[:len(text) // 2],
        "soap-1.1": text.replace(SOAP12, "http://schemas.xmlsoap.org/soap/envelope/"),
    }


async def test_hostile_issue_requests_on_the_ces_issue_nothing(windows: WindowsServer) -> None:
    """Each attack wraps a request that, sent clean, is issued (the last step): every
    variant is a SOAP fault, and no certificate and no CES request row comes of it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from gateway.store.records import CertificateFilter
    from protocols.windows import ces
    from protocols.windows.settings import WindowsSettings

    from .wstep_helpers import rst_body, rstr, windows_csr

    async def issued() -> int:
        async with windows.gw.store.read() as q:
            return await q.certificates.count(CertificateFilter(protocol_config="windows"))

    user = WindowsSettings.of(await windows.gw.door("windows").configuration("windows")).template("GatewayUser")
    assert user is not None
    csr = windows_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048), "mallory", template_oid=user.oid)
    clean = rst_body(token=csr.public_bytes(serialization.Encoding.DER), security=windows.security())
    url = windows.dev["ces"]["username"]
    for name, data in _ces_variants(clean).items():
        rep = await windows.post(url, data.encode())
        rep.assert_fault()
        assert SECRET not in rep.body and b"lollollol" not in rep.body and b"Traceback" not in rep.body, name
        assert await issued() == 0, name
        assert await windows.table_rows(ces.requests) == [], name
    assert rstr(await windows.post(url, clean)).certificate is not None
    assert await issued() == 1
