"""CSR Attributes (RFC 7030 section 4.5, clarified by RFC 9908) from a label's settings.

A label's ``settings["csrattrs"]`` is a JSON object; each key adds elements to the
one ``CsrAttrs ::= SEQUENCE OF AttrOrOID`` the server returns:

``items``
    Elements in the order given, each an OID string or ``{"type", "values"}``
    (as under ``attributes``): for reproducing a list exactly.
``oids``
    Plain OIDs (the RFC 7030 A.2 style list): ``["1.2.840.113549.1.9.7", ...]``.
``attributes``
    Attributes with values: ``[{"type": OID, "values": [VALUE, ...]}]`` where a
    VALUE is ``{"oid": ...}``, ``{"utf8": ...}``, ``{"printable": ...}`` or
    ``{"der": base64}`` (e.g. ``id-ecPublicKey`` with the curve OID).
``extensions``
    Extensions the client must copy into its CSR, sent as the one
    ``id-ExtensionReq`` attribute (RFC 9908 section 3.2):
    ``[{"oid": OID, "critical": bool, "value": base64 extnValue}]``.
``template``
    The RFC 9908 ``CertificationRequestInfoTemplate`` attribute:
    ``{"subject": [{"type": OID, "value": str or absent}], "key": "EC-P256" |
    "RSA-3072" | ..., "extensions": [{"oid": OID, "critical": bool,
    "value": base64 or null}]}``. An RDN or extension without a value is for
    the client to fill in. Clients that understand templates use only this.
``der``
    A complete CsrAttrs (base64 DER) served as is; excludes the other keys.

OIDs may also be written by the names in :data:`OID_NAMES`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from gateway.errors import BadRequest
from gateway.keys import parse_algorithm

from gateway.edge import der

OID_NAMES: dict[str, str] = {
    "challengePassword": "1.2.840.113549.1.9.7",
    "extensionRequest": "1.2.840.113549.1.9.14",
    "macAddress": "1.3.6.1.1.1.1.22",
    "serialNumber": "2.5.4.5",
    "commonName": "2.5.4.3",
    "organizationName": "2.5.4.10",
    "organizationalUnitName": "2.5.4.11",
    "subjectAltName": "2.5.29.17",
    "keyUsage": "2.5.29.15",
    "extKeyUsage": "2.5.29.37",
    "id-ecPublicKey": "1.2.840.10045.2.1",
    "rsaEncryption": "1.2.840.113549.1.1.1",
    "secp256r1": "1.2.840.10045.3.1.7",
    "secp384r1": "1.3.132.0.34",
    "secp521r1": "1.3.132.0.35",
    "ecdsa-with-SHA256": "1.2.840.10045.4.3.2",
    "ecdsa-with-SHA384": "1.2.840.10045.4.3.3",
    "ecdsa-with-SHA512": "1.2.840.10045.4.3.4",
    "sha256WithRSAEncryption": "1.2.840.113549.1.1.11",
    "sha384WithRSAEncryption": "1.2.840.113549.1.1.12",
    "sha256": "2.16.840.1.101.3.4.2.1",
    "sha384": "2.16.840.1.101.3.4.2.2",
    "sha512": "2.16.840.1.101.3.4.2.3",
}

EXTENSION_REQUEST = OID_NAMES["extensionRequest"]
CRI_TEMPLATE = "1.2.840.113549.1.9.16.2.61"  # id-aa-certificationRequestInfoTemplate (RFC 9908)
EXTENSION_REQ_TEMPLATE = "1.2.840.113549.1.9.16.2.62"  # id-aa-extensionReqTemplate (RFC 9908)
_CURVES = {"P256": OID_NAMES["secp256r1"], "P384": OID_NAMES["secp384r1"], "P521": OID_NAMES["secp521r1"]}
_KEYS = {"items", "oids", "attributes", "extensions", "template", "der"}


def _oid(value: Any) -> bytes:
    name = OID_NAMES.get(value, value) if isinstance(value, str) else value
    return der.oid(name)


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise BadRequest(f"{what} must be base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{what} is not valid base64") from None


def _value(spec: Any) -> bytes:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise BadRequest('an attribute value is one of {"oid"}, {"utf8"}, {"printable"} or {"der"}')
    (kind, value), = spec.items()
    if kind == "oid":
        return _oid(value)
    if kind in ("utf8", "printable"):
        if not isinstance(value, str):
            raise BadRequest(f"a {kind} value must be text")
        return der.utf8(value) if kind == "utf8" else der.printable(value)
    if kind == "der":
        return der.parse_any(_b64(value, "a der attribute value"), "a der attribute value")
    raise BadRequest(f"unknown attribute value kind {kind!r}")


def _attribute(type_oid: Any, values: list[bytes]) -> bytes:
    if not values:
        raise BadRequest("an attribute needs at least one value")
    return der.sequence(_oid(type_oid), der.set_of(values))


def _attribute_spec(attr: Any) -> bytes:
    if not isinstance(attr, dict) or set(attr) != {"type", "values"} or not isinstance(attr["values"], list):
        raise BadRequest('a csrattrs attribute is {"type": OID, "values": [...]}')
    return _attribute(attr["type"], [_value(v) for v in attr["values"]])


def _extension(spec: Any, *, template: bool) -> bytes:
    if not isinstance(spec, dict) or set(spec) - {"oid", "critical", "value"} or "oid" not in spec:
        raise BadRequest('an extension is {"oid", "critical" (optional), "value" (base64)}')
    parts = [_oid(spec["oid"])]
    critical = spec.get("critical", False)
    if not isinstance(critical, bool):
        raise BadRequest("extension critical must be true or false")
    if critical:
        parts.append(der.boolean(True))  # DEFAULT FALSE is omitted in DER
    value = spec.get("value")
    if value is None:
        if not template:
            raise BadRequest("an extension outside a template needs its value")
    else:
        parts.append(der.octet_string(der.parse_any(_b64(value, "extension value"), "extension value")))
    return der.sequence(*parts)


def _key_template(spec: Any) -> bytes:
    """The contents of a SubjectPublicKeyInfoTemplate (its tag is the implicit [0]):
    the algorithm, plus a dummy key when an RSA size must be conveyed."""
    if not isinstance(spec, str):
        raise BadRequest('template key must be a key algorithm name such as "EC-P256" or "RSA-3072"')
    desc = parse_algorithm(spec)
    if desc.family == "EC":
        return der.sequence(_oid("id-ecPublicKey"), der.oid(_CURVES[str(desc.size)]))
    bits = int(desc.size)
    modulus = (1 << (bits - 1)) | 1  # any modulus of that length: the value is a placeholder
    dummy = der.sequence(der.integer(modulus), der.integer(65537))
    return der.sequence(_oid("rsaEncryption"), der.null()) + der.bit_string(dummy)


def _template(spec: Any) -> bytes:
    if not isinstance(spec, dict) or set(spec) - {"subject", "key", "extensions"}:
        raise BadRequest('a template is {"subject", "key", "extensions"} (each optional)')
    parts = [der.integer(0)]
    subject = spec.get("subject")
    if subject is not None:
        if not isinstance(subject, list):
            raise BadRequest("template subject must be a list of RDNs")
        rdns = []
        for rdn in subject:
            if not isinstance(rdn, dict) or set(rdn) - {"type", "value"} or "type" not in rdn:
                raise BadRequest('a template RDN is {"type", "value" (optional)}')
            inner = [_oid(rdn["type"])]
            if rdn.get("value") is not None:
                if not isinstance(rdn["value"], str):
                    raise BadRequest("a template RDN value must be text")
                inner.append(der.utf8(rdn["value"]))
            rdns.append(der.set_of([der.sequence(*inner)]))
        parts.append(der.sequence(*rdns))
    if spec.get("key") is not None:
        parts.append(der.context(0, _key_template(spec["key"])))
    attributes: list[bytes] = []
    extensions = spec.get("extensions") or []
    if not isinstance(extensions, list):
        raise BadRequest("template extensions must be a list")
    if extensions:
        partial = any(isinstance(e, dict) and e.get("value") is None for e in extensions)
        encoded = [_extension(e, template=True) for e in extensions]
        _unique_extensions(extensions)
        # Full values go in id-ExtensionReq; only a partial request needs the template type.
        attributes.append(_attribute(EXTENSION_REQ_TEMPLATE if partial else EXTENSION_REQUEST,
                                     [der.sequence(*encoded)]))
    parts.append(der.context(1, b"".join(sorted(attributes))))
    return der.sequence(*parts)


def _unique_extensions(specs: list[Any]) -> None:
    seen = set()
    for spec in specs:
        oid = OID_NAMES.get(spec["oid"], spec["oid"])
        if oid in seen:
            raise BadRequest(f"extension {oid} is listed twice")
        seen.add(oid)


def build_csrattrs(spec: dict[str, Any] | None) -> bytes | None:
    """The DER CsrAttrs for a label's ``csrattrs`` setting; None when there is none."""
    if not spec:
        return None
    if not isinstance(spec, dict):
        raise BadRequest("csrattrs must be an object")
    unknown = set(spec) - _KEYS
    if unknown:
        raise BadRequest(f"unknown csrattrs key(s) {sorted(unknown)}; use {sorted(_KEYS)}")
    if "der" in spec:
        if len(spec) != 1:
            raise BadRequest('"der" serves a complete CsrAttrs and cannot be combined with other keys')
        raw = der.parse_any(_b64(spec["der"], "csrattrs der"), "csrattrs der")
        if raw[:1] != b"\x30":
            raise BadRequest("csrattrs der must be a SEQUENCE")
        return raw
    items: list[bytes] = []
    ordered = spec.get("items") or []
    if not isinstance(ordered, list):
        raise BadRequest("csrattrs items must be a list")
    for item in ordered:
        items.append(_oid(item) if isinstance(item, str) else _attribute_spec(item))
    oids = spec.get("oids") or []
    if not isinstance(oids, list):
        raise BadRequest("csrattrs oids must be a list")
    items += [_oid(o) for o in oids]
    attributes = spec.get("attributes") or []
    if not isinstance(attributes, list):
        raise BadRequest("csrattrs attributes must be a list")
    items += [_attribute_spec(attr) for attr in attributes]
    extensions = spec.get("extensions") or []
    if not isinstance(extensions, list):
        raise BadRequest("csrattrs extensions must be a list")
    if extensions:
        encoded = [_extension(e, template=False) for e in extensions]
        _unique_extensions(extensions)
        items.append(_attribute(EXTENSION_REQUEST, [der.sequence(*encoded)]))
    if spec.get("template") is not None:
        items.append(_attribute(CRI_TEMPLATE, [_template(spec["template"])]))
    return der.sequence(*items)
