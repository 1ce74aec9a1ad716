"""External Account Binding (RFC 8555 section 7.3.4): keys made by operators, checked at newAccount.

An operator creates a key for a configuration (admin API or ``gateway acme eab
create``): a key id and a 256-bit HMAC key, shown once. The HMAC key is stored
sealed with a key derived from the CA passphrase (:mod:`.keyring`), because
checking a binding needs the key itself. A key binds exactly one account; it may
restrict which identifiers that account can order.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any


from . import jws, problems
from .identifiers import validate_entries
from .keyring import Keyring, SealError
from .nonces import b64url
from .records import EabKey
from .store import AcmeStore


@dataclass(frozen=True)
class NewEabKey:
    """What the operator sees once: the key id and the base64url HMAC key."""

    record: EabKey
    hmac_key: str

    def view(self) -> dict[str, Any]:
        return {**self.record.view(), "hmac_key": self.hmac_key}


def _context(config_id: str, kid: str) -> str:
    return f"acme-eab:{config_id}:{kid}"


def _cli_safe_secret() -> bytes:
    """32 random bytes whose base64url form does not start with '-': command-line
    clients (certbot, lego) would read ``--eab-hmac-key -c...`` as another option."""
    while True:
        secret = secrets.token_bytes(32)
        if not b64url(secret).startswith("-"):
            return secret


async def create_key(
    store: AcmeStore, keyring: Keyring, config_id: str, *, identifiers: list[str] | None = None,
    label: str = "", created_by: str = "",
) -> NewEabKey:
    """Raises ValueError for a bad identifier entry."""
    allowed = validate_entries(identifiers) if identifiers else None
    kid = "kid-" + secrets.token_urlsafe(18)
    secret = _cli_safe_secret()
    record = EabKey(
        kid=kid, config_id=config_id, hmac_key_encrypted=keyring.seal(secret, _context(config_id, kid)),
        label=label, created_by=created_by, identifiers=allowed, created_at=store.clock(),
    )
    await store.insert_eab(record)
    return NewEabKey(record, b64url(secret))


async def verify_binding(
    store: AcmeStore, keyring: Keyring, config_id: str, binding: Any, account_jwk: dict[str, Any],
    new_account_url: str,
) -> EabKey:
    """Check an ``externalAccountBinding`` object; returns the (still unbound) key record.

    The binding is a JWS over the account's public JWK, MACed with the EAB key,
    whose ``url`` is the newAccount URL (RFC 8555 section 7.3.4).
    """
    if not isinstance(binding, dict):
        raise problems.malformed("externalAccountBinding must be a JWS object")
    parsed = jws.parse(binding, mac=True)
    if parsed.url != new_account_url:
        raise problems.unauthorized("the external account binding is for another URL")
    kid = parsed.kid
    assert kid is not None
    key = await store.get_eab(config_id, kid)
    if key is None or key.revoked:
        raise problems.unauthorized("unknown or revoked external account key id")
    try:
        secret = keyring.unseal(key.hmac_key_encrypted, _context(config_id, kid))
    except SealError:
        raise problems.unauthorized("this external account key can no longer be used") from None
    if not jws.verify_mac(parsed, secret):
        raise problems.unauthorized("the external account binding signature does not verify")
    try:
        payload = json.loads(parsed.payload)
    except ValueError:
        raise problems.malformed("the external account binding payload is not a JWK") from None
    if not isinstance(payload, dict):
        raise problems.malformed("the external account binding payload is not a JWK")
    bound_key = jws.load_jwk(payload)
    if jws.thumbprint(bound_key) != jws.thumbprint(jws.load_jwk(account_jwk)):
        raise problems.unauthorized("the external account binding is for another account key")
    if key.account_id is not None:
        raise problems.unauthorized("this external account key is already bound to an account")
    return key
