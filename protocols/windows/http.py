"""The CEP (MS-XCEP policy) endpoints on the HTTPS listener, on AD CS's paths and the gateway's.

Each endpoint authenticates as its path says (UsernameToken, TLS client certificate;
Kerberos: Negotiate (:mod:`.negotiate`) when the configuration has a ``kerberos`` keytab,
else a clear fault), then answers GetPolicies with the
templates of its configuration (with a ``directory``: also those Active Directory publishes,
and only those the caller's account may enroll in, :mod:`.directory.policy`). The ``cAURI``s point at the CES endpoints of the same
path family, so a client that found the policy on AD CS's paths enrolls on them too.
Every error is a SOAP fault (:func:`.soap.endpoint`).
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.door import Door, ProtocolConfigRecord
from gateway.door import door as door_of
from gateway.errors import ConfigError, GatewayError

from . import negotiate, paths, soap, versions, wssecurity, xcep
from .directory import policy as directory_policy
from .paths import CERTIFICATE, KERBEROS, KEY_BASED_RENEWAL, USERNAME
from .settings import WindowsSettings, adcs_configuration
from .templates import Template, build_template

log = logging.getLogger(__name__)

PROTOCOL = "windows"
CEP_AUTH_MODES = (USERNAME, CERTIFICATE, KERBEROS, KEY_BASED_RENEWAL)


class KerberosNotConfigured(soap.SoapFault):
    def __init__(self) -> None:
        super().__init__("Kerberos (Negotiate) authentication is not configured on this gateway: "
                         "use the UsernamePassword or Certificate endpoint", code=soap.RECEIVER)


def ces_url(base: str, rec: ProtocolConfigRecord, settings: WindowsSettings, auth: str, *, adcs: bool) -> str:
    path = paths.adcs_ces_path(settings.ca_name, auth) if adcs else paths.ces_path(rec.id, auth)
    return base + path


def policy_view(door: Door, rec: ProtocolConfigRecord, settings: WindowsSettings, endpoint: str, *,
                adcs: bool) -> xcep.PolicyView:
    """What ``endpoint`` of ``rec`` offers: its templates (the KeyBasedRenewal endpoint: only
    those renewable by key) and one cAURI per CES authentication mode of the configuration."""
    templates: list[Template] = []
    for t in settings.templates:
        profile = door.profile(t.profile)
        if profile is None:
            raise ConfigError(f"windows configuration {rec.id!r}: template {t.name!r}: no profile {t.profile!r}")
        if endpoint == KEY_BASED_RENEWAL and not t.key_based_renewal:
            continue
        try:
            templates.append(build_template(t, profile, where=f"windows configuration {rec.id!r}:"))
        except ConfigError as exc:
            if t.directory is None:
                raise
            # one directory template the profile cannot serve must not take the policy down
            log.warning("directory template %r left out of the policy: %s", t.name, exc.detail)
    ca = door.ca_certificate(rec.ca_id)
    if ca is None:
        raise GatewayError(f"CA {rec.ca_id!r} has no certificate yet")
    base = door.config.https_url
    uris: tuple[xcep.CaUri, ...]
    if endpoint == KEY_BASED_RENEWAL:
        uris = (xcep.CaUri(paths.CLIENT_AUTHENTICATION[CERTIFICATE],
                           ces_url(base, rec, settings, CERTIFICATE, adcs=adcs), renewal_only=True),)
    else:
        uris = tuple(xcep.CaUri(paths.CLIENT_AUTHENTICATION[a], ces_url(base, rec, settings, a, adcs=adcs))
                     for a in settings.auth)
    return xcep.PolicyView(settings.policy_id, settings.friendly_name, settings.next_update_hours,
                           tuple(templates), ca, uris)


async def authenticate(request: web.Request, door: Door, rec: ProtocolConfigRecord, endpoint: str,
                       env: soap.Envelope, settings: WindowsSettings) -> wssecurity.Caller:
    if endpoint == USERNAME:
        if settings.directory is not None and settings.directory.password_logon:
            return await directory_policy.username_caller(door, rec, settings.directory, env.security)
        return await wssecurity.username_caller(door, rec.id, env.security)
    if endpoint in (CERTIFICATE, KEY_BASED_RENEWAL):
        return await wssecurity.certificate_caller(request, door, {rec.ca_id})
    if settings.kerberos is not None:
        return await negotiate.kerberos_caller(request, door, settings.kerberos)
    raise KerberosNotConfigured()


async def get_policies(request: web.Request, env: soap.Envelope, rec: ProtocolConfigRecord,
                       settings: WindowsSettings, endpoint: str, *, adcs: bool) -> soap.Reply:
    door = door_of(request, PROTOCOL)
    soap.require_action(env, xcep.GET_POLICIES)
    mode = CERTIFICATE if endpoint == KEY_BASED_RENEWAL else endpoint
    if mode != KERBEROS and mode not in settings.auth:
        # as the CES refuses it: a mode the operator turned off must not still hand out policy
        raise soap.SoapFault(f"the {endpoint} endpoint is not offered by this configuration")
    caller = await authenticate(request, door, rec, endpoint, env, settings)
    query = xcep.parse_get_policies(env.payload)
    resolved = await directory_policy.resolve(door, rec, settings, caller)
    view = policy_view(door, rec, resolved.settings, endpoint, adcs=adcs)
    changed_at = await versions.last_update_time(door, rec.id, endpoint, xcep.policy_digest(view))
    body = xcep.get_policies_response(view, query, resolved.access, last_update_time=changed_at)
    return soap.Reply(xcep.GET_POLICIES_RESPONSE, [body])


async def _configuration(door: Door, config_id: str) -> tuple[ProtocolConfigRecord, WindowsSettings]:
    rec = await door.configuration(config_id)
    return rec, WindowsSettings.of(rec)


@soap.endpoint
async def gateway_cep(request: web.Request, env: soap.Envelope) -> soap.Reply:
    """``/windows/<config>/cep/<auth>``."""
    endpoint = request.match_info["auth"]
    if endpoint not in CEP_AUTH_MODES:
        raise web.HTTPNotFound()
    rec, settings = await _configuration(door_of(request, PROTOCOL), request.match_info["config"])
    return await get_policies(request, env, rec, settings, endpoint, adcs=False)


@soap.endpoint
async def adcs_cep(request: web.Request, env: soap.Envelope) -> soap.Reply:
    """``/ADPolicyProvider_CEP_<mode>/service.svc/CEP`` and the KeyBasedRenewal one."""
    service = paths.parse_adcs_service(request.match_info["application"], request.match_info["endpoint"])
    if service is None or service.service != "cep":
        raise web.HTTPNotFound()
    rec, settings = await adcs_configuration(door_of(request, PROTOCOL))
    endpoint = KEY_BASED_RENEWAL if service.renewal_only else service.auth
    return await get_policies(request, env, rec, settings, endpoint, adcs=True)


def add_routes(app: web.Application) -> None:
    modes = "|".join(CEP_AUTH_MODES)
    app.router.add_post(f"{paths.PREFIX}/{paths.CONFIG_PATTERN}/cep/{{auth:(?:{modes})}}",
                        negotiate.mutual(gateway_cep))
    # IIS matches application paths case-insensitively; AD CS clients rely on it.
    app.router.add_post(r"/{application:[A-Za-z0-9_.-]+}/{svc:(?i:service\.svc)}/{endpoint:(?i:cep)}",
                        negotiate.mutual(adcs_cep))
