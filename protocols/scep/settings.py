"""A SCEP configuration's settings (``ProtocolConfigRecord.settings``), validated.

Settings are merged by the core admin API (``PATCH /admin/protocol-configs/<id>``)
without knowing SCEP, so they are checked here, each time a configuration is used,
with messages that name the key.

===========================  ====================  ==============================================
key                          default               meaning
===========================  ====================  ==============================================
``approval``                 ``auto``              ``manual`` holds requests for an operator (core)
``challenge``                ``required``          ``none``: enroll without a challenge password
``challenge_verifiers``      ``[dynamic, static]`` verifiers asked in order (see challenge.py)
``dynamic_challenge_ttl``    ``PT60M``             default lifetime of one-time challenges
                                                   (NDES: 60 min; mscep_admin, webhook)
``max_challenge_lifetime``   ``P7D``               longest lifetime one may ask for (CLI
                                                   ``--ttl``, admin API ``ttl_seconds``); at
                                                   most ``P30D``; default: ``P7D``, or
                                                   ``dynamic_challenge_ttl`` if that is longer
``dynamic_challenge_limit``  ``1000``              outstanding one-time challenges per config
``content_encryption``       all                   allowed ciphers: des-cbc, des-ede3-cbc,
                                                   aes-{128,192,256}-{cbc,gcm}
``digests``                  sha1 sha256 sha384    allowed message digests
                             sha512
``max_clock_skew``           ``PT24H``             badTime beyond this; ``false`` disables the
                                                   check. An admin API PATCH with ``null``
                                                   removes the key: the default again (a
                                                   ``null`` stored at creation still disables)
``renewal``                  ``true``              accept RenewalReq (and advertise Renewal)
``next_ca``                  none                  CA id published by GetNextCACert (rollover)
``ra_ca``                    the config's CA       CA id that issues the RA certificate (for a CA
                                                   that cannot: an ACME upstream)
``ndes``                     ``false``             serve this config on the NDES paths
``admin_over_http``          ``false``             allow mscep_admin / webhook on plain HTTP
``webhook_bind_cn``          none                  Jamf event field the challenge's CN is bound to
``intune``                   none                  Microsoft Intune validates challenges and
                                                   queues revocations (``intune/settings.py``)
===========================  ====================  ==============================================
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from gateway.config import parse_duration
from gateway.door import ProtocolConfigRecord
from gateway.errors import BadRequest, ConfigError

from .cms import DIGESTS
from .envelope import ALL_CIPHERS
from .intune.settings import IntuneSettings, parse_intune, verifiers_with

VERIFIER_NAMES_DEFAULT = ("dynamic", "static")
MAX_CHALLENGE_LIFETIME = dt.timedelta(days=7)
"""The default ``max_challenge_lifetime``: a one-time challenge is handed to a device
about to enroll; one that lives longer is a static password by another name."""
CHALLENGE_LIFETIME_CEILING = dt.timedelta(days=30)
"""No configuration may allow longer (the admin API's ``ttl_seconds`` maximum)."""
WEBHOOK_FIELDS = ("udid", "serialNumber", "deviceName", "managementId", "username", "emailAddress")


@dataclass(frozen=True)
class ScepSettings:
    approval: str = "auto"
    challenge_required: bool = True
    verifiers: tuple[str, ...] = VERIFIER_NAMES_DEFAULT
    dynamic_challenge_ttl: dt.timedelta = dt.timedelta(minutes=60)
    dynamic_challenge_limit: int = 1000
    ciphers: tuple[str, ...] = ALL_CIPHERS
    digests: tuple[str, ...] = ("sha1", "sha256", "sha384", "sha512")
    max_clock_skew: dt.timedelta | None = dt.timedelta(hours=24)
    max_challenge_lifetime: dt.timedelta = MAX_CHALLENGE_LIFETIME
    renewal: bool = True
    next_ca: str | None = None
    ra_ca: str | None = None
    ndes: bool = False
    admin_over_http: bool = False
    webhook_bind_cn: str | None = None
    intune: IntuneSettings | None = None

    @classmethod
    def of(cls, rec: ProtocolConfigRecord) -> ScepSettings:
        return parse_settings(rec.settings, rec.id)

    def challenge_lifetime(self, requested: dt.timedelta | None) -> dt.timedelta:
        """The lifetime of a new one-time challenge: ``requested`` (None: the default),
        refused when longer than ``max_challenge_lifetime``."""
        ttl = self.dynamic_challenge_ttl if requested is None else requested
        if ttl > self.max_challenge_lifetime:
            raise BadRequest(
                f"a challenge lifetime of {iso_duration(ttl)} exceeds this configuration's maximum of "
                f"{iso_duration(self.max_challenge_lifetime)} (settings.max_challenge_lifetime)"
            )
        return ttl

    @property
    def aes(self) -> bool:
        return any(c.startswith("aes-") for c in self.ciphers)

    @property
    def des3(self) -> bool:
        return "des-ede3-cbc" in self.ciphers


def iso_duration(value: dt.timedelta) -> str:
    """An ISO 8601 duration (days, hours, minutes, seconds) for messages."""
    days, rest = divmod(int(value.total_seconds()), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    time = "".join(f"{n}{u}" for n, u in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    return "P" + (f"{days}D" if days else "") + (f"T{time}" if time else "" if days else "T0S")


def _fail(config_id: str, key: str, message: str) -> ConfigError:
    return ConfigError(f"SCEP configuration {config_id!r}: settings.{key} {message}")


def _bool(raw: dict[str, Any], key: str, default: bool, config_id: str) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise _fail(config_id, key, "must be true or false")
    return value


def _list(raw: dict[str, Any], key: str, default: tuple[str, ...], allowed: tuple[str, ...] | None,
          config_id: str) -> tuple[str, ...]:
    value = raw.get(key)
    if value is None:
        return default
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _fail(config_id, key, "must be a non-empty list of strings")
    if allowed is not None:
        unknown = [v for v in value if v not in allowed]
        if unknown:
            raise _fail(config_id, key, f"has unknown value(s) {unknown}; use {list(allowed)}")
    return tuple(dict.fromkeys(value))


def parse_settings(raw: dict[str, Any], config_id: str) -> ScepSettings:
    """Validate settings; unknown SCEP keys are ignored (other layers may add their own)."""
    challenge = raw.get("challenge", "required")
    if challenge not in ("required", "none"):
        raise _fail(config_id, "challenge", "must be 'required' or 'none'")
    ttl = raw.get("dynamic_challenge_ttl", "PT60M")
    if not isinstance(ttl, str):
        raise _fail(config_id, "dynamic_challenge_ttl", "must be an ISO 8601 duration")
    limit = raw.get("dynamic_challenge_limit", 1000)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise _fail(config_id, "dynamic_challenge_limit", "must be a positive integer")
    # false disables; absent is the default (a PATCH with null removes the key). A null
    # stored at creation, the documented way to disable before false, still disables.
    skew_raw = raw.get("max_clock_skew", "PT24H")
    if skew_raw is False:
        skew_raw = None
    elif skew_raw is not None and not isinstance(skew_raw, str):
        raise _fail(config_id, "max_clock_skew", "must be an ISO 8601 duration, false (no check) or null (default)")
    max_life_raw = raw.get("max_challenge_lifetime")
    if max_life_raw is not None and not isinstance(max_life_raw, str):
        raise _fail(config_id, "max_challenge_lifetime", "must be an ISO 8601 duration")
    next_ca = raw.get("next_ca")
    if next_ca is not None and not isinstance(next_ca, str):
        raise _fail(config_id, "next_ca", "must be a CA id")
    ra_ca = raw.get("ra_ca")
    if ra_ca is not None and not isinstance(ra_ca, str):
        raise _fail(config_id, "ra_ca", "must be a CA id")
    bind = raw.get("webhook_bind_cn")
    if bind is not None and bind not in WEBHOOK_FIELDS:
        raise _fail(config_id, "webhook_bind_cn", f"must be one of {list(WEBHOOK_FIELDS)}")
    intune = parse_intune(raw.get("intune"), config_id)
    if intune is not None and challenge == "none":
        raise _fail(config_id, "challenge", "must be 'required' with settings.intune (Intune vouches for a "
                    "request through its challenge)")
    given = _list(raw, "challenge_verifiers", VERIFIER_NAMES_DEFAULT, None, config_id) \
        if raw.get("challenge_verifiers") is not None else None
    ttl_delta = parse_duration(ttl, f"settings.dynamic_challenge_ttl of {config_id!r}")
    skew = parse_duration(skew_raw, f"settings.max_clock_skew of {config_id!r}") if skew_raw else None
    if max_life_raw is None:
        max_life = max(MAX_CHALLENGE_LIFETIME, ttl_delta)  # an older config's long default keeps working
    else:
        max_life = parse_duration(max_life_raw, f"settings.max_challenge_lifetime of {config_id!r}")
        if ttl_delta > max_life:
            raise _fail(config_id, "dynamic_challenge_ttl", f"({ttl}) is longer than settings.max_challenge_lifetime")
        if max_life > CHALLENGE_LIFETIME_CEILING:
            raise _fail(config_id, "max_challenge_lifetime", f"may be at most {iso_duration(CHALLENGE_LIFETIME_CEILING)}")
    return ScepSettings(
        approval=str(raw.get("approval", "auto")),
        challenge_required=challenge == "required",
        verifiers=verifiers_with(intune, given, VERIFIER_NAMES_DEFAULT, config_id),
        dynamic_challenge_ttl=ttl_delta,
        dynamic_challenge_limit=limit,
        ciphers=_list(raw, "content_encryption", ALL_CIPHERS, ALL_CIPHERS, config_id),
        digests=_list(raw, "digests", ("sha1", "sha256", "sha384", "sha512"), tuple(DIGESTS), config_id),
        max_clock_skew=skew,
        max_challenge_lifetime=max_life,
        renewal=_bool(raw, "renewal", True, config_id),
        next_ca=next_ca,
        ra_ca=ra_ca,
        ndes=_bool(raw, "ndes", False, config_id),
        admin_over_http=_bool(raw, "admin_over_http", False, config_id),
        webhook_bind_cn=bind,
        intune=intune,
    )
