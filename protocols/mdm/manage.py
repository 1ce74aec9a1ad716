"""What the CLI, the admin API and ``gateway init`` do to MDM configurations: create one
(with its SCEP configuration), add and remove digital IDs and credentials, and describe
it with the URLs an MDM administrator enters. One implementation for every front end.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.door import CredentialInfo, Door, IssuedCredential, ProtocolConfigRecord
from gateway.errors import BadRequest, Conflict, NotFound

from . import profiles
from .platforms import PLATFORMS, check_platform
from .service import PROTOCOL, admin_service_url
from .settings import DigitalId, MdmSettings, check_digital_id_name, digital_id, parse_settings
from .users import create_credential

SCEP = "scep"
SCEP_SUFFIX = "-scep"
CONFIG_ID = re.compile(r"^[a-z0-9_-]{2,13}$")
"""MDM configuration ids are 2-13 characters: ``<id>-scep``, its SCEP configuration's id,
must fit the 18 characters of any configuration id."""


async def mdm_configuration(door: Door, config_id: str) -> tuple[ProtocolConfigRecord, MdmSettings]:
    rec = await door.find_configuration(config_id)
    if rec is None:
        raise NotFound(f"no MDM configuration {config_id!r}")
    return rec, parse_settings(rec)


async def create_configuration(door: Door, config_id: str, ca_id: str, platform: str, *, actor: str,
                               scep_config: str | None = None, provision_scep: bool = True) -> ProtocolConfigRecord:
    """An MDM configuration offering every ``mdmws`` profile. Its SCEP challenges come from
    ``scep_config`` when given, else from ``<id>-scep``, provisioned here (one-time
    challenges only), unless ``provision_scep`` is false (no SCEP challenges)."""
    check_platform(platform)
    if not CONFIG_ID.match(config_id):
        raise BadRequest("an MDM configuration id is 2-13 characters: lower-case letters, digits, '-' and '_'")
    issuer = door.challenge_issuer(SCEP)
    if scep_config is None and provision_scep and issuer is None:
        raise BadRequest("the SCEP protocol is not installed: create the configuration without SCEP")
    settings: dict[str, Any] = {"platform": platform, "digital_ids": {}}
    if scep_config is not None:
        settings["scep_config"] = scep_config
    elif provision_scep:
        settings["scep_config"] = config_id + SCEP_SUFFIX
    rec = await door.create_configuration(config_id, ca_id, list(profiles.NAMES), settings=settings, actor=actor)
    if scep_config is None and provision_scep and issuer is not None:
        await issuer.provision(config_id + SCEP_SUFFIX, ca_id, profiles=list(profiles.NAMES), actor=actor)
    return rec


async def add_digital_id(door: Door, config_id: str, name: str, spec: dict[str, Any], *, actor: str,
                         ca_id: str | None = None) -> DigitalId:
    """Add (Conflict if the name is taken) a digital ID; ``ca_id`` if given must be the
    configuration's (a digital ID issues from its configuration's CA)."""
    rec, settings = await mdm_configuration(door, config_id)
    check_digital_id_name(name)
    if name in settings.digital_ids:
        raise Conflict(f"digital ID {name!r} exists in MDM configuration {config_id}")
    if ca_id is not None and ca_id != rec.ca_id:
        raise BadRequest(f"a digital ID issues from its configuration's CA ({rec.ca_id}); "
                         "create another MDM configuration for CA " + ca_id)
    did = digital_id(name, spec, rec.profiles)
    ids = {n: d.to_json() for n, d in settings.digital_ids.items()} | {name: did.to_json()}
    await door.update_configuration(rec.id, settings={**rec.settings, "digital_ids": ids})
    await door.record_event("mdm_digital_id", "success", protocol_config=rec.id, actor=actor, digital_id=name,
                            action="add", profile=did.profile)
    return did


async def remove_digital_id(door: Door, config_id: str, name: str, *, actor: str) -> None:
    rec, settings = await mdm_configuration(door, config_id)
    if name not in settings.digital_ids:
        raise NotFound(f"no digital ID {name!r} in MDM configuration {config_id}")
    ids = {n: d.to_json() for n, d in settings.digital_ids.items() if n != name}
    await door.update_configuration(rec.id, settings={**rec.settings, "digital_ids": ids})
    await door.record_event("mdm_digital_id", "success", protocol_config=rec.id, actor=actor, digital_id=name,
                            action="remove")


async def add_credential(door: Door, config_id: str, username: str, *, actor: str,
                         password: str | None = None) -> IssuedCredential:
    rec, _ = await mdm_configuration(door, config_id)
    return await create_credential(door.credentials, rec.id, username, actor=actor, password=password)


async def remove_credential(door: Door, config_id: str, username: str, *, actor: str) -> None:
    rec, _ = await mdm_configuration(door, config_id)
    found = await door.credentials.find_user(rec.id, username)
    if found is None:
        raise NotFound(f"no MDM credential {username!r} in configuration {config_id}")
    await door.credentials.delete(rec.id, found.id, actor=actor)


async def unlock_credential(door: Door, config_id: str, username: str, *, actor: str) -> CredentialInfo:
    """End a credential's lockout now (the failures counted against it cleared)."""
    rec, _ = await mdm_configuration(door, config_id)
    found = await door.credentials.find_user(rec.id, username)
    if found is None:
        raise NotFound(f"no MDM credential {username!r} in configuration {config_id}")
    return await door.credentials.unlock(rec.id, found.id, actor=actor)


