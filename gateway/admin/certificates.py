"""Admin routes for certificates: search, inspect, download, issue, revoke, suspend, bulk revoke.

Every change goes through :class:`gateway.authority.Authority` with the caller as
actor, so the audit trail and the CRL follow exactly as for protocol requests.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Protocol

from aiohttp import web

from ..ca.backend import RevocationReason
from ..ca.overrides import overrides_from_json
from ..ca.pem import cert_to_pem
from ..errors import BadRequest, GatewayError
from ..store.records import CertificateFilter, CertificateRecord, serial_hex
from ..web.keys import GATEWAY
from .auth import actor
from .inputs import Fields, QueryArgs, check_serial, page, read_json
from .spec import PAGE, Query, Reply, Route
from .views import certificate_pem, certificate_view, issued_view

CERT_STATUSES = ("valid", "revoked", "hold")
BULK_BATCH = 500
MAX_REPORTED_FAILURES = 100


class _Reader(Protocol):
    def text(self, name: str, *, choices: Any = None) -> str | None: ...
    def time(self, name: str) -> dt.datetime | None: ...


def read_filter(r: _Reader) -> CertificateFilter:
    """The certificate filter, from a query string or a bulk request's ``filter`` object."""
    return CertificateFilter(
        ca_id=r.text("ca"),
        status=r.text("status", choices=CERT_STATUSES),
        profile=r.text("profile"),
        entity_id=r.text("entity"),
        protocol_config=r.text("protocol_config"),
        subject_contains=r.text("subject"),
        expires_before=r.time("expires_before"),
        issued_after=r.time("issued_after"),
        san_contains=r.text("san"),
        expires_after=r.time("expires_after"),
        issued_before=r.time("issued_before"),
    )


def _is_empty(flt: CertificateFilter) -> bool:
    return all(getattr(flt, f.name) in (None, "") for f in dataclasses.fields(flt))


def read_reason(value: Any) -> RevocationReason:
    if value is None:
        return RevocationReason.unspecified
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRequest("reason must be a reason name (keyCompromise) or an RFC 5280 code")
    return RevocationReason.parse(value)


def _serial(request: web.Request) -> str:
    """The path's serial in canonical form (lowercase hex, no ``0x``, colons or leading zeros)."""
    return format(int(check_serial(request.match_info["serial"]).replace(":", ""), 16), "x")


async def _record(request: web.Request) -> CertificateRecord:
    return await request.app[GATEWAY].authority.certificate(_serial(request))


async def list_certificates(request: web.Request) -> web.Response:
    args = QueryArgs(request)
    limit, offset = args.page()
    flt = read_filter(args)
    args.done()
    async with request.app[GATEWAY].store.read() as q:
        total = await q.certificates.count(flt)
        records = await q.certificates.list(flt, limit=limit, offset=offset)
    return web.json_response(page([certificate_view(r) for r in records], limit, offset, total=total))


async def get_certificate(request: web.Request) -> web.Response:
    QueryArgs(request).done()
    return web.json_response(certificate_view(await _record(request), detail=True))


async def download_pem(request: web.Request) -> web.Response:
    q = QueryArgs(request)
    with_chain = q.flag("chain")
    q.done()
    gw = request.app[GATEWAY]
    rec = await _record(request)
    body = certificate_pem(rec)
    if with_chain:
        backend = await gw.cas.backend(rec.ca_id)
        body += "".join(cert_to_pem(c) for c in await backend.chain())
    return web.Response(
        body=body.encode(), content_type="application/x-pem-file",
        headers={"Content-Disposition": f'attachment; filename="{rec.serial}.pem"'},
    )


async def download_der(request: web.Request) -> web.Response:
    QueryArgs(request).done()
    rec = await _record(request)
    return web.Response(
        body=rec.der, content_type="application/pkix-cert",
        headers={"Content-Disposition": f'attachment; filename="{rec.serial}.cer"'},
    )


