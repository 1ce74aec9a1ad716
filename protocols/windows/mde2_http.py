"""MS-MDE2 endpoints: the Discovery service, and the MDM form of the CES's enrollment.

Windows' MDM client takes the domain of the user's e-mail address, asks
``https://EnterpriseEnrollment.<domain>/EnrollmentServer/Discovery.svc`` (a GET probe, then
a Discover POST), and enrolls at the URLs the DiscoverResponse names. Served here:

- ``/EnrollmentServer/Discovery.svc`` (IIS-style, case-insensitively) for the oldest enabled
  Windows configuration with ``mdm_discovery = true``, and
  ``/windows/<config>/discovery`` for any configuration (for the ``servername`` an admin
  hands out, e.g. in an ``ms-device-enrollment:`` link);
- the DiscoverResponse points at the configuration's own CEP and CES
  (``/windows/<config>/cep/username`` and ``.../ces/username`` for OnPremise, the
  ``certificate`` ones for Certificate): GetPolicies is MS-XCEP as for any client;
- a RequestSecurityToken with TokenType DeviceEnrollmentToken reaching the CES is sent here
  by :func:`.ces.serve`: authenticated and issued by :func:`.ces.enroll` exactly as a WSTEP
  Issue (a renewal, RequestType Renew, is a PKCS#7 signed by the old certificate as there),
  under the configuration's MDM template when the request names none, and answered with a
  provisioning document (:mod:`.mde2`); every error is an MS-MDE2 fault.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

from aiohttp import web

from gateway.door import Door, PendingRequest, ProtocolConfigRecord
from gateway.door import door as door_of
from gateway.errors import ConfigError, ErrorKind, GatewayError, NotFound

from . import ces, mde2, paths, soap, wssecurity, wstep
from gateway.edge import xml as X
from .paths import CERTIFICATE, USERNAME
from .settings import WindowsSettings

log = logging.getLogger("gateway.windows")

PROTOCOL = "windows"
DISCOVERY_PATH = "/EnrollmentServer/Discovery.svc"
POLICY_OF_AUTH = ((USERNAME, mde2.ON_PREMISE), (CERTIFICATE, mde2.CERTIFICATE))
"""MS-MDE2 AuthPolicy per CEP/CES authentication mode, in the order they are preferred."""


def discovery_path(config_id: str) -> str:
    return f"{paths.PREFIX}/{config_id}/discovery"


async def mdm_configuration(door: Door) -> tuple[ProtocolConfigRecord, WindowsSettings]:
    """The configuration ``/EnrollmentServer/Discovery.svc`` serves (NotFound if none)."""
    for rec in sorted(await door.configurations(enabled_only=True), key=lambda r: (r.created_at, r.id)):
        try:
            settings = WindowsSettings.of(rec)
        except ConfigError:
            continue
        if settings.mdm_discovery:
            return rec, settings
    raise NotFound("no Windows configuration serves MDM discovery")


async def _configured(request: web.Request) -> tuple[Door, ProtocolConfigRecord, WindowsSettings]:
    door = door_of(request, PROTOCOL)
    config_id = request.match_info.get("config")
    try:
        if config_id is None:
            return door, *await mdm_configuration(door)
        rec = await door.configuration(config_id)
        return door, rec, WindowsSettings.of(rec)
    except NotFound:
        raise web.HTTPNotFound() from None


def _logged(fault: mde2.Mde2Fault) -> mde2.Mde2Fault:
    log.info("MDM enrollment refused (trace %s, %s): %s", fault.trace_id, fault.error_type, fault.reason)
    return fault


# --- Discovery -------------------------------------------------------------------------------


async def probe(request: web.Request) -> web.Response:
    """The GET Windows sends first to see that the service exists (MS-MDE2 1.3)."""
    await _configured(request)
    return web.Response(status=200)


@soap.endpoint
async def discover(request: web.Request, env: soap.Envelope) -> soap.Reply:
    try:
        soap.require_action(env, mde2.ACTION_DISCOVER)
        query = mde2.parse_discover(env.payload)
        door, rec, settings = await _configured(request)
        offered = tuple(policy for auth, policy in POLICY_OF_AUTH if auth in settings.auth)
        policy = mde2.choose_policy(query.auth_policies, offered)
        version = mde2.negotiate_version(query.request_version)
    except mde2.Mde2Fault as fault:
        raise _logged(fault) from None
    except ConfigError as exc:
        raise _logged(mde2.Mde2Fault(exc.detail, mde2.ENROLLMENT_SERVER, receiver=True)) from None
    auth = USERNAME if policy == mde2.ON_PREMISE else CERTIFICATE
    base = door.config.https_url
    body = mde2.discover_response(policy, version, base + paths.cep_path(rec.id, auth),
                                  base + paths.ces_path(rec.id, auth))
    return soap.Reply(mde2.ACTION_DISCOVER_RESPONSE, [body])


# --- enrollment on the CES ----------------------------------------------------------------------


def is_device_enrollment(env: soap.Envelope) -> bool:
    """An RST asking for MDM's DeviceEnrollmentToken (MS-MDE2 3.4.4.1.1.1)."""
    if env.payload.tag != X.qname(wstep.WST, "RequestSecurityToken"):
        return False
    try:
        return X.child_text(env.payload, wstep.WST, "TokenType") == mde2.DEVICE_ENROLLMENT_TOKEN
    except X.XmlError:
        return False


