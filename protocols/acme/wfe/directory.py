"""Unauthenticated resources: the directory, newNonce, and ARI renewalInfo (RFC 9773)."""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from cryptography import x509

from .. import ari, problems
from .context import acme_config, acme_json, runtime, urls_for


async def directory(request: web.Request) -> web.Response:
    acme = await acme_config(request)
    urls = urls_for(request, acme)
    s = acme.settings
    profiles = runtime(request).door.profiles
    meta: dict[str, object] = {
        "externalAccountRequired": s.eab_required,
        "profiles": {
            name: (profiles[name].description if name in profiles and profiles[name].description else name)
            for name in acme.record.profiles
        },
    }
    if s.terms_of_service:
        meta["termsOfService"] = s.terms_of_service
    if s.website:
        meta["website"] = s.website
    if s.caa_identities:
        meta["caaIdentities"] = list(s.caa_identities)
    doc: dict[str, object] = {
        "newNonce": urls.new_nonce,
        "newAccount": urls.new_account,
        "newOrder": urls.new_order,
        "revokeCert": urls.revoke_cert,
        "keyChange": urls.key_change,
        "renewalInfo": urls.renewal_info,
        "meta": meta,
    }
    if s.pre_authorization:
        doc["newAuthz"] = urls.new_authz
    return acme_json(doc)


async def new_nonce(request: web.Request) -> web.Response:
    await acme_config(request)  # 404 for an unknown directory; the nonce header is added by the middleware
    status = 204 if request.method == "GET" else 200
    return web.Response(status=status)


async def renewal_info(request: web.Request) -> web.Response:
    """GET ``renewal-info/<certID>``: the suggested window for one of this directory's certificates."""
    acme = await acme_config(request)
    rt = runtime(request)
    cert_id = ari.CertID.parse(request.match_info["certid"])
    rec = await rt.door.find_certificate(cert_id.serial_hex)
    if rec is None or rec.ca_id != acme.record.ca_id:
        raise problems.not_found("no certificate with this identifier")
    chain = await rt.chain(rec.ca_id)
    try:
        ski = chain[0].extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        ski = None
    if ski is not None and ski != cert_id.key_identifier:
        raise problems.not_found("no certificate with this identifier (authority key identifier differs)")
    window = ari.suggested_window(
        rec.not_before, rec.not_after, acme.settings.renewal_window,
        revoked=rec.status in ("revoked", "hold"), now=rt.now(),
    )
    retry = int(acme.settings.ari_retry_after / dt.timedelta(seconds=1))
    return acme_json({"suggestedWindow": window.to_json()}, headers={"Retry-After": str(retry)})
