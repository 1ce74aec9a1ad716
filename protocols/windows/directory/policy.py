"""Active Directory as a Windows configuration's source of templates, rights and names.

Per request, after authentication, :func:`resolve` turns the caller into its directory
account (a disabled or unknown account is refused) and the configuration into the
templates the directory publishes for this gateway's CA: the ``pKICertificateTemplate``
objects named in the ``certificateTemplates`` of the configured ``pKIEnrollmentService``,
each issued under the gateway profile the ``directory.profiles`` table maps it to. Who may
enroll and autoenroll is each template's security descriptor, for the account's SID, its
``tokenGroups`` and Everyone / Authenticated Users. Templates listed in the
configuration's own ``templates`` stay, with their ``enroll`` lists.

What is taken from AD and what from the profile: names, OID, revisions, schema, the
flags (subject-name, enrollment, private-key, general), minimum key size and key spec
come from the directory and reach clients unchanged; what the certificate carries
(EKUs, key usage, validity) is the profile's, so a client is never promised what the CA
will not issue. ``gateway windows ad check`` shows where the two differ.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from functools import lru_cache

from gateway.door import Door, ProtocolConfigRecord
from gateway.errors import ConfigError, ErrorKind, GatewayError

from ..access import Access, NamedAccess
from ..settings import NAME_RE, OID_RE, DirectoryFlags, TemplateSettings, WindowsSettings
from ..templates import (
    ALLOW_PREVIOUS_APPROVAL_KEYBASEDRENEWAL_VALIDATE_REENROLLMENT,
    AUTO_ENROLLMENT,
    ENROLLEE_SUPPLIES_SUBJECT,
    EXPORTABLE_KEY,
    GENERAL_MACHINE_TYPE,
)
from .. import wssecurity
from ..wssecurity import Caller, FailedAuthentication
from gateway.edge.xml import Element
from . import sd
from .ldap import Account, Directory, DirectoryConfig, TemplateEntry
from .names import sid_of_certificate
from .settings import DirectorySettings, service_password

log = logging.getLogger(__name__)

EVERYONE, AUTHENTICATED_USERS = "S-1-1-0", "S-1-5-11"


class DirectoryConfigurationError(GatewayError):
    """The directory answers, but not with what this configuration needs (no enrollment
    service object, ...): the operator's to fix, so a receiver fault."""

    kind = ErrorKind.UNAVAILABLE


# --- one client per configuration --------------------------------------------------------

_clients: dict[str, tuple[DirectorySettings, str, Directory]] = {}


def directory_for(door: Door, config_id: str, settings: DirectorySettings) -> Directory:
    """The configuration's directory client, rebuilt when its settings (or the password
    behind them) change; the old one is closed in the background."""
    password = service_password(door, config_id, settings)
    held = _clients.get(config_id)
    if held is not None and held[0] == settings and held[1] == password:
        return held[2]
    if held is not None:
        _closing.add(asyncio.ensure_future(held[2].close()))
    client = Directory(DirectoryConfig(
        servers=settings.servers, bind_user=settings.bind_user, password=password, base_dn=settings.base_dn,
        ca_file=settings.ca_file, tls_names=settings.tls_names, timeout=settings.timeout,
        cache_seconds=settings.cache_seconds))
    _clients[config_id] = (settings, password, client)
    return client


_closing: set[asyncio.Future[None]] = set()


async def close_all() -> None:
    """At shutdown: every directory connection closed."""
    clients = [held[2] for held in _clients.values()]
    _clients.clear()
    await asyncio.gather(*(c.close() for c in clients), *_closing, return_exceptions=True)
    _closing.clear()


# --- rights ------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _descriptor(raw: bytes) -> sd.SecurityDescriptor | None:
    try:
        return sd.parse(raw)
    except sd.SecurityDescriptorError as exc:
        log.warning("a certificate template's security descriptor is unreadable, it grants nothing: %s", exc.detail)
        return None


def has_right(raw: bytes, sids: frozenset[str], right: uuid.UUID) -> bool:
    descriptor = _descriptor(raw)
    return descriptor is not None and sd.has_right(descriptor, sids, right)


