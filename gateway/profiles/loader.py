"""Load and validate profile TOML files (schema in :mod:`gateway.profiles.model`).

Everything is checked here, once, so the builder can trust a :class:`Profile`; every
problem is a :class:`ConfigError` naming the file and the offending field.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from pathlib import Path
from typing import Any, Mapping

import isodate
from cryptography import x509

from ..errors import ConfigError, GatewayError
from ..keys import KEY_ALGORITHMS, parse_algorithm
from .model import (
    EKU_NAMES,
    KEY_USAGE_ALIASES,
    KEY_USAGE_FIELDS,
    MANAGED_EXTENSIONS,
    PROFILE_NAME_RE,
    SAN_MODES,
    SAN_TYPES,
    SKI_METHODS,
    SUBJECT_MODES,
    BasicConstraintsPolicy,
    ExtensionPolicy,
    IdentifierPolicy,
    KeyPolicy,
    Period,
    Profile,
    SanPolicy,
    SubjectPolicy,
    SubjectTemplate,
    add_period,
    parse_subject_format,
)

_OID_RE = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")
# Durations are compared by applying them to fixed instants (years/months vary in length).
_REFERENCES = (
    dt.datetime(2001, 1, 31, tzinfo=dt.timezone.utc),
    dt.datetime(2004, 2, 29, tzinfo=dt.timezone.utc),
)
_MISSING = object()


class _Table:
    """One TOML table being read: typed getters, and unknown keys refused at the end."""

    def __init__(self, data: Any, source: str, path: str) -> None:
        self.source = source
        self.path = path
        if not isinstance(data, Mapping):
            raise self.error(None, "must be a table")
        self.data = data
        self.seen: set[str] = set()

    def error(self, key: str | None, message: str) -> ConfigError:
        field = ".".join(p for p in (self.path, key) if p) or "(top level)"
        return ConfigError(f"profile {self.source}: {field}: {message}")

    def _get(self, key: str, default: Any) -> Any:
        self.seen.add(key)
        if key in self.data:
            return self.data[key]
        if default is _MISSING:
            raise self.error(key, "is required")
        return default

    def text(self, key: str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is not default and not isinstance(value, str):
            raise self.error(key, "must be a string")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, "must be true or false")
        return value

    def str_list(self, key: str, default: list[str]) -> list[str]:
        value = self._get(key, default)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be a list of strings")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.text(key, default)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)} (got {value!r})")
        return str(value)

    def period(self, key: str, default: Any = _MISSING) -> Period:
        value = self.text(key, default)
        if value is default and not isinstance(default, str):
            return value
        try:
            period = isodate.parse_duration(value)
            later = [add_period(ref, period) for ref in _REFERENCES]
        except (isodate.ISO8601Error, ValueError, OverflowError) as exc:
            raise self.error(key, f"{value!r} is not a usable ISO 8601 duration ({exc})") from None
        if any(t < ref for t, ref in zip(later, _REFERENCES)):
            raise self.error(key, f"{value!r} must not be negative")
        return period

    def table(self, key: str) -> "_Table":
        return _Table(self._get(key, {}), self.source, f"{self.path}.{key}" if self.path else key)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise self.error(unknown[0], "unknown key")


def _longer(a: Period, b: Period) -> bool:
    return any(add_period(ref, a) > add_period(ref, b) for ref in _REFERENCES)


def _is_zero(p: Period) -> bool:
    return all(add_period(ref, p) == ref for ref in _REFERENCES)


def _oid(t: _Table, key: str, value: str) -> x509.ObjectIdentifier:
    if not _OID_RE.match(value):
        raise t.error(key, f"{value!r} is neither a known name nor a dotted OID")
    return x509.ObjectIdentifier(value)


def parse_profile(data: Mapping[str, Any], source: str) -> Profile:
    """Validate parsed TOML into a :class:`Profile`; ``source`` names it in errors."""
    top = _Table(data, source, "")

    name = top.text("name")
    if not PROFILE_NAME_RE.match(name):
        raise top.error("name", f"{name!r} must match {PROFILE_NAME_RE.pattern}")
    description = top.text("description", "")

    validity = top.period("validity")
    if _is_zero(validity):
        raise top.error("validity", "must be longer than zero")
    max_validity = top.period("max_validity", None)
    if max_validity is None:
        max_validity = validity
    elif _longer(validity, max_validity):
        raise top.error("max_validity", "must not be shorter than validity")
    backdate = top.period("backdate", "PT1M")
    if not isinstance(backdate, dt.timedelta):
        raise top.error("backdate", "must be given in days, hours, minutes or seconds")

    usages: set[str] = set()
    for usage in top.str_list("key_usage", []):
        usage = KEY_USAGE_ALIASES.get(usage, usage)
        if usage not in KEY_USAGE_FIELDS:
            raise top.error("key_usage", f"unknown key usage {usage!r}")
        usages.add(usage)
    if usages & {"encipher_only", "decipher_only"} and "key_agreement" not in usages:
        raise top.error("key_usage", "encipher_only/decipher_only need key_agreement")
    key_usage_critical = top.flag("key_usage_critical", True)

    ekus: list[x509.ObjectIdentifier] = []
    for eku in top.str_list("extended_key_usage", []):
        oid = EKU_NAMES.get(eku) or _oid(top, "extended_key_usage", eku)
        if oid not in ekus:
            ekus.append(oid)

    kp = top.table("key_policy")
    allowed_keys: set[str] = set()
    for alg in kp.str_list("allowed", list(KEY_ALGORITHMS)):
        try:
            allowed_keys.add(parse_algorithm(alg).name)
        except GatewayError as exc:
            raise kp.error("allowed", exc.detail) from None
    if not allowed_keys:
        raise kp.error("allowed", "must name at least one key algorithm")
    kp.finish()

    bc = top.table("basic_constraints")
    is_ca = bc.flag("ca", False)
    path_length = bc._get("path_length", None)
    if path_length is not None:
        if not is_ca:
            raise bc.error("path_length", "only allowed with ca = true")
        if isinstance(path_length, bool) or not isinstance(path_length, int) or path_length < 0:
            raise bc.error("path_length", "must be a non-negative integer")
    bc_critical = bc.flag("critical", True)
    if is_ca and not bc_critical:
        raise bc.error("critical", "must be true for a CA profile (RFC 5280)")
    bc.finish()
    if is_ca and "key_cert_sign" not in usages:
        raise top.error("key_usage", "a CA profile needs key_cert_sign")
    if not is_ca and usages & {"key_cert_sign", "crl_sign"}:
        raise top.error("key_usage", "key_cert_sign/crl_sign need basic_constraints.ca = true")

    sub = top.table("subject")
    subject_mode = sub.choice("mode", SUBJECT_MODES, "csr")
    subject_format = sub.text("format", None)
    template: SubjectTemplate = ()
    if subject_mode == "format":
        if not subject_format:
            raise sub.error("format", "is required with mode = \"format\"")
        try:
            template = parse_subject_format(subject_format)
        except ValueError as exc:
            raise sub.error("format", str(exc)) from None
    elif subject_format is not None:
        raise sub.error("format", "only allowed with mode = \"format\"")
    subject = SubjectPolicy(subject_mode, subject_format, sub.flag("require_cn", False), template)
    sub.finish()

    sp = top.table("san")
    san_mode = sp.choice("mode", SAN_MODES, "csr")
    types = sp.str_list("allowed_types", list(SAN_TYPES))
    for kind in types:
        if kind not in SAN_TYPES:
            raise sp.error("allowed_types", f"unknown SAN type {kind!r}; use {', '.join(SAN_TYPES)}")
    san = SanPolicy(
        mode=san_mode,
        cn_as_dns=sp.flag("cn_as_dns", False),
        allowed_types=frozenset(types),
        required=sp.flag("required", False),
        critical=sp.flag("critical", False),
    )
    if san.mode == "none" and (san.required or san.cn_as_dns):
        raise sp.error("mode", "\"none\" contradicts required / cn_as_dns")
    if san.cn_as_dns and "dns" not in san.allowed_types:
        raise sp.error("cn_as_dns", "needs \"dns\" in allowed_types")
    sp.finish()

    ep = top.table("extensions")
    extra: set[x509.ObjectIdentifier] = set()
    for text in ep.str_list("allowed", []):
        oid = _oid(ep, "allowed", text)
        if oid in MANAGED_EXTENSIONS:
            raise ep.error("allowed", f"{text} is decided by the profile itself and cannot be copied")
        # model.IGNORED_REQUEST_EXTENSIONS (the Windows template extensions) may be listed: a
        # request's own are still dropped (gateway.ca.builder), but a protocol may then set
        # them as an override (the CES adds the template the policy named)
        extra.add(oid)
    extensions = ExtensionPolicy(frozenset(extra), ep.flag("ignore_unknown_extensions", False))
    ep.finish()

    ip = top.table("identifiers")
    identifiers = IdentifierPolicy(
        authority_key_identifier=ip.flag("authority_key_identifier", True),
        subject_key_identifier=ip.choice("subject_key_identifier", SKI_METHODS, "rfc7093"),
        crl_distribution_point=ip.flag("crl_distribution_point", True),
        aia_ocsp=ip.flag("aia_ocsp", True),
        aia_ca_issuers=ip.flag("aia_ca_issuers", True),
    )
    if is_ca and identifiers.subject_key_identifier == "none":
        raise ip.error("subject_key_identifier", "a CA profile needs a subject key identifier")
    ip.finish()

    top.finish()
    return Profile(
        name=name,
        description=description,
        validity=validity,
        max_validity=max_validity,
        backdate=backdate,
        key_usage=frozenset(usages),
        key_usage_critical=key_usage_critical,
        extended_key_usage=tuple(ekus),
        key_policy=KeyPolicy(frozenset(allowed_keys)),
        basic_constraints=BasicConstraintsPolicy(is_ca, path_length, bc_critical),
        subject=subject,
        san=san,
        extensions=extensions,
        identifiers=identifiers,
    )


def load_profile(path: str | Path) -> Profile:
    """Read and validate one profile file; its ``name`` must equal the file stem."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"profile {path}: cannot read: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"profile {path}: invalid TOML: {exc}") from None
    profile = parse_profile(data, str(path))
    if profile.name != path.stem:
        raise ConfigError(f"profile {path}: name: {profile.name!r} must equal the file name {path.stem!r}")
    return profile


def load_profiles(directory: str | Path) -> dict[str, Profile]:
    """Every ``*.toml`` profile in a directory, by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ConfigError(f"profile directory {directory} does not exist")
    return {p.name: p for p in (load_profile(f) for f in sorted(directory.glob("*.toml")))}


def default_profiles_dir() -> Path:
    """The profiles shipped with the gateway (tls-server, tls-client, device, user, sub-ca)."""
    return Path(__file__).resolve().parent / "defaults"
