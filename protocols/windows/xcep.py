"""MS-XCEP GetPolicies: the request read, the GetPoliciesResponse built.

:func:`parse_get_policies` reads the ``GetPolicies`` body element (namespace-strict;
``xsi:nil`` wherever Windows sends it); :func:`get_policies_response` renders a
:class:`PolicyView` (what one endpoint offers) for one caller. The rendering is a pure
function of its inputs, so :func:`policy_digest` can tell when the policy changed
(``LastUpdateTime``, MS-XCEP 3.1.1), which answers ``policiesNotChanged``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.edge import xml as X
from .access import Access
from .soap import SoapFault
from .templates import (
    CLIENT_VERSION_MASK,
    EKU_NAMES,
    EXTENSION_NAMES,
    GROUP_EKU,
    GROUP_EXTENSION,
    GROUP_HASH,
    GROUP_PUBLIC_KEY,
    GROUP_TEMPLATE,
    SERVER_VERSION_MASK,
    Template,
)
from gateway.edge.xml import Element

NS = "http://schemas.microsoft.com/windows/pki/2009/01/enrollmentpolicy"
GET_POLICIES = f"{NS}/IPolicy/GetPolicies"
GET_POLICIES_RESPONSE = f"{NS}/IPolicy/GetPoliciesResponse"
XSI = X.XSI


@dataclass(frozen=True)
class CaUri:
    client_authentication: int  # paths.CLIENT_AUTHENTICATION
    uri: str
    priority: int = 1
    renewal_only: bool = False


@dataclass(frozen=True)
class PolicyView:
    """What one CEP endpoint of one configuration offers (before the caller is known)."""

    policy_id: str
    friendly_name: str
    next_update_hours: int
    templates: tuple[Template, ...]
    ca_certificate: x509.Certificate
    ca_uris: tuple[CaUri, ...]


@dataclass(frozen=True)
class GetPolicies:
    last_update: dt.datetime | None
    preferred_language: str | None
    policy_oids: tuple[str, ...] | None
    client_version: int | None
    server_version: int | None


_DATETIME = re.compile(
    r"^(-?\d{4,})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?$")


def parse_xs_datetime(text: str) -> dt.datetime | None:
    """An ``xs:dateTime`` as UTC (no zone: GMT, as MS-XCEP 3.1.4.1.3.9 says); ``None`` when
    it is not one Python can hold (a client that sends garbage gets the full policy)."""
    m = _DATETIME.match(text.strip())
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    try:
        value = dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                            int((fraction or "0")[:6].ljust(6, "0")), tzinfo=dt.timezone.utc)
        if zone and zone != "Z":
            sign = 1 if zone[0] == "+" else -1
            offset = dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
            value = value - sign * offset
    except (ValueError, OverflowError):
        return None
    return value


def _int_or_none(el: Element | None) -> int | None:
    if el is None or X.is_nil(el):
        return None
    raw = X.text(el)
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise SoapFault(f"{el.tag.split('}')[-1]} is not an integer") from None


def parse_get_policies(payload: Element) -> GetPolicies:
    """The GetPolicies request; a missing or nil ``client`` is a fault (3.1.4.1.2.1)."""
    if payload.tag != X.qname(NS, "GetPolicies"):
        raise SoapFault("the Body does not hold an MS-XCEP GetPolicies request")
    try:
        client = X.child(payload, NS, "client")
        if client is None or X.is_nil(client):
            raise SoapFault("GetPolicies has no client element")
        last_update_el = X.child(client, NS, "lastUpdate")
        last_update = None
        if last_update_el is not None and not X.is_nil(last_update_el):
            last_update = parse_xs_datetime(X.text(last_update_el))
        language = X.child_text(client, NS, "preferredLanguage")
        policy_oids: tuple[str, ...] | None = None
        client_version = server_version = None
        request_filter = X.child(payload, NS, "requestFilter")
        if request_filter is not None and not X.is_nil(request_filter):
            oids_el = X.child(request_filter, NS, "policyOIDs")
            if oids_el is not None and not X.is_nil(oids_el):
                policy_oids = tuple(X.text(o) for o in X.children(oids_el, NS, "oid"))
            client_version = _int_or_none(X.child(request_filter, NS, "clientVersion"))
            server_version = _int_or_none(X.child(request_filter, NS, "serverVersion"))
    except X.XmlError as exc:
        raise SoapFault(exc.detail) from None
    return GetPolicies(last_update, language or None, policy_oids, client_version, server_version)


def selected(view: PolicyView, request: GetPolicies, caller: Access | None) -> list[Template]:
    """The templates ``caller`` may enroll in (all for ``None``) that the request's filter
    keeps (3.1.4.1.3.22)."""
    out = []
    for t in view.templates:
        if caller is not None and not caller.may_enroll(t.settings):
            continue
        if request.policy_oids is not None and t.settings.oid not in request.policy_oids:
            continue
        if request.client_version is not None and (t.private_key_flags & CLIENT_VERSION_MASK) > (
                (request.client_version & 0xF) << 24):
            continue
        if request.server_version is not None and (t.private_key_flags & SERVER_VERSION_MASK) > (
                (request.server_version & 0xF) << 16):
            continue
        out.append(t)
    return out


class _Oids:
    """The response's oIDs collection: one reference id per distinct (OID, group)."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, int], tuple[int, str]] = {}

    def ref(self, oid: str, group: int, name: str) -> int:
        key = (oid, group)
        if key not in self.entries:
            self.entries[key] = (len(self.entries) + 1, name)
        return self.entries[key][0]


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _policy(parent: Element, t: Template, oids: _Oids, caller: Access | None) -> None:
    s = t.settings
    policy = X.sub(parent, NS, "policy")
    X.sub(policy, NS, "policyOIDReference", str(oids.ref(s.oid, GROUP_TEMPLATE, s.display_name)))
    cas = X.sub(policy, NS, "cAs")
    X.sub(cas, NS, "cAReference", "0")
    a = X.sub(policy, NS, "attributes")
    X.sub(a, NS, "commonName", s.name)
    X.sub(a, NS, "policySchema", str(s.schema))
    validity = X.sub(a, NS, "certificateValidity")
    X.sub(validity, NS, "validityPeriodSeconds", str(t.validity_seconds))
    X.sub(validity, NS, "renewalPeriodSeconds", str(t.renewal_seconds))
    permission = X.sub(a, NS, "permission")
    X.sub(permission, NS, "enroll", _bool(caller is None or caller.may_enroll(s)))
    X.sub(permission, NS, "autoEnroll", _bool(s.autoenroll if caller is None else caller.may_autoenroll(s)))
    pk = X.sub(a, NS, "privateKeyAttributes")
    X.sub(pk, NS, "minimalKeyLength", str(t.min_key_bits))
    X.sub(pk, NS, "keySpec", str(t.key_spec))
    X.nil(pk, NS, "keyUsageProperty")
    X.nil(pk, NS, "permissions")
    if s.schema == 3:
        X.sub(pk, NS, "algorithmOIDReference", str(oids.ref(t.key_algorithm[0], GROUP_PUBLIC_KEY, t.key_algorithm[1])))
    else:
        X.nil(pk, NS, "algorithmOIDReference")
    providers = X.sub(pk, NS, "cryptoProviders")
    for p in t.providers:
        X.sub(providers, NS, "provider", p)
    revision = X.sub(a, NS, "revision")
    X.sub(revision, NS, "majorRevision", str(s.major_revision))
    X.sub(revision, NS, "minorRevision", str(s.minor_revision))
    if s.superseded:
        sup = X.sub(a, NS, "supersededPolicies")
        for name in s.superseded:
            X.sub(sup, NS, "commonName", name)
    else:
        X.nil(a, NS, "supersededPolicies")
    X.sub(a, NS, "privateKeyFlags", str(t.private_key_flags))
    X.sub(a, NS, "subjectNameFlags", str(t.subject_name_flags))
    X.sub(a, NS, "enrollmentFlags", str(t.enrollment_flags))
    X.sub(a, NS, "generalFlags", str(t.general_flags))
    if t.hash_algorithm is not None:
        X.sub(a, NS, "hashAlgorithmOIDReference", str(oids.ref(t.hash_algorithm[0], GROUP_HASH, t.hash_algorithm[1])))
    else:
        X.nil(a, NS, "hashAlgorithmOIDReference")
    X.nil(a, NS, "rARequirements")  # no RA signatures: the caller's own authentication suffices
    X.nil(a, NS, "keyArchivalAttributes")  # key archival is not offered
    for eku in t.ekus:
        oids.ref(eku, GROUP_EKU, EKU_NAMES.get(eku, eku))
    exts = X.sub(a, NS, "extensions")
    for e in t.extensions:
        ext = X.sub(exts, NS, "extension")
        X.sub(ext, NS, "oIDReference", str(oids.ref(e.oid, GROUP_EXTENSION, EXTENSION_NAMES.get(e.oid, e.oid))))
        X.sub(ext, NS, "critical", _bool(e.critical))
        X.sub(ext, NS, "value", base64.b64encode(e.value).decode())


