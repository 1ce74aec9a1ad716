"""SCEP wire vocabulary (RFC 8894 section 3.2.1): attribute OIDs, message types, statuses.

One place decides how a failure looks on the wire: :class:`ScepFailure` carries the
``failInfo`` a CertRep must report, and :func:`fail_info_for` maps the core's
:class:`~gateway.errors.ErrorKind` to it.
"""

from __future__ import annotations

import enum

from gateway.errors import ErrorKind, GatewayError

# Signed attributes of a pkiMessage (RFC 8894 section 3.2.1, id-VeriSign 2.16.840.1.113733).
OID_MESSAGE_TYPE = "2.16.840.1.113733.1.9.2"
OID_PKI_STATUS = "2.16.840.1.113733.1.9.3"
OID_FAIL_INFO = "2.16.840.1.113733.1.9.4"
OID_SENDER_NONCE = "2.16.840.1.113733.1.9.5"
OID_RECIPIENT_NONCE = "2.16.840.1.113733.1.9.6"
OID_TRANSACTION_ID = "2.16.840.1.113733.1.9.7"
OID_FAIL_INFO_TEXT = "1.3.6.1.5.5.7.24.1"  # id-scep-failInfoText (RFC 8894 section 3.2.1.4.2)

CONTENT_TYPE_PKI_MESSAGE = "application/x-pki-message"
CONTENT_TYPE_CA_CERT = "application/x-x509-ca-cert"
CONTENT_TYPE_CA_RA_CERT = "application/x-x509-ca-ra-cert"
CONTENT_TYPE_NEXT_CA_CERT = "application/x-x509-next-ca-cert"


class MessageType(enum.Enum):
    """``messageType`` values (a PrintableString of decimal digits on the wire)."""

    CERT_REP = "3"
    RENEWAL_REQ = "17"
    UPDATE_REQ = "18"  # draft-era; treated like RenewalReq
    PKCS_REQ = "19"
    CERT_POLL = "20"  # a.k.a. GetCertInitial
    GET_CERT = "21"
    GET_CRL = "22"


class PkiStatus(enum.Enum):
    SUCCESS = "0"
    FAILURE = "2"
    PENDING = "3"


class FailInfo(enum.Enum):
    BAD_ALG = "0"
    BAD_MESSAGE_CHECK = "1"
    BAD_REQUEST = "2"
    BAD_TIME = "3"
    BAD_CERT_ID = "4"

    @property
    def rfc_name(self) -> str:
        """The name RFC 8894 section 3.2.1.4 gives it (``badMessageCheck``)."""
        first, *rest = self.name.lower().split("_")
        return first + "".join(word.capitalize() for word in rest)


class ScepFailure(Exception):
    """A request that must be answered with a FAILURE CertRep carrying ``fail_info``.

    ``text`` goes into failInfoText: client-safe, never a secret or a traceback.
    """

    def __init__(self, fail_info: FailInfo, text: str) -> None:
        super().__init__(text)
        self.fail_info = fail_info
        self.text = text

    def __repr__(self) -> str:
        return f"ScepFailure({self.fail_info.name}: {self.text!r})"


class MalformedMessage(Exception):
    """Bytes that are not a pkiMessage we could answer at all (no transactionID, nonce or
    signer to address a CertRep to): the HTTP layer answers 400 with this text."""


_FAIL_INFO = {
    ErrorKind.BAD_KEY: FailInfo.BAD_ALG,
    ErrorKind.BAD_SIGNATURE: FailInfo.BAD_MESSAGE_CHECK,
    ErrorKind.NOT_FOUND: FailInfo.BAD_CERT_ID,
}


def fail_info_for(exc: GatewayError) -> FailInfo:
    """The failInfo for a core error: weak or unsupported keys are ``badAlg``, a CSR whose
    proof of possession fails is ``badMessageCheck``, everything the client may not do is
    ``badRequest`` (RFC 8894 has no finer code for policy refusals)."""
    return _FAIL_INFO.get(exc.kind, FailInfo.BAD_REQUEST)
