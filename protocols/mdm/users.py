"""MDM credentials: the user name and password an MDM platform authenticates with.

Enrollment credentials of the core (``door.credentials``: scrypt hashes, the password
generated and shown once, lockout after repeated failures held in the store), with the
user-name rule MDM consoles expect: 2-18 characters, lower-case letters, digits, ``-``
and ``_``. A call authenticates with HTTP Basic or a WS-Security UsernameToken whose
password is sent as text (``PasswordDigest`` needs the password in clear at the server,
which is never kept); both ride on TLS only, as the service listens on HTTPS only.
"""

from __future__ import annotations

import re

from gateway.door import DEFAULT_LOCKOUT, CredentialInfo, Credentials, IssuedCredential, LockoutPolicy
from gateway.errors import BadRequest

USERNAME = re.compile(r"^[a-z0-9_-]{2,18}$")
LOCKOUT: LockoutPolicy = DEFAULT_LOCKOUT
"""5 consecutive failures lock a credential for 15 minutes."""


def check_mdm_username(name: str) -> str:
    if not USERNAME.match(name):
        raise BadRequest("an MDM user name is 2-18 characters: lower-case letters, digits, '-' and '_'")
    return name


async def create_credential(credentials: Credentials, config_id: str, username: str, *,
                            actor: str | None, password: str | None = None) -> IssuedCredential:
    """A new credential; the password generated unless given, returned once."""
    return await credentials.create_user(config_id, check_mdm_username(username), password,
                                         actor=actor, label="mdm")


async def authenticate(credentials: Credentials, config_id: str, username: str, password: str) -> CredentialInfo:
    """The credential, or Unauthorized / LockedOut (counted against it)."""
    return await credentials.verify(config_id, username, password, lockout=LOCKOUT)
