"""Roles: who may call which admin operation. One table, read by the admin API (403),
by the console (what a role may not do is not offered) and by the role-matrix tests.

The roles are Entrust PKIaaS's: Owners do everything; CA Administrators run CAs and
the certificates they issue; Certificate Administrators run certificates, requests and
end entities; CA Auditors read the CA side; Protocol Operators run the protocol
configurations and their credentials; Protocol Auditors read those. Two earlier names
stay valid for keys made before: ``admin`` (every route, as an Owner) and ``auditor``
(reads everything, changes nothing).

Every operation belongs to one *area*; a role grants ``read`` (GET/HEAD) or ``write``
(everything) per area. Operations outside the table are Owner-only, so a route added
without a thought for roles fails closed.
"""

from __future__ import annotations

from typing import Literal

Access = Literal["read", "write"]

OWNER, CA_ADMIN, CERT_ADMIN = "owner", "ca-admin", "certificate-admin"
CA_AUDITOR, PROTOCOL_OPERATOR, PROTOCOL_AUDITOR = "ca-auditor", "protocol-operator", "protocol-auditor"
LEGACY_ADMIN, LEGACY_AUDITOR = "admin", "auditor"

ROLES: tuple[str, ...] = (OWNER, CA_ADMIN, CERT_ADMIN, CA_AUDITOR, PROTOCOL_OPERATOR, PROTOCOL_AUDITOR,
                          LEGACY_ADMIN, LEGACY_AUDITOR)
ROLE_TITLES: dict[str, str] = {
    OWNER: "Owner", CA_ADMIN: "CA Administrator", CERT_ADMIN: "Certificate Administrator",
    CA_AUDITOR: "CA Auditor", PROTOCOL_OPERATOR: "Protocol Operator", PROTOCOL_AUDITOR: "Protocol Auditor",
    LEGACY_ADMIN: "Administrator (as Owner)", LEGACY_AUDITOR: "Auditor (reads everything)",
}

AREAS = ("cas", "profiles", "certificates", "requests", "entities", "events", "protocols", "distribution", "access")

_ALL_WRITE: dict[str, Access] = {area: "write" for area in AREAS}
_ALL_READ: dict[str, Access] = {area: "read" for area in AREAS}

GRANTS: dict[str, dict[str, Access]] = {
    OWNER: _ALL_WRITE,
    LEGACY_ADMIN: _ALL_WRITE,
    LEGACY_AUDITOR: _ALL_READ,
    CA_ADMIN: {"cas": "write", "profiles": "read", "certificates": "write", "requests": "write",
               "entities": "write", "events": "read", "protocols": "read", "distribution": "read"},
    CERT_ADMIN: {"cas": "read", "profiles": "read", "certificates": "write", "requests": "write",
                 "entities": "write", "events": "read", "protocols": "read"},
    CA_AUDITOR: {"cas": "read", "profiles": "read", "certificates": "read", "requests": "read",
                 "entities": "read", "events": "read", "distribution": "read"},
    PROTOCOL_OPERATOR: {"cas": "read", "profiles": "read", "protocols": "write", "distribution": "write",
                        "events": "read"},
    PROTOCOL_AUDITOR: {"cas": "read", "profiles": "read", "protocols": "read", "distribution": "read",
                       "events": "read"},
}

_PREFIX_AREAS: tuple[tuple[str, str], ...] = (
    ("/cas", "cas"), ("/profiles", "profiles"), ("/certificates", "certificates"), ("/requests", "requests"),
    ("/end-entities", "entities"), ("/events", "events"), ("/statistics", "events"),
    ("/protocol-configs", "protocols"), ("/acme/", "protocols"), ("/scep/", "protocols"), ("/est/", "protocols"),
    ("/mdm", "protocols"), ("/windows/", "protocols"),
    ("/outbox", "distribution"), ("/destinations", "distribution"),
    ("/api-keys", "access"), ("/console-users", "access"),
)
_OPERATION_AREAS: dict[str, str] = {
    # issuing a key pair and certificate (PKCS#12) is certificate work, though it sits under a configuration
    "keygenPKCS12": "certificates",
}
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def check_role(role: str) -> str:
    """``role`` if it is one; ValueError naming the choices otherwise."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
    return role


def area_of(path: str, operation_id: str | None = None) -> str:
    """The area of an admin route (its path relative to ``/admin``); ``access`` when unknown."""
    if operation_id in _OPERATION_AREAS:
        return _OPERATION_AREAS[operation_id]
    for prefix, area in _PREFIX_AREAS:
        stem = prefix.rstrip("/")
        if path == stem or path.startswith(stem + "/"):
            return area
    return "access"


def may(role: str, area: str, method: str) -> bool:
    """Whether ``role`` may call a ``method`` route in ``area``."""
    granted = GRANTS.get(role, {}).get(area)
    if granted is None:
        return False
    return granted == "write" or method.upper() in READ_METHODS


def may_write(role: str, area: str) -> bool:
    return GRANTS.get(role, {}).get(area) == "write"
