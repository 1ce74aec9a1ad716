"""Challenge admins: who may obtain one-time challenges from ``mscep_admin`` and the Jamf webhook.

They are users of the gateway's enrollment credentials (:attr:`gateway.door.Door.credentials`,
table ``enrollment_credentials``), scoped to the SCEP configuration, like EST's Basic
users: one scrypt hash per user, lockout after repeated wrong passwords held in the
store (so every worker and replica counts the same failures), audited by the core.
Admins made before that lived in ``scep_secrets``; ``migrations/scep_0003`` moved them.

What stays SCEP's own, and why:

- the static challenge (:func:`.challenge.set_static_challenge`, ``scep_secrets``) is a
  password every device of the configuration sends, in a PKCSReq from a device nobody
  has authenticated yet. As a shared secret of the credentials module, each wrong
  challenge would count against it: a handful of misconfigured or hostile devices
  would lock out the whole fleet (and where ``challenge_verifiers`` asks ``static``
  before ``dynamic``, so would every valid one-time challenge, each one a wrong static
  challenge first). The module's ``NO_LOCKOUT`` avoids the lock but still
  writes a failure count for every wrong challenge, an unauthenticated write (a
  SQLite write lock) per guess, and it would ask the store for the hashes on every
  PKCSReq instead of serving them from the generation-keyed cache. A wrong static
  challenge is already answered with a FAILURE CertRep and audited; it stays put.
- one-time challenges are not credentials: single-use, time-limited tokens (SHA-256 in
  ``scep_challenges``), consumed by compare-and-set.

The ``mscep_admin`` page and the webhook answer a locked admin exactly as a wrong
password (401, same challenge, same text): the answer must not tell a guesser which
user names exist or that it reached the limit. The lockout is in the audit log
(``credential_lockout``) and an operator ends it by setting a new password.
"""

from __future__ import annotations

import datetime as dt

from gateway.door import CredentialInfo, Credentials, IssuedCredential, LockoutPolicy
from gateway.errors import NotFound

__all__ = ["ADMIN_LOCKOUT", "LABEL", "set_challenge_admin", "remove_challenge_admin", "authenticate_admin"]

ADMIN_LOCKOUT = LockoutPolicy(max_failures=5, period=dt.timedelta(minutes=15))
"""Five wrong passwords in a row lock a challenge admin for 15 minutes (a success
resets the count). The admin is an MDM or an operator with a stored password: it has
no reason to miss five times, a guesser does."""

LABEL = "challenge admin"
"""The label of SCEP's users in credential listings (mscep_admin and the webhook)."""


async def set_challenge_admin(credentials: Credentials, config_id: str, username: str,
                              password: str | None = None, *, actor: str | None = None) -> IssuedCredential:
    """Create the admin, or give an existing one a new password (which also ends a
    lockout). ``password`` is generated when None; the result carries it once, the
    store only its hash."""
    return await credentials.create_user(config_id, username, password, label=LABEL, actor=actor, replace=True)


async def remove_challenge_admin(credentials: Credentials, config_id: str, username: str, *,
                                 actor: str | None = None) -> bool:
    """Delete the admin; False when the configuration has no admin of that name."""
    found = await credentials.find_user(config_id, username)
    if found is None:
        return False
    try:
        await credentials.delete(config_id, found.id, actor=actor)
    except NotFound:  # deleted by another process meanwhile
        return False
    return True


async def authenticate_admin(credentials: Credentials, config_id: str, authorization: str | None) -> CredentialInfo:
    """The admin in an ``Authorization: Basic`` header (RFC 7617, UTF-8), or
    Unauthorized (:class:`gateway.door.LockedOut` while locked): parsed by
    :mod:`gateway.edge.basic`, checked with :data:`ADMIN_LOCKOUT`."""
    return await credentials.verify_basic(config_id, authorization, lockout=ADMIN_LOCKOUT)
