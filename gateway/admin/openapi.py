"""The admin API's OpenAPI 3.1 document, built from the same route table the router uses.

Paths are relative to the ``/admin`` server URL. Schemas are JSON Schema 2020-12
(as OpenAPI 3.1 defines them), so clients and tests can validate bodies directly.
"""

from __future__ import annotations

from .roles import ROLES

import re
from typing import Any, Iterable

from ..authority import ENTITY_STATES
from ..ca.backend import RevocationReason
from ..ca.overrides import MAX_VALIDITY
from ..composition import protocol_names
from ..keys import KEY_ALGORITHMS
from ..ca.pkcs12 import ENCRYPTIONS as KEYGEN_ENCRYPTIONS
from ..keygen import MAX_PASSWORD as KEYGEN_MAX_PASSWORD
from ..keygen import MIN_PASSWORD as KEYGEN_MIN_PASSWORD
from ..keygen import PASSWORD_PATTERN as KEYGEN_PASSWORD_PATTERN
from .inputs import NONBLANK_PATTERN, SERIAL_PATTERN

API_KEY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,63}$"
LIFETIME_PATTERN = r"^[1-9][0-9]{0,4}[smhdw]$"
from .spec import JSON, Route

API_VERSION = "1.0.0"
_PATH_PARAM = re.compile(r"\{([^}/]+)\}")


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def object_schema(
    properties: dict[str, Any], required: Iterable[str] = (), *, closed: bool = False, **extra: Any
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    req = list(required)
    if req:
        schema["required"] = req
    if closed:
        schema["additionalProperties"] = False
    schema.update(extra)
    return schema


def _list_of(item: str) -> dict[str, Any]:
    return object_schema(
        {
            "items": {"type": "array", "items": ref(item)},
            "total": {"type": "integer", "minimum": 0, "description": "All matches (where counted)."},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
            "next_offset": {"type": ["integer", "null"], "description": "Offset of the next page; null on the last."},
        },
        ["items", "limit", "offset", "next_offset"],
    )


S = {"type": "string"}
T = {"type": "string", "minLength": 1, "pattern": NONBLANK_PATTERN}
"""Text the server requires: not empty, not only spaces."""
F = {"type": "string", "minLength": 1}
"""A bulk-revocation filter value: an empty one would widen the filter, so it is refused."""
SERIAL = {"type": "string", "pattern": SERIAL_PATTERN,
          "description": "Hex serial; case, leading zeros, 0x and colons between digit groups tolerated."}
PATH_PARAMS: dict[str, dict[str, Any]] = {"serial": SERIAL}
NS = {"type": ["string", "null"]}
DT = {"type": "string", "format": "date-time"}
NDT = {"type": ["string", "null"], "format": "date-time"}
BOOL = {"type": "boolean"}
INT = {"type": "integer"}
PEM = {"type": "string", "description": "PEM text"}
CA_ID = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{1,31}$"}
CA_NAME = {**T, "maxLength": 64, "description": "The CA's commonName (RFC 5280: at most 64 characters)."}
ORGANIZATION = {"type": "string", "maxLength": 64, "description": "organizationName; empty for none."}
KEY_ALGORITHM = {"type": "string", "enum": list(KEY_ALGORITHMS)}
VALIDITY_DAYS = {"type": "integer", "minimum": 1, "maximum": 36500}
def _reason_names() -> list[str]:
    camel = ["".join(w.capitalize() if i else w for i, w in enumerate(r.name.split("_"))) for r in RevocationReason]
    return sorted({*camel, *(r.name for r in RevocationReason)})


REASON = {
    "oneOf": [
        {"type": "string", "enum": _reason_names()},
        {"type": "integer", "enum": [int(r) for r in RevocationReason]},
        {"type": "string", "enum": [str(int(r)) for r in RevocationReason]},
    ],
    "description": "RFC 5280 reason by name (keyCompromise or key_compromise) or code; default unspecified. "
    "certificateHold suspends.",
}
_FINAL = [r for r in RevocationReason if r not in (RevocationReason.certificate_hold, RevocationReason.remove_from_crl)]
BULK_REASON = {
    "oneOf": [
        {"type": "string", "enum": [n for n in _reason_names() if RevocationReason.parse(n) in _FINAL]},
        {"type": "integer", "enum": [int(r) for r in _FINAL]},
        {"type": "string", "enum": [str(int(r)) for r in _FINAL]},
    ],
    "description": "A final RFC 5280 reason (not certificateHold or removeFromCRL); default unspecified.",
}
FILTER_PROPS = {
    "ca": F, "status": {"type": "string", "enum": ["valid", "hold"]}, "profile": F, "entity": F,
    "protocol_config": F, "subject": F, "expires_before": DT, "issued_after": DT, "issued_before": DT,
    "expires_after": DT, "san": F,
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": object_schema(
        {"error": {"type": "string", "description": "Error kind (bad_request, not_found, conflict, ...)."},
         "detail": S},
        ["error", "detail"],
    ),
    "Empty": object_schema({}, closed=True, description="No fields; the body may be omitted."),
    "CA": object_schema(
        {
            "id": S, "name": S,
            "kind": {"type": "string", "enum": ["root", "intermediate", "external_root", "external_signed"]},
            "state": {"type": "string", "enum": ["active", "awaiting_certificate", "disabled"]},
            "parent": NS, "key_algorithm": S, "can_issue": BOOL, "subject": NS, "serial": NS,
            "not_before": NDT, "not_after": NDT, "crl_number": INT, "crl_this_update": NDT,
            "crl_next_update": NDT, "created_at": DT,
            "certificate_pem": {"type": ["string", "null"], "description": "Detail view only."},
            "chain_pem": {"type": "string", "description": "Issuers above the CA, issuer first (detail view only)."},
            "csr_pem": {"type": ["string", "null"], "description": "CSR of an external_signed CA (detail view only)."},
        },
        ["id", "name", "kind", "state", "parent", "key_algorithm", "can_issue", "created_at"],
    ),
    "CACreateRoot": object_schema(
        {"kind": {"const": "root"}, "id": CA_ID, "name": CA_NAME, "key_algorithm": KEY_ALGORITHM,
         "validity_days": VALIDITY_DAYS, "organization": ORGANIZATION},
        ["kind", "id", "name"], closed=True,
    ),
    "CACreateIntermediate": object_schema(
        {"kind": {"const": "intermediate"}, "id": CA_ID, "name": CA_NAME, "parent": T, "key_algorithm": KEY_ALGORITHM,
         "validity_days": VALIDITY_DAYS, "organization": ORGANIZATION},
        ["kind", "id", "name", "parent"], closed=True,
    ),
    "CACreateExternalCSR": object_schema(
        {"kind": {"const": "external_csr"}, "id": CA_ID, "name": CA_NAME, "key_algorithm": KEY_ALGORITHM,
         "organization": ORGANIZATION},
        ["kind", "id", "name"], closed=True,
    ),
    "CACreateExternalRoot": object_schema(
        {"kind": {"const": "external_root"}, "id": CA_ID, "name": CA_NAME, "certificate": {**T, **PEM}},
        ["kind", "id", "name", "certificate"], closed=True,
    ),
    "CACreate": {
        "oneOf": [ref("CACreateRoot"), ref("CACreateIntermediate"), ref("CACreateExternalCSR"),
                  ref("CACreateExternalRoot")],
        "discriminator": {
            "propertyName": "kind",
            "mapping": {
                "root": "#/components/schemas/CACreateRoot",
                "intermediate": "#/components/schemas/CACreateIntermediate",
                "external_csr": "#/components/schemas/CACreateExternalCSR",
                "external_root": "#/components/schemas/CACreateExternalRoot",
            },
        },
    },
    "CACertificateImport": object_schema(
        {"certificate": {**T, **PEM}, "chain": {**T, "description": "PEM issuer chain up to the external root."}},
        ["certificate", "chain"], closed=True,
    ),
    "Profile": object_schema(
        {
            "name": S, "description": S, "validity": S, "max_validity": S, "backdate": S,
            "key_usage": {"type": "array", "items": S}, "key_usage_critical": BOOL,
            "extended_key_usage": {"type": "array", "items": S},
            "key_algorithms": {"type": "array", "items": S},
            "basic_constraints": object_schema({"ca": BOOL, "path_length": {"type": ["integer", "null"]}, "critical": BOOL}),
            "subject": object_schema({"mode": S, "format": NS, "require_cn": BOOL}),
            "san": object_schema({"mode": S, "cn_as_dns": BOOL, "allowed_types": {"type": "array", "items": S},
                         "required": BOOL, "critical": BOOL}),
            "extensions": object_schema({"allowed": {"type": "array", "items": S}, "ignore_unknown_extensions": BOOL}),
            "identifiers": object_schema({"authority_key_identifier": BOOL, "subject_key_identifier": S,
                                 "crl_distribution_point": BOOL, "aia_ocsp": BOOL, "aia_ca_issuers": BOOL}),
        },
        ["name", "validity", "max_validity", "key_usage", "extended_key_usage", "key_algorithms"],
    ),
    "ProtocolConfig": object_schema(
        {
            "id": S, "protocol": {"type": "string", "enum": list(protocol_names())}, "ca": S,
            "profiles": {"type": "array", "items": S}, "default_profile": S,
            "settings": {"type": "object"},
            "credentials": {"type": "array", "items": S, "description": "Names of stored credentials only."},
            "enabled": BOOL, "created_at": DT,
        },
        ["id", "protocol", "ca", "profiles", "default_profile", "settings", "enabled"],
    ),
    "ProtocolConfigCreate": object_schema(
        {
            "id": {"type": "string", "pattern": "^[a-z0-9_-]{2,18}$"},
            "protocol": {"type": "string", "enum": list(protocol_names())}, "ca": T,
            "profiles": {"type": "array", "items": T, "minItems": 1},
            "default_profile": S,
            "settings": {"type": "object", "description": 'e.g. {"approval": "manual"}'},
        },
        ["id", "protocol", "ca", "profiles"], closed=True,
    ),
    "ProtocolConfigUpdate": object_schema(
        {
            "enabled": BOOL,
            "settings": {"type": "object", "description": "Merged into the settings; a null value removes a key."},
            "profiles": {"type": "array", "items": S, "minItems": 1},
            "default_profile": S,
        },
        closed=True,
    ),
    "Certificate": object_schema(
        {
            "serial": {"type": "string", "description": "Lowercase hex, no leading zeros."},
            "ca": S, "profile": S, "subject": S, "sans": {"type": "array", "items": S},
            "not_before": DT, "not_after": DT, "expired": BOOL,
            "status": {"type": "string", "enum": ["valid", "revoked", "hold"]},
            "revocation_reason": NS, "revoked_at": NDT, "invalidity_date": NDT, "key_algorithm": S,
            "fingerprint_sha256": S, "entity": NS, "protocol_config": NS, "request": NS, "created_at": DT,
            "pem": {"type": "string", "description": "Detail view only."},
        },
        ["serial", "ca", "profile", "subject", "sans", "not_before", "not_after", "status"],
    ),
    "IssuedCertificate": {
        "allOf": [
            ref("Certificate"),
            object_schema({"chain": {"type": "array", "items": PEM, "description": "Issuer first, up to the root."}},
                 ["pem", "chain"]),
        ],
    },
    "Overrides": object_schema(
        {
            "subject": {"type": "string", "description": "RFC 4514 subject."},
            "sans": {"type": "array", "items": {"type": "string", "description": "DNS:x, IP:x, email:x or URI:x"}},
            "not_before": DT, "not_after": DT,
            "validity_seconds": {"type": "number", "exclusiveMinimum": 0,
                                 "maximum": int(MAX_VALIDITY.total_seconds()), "description": "At most 100 years."},
            "extensions": {"type": "array", "items": object_schema(
                {"oid": T, "critical": BOOL, "value": {**T, "description": "base64 DER value"}},
                ["oid", "value"], closed=True)},
            "variables": {"type": "object", "additionalProperties": S},
        },
        closed=True,
    ),
    "IssueRequest": object_schema(
        {"ca": T, "profile": T, "csr": {**T, "description": "PKCS#10 request, PEM."},
         "overrides": ref("Overrides")},
        ["ca", "profile", "csr"], closed=True,
    ),
    "KeygenRequest": object_schema(
        {"common_name": {**T, "maxLength": 64, "description": "Subject commonName (instead of subject)."},
         "subject": {**T, "description": "RFC 4514 subject, e.g. CN=dev1,O=Example (instead of common_name)."},
         "sans": {"type": "array", "items": S, "maxItems": 100,
                  "description": "DNS:host, IP:10.0.0.1, email:a@b or URI:... entries."},
         "profile": {**T, "description": "One of the configuration's profiles (default: its default)."},
         "key_algorithm": {**KEY_ALGORITHM, "description": "Default EC-P256, or RSA-2048 with legacy encryption."},
         "password": {"type": "string", "minLength": KEYGEN_MIN_PASSWORD, "maxLength": KEYGEN_MAX_PASSWORD,
                      "pattern": KEYGEN_PASSWORD_PATTERN,
                      "description": "Encrypts the PKCS#12 file; neither stored nor logged."},
         "encryption": {"type": "string", "enum": list(KEYGEN_ENCRYPTIONS), "default": "modern",
                        "description": "modern: PBES2 AES-256-CBC, PBKDF2-HMAC-SHA256, SHA-256 MAC; "
                        "legacy: pbeWithSHAAnd3-KeyTripleDES-CBC, SHA-1 MAC (old devices)."},
         "entity": {**T, "description": "End entity name (default: the commonName)."}},
        ["password"], closed=True,
        oneOf=[{"required": ["common_name"]}, {"required": ["subject"]}],
    ),
    "RevokeRequest": object_schema({"reason": REASON, "invalidity_date": DT}, closed=True),
    "CertificateFilter": object_schema(FILTER_PROPS, closed=True),
    "BulkRevokeRequest": object_schema(
        {
            "filter": ref("CertificateFilter"),
            "all": {"type": "boolean", "description": "Required to revoke with an empty filter."},
            "reason": BULK_REASON, "invalidity_date": DT,
        },
        closed=True,
        description="A non-empty filter, or \"all\": true (which an empty filter needs).",
        anyOf=[
            {"required": ["all"], "properties": {"all": {"const": True}}},
            {"required": ["filter"], "properties": {"filter": {"minProperties": 1}}},
        ],
    ),
    "BulkRevokeResult": object_schema(
        {
            "matched": INT, "revoked": INT, "failed": INT,
            "failures": {"type": "array", "items": object_schema({"serial": S, "error": S, "detail": S})},
        },
        ["matched", "revoked", "failed", "failures"],
    ),
    "EndEntity": object_schema(
        {
            "id": S, "name": S, "kind": S, "status": {"type": "string", "enum": list(ENTITY_STATES)},
            "protocol_config": NS, "attributes": {"type": "object"}, "created_at": DT, "updated_at": DT,
        },
        ["id", "name", "kind", "status"],
    ),
    "EndEntityStatus": object_schema(
        {
            "status": {"type": "string", "enum": list(ENTITY_STATES)},
            "revoke_certificates": {
                **BOOL, "default": False,
                "description": "With status decommissioned only: also revoke every certificate of the entity "
                               "still in force, reason cessationOfOperation.",
            },
        },
        ["status"], closed=True,
        anyOf=[
            {"properties": {"revoke_certificates": {"const": False}}},
            {"properties": {"status": {"const": "decommissioned"}}},
        ],
    ),
    "EndEntityStatusChange": {"allOf": [ref("EndEntity"), object_schema({"certificates": object_schema(
        {
            "revoked": {**INT, "description": "Revoked by this change."},
            "failed": {**INT, "description": "In force but could not be revoked (see the events)."},
            "remaining_valid": {**INT, "description": "Unrevoked and unexpired after this change."},
        },
        ["revoked", "failed", "remaining_valid"],
    )}, ["certificates"])]},
    "Event": object_schema(
        {
            "id": INT, "type": S, "status": {"type": "string", "enum": ["success", "failure", "pending"]},
            "entity": NS, "protocol_config": NS, "ca": NS, "serial": NS, "request": NS,
            "detail": {"type": "object", "description": "actor, reason, error, ..."}, "created_at": DT,
        },
        ["id", "type", "status", "detail", "created_at"],
    ),
    "Request": object_schema(
        {
            "id": S, "ca": S, "profile": S,
            "status": {"type": "string", "enum": ["pending", "approved", "upstream", "rejected", "issued"]},
            "subject": NS, "entity": NS, "protocol_config": NS, "serial": NS, "decided_by": NS, "reason": NS,
            "overrides": {"type": "object"}, "csr_pem": S, "created_at": DT, "decided_at": NDT,
        },
        ["id", "ca", "profile", "status", "csr_pem"],
    ),
    "RejectRequest": object_schema({"reason": T}, ["reason"], closed=True),
    "ApiKey": object_schema(
        {"id": S, "name": S, "role": {"type": "string", "enum": list(ROLES)},
         "kind": {"type": "string", "enum": ["api_key", "certificate"]}, "created_at": DT, "expires_at": NDT,
         "status": {"type": "string", "enum": ["active", "expired", "revoked"]}},
        ["id", "name", "role", "kind", "created_at", "expires_at", "status"],
        description="An admin API key or registered client certificate; never the key or its hash.",
    ),
    "ApiKeyCreated": {"allOf": [ref("ApiKey"), object_schema({"key": {**S, "description": "Shown only once."}},
                                                             ["key"])]},
    "ApiKeyCreate": object_schema(
        {"name": {"type": "string", "pattern": API_KEY_NAME_PATTERN, "description": "Unique."},
         "role": {"type": "string", "enum": list(ROLES), "default": "admin"},
         "expires_at": {**DT, "description": "When it stops working (future)."},
         "expires_in": {"type": "string", "pattern": LIFETIME_PATTERN,
                        "description": "Lifetime instead of expires_at: 90m, 12h, 30d, 2w."}},
        ["name"], closed=True,
    ),
    "OpenAPIDocument": {"type": "object", "description": "This document."},
}
for _item in ("CA", "Profile", "ProtocolConfig", "Certificate", "EndEntity", "Event", "Request", "ApiKey"):
    SCHEMAS[f"{_item}List"] = _list_of(_item)


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": ref("Error")}}, **extra}


