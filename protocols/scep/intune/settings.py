"""A SCEP configuration's ``intune`` table: which Entra tenant and app the gateway asks.

===========================  ================================  ====================================
key                          default                           meaning
===========================  ================================  ====================================
``tenant``                   (required)                        tenant id (GUID) or name
                                                               (``contoso.onmicrosoft.com``)
``client_id``                (required)                        the app registration's client id
``client_secret``            (required)                        its secret, **sealed** (``gateway
                                                               scep intune set`` seals it; a plain
                                                               text secret is refused)
``client_certificate``       (or ``client_secret``)            absolute path of the app's PEM
                                                               certificate (read at use)
``client_key``               (with ``client_certificate``)     its private key PEM, **sealed**
``authority_url``            ``https://login.microsoftonline.com``  Entra ID (https only)
``graph_url``                ``https://graph.microsoft.com``   Microsoft Graph (https only)
``ca_file``                  the system store                  extra CA bundle for both
``timeout_seconds``          ``10``                            per HTTP call
``retries``                  ``3``                             on 5xx, timeouts, connection errors
``revocation_sync_seconds``  ``900``                           revocation sync period; ``0``: off
===========================  ================================  ====================================

With an ``intune`` table the configuration's verifiers default to ``["intune"]`` alone
(a device with an Intune SCEP profile only ever has an Intune challenge; keeping the
static and dynamic defaults would open a second way in nobody asked for). A
``challenge_verifiers`` list that leaves ``intune`` out is refused, and so is ``intune``
in the list without the table: either is a half-made configuration.

This module parses only (no client, no network): ``protocols/scep/settings.py`` calls it
on every read of a configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from gateway import sealing
from gateway.errors import ConfigError

if TYPE_CHECKING:
    from gateway.door import Door

VERIFIER = "intune"
"""Its name in ``challenge_verifiers``."""
KEYS = {"tenant", "client_id", "client_secret", "client_certificate", "client_key", "authority_url", "graph_url", "ca_file", "timeout_seconds",
        "retries", "revocation_sync_seconds"}
AUTHORITY_URL = "https://login.microsoftonline.com"
GRAPH_URL = "https://graph.microsoft.com"
SEAL_PURPOSE = "intune client secret"
KEY_SEAL_PURPOSE = "intune client key"
SET_COMMAND = "gateway scep intune set --config {id} --client-secret-stdin"
CERT_COMMAND = "gateway scep intune set --config {id} --client-certificate CERT.pem --client-key-file KEY.pem"


@dataclass(frozen=True)
class IntuneSettings:
    """Parsed; equal settings mean the same client (the client cache compares them)."""

    tenant: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)  # sealed (v1.)
    client_certificate: Path | None = None
    client_key: str | None = field(default=None, repr=False)  # sealed (v1.)
    authority_url: str = AUTHORITY_URL
    graph_url: str = GRAPH_URL
    ca_file: Path | None = None
    timeout: float = 10.0
    retries: int = 3
    revocation_sync_seconds: int = 900


def seal_context(config_id: str) -> str:
    """What the sealed secret is bound to: copied to another configuration it does not open."""
    return f"scep:{config_id}:intune"


def seal_secret(door: Door, config_id: str, secret: str) -> str:
    return door.sealer(SEAL_PURPOSE).seal(secret.encode(), seal_context(config_id))


def seal_key(door: Door, config_id: str, key_pem: bytes) -> str:
    return door.sealer(KEY_SEAL_PURPOSE).seal(key_pem, seal_context(config_id))


def client_key(door: Door, config_id: str, settings: IntuneSettings) -> bytes:
    """The unsealed private key PEM; ConfigError names what is wrong, never the value."""
    try:
        if settings.client_key is None:
            raise sealing.SealError("no key")
        return door.sealer(KEY_SEAL_PURPOSE).unseal(settings.client_key, seal_context(config_id))
    except sealing.SealError:
        raise ConfigError(
            f"SCEP configuration {config_id!r}: settings.intune.client_key does not open with this CA "
            f"passphrase; set it again with `{CERT_COMMAND.format(id=config_id)}`") from None


def client_certificate(config_id: str, settings: IntuneSettings) -> bytes:
    """The certificate PEM, read now (a renewed certificate is used without editing the table)."""
    assert settings.client_certificate is not None
    try:
        return settings.client_certificate.read_bytes()
    except OSError as exc:
        raise ConfigError(f"SCEP configuration {config_id!r}: settings.intune.client_certificate "
                          f"{settings.client_certificate} cannot be read ({exc.strerror})") from None


def client_secret(door: Door, config_id: str, settings: IntuneSettings) -> str:
    """The unsealed client secret; ConfigError names what is wrong, never the value."""
    if settings.client_secret is None:
        raise ConfigError(f"SCEP configuration {config_id!r} authenticates with a certificate, not a secret")
    try:
        return door.sealer(SEAL_PURPOSE).unseal(settings.client_secret, seal_context(config_id)).decode()
    except (sealing.SealError, UnicodeDecodeError):
        raise ConfigError(
            f"SCEP configuration {config_id!r}: settings.intune.client_secret does not open with this CA "
            f"passphrase; set it again with `{SET_COMMAND.format(id=config_id)}`") from None


def _fail(config_id: str, key: str, message: str) -> ConfigError:
    return ConfigError(f"SCEP configuration {config_id!r}: settings.intune.{key} {message}")


def _text(raw: dict[str, Any], key: str, config_id: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value.strip() or len(value) > 1024:
        raise _fail(config_id, key, "must be a non-empty string")
    return value.strip()


def _https(raw: dict[str, Any], key: str, config_id: str, default: str) -> str:
    value = _text(raw, key, config_id, default).rstrip("/")
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
        raise _fail(config_id, key, f"must be an https:// URL (got {value!r})")
    return value


def _int(raw: dict[str, Any], key: str, config_id: str, default: int, low: int, high: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(config_id, key, f"must be an integer from {low} to {high}")
    return value


def _credential(raw: dict[str, Any], config_id: str) -> tuple[str | None, Path | None, str | None]:
    """Exactly one way to sign in: a sealed secret, or a certificate path and its sealed key."""
    secret, certificate, key = raw.get("client_secret"), raw.get("client_certificate"), raw.get("client_key")
    if secret is not None and (certificate is not None or key is not None):
        raise ConfigError(f"SCEP configuration {config_id!r}: settings.intune has both client_secret and "
                          "client_certificate/client_key; keep one way to sign in")
    if certificate is None and key is None:
        if not isinstance(secret, str) or not secret:
            raise _fail(config_id, "client_secret", f"is required (or client_certificate and client_key); set it "
                        f"with `{SET_COMMAND.format(id=config_id)}` or `{CERT_COMMAND.format(id=config_id)}`")
        if not sealing.is_sealed(secret):
            raise _fail(config_id, "client_secret", "must be sealed (a plain-text secret is never stored); set it "
                        f"with `{SET_COMMAND.format(id=config_id)}`")
        return secret, None, None
    if not isinstance(certificate, str) or not certificate.startswith("/"):
        raise _fail(config_id, "client_certificate", "must be an absolute path (with client_key); set it with "
                    f"`{CERT_COMMAND.format(id=config_id)}`")
    if not isinstance(key, str) or not key:
        raise _fail(config_id, "client_key", f"is required with client_certificate; set it with "
                    f"`{CERT_COMMAND.format(id=config_id)}`")
    if not sealing.is_sealed(key):
        raise _fail(config_id, "client_key", "must be sealed (a plain-text private key is never stored); set it "
                    f"with `{CERT_COMMAND.format(id=config_id)}`")
    return None, Path(certificate), key


def parse_intune(raw: Any, config_id: str) -> IntuneSettings | None:
    """The ``intune`` table, or None when the configuration has none."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ConfigError(f"SCEP configuration {config_id!r}: settings.intune must be a table")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise ConfigError(f"SCEP configuration {config_id!r}: settings.intune has unknown keys {unknown}")
    secret, certificate, key = _credential(raw, config_id)
    ca_file = raw.get("ca_file")
    if ca_file is not None and (not isinstance(ca_file, str) or not ca_file.startswith("/")):
        raise _fail(config_id, "ca_file", "must be an absolute path")
    timeout = raw.get("timeout_seconds", 10)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0.1 <= timeout <= 120:
        raise _fail(config_id, "timeout_seconds", "must be a number from 0.1 to 120")
    return IntuneSettings(
        tenant=_text(raw, "tenant", config_id), client_id=_text(raw, "client_id", config_id),
        client_secret=secret, client_certificate=certificate, client_key=key, authority_url=_https(raw, "authority_url", config_id, AUTHORITY_URL),
        graph_url=_https(raw, "graph_url", config_id, GRAPH_URL),
        ca_file=Path(ca_file) if ca_file is not None else None, timeout=float(timeout),
        retries=_int(raw, "retries", config_id, 3, 0, 10),
        revocation_sync_seconds=_int(raw, "revocation_sync_seconds", config_id, 900, 0, 7 * 86400),
    )


def verifiers_with(intune: IntuneSettings | None, given: tuple[str, ...] | None, default: tuple[str, ...],
                   config_id: str) -> tuple[str, ...]:
    """``challenge_verifiers`` as an Intune configuration needs them (rules in the module
    docstring); ``given`` is None when the key is absent."""
    if intune is None:
        if given is not None and VERIFIER in given:
            raise ConfigError(f"SCEP configuration {config_id!r}: settings.challenge_verifiers names 'intune' but "
                              f"there is no settings.intune table; set it with `gateway scep intune set --config "
                              f"{config_id} ...`")
        return given if given is not None else default
    if given is None:
        return (VERIFIER,)
    if VERIFIER not in given:
        raise ConfigError(f"SCEP configuration {config_id!r}: settings.challenge_verifiers {list(given)} leaves out "
                          "'intune' although settings.intune is set; add it (first, so Intune is asked first)")
    return given