@dataclass(frozen=True)
class DirectoryAccess:
    """A directory account's rights: the security descriptor for directory templates, the
    ``enroll`` lists (by account name) for the configuration's own."""

    name: str
    sids: frozenset[str]

    def may_enroll(self, template: TemplateSettings) -> bool:
        if template.directory is None:
            return template.may_enroll(self.name)
        return has_right(template.directory.security_descriptor, self.sids, sd.ENROLL)

    def may_autoenroll(self, template: TemplateSettings) -> bool:
        if template.directory is None:
            return template.may_autoenroll(self.name)
        return (template.autoenroll and self.may_enroll(template)
                and has_right(template.directory.security_descriptor, self.sids, sd.AUTOENROLL))


def access_of(account: Account) -> DirectoryAccess:
    return DirectoryAccess(account.sam_account_name,
                           frozenset({account.sid, *account.group_sids, EVERYONE, AUTHENTICATED_USERS}))


# --- templates ---------------------------------------------------------------------------


def _u32(value: int) -> int:
    """AD stores these flags as signed 32-bit integers (-1509949440 is 0xA6000000)."""
    return value & 0xFFFFFFFF


def template_settings(entry: TemplateEntry, profile: str) -> TemplateSettings:
    """An AD template as the configuration's template (ConfigError: not offerable)."""
    where = f"directory template {entry.name!r}"
    if not NAME_RE.match(entry.name):
        raise ConfigError(f"{where}: the name is not one the gateway can serve")
    if not OID_RE.match(entry.oid):
        raise ConfigError(f"{where}: msPKI-Cert-Template-OID {entry.oid!r} is not an OID")
    if entry.ra_signature > 0:
        raise ConfigError(f"{where}: needs {entry.ra_signature} enrollment agent signature(s) "
                          "(msPKI-RA-Signature), which this gateway does not take")
    return TemplateSettings(
        name=entry.name, display_name=entry.display_name or entry.name, profile=profile, oid=entry.oid,
        major_revision=max(1, entry.major_revision), minor_revision=max(0, entry.minor_revision),
        schema=min(max(entry.schema_version, 1), 3),  # schema 4 (Server 2012) is served as 3, as AD CS's CEP does
        machine=bool(_u32(entry.flags) & GENERAL_MACHINE_TYPE),
        autoenroll=bool(_u32(entry.enrollment_flag) & AUTO_ENROLLMENT),
        subject="request" if _u32(entry.name_flag) & ENROLLEE_SUPPLIES_SUBJECT else "directory",
        exportable=bool(_u32(entry.private_key_flag) & EXPORTABLE_KEY),
        renewal_period=dt.timedelta(seconds=max(0, entry.renewal_seconds)),
        key_based_renewal=bool(_u32(entry.enrollment_flag) & ALLOW_PREVIOUS_APPROVAL_KEYBASEDRENEWAL_VALIDATE_REENROLLMENT),
        providers=entry.csps or None, enroll=(), autoenroll_for=(), superseded=entry.superseded,
        directory=DirectoryFlags(flags=_u32(entry.flags), enrollment_flag=_u32(entry.enrollment_flag),
                                 name_flag=_u32(entry.name_flag), private_key_flag=_u32(entry.private_key_flag),
                                 minimal_key_size=entry.minimal_key_size, key_spec=entry.key_spec,
                                 security_descriptor=entry.security_descriptor),
    )


@dataclass(frozen=True)
class Published:
    """What the directory publishes for this configuration, and why anything is left out."""

    templates: tuple[TemplateSettings, ...]
    skipped: tuple[tuple[str, str], ...]  # (template name, reason)
    service: str


