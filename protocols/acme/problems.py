"""ACME problem documents (RFC 8555 section 6.7, RFC 7807): the one place errors get their wire form.

Each constructor fixes the URN and the HTTP status together. Inside the gateway,
failures are :class:`gateway.errors.GatewayError`; :func:`from_gateway_error` maps
their kinds at this edge, so a core message reaches the client but never a
traceback or SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.errors import ErrorKind, GatewayError

NS = "urn:ietf:params:acme:error:"
CONTENT_TYPE = "application/problem+json"


@dataclass(frozen=True)
class SubProblem:
    """A problem about one identifier of a request (RFC 8555 section 6.7.1)."""

    type: str
    detail: str
    identifier: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"type": NS + self.type, "detail": self.detail, "identifier": self.identifier}


class Problem(Exception):
    """An ACME error to send as ``application/problem+json``."""

    def __init__(
        self, type: str, detail: str, status: int, *, subproblems: tuple[SubProblem, ...] = (),
        headers: dict[str, str] | None = None, extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.type = type
        self.detail = detail
        self.status = status
        self.subproblems = subproblems
        self.headers = headers or {}
        self.extra = extra or {}

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": NS + self.type, "detail": self.detail, "status": self.status}
        if self.subproblems:
            doc["subproblems"] = [s.to_json() for s in self.subproblems]
        doc.update(self.extra)
        return doc

    def __repr__(self) -> str:
        return f"Problem({self.type}, {self.status}, {self.detail!r})"


def malformed(detail: str, status: int = 400) -> Problem:
    return Problem("malformed", detail, status)


def not_found(detail: str) -> Problem:
    return Problem("malformed", detail, 404)


def unsupported_media_type(detail: str) -> Problem:
    return Problem("malformed", detail, 415)


def method_not_allowed(allowed: str) -> Problem:
    return Problem("malformed", "method not allowed", 405, headers={"Allow": allowed})


def unauthorized(detail: str) -> Problem:
    return Problem("unauthorized", detail, 403)


def bad_nonce(detail: str) -> Problem:
    return Problem("badNonce", detail, 400)


def bad_signature_algorithm(detail: str, algorithms: list[str]) -> Problem:
    return Problem("badSignatureAlgorithm", detail, 400, extra={"algorithms": algorithms})


def bad_public_key(detail: str) -> Problem:
    return Problem("badPublicKey", detail, 400)


def account_does_not_exist(detail: str) -> Problem:
    return Problem("accountDoesNotExist", detail, 400)


def external_account_required(detail: str) -> Problem:
    return Problem("externalAccountRequired", detail, 403)


def invalid_contact(detail: str) -> Problem:
    return Problem("invalidContact", detail, 400)


def unsupported_contact(detail: str) -> Problem:
    return Problem("unsupportedContact", detail, 400)


def user_action_required(detail: str, instance: str | None = None) -> Problem:
    return Problem("userActionRequired", detail, 403, extra={"instance": instance} if instance else None)


def rejected_identifier(detail: str, subproblems: tuple[SubProblem, ...] = ()) -> Problem:
    return Problem("rejectedIdentifier", detail, 400, subproblems=subproblems)


def unsupported_identifier(detail: str, subproblems: tuple[SubProblem, ...] = ()) -> Problem:
    return Problem("unsupportedIdentifier", detail, 400, subproblems=subproblems)


def compound(detail: str, subproblems: tuple[SubProblem, ...]) -> Problem:
    """Several identifiers failed for different reasons; one type if they agree."""
    kinds = {s.type for s in subproblems}
    type_ = kinds.pop() if len(kinds) == 1 else "compound"
    return Problem(type_, detail, 400, subproblems=subproblems)


def bad_csr(detail: str) -> Problem:
    return Problem("badCSR", detail, 400)


def order_not_ready(detail: str) -> Problem:
    return Problem("orderNotReady", detail, 403)


def bad_revocation_reason(detail: str) -> Problem:
    return Problem("badRevocationReason", detail, 400)


def already_revoked(detail: str) -> Problem:
    return Problem("alreadyRevoked", detail, 400)


def already_replaced(detail: str) -> Problem:
    return Problem("alreadyReplaced", detail, 409)


def invalid_profile(detail: str) -> Problem:
    return Problem("invalidProfile", detail, 400)


def conflict(detail: str, location: str | None = None) -> Problem:
    return Problem("malformed", detail, 409, headers={"Location": location} if location else None)


def rate_limited(detail: str, retry_after: int) -> Problem:
    return Problem("rateLimited", detail, 429, headers={"Retry-After": str(max(1, retry_after))})


def server_internal(detail: str = "internal server error", status: int = 500) -> Problem:
    return Problem("serverInternal", detail, status)


# Validation failures (stored on challenges; RFC 8555 section 8 and 6.7).
def validation_problem(type: str, detail: str) -> Problem:
    return Problem(type, detail, 400 if type != "unauthorized" else 403)


_BY_KIND: dict[ErrorKind, tuple[str, int]] = {
    ErrorKind.BAD_REQUEST: ("malformed", 400),
    ErrorKind.BAD_CSR: ("badCSR", 400),
    ErrorKind.BAD_SIGNATURE: ("badCSR", 400),
    ErrorKind.BAD_KEY: ("badCSR", 400),
    ErrorKind.POLICY: ("badCSR", 400),
    ErrorKind.UNAUTHORIZED: ("unauthorized", 403),
    ErrorKind.FORBIDDEN: ("unauthorized", 403),
    ErrorKind.NOT_FOUND: ("malformed", 404),
    ErrorKind.CONFLICT: ("malformed", 409),
    ErrorKind.PENDING: ("serverInternal", 503),
    ErrorKind.REJECTED: ("unauthorized", 403),
    ErrorKind.UNAVAILABLE: ("serverInternal", 503),
    ErrorKind.INTERNAL: ("serverInternal", 500),
}


RETRY_AFTER_SECONDS = 5
"""How long a client should wait after a 503 (store or CA unavailable) before retrying."""


def unavailable(detail: str) -> Problem:
    """Temporarily unable to serve (the store lost its connection, the CA is not ready):
    ``serverInternal`` 503 with ``Retry-After`` (RFC 8555 section 6.6), nothing changed."""
    return Problem("serverInternal", detail, 503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def from_gateway_error(exc: GatewayError) -> Problem:
    """The ACME form of a core error; internal details stay in the log."""
    if exc.kind is ErrorKind.UNAVAILABLE:
        return unavailable(exc.detail)
    type_, status = _BY_KIND[exc.kind]
    detail = exc.detail if exc.kind is not ErrorKind.INTERNAL else "internal server error"
    return Problem(type_, detail, status)
