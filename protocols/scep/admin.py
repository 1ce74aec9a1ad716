"""Admin API for SCEP under ``/admin/scep/...``: one-time challenges, the static challenge,
challenge-admin credentials (mscep_admin page and webhook: enrollment credentials of the
door, :mod:`.admins`), the RA certificates, and what an Intune administrator enters for an
Intune configuration (SCEP server URL and the chain of the trusted certificate profile;
never the client secret).

Routes are declared as :class:`gateway.admin.spec.Route` entries like the core's, and
added to the admin OpenAPI document, so they are authenticated by the admin app's
middleware and documented the same way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.admin import openapi
from gateway.admin.api import extend
from gateway.admin.auth import actor
from gateway.admin.inputs import Fields, QueryArgs, read_json
from gateway.admin.spec import Reply, Route
from gateway.door import ProtocolConfigRecord
from gateway.errors import BadRequest, NotFound

from .admins import remove_challenge_admin, set_challenge_admin
from .challenge import STATIC, issue_dynamic_challenge, set_static_challenge
from .ra import issue_ra
from .intune.settings import IntuneSettings
from .service import ScepService, install, service_of
from .settings import CHALLENGE_LIFETIME_CEILING, ScepSettings

TAG = "SCEP"
MAX_TTL = CHALLENGE_LIFETIME_CEILING  # each configuration's settings.max_challenge_lifetime may be lower


def _svc(request: web.Request) -> ScepService:
    return service_of(request)


async def _config(request: web.Request, svc: ScepService) -> ProtocolConfigRecord:
    """The SCEP configuration named in the path, enabled or not (operators manage both)."""
    config_id = request.match_info["id"]
    rec = await svc.door.find_configuration(config_id)
    if rec is None:
        raise NotFound(f"no SCEP configuration {config_id!r}")
    return rec


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


async def create_challenge(request: web.Request) -> web.Response:
    svc = _svc(request)
    rec = await _config(request, svc)
    settings = ScepSettings.of(rec)
    f = Fields(await read_json(request, optional=True))
    subject = f.text("subject")
    ttl_seconds = f.integer("ttl_seconds", minimum=60, maximum=int(MAX_TTL.total_seconds()))
    f.done()
    ttl = settings.challenge_lifetime(dt.timedelta(seconds=ttl_seconds) if ttl_seconds is not None else None)
    issued = await issue_dynamic_challenge(
        svc.repo, rec.id, ttl=ttl, limit=settings.dynamic_challenge_limit, source="api",
        issued_by=actor(request), bound_subject=subject, now=svc.clock(),
    )
    await svc.door.record_event(
        "scep_challenge", "success", protocol_config=rec.id, source="api", actor=actor(request),
        bound=subject is not None,
    )
    return web.json_response(
        {"challenge": issued.challenge, "expires_at": _iso(issued.expires_at), "subject": issued.bound_subject},
        status=201, headers={"Cache-Control": "no-store"},
    )


async def list_challenges(request: web.Request) -> web.Response:
    svc = _svc(request)
    QueryArgs(request).done()
    rec = await _config(request, svc)
    items = [
        {"source": c.source, "issued_by": c.issued_by, "subject": c.bound_subject,
         "created_at": _iso(c.created_at), "expires_at": _iso(c.expires_at)}
        for c in await svc.repo.list_challenges(rec.id, svc.clock())
    ]
    return web.json_response({"items": items})


async def put_static_challenge(request: web.Request) -> web.Response:
    svc = _svc(request)
    rec = await _config(request, svc)
    f = Fields(await read_json(request, optional=True))
    value = f.text("challenge")
    f.done()
    challenge = await set_static_challenge(svc.repo, rec.id, value)
    await svc.door.record_event(
        "scep_static_challenge", "success", protocol_config=rec.id, actor=actor(request),
    )
    return web.json_response({"challenge": challenge}, headers={"Cache-Control": "no-store"})


async def delete_static_challenge(request: web.Request) -> web.Response:
    svc = _svc(request)
    QueryArgs(request).done()
    rec = await _config(request, svc)
    if not await svc.repo.delete_secret(rec.id, STATIC, "static"):
        raise NotFound(f"SCEP configuration {rec.id!r} has no static challenge")
    await svc.door.record_event(
        "scep_static_challenge_delete", "success", protocol_config=rec.id, actor=actor(request),
    )
    return web.Response(status=204)


async def put_challenge_admin(request: web.Request) -> web.Response:
    svc = _svc(request)
    rec = await _config(request, svc)
    f = Fields(await read_json(request, optional=True))
    password = f.text("password")
    f.done()
    issued = await set_challenge_admin(svc.door.credentials, rec.id, request.match_info["username"], password,
                                       actor=actor(request))
    username = issued.credential.username
    await svc.door.record_event(
        "scep_challenge_admin", "success", protocol_config=rec.id, actor=actor(request), username=username,
    )
    return web.json_response({"username": username, "password": issued.secret}, headers={"Cache-Control": "no-store"})


async def delete_challenge_admin(request: web.Request) -> web.Response:
    svc = _svc(request)
    QueryArgs(request).done()
    rec = await _config(request, svc)
    username = request.match_info["username"]
    if not await remove_challenge_admin(svc.door.credentials, rec.id, username, actor=actor(request)):
        raise NotFound(f"no challenge admin {username!r} in configuration {rec.id!r}")
    await svc.door.record_event(
        "scep_challenge_admin_delete", "success", protocol_config=rec.id, actor=actor(request), username=username,
    )
    return web.Response(status=204)


def ra_view(rec: Any) -> dict[str, Any]:
    cert = x509.load_pem_x509_certificate(rec.certificate_pem.encode())
    return {
        "id": rec.id, "role": rec.role, "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(), "serial": format(cert.serial_number, "x"),
        "not_after": _iso(cert.not_valid_after_utc),
        "sha256": hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
        "certificate_pem": rec.certificate_pem,
    }


async def list_ra(request: web.Request) -> web.Response:
    svc = _svc(request)
    QueryArgs(request).done()
    rec = await _config(request, svc)
    return web.json_response({"items": [ra_view(r) for r in await svc.repo.ra_certificates(rec.id)]})


async def create_ra(request: web.Request) -> web.Response:
    """Renew the RA (role ``current``) or prepare a rollover RA (``next``, from ``settings.next_ca``)."""
    svc = _svc(request)
    rec = await _config(request, svc)
    f = Fields(await read_json(request, optional=True))
    role = f.text("role", choices=("current", "next")) or "current"
    f.done()
    ca_id = ScepSettings.of(rec).ra_ca or rec.ca_id
    if role == "next":
        ca_id = ScepSettings.of(rec).next_ca or ""
        if not ca_id:
            raise BadRequest("set settings.next_ca on the configuration before issuing a next RA")
    ra = await issue_ra(svc.door, svc.repo, rec.id, ca_id, role=role, actor=actor(request))
    return web.json_response(ra_view(ra), status=201)


def _intune(rec: ProtocolConfigRecord) -> IntuneSettings:
    intune = ScepSettings.of(rec).intune
    if intune is None:
        raise NotFound(f"SCEP configuration {rec.id!r} has no Intune connection; set it with "
                       f"`gateway scep intune set --config {rec.id} ...`")
    return intune


async def _chain_pem(svc: ScepService, rec: ProtocolConfigRecord) -> str:
    """The configuration's CA first, up to its root: the root goes in Intune's trusted
    certificate profile (and each issuing CA in one of its own)."""
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in await svc.door.chain(rec.ca_id))


async def get_intune(request: web.Request) -> web.Response:
    """The values the Intune SCEP and trusted certificate profiles need (as ``gateway scep
    intune show`` prints them), from the store, so they hold for any CA the API created."""
    svc = _svc(request)
    QueryArgs(request).done()
    rec = await _config(request, svc)
    intune = _intune(rec)
    return web.json_response({
        "config": rec.id, "ca": rec.ca_id, "scep_server_url": f"{svc.door.config.http_url}/scep/{rec.id}",
        "tenant": intune.tenant, "client_id": intune.client_id, "authority_url": intune.authority_url,
        "graph_url": intune.graph_url, "revocation_sync_seconds": intune.revocation_sync_seconds,
        "trusted_certificate_chain_pem": await _chain_pem(svc, rec),
        "trusted_certificate_chain_url": str(request.app.router["getScepIntuneChain"].url_for(id=rec.id)),
    })


async def download_intune_chain(request: web.Request) -> web.Response:
    svc = _svc(request)
    QueryArgs(request).done()
    rec = await _config(request, svc)
    _intune(rec)
    return web.Response(
        body=(await _chain_pem(svc, rec)).encode(), content_type="application/x-pem-file",
        headers={"Content-Disposition": f'attachment; filename="{rec.ca_id}-chain.pem"'},
    )


ROUTES: tuple[Route, ...] = (
    Route("POST", "/scep/{id}/challenges", create_challenge, "createScepChallenge",
          "Issue a one-time SCEP challenge password (optionally bound to a subject)", TAG,
          (Reply(201, "The challenge, shown once", "ScepChallenge"),),
          body="ScepChallengeCreate", body_optional=True, errors=(404, 409)),
    Route("GET", "/scep/{id}/challenges", list_challenges, "listScepChallenges",
          "Outstanding one-time challenges (values are never shown again)", TAG,
          (Reply(200, "Outstanding challenges", "ScepChallengeList"),), errors=(404,)),
    Route("PUT", "/scep/{id}/static-challenge", put_static_challenge, "setScepStaticChallenge",
          "Set or generate the configuration's static challenge password", TAG,
          (Reply(200, "The static challenge, shown once", "ScepStaticChallenge"),),
          body="ScepStaticChallengeSet", body_optional=True, errors=(404,)),
    Route("DELETE", "/scep/{id}/static-challenge", delete_static_challenge, "deleteScepStaticChallenge",
          "Remove the static challenge password", TAG, (Reply(204, "Removed"),), errors=(404,)),
    Route("PUT", "/scep/{id}/challenge-admins/{username}", put_challenge_admin, "setScepChallengeAdmin",
          "Create or reset credentials for the mscep_admin page and the Jamf webhook", TAG,
          (Reply(200, "The credentials, shown once", "ScepChallengeAdmin"),),
          body="ScepChallengeAdminSet", body_optional=True, errors=(404,)),
    Route("DELETE", "/scep/{id}/challenge-admins/{username}", delete_challenge_admin, "deleteScepChallengeAdmin",
          "Remove challenge-admin credentials", TAG, (Reply(204, "Removed"),), errors=(404,)),
    Route("GET", "/scep/{id}/ra", list_ra, "listScepRa", "The configuration's RA certificates", TAG,
          (Reply(200, "RA certificates, newest first", "ScepRaList"),), errors=(404,)),
    Route("POST", "/scep/{id}/ra", create_ra, "createScepRa",
          "Issue a new RA (current: renew now; next: for GetNextCACert during a CA rollover)", TAG,
          (Reply(201, "The new RA certificate", "ScepRa"),), body="ScepRaCreate", body_optional=True,
          errors=(404, 503)),
    Route("GET", "/scep/{id}/intune", get_intune, "getScepIntune",
          "What the Intune SCEP and trusted certificate profiles need (never the client secret)", TAG,
          (Reply(200, "SCEP server URL, Entra app and the chain to trust", "ScepIntune"),), errors=(404, 503)),
    Route("GET", "/scep/{id}/intune/chain.pem", download_intune_chain, "getScepIntuneChain",
          "Download the chain for Intune's trusted certificate profile (CA first, root last)", TAG,
          (Reply(200, "PEM certificates", media_type="application/x-pem-file"),), errors=(404, 503)),
)

_S = {"type": "string"}
_NS = {"type": ["string", "null"]}
_DT = {"type": "string", "format": "date-time"}
SCHEMAS: dict[str, dict[str, Any]] = {
    "ScepChallengeCreate": openapi.object_schema(
        {"subject": {"type": "string", "description": (
            "RFC 4514 DN the CSR's whole subject must match: same RDNs in the same order and the same "
            "attribute types; values compared ignoring case and extra white space")},
         "ttl_seconds": {"type": "integer", "minimum": 60, "maximum": int(MAX_TTL.total_seconds()),
                         "description": ("Default: settings.dynamic_challenge_ttl; longer than "
                                         "settings.max_challenge_lifetime (default P7D) is refused")}},
        closed=True),
    "ScepChallenge": openapi.object_schema({"challenge": _S, "expires_at": _DT, "subject": _NS},
                                  ["challenge", "expires_at", "subject"]),
    "ScepChallengeList": openapi.object_schema({"items": {"type": "array", "items": openapi.object_schema(
        {"source": _S, "issued_by": _NS, "subject": _NS, "created_at": _DT, "expires_at": _DT})}}, ["items"]),
    "ScepStaticChallengeSet": openapi.object_schema(
        {"challenge": {"type": "string", "minLength": 8, "description": "Omit to generate one"}}, closed=True),
    "ScepStaticChallenge": openapi.object_schema({"challenge": _S}, ["challenge"]),
    "ScepChallengeAdminSet": openapi.object_schema(
        {"password": {"type": "string", "minLength": 8, "description": "Omit to generate one"}}, closed=True),
    "ScepChallengeAdmin": openapi.object_schema({"username": _S, "password": _S}, ["username", "password"]),
    "ScepRaCreate": openapi.object_schema({"role": {"type": "string", "enum": ["current", "next"]}}, closed=True),
    "ScepRa": openapi.object_schema(
        {"id": _S, "role": {"type": "string", "enum": ["current", "next", "retired"]}, "subject": _S,
         "issuer": _S, "serial": _S, "not_after": _DT, "sha256": _S, "certificate_pem": _S},
        ["id", "role", "subject", "issuer", "serial", "not_after", "sha256", "certificate_pem"]),
    "ScepRaList": openapi.object_schema({"items": {"type": "array", "items": openapi.ref("ScepRa")}}, ["items"]),
    "ScepIntune": openapi.object_schema(
        {"config": _S, "ca": _S,
         "scep_server_url": {"type": "string", "description": "The SCEP certificate profile's SCEP Server URL"},
         "tenant": _S, "client_id": {"type": "string", "description": "The Entra app registration's client id"},
         "authority_url": _S, "graph_url": _S, "revocation_sync_seconds": {"type": "integer", "minimum": 0},
         "trusted_certificate_chain_pem": {"type": "string", "description": (
             "PEM, the configuration's CA first and the root last (the trusted certificate profile's)")},
         "trusted_certificate_chain_url": {"type": "string", "description": "The same chain as a download"}},
        ["config", "ca", "scep_server_url", "tenant", "client_id", "authority_url", "graph_url",
         "revocation_sync_seconds", "trusted_certificate_chain_pem", "trusted_certificate_chain_url"],
        closed=True),
}


def mount_admin(admin: web.Application) -> None:
    """Register the routes, extend the admin OpenAPI document with them, and give the
    admin app its own :class:`ScepService` (it may be served without the HTTPS app)."""
    install(admin)
    extend(admin, ROUTES, SCHEMAS, TAG)

