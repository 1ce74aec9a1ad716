"""Reading RequestSecurityTokens (the spec's and a real Windows 10 capture) and writing
RSTRCs and enrollment faults that validate against the MS-WSTEP schema."""

from __future__ import annotations

import base64

import pytest
from lxml import etree

from protocols.windows import soap, wstep
from gateway.edge import xml as X

from .helpers import assert_valid, capture
from .wstep_helpers import rst_body


def payload(data: bytes) -> X.Element:
    return soap.parse_envelope(data).payload


def test_the_spec_issue_request_reads_with_its_pkcs10() -> None:
    rst = wstep.parse_rst(payload(capture("xcep-wstep", "ms-wstep", "4.1.1.1-RST-Issue-PKCS10-request.xml").read_bytes()))
    assert rst.request_type == wstep.ISSUE and rst.token_type == wstep.X509V3
    assert rst.value_type == wstep.VALUE_PKCS7 and rst.request_id is None  # xsi:nil
    der = capture("xcep-wstep", "ms-wstep", "4.1.1.1-RST-Issue-PKCS10-request.bst.p10.der").read_bytes()
    assert rst.token == der


def test_the_spec_ket_request_reads() -> None:
    rst = wstep.parse_rst(payload(capture("xcep-wstep", "ms-wstep", "4.1.2.1-RST-KET-request.xml").read_bytes()))
    assert rst.request_type == wstep.KET and rst.request_ket and rst.token is None


def test_the_windows_10_capture_reads_with_its_context() -> None:
    data = capture("mde2", "win10-19043-capture-marcosd4h", "3-RST-request.xml").read_bytes()
    rst = wstep.parse_rst(payload(data))
    der = capture("mde2", "win10-19043-capture-marcosd4h", "3-RST-request.bst.p10.der").read_bytes()
    assert rst.token == der and rst.value_type == wstep.WSTEP + "#PKCS10"
    assert rst.context_value("devicetype") == "CIMClient_Windows"
    assert [v for n, v in rst.context if n == "MAC"][:2] == ["00-0C-29-51-60-9D", "1A-77-20-52-41-53"]


def test_certenroll_line_wrapping_with_escaped_carriage_returns_is_read() -> None:
    token = bytes(range(256)) * 3
    assert wstep.parse_rst(payload(rst_body(token=token))).token == token


@pytest.mark.parametrize("change, message", [
    (lambda b: b.replace(b"<RequestType>" + wstep.ISSUE.encode() + b"</RequestType>", b""), "no RequestType"),
    (lambda b: b.replace(b'ValueType="', b'ValueType="urn:other#'), "ValueType"),
    (lambda b: b.replace(b"#base64binary", b"#HexBinary"), "base64binary"),
    (lambda b: b.replace(b"AAEC", b"!!!!"), "not base64"),
])
def test_malformed_tokens_are_refused(change, message) -> None:  # type: ignore[no-untyped-def]
    body = change(rst_body(token=bytes(range(64))))
    with pytest.raises(wstep.InvalidRst) as exc:
        wstep.parse_rst(payload(body))
    assert message in exc.value.detail


def test_lookups_are_namespace_strict() -> None:
    """A RequestSecurityToken of the 2005/02 WS-Trust draft is not a WSTEP request."""
    body = rst_body(token=b"x").replace(wstep.WST.encode(), b"http://schemas.xmlsoap.org/ws/2005/02/trust")
    with pytest.raises(wstep.InvalidRst):
        wstep.parse_rst(payload(body))


def _reparse(el: X.Element) -> X.Element:
    return etree.fromstring(X.serialize(el))


def test_issued_and_pending_answers_validate() -> None:
    reply = wstep.issued(b"\x30\x03\x02\x01\x01", b"\x30\x00", "17")
    doc = _reparse(reply.body[0])
    assert_valid(doc, "wstep-wstrust.xsd")
    read = wstep.read_rstrc(doc)
    assert (read.disposition, read.certificate, read.request_id) == (wstep.ISSUED, b"\x30\x03\x02\x01\x01", "17")
    pending = _reparse(wstep.pending(b"\x30\x00", "18", "https://gw.example/ces").body[0])
    assert_valid(pending, "wstep-wstrust.xsd")
    read = wstep.read_rstrc(pending)
    assert (read.disposition, read.certificate, read.reference) == (wstep.PENDING, None, "https://gw.example/ces")


def test_enrollment_detail_validates_with_a_signed_hresult() -> None:
    detail = _reparse(wstep.enrollment_detail(wstep.CERTSRV_E_TEMPLATE_DENIED, invalid_request=False,
                                              request_id="5", binary_response=b"\x30\x00"))
    assert_valid(detail, "wstep.xsd")
    fields = {el.tag.split("}")[1]: el.text for el in detail}
    assert fields == {"BinaryResponse": base64.b64encode(b"\x30\x00").decode(), "ErrorCode": "-2146877422",
                      "InvalidRequest": "false", "RequestID": "5"}
    assert_valid(_reparse(wstep.enrollment_detail(wstep.E_FAIL, invalid_request=True)), "wstep.xsd")


def test_the_schema_refuses_what_the_spec_does_not_allow() -> None:
    """The schema files have teeth: an ErrorCode out of xs:int range, elements out of order."""
    from .helpers import schema

    detail = _reparse(wstep.enrollment_detail(wstep.E_FAIL, invalid_request=True))
    detail.find(f"{{{wstep.WSTEP}}}ErrorCode").text = "4294967295"
    assert not schema("wstep.xsd").is_valid(detail)
    doc = _reparse(wstep.issued(b"\x30\x00", b"\x30\x00", "1").body[0])
    rstr = doc[0]
    rstr.append(rstr[0])  # TokenType after RequestID
    assert not schema("wstep-wstrust.xsd").is_valid(doc)
