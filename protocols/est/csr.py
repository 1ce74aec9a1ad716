"""What EST reads from a PKCS#10 request beyond what the core checks.

The core parses the CSR, verifies its self-signature and applies the profile.
EST adds: the attributes it understands (challengePassword for tls-unique
linking, the serverkeygen encryption attributes, SMIMECapabilities), the end
entity name, the re-enrollment identity comparison (RFC 7030 section 4.2.2), and
an explicit refusal of SHA-1/MD5 signatures so the reason is clear on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import core
from asn1crypto import csr as acsr
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from gateway.ca.builder import load_csr
from gateway.ca.overrides import format_san
from gateway.errors import BadCSR, BadRequest, BadSignature, Forbidden

CHALLENGE_PASSWORD = "1.2.840.113549.1.9.7"
SMIME_CAPABILITIES = "1.2.840.113549.1.9.15"
DECRYPT_KEY_ID = "1.2.840.113549.1.9.16.2.37"  # id-aa-decryptKeyID (symmetric, RFC 4108)
ASYMM_DECRYPT_KEY_ID = "1.2.840.113549.1.9.16.2.54"  # id-aa-asymmDecryptKeyID (RFC 7030)
CHANGE_SUBJECT_NAME = "1.3.6.1.5.5.7.7.36"  # id-cmc-changeSubjectName (RFC 6402)
WEAK_HASHES = (hashes.SHA1, hashes.MD5)


class _Values(core.SetOf):  # type: ignore[misc]  # asn1crypto is untyped
    _child_spec = core.Any


class _Attribute(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped
    _fields = [("type", core.ObjectIdentifier), ("values", _Values)]


class _Attributes(core.SetOf):  # type: ignore[misc]  # asn1crypto is untyped
    _child_spec = _Attribute


@dataclass(frozen=True)
class Request:
    """A parsed EST enrollment request: the CSR plus its raw attributes (OID -> DER values)."""

    csr: x509.CertificateSigningRequest
    der: bytes
    attributes: dict[str, list[bytes]]

    def attribute(self, oid: str) -> list[bytes]:
        return self.attributes.get(oid, [])


def parse(der: bytes) -> Request:
    """Parse a DER PKCS#10 strictly; garbage is a 400, never a 500."""
    csr = load_csr(der)
    try:
        info = acsr.CertificationRequest.load(der, strict=True)["certification_request_info"]
        # [0] IMPLICIT Attributes, read as a plain SET OF with every value kept as raw DER.
        raw = b"\x31" + info["attributes"].dump()[1:]
        attributes: dict[str, list[bytes]] = {}
        for attr in _Attributes.load(raw, strict=True):
            attributes.setdefault(attr["type"].dotted, []).extend(v.dump() for v in attr["values"])
    except (ValueError, TypeError, KeyError):
        raise BadCSR("the CSR's attributes are malformed") from None
    return Request(csr, der, attributes)


def challenge_password(request: Request) -> str | None:
    values = request.attribute(CHALLENGE_PASSWORD)
    if not values:
        return None
    if len(values) != 1:
        raise BadCSR("the CSR carries more than one challengePassword")
    try:
        value = core.Asn1Value.load(values[0], strict=True).native
    # asn1crypto has no native form for a REAL or INSTANCE OF (AttributeError) or an ENUMERATED
    # (TypeError), and an empty BIT STRING inside a constructed value raises IndexError
    except (ValueError, TypeError, AttributeError, IndexError):
        raise BadCSR("the CSR's challengePassword is malformed") from None
    if not isinstance(value, str):
        raise BadCSR("the CSR's challengePassword is not a string")
    return value


def octet_attribute(request: Request, oid: str) -> bytes | None:
    """A single-valued OCTET STRING attribute (the decrypt key identifiers)."""
    values = request.attribute(oid)
    if not values:
        return None
    try:
        value = core.OctetString.load(values[0], strict=True).native
    except ValueError:
        raise BadCSR(f"attribute {oid} is not an OCTET STRING") from None
    if not value:
        raise BadCSR(f"attribute {oid} is empty")
    return bytes(value)


def smime_capabilities(request: Request) -> list[str] | None:
    """Capability OIDs the client lists (RFC 8551), None when the attribute is absent."""
    values = request.attribute(SMIME_CAPABILITIES)
    if not values:
        return None
    try:
        return [cap["capability_id"].dotted for cap in _Capabilities.load(values[0], strict=True)]
    except (ValueError, TypeError, KeyError, IndexError):
        raise BadCSR("the CSR's SMIMECapabilities attribute is malformed") from None


class _Capability(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped
    _fields = [("capability_id", core.ObjectIdentifier), ("parameters", core.Any, {"optional": True})]


class _Capabilities(core.SequenceOf):  # type: ignore[misc]  # asn1crypto is untyped
    _child_spec = _Capability


def refuse_weak_signature(csr: x509.CertificateSigningRequest) -> None:
    try:
        algorithm = csr.signature_hash_algorithm
    except Exception:  # an algorithm cryptography does not know: the core's PoP check decides
        return
    if isinstance(algorithm, WEAK_HASHES):
        raise BadSignature(f"CSRs signed with {algorithm.name.upper()} are refused; sign with SHA-256 or better")


def subject_alt_names(csr: x509.CertificateSigningRequest | x509.Certificate) -> list[x509.GeneralName]:
    try:
        return list(csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def entity_name(csr: x509.CertificateSigningRequest) -> str:
    """The end entity a request is for: its CN, else its serialNumber, subject or first SAN."""
    for oid in (NameOID.COMMON_NAME, NameOID.SERIAL_NUMBER):
        values = csr.subject.get_attributes_for_oid(oid)
        if values and isinstance(values[0].value, str) and values[0].value:
            return values[0].value
    if len(csr.subject):
        return csr.subject.rfc4514_string()
    for name in subject_alt_names(csr):
        try:
            return format_san(name)
        except BadRequest:
            continue
    raise BadCSR("the CSR names neither a subject nor a subject alternative name")


def _san_set(names: list[x509.GeneralName]) -> set[tuple[type, object]]:
    out = set()
    for name in names:
        value = name.value
        if isinstance(name, (x509.DNSName, x509.RFC822Name)):
            value = value.lower()
        elif isinstance(name, x509.OtherName):
            value = (name.type_id.dotted_string, name.value)
        elif isinstance(name, x509.DirectoryName):
            value = name.value.public_bytes()
        out.add((type(name), value))
    return out


def check_same_identity(request: Request, current: x509.Certificate, *, cn_as_dns: bool) -> None:
    """RFC 7030 4.2.2: a re-enrollment keeps the subject and SANs of the certificate it renews.

    The one allowance is a DNS SAN the profile adds from the CN (``cn_as_dns``):
    the client need not repeat what the CA added itself.
    """
    if request.attribute(CHANGE_SUBJECT_NAME):
        raise Forbidden("changing the subject on re-enrollment (ChangeSubjectName) is not supported")
    csr = request.csr
    if csr.subject != current.subject:
        raise Forbidden(
            f"the CSR subject {csr.subject.rfc4514_string()!r} differs from the certificate being "
            f"renewed ({current.subject.rfc4514_string()!r})"
        )
    requested, issued = _san_set(subject_alt_names(csr)), _san_set(subject_alt_names(current))
    if requested == issued:
        return
    if cn_as_dns and requested <= issued:
        added = {
            (x509.DNSName, str(a.value).lower())
            for a in current.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        }
        if issued - requested <= added:
            return
    raise Forbidden("the CSR's subject alternative names differ from the certificate being renewed")