RESPONSES: dict[str, dict[str, Any]] = {
    "BadRequest": _error("Malformed request: bad JSON, wrong field types, unknown fields, bad CSR"),
    "Unauthorized": _error(
        "No or wrong API key / client certificate",
        headers={"WWW-Authenticate": {"schema": {"type": "string"}, "description": 'Bearer realm="gateway-admin"'}},
    ),
    "Forbidden": _error("Refused by policy or state (deactivated entity, disabled configuration), "
                        "or a change asked with a read-only (auditor) key"),
    "NotFound": _error("No such object"),
    "Conflict": _error("The object's state does not allow this (already revoked, not pending, ...)"),
    "TooLarge": _error("Request body too large"),
    "Unavailable": _error("The CA cannot serve this now (no key, awaiting its certificate)"),
    "Internal": _error("Internal error (details are only logged)"),
}
_ERROR_RESPONSES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                    409: "Conflict", 413: "TooLarge", 503: "Unavailable", 500: "Internal"}


def operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": route.operation_id, "summary": route.summary, "tags": [route.tag]}
    params = [
        {"name": name, "in": "path", "required": True, "schema": PATH_PARAMS.get(name, {"type": "string"})}
        for name in _PATH_PARAM.findall(route.path)
    ]
    params += [
        {"name": q.name, "in": "query", "required": False, "schema": q.schema, "description": q.description}
        for q in route.query
    ]
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {"required": not route.body_optional, "content": {JSON: {"schema": ref(route.body)}}}
    responses: dict[str, Any] = {}
    for reply in route.replies:
        entry: dict[str, Any] = {"description": reply.description}
        if reply.schema is not None:
            entry["content"] = {reply.media_type: {"schema": ref(reply.schema)}}
        elif reply.status != 204:
            binary = reply.media_type not in ("application/x-pem-file", JSON)
            schema = {"type": "string", "format": "binary"} if binary else {"type": "string"}
            entry["content"] = {reply.media_type: {"schema": schema}}
        responses[str(reply.status)] = entry
    statuses = {400, 500, *route.errors}
    if not route.public:
        statuses.add(401)
        if route.method not in ("GET", "HEAD"):
            statuses.add(403)  # an auditor key (read-only) asking for a change
    if route.body is not None:
        statuses.add(413)
    for status in sorted(statuses):
        responses[str(status)] = {"$ref": f"#/components/responses/{_ERROR_RESPONSES[status]}"}
    op["responses"] = responses
    if route.public:
        op["security"] = []
    return op


