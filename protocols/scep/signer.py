"""The pkiMessage signer's certificate, read leniently.

A PKCSReq is signed with a self-signed certificate the device made for the occasion: it
only carries the key the request is signed with and the CertRep is encrypted to. Old
clients write such certificates carelessly (a version field of 3 or a negative number,
negative serials), which ``cryptography`` refuses; OpenSSL-based SCEP servers read them.
So the signer is read here from its TBSCertificate (asn1crypto, structure only): key,
serial, issuer, subject and key identifier are what SCEP needs. The strict parse is
kept when it works (:attr:`SignerCertificate.strict`): only a certificate that parses
strictly can be one this gateway issued, so only such a signer can renew.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from asn1crypto import cms, core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from gateway.edge.cms import names_match


@dataclass(frozen=True)
class SignerCertificate:
    """What SCEP reads from a certificate in a pkiMessage."""

    der: bytes
    spki: bytes  # SubjectPublicKeyInfo, DER
    serial_number: int
    issuer: asn1_x509.Name
    subject: asn1_x509.Name
    key_identifier: bytes | None
    strict: x509.Certificate | None  # None: cryptography refuses it (e.g. version 3)

    @classmethod
    def load(cls, der: bytes) -> SignerCertificate:
        """Raises ValueError (or TypeError) when even the structure is not a certificate."""
        cert = asn1_x509.Certificate.load(der, strict=True)
        tbs = cert["tbs_certificate"]
        if not isinstance(tbs["version"], core.Integer):
            raise ValueError("no version field")
        spki = tbs["subject_public_key_info"].dump()
        serial = int(tbs["serial_number"].native)
        issuer, subject = tbs["issuer"], tbs["subject"]
        _ = issuer.native, subject.native  # decoded now: bad bytes fail here
        try:
            key_identifier = cert.key_identifier
        except (ValueError, TypeError, KeyError):  # broken extensions: no identifier
            key_identifier = None
        try:
            strict: x509.Certificate | None = x509.load_der_x509_certificate(der)
        except (ValueError, x509.InvalidVersion):
            strict = None
        return cls(der, spki, serial, issuer, subject, key_identifier, strict)

    def public_key(self) -> PublicKeyTypes:
        """The signer's key (raises UnsupportedAlgorithm or ValueError like cryptography)."""
        return serialization.load_der_public_key(self.spki)

    @property
    def key_sha256(self) -> str:
        """SHA-256 of the key's canonical SubjectPublicKeyInfo (what transactions store)."""
        spki = self.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
        return hashlib.sha256(spki).hexdigest()

    @property
    def self_issued(self) -> bool:
        return names_match(self.issuer, self.subject)

    def issuer_and_serial(self) -> cms.IssuerAndSerialNumber:
        return cms.IssuerAndSerialNumber({"issuer": self.issuer, "serial_number": self.serial_number})

    def matches(self, sid: core.Choice) -> bool:
        """Does this certificate answer to a SignerIdentifier?"""
        if sid.name == "issuer_and_serial_number":
            ias = sid.chosen
            return bool(ias["serial_number"].native == self.serial_number and names_match(ias["issuer"], self.issuer))
        if sid.name == "subject_key_identifier":
            return self.key_identifier is not None and sid.chosen.native == self.key_identifier
        return False
