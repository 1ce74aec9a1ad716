"""Admin route for server-side key generation: a fresh key and its certificate, issued
under a protocol configuration, answered once as a password-protected PKCS#12 file
(``application/x-pkcs12``; the serial in ``X-Certificate-Serial`` and ``Location``).
See :mod:`gateway.keygen`; the password is neither stored nor logged."""

from __future__ import annotations

from aiohttp import web

from ..errors import BadRequest
from ..ca.pkcs12 import ENCRYPTIONS
from ..keygen import keygen_pkcs12, order
from ..keys import KEY_ALGORITHMS
from ..store.records import serial_hex
from ..web.keys import GATEWAY
from .auth import actor
from .inputs import Fields, QueryArgs, read_json
from .spec import Reply, Route

PKCS12 = "application/x-pkcs12"


async def keygen(request: web.Request) -> web.Response:
    """Fields are type-checked, then the configuration looked up (404), then the values
    checked (400): so a schema-valid request for a missing configuration is a 404."""
    gw = request.app[GATEWAY]
    QueryArgs(request).done()
    f = Fields(await read_json(request))
    common_name = f.text("common_name")
    subject = f.text("subject")
    sans = f.text_list("sans") or []
    profile = f.text("profile")
    key_algorithm = f.text("key_algorithm", choices=KEY_ALGORITHMS)
    password = f.text("password")
    encryption = f.text("encryption", choices=ENCRYPTIONS, default="modern")
    entity = f.text("entity")
    f.done()
    if password is None:
        raise BadRequest("password is required (the PKCS#12 file is encrypted under it)")
    assert encryption is not None
    config = await gw.authority.config(request.match_info["id"])
    req = order(config.id, password=password, common_name=common_name, subject=subject,
                sans=sans, profile=profile, key_algorithm=key_algorithm, encryption=encryption, entity=entity)
    result = await keygen_pkcs12(gw.authority, req, actor=actor(request), source="admin")
    serial = serial_hex(result.issued.serial)
    return web.Response(
        status=201, body=result.pkcs12, content_type=PKCS12,
        headers={"Content-Disposition": f'attachment; filename="{serial}.p12"',
                 "Location": f"/admin/certificates/{serial}", "X-Certificate-Serial": serial},
    )


ROUTES = (
    Route("POST", "/protocol-configs/{id}/keygen", keygen, "keygenPKCS12",
          "Generate a key on the server, issue its certificate under this configuration and "
          "download both as a password-protected PKCS#12 (modern AES-256 or legacy 3DES)", "Certificates",
          (Reply(201, "PKCS#12 file: key, certificate and issuer chain (serial in X-Certificate-Serial)",
                 media_type=PKCS12),),
          body="KeygenRequest", errors=(403, 404, 503)),
)
