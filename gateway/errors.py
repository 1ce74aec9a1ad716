"""The gateway's one internal error type.

Every failure inside the core is a :class:`GatewayError` with a :class:`ErrorKind`.
Only the protocol edge (ACME problem documents, SCEP failInfo, EST/admin HTTP
status, SOAP faults) maps a kind to its wire form; ``detail`` is safe to show a
client and never carries secrets or internal tracebacks.
"""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    """What went wrong, independent of any protocol."""

    BAD_REQUEST = "bad_request"  # malformed input (garbage CSR, bad base64, ...)
    BAD_CSR = "bad_csr"  # CSR parsed but unacceptable (signature, content)
    BAD_SIGNATURE = "bad_signature"  # proof of possession failed
    BAD_KEY = "bad_key"  # key type or size refused by policy
    POLICY = "policy"  # refused by profile or configuration policy
    UNAUTHORIZED = "unauthorized"  # no or wrong credentials
    FORBIDDEN = "forbidden"  # authenticated but not allowed (deactivated entity, ...)
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"  # state does not allow the operation (already revoked, ...)
    PENDING = "pending"  # request held for operator approval
    REJECTED = "rejected"  # operator rejected a pending request
    UNAVAILABLE = "unavailable"  # backend cannot serve now (CA awaiting its certificate)
    INTERNAL = "internal"


class GatewayError(Exception):
    """A typed failure carrying a client-safe detail message."""

    kind: ErrorKind = ErrorKind.INTERNAL

    def __init__(self, detail: str, *, kind: ErrorKind | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if kind is not None:
            self.kind = kind

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.kind.value}: {self.detail!r})"


class BadRequest(GatewayError):
    kind = ErrorKind.BAD_REQUEST


class BadCSR(GatewayError):
    kind = ErrorKind.BAD_CSR


class BadSignature(GatewayError):
    kind = ErrorKind.BAD_SIGNATURE


class BadKey(GatewayError):
    kind = ErrorKind.BAD_KEY


class PolicyViolation(GatewayError):
    kind = ErrorKind.POLICY


class Unauthorized(GatewayError):
    kind = ErrorKind.UNAUTHORIZED


class Forbidden(GatewayError):
    kind = ErrorKind.FORBIDDEN


class NotFound(GatewayError):
    kind = ErrorKind.NOT_FOUND


class Conflict(GatewayError):
    kind = ErrorKind.CONFLICT


class Unavailable(GatewayError):
    kind = ErrorKind.UNAVAILABLE


class ConfigError(GatewayError):
    """Configuration or profile file is invalid; raised at load time, never per request."""

    kind = ErrorKind.BAD_REQUEST


HTTP_STATUS: dict[ErrorKind, int] = {
    ErrorKind.BAD_REQUEST: 400,
    ErrorKind.BAD_CSR: 400,
    ErrorKind.BAD_SIGNATURE: 400,
    ErrorKind.BAD_KEY: 400,
    ErrorKind.POLICY: 403,
    ErrorKind.UNAUTHORIZED: 401,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.PENDING: 202,
    ErrorKind.REJECTED: 403,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.INTERNAL: 500,
}
"""Default mapping for plain-HTTP edges (admin API, EST); protocols may refine it."""
