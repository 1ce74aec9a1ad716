"""Templates from settings and profiles: flags, key attributes and schema 3 references, and
settings that are refused with a message naming the key."""

from __future__ import annotations

import tomllib

import pytest

from gateway.errors import ConfigError
from gateway.profiles import parse_profile
from protocols.windows import templates as T
from protocols.windows.adapter import PROFILES
from protocols.windows.settings import parse_settings, parse_template

from .helpers import XCEP, WindowsServer, assert_valid, get_policies_body

EC_ONLY = """
name = "ec-only"
validity = "P30D"
key_usage = ["digital_signature"]
extended_key_usage = ["client_auth"]
[key_policy]
allowed = ["EC-P384", "EC-P256"]
"""


def profile(text: str):  # type: ignore[no-untyped-def]
    return parse_profile(tomllib.loads(text), "test")


def template(**kw: object):  # type: ignore[no-untyped-def]
    raw = {"name": "T", "profile": "p", "oid": "1.3.6.1.4.1.311.21.8.1.2.3", **kw}
    return parse_template(raw, "test", ["p"])


def test_a_computer_template_requests_machine_flags_and_an_rsa_legacy_key() -> None:
    t = T.build_template(template(machine=True), profile(PROFILES["windows-computer"]))
    assert t.general_flags & T.GENERAL_MACHINE_TYPE and t.general_flags & T.GENERAL_AUTO_ENROLLMENT
    assert t.enrollment_flags & T.AUTO_ENROLLMENT
    assert t.enrollment_flags & T.ALLOW_PREVIOUS_APPROVAL_KEYBASEDRENEWAL_VALIDATE_REENROLLMENT
    assert t.subject_name_flags & T.ENROLLEE_SUPPLIES_SUBJECT
    assert (t.min_key_bits, t.key_spec, t.key_algorithm) == (2048, T.AT_KEYEXCHANGE, T.RSA_OID)
    assert t.providers == T.LEGACY_PROVIDERS and t.hash_algorithm is None
    assert t.validity_seconds == 365 * 86400 and t.renewal_seconds == 42 * 86400
    assert {e.oid for e in t.extensions} == {T.TEMPLATE_INFORMATION, "2.5.29.37", "2.5.29.15"}


def test_directory_subjects_and_no_autoenrollment_change_the_flags() -> None:
    t = T.build_template(template(subject="directory", autoenroll=False, key_based_renewal=False),
                         profile(PROFILES["windows-computer"]))
    assert not t.subject_name_flags & T.ENROLLEE_SUPPLIES_SUBJECT
    assert t.subject_name_flags & T.SUBJECT_ALT_REQUIRE_UPN
    assert not t.enrollment_flags & T.AUTO_ENROLLMENT and not t.general_flags & T.GENERAL_AUTO_ENROLLMENT
    assert not t.enrollment_flags & T.ALLOW_PREVIOUS_APPROVAL_KEYBASEDRENEWAL_VALIDATE_REENROLLMENT


def test_an_ec_only_profile_needs_schema_3_and_gets_cng_references() -> None:
    with pytest.raises(ConfigError, match="schema 3"):
        T.build_template(template(schema=2), profile(EC_ONLY))
    t = T.build_template(template(schema=3, hash="sha384"), profile(EC_ONLY))
    assert (t.min_key_bits, t.key_algorithm[1], t.key_spec) == (256, "ECDSA_P256", T.AT_SIGNATURE)
    assert t.hash_algorithm == T.HASH_OIDS["sha384"] and t.providers == T.KSP_PROVIDERS


def test_schema_1_carries_the_template_name_extension() -> None:
    t = T.build_template(template(schema=1), profile(PROFILES["windows-computer"]))
    assert {e.oid for e in t.extensions} >= {T.TEMPLATE_NAME}
    assert T.TEMPLATE_INFORMATION not in {e.oid for e in t.extensions}


