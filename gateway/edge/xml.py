"""Safe XML for every SOAP service (Windows CEP/CES/MDE2, the MDM web service): one parser,
namespace-strict lookups, builders.

Everything a client sends is parsed by :func:`parse` and nothing else: lxml with entity
resolution, DTD loading/validation and network access off, ``huge_tree`` off, a byte size
limit, an element depth limit (checked while parsing, so a depth bomb stops early), and
any DOCTYPE refused outright (SOAP 1.2 part 1 section 5 forbids a DTD in a message, and
without one there are no entities to expand: no XXE, no billion laughs).

Lookups go by Clark name (``{namespace}local``) only: an attacker picks the prefixes, so
no XPath and no prefix maps from the document are ever used to find anything.

API (stable; the Windows and MDM protocol packages use it):

- ``parse(data, *, max_bytes=MAX_BYTES, max_depth=MAX_DEPTH) -> Element``; raises
  :class:`XmlError` (subclasses :class:`TooLarge`, :class:`TooDeep`,
  :class:`ForbiddenXml`, :class:`MalformedXml`).
- ``qname(ns, local) -> str``: the Clark name.
- ``children(el, ns, local) -> list[Element]``: element children with that name.
- ``child(el, ns, local) -> Element | None``: the one such child, ``None`` if absent,
  :class:`MalformedXml` if there are several.
- ``one(el, ns, local) -> Element``: exactly one such child, else :class:`MalformedXml`.
- ``elements(el) -> list[Element]``: element children (comments and PIs skipped).
- ``text(el) -> str``: the element's text content with comments dropped, stripped;
  :class:`MalformedXml` if it has element children.
- ``child_text(el, ns, local, *, default=None) -> str | None``: ``text`` of ``child``.
- ``is_nil(el) -> bool``: ``xsi:nil="true"`` (or ``"1"``).
- ``attr(el, ns, local) -> str | None``: an attribute by namespace (``ns=""`` for none).
- ``element(ns, local, text=None, attrib=None, nsmap=None) -> Element`` and
  ``sub(parent, ns, local, text=None, attrib=None) -> Element``: builders.
- ``nil(parent, ns, local) -> Element``: a child with ``xsi:nil="true"``.
- ``serialize(el) -> bytes``: UTF-8 with an XML declaration.
"""

from __future__ import annotations

import io
from typing import Any, Mapping

from lxml import etree

Element = etree._Element

MAX_BYTES = 256 * 1024
"""Largest body accepted: a CMC request with a chain fits many times over."""
MAX_DEPTH = 32
"""Deepest element nesting accepted: the deepest real message (an RST with a CMC
request in a BinarySecurityToken) is under 10 levels."""

XSI = "http://www.w3.org/2001/XMLSchema-instance"
XML_NS = "http://www.w3.org/XML/1998/namespace"