def read_overrides(data: dict[str, Any] | None) -> dict[str, Any]:
    """The ``overrides`` object checked field by field against the ``Overrides`` schema,
    so a wrong type is a 400 naming the field (not a crash deeper in)."""
    if data is None:
        return {}
    f = Fields(data, where="overrides")
    subject = f.text("subject")
    sans = f.text_list("sans")
    not_before, not_after = f.raw("not_before"), f.raw("not_after")
    for name, value in (("not_before", not_before), ("not_after", not_after)):
        if value is not None:
            f.time(name)
    validity = f.raw("validity_seconds")
    if validity is not None and (isinstance(validity, bool) or not isinstance(validity, (int, float))
                                 or not validity > 0):
        raise BadRequest("overrides.validity_seconds must be a number above 0")
    extensions = f.raw("extensions")
    if extensions is not None:
        if not isinstance(extensions, list):
            raise BadRequest("overrides.extensions must be a list")
        for ext in extensions:
            if not isinstance(ext, dict):
                raise BadRequest("overrides.extensions[] must be objects")
            e = Fields(ext, where="overrides.extensions[]")
            e.required_text("oid")
            e.required_text("value")
            e.flag("critical")
            e.done()
    variables = f.mapping("variables")
    if variables is not None and not all(isinstance(v, str) for v in variables.values()):
        raise BadRequest("overrides.variables must map names to strings")
    f.done()
    checked: dict[str, Any] = {
        "subject": subject, "sans": sans, "not_before": not_before, "not_after": not_after,
        "validity_seconds": validity, "extensions": extensions, "variables": variables,
    }
    return {k: v for k, v in checked.items() if v is not None}