def get_policies_response(view: PolicyView, request: GetPolicies, caller: Access | None, *,
                          last_update_time: dt.datetime) -> Element:
    """The ``GetPoliciesResponse`` element for ``caller`` (its rights, :mod:`.access`):
    only the templates it may enroll in, with its autoenrollment permission. ``None``: every
    template, as configured (for :func:`policy_digest`)."""
    root = X.element(NS, "GetPoliciesResponse", nsmap={None: NS, "xsi": XSI})
    response = X.sub(root, NS, "response")
    X.sub(response, NS, "policyID", view.policy_id)
    X.sub(response, NS, "policyFriendlyName", view.friendly_name)
    X.sub(response, NS, "nextUpdateHours", str(view.next_update_hours))
    if request.last_update is not None and request.last_update >= last_update_time:
        # 3.1.4.1.3.9: nothing changed since the client's copy: no policies, CAs or OIDs.
        X.sub(response, NS, "policiesNotChanged", "true")
        X.nil(response, NS, "policies")
        X.nil(root, NS, "cAs")
        X.nil(root, NS, "oIDs")
        return root
    X.nil(response, NS, "policiesNotChanged")  # AD CS sends nil with a full policy
    templates = selected(view, request, caller)
    oids = _Oids()
    if templates:
        policies = X.sub(response, NS, "policies")
        for t in templates:
            _policy(policies, t, oids, caller)
    else:
        X.nil(response, NS, "policies")
    cas = X.sub(root, NS, "cAs")
    ca = X.sub(cas, NS, "cA")
    uris = X.sub(ca, NS, "uris")
    for u in view.ca_uris:
        cauri = X.sub(uris, NS, "cAURI")
        X.sub(cauri, NS, "clientAuthentication", str(u.client_authentication))
        X.sub(cauri, NS, "uri", u.uri)
        X.sub(cauri, NS, "priority", str(u.priority))
        X.sub(cauri, NS, "renewalOnly", _bool(u.renewal_only))
    der = view.ca_certificate.public_bytes(serialization.Encoding.DER)
    X.sub(ca, NS, "certificate", base64.b64encode(der).decode())
    X.sub(ca, NS, "enrollPermission", _bool(caller is None or any(caller.may_enroll(t.settings) for t in view.templates)))
    X.sub(ca, NS, "cAReferenceID", "0")
    if oids.entries:
        oid_list = X.sub(root, NS, "oIDs")
        for (value, group), (ref, name) in oids.entries.items():
            o = X.sub(oid_list, NS, "oID")
            X.sub(o, NS, "value", value)
            X.sub(o, NS, "group", str(group))
            X.sub(o, NS, "oIDReferenceID", str(ref))
            X.sub(o, NS, "defaultName", name)
    else:
        X.nil(root, NS, "oIDs")
    return root


def policy_digest(view: PolicyView) -> str:
    """A digest of everything a full response can say, whoever asks: when it changes, the
    policy changed (who may enroll and autoenroll is part of it)."""
    everyone = GetPolicies(None, None, None, None, None)
    doc = get_policies_response(view, everyone, None, last_update_time=dt.datetime.max.replace(tzinfo=dt.timezone.utc))
    permissions = json.dumps([[t.name, t.settings.enroll, t.settings.autoenroll_for,
                               hashlib.sha256(t.settings.directory.security_descriptor).hexdigest()
                               if t.settings.directory is not None else None] for t in view.templates])
    return hashlib.sha256(X.serialize(doc) + permissions.encode()).hexdigest()
