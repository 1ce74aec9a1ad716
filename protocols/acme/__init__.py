"""ACME server (RFC 8555) with EAB, ARI (RFC 9773), profiles, and real challenge validation.

The package tree is the design: ``wfe/`` is the web front end (one module per
resource family), ``validation/`` the validation authority (one module per
challenge type), ``jws``/``nonces``/``problems`` the wire layer, ``store`` and
``schema`` the ACME tables, ``eab``/``keyring`` external account keys, ``ari``
renewal information, ``identifiers`` names and policy, ``settings`` a
configuration's options. Certificates are issued only through the core Authority.
"""

from .adapter import AcmeAdapter

ADAPTER = AcmeAdapter()

__all__ = ["ADAPTER", "AcmeAdapter"]
