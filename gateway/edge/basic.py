"""HTTP Basic credentials (RFC 7617), parsed once for every protocol edge.

SCEP's ``mscep_admin`` page and EST each had a parser; this one keeps the union of
what they accepted and refuses what neither should have:

- the scheme is case-insensitive (``basic``, ``BASIC``), separated from the value by
  one or more spaces; whitespace around the whole header is ignored;
- the value is strict base64 (standard alphabet, correct padding, nothing after it);
- the decoded octets are UTF-8 (RFC 7617 ``charset="UTF-8"``). EST used to fall
  back to ISO-8859-1, which clients written before RFC 7617 send; an edge that must
  keep accepting them passes ``latin1_fallback=True``;
- the user-id is everything before the first ``:`` (so it never contains one), is
  not empty and holds no control characters; the password is the rest, as sent
  (it may be empty or contain ``:``).

Every refusal is :class:`MalformedCredentials`, an :class:`~gateway.errors.Unauthorized`:
both edges answered malformed credentials with 401 and a ``WWW-Authenticate``
challenge, and clients keep seeing that. A header of another scheme is
:class:`NotBasic` (also 401), so an edge that accepts several schemes (Kerberos
beside Basic) can tell "not mine" from "mine but broken" with :func:`auth_scheme`.

Pure functions: no store, no door, nothing logged (the password must never be).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from ..errors import Unauthorized

__all__ = ["BasicCredentials", "MalformedCredentials", "NotBasic", "auth_scheme", "parse_basic", "basic_header"]

SCHEME = "basic"
MAX_HEADER_CHARS = 8192  # aiohttp refuses longer header lines anyway; callers off HTTP get the same bound


class MalformedCredentials(Unauthorized):
    """Basic credentials that cannot be read (bad base64, no ``:``, bad encoding...)."""


class NotBasic(Unauthorized):
    """No Authorization header, or one of another scheme."""


@dataclass(frozen=True)
class BasicCredentials:
    """A user-id and password as the client sent them (the password is never shown by repr)."""

    username: str
    password: str = field(repr=False)


def auth_scheme(header: str | None) -> str | None:
    """The lower-cased scheme of an Authorization header, None when there is none."""
    if header is None:
        return None
    scheme = header.strip().split(" ", 1)[0]
    return scheme.lower() or None


def parse_basic(header: str | None, *, latin1_fallback: bool = False) -> BasicCredentials:
    """The credentials in ``Authorization: Basic <base64(user:password)>``.

    Raises :class:`NotBasic` when the header is missing or of another scheme and
    :class:`MalformedCredentials` when it is Basic but unreadable; both are
    ``Unauthorized`` (HTTP 401).
    """
    if header is None or not header.strip():
        raise NotBasic("HTTP Basic credentials are required")
    if len(header) > MAX_HEADER_CHARS:
        raise MalformedCredentials("malformed Basic credentials")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != SCHEME:
        raise NotBasic("the Authorization header must use the Basic scheme")
    value = value.lstrip(" ")
    if not value:
        raise MalformedCredentials("malformed Basic credentials")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedCredentials("malformed Basic credentials") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        if not latin1_fallback:
            raise MalformedCredentials("Basic credentials must be UTF-8") from None
        text = raw.decode("latin-1")
    username, sep, password = text.partition(":")
    if not sep:
        raise MalformedCredentials("malformed Basic credentials")
    if not username:
        raise MalformedCredentials("the Basic user name is empty")
    if any(_is_control(c) for c in username):
        raise MalformedCredentials("the Basic user name contains control characters")
    return BasicCredentials(username, password)


def basic_header(username: str, password: str) -> str:
    """The Authorization header value for these credentials (clients, tests)."""
    if ":" in username:
        raise ValueError("a Basic user name cannot contain ':'")
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")


def _is_control(c: str) -> bool:
    # RFC 5234 CTL (%x00-1F / %x7F) plus the C1 controls a latin-1 fallback can produce
    return ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0
