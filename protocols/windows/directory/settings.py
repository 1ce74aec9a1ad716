"""A Windows configuration's ``directory`` table: where its Active Directory is and how
the gateway reads it.

=====================  ===========================  ===========================================
key                    default                      meaning
=====================  ===========================  ===========================================
``servers``            (required)                   ``ldaps://dc1.corp.example`` (port 636) or
                                                    ``ldap://...`` (389, always StartTLS), tried
                                                    in order
``base_dn``            from ``domain``              ``DC=corp,DC=example``
``domain``             (required)                   DNS name of the domain (``corp.example``);
                                                    its upper case is the Kerberos realm
``bind_user``          (required)                   the service account (``svc@corp.example``,
                                                    ``CORP\\svc`` or a DN)
``password``           one of the two               the service account's password, **sealed**
``password_file``                                   (``gateway windows ad set`` seals it), or a
                                                    file (mode 0600) read at each connect
``ca_file``            the system store             CA bundle the DC certificates verify against
``tls_names``          ``[]``                       more names a DC certificate may carry
``timeout_seconds``    ``5``                        per LDAP operation (then a SOAP fault)
``cache_seconds``      ``300``                      how long directory answers are reused
``enrollment_service`` the configuration's          ``cn`` of the ``pKIEnrollmentService``
                       ``ca_name``                  whose ``certificateTemplates`` are offered
``profiles``           ``{}``                       AD template name -> gateway profile
``default_profile``    none                         profile of templates not in ``profiles``
                                                    (none: such templates are not offered)
``password_logon``     ``false``                    check UsernameTokens by an LDAP bind as the
                                                    user (instead of the gateway's own users)
=====================  ===========================  ===========================================

With a ``directory``, the templates the configuration offers are the directory's (the
``templates`` list may be left out), who may enroll is each template's security
descriptor, and a ``subject = directory`` template's names come from the account.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway import sealing
from gateway.door import Door
from gateway.errors import ConfigError

SERVER_RE = re.compile(r"^ldaps?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$")
DOMAIN_RE = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
KEYS = {"servers", "base_dn", "domain", "bind_user", "password", "password_file", "ca_file", "tls_names",
        "timeout_seconds", "cache_seconds", "enrollment_service", "profiles", "default_profile",
        "password_logon"}
SEAL_PURPOSE = "directory password"


@dataclass(frozen=True)
class DirectorySettings:
    servers: tuple[str, ...]
    base_dn: str
    domain: str
    bind_user: str
    password: str | None = field(default=None, repr=False)  # sealed
    password_file: Path | None = None
    ca_file: Path | None = None
    tls_names: tuple[str, ...] = ()
    timeout: float = 5.0
    cache_seconds: float = 300.0
    enrollment_service: str | None = None
    profiles: tuple[tuple[str, str], ...] = ()  # (AD template name, lower case; profile)
    default_profile: str | None = None
    password_logon: bool = False

    @property
    def realm(self) -> str:
        return self.domain.upper()

    def profile_for(self, template_name: str) -> str | None:
        return dict(self.profiles).get(template_name.lower(), self.default_profile)


def seal_context(config_id: str) -> str:
    return f"windows:{config_id}:directory"


def service_password(door: Door, config_id: str, settings: DirectorySettings) -> str:
    """The service account's password: unsealed, or read from its file (each connect, so a
    rotated password needs no restart). ConfigError names what is wrong, never the value."""
    if settings.password is not None:
        try:
            return door.sealer(SEAL_PURPOSE).unseal(settings.password, seal_context(config_id)).decode()
        except (sealing.SealError, UnicodeDecodeError):
            raise ConfigError(f"windows configuration {config_id!r}: directory: password does not open with "
                              "this CA passphrase; set it again with `gateway windows ad set`") from None
    assert settings.password_file is not None
    try:
        return settings.password_file.read_text().strip("\r\n")
    except OSError as exc:
        raise ConfigError(f"windows configuration {config_id!r}: directory: password_file "
                          f"{str(settings.password_file)!r}: {exc.strerror}") from None


def _text(raw: dict[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 1024:
        raise ConfigError(f"{where}: {key}: must be a non-empty string")
    return value


def _path(raw: dict[str, Any], key: str, where: str) -> Path | None:
    value = _text(raw, key, where)
    if value is not None and not value.startswith("/"):
        raise ConfigError(f"{where}: {key}: must be an absolute path")
    return None if value is None else Path(value)


def _number(raw: dict[str, Any], key: str, default: float, where: str, low: float, high: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{where}: {key}: must be a number from {low:g} to {high:g}")
    return float(value)


def base_dn_of(domain: str) -> str:
    return ",".join(f"DC={part}" for part in domain.split("."))


def parse_directory(raw: Any, where: str, profiles: list[str]) -> DirectorySettings | None:
    if raw is None:
        return None
    where = f"{where}: directory"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a table")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(unknown)}")
    servers = raw.get("servers")
    if isinstance(servers, str):
        servers = [servers]
    if (not isinstance(servers, list) or not servers
            or not all(isinstance(s, str) and SERVER_RE.match(s) for s in servers)):
        raise ConfigError(f"{where}: servers: must be a list of ldaps://host[:port] or ldap://host[:port] URLs")
    domain = _text(raw, "domain", where, required=True)
    assert domain is not None
    if not DOMAIN_RE.match(domain):
        raise ConfigError(f"{where}: domain: {domain!r} is not a DNS domain name (e.g. corp.example)")
    password = _text(raw, "password", where)
    password_file = _path(raw, "password_file", where)
    if (password is None) == (password_file is None):
        raise ConfigError(f"{where}: exactly one of password (sealed) and password_file must be set")
    if password is not None and not sealing.is_sealed(password):
        raise ConfigError(f"{where}: password: must be sealed; set it with `gateway windows ad set "
                          "--password-file FILE` (a plain-text password is never stored)")
    mapping = raw.get("profiles", {})
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise ConfigError(f"{where}: profiles: must be a table of AD template name = gateway profile")
    default_profile = _text(raw, "default_profile", where)
    for name in [*mapping.values(), *([default_profile] if default_profile else [])]:
        if name not in profiles:
            raise ConfigError(f"{where}: profile {name!r} is not one of the configuration's profiles")
    tls_names = raw.get("tls_names", [])
    if not isinstance(tls_names, list) or not all(isinstance(n, str) and n for n in tls_names):
        raise ConfigError(f"{where}: tls_names: must be a list of host names")
    password_logon = raw.get("password_logon", False)
    if not isinstance(password_logon, bool):
        raise ConfigError(f"{where}: password_logon: must be true or false")
    return DirectorySettings(
        servers=tuple(servers), base_dn=_text(raw, "base_dn", where) or base_dn_of(domain), domain=domain.lower(),
        bind_user=str(_text(raw, "bind_user", where, required=True)), password=password,
        password_file=password_file, ca_file=_path(raw, "ca_file", where), tls_names=tuple(tls_names),
        timeout=_number(raw, "timeout_seconds", 5, where, 0.1, 120),
        cache_seconds=_number(raw, "cache_seconds", 300, where, 0, 86400),
        enrollment_service=_text(raw, "enrollment_service", where),
        profiles=tuple(sorted((k.lower(), v) for k, v in mapping.items())), default_profile=default_profile,
        password_logon=password_logon,
    )
