"""ACME Renewal Information (RFC 9773): certificate identifiers and suggested windows.

A certificate is named by ``base64url(AKI keyIdentifier) "." base64url(serial as
DER INTEGER content)``. The window is a slice of the certificate's validity
(configurable, by default from 2/3 to 5/6 of it), so clients spread renewals
instead of all renewing at expiry; a revoked certificate gets a window that has
already begun, telling clients to replace it now.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509

from . import problems
from .nonces import b64url, b64url_decode


@dataclass(frozen=True)
class CertID:
    key_identifier: bytes
    serial: int

    @property
    def serial_hex(self) -> str:
        return format(self.serial, "x")

    def __str__(self) -> str:
        length = (self.serial.bit_length() + 8) // 8  # room for the sign bit
        return f"{b64url(self.key_identifier)}.{b64url(self.serial.to_bytes(length, 'big', signed=True))}"

    @classmethod
    def parse(cls, text: str) -> "CertID":
        """Strict: two base64url parts, a positive serial in minimal encoding."""
        if not isinstance(text, str) or text.count(".") != 1:
            raise problems.malformed("a certificate identifier is 'base64url(AKI).base64url(serial)'")
        aki_text, serial_text = text.split(".")
        try:
            aki, serial_bytes = b64url_decode(aki_text), b64url_decode(serial_text)
        except ValueError:
            raise problems.malformed("the certificate identifier is not valid base64url") from None
        if not aki or not serial_bytes:
            raise problems.malformed("the certificate identifier has an empty part")
        serial = int.from_bytes(serial_bytes, "big", signed=True)
        if serial <= 0:
            raise problems.malformed("the certificate identifier's serial must be positive")
        if len(serial_bytes) > 1 and (
            (serial_bytes[0] == 0 and serial_bytes[1] < 0x80) or serial_bytes[0] == 0xFF
        ):
            raise problems.malformed("the certificate identifier's serial is not minimally encoded")
        return cls(aki, serial)

    @classmethod
    def of(cls, cert: x509.Certificate) -> "CertID":
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        if aki is None:
            raise ValueError("certificate has no authority key identifier")
        return cls(aki, cert.serial_number)


@dataclass(frozen=True)
class Window:
    start: dt.datetime
    end: dt.datetime

    def to_json(self) -> dict[str, str]:
        return {"start": _rfc3339(self.start), "end": _rfc3339(self.end)}


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def suggested_window(
    not_before: dt.datetime, not_after: dt.datetime, fractions: tuple[float, float],
    *, revoked: bool, now: dt.datetime,
) -> Window:
    if revoked:
        # Renew immediately: a window that is already open (RFC 9773 section 4.2).
        return Window(now - dt.timedelta(days=1), now)
    lifetime = not_after - not_before
    return Window(not_before + lifetime * fractions[0], not_before + lifetime * fractions[1])
