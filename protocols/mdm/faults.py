"""The web service's faults: one typed error, stable codes, and the map from core errors.

A code names what went wrong for the caller to act on; the message says it in words
and never carries a secret. Core errors (:class:`gateway.errors.GatewayError`) become
faults by kind at the edge (:func:`fault_for`); anything else is an internal error,
logged once with its traceback and answered without one.
"""

from __future__ import annotations

from gateway.door import LockedOut
from gateway.errors import ConfigError, ErrorKind, GatewayError

CODES: dict[str, str] = {
    # code: what the caller did or should do (Sender), or what failed here (Receiver)
    "MalformedMessage": "the body is not a SOAP envelope this service reads (XML, DTD, size, depth)",
    "UnknownOperation": "the Body's element is not an operation of this service",
    "InvalidRequest": "an element is missing, repeated or malformed",
    "AuthenticationFailed": "no credentials, or a wrong user name or password",
    "LockedOut": "too many failed attempts: the credential is locked for a while",
    "Forbidden": "authenticated, but not allowed (a deactivated device, a disabled configuration)",
    "UnknownDigitalId": "no digital ID of that name in this configuration",
    "UnknownVariable": "a variable outside the supported vocabulary",
    "MissingVariable": "the digital ID's RDN format needs a variable the request lacks",
    "InvalidVariableValue": "a value that cannot be placed in a name (, + = and the like)",
    "InvalidRdnFormat": "the digital ID's RDN format is not valid",
    "ServerKeyGenerationNotAllowed": "the digital ID's profile is for device-held keys (use a SCEP challenge)",
    "ScepNotAvailable": "this configuration hands out no SCEP challenges",
    "InvalidPassword": "the PKCS#12 password is not acceptable",
    "CertificateNotFound": "no certificate of that serial number issued through this configuration",
    "PolicyViolation": "the profile or CA refused the request",
    "Conflict": "the request conflicts with the current state (already revoked, too many challenges)",
    "ServiceUnavailable": "the store or CA cannot be reached; try again later",
    "InternalError": "the gateway failed; the log has the details",
}
RECEIVER = frozenset({"ServiceUnavailable", "InternalError"})


class MdmFault(Exception):
    """Raised anywhere under the endpoint; answered as a SOAP fault (:mod:`.soap`)."""

    def __init__(self, code: str, message: str, *, version: str | None = None) -> None:
        assert code in CODES, code
        super().__init__(message)
        self.code = code
        self.message = message
        self.version = version

    @property
    def sender(self) -> bool:
        return self.code not in RECEIVER


_BY_KIND = {
    ErrorKind.BAD_REQUEST: "InvalidRequest",
    ErrorKind.BAD_CSR: "InvalidRequest",
    ErrorKind.BAD_SIGNATURE: "InvalidRequest",
    ErrorKind.BAD_KEY: "PolicyViolation",
    ErrorKind.POLICY: "PolicyViolation",
    ErrorKind.UNAUTHORIZED: "AuthenticationFailed",
    ErrorKind.FORBIDDEN: "Forbidden",
    ErrorKind.PENDING: "PolicyViolation",
    ErrorKind.REJECTED: "PolicyViolation",
    ErrorKind.NOT_FOUND: "CertificateNotFound",
    ErrorKind.CONFLICT: "Conflict",
    ErrorKind.UNAVAILABLE: "ServiceUnavailable",
}


def fault_for(exc: GatewayError) -> MdmFault:
    if isinstance(exc, LockedOut):
        return MdmFault("LockedOut", exc.detail)
    if isinstance(exc, ConfigError):  # the operator's settings, not the caller's request
        return MdmFault("InternalError", "this MDM configuration's settings are invalid; the log has the details")
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code in CODES:  # RdnError carries its own
        return MdmFault(code, exc.detail)
    return MdmFault(_BY_KIND.get(exc.kind, "InternalError"), exc.detail)
