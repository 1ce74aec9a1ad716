"""SOAP 1.2 with WS-Addressing, as the CEP and CES services speak it (WCF's wsHttpBinding).

A request goes through :func:`endpoint`: body read with a size limit, parsed by
:func:`gateway.edge.xml.parse`, checked by :func:`parse_envelope`, handed to the
handler; whatever goes wrong comes back as a SOAP 1.2 fault (HTTP 500 and
``application/soap+xml``, as WCF answers every fault), never a traceback.

API (stable; W2's ces/wstep/wssecurity modules use it):

- ``parse_envelope(data: bytes) -> Envelope``: raises :class:`SoapFault`.
- :class:`Envelope`: ``root``, ``header``, ``body``, ``payload`` (the one element in
  the Body), ``action``, ``message_id``, ``to``, ``reply_to`` and ``security`` (the raw
  ``wsse:Security`` header element or ``None``, for wssecurity to read).
- ``require_action(envelope, *actions) -> str``: the action if it is one of
  ``actions``, else an ``a:ActionNotSupported`` fault.
- :class:`SoapFault` ``(reason, *, code=SENDER, subcode=None, detail=None,
  action=FAULT_ACTION, status=500)``: raise it anywhere under :func:`endpoint`;
  ``subcode`` is ``(namespace, local)``, ``detail`` an element placed in ``s:Detail``.
- :class:`Reply` ``(action, body, headers=())``: what a handler returns; ``body`` is
  a list of elements for the SOAP Body.
- ``envelope(action, body, *, relates_to=None, headers=()) -> Element`` and
  ``fault_envelope(fault, *, relates_to=None) -> Element``: the response documents.
- ``response(reply, *, relates_to=None) -> web.Response`` and
  ``fault_response(fault, *, relates_to=None) -> web.Response``.
- ``endpoint(handler) -> aiohttp handler``: ``handler(request, envelope)`` is awaited
  and returns a :class:`Reply` (or raises :class:`SoapFault`); a
  :class:`gateway.errors.GatewayError` becomes a fault by its kind (:func:`fault_for`:
  one with a ``fault`` attribute gets it as a ``wsse:`` Subcode); ``web.HTTPException``
  passes through (a 404 for an unknown path); anything else is logged and answered with
  a generic Receiver fault.
- ``read_body(request, max_bytes)``: the body, a fault past the limit.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from gateway.edge.body import BodyTooLarge, read_limited
from gateway.errors import ErrorKind, GatewayError

from gateway.edge import xml as X
from gateway.edge.xml import Element

log = logging.getLogger("gateway.windows")

SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSA = "http://www.w3.org/2005/08/addressing"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"

CONTENT_TYPE = "application/soap+xml"
FAULT_ACTION = "http://www.w3.org/2005/08/addressing/soap/fault"
ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"

SENDER = "Sender"
RECEIVER = "Receiver"
VERSION_MISMATCH = "VersionMismatch"
MUST_UNDERSTAND = "MustUnderstand"
FAULT_CODES = (SENDER, RECEIVER, VERSION_MISMATCH, MUST_UNDERSTAND, "DataEncodingUnknown")

_UNDERSTOOD = {X.qname(WSA, n) for n in ("Action", "MessageID", "To", "ReplyTo", "From", "FaultTo")}
_UNDERSTOOD.add(X.qname(WSSE, "Security"))
_STRUCTURAL = {X.qname(SOAP12, n) for n in ("Envelope", "Header", "Body", "Fault")}


class SoapFault(Exception):
    """A SOAP 1.2 fault to answer with; ``reason`` is shown to the client, keep it safe."""

    def __init__(self, reason: str, *, code: str = SENDER, subcode: tuple[str, str] | None = None,
                 detail: Element | None = None, action: str = FAULT_ACTION, status: int = 500) -> None:
        if code not in FAULT_CODES:
            raise ValueError(f"unknown SOAP 1.2 fault code {code!r}")
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.subcode = subcode
        self.detail = detail
        self.action = action
        self.status = status


@dataclass(frozen=True)
class Envelope:
    root: Element
    header: Element
    body: Element
    payload: Element
    action: str
    message_id: str | None
    to: str | None
    reply_to: str | None
    security: Element | None


@dataclass(frozen=True)
class Reply:
    action: str
    body: list[Element]
    headers: Sequence[Element] = field(default_factory=tuple)


def _addressing_fault(local: str, reason: str) -> SoapFault:
    return SoapFault(reason, subcode=(WSA, local))


def _single_header(header: Element, ns: str, local: str) -> Element | None:
    found = X.children(header, ns, local)
    if len(found) > 1:
        raise _addressing_fault("InvalidAddressingHeader", f"more than one {local} header")
    return found[0] if found else None


def _must_understand(el: Element) -> bool:
    return (X.attr(el, SOAP12, "mustUnderstand") or "").strip() in ("1", "true")


def parse_envelope(data: bytes) -> Envelope:
    """The checked envelope of a request body, or :class:`SoapFault`."""
    try:
        root = X.parse(data)
    except X.XmlError as exc:
        raise SoapFault(exc.detail) from None
    if root.tag != X.qname(SOAP12, "Envelope"):
        # SOAP 1.2 part 1 section 5.4.7: anything but a 1.2 Envelope is a VersionMismatch.
        raise SoapFault("expected a SOAP 1.2 Envelope (http://www.w3.org/2003/05/soap-envelope)",
                        code=VERSION_MISMATCH)
    try:
        parts = X.elements(root)
        if [p.tag for p in parts] != [X.qname(SOAP12, "Header"), X.qname(SOAP12, "Body")]:
            raise SoapFault("the Envelope must hold exactly one Header and then one Body")
        header, body = parts
        if (root.text or "").strip() or any((p.tail or "").strip() for p in parts):
            raise SoapFault("text outside the Header and Body")
        # A second Header/Body/Envelope wrapped anywhere (signature-wrapping style) is refused,
        # so nothing that inspects a subtree can ever be shown a different Body.
        for node in root.iter():
            if node is not root and node is not header and node is not body and node.tag in _STRUCTURAL:
                raise SoapFault(f"a nested SOAP {node.tag.split('}')[1]} element is not allowed")
        payloads = X.elements(body)
        if len(payloads) != 1:
            raise SoapFault("the Body must hold exactly one element")
        for h in X.elements(header):
            if _must_understand(h) and h.tag not in _UNDERSTOOD:
                raise SoapFault(f"header {h.tag} not understood", code=MUST_UNDERSTAND)
        action_el = _single_header(header, WSA, "Action")
        if action_el is None:
            raise _addressing_fault("MessageAddressingHeaderRequired", "no a:Action header")
        action = X.text(action_el)
        message_id_el = _single_header(header, WSA, "MessageID")
        to_el = _single_header(header, WSA, "To")
        reply_to_el = _single_header(header, WSA, "ReplyTo")
        reply_to = None
        if reply_to_el is not None:
            reply_to = X.child_text(reply_to_el, WSA, "Address")
            if reply_to is not None and reply_to != ANONYMOUS:
                raise _addressing_fault("OnlyAnonymousAddressSupported",
                                        "replies go back on the HTTP response only")
        securities = X.children(header, WSSE, "Security")
        if len(securities) > 1:
            raise SoapFault("more than one wsse:Security header")
        message_id = None if message_id_el is None else X.text(message_id_el)
        to = None if to_el is None else X.text(to_el)
    except X.XmlError as exc:
        raise SoapFault(exc.detail) from None
    return Envelope(
        root=root, header=header, body=body, payload=payloads[0], action=action,
        message_id=message_id, to=to, reply_to=reply_to,
        security=securities[0] if securities else None,
    )


def require_action(env: Envelope, *actions: str) -> str:
    if env.action not in actions:
        raise SoapFault(f"action {env.action!r} is not served here", subcode=(WSA, "ActionNotSupported"))
    return env.action


def _skeleton(action: str, relates_to: str | None, headers: Sequence[Element]) -> tuple[Element, Element]:
    env = X.element(SOAP12, "Envelope", nsmap={"s": SOAP12, "a": WSA})
    header = X.sub(env, SOAP12, "Header")
    X.sub(header, WSA, "Action", action, attrib={X.qname(SOAP12, "mustUnderstand"): "1"})
    if relates_to is not None:
        X.sub(header, WSA, "RelatesTo", relates_to)
    for h in headers:
        header.append(h)
    return env, X.sub(env, SOAP12, "Body")


def envelope(action: str, body: Sequence[Element], *, relates_to: str | None = None,
             headers: Sequence[Element] = ()) -> Element:
    env, body_el = _skeleton(action, relates_to, headers)
    for el in body:
        body_el.append(el)
    return env


def fault_envelope(fault: SoapFault, *, relates_to: str | None = None) -> Element:
    env, body = _skeleton(fault.action, relates_to, ())
    f = X.sub(body, SOAP12, "Fault")
    code = X.sub(f, SOAP12, "Code")
    X.sub(code, SOAP12, "Value", f"s:{fault.code}")
    if fault.subcode is not None:
        ns, local = fault.subcode
        sub = X.sub(code, SOAP12, "Subcode")
        prefix = {WSA: "a", WSSE: "o"}.get(ns, "x")
        value = X.element(SOAP12, "Value", f"{prefix}:{local}", nsmap={prefix: ns})
        sub.append(value)
    reason = X.sub(f, SOAP12, "Reason")
    X.sub(reason, SOAP12, "Text", fault.reason, attrib={X.qname(X.XML_NS, "lang"): "en-US"})
    if fault.detail is not None:
        X.sub(f, SOAP12, "Detail").append(fault.detail)
    return env


def _soap_response(doc: Element, status: int) -> web.Response:
    return web.Response(status=status, body=X.serialize(doc), content_type=CONTENT_TYPE, charset="utf-8")


def response(reply: Reply, *, relates_to: str | None = None) -> web.Response:
    return _soap_response(envelope(reply.action, reply.body, relates_to=relates_to, headers=reply.headers), 200)


def fault_response(fault: SoapFault, *, relates_to: str | None = None) -> web.Response:
    return _soap_response(fault_envelope(fault, relates_to=relates_to), fault.status)


_KIND_CODES = {
    ErrorKind.INTERNAL: RECEIVER,
    ErrorKind.UNAVAILABLE: RECEIVER,
}


def fault_for(exc: GatewayError) -> SoapFault:
    """A core error as a fault: the client's fault (Sender) unless the gateway failed. An
    error with a ``fault`` attribute (the WS-Security errors: ``"FailedAuthentication"``,
    ...) gets it as a ``wsse:`` Subcode (WSS SOAP Message Security 1.1, section 12)."""
    local = getattr(exc, "fault", None)
    subcode = (WSSE, local) if isinstance(local, str) else None
    return SoapFault(exc.detail, code=_KIND_CODES.get(exc.kind, SENDER), subcode=subcode)


Handler = Callable[[web.Request, Envelope], Awaitable[Reply]]


async def read_body(request: web.Request, max_bytes: int = X.MAX_BYTES) -> bytes:
    """The request body, refused (as a fault) past ``max_bytes`` without reading it all."""
    try:
        return await read_limited(request, max_bytes)
    except BodyTooLarge as exc:
        raise SoapFault(exc.detail) from None


def endpoint(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """An aiohttp POST handler around ``handler`` with every error mapped to a fault."""

    async def handle(request: web.Request) -> web.StreamResponse:
        relates_to: str | None = None
        try:
            env = parse_envelope(await read_body(request))
            relates_to = env.message_id
            reply = await handler(request, env)
            return response(reply, relates_to=relates_to)
        except SoapFault as fault:
            return fault_response(fault, relates_to=relates_to)
        except GatewayError as exc:
            return fault_response(fault_for(exc), relates_to=relates_to)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return fault_response(SoapFault("The server was unable to process the request.", code=RECEIVER),
                                  relates_to=relates_to)

    return handle
