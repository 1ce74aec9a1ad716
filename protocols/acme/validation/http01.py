"""http-01 (RFC 8555 section 8.3): fetch the key authorization over plain HTTP.

``http://<identifier>:<http01_port>/.well-known/acme-challenge/<token>``, redirects
followed (at most ten, to http or https, certificates not checked as the RFC
allows), the body compared with trailing whitespace ignored.
"""

from __future__ import annotations

import asyncio

import aiohttp

from .. import problems
from ..identifiers import Identifier
from ..problems import Problem
from ..settings import AcmeSettings
from .resolve import ChallengeResolver, ResolutionError, addresses

MAX_BODY = 4096


def _host(ident: Identifier) -> str:
    return f"[{ident.value}]" if ident.type == "ip" and ":" in ident.value else ident.value


async def validate(ident: Identifier, token: str, key_authorization: str, settings: AcmeSettings) -> Problem | None:
    url = f"http://{_host(ident)}:{settings.http01_port}/.well-known/acme-challenge/{token}"
    # Resolve first, outside the fetch's deadline: a dead resolver is a ``dns`` problem
    # naming the lookup, not a fetch timeout (both would otherwise share one clock).
    try:
        first = await addresses(ident.value, settings)
    except ResolutionError as exc:
        return problems.validation_problem("dns", str(exc))
    resolver = ChallengeResolver(settings, known={ident.value: first})
    connector = aiohttp.TCPConnector(resolver=resolver, ssl=False, force_close=True)
    timeout = aiohttp.ClientTimeout(total=settings.validation_timeout)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            async with session.get(url, max_redirects=10, headers={"User-Agent": "enrollment-gateway-acme"}) as resp:
                body = await resp.content.read(MAX_BODY)
                status = resp.status
    except asyncio.TimeoutError:
        return problems.validation_problem("connection", f"timeout fetching {url}")
    except aiohttp.TooManyRedirects:
        return problems.validation_problem("connection", f"too many redirects fetching {url}")
    except aiohttp.ClientConnectorError as exc:
        kind = "dns" if "no A or AAAA" in str(exc) or "no address" in str(exc) or "DNS" in str(exc) else "connection"
        return problems.validation_problem(kind, f"cannot connect to {ident.value}:{settings.http01_port}: {exc.os_error}")
    except (aiohttp.ClientError, OSError) as exc:
        return problems.validation_problem("connection", f"fetching {url} failed: {type(exc).__name__}")
    if status != 200:
        return problems.validation_problem("unauthorized", f"{url} answered HTTP {status}")
    text = body.decode("utf-8", "replace").rstrip(" \t\r\n")
    if text != key_authorization:
        return problems.validation_problem(
            "incorrectResponse", f"the key authorization at {url} does not match (got {text[:100]!r})"
        )
    return None
