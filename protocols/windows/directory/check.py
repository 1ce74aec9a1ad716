"""What the gateway sees in the directory for one configuration (``gateway windows ad check``):
the enrollment service, each published template (offered under which profile, or why not,
and where AD and the profile disagree), and for a named principal its account and rights."""

from __future__ import annotations

from typing import Any

from gateway.door import Door, ProtocolConfigRecord
from gateway.errors import GatewayError

from ..settings import TemplateSettings, WindowsSettings
from ..templates import period_seconds
from ..wssecurity import Caller, KerberosPrincipal
from . import policy
from .ldap import TemplateEntry
from .names import NTDS_CA_SECURITY_EXT


def _differences(door: Door, template: TemplateSettings, entry: TemplateEntry | None) -> list[str]:
    """Where the issuing profile departs from the AD template (the profile wins)."""
    profile = door.profile(template.profile)
    if profile is None or entry is None:
        return ["the profile does not exist"] if profile is None else []
    out = []
    profile_ekus = sorted(o.dotted_string for o in profile.extended_key_usage)
    if sorted(entry.ekus) != profile_ekus:
        out.append(f"EKUs: AD {sorted(entry.ekus)}, profile {profile_ekus}")
    if template.subject == "directory" and NTDS_CA_SECURITY_EXT not in profile.extensions.allowed:
        out.append(f"the profile's [extensions] allowed lacks {NTDS_CA_SECURITY_EXT.dotted_string} "
                   "(the SID extension for strong certificate mapping): certificates are refused without it")
    validity = period_seconds(profile.validity)
    if entry.validity_seconds and entry.validity_seconds != validity:
        out.append(f"validity: AD {entry.validity_seconds} s, profile {validity} s")
    return out


async def check(door: Door, rec: ProtocolConfigRecord, principal: str | None = None) -> dict[str, Any]:
    """A report as a dict (``ok`` false when the directory cannot serve this configuration)."""
    settings = WindowsSettings.of(rec)
    ds = settings.directory
    if ds is None:
        return {"ok": False, "error": f"configuration {rec.id!r} has no directory (gateway windows ad set)"}
    report: dict[str, Any] = {"ok": True, "config": rec.id, "servers": list(ds.servers), "domain": ds.domain,
                              "bind_user": ds.bind_user}
    try:
        directory = policy.directory_for(door, rec.id, ds)
        entries = {e.name.lower(): e for e in await directory.templates()}
        published = await policy.published(door, rec, settings)
    except GatewayError as exc:
        return {**report, "ok": False, "error": exc.detail}
    report["enrollment_service"] = published.service
    report["templates"] = [
        {"name": t.name, "oid": t.oid, "profile": t.profile, "schema": t.schema,
         "kind": "computer" if t.machine else "user", "subject": t.subject, "offered": True,
         "differences": _differences(door, t, entries.get(t.name.lower()))}
        for t in published.templates
    ] + [{"name": name, "offered": False, "reason": reason} for name, reason in published.skipped]
    if principal is not None:
        report["principal"] = await _principal(door, rec, settings, published.templates, principal)
    return report


async def _principal(door: Door, rec: ProtocolConfigRecord, settings: WindowsSettings,
                     templates: tuple[TemplateSettings, ...], principal: str) -> dict[str, Any]:
    ds = settings.directory
    assert ds is not None
    name, _, realm = principal.partition("@")
    caller = Caller("kerberos", principal, principal=KerberosPrincipal(
        name, (realm or ds.realm).upper(), "computer" if name.endswith("$") else "user"))
    try:
        account = await policy.account_of(door, rec, ds, caller)
    except GatewayError as exc:
        return {"name": principal, "refused": exc.detail}
    assert account is not None
    access = policy.access_of(account)
    return {
        "name": principal, "dn": account.dn, "sid": account.sid, "kind": account.kind,
        "user_principal_name": account.user_principal_name, "mail": account.mail,
        "dns_host_name": account.dns_host_name, "groups": len(account.group_sids),
        "templates": [{"name": t.name, "enroll": access.may_enroll(t), "autoenroll": access.may_autoenroll(t)}
                      for t in templates],
    }
