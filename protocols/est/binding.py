"""Linking the CSR to the TLS session: tls-unique in the challengePassword (RFC 7030 3.5).

The client copies the base64 of the connection's tls-unique value (RFC 5929: the
first Finished message of the handshake) into its CSR's challengePassword, so a
CSR cannot be lifted from one authenticated session and replayed in another.
tls-unique exists only up to TLS 1.2; over TLS 1.3 a label that *requires*
linking refuses the request, and one where linking is optional cannot check it.
"""

from __future__ import annotations

import base64
import hmac

from aiohttp import web

from gateway.errors import Unauthorized

from .csr import Request, challenge_password
from .policy import LabelPolicy


def tls_unique(request: web.Request) -> bytes | None:
    """This connection's tls-unique channel binding; None on TLS 1.3 or without TLS."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None or ssl_object.version() != "TLSv1.2":
        return None
    value = ssl_object.get_channel_binding("tls-unique")
    return bytes(value) if value else None


def check_linking(policy: LabelPolicy, request: Request, http: web.Request) -> bool:
    """Enforce the label's ``pop_linking`` rule; True when the CSR was linked and verified.

    A mismatch is an authentication failure (401), as libest, the reference
    implementation, answers it: the CSR was not made inside this TLS session.
    """
    if policy.pop_linking == "off":
        return False
    password = challenge_password(request)
    unique = tls_unique(http)
    if password is None:
        if policy.pop_linking == "required":
            raise Unauthorized("this label requires the CSR to be linked to the TLS session: put the "
                               "base64 tls-unique value in the challengePassword (RFC 7030 section 3.5)")
        return False
    if unique is None:
        if policy.pop_linking == "required":
            raise Unauthorized("tls-unique linking needs TLS 1.2; this connection has no tls-unique value")
        return False
    expected = base64.b64encode(unique).decode()
    if not hmac.compare_digest(password.encode(), expected.encode()):
        raise Unauthorized("the CSR's challengePassword does not match this TLS session's tls-unique value "
                           "(RFC 7030 section 3.5): the CSR was made for another session")
    return True