@pytest.mark.parametrize(("raw", "key"), [
    ({"name": "T", "profile": "p"}, "oid"),
    ({"name": "T", "profile": "other", "oid": "1.2.3"}, "profile"),
    ({"name": "T", "profile": "p", "oid": "1.2.3", "schema": 4}, "schema"),
    ({"name": "T", "profile": "p", "oid": "not an oid"}, "oid"),
    ({"name": "T", "profile": "p", "oid": "1.2.3", "colour": "red"}, "unknown keys colour"),
    ({"name": "T", "profile": "p", "oid": "1.2.3", "renewal_period": "soon"}, "renewal_period"),
    ({"name": "T", "profile": "p", "oid": "1.2.3", "major_revision": 0}, "major_revision"),
])
def test_bad_template_settings_are_refused_naming_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        parse_template(raw, "test", ["p"])


def test_bad_configuration_settings_are_refused() -> None:
    good = {"name": "T", "profile": "p", "oid": "1.2.3"}
    with pytest.raises(ConfigError, match="templates"):
        parse_settings({"templates": []}, "w", "ca", ["p"])
    with pytest.raises(ConfigError, match="share a name"):
        parse_settings({"templates": [good, dict(good, oid="1.2.4", name="t")]}, "w", "ca", ["p"])
    with pytest.raises(ConfigError, match="auth"):
        parse_settings({"templates": [good], "auth": ["ntlm"]}, "w", "ca", ["p"])
    with pytest.raises(ConfigError, match="ca_name"):
        parse_settings({"templates": [good], "ca_name": "a/b"}, "w", "ca", ["p"])


async def test_a_schema_3_template_over_the_wire_references_its_hash_and_key_oids(windows: WindowsServer) -> None:
    door = windows.gw.door("windows")
    rec = await door.configuration("windows")
    settings = dict(rec.settings)
    settings["templates"] = [dict(settings["templates"][0], schema=3, hash="sha512"), settings["templates"][1]]
    await door.update_configuration("windows", settings=settings)
    rep = await windows.post(windows.dev["cep"]["username"], get_policies_body(security=windows.security()))
    assert rep.status == 200
    assert_valid(rep.payload)
    ns = f"{{{XCEP}}}"
    oids = {o.findtext(f"{ns}oIDReferenceID"): (o.findtext(f"{ns}value"), o.findtext(f"{ns}group"))
            for o in rep.payload.iter(f"{ns}oID")}
    attrs = next(a for a in rep.payload.iter(f"{ns}attributes") if a.findtext(f"{ns}commonName") == "GatewayUser")
    assert attrs.findtext(f"{ns}policySchema") == "3"
    assert oids[attrs.findtext(f"{ns}hashAlgorithmOIDReference")] == ("2.16.840.1.101.3.4.2.3", "1")
    assert oids[attrs.findtext(f"{ns}privateKeyAttributes/{ns}algorithmOIDReference")] == ("1.2.840.113549.1.1.1", "3")
    assert attrs.findtext(f"{ns}privateKeyAttributes/{ns}cryptoProviders/{ns}provider") == "Microsoft Software Key Storage Provider"


async def test_the_certificate_gets_the_policys_template_extension_not_the_requests(windows: WindowsServer) -> None:
    """The Windows profiles list the template extensions so the CES can set them; a CSR's own
    copy (here claiming revision 999.7) is still dropped: the policy's revision is issued."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    from protocols.windows import wstep
    from protocols.windows.settings import WindowsSettings

    from .wstep_helpers import rst_body

    settings = WindowsSettings.of(await windows.gw.door("windows").configuration("windows"))
    user = settings.template("GatewayUser")
    assert user is not None
    forged = x509.UnrecognizedExtension(x509.ObjectIdentifier(T.TEMPLATE_INFORMATION), T.template_information(
        parse_template({"name": "X", "profile": "p", "oid": user.oid, "major_revision": 999, "minor_revision": 7},
                       "test", ["p"])))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dora")]))
           .add_extension(forged, critical=False).sign(key, hashes.SHA256()))
    rep = await windows.post(windows.dev["ces"]["username"], rst_body(
        token=csr.public_bytes(serialization.Encoding.DER), security=windows.security()))
    assert rep.status == 200, rep.body[:500]
    answer = wstep.read_rstrc(rep.payload)
    assert answer.certificate is not None
    cert = x509.load_der_x509_certificate(answer.certificate)
    ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(T.TEMPLATE_INFORMATION))
    assert ext.value.public_bytes() == T.template_information(user)  # revision 100.0, from the policy
