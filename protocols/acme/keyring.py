"""Keys the ACME server derives from the CA passphrase: for nonces and for sealing EAB keys.

Replicas that share a database share the CA passphrase (they must, to use the CA
keys), so keys derived from it agree across replicas without storing anything:
a nonce minted by one replica verifies on another, and an EAB HMAC key sealed by
one unseals on another. The passphrase is stretched once (scrypt) and split with
HKDF, so a database dump alone reveals neither.

EAB HMAC keys are *encrypted*, not hashed: verifying an EAB binding means
computing an HMAC with the key itself, which a hash cannot give back. Changing
the CA passphrase therefore makes existing unbound EAB keys unusable (they fail to
unseal and are refused); bound accounts are unaffected.
"""

from __future__ import annotations

from gateway.sealing import SealError, Sealer, derive, stretch

__all__ = ["Keyring", "SealError"]

_SALT = b"enrollment-gateway acme keyring v1"


class Keyring:
    """Derived keys. Building one stretches the passphrase (tens of milliseconds): the
    ACME runtime and the admin routes each build theirs once, at start."""

    def __init__(self, passphrase: bytes) -> None:
        master = stretch(passphrase, _SALT)
        self.nonce_key = derive(master, b"acme nonce hmac")
        self._eab = Sealer(derive(master, b"acme eab seal"))

    def seal(self, secret: bytes, context: str) -> str:
        """AES-256-GCM with ``context`` (e.g. config and key id) bound as associated data."""
        return self._eab.seal(secret, context)

    def unseal(self, token: str, context: str) -> bytes:
        return self._eab.unseal(token, context)
