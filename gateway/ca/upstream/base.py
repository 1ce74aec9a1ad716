"""What every upstream connector shares: the CA certificate and chain kept in its record,
its credentials opened from the record's sealed settings, one HTTPS pool, and revocation
that stays local where the upstream's protocol has none."""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from ...errors import Unavailable
from ...sealing import Sealer
from ...store.records import CARecord
from ..backend import CABackend, RevocationReason
from ..pem import load_certificate, load_certificates
from .http import open_credentials


class UpstreamCA(CABackend):
    """A CA another server signs for over HTTPS (``url`` in its settings)."""

    protocol = "the upstream's protocol"
    """Named in the local-only revocation warning (``EST``, ``MS-WSTEP``)."""
    revoke_there = "the upstream CA's operator must revoke it there"

    def __init__(self, record: CARecord, sealer: Sealer, *, peer: str, url: str) -> None:
        if record.certificate_pem is None:
            raise Unavailable(f"CA {record.id} has no certificate")
        if not url.startswith("https://"):
            raise Unavailable(f"CA {record.id}: the {peer} URL must be https://")
        self.id = record.id
        self.url = url
        self._certificate = load_certificate(record.certificate_pem)
        self._issuers = tuple(load_certificates(record.chain_pem))
        self._username, self._password, self._http = open_credentials(
            record.id, sealer, record.backend_settings, label=f"CA {record.id}", peer=f"{peer} {url}")

    async def revoke(self, serial: int, reason: RevocationReason,
                     invalidity_date: dt.datetime | None = None) -> str:
        """Nothing can be sent: the core records the revocation and audits this answer
        (``revoke_not_upstream``), so that an operator finds what to revoke at the upstream."""
        return (f"revoked here only: the upstream was not told ({self.protocol} has no revocation); "
                f"{self.revoke_there}")

    async def chain(self) -> tuple[x509.Certificate, ...]:
        return (self._certificate, *self._issuers)

    async def close(self) -> None:
        await self._http.close()