def _referenced(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"].rsplit("/", 1)[1]} if isinstance(node.get("$ref"), str) and "/schemas/" in node["$ref"] else set()
        for value in node.values():
            found |= _referenced(value)
        return found
    if isinstance(node, list):
        return set().union(*(_referenced(v) for v in node)) if node else set()
    return set()


def build_document(routes: Iterable[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    tags: dict[str, None] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = operation(route)
        tags[route.tag] = None
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Certificate enrollment gateway: admin API",
            "version": API_VERSION,
            "description": (
                "Operate the gateway's CAs, profiles, protocol configurations, certificates, end "
                "entities, approval queue and audit trail. Authenticate with an API key "
                "(Authorization: Bearer, or X-API-Key) or a registered TLS client certificate. "
                "Lists take limit (1-500) and offset; unknown query parameters and body fields are refused."
            ),
        },
        "servers": [{"url": "/admin"}],
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}, {"clientCertificate": []}],
        "tags": [{"name": t} for t in tags],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "An admin API key."},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "clientCertificate": {
                    "type": "mutualTLS",
                    "description": "A TLS client certificate whose SHA-256 fingerprint is registered as an API key.",
                },
            },
            "schemas": SCHEMAS,
            "responses": RESPONSES,
        },
    }
    missing = _referenced(doc) - set(SCHEMAS)
    if missing:
        raise RuntimeError(f"admin OpenAPI document refers to undefined schemas {sorted(missing)}")
    return doc
