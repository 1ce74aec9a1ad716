"""Certificates: search with filters, detail, downloads, revoke, suspend, bulk revoke, CSV."""

from __future__ import annotations

import csv
import io
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from cryptography import x509

from ..ca.backend import RevocationReason
from .app import api, form, redirect, render

FILTERS = ("status", "ca", "profile", "protocol_config", "subject", "san", "issued_after", "issued_before",
           "expires_after", "expires_before")
PAGE_SIZE = 50
CSV_BATCH = 500
CSV_COLUMNS = ("serial", "status", "subject", "sans", "ca", "profile", "protocol_config", "not_before", "not_after",
               "revocation_reason", "revoked_at", "fingerprint_sha256", "created_at")
FINAL_REASONS = [r.name.split("_")[0] + "".join(w.capitalize() for w in r.name.split("_")[1:])
                 for r in RevocationReason
                 if r not in (RevocationReason.certificate_hold, RevocationReason.remove_from_crl)]
"""RFC 5280 names (keyCompromise), as the admin API takes them; holds are the Suspend button."""


def _filters(source: Any) -> dict[str, str]:
    """The filter fields that are set; dates from ``<input type=date>`` are ISO 8601 already."""
    return {name: str(source.get(name)).strip() for name in FILTERS if str(source.get(name) or "").strip()}


def _serial_path(serial: str) -> str:
    return "/certificates/" + "".join(ch for ch in serial if ch.isalnum())


async def _choices(request: web.Request) -> dict[str, list[Any]]:
    cas = await api(request, "GET", "/cas", allow=(403,))
    profiles = await api(request, "GET", "/profiles", allow=(403,))
    configs = await api(request, "GET", "/protocol-configs", query={"limit": "500"}, allow=(403,))
    return {"cas": cas.body.get("items", []) if cas.ok else [],
            "profiles": profiles.body.get("items", []) if profiles.ok else [],
            "configs": configs.body.get("items", []) if configs.ok else []}


async def list_certificates(request: web.Request) -> web.StreamResponse:
    filters = _filters(request.query)
    serial = request.query.get("serial", "").strip()
    if serial:  # a serial names one certificate: go straight to it
        raise redirect("/console" + _serial_path(serial))
    try:
        offset = max(0, int(request.query.get("offset", "0")))
    except ValueError:
        offset = 0
    answer = await api(request, "GET", "/certificates", query={**filters, "limit": str(PAGE_SIZE),
                                                                "offset": str(offset)})
    body = answer.body
    return render(request, "certificates.html", {
        "items": body["items"], "total": body.get("total"), "offset": offset, "page_size": PAGE_SIZE,
        "filters": filters, "query": urlencode(filters), "reasons": FINAL_REASONS, **await _choices(request),
    })


async def export_csv(request: web.Request) -> web.StreamResponse:
    filters = _filters(request.query)
    first = await api(request, "GET", "/certificates", query={**filters, "limit": "1"})  # refused early, as a page
    response = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8",
                                           "Content-Disposition": 'attachment; filename="certificates.csv"'})
    await response.prepare(request)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    offset, total = 0, int(first.body.get("total") or 0)
    while offset < total:
        batch = (await api(request, "GET", "/certificates",
                           query={**filters, "limit": str(CSV_BATCH), "offset": str(offset)})).body["items"]
        if not batch:
            break
        for item in batch:
            writer.writerow([";".join(item[c]) if c == "sans" else ("" if item.get(c) is None else item[c])
                             for c in CSV_COLUMNS])
        offset += len(batch)
        await response.write(buf.getvalue().encode())
        buf.seek(0)
        buf.truncate()
    await response.write(buf.getvalue().encode())
    await response.write_eof()
    return response


_KEY_USAGE_FLAGS = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                    "key_agreement", "key_cert_sign", "crl_sign")


