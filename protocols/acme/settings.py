"""An ACME configuration's ``settings`` (the protocol configuration's JSON), read strictly.

Every key is optional; unknown keys are errors, so a typo does not silently fall
back to a default. The settings, with defaults::

    eab_required = false            # refuse newAccount without externalAccountBinding
    terms_of_service = null         # URL in meta.termsOfService; when set, clients must agree
    website = null                  # URL in meta.website
    caa_identities = []             # meta.caaIdentities
    pre_authorization = false       # offer newAuthz (RFC 8555 section 7.4.1)
    challenge_types = ["http-01", "dns-01", "tls-alpn-01"]
    http01_port = 80                # where http-01 is fetched (tests point it at a client)
    tlsalpn01_port = 443            # where tls-alpn-01 connects
    dns_resolver = null             # "host:port" for TXT (and A/AAAA) lookups; null: the system's
    validation_address = null       # connect here for http-01/tls-alpn-01 instead of resolving
    validation_timeout = 10         # seconds per validation attempt
    identifiers = {allow = [], deny = [], wildcards = true, ip = true}
    max_identifiers = 100
    order_lifetime = "P7D"          # ISO 8601 durations
    authz_lifetime = "P7D"          # pending authorizations
    valid_authz_lifetime = "P30D"   # how long a validated authorization is reused
    nonce_lifetime = "PT1H"
    authz_reuse = true
    rate_limits = {orders_per_account = "300/PT3H", orders_per_config = "10000/PT1H",
                   accounts_per_config = "1000/PT1H"}   # null (or a missing key) = no limit
    renewal_window = [0.667, 0.833] # ARI window as fractions of the validity period
    ari_retry_after = "PT6H"
    orders_per_page = 100
    external_url = null             # "https://acme.example.com" when behind a proxy
    challenge_validation = "real"   # "always-valid": test-only, see below

``challenge_validation = "always-valid"`` marks every challenge valid without
looking. It only takes effect when the environment variable
``GATEWAY_ACME_UNSAFE_ALWAYS_VALID`` also lists this configuration's id
(comma-separated); otherwise challenges are validated for real and an error is
logged. Each use logs a warning. It exists for load tests, never for production.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any

from gateway.config import parse_duration
from gateway.errors import ConfigError

from .identifiers import MAX_IDENTIFIERS, IdentifierPolicy

log = logging.getLogger("gateway.acme")

CHALLENGE_TYPES = ("http-01", "dns-01", "tls-alpn-01")
ALWAYS_VALID_ENV = "GATEWAY_ACME_UNSAFE_ALWAYS_VALID"
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(P\S+)\s*$")

_DEFAULT_LIMITS = {
    "orders_per_account": "300/PT3H",
    "orders_per_config": "10000/PT1H",
    "accounts_per_config": "1000/PT1H",
}


@dataclass(frozen=True)
class RateLimit:
    count: int
    period: dt.timedelta

    @classmethod
    def parse(cls, text: str, where: str) -> "RateLimit":
        m = _RATE.match(text) if isinstance(text, str) else None
        if m is None:
            raise ConfigError(f"{where}: expected 'COUNT/ISO-8601-DURATION' such as '300/PT3H'")
        count = int(m.group(1))
        if count < 1:
            raise ConfigError(f"{where}: the count must be at least 1")
        return cls(count, parse_duration(m.group(2), where))


@dataclass(frozen=True)
class AcmeSettings:
    eab_required: bool = False
    terms_of_service: str | None = None
    website: str | None = None
    caa_identities: tuple[str, ...] = ()
    pre_authorization: bool = False
    challenge_types: tuple[str, ...] = CHALLENGE_TYPES
    http01_port: int = 80
    tlsalpn01_port: int = 443
    dns_resolver: tuple[str, int] | None = None
    validation_address: str | None = None
    validation_timeout: float = 10.0
    policy: IdentifierPolicy = field(default_factory=IdentifierPolicy)
    max_identifiers: int = MAX_IDENTIFIERS
    order_lifetime: dt.timedelta = dt.timedelta(days=7)
    authz_lifetime: dt.timedelta = dt.timedelta(days=7)
    valid_authz_lifetime: dt.timedelta = dt.timedelta(days=30)
    nonce_lifetime: dt.timedelta = dt.timedelta(hours=1)
    authz_reuse: bool = True
    rate_limits: dict[str, RateLimit] = field(default_factory=dict)
    renewal_window: tuple[float, float] = (0.667, 0.833)
    ari_retry_after: dt.timedelta = dt.timedelta(hours=6)
    orders_per_page: int = 100
    external_url: str | None = None
    always_valid: bool = False  # effective (setting AND environment)

    @classmethod
    def parse(cls, config_id: str, raw: dict[str, Any]) -> "AcmeSettings":
        """Raises :class:`ConfigError` naming the bad setting."""
        r = _Reader(config_id, raw)
        ids = r.mapping("identifiers")
        idr = _Reader(config_id, ids, "identifiers.")
        try:
            policy = IdentifierPolicy.parse(
                idr.strings("allow"), idr.strings("deny"),
                wildcards=idr.boolean("wildcards", True), ip=idr.boolean("ip", True),
            )
        except ValueError as exc:
            raise ConfigError(f"ACME configuration {config_id}: settings.identifiers: {exc}") from None
        idr.done()
        types = tuple(r.strings("challenge_types", list(CHALLENGE_TYPES)))
        for t in types:
            if t not in CHALLENGE_TYPES:
                raise r.error("challenge_types", f"unknown challenge type {t!r}")
        if not types:
            raise r.error("challenge_types", "at least one challenge type is needed")
        limits_raw = dict(_DEFAULT_LIMITS)
        limits_raw.update(r.mapping("rate_limits", allow_none=True, default=None) or {})
        if "rate_limits" in raw and raw["rate_limits"] is None:
            limits_raw = {}
        limits = {}
        for name, value in limits_raw.items():
            if name not in _DEFAULT_LIMITS:
                raise r.error("rate_limits", f"unknown limit {name!r} (known: {sorted(_DEFAULT_LIMITS)})")
            if value is not None:
                limits[name] = RateLimit.parse(value, f"settings.rate_limits.{name}")
        window = r.raw("renewal_window", [0.667, 0.833])
        if (not isinstance(window, list) or len(window) != 2
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in window)
                or not 0 <= window[0] < window[1] <= 1):
            raise r.error("renewal_window", "expected [start, end] fractions with 0 <= start < end <= 1")
        resolver = r.text("dns_resolver")
        address = r.text("validation_address")
        if address is not None:
            try:
                address = ipaddress.ip_address(address).compressed
            except ValueError:
                raise r.error("validation_address", "must be an IP address") from None
        mode = r.text("challenge_validation") or "real"
        if mode not in ("real", "always-valid"):
            raise r.error("challenge_validation", "must be 'real' or 'always-valid'")
        settings = cls(
            eab_required=r.boolean("eab_required", False),
            terms_of_service=r.text("terms_of_service"),
            website=r.text("website"),
            caa_identities=tuple(r.strings("caa_identities")),
            pre_authorization=r.boolean("pre_authorization", False),
            challenge_types=types,
            http01_port=r.port("http01_port", 80),
            tlsalpn01_port=r.port("tlsalpn01_port", 443),
            dns_resolver=_host_port(resolver, r) if resolver else None,
            validation_address=address,
            validation_timeout=r.number("validation_timeout", 10.0),
            policy=policy,
            max_identifiers=r.integer("max_identifiers", MAX_IDENTIFIERS, 1, 1000),
            order_lifetime=r.duration("order_lifetime", "P7D"),
            authz_lifetime=r.duration("authz_lifetime", "P7D"),
            valid_authz_lifetime=r.duration("valid_authz_lifetime", "P30D"),
            nonce_lifetime=r.duration("nonce_lifetime", "PT1H"),
            authz_reuse=r.boolean("authz_reuse", True),
            rate_limits=limits,
            renewal_window=(float(window[0]), float(window[1])),
            ari_retry_after=r.duration("ari_retry_after", "PT6H"),
            orders_per_page=r.integer("orders_per_page", 100, 1, 1000),
            external_url=(r.text("external_url") or "").rstrip("/") or None,
            always_valid=_always_valid(config_id, mode),
        )
        for name in ("approval",):  # core settings living in the same object
            r.raw(name)
        r.done()
        return settings


def _always_valid(config_id: str, mode: str) -> bool:
    if mode != "always-valid":
        return False
    allowed = {x.strip() for x in os.environ.get(ALWAYS_VALID_ENV, "").split(",") if x.strip()}
    if config_id in allowed:
        log.warning(
            "ACME configuration %s: challenge_validation = always-valid is ACTIVE: every challenge is "
            "accepted WITHOUT validation. Test and benchmark use only.", config_id,
        )
        return True
    log.error(
        "ACME configuration %s asks for challenge_validation = always-valid, but $%s does not list it; "
        "challenges are validated for real", config_id, ALWAYS_VALID_ENV,
    )
    return False


def _host_port(value: str, r: "_Reader") -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = value, "53"
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        raise r.error("dns_resolver", "expected 'IP:port' (e.g. '127.0.0.1:8053')") from None
    if not 0 < number < 65536:
        raise r.error("dns_resolver", "port out of range")
    return host, number


class _Reader:
    def __init__(self, config_id: str, data: dict[str, Any], prefix: str = "") -> None:
        self.config_id = config_id
        self.data = data
        self.prefix = prefix
        self.seen: set[str] = set()

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(f"ACME configuration {self.config_id}: settings.{self.prefix}{name}: {message}")

    def raw(self, name: str, default: Any = None) -> Any:
        self.seen.add(name)
        value = self.data.get(name)
        return default if value is None else value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name, default)
        if not isinstance(value, bool):
            raise self.error(name, "expected true or false")
        return value

    def text(self, name: str) -> str | None:
        value = self.raw(name)
        if value is not None and not isinstance(value, str):
            raise self.error(name, "expected a string")
        return value

    def strings(self, name: str, default: list[str] | None = None) -> list[str]:
        value = self.raw(name, default or [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(name, "expected a list of strings")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(name, f"expected an integer from {low} to {high}")
        return value

    def port(self, name: str, default: int) -> int:
        return self.integer(name, default, 1, 65535)

    def number(self, name: str, default: float) -> float:
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise self.error(name, "expected a positive number")
        return float(value)

    def duration(self, name: str, default: str) -> dt.timedelta:
        value = self.raw(name, default)
        if not isinstance(value, str):
            raise self.error(name, "expected an ISO 8601 duration")
        return parse_duration(value, f"settings.{self.prefix}{name}")

    def mapping(self, name: str, *, allow_none: bool = False, default: Any = ...) -> dict[str, Any]:
        value = self.raw(name)
        if value is None:
            return {} if default is ... else default
        if not isinstance(value, dict):
            raise self.error(name, "expected an object")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise ConfigError(
                f"ACME configuration {self.config_id}: unknown setting(s) "
                + ", ".join(self.prefix + u for u in unknown)
            )
