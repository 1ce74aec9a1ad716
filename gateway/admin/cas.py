"""Admin routes for CAs: list, inspect, create (four kinds), import a signed certificate, CRL."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from ..errors import NotFound
from ..store.records import CARecord
from ..web.keys import GATEWAY
from .auth import PRINCIPAL, actor, authorize
from .inputs import Fields, QueryArgs, page_in_memory, read_json
from .spec import PAGE, Query, Reply, Route
from .views import ca_view

CA_KINDS = ("root", "intermediate", "external_csr", "external_root")
MAX_VALIDITY_DAYS = 36500


def _oldest_first(records: list[CARecord]) -> list[CARecord]:
    """By creation time; a parent before its children when created within the same second."""
    parents = {r.id: r.parent_id for r in records}

    def depth(ca_id: str | None) -> int:
        seen: set[str] = set()
        while ca_id is not None and ca_id in parents and ca_id not in seen:
            seen.add(ca_id)
            ca_id = parents[ca_id]
        return len(seen)

    return sorted(records, key=lambda r: (r.created_at, depth(r.id), r.id))


async def list_cas(request: web.Request) -> web.Response:
    args = QueryArgs(request)
    limit, offset = args.page()
    kind = args.text("kind", choices=("root", "intermediate", "external_root", "external_signed"))
    state = args.text("state", choices=("active", "awaiting_certificate", "disabled"))
    args.done()
    async with request.app[GATEWAY].store.read() as q:
        records = _oldest_first(await q.cas.list())
    records = [r for r in records if (kind is None or r.kind == kind) and (state is None or r.state == state)]
    return web.json_response(page_in_memory([ca_view(r) for r in records], limit, offset))


async def get_ca(request: web.Request) -> web.Response:
    QueryArgs(request).done()
    ca_id = request.match_info["id"]
    async with request.app[GATEWAY].store.read() as q:
        rec = await q.cas.get(ca_id)
    if rec is None:
        raise NotFound(f"unknown CA {ca_id!r}")
    return web.json_response(ca_view(rec, detail=True))


NAME_MAX = 64
"""RFC 5280 upper bound of commonName and organizationName (the CA's name and organization)."""


def _validity(f: Fields, default: int | None) -> dt.timedelta | None:
    days = f.integer("validity_days", default=default, minimum=1, maximum=MAX_VALIDITY_DAYS)
    return dt.timedelta(days=days) if days is not None else None


async def create_ca(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    f = Fields(await read_json(request))
    kind = f.required_text("kind", choices=CA_KINDS)
    ca_id = f.required_text("id")
    name = f.required_text("name", max_length=NAME_MAX)
    hierarchy = gw.cas.hierarchy
    if kind == "root":
        algorithm = f.text("key_algorithm", default="EC-P384")
        validity = _validity(f, 3650)
        organization = f.text("organization", max_length=NAME_MAX)
        f.done()
        assert algorithm is not None and validity is not None
        rec = await hierarchy.create_root(ca_id, name, algorithm, validity, organization)
    elif kind == "intermediate":
        parent_id = f.required_text("parent")
        algorithm = f.text("key_algorithm", default="EC-P256")
        validity = _validity(f, None)
        organization = f.text("organization", max_length=NAME_MAX)
        f.done()
        assert algorithm is not None
        parent = await gw.cas.local(parent_id)
        rec = await hierarchy.create_intermediate(parent, ca_id, name, algorithm, validity, organization)
    elif kind == "external_csr":
        algorithm = f.text("key_algorithm", default="EC-P384")
        organization = f.text("organization", max_length=NAME_MAX)
        f.done()
        assert algorithm is not None
        rec, _csr = await hierarchy.create_external_csr(ca_id, name, algorithm, organization)
    else:
        certificate = f.required_text("certificate")
        f.done()
        rec = await hierarchy.import_external_root(ca_id, name, certificate.encode())
    await gw.cas.load()
    await gw.authority.events.record("ca_create", "success", ca_id=rec.id, actor=actor(request), kind=kind)
    return web.json_response(ca_view(rec, detail=True), status=201)


async def import_certificate(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    ca_id = request.match_info["id"]
    f = Fields(await read_json(request))
    certificate = f.required_text("certificate")
    chain = f.required_text("chain")
    f.done()
    rec = await gw.cas.hierarchy.import_signed_certificate(ca_id, certificate.encode(), chain.encode())
    await gw.cas.load()
    await gw.authority.events.record("ca_import", "success", ca_id=ca_id, actor=actor(request))
    return web.json_response(ca_view(rec, detail=True))


async def get_crl(request: web.Request) -> web.Response:
    q = QueryArgs(request)
    force = q.flag("force")
    q.done()
    ca_id = request.match_info["id"]
    gw = request.app[GATEWAY]
    if force:  # a new CRL is a change: admins only, and audited like the CLI's ``ca crl --force``
        authorize(request[PRINCIPAL], "POST", "cas")
    der = await gw.authority.crl(ca_id, force=force)
    if force:
        await gw.authority.events.record("crl_issue", "success", ca_id=ca_id, actor=actor(request), forced=True)
    return web.Response(
        body=der, content_type="application/pkix-crl",
        headers={"Content-Disposition": f'attachment; filename="{ca_id}.crl"'},
    )


ROUTES = (
    Route("GET", "/cas", list_cas, "listCAs", "List CAs", "CAs",
          (Reply(200, "CAs, oldest first", "CAList"),),
          query=(*PAGE,
                 Query("kind", {"type": "string", "enum": ["root", "intermediate", "external_root", "external_signed"]},
                       "Only CAs of this kind."),
                 Query("state", {"type": "string", "enum": ["active", "awaiting_certificate", "disabled"]},
                       "Only CAs in this state."))),
    Route("GET", "/cas/{id}", get_ca, "getCA", "One CA with its certificate, chain and CSR", "CAs",
          (Reply(200, "The CA", "CA"),), errors=(404,)),
    Route("POST", "/cas", create_ca, "createCA",
          "Create a root, an intermediate under a local CA, an externally signed CA (returns its CSR) "
          "or import an external root", "CAs",
          (Reply(201, "The new CA (csr_pem holds the CSR of an external_csr CA)", "CA"),),
          body="CACreate", errors=(403, 404, 409, 503)),
    Route("POST", "/cas/{id}/certificate", import_certificate, "importCACertificate",
          "Import the signed certificate and issuer chain of an externally signed CA", "CAs",
          (Reply(200, "The CA, now active", "CA"),), body="CACertificateImport", errors=(403, 404, 409)),
    Route("GET", "/cas/{id}/crl", get_crl, "getCRL", "The CA's current CRL (DER)", "CAs",
          (Reply(200, "DER-encoded CRL", media_type="application/pkix-crl"),),
          query=(Query("force", {"type": "boolean", "default": False},
                       "Issue a new CRL now (admin role; audited as crl_issue)."),),
          errors=(403, 404, 503)),
)
