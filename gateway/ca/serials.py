"""Certificate serial numbers: positive, 20 octets, 158 bits from the OS CSPRNG.

RFC 5280 caps serials at 20 octets; CA/B Forum asks for at least 64 random bits.
Setting bit 158 keeps every serial the same length (and positive in DER), the
other 158 bits are random. Uniqueness is enforced by the store, not by hope.
"""

from __future__ import annotations

import secrets

SERIAL_RANDOM_BITS = 158


def new_serial() -> int:
    return (1 << SERIAL_RANDOM_BITS) | secrets.randbits(SERIAL_RANDOM_BITS)