def _translated(fault: wstep.EnrollmentFault) -> mde2.Mde2Fault:
    """A CES refusal as the MS-MDE2 Subcode Windows maps to its MENROLL_E_* error."""
    if fault.subcode is not None and fault.subcode[0] == wssecurity.WSSE:
        subcode = mde2.AUTHENTICATION
    elif fault.error_code in (wstep.E_ACCESSDENIED, wstep.CERTSRV_E_TEMPLATE_DENIED):
        subcode = mde2.AUTHORIZATION
    elif fault.code == soap.RECEIVER:
        subcode = mde2.ENROLLMENT_SERVER
    else:
        subcode = mde2.CERTIFICATE_REQUEST
    return mde2.Mde2Fault(fault.reason, subcode, receiver=fault.code == soap.RECEIVER)


async def serve(request: web.Request, env: soap.Envelope, svc: ces.Service) -> soap.Reply:
    try:
        return await _serve(request, env, svc)
    except mde2.Mde2Fault as fault:
        raise _logged(fault) from None
    except wstep.EnrollmentFault as fault:
        raise _logged(_translated(fault)) from None
    except GatewayError as exc:
        receiver = exc.kind in (ErrorKind.UNAVAILABLE, ErrorKind.INTERNAL)
        raise _logged(mde2.Mde2Fault(exc.detail, mde2.ENROLLMENT_SERVER if receiver else mde2.CERTIFICATE_REQUEST,
                                     receiver=receiver)) from None


async def _serve(request: web.Request, env: soap.Envelope, svc: ces.Service) -> soap.Reply:
    caller = await ces.authenticate(request, svc, env)
    try:
        rst = wstep.parse_rst(env.payload)
    except wstep.InvalidRst as exc:
        raise mde2.Mde2Fault(exc.detail, mde2.MESSAGE_FORMAT) from None
    if rst.request_type not in (wstep.ISSUE, mde2.RENEW):
        raise mde2.Mde2Fault(f"RequestType {rst.request_type[:200]!r} is not served for MDM enrollment "
                             "(Issue or Renew)", mde2.MESSAGE_FORMAT)
    context = rst.context
    if rst.context_value("CertificateTemplate") is None:
        context += (("CertificateTemplate", svc.settings.mdm_template_settings().name),)
    done = await ces.enroll(svc, caller, dataclasses.replace(rst, request_type=wstep.ISSUE, context=context))
    if isinstance(done.result, PendingRequest):
        raise mde2.Mde2Fault(f"the request is held for approval (RequestID {done.number}); MDM enrollment cannot "
                             "wait for it: enroll again once it is approved", mde2.CERTIFICATE_REQUEST)
    store = "System" if (rst.context_value("EnrollmentType") or "").strip().lower() == "device" else "User"
    settings = svc.settings
    dm = None
    if settings.mdm_server_url is not None:
        dm = mde2.DmServer(settings.mdm_server_url, settings.mdm_provider_id or svc.rec.id, settings.friendly_name)
    document = mde2.provisioning_document(mde2.Provisioning(
        done.result.certificate, done.result.chain, store,
        renew_days=max(1, done.template.renewal_period.days), dm_server=dm))
    return soap.Reply(wstep.ACTION_RSTRC, [mde2.rstrc(document, str(done.number))],
                      headers=[_timestamp(svc.door.clock())])


def _timestamp(now: dt.datetime) -> X.Element:
    """The ``wsu:Timestamp`` the spec's answer carries (4.3.2): five minutes from now."""
    security = X.element(wssecurity.WSSE, "Security", attrib={X.qname(soap.SOAP12, "mustUnderstand"): "1"},
                         nsmap={"o": wssecurity.WSSE, "u": soap.WSU})
    stamp = X.sub(security, soap.WSU, "Timestamp", attrib={X.qname(soap.WSU, "Id"): "_0"})
    fmt = "%Y-%m-%dT%H:%M:%S.%f"
    X.sub(stamp, soap.WSU, "Created", now.astimezone(dt.timezone.utc).strftime(fmt)[:-3] + "Z")
    X.sub(stamp, soap.WSU, "Expires", (now + dt.timedelta(minutes=5)).astimezone(dt.timezone.utc).strftime(fmt)[:-3] + "Z")
    return security


def add_routes(app: web.Application) -> None:
    """Mount discovery (HTTPS app): Windows' fixed path, case-insensitively, and the gateway's."""
    root = r"/{a:(?i:enrollmentserver)}/{b:(?i:discovery\.svc)}"
    gateway = f"{paths.PREFIX}/{paths.CONFIG_PATTERN}/discovery"
    for path in (root, gateway):
        app.router.add_get(path, probe)
        app.router.add_post(path, discover)
