"""SOAP 1.1 and 1.2, document/literal, as the MDM web service speaks them.

The version is the envelope's namespace; the answer (and any fault) comes in the same
version: SOAP 1.1 faults as ``faultcode``/``faultstring`` with HTTP 500 and
``text/xml``; SOAP 1.2 faults as ``Code``/``Reason`` with HTTP 400 (Sender) or 500
(Receiver) and ``application/soap+xml`` (SOAP 1.2 part 2 section 7.5.1.2). Either way
the fault's detail holds ``<mdm:Fault><mdm:Code>`` with one of the stable codes of
:mod:`.faults`, which is what MDM platforms and scripts match on.

Bodies are parsed by :func:`gateway.edge.xml.parse` only (no DTD, no entities, no
network, size and depth limits). Dispatch is by the Body's one element (the wrapped
operation), never by the ``SOAPAction`` header, which clients fill inconsistently.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.edge import xml as X
from gateway.edge.xml import Element

from .faults import MdmFault

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
NS = "urn:enrollment-gateway:mdmws:1"
"""The service's namespace (ours: Entrust's WSDL is not public; DIVERGENCES.md)."""
CONTENT_TYPE = {SOAP11: "text/xml", SOAP12: "application/soap+xml"}
MAX_BYTES = 64 * 1024
"""Largest request: the biggest (an Enroll with every variable) is under 4 KiB."""
MAX_DEPTH = 16


@dataclass(frozen=True)
class Envelope:
    version: str  # SOAP11 or SOAP12
    header: Element | None
    payload: Element

    @property
    def operation(self) -> str:
        return X.localname(self.payload)


def parse_envelope(data: bytes) -> Envelope:
    """The envelope of a request, or MdmFault (``MalformedMessage``; SOAP 1.1 when the
    version cannot be told)."""
    try:
        root = X.parse(data, max_bytes=MAX_BYTES, max_depth=MAX_DEPTH)
    except X.XmlError as exc:
        raise MdmFault("MalformedMessage", f"not a SOAP message: {exc.detail}") from None
    ns, local = X.split_tag(root)
    if local != "Envelope" or ns not in (SOAP11, SOAP12):
        raise MdmFault("MalformedMessage", "not a SOAP 1.1 or 1.2 Envelope")
    try:
        header = X.child(root, ns, "Header")
        body = X.one(root, ns, "Body")
        payload = X.elements(body)
    except X.XmlError as exc:
        raise MdmFault("MalformedMessage", exc.detail, version=ns) from None
    if len(payload) != 1:
        raise MdmFault("MalformedMessage", "the SOAP Body must hold exactly one operation element", version=ns)
    if X.split_tag(payload[0])[0] != NS:
        raise MdmFault("UnknownOperation", f"the operation must be in namespace {NS}", version=ns)
    return Envelope(ns, header, payload[0])


def version_of(data: bytes) -> str:
    """Best guess of a message's SOAP version for a fault about it."""
    return SOAP12 if SOAP12.encode() in data[:4096] else SOAP11


def response(version: str, payload: Element) -> web.Response:
    env = X.element(version, "Envelope", nsmap={"s": version, "m": NS})
    X.sub(env, version, "Body").append(payload)
    return web.Response(body=X.serialize(env), content_type=CONTENT_TYPE[version], charset="utf-8",
                        headers={"Cache-Control": "no-store"})


def fault_response(fault: MdmFault, version: str | None = None) -> web.Response:
    version = fault.version or version or SOAP11
    env = X.element(version, "Envelope", nsmap={"s": version, "m": NS})
    body = X.sub(env, version, "Body")
    el = X.sub(body, version, "Fault")
    sender = fault.sender
    if version == SOAP11:
        X.sub(el, "", "faultcode", "s:Client" if sender else "s:Server")
        X.sub(el, "", "faultstring", fault.message)
        _detail(X.sub(el, "", "detail"), fault)
        status = 500
    else:
        code = X.sub(el, SOAP12, "Code")
        X.sub(code, SOAP12, "Value", "s:Sender" if sender else "s:Receiver")
        X.sub(X.sub(code, SOAP12, "Subcode"), SOAP12, "Value", f"m:{fault.code}")
        X.sub(X.sub(el, SOAP12, "Reason"), SOAP12, "Text", fault.message, attrib={f"{{{X.XML_NS}}}lang": "en"})
        _detail(X.sub(el, SOAP12, "Detail"), fault)
        status = 400 if sender else 500
    return web.Response(body=X.serialize(env), status=status, content_type=CONTENT_TYPE[version],
                        charset="utf-8", headers={"Cache-Control": "no-store"})


def _detail(parent: Element, fault: MdmFault) -> None:
    f = X.sub(parent, NS, "Fault")
    X.sub(f, NS, "Code", fault.code)
    X.sub(f, NS, "Message", fault.message)