async def issue(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    f = Fields(await read_json(request))
    ca_id = f.required_text("ca")
    profile = f.required_text("profile")
    csr = f.required_text("csr")
    overrides = f.mapping("overrides")
    f.done()
    issued = await gw.authority.issue_direct(
        ca_id, csr.encode(), profile, overrides_from_json(read_overrides(overrides)), actor=actor(request)
    )
    rec = await gw.authority.certificate(serial_hex(issued.serial))
    return web.json_response(issued_view(rec, issued), status=201)


async def revoke(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    f = Fields(await read_json(request, optional=True))
    reason = read_reason(f.raw("reason"))
    invalidity_date = f.time("invalidity_date")
    f.done()
    serial = _serial(request)
    await gw.authority.revoke(serial, reason, actor=actor(request), invalidity_date=invalidity_date)
    return web.json_response(certificate_view(await gw.authority.certificate(serial), detail=True))


async def suspend(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    Fields(await read_json(request, optional=True)).done()
    serial = _serial(request)
    await gw.authority.suspend(serial, actor=actor(request))
    return web.json_response(certificate_view(await gw.authority.certificate(serial), detail=True))


async def unsuspend(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    Fields(await read_json(request, optional=True)).done()
    serial = _serial(request)
    await gw.authority.unsuspend(serial, actor=actor(request))
    return web.json_response(certificate_view(await gw.authority.certificate(serial), detail=True))


async def _matching_serials(request: web.Request, flt: CertificateFilter) -> list[str]:
    """Every VALID or HOLD certificate the filter matches, collected before any change."""
    statuses = [flt.status] if flt.status else ["valid", "hold"]
    found: dict[str, None] = {}
    async with request.app[GATEWAY].store.read() as q:
        for status in statuses:
            sub = dataclasses.replace(flt, status=status)
            offset = 0
            while True:
                batch = await q.certificates.list(sub, limit=BULK_BATCH, offset=offset)
                found.update((r.serial, None) for r in batch)
                if len(batch) < BULK_BATCH:
                    break
                offset += BULK_BATCH
    return list(found)


async def bulk_revoke(request: web.Request) -> web.Response:
    gw = request.app[GATEWAY]
    f = Fields(await read_json(request))
    filter_fields = Fields(f.mapping("filter") or {}, where="filter")
    everything = f.flag("all", default=False)
    reason = read_reason(f.raw("reason"))
    invalidity_date = f.time("invalidity_date")
    f.done()
    flt = read_filter(filter_fields)
    filter_fields.done()
    for field in dataclasses.fields(flt):
        if getattr(flt, field.name) == "":
            raise BadRequest("filter values must not be empty: an empty one would match more than meant")
    if flt.status == "revoked":
        raise BadRequest("filter.status must be valid or hold: revoked certificates stay revoked")
    if reason in (RevocationReason.certificate_hold, RevocationReason.remove_from_crl):
        raise BadRequest("bulk revocation takes a final reason; suspend certificates one by one")
    if _is_empty(flt) and not everything:
        raise BadRequest('refusing to revoke every certificate: give a filter, or "all": true')
    serials = await _matching_serials(request, flt)
    who = actor(request)
    revoked, failures = 0, []
    for serial in serials:
        try:
            await gw.authority.revoke(serial, reason, actor=who, invalidity_date=invalidity_date)
        except GatewayError as exc:
            failures.append({"serial": serial, "error": exc.kind.value, "detail": exc.detail})
        else:
            revoked += 1
    return web.json_response({
        "matched": len(serials),
        "revoked": revoked,
        "failed": len(failures),
        "failures": failures[:MAX_REPORTED_FAILURES],
    })


_FILTER_QUERY = (
    Query("ca", {"type": "string"}, "Issuing CA id."),
    Query("status", {"type": "string", "enum": list(CERT_STATUSES)}, "Certificate status."),
    Query("profile", {"type": "string"}, "Profile name."),
    Query("entity", {"type": "string"}, "End entity id."),
    Query("protocol_config", {"type": "string"}, "Protocol configuration id."),
    Query("subject", {"type": "string"}, "Case-insensitive substring of the RFC 4514 subject."),
    Query("expires_before", {"type": "string", "format": "date-time"},
          "notAfter before this time (ISO 8601; UTC when no offset)."),
    Query("issued_after", {"type": "string", "format": "date-time"}, "Issued at or after this time."),
    Query("issued_before", {"type": "string", "format": "date-time"}, "Issued before this time."),
    Query("expires_after", {"type": "string", "format": "date-time"}, "notAfter at or after this time."),
    Query("san", {"type": "string"}, "Case-insensitive substring of any subject alternative name."),
)
_CERT = "Certificates"
_MODIFY_ERRORS = (404, 409, 503)

ROUTES = (
    Route("GET", "/certificates", list_certificates, "listCertificates",
          "Search certificates (newest first)", _CERT,
          (Reply(200, "Matching certificates and their total", "CertificateList"),),
          query=(*PAGE, *_FILTER_QUERY)),
    Route("GET", "/certificates/{serial}", get_certificate, "getCertificate",
          "One certificate by hex serial (colons and leading zeros tolerated)", _CERT,
          (Reply(200, "The certificate with its PEM", "Certificate"),), errors=(404,)),
    Route("GET", "/certificates/{serial}/pem", download_pem, "downloadCertificatePEM",
          "Download the certificate as PEM", _CERT,
          (Reply(200, "PEM certificate (then its issuer chain with ?chain=true)",
                 media_type="application/x-pem-file"),),
          query=(Query("chain", {"type": "boolean", "default": False}, "Append the issuer chain."),),
          errors=(404,)),
    Route("GET", "/certificates/{serial}/der", download_der, "downloadCertificateDER",
          "Download the certificate as DER", _CERT,
          (Reply(200, "DER certificate", media_type="application/pkix-cert"),), errors=(404,)),
    Route("POST", "/certificates", issue, "issueCertificate",
          "Issue a certificate from a CSR under a profile (operator issuance)", _CERT,
          (Reply(201, "The issued certificate with its chain", "IssuedCertificate"),),
          body="IssueRequest", errors=(403, 404, 503)),
    Route("POST", "/certificates/{serial}/revoke", revoke, "revokeCertificate",
          "Revoke a certificate (certificateHold suspends instead)", _CERT,
          (Reply(200, "The certificate, now revoked", "Certificate"),),
          body="RevokeRequest", body_optional=True, errors=_MODIFY_ERRORS),
    Route("POST", "/certificates/{serial}/suspend", suspend, "suspendCertificate",
          "Put a certificate on hold", _CERT,
          (Reply(200, "The certificate, now on hold", "Certificate"),),
          body="Empty", body_optional=True, errors=_MODIFY_ERRORS),
    Route("POST", "/certificates/{serial}/unsuspend", unsuspend, "unsuspendCertificate",
          "Release a certificate from hold", _CERT,
          (Reply(200, "The certificate, valid again", "Certificate"),),
          body="Empty", body_optional=True, errors=_MODIFY_ERRORS),
    Route("POST", "/certificates/revoke", bulk_revoke, "bulkRevokeCertificates",
          "Revoke every valid or held certificate matching a filter", _CERT,
          (Reply(200, "How many matched, were revoked and failed", "BulkRevokeResult"),),
          body="BulkRevokeRequest"),
)
