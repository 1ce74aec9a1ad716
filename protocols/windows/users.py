"""UsernameToken users of a Windows configuration, for the CLI and the admin API alike.

A user is an enrollment credential (``door.credentials``, kind ``user``: scrypt hash,
the store-held lockout); which templates it may enroll in is the templates' ``enroll``
lists in the configuration's settings. Adding a user for some templates names it in
their lists, removing it takes it out of every list, so a user later made with the same
name inherits nothing. Both changes are audited (``credential_*`` by the credentials,
``config_update`` for the templates).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from gateway.door import CredentialInfo, Door, IssuedCredential, ProtocolConfigRecord
from gateway.errors import BadRequest, ConfigError, NotFound

from .settings import WindowsSettings, parse_settings

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@\\-]{1,63}$"
"""Stricter than the core's rule: what a UsernameToken carries from Windows (``user``,
``user@corp.example``, ``CORP\\user``), and never ``*`` (the templates' wildcard)."""
USERNAME_RE = re.compile(USERNAME_PATTERN)


def check_name(username: str) -> str:
    if not USERNAME_RE.match(username):
        raise BadRequest(f"user name {username!r} is not allowed: 2-64 letters, digits and ._@\\- "
                         "starting with a letter or digit")
    return username


async def windows_configuration(door: Door, config_id: str) -> ProtocolConfigRecord:
    """The Windows configuration, enabled or not (operators manage both)."""
    rec = await door.find_configuration(config_id)
    if rec is None:
        raise NotFound(f"no Windows configuration {config_id!r}")
    return rec


def _granted(raw: dict[str, Any], username: str, templates: list[str]) -> dict[str, Any]:
    """``raw`` settings with ``username`` added to the named templates' ``enroll`` lists."""
    out = copy.deepcopy(raw)
    by_name = {str(t.get("name", "")).lower(): t for t in out.get("templates", []) if isinstance(t, dict)}
    for name in templates:
        template = by_name.get(name.lower())
        if template is None:
            raise NotFound(f"no template {name!r} in this configuration")
        enroll = list(template.get("enroll", ["*"]))
        if username not in enroll:
            template["enroll"] = [*enroll, username]
    return out


def _revoked(raw: dict[str, Any], username: str) -> dict[str, Any]:
    """``raw`` settings with ``username`` out of every template's ``enroll`` and ``autoenroll_for``."""
    out = copy.deepcopy(raw)
    for template in out.get("templates", []):
        for key in ("enroll", "autoenroll_for"):
            if isinstance(template, dict) and username in template.get(key, []):
                template[key] = [n for n in template[key] if n != username]
    return out


async def _save_settings(door: Door, rec: ProtocolConfigRecord, settings: dict[str, Any], actor: str) -> None:
    parse_settings(settings, rec.id, rec.ca_id, rec.profiles)  # still valid, or nothing changes
    await door.update_configuration(rec.id, settings=settings)
    await door.record_event("config_update", "success", protocol_config=rec.id, ca_id=rec.ca_id,
                            actor=actor, fields=["templates"])


async def add_user(door: Door, rec: ProtocolConfigRecord, username: str, password: str | None,
                   templates: list[str], *, actor: str) -> IssuedCredential:
    """A new user (an existing name is a Conflict), named in ``templates``' enroll lists.
    The templates are checked before anything is stored."""
    check_name(username)
    settings = _granted(rec.settings, username, templates)
    issued = await door.credentials.create_user(rec.id, username, password, actor=actor)
    if settings != rec.settings:
        await _save_settings(door, rec, settings, actor)
    return issued


async def find_user(door: Door, rec: ProtocolConfigRecord, username: str) -> CredentialInfo:
    found = await door.credentials.find_user(rec.id, username)
    if found is None:
        raise NotFound(f"Windows configuration {rec.id!r} has no user {username!r}")
    return found


async def remove_user(door: Door, rec: ProtocolConfigRecord, username: str, *, actor: str) -> None:
    user = await find_user(door, rec, username)
    await door.credentials.delete(rec.id, user.id, actor=actor)
    settings = _revoked(rec.settings, username)
    if settings != rec.settings:
        await _save_settings(door, rec, settings, actor)


def templates_of(rec: ProtocolConfigRecord, username: str) -> list[str]:
    """The templates this user may enroll in (by name or through ``*``)."""
    try:
        settings = WindowsSettings.of(rec)
    except ConfigError:  # a broken configuration grants nothing
        return []
    return [t.name for t in settings.templates if t.may_enroll(username)]
