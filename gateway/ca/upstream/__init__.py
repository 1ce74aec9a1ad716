"""Connectors to CAs the gateway fronts: it is their client, they sign.

Each connector is a backend kind (:mod:`gateway.ca.kinds`) behind the same
:class:`gateway.ca.backend.CABackend` interface as the local CA, so any protocol
configuration issues through it unchanged: ``est`` (RFC 7030 simpleenroll to another
EST server). Secrets they need (a password, a client key) are sealed in the CA record's
``backend_settings`` under the CA passphrase. CRLs and OCSP for such a CA are the
upstream's own (the URLs its certificates carry); a request the upstream holds is
polled by the core until it is decided.
"""
