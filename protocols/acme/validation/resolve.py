"""Where a challenge is checked: addresses for a name, through the configured resolver.

``validation_address`` (a fixed IP) wins, then ``dns_resolver`` (host:port, asked
with dnspython, as Pebble asks its challenge test server), then the system
resolver. Tests and lab setups point both at 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.resolver
from aiohttp.abc import AbstractResolver, ResolveResult

from ..settings import AcmeSettings


class ResolutionError(Exception):
    """The name has no usable address (the ``dns`` problem type)."""


def dns_resolver(settings: AcmeSettings) -> dns.asyncresolver.Resolver:
    if settings.dns_resolver is None:
        resolver = dns.asyncresolver.Resolver()
    else:
        resolver = dns.asyncresolver.Resolver(configure=False)
        host, port = settings.dns_resolver
        resolver.nameservers = [host]
        resolver.port = port
    resolver.lifetime = settings.validation_timeout
    resolver.timeout = min(2.0, settings.validation_timeout)
    return resolver


async def addresses(host: str, settings: AcmeSettings) -> list[str]:
    """IP addresses to contact for ``host`` (IPv6 first, as the RFCs prefer)."""
    try:
        return [ipaddress.ip_address(host).compressed]
    except ValueError:
        pass
    if settings.validation_address is not None:
        return [settings.validation_address]
    found: list[str] = []
    if settings.dns_resolver is not None:
        resolver = dns_resolver(settings)
        for rdtype in ("AAAA", "A"):
            try:
                answer = await resolver.resolve(host, rdtype)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                continue
            except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
                where = "{}:{}".format(*settings.dns_resolver)
                raise ResolutionError(
                    f"DNS lookup of {host} {rdtype} through resolver {where} failed: {type(exc).__name__}") from None
            found.extend(r.address for r in answer)
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ResolutionError(f"no address for {host}: {exc.strerror}") from None
        found = [str(info[4][0]) for info in sorted(infos, key=lambda i: i[0] != socket.AF_INET6)]
    if not found:
        raise ResolutionError(f"no A or AAAA record for {host}")
    return list(dict.fromkeys(found))


class ChallengeResolver(AbstractResolver):
    """aiohttp resolver that answers with :func:`addresses` (redirects use it too)."""

    def __init__(self, settings: AcmeSettings, known: dict[str, list[str]] | None = None) -> None:
        self._settings = settings
        self._known = dict(known or {})

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> list[ResolveResult]:
        found = self._known.get(host)
        if found is None:
            try:
                found = await addresses(host, self._settings)
            except ResolutionError as exc:
                raise OSError(str(exc)) from None
        results: list[ResolveResult] = []
        for addr in found:
            fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
            results.append(ResolveResult(hostname=host, host=addr, port=port, family=fam, proto=0,
                                         flags=socket.AI_NUMERICHOST))
        return results

    async def close(self) -> None:
        return None