class XmlError(ValueError):
    """The body is not XML this service will read; ``detail`` is safe to show a client."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class TooLarge(XmlError):
    pass


class TooDeep(XmlError):
    pass


class ForbiddenXml(XmlError):
    """A DOCTYPE, entity declaration or other construct a SOAP message may not carry."""


class MalformedXml(XmlError):
    pass


def _parser_kwargs() -> dict[str, bool]:
    return {
        "resolve_entities": False,
        "no_network": True,
        "load_dtd": False,
        "dtd_validation": False,
        "huge_tree": False,
        "remove_pis": True,
    }


def parse(data: bytes, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Element:
    """The document element of ``data``, parsed safely (see the module docstring)."""
    if len(data) > max_bytes:
        raise TooLarge(f"XML body larger than {max_bytes} bytes")
    # A DOCTYPE is refused before lxml sees it. The document is read as UTF-8 (forced
    # below, whatever its declaration says), so a byte scan cannot be dodged by re-encoding.
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ForbiddenXml("a document type declaration is not allowed in a SOAP message")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
        raise MalformedXml("only UTF-8 XML is accepted")
    depth = 0
    root: Element | None = None
    try:
        events = etree.iterparse(
            io.BytesIO(data), events=("start", "end"), encoding="utf-8", **_parser_kwargs()
        )
        for event, el in events:
            if event == "start":
                depth += 1
                if depth > max_depth:
                    raise TooDeep(f"XML nested deeper than {max_depth} elements")
                if root is None:
                    root = el
            else:
                depth -= 1
    except etree.XMLSyntaxError as exc:
        # libxml2 2.14 (lxml 6) stops at 256 levels itself, and iterparse may hit that limit
        # while filling its first buffer, before any event reaches the count above; the
        # outcome is the same refusal whichever limit tripped first.
        if getattr(exc, "code", None) == etree.ErrorTypes.ERR_RESOURCE_LIMIT:  # not in lxml-stubs
            if "depth" in (exc.msg or "").lower():
                raise TooDeep(f"XML nested deeper than {max_depth} elements") from None
            raise TooLarge(f"XML exceeds a parser limit: {exc.msg}") from None
        raise MalformedXml(f"not well-formed XML: {exc.msg}") from None
    if root is None:
        raise MalformedXml("empty XML document")
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.public_id or docinfo.system_url:
        raise ForbiddenXml("a document type declaration is not allowed in a SOAP message")
    for node in root.iter():
        if isinstance(node, etree._Entity):
            raise ForbiddenXml("entity references are not allowed")
    return root


def qname(ns: str, local: str) -> str:
    return f"{{{ns}}}{local}" if ns else local


def split_tag(el: Element) -> tuple[str, str]:
    """(namespace, local name) of an element, by string: ``etree.QName`` raises ValueError
    for a tag lxml itself produced from a namespace URI holding ``}`` (a fuzzed body did)."""
    tag = el.tag if isinstance(el.tag, str) else ""
    if tag.startswith("{") and "}" in tag:
        ns, local = tag[1:].rsplit("}", 1)
        return ns, local
    return "", tag


def localname(el: Element) -> str:
    return split_tag(el)[1]


def elements(el: Element) -> list[Element]:
    return [c for c in el if isinstance(c.tag, str)]


def children(el: Element, ns: str, local: str) -> list[Element]:
    name = qname(ns, local)
    return [c for c in el if c.tag == name]


def child(el: Element, ns: str, local: str) -> Element | None:
    found = children(el, ns, local)
    if len(found) > 1:
        raise MalformedXml(f"more than one {local} in {localname(el)}")
    return found[0] if found else None


def one(el: Element, ns: str, local: str) -> Element:
    found = child(el, ns, local)
    if found is None:
        raise MalformedXml(f"{localname(el)} has no {local}")
    return found


def text(el: Element) -> str:
    """Character content, comments dropped (the spec captures put ``<!--Removed-->`` inside)."""
    if elements(el):
        raise MalformedXml(f"{localname(el)} must hold text, not elements")
    parts = [el.text or ""]
    for c in el:
        parts.append(c.tail or "")
    return "".join(parts).strip()


def child_text(el: Element, ns: str, local: str, *, default: str | None = None) -> str | None:
    found = child(el, ns, local)
    if found is None or is_nil(found):
        return default
    return text(found)


def attr(el: Element, ns: str, local: str) -> str | None:
    value = el.get(qname(ns, local))
    return None if value is None else str(value)


def is_nil(el: Element) -> bool:
    return (attr(el, XSI, "nil") or "").strip() in ("true", "1")


def element(ns: str, local: str, text: str | None = None, attrib: Mapping[str, str] | None = None,
            nsmap: Mapping[str | None, str] | None = None) -> Element:
    namespaces: Any = dict(nsmap or {})  # None is the default namespace (lxml-stubs say str)
    el = etree.Element(qname(ns, local), attrib=dict(attrib or {}), nsmap=namespaces)
    if text is not None:
        el.text = text
    return el


def sub(parent: Element, ns: str, local: str, text: str | None = None,
        attrib: Mapping[str, str] | None = None) -> Element:
    el = etree.SubElement(parent, qname(ns, local), attrib=dict(attrib or {}))
    if text is not None:
        el.text = text
    return el


def nil(parent: Element, ns: str, local: str) -> Element:
    return sub(parent, ns, local, attrib={qname(XSI, "nil"): "true"})


def serialize(el: Element) -> bytes:
    return bytes(etree.tostring(el, xml_declaration=True, encoding="utf-8"))