async def reset_password(door: Door, config_id: str, username: str, *, actor: str) -> str:
    """A new generated password for an existing credential, returned once (the old one
    stops working; failures and lockout cleared)."""
    rec, _ = await mdm_configuration(door, config_id)
    if await door.credentials.find_user(rec.id, username) is None:
        raise NotFound(f"no MDM credential {username!r} in configuration {config_id}")
    return await door.credentials.set_password(rec.id, username, actor=actor)


def digital_id_view(https_url: str, rec: ProtocolConfigRecord, did: DigitalId, scep: str | None) -> dict[str, Any]:
    """A digital ID as the PKIaaS console shows it: with its Web Service URL and SCEP URL."""
    return {"name": did.name, "ca": rec.ca_id, "profile": did.profile, "rdn_format": did.rdn_format.text,
            "parent_dn": did.parent_dn.rfc4514_string(), "variables": list(did.rdn_format.variables),
            "key_algorithm": did.key_algorithm, "pkcs12_encryption": did.pkcs12_encryption,
            "server_key_generation": did.server_keys, "description": did.description,
            "web_service_url": admin_service_url(https_url, rec.id), "scep_url": scep}


def scep_url(door: Door, settings: MdmSettings) -> str | None:
    issuer = door.challenge_issuer(SCEP)
    return issuer.url(settings.scep_config) if issuer is not None and settings.scep_config else None


def describe(https_url: str, rec: ProtocolConfigRecord, scep: str | None) -> dict[str, Any]:
    """The configuration with every URL an MDM administrator enters (``scep``: its SCEP URL)."""
    settings = parse_settings(rec)
    url = admin_service_url(https_url, rec.id)
    return {"config": rec.id, "platform": settings.platform, "platform_name": PLATFORMS[settings.platform],
            "ca": rec.ca_id, "enabled": rec.enabled, "web_service_url": url, "wsdl": url + "?wsdl",
            "scep_config": settings.scep_config, "scep_url": scep,
            "digital_ids": [digital_id_view(https_url, rec, d, scep) for d in settings.digital_ids.values()]}


async def describe_with(door: Door, rec: ProtocolConfigRecord) -> dict[str, Any]:
    return describe(door.config.https_url, rec, scep_url(door, parse_settings(rec)))
