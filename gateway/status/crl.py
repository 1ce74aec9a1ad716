"""Full CRL (RFC 5280 v2) encoding: pure bytes in, bytes out, no store access.

The caller decides which certificates are listed and which CRL number comes
next; this module only turns that decision into a signed DER CRL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from asn1crypto import core
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ObjectIdentifier

from ..ca.backend import RevocationReason, RevokedEntry
from ..ca.signer import IssuerKey, sign_crl
from ..errors import BadRequest

EXPIRED_CERTS_ON_CRL = ObjectIdentifier("2.5.29.60")
"""X.509 expiredCertsOnCRL: revoked certificates expired after this time stay listed."""


__all__ = ["RevokedEntry", "build_crl"]


def build_crl(
    *,
    issuer_cert: x509.Certificate,
    issuer_key: IssuerKey,
    entries: Sequence[RevokedEntry],
    crl_number: int,
    this_update: dt.datetime,
    next_update: dt.datetime,
    expired_certs_on_crl: dt.datetime | None,
    idp_url: str | None = None,
) -> bytes:
    """Sign a full CRL for ``issuer_cert`` and return it as DER."""
    if crl_number < 0:
        raise BadRequest("CRL number must not be negative")
    if next_update <= this_update:
        raise BadRequest("CRL nextUpdate must be later than thisUpdate")
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_cert.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(_authority_key_identifier(issuer_cert), critical=False)
    )
    if expired_certs_on_crl is not None:
        value = core.GeneralizedTime(_utc_seconds(expired_certs_on_crl)).dump()
        ext = x509.UnrecognizedExtension(EXPIRED_CERTS_ON_CRL, value)
        builder = builder.add_extension(ext, critical=False)
    if idp_url is not None:
        idp = x509.IssuingDistributionPoint(
            full_name=[x509.UniformResourceIdentifier(idp_url)],
            relative_name=None,
            only_contains_user_certs=False,
            only_contains_ca_certs=False,
            only_some_reasons=None,
            indirect_crl=False,
            only_contains_attribute_certs=False,
        )
        builder = builder.add_extension(idp, critical=True)  # RFC 5280 5.2.5
    for entry in entries:
        builder = builder.add_revoked_certificate(_revoked_certificate(entry))
    crl = sign_crl(builder, issuer_key)
    return crl.public_bytes(Encoding.DER)


def parse_crl(der: bytes) -> x509.CertificateRevocationList:
    """Load a DER CRL, turning garbage into a client-safe :class:`BadRequest`."""
    try:
        return x509.load_der_x509_crl(der)
    except (ValueError, TypeError) as exc:
        raise BadRequest("not a DER-encoded CRL") from exc


def _revoked_certificate(entry: RevokedEntry) -> x509.RevokedCertificate:
    builder = (
        x509.RevokedCertificateBuilder()
        .serial_number(entry.serial)
        .revocation_date(entry.revoked_at)
    )
    # RFC 5280 5.3.1: the reason code "unspecified" SHOULD be expressed by omission.
    if entry.reason != RevocationReason.unspecified:
        builder = builder.add_extension(x509.CRLReason(entry.reason.x509_flag), critical=False)
    if entry.invalidity_date is not None:
        builder = builder.add_extension(x509.InvalidityDate(entry.invalidity_date), critical=False)
    return builder.build()


def _authority_key_identifier(issuer_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """Prefer the issuer's own SKI so relying parties can match it byte for byte."""
    try:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_cert.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _utc_seconds(value: dt.datetime) -> dt.datetime:
    """DER GeneralizedTime wants UTC without fractional seconds."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).replace(microsecond=0)
