"""An MDM configuration's settings (``ProtocolConfigRecord.settings``), validated.

=================  ==========  ===================================================
key                default     meaning
=================  ==========  ===================================================
``platform``       (required)  ``jamf``, ``workspace-one``, ``ivanti``, ``maas360``
``scep_config``    none        the SCEP configuration whose one-time challenges the
                               service hands out (``gateway mdm create`` provisions
                               ``<id>-scep``); none: no SCEP challenges
``challenge_ttl``  ``PT60M``   default lifetime of a SCEP challenge (a request may
                               ask for less or more, up to the SCEP configuration's
                               ``max_challenge_lifetime``)
``digital_ids``    ``{}``      name to digital ID (below)
=================  ==========  ===================================================

A digital ID: ``profile`` (an ``mdmws`` profile the configuration offers),
``rdn_format`` (:mod:`.rdn`), ``parent_dn``, ``key_algorithm`` for PKCS#12 enrollments
(default ``RSA-2048``: MDM payloads rarely take EC keys), ``pkcs12_encryption``
(``legacy``, the default, or ``modern``), ``description``. Its CA is
the configuration's. Settings are merged by the core admin API without knowing MDM,
so they are checked here each time a configuration is used, with messages naming the key.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from gateway.config import parse_duration
from gateway.door import ProtocolConfigRecord
from gateway.errors import BadRequest, ConfigError
from gateway.keys import parse_algorithm

from . import profiles
from .platforms import check_platform
from .rdn import RdnError, RdnFormat, parse_format, parse_parent_dn

DIGITAL_ID_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
DEFAULT_KEY_ALGORITHM = "RSA-2048"
DEFAULT_CHALLENGE_TTL = dt.timedelta(minutes=60)
DEFAULT_PKCS12_ENCRYPTION = "legacy"
"""3DES and SHA-1 MAC: what the Apple keychain and the MDM agents of the platforms read
(several refuse the AES-256 PKCS#12 OpenSSL 3 writes by default); ``modern`` per digital ID."""
PKCS12_ENCRYPTIONS = ("legacy", "modern")


@dataclass(frozen=True)
class DigitalId:
    name: str
    profile: str
    rdn_format: RdnFormat
    parent_dn: x509.Name
    key_algorithm: str = DEFAULT_KEY_ALGORITHM
    description: str = ""
    pkcs12_encryption: str = DEFAULT_PKCS12_ENCRYPTION

    @property
    def server_keys(self) -> bool:
        """PKCS#12 enrollment (a ``mdmws-p12-*`` profile); every digital ID takes SCEP challenges."""
        return profiles.server_keys(self.profile)

    def to_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "rdn_format": self.rdn_format.text,
                "parent_dn": self.parent_dn.rfc4514_string(), "key_algorithm": self.key_algorithm,
                "description": self.description, "pkcs12_encryption": self.pkcs12_encryption}


@dataclass(frozen=True)
class MdmSettings:
    platform: str
    scep_config: str | None = None
    challenge_ttl: dt.timedelta = DEFAULT_CHALLENGE_TTL
    digital_ids: dict[str, DigitalId] = field(default_factory=dict)


def check_digital_id_name(name: str) -> str:
    if not DIGITAL_ID_NAME.match(name):
        raise BadRequest("a digital ID name is 1-63 characters: lower-case letters, digits, '.', '_', '-'")
    return name


def digital_id(name: str, raw: Any, offered: list[str]) -> DigitalId:
    """One digital ID from its JSON, or BadRequest saying what is wrong."""
    check_digital_id_name(name)
    if not isinstance(raw, dict):
        raise BadRequest(f"digital ID {name}: must be an object")
    unknown = set(raw) - {"profile", "rdn_format", "parent_dn", "key_algorithm", "description", "pkcs12_encryption"}
    if unknown:
        raise BadRequest(f"digital ID {name}: unknown keys {sorted(unknown)}")
    profile = raw.get("profile")
    if not isinstance(profile, str) or not profiles.is_mdmws(profile):
        raise BadRequest(f"digital ID {name}: profile must be one of the mdmws profiles ({', '.join(profiles.NAMES)})")
    if profile not in offered:
        raise BadRequest(f"digital ID {name}: profile {profile} is not offered by this configuration")
    text = raw.get("rdn_format")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest(f"digital ID {name}: rdn_format is required, e.g. CN=<deviceName>")
    try:
        fmt = parse_format(text)
    except RdnError as exc:
        raise BadRequest(f"digital ID {name}: {exc.detail}") from None
    parent = raw.get("parent_dn", "")
    if not isinstance(parent, str):
        raise BadRequest(f"digital ID {name}: parent_dn must be a string")
    algorithm = raw.get("key_algorithm", DEFAULT_KEY_ALGORITHM)
    try:
        algorithm = parse_algorithm(algorithm).name
    except (ValueError, TypeError, BadRequest):
        raise BadRequest(f"digital ID {name}: unknown key_algorithm {algorithm!r}") from None
    description = raw.get("description", "")
    if not isinstance(description, str) or len(description) > 255:
        raise BadRequest(f"digital ID {name}: description must be a string of at most 255 characters")
    encryption = raw.get("pkcs12_encryption", DEFAULT_PKCS12_ENCRYPTION)
    if encryption not in PKCS12_ENCRYPTIONS:
        raise BadRequest(f"digital ID {name}: pkcs12_encryption must be one of {', '.join(PKCS12_ENCRYPTIONS)}")
    return DigitalId(name, profile, fmt, parse_parent_dn(parent), algorithm, description, encryption)


def parse_settings(rec: ProtocolConfigRecord) -> MdmSettings:
    """The configuration's settings; ConfigError naming the key when one is wrong."""
    raw = rec.settings

    def fail(key: str, message: str) -> ConfigError:
        return ConfigError(f"MDM configuration {rec.id}: settings.{key}: {message}")

    unknown = set(raw) - {"platform", "scep_config", "challenge_ttl", "digital_ids"}
    if unknown:
        raise fail(sorted(unknown)[0], "unknown setting")
    try:
        platform = check_platform(raw.get("platform", ""))
    except BadRequest as exc:
        raise fail("platform", exc.detail) from None
    scep = raw.get("scep_config")
    if scep is not None and not isinstance(scep, str):
        raise fail("scep_config", "must be a configuration id")
    ttl = DEFAULT_CHALLENGE_TTL
    if raw.get("challenge_ttl") is not None:
        try:
            ttl = parse_duration(raw["challenge_ttl"], "challenge_ttl")
        except (ConfigError, ValueError, TypeError) as exc:
            raise fail("challenge_ttl", str(exc)) from None
    ids = raw.get("digital_ids") or {}
    if not isinstance(ids, dict):
        raise fail("digital_ids", "must be an object of name to digital ID")
    found = {}
    for name, value in ids.items():
        try:
            found[name] = digital_id(name, value, rec.profiles)
        except BadRequest as exc:
            raise fail("digital_ids", exc.detail) from None
    return MdmSettings(platform, scep, ttl, found)
