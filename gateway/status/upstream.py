"""Where an upstream CA publishes its CRL and OCSP: read from the certificates it issued.

A CA behind an upstream connector (ACME, EST, AD CS) signs with a key the gateway does
not hold, so its revocation status is the upstream's: the gateway's ``/crl/<ca>.crl``
redirects to the CRL distribution point and ``/ocsp/<ca>/<request>`` (GET) to the OCSP
responder named in the newest certificate issued through that CA. A POSTed OCSP request
is answered ``unauthorized`` (RFC 6960 2.3: this responder is not authoritative), as
clients do not follow redirects with a body.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import AuthorityInformationAccessOID

from ..store import Store
from ..store.records import CertificateFilter

CACHE_SECONDS = 300.0
"""How long one CA's URLs are kept before the newest certificate is read again."""


@dataclass(frozen=True)
class StatusUrls:
    crl: str | None
    ocsp: str | None


def urls_in(cert: x509.Certificate) -> StatusUrls:
    """The first HTTP CRL distribution point and OCSP responder a certificate names."""
    crl = ocsp = None
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        crl = next((n.value for p in points for n in (p.full_name or ())
                    if isinstance(n, x509.UniformResourceIdentifier) and n.value.startswith("http")), None)
    except x509.ExtensionNotFound:
        pass
    try:
        access = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        ocsp = next((d.access_location.value for d in access
                     if d.access_method == AuthorityInformationAccessOID.OCSP
                     and isinstance(d.access_location, x509.UniformResourceIdentifier)
                     and d.access_location.value.startswith("http")), None)
    except x509.ExtensionNotFound:
        pass
    return StatusUrls(crl, ocsp)


class UpstreamStatus:
    """The upstream's status URLs per CA id, cached for :data:`CACHE_SECONDS`."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cache: dict[str, tuple[float, StatusUrls]] = {}

    async def urls(self, ca_id: str) -> StatusUrls:
        hit = self._cache.get(ca_id)
        if hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        async with self._store.read() as q:
            newest = await q.certificates.list(CertificateFilter(ca_id=ca_id), limit=1)
        found = StatusUrls(None, None)
        if newest:
            try:
                found = urls_in(x509.load_der_x509_certificate(newest[0].der))
            except ValueError:  # a stored certificate that does not parse: no URLs, not a crash
                pass
        if found.crl or found.ocsp:  # until a certificate names them, look again next time
            self._cache[ca_id] = (time.monotonic(), found)
        return found