async def published(door: Door, rec: ProtocolConfigRecord, settings: WindowsSettings) -> Published:
    directory_settings = settings.directory
    assert directory_settings is not None
    directory = directory_for(door, rec.id, directory_settings)
    name = directory_settings.enrollment_service or settings.ca_name
    service = await directory.enrollment_service(name)
    if service is None:
        raise DirectoryConfigurationError(
            f"the directory has no pKIEnrollmentService {name!r} under CN=Enrollment Services: "
            "create it and list the templates to offer in its certificateTemplates")
    wanted = {t.lower() for t in service.templates}
    local = {t.name.lower() for t in settings.templates}
    out: list[TemplateSettings] = []
    skipped: list[tuple[str, str]] = []
    for entry in await directory.templates():
        if entry.name.lower() not in wanted:
            continue
        profile = directory_settings.profile_for(entry.name)
        if profile is None:
            skipped.append((entry.name, "no gateway profile: map it in directory.profiles or set default_profile"))
        elif entry.name.lower() in local:
            skipped.append((entry.name, "the configuration's own templates list has a template of that name"))
        else:
            try:
                out.append(template_settings(entry, profile))
            except ConfigError as exc:
                skipped.append((entry.name, exc.detail))
    found = {t.name.lower() for t in out} | {name.lower() for name, _ in skipped}
    skipped += [(t, "published by the enrollment service but not found under CN=Certificate Templates")
                for t in service.templates if t.lower() not in found]
    return Published(tuple(out), tuple(skipped), service.name)


# --- callers -----------------------------------------------------------------------------


def account_name(caller: Caller, settings: DirectorySettings) -> str | None:
    """The sAMAccountName a caller's name stands for: ``alice``, ``CORP\\alice`` or
    ``alice@corp.example`` (this domain's suffix only)."""
    if caller.principal is not None:
        if caller.principal.realm.upper() != settings.realm:
            return None
        return caller.principal.name
    name = caller.name
    if "\\" in name:
        return name.split("\\", 1)[1] or None
    if "@" in name:
        user, _, suffix = name.rpartition("@")
        return user if suffix.lower() == settings.domain and user else None
    return name


async def account_of(door: Door, rec: ProtocolConfigRecord, settings: DirectorySettings,
                     caller: Caller) -> Account | None:
    """The caller's directory account; FailedAuthentication for none or a disabled one.
    None for a client certificate without a SID extension: it may only renew by key."""
    directory = directory_for(door, rec.id, settings)
    account: Account | None = None
    if caller.certificate is not None and caller.principal is None:
        sid = sid_of_certificate(caller.certificate)
        if sid is None:
            return None  # a certificate from before the directory: key-based renewal only
        account = await directory.account_by_sid(sid)
    else:
        sam = account_name(caller, settings)
        if sam is None:
            raise FailedAuthentication(f"{caller.name!r} is not an account of the domain {settings.domain}")
        account = await directory.account(sam)
    if account is None:
        raise FailedAuthentication(f"{caller.name!r} has no account in the directory")
    if account.disabled:
        raise FailedAuthentication(f"the account {account.sam_account_name!r} is disabled")
    return account


@dataclass(frozen=True)
class Resolved:
    """A request's view of its configuration: the templates on offer, the caller's rights
    and (with a directory) its account."""

    settings: WindowsSettings
    access: Access
    account: Account | None = None


async def resolve(door: Door, rec: ProtocolConfigRecord, settings: WindowsSettings, caller: Caller) -> Resolved:
    if settings.directory is None:
        return Resolved(settings, NamedAccess(caller.name))
    account = await account_of(door, rec, settings.directory, caller)
    offered = await published(door, rec, settings)
    merged = dataclasses.replace(settings, templates=settings.templates + offered.templates)
    if account is None:
        return Resolved(merged, NamedAccess(caller.name))
    return Resolved(merged, access_of(account), account)


async def username_caller(door: Door, rec: ProtocolConfigRecord, settings: DirectorySettings,
                          security: Element | None) -> Caller:
    """A UsernameToken checked by an LDAP bind as that user (``password_logon``): the same
    freshness and replay rules as the gateway's own users; lockout is the domain's."""
    token = wssecurity.parse_username_token(security)
    if token is None:
        raise FailedAuthentication("this endpoint requires a WS-Security UsernameToken")
    wssecurity.check_freshness(token, door.clock())
    await wssecurity.consume_nonce(door, rec.id, token)
    name = account_name(Caller("username", token.username), settings)
    if name is None or not await directory_for(door, rec.id, settings).check_password(name, token.password):
        raise FailedAuthentication("the directory refused this user name and password")
    return Caller("username", name)
