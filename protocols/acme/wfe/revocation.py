"""revokeCert (RFC 8555 section 7.6): by the issuing account, an account authorized for all
its names, or whoever holds the certificate's private key (JWS with that key as ``jwk``)."""

from __future__ import annotations

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from gateway.door import RevocationReason
from gateway.errors import ErrorKind, GatewayError

from .. import problems
from ..nonces import b64url_decode
from .accounts import entity_name
from .context import read_signed, runtime
from .orders import csr_identifiers_of_certificate

# Reasons a subscriber may give (RFC 5280 codes). CA-only reasons (cACompromise,
# certificateHold, removeFromCRL, aACompromise, privilegeWithdrawn) are refused.
ALLOWED_REASONS = {0, 1, 3, 4, 5}


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


async def revoke_cert(request: web.Request) -> web.Response:
    signed = await read_signed(request, jwk=True, kid=True)
    rt = runtime(request)
    payload = signed.payload()
    cert_b64 = payload.get("certificate")
    if not isinstance(cert_b64, str):
        raise problems.malformed("revokeCert needs the certificate as base64url DER in 'certificate'")
    try:
        der = b64url_decode(cert_b64)
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        raise problems.malformed("the certificate is not valid base64url DER") from None
    reason = payload.get("reason", 0)
    if isinstance(reason, bool) or not isinstance(reason, int) or reason not in ALLOWED_REASONS:
        raise problems.bad_revocation_reason(
            f"reason {reason!r} is not allowed (use one of {sorted(ALLOWED_REASONS)})"
        )
    rec = await rt.door.find_certificate(format(cert.serial_number, "x"))
    if rec is None or rec.der != der or rec.protocol_config != signed.acme.id:
        raise problems.not_found("no such certificate was issued by this directory")
    account = signed.account
    if account is None:
        if _spki(signed.key.key) != _spki(cert.public_key()):
            raise problems.unauthorized("the JWS key is neither an account nor the certificate's key")
        actor = "acme:certificate-key"
    else:
        actor = entity_name(account.id)
        if rec.entity_id != account.entity_id:
            held = await rt.store.valid_identifiers(signed.acme.id, account.id, rt.now())
            names, _ = csr_identifiers_of_certificate(cert)
            if not names or not names <= held:
                raise problems.unauthorized("this account may not revoke this certificate")
    if rec.status == "revoked":
        raise problems.already_revoked("the certificate is already revoked")
    try:
        await rt.door.revoke(rec.serial, RevocationReason(reason), actor=actor, config_id=signed.acme.id)
    except GatewayError as exc:
        if exc.kind is ErrorKind.CONFLICT:
            raise problems.already_revoked(exc.detail) from None
        raise
    return web.Response(status=200)
