"""Challenge validation (the validation authority): real checks, one per challenge type.

Each validator returns None when the challenge is met, or the :class:`Problem`
to store on the challenge. They never raise for network trouble: an unreachable
client is the client's problem (``connection``, ``dns``, ``tls``), not a server error.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

from ..identifiers import Identifier
from ..problems import Problem
from ..settings import AcmeSettings
from . import dns01, http01, tlsalpn01

log = logging.getLogger("gateway.acme")

Validate = Callable[[Identifier, str, str, AcmeSettings], Awaitable["Problem | None"]]

VALIDATORS: dict[str, Validate] = {
    "http-01": http01.validate,
    "dns-01": dns01.validate,
    "tls-alpn-01": tlsalpn01.validate,
}


def key_authorization(token: str, thumbprint: str) -> str:
    return f"{token}.{thumbprint}"


async def validate(challenge_type: str, ident: Identifier, token: str, thumbprint: str,
                   settings: AcmeSettings) -> Problem | None:
    return await VALIDATORS[challenge_type](ident, token, key_authorization(token, thumbprint), settings)
