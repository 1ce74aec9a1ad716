"""CMS SignedData as SCEP uses it, over :mod:`gateway.edge.cms`.

The CMS work is shared edge code; what is SCEP's here is how its failures look on the
wire: a structure that does not parse is a :class:`MalformedMessage` (HTTP 400, nothing
to address a CertRep to), an algorithm the gateway does not do is ``badAlg``, a
signature or messageDigest that does not verify is ``badMessageCheck``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from gateway.edge import cms as edge
from gateway.edge.cms import (
    DIGESTS,
    Signer,
    attribute,
    attribute_values,
    issued_by,
    issuer_and_serial,
    matches_identifier,
    self_issued,
    signed_attributes_der,
)

from .types import FailInfo, MalformedMessage, ScepFailure

__all__ = [
    "DIGESTS", "Signer", "attribute", "attribute_values", "certificates_of_degenerate", "degenerate_certificates",
    "embedded_certificates", "hash_for", "issued_by", "issuer_and_serial", "load_content_info",
    "matches_identifier", "scep_errors", "self_issued", "sign", "signed_attributes_der", "verify_signer_info",
]


@contextmanager
def scep_errors() -> Iterator[None]:
    """Edge CMS errors as SCEP failures (see the module docstring)."""
    try:
        yield
    except edge.MalformedCms as exc:
        raise MalformedMessage(exc.detail) from exc
    except edge.UnsupportedAlgorithm as exc:
        raise ScepFailure(FailInfo.BAD_ALG, exc.detail) from exc
    except (edge.VerificationFailed, edge.DecryptionFailed) as exc:
        raise ScepFailure(FailInfo.BAD_MESSAGE_CHECK, exc.detail) from exc


def load_content_info(data: bytes, what: str = "pkiMessage") -> cms.ContentInfo:
    """Parse a DER (or BER) ContentInfo strictly: trailing bytes or bad structure raise."""
    with scep_errors():
        return edge.load_content_info(data, what)


def hash_for(digest_name: str) -> hashes.HashAlgorithm:
    """The hash for an asn1crypto digest algorithm name; unknown or weak ones are badAlg."""
    with scep_errors():
        return edge.hash_for(digest_name)


def embedded_certificates(signed_data: cms.SignedData) -> list[x509.Certificate]:
    with scep_errors():
        return edge.embedded_certificates(signed_data)


def verify_signer_info(signer_info: cms.SignerInfo, cert: x509.Certificate | object, content: bytes) -> None:
    """RFC 5652 section 5.4 over a pkiMessage's one SignerInfo (``cert``: the signer's
    certificate or its public key)."""
    with scep_errors():
        edge.verify_signer_info(signer_info, cert, content, "pkiMessage")


def sign(
    content: bytes,
    signer: Signer,
    *,
    digest_name: str,
    attributes: Sequence[cms.CMSAttribute],
    certificates: Iterable[x509.Certificate],
    content_type: str = "data",
    signing_time: dt.datetime,
) -> bytes:
    """A DER SignedData over ``content`` with the standard plus the given signed attributes."""
    with scep_errors():
        return edge.sign(
            content, signer, digest_name=digest_name, signing_time=signing_time, attributes=attributes,
            certificates=certificates, content_type=content_type,
        )


def degenerate_certificates(certs: Iterable[x509.Certificate], crls: Iterable[bytes] = ()) -> bytes:
    """A certs-only SignedData (RFC 8894 section 3.4): no signers, no content."""
    return edge.certificates_only(certs, crls)


def certificates_of_degenerate(data: bytes) -> list[x509.Certificate]:
    """The certificates of a certs-only SignedData (for tests and GetNextCACert clients)."""
    with scep_errors():
        return edge.certificates_of_degenerate(data)