def _extension_text(value: Any) -> str:
    """An extension's value as an operator reads it (cryptography's repr otherwise)."""
    if isinstance(value, x509.SubjectAlternativeName):
        return ", ".join(str(getattr(n, "value", n)) for n in value)
    if isinstance(value, x509.ExtendedKeyUsage):
        return ", ".join(getattr(u, "_name", u.dotted_string) for u in value)
    if isinstance(value, x509.BasicConstraints):
        return f"CA={value.ca}" + (f", pathlen={value.path_length}" if value.path_length is not None else "")
    if isinstance(value, x509.KeyUsage):
        flags = [f for f in _KEY_USAGE_FLAGS if getattr(value, f)]
        if value.key_agreement:
            flags += [f for f in ("encipher_only", "decipher_only") if getattr(value, f)]
        return ", ".join(flags)
    if isinstance(value, x509.SubjectKeyIdentifier):
        return value.digest.hex(":")
    if isinstance(value, x509.AuthorityKeyIdentifier):
        return value.key_identifier.hex(":") if value.key_identifier else "-"
    if isinstance(value, x509.CRLDistributionPoints):
        return ", ".join(str(n.value) for dp in value for n in (dp.full_name or []))
    if isinstance(value, x509.AuthorityInformationAccess):
        return ", ".join(f"{getattr(d.access_method, '_name', d.access_method.dotted_string)}: "
                         f"{d.access_location.value}" for d in value)
    return repr(value)


def _decoded(pem: str) -> dict[str, Any]:
    cert = x509.load_pem_x509_certificate(pem.encode())
    extensions = [{"name": getattr(ext.oid, "_name", None) or ext.oid.dotted_string, "critical": ext.critical,
                   "value": _extension_text(ext.value)} for ext in cert.extensions]
    return {"issuer": cert.issuer.rfc4514_string(), "subject": cert.subject.rfc4514_string(),
            "signature": cert.signature_hash_algorithm.name if cert.signature_hash_algorithm else "-",
            "version": cert.version.name, "extensions": extensions}


async def detail(request: web.Request) -> web.Response:
    serial = request.match_info["serial"]
    cert = (await api(request, "GET", _serial_path(serial))).body
    return render(request, "certificate.html", {"cert": cert, "decoded": _decoded(cert["pem"]),
                                                "reasons": FINAL_REASONS, "done": request.query.get("done")})


async def download(request: web.Request) -> web.StreamResponse:
    serial, kind = request.match_info["serial"], request.match_info["kind"]
    answer = await api(request, "GET", _serial_path(serial) + ("/der" if kind == "der" else "/pem"),
                       query={"chain": "true"} if kind == "chain" else None)
    headers = {k: v for k, v in answer.headers.items() if k.lower() == "content-disposition"}
    return web.Response(body=answer.body, content_type=answer.content_type, headers=headers)


async def act(request: web.Request) -> web.StreamResponse:
    serial, action = request.match_info["serial"], request.match_info["action"]
    fields = await form(request)
    body: dict[str, Any] = {}
    if action == "revoke":
        body["reason"] = fields.get("reason") or "unspecified"
    await api(request, "POST", f"{_serial_path(serial)}/{action}", body=body)
    raise redirect(f"/console/certificates/{serial}?done={action}")


async def bulk_preview(request: web.Request) -> web.Response:
    fields = await form(request)
    filters = _filters(fields)
    if not filters:
        return render(request, "error.html", {"status": 400, "detail": "a bulk revocation needs at least one filter"},
                      status=400)
    filters.pop("status", None)
    status = fields.get("status") if fields.get("status") in ("valid", "hold") else None
    query = {**filters, "limit": "1"}
    counts = {}
    for s in ([status] if status else ["valid", "hold"]):
        counts[s] = int((await api(request, "GET", "/certificates", query={**query, "status": s})).body["total"])
    if status:
        filters["status"] = status
    return render(request, "bulk_revoke.html", {"filters": filters, "count": sum(counts.values()),
                                                "reason": fields.get("reason") or "unspecified",
                                                "reasons": FINAL_REASONS})


async def bulk_revoke(request: web.Request) -> web.Response:
    fields = await form(request)
    filters = _filters(fields)
    if not filters:
        return render(request, "error.html", {"status": 400, "detail": "a bulk revocation needs at least one filter"},
                      status=400)
    api_filter = {("subject" if k == "subject" else k): v for k, v in filters.items()}
    result = (await api(request, "POST", "/certificates/revoke",
                        body={"filter": api_filter, "reason": fields.get("reason") or "unspecified"})).body
    return render(request, "bulk_done.html", {"result": result, "filters": filters})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/certificates", list_certificates)
    app.router.add_get("/certificates.csv", export_csv)
    app.router.add_post("/certificates/bulk-revoke/preview", bulk_preview)
    app.router.add_post("/certificates/bulk-revoke", bulk_revoke)
    app.router.add_get("/certificates/{serial}", detail)
    app.router.add_get("/certificates/{serial}/download/{kind:pem|der|chain}", download)
    app.router.add_post("/certificates/{serial}/{action:revoke|suspend|unsuspend}", act)
