"""Identifiers (DNS names, RFC 8738 IP addresses) and the policy of which may be ordered.

Identifiers are parsed once, strictly, into :class:`Identifier` values in a
canonical form (lower-case names, RFC 5952 IPv6 text), so comparing an order with
its CSR or an EAB key's allow-list is plain equality.

A policy entry is one of::

    example.com        exactly this name
    *.example.com      any name below example.com (any depth), and wildcards of them
    10.0.0.0/8         any address in this network (a bare address means /32 or /128)

``allow`` empty means "any name"; ``deny`` always wins. Wildcard orders need
``wildcards`` on, IP identifiers need ``ip`` on.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable

from gateway.ca.builder import is_valid_dns_name

from . import problems
from .problems import Problem, SubProblem

DNS = "dns"
IP = "ip"
MAX_IDENTIFIERS = 100


@dataclass(frozen=True, order=True)
class Identifier:
    type: str  # "dns" | "ip"
    value: str  # canonical; a wildcard order identifier keeps its "*." prefix

    @property
    def wildcard(self) -> bool:
        return self.type == DNS and self.value.startswith("*.")

    @property
    def base(self) -> str:
        """The name an authorization is for (without ``*.``)."""
        return self.value[2:] if self.wildcard else self.value

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "value": self.value}

    @classmethod
    def from_json(cls, obj: Any) -> "Identifier":
        """A client's identifier object, canonicalised; malformed/unsupported raise problems."""
        if not isinstance(obj, dict) or not isinstance(obj.get("type"), str) or not isinstance(obj.get("value"), str):
            raise problems.malformed("each identifier must be an object with string 'type' and 'value'")
        type_, value = obj["type"], obj["value"]
        if type_ == DNS:
            return cls.dns(value)
        if type_ == IP:
            return cls.ip(value)
        raise problems.unsupported_identifier(
            f"identifier type {type_!r} is not supported (use 'dns' or 'ip')",
            (SubProblem("unsupportedIdentifier", f"unsupported type {type_!r}", {"type": type_, "value": value}),),
        )

    @classmethod
    def dns(cls, value: str) -> "Identifier":
        name = value.lower()
        if not is_valid_dns_name(name, allow_wildcard=True):
            raise _rejected(DNS, value, f"{value!r} is not a valid DNS name")
        if "." not in name.lstrip("*."):
            raise _rejected(DNS, value, f"{value!r} is not a fully qualified domain name")
        return cls(DNS, name)

    @classmethod
    def ip(cls, value: str) -> "Identifier":
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise _rejected(IP, value, f"{value!r} is not an IP address") from None
        return cls(IP, address.compressed)

    @property
    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(self.value)

    def __str__(self) -> str:
        return self.value


def _rejected(type_: str, value: str, detail: str) -> Problem:
    return problems.rejected_identifier(detail, (SubProblem("rejectedIdentifier", detail, {"type": type_, "value": value}),))


def parse_identifiers(raw: Any, limit: int = MAX_IDENTIFIERS) -> list[Identifier]:
    """The ``identifiers`` of a newOrder: a non-empty list, duplicates removed, order kept.

    Every malformed identifier is reported at once, as subproblems.
    """
    if not isinstance(raw, list) or not raw:
        raise problems.malformed("identifiers must be a non-empty list")
    if len(raw) > limit:
        raise problems.rejected_identifier(f"an order may hold at most {limit} identifiers")
    found: dict[Identifier, None] = {}
    subs: list[SubProblem] = []
    for obj in raw:
        try:
            found[Identifier.from_json(obj)] = None
        except Problem as exc:
            if not exc.subproblems:
                raise
            subs.extend(exc.subproblems)
    if subs:
        detail = subs[0].detail if len(subs) == 1 else f"{len(subs)} identifiers are invalid"
        raise problems.compound(detail, tuple(subs))
    return list(found)


@dataclass(frozen=True)
class _Rule:
    name: str | None = None  # exact DNS name
    suffix: str | None = None  # "*.example.com" -> "example.com"
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None

    @classmethod
    def parse(cls, entry: str) -> "_Rule":
        text = entry.strip().lower()
        try:
            return cls(network=ipaddress.ip_network(text, strict=False))
        except ValueError:
            pass
        if text.startswith("*.") or text.startswith("."):
            base = text.lstrip("*").lstrip(".")
            if not is_valid_dns_name(base):
                raise ValueError(f"invalid name pattern {entry!r}")
            return cls(suffix=base)
        if not is_valid_dns_name(text):
            raise ValueError(f"invalid name or network {entry!r}")
        return cls(name=text)

    def matches(self, ident: Identifier) -> bool:
        if ident.type == IP:
            return self.network is not None and ident.address in self.network
        if self.network is not None:
            return False
        if self.name is not None:
            return ident.value == self.name
        assert self.suffix is not None
        return ident.base.endswith("." + self.suffix) or (ident.wildcard and ident.base == self.suffix)


@dataclass(frozen=True)
class IdentifierPolicy:
    """Which identifiers a configuration (or an EAB key) allows."""

    allow: tuple[_Rule, ...] = ()
    deny: tuple[_Rule, ...] = ()
    wildcards: bool = True
    ip: bool = True

    @classmethod
    def parse(cls, allow: Iterable[str] = (), deny: Iterable[str] = (), *, wildcards: bool = True,
              ip: bool = True) -> "IdentifierPolicy":
        """Raises ValueError naming the bad entry."""
        return cls(tuple(_Rule.parse(e) for e in allow), tuple(_Rule.parse(e) for e in deny), wildcards, ip)

    def refusal(self, ident: Identifier) -> str | None:
        """Why ``ident`` is refused, or None when allowed."""
        if ident.type == IP and not self.ip:
            return f"IP address identifiers are not allowed here ({ident.value})"
        if ident.wildcard and not self.wildcards:
            return f"wildcard names are not allowed here ({ident.value})"
        if any(rule.matches(ident) for rule in self.deny):
            return f"{ident.value} is refused by the identifier policy"
        if self.allow and not any(rule.matches(ident) for rule in self.allow):
            return f"{ident.value} is not in the identifiers this account may order"
        return None


def check_identifiers(identifiers: Iterable[Identifier], *policies: IdentifierPolicy) -> None:
    """Refuse with one subproblem per identifier that any policy refuses."""
    subs = []
    for ident in identifiers:
        for policy in policies:
            reason = policy.refusal(ident)
            if reason:
                subs.append(SubProblem("rejectedIdentifier", reason, ident.to_json()))
                break
    if subs:
        detail = subs[0].detail if len(subs) == 1 else f"{len(subs)} identifiers are refused by policy"
        raise problems.rejected_identifier(detail, tuple(subs))


def validate_entries(entries: Iterable[str]) -> list[str]:
    """Canonical allow-list entries (for EAB keys); ValueError on a bad one."""
    out = []
    for entry in entries:
        _Rule.parse(entry)
        out.append(entry.strip().lower())
    return out
