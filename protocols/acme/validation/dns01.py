"""dns-01 (RFC 8555 section 8.4): a TXT record at ``_acme-challenge.<name>``.

The record must hold base64url(SHA-256(key authorization)); the lookup goes to
the configured resolver (``dns_resolver``) or the system's.
"""

from __future__ import annotations

import hashlib

import dns.exception
import dns.resolver

from .. import problems
from ..identifiers import Identifier
from ..nonces import b64url
from ..problems import Problem
from ..settings import AcmeSettings
from .resolve import dns_resolver


def txt_value(key_authorization: str) -> str:
    return b64url(hashlib.sha256(key_authorization.encode()).digest())


async def validate(ident: Identifier, token: str, key_authorization: str, settings: AcmeSettings) -> Problem | None:
    name = f"_acme-challenge.{ident.base}"
    expected = txt_value(key_authorization)
    try:
        answer = await dns_resolver(settings).resolve(name, "TXT")
    except dns.resolver.NXDOMAIN:
        return problems.validation_problem("dns", f"no such name {name}")
    except dns.resolver.NoAnswer:
        return problems.validation_problem("unauthorized", f"no TXT record at {name}")
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
        return problems.validation_problem("dns", f"DNS lookup of {name} failed: {type(exc).__name__}")
    except dns.exception.DNSException as exc:
        return problems.validation_problem("dns", f"DNS lookup of {name} failed: {type(exc).__name__}")
    found = [b"".join(r.strings).decode("ascii", "replace") for r in answer]
    if expected in found:
        return None
    return problems.validation_problem(
        "incorrectResponse", f"none of the {len(found)} TXT record(s) at {name} matches the key authorization"
    )
