"""CSR attributes from label settings: plain OID lists (RFC 7030), extension values and
templates (RFC 9908), checked against the published examples byte for byte."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from conformance.harness import SHARED_CAPTURES, in_ci
from gateway.errors import BadRequest
from protocols.est.csrattrs import CRI_TEMPLATE, EXTENSION_REQ_TEMPLATE, build_csrattrs

from .helpers import csrattrs_items

CAPTURES = SHARED_CAPTURES / "est"


def capture(name: str) -> bytes:
    path = CAPTURES / name
    if not path.exists():
        if in_ci():
            pytest.fail(f"shared capture {name} not present (CI runs with ../shared beside the clone)")
        pytest.skip(f"shared capture {name} not present")
    return path.read_bytes()


def test_rfc7030_a2_plain_oid_list_reproduced_exactly() -> None:
    spec = {"oids": ["macAddress", "challengePassword", "secp384r1", "sha384"]}
    assert build_csrattrs(spec) == capture("rfc7030/A2-csrattrs-response.der")
    assert base64.b64encode(build_csrattrs(spec)) == capture("rfc7030/A2-csrattrs-response.b64").strip()


def test_rfc7030_4_5_2_mixed_example_reproduced_exactly() -> None:
    spec = {"items": [
        "challengePassword",
        {"type": "id-ecPublicKey", "values": [{"oid": "secp384r1"}]},
        {"type": "extensionRequest", "values": [{"oid": "macAddress"}]},
        "ecdsa-with-SHA384",
    ]}
    assert build_csrattrs(spec) == capture("rfc7030/4.5.2-csrattrs-example.der")


def test_libest_attributes_are_served_verbatim_from_der() -> None:
    raw = capture("libest/static_csrattrs.der")
    assert build_csrattrs({"der": base64.b64encode(raw).decode()}) == raw


def test_rfc9908_extension_values_and_template(tmp_path: Path) -> None:
    ku = base64.b64encode(bytes.fromhex("03020388")).decode()  # digitalSignature, keyAgreement
    der = build_csrattrs({
        "extensions": [{"oid": "keyUsage", "critical": True, "value": ku}],
        "template": {
            "subject": [{"type": "commonName"}, {"type": "organizationalUnitName", "value": "myDept"},
                        {"type": "organizationalUnitName", "value": "myGroup"}],
            "key": "EC-P256",
            "extensions": [{"oid": "subjectAltName"}, {"oid": "keyUsage", "critical": True, "value": ku},
                           {"oid": "extKeyUsage"}],
        },
    })
    assert der is not None
    items = csrattrs_items(der)
    assert [oid for oid, _ in items] == ["1.2.840.113549.1.9.14", CRI_TEMPLATE]
    # id-ExtensionReq holds exactly one complete Extensions value (RFC 9908 section 3.2).
    from asn1crypto import x509 as ax509

    [extensions] = items[0][1]
    [key_usage] = ax509.Extensions.load(extensions)
    assert key_usage["extn_id"].native == "key_usage" and key_usage["critical"].native is True
    (tmp_path / "attrs.der").write_bytes(der)
    dump = subprocess.run(["openssl", "asn1parse", "-inform", "DER", "-in", str(tmp_path / "attrs.der"), "-i"],
                          capture_output=True, text=True, check=True).stdout
    assert "UTF8STRING        :myDept" in dump and "prime256v1" in dump
    assert EXTENSION_REQ_TEMPLATE in dump  # values to fill in: the template attribute type
    assert "cont [ 0 ]" in dump and "cont [ 1 ]" in dump  # subjectPKInfo [0], attributes [1]


def test_complete_template_extensions_use_plain_extension_request() -> None:
    value = base64.b64encode(bytes.fromhex("3000")).decode()
    der = build_csrattrs({"template": {"extensions": [{"oid": "2.5.29.37", "value": value}]}})
    assert EXTENSION_REQ_TEMPLATE.encode() not in der  # type: ignore[operator]
    assert bytes.fromhex("06092a864886f70d01090e") in der  # id-ExtensionReq  # type: ignore[operator]


def test_rsa_template_conveys_the_modulus_size() -> None:
    from asn1crypto import core

    der = build_csrattrs({"template": {"key": "RSA-3072"}})
    assert der is not None
    [(oid, [template])] = csrattrs_items(der)
    assert oid == CRI_TEMPLATE
    from asn1crypto import keys as akeys

    from gateway.edge.der import children

    version, spki, attributes = children(template)  # no subject: the server asks for none
    assert core.Integer.load(version).native == 0 and spki[0] == 0xA0 and attributes[0] == 0xA1
    algorithm, bits = children(spki)  # [0] IMPLICIT SubjectPublicKeyInfoTemplate
    assert core.ObjectIdentifier.load(children(algorithm)[0]).dotted == "1.2.840.113549.1.1.1"
    modulus = akeys.RSAPublicKey.load(core.BitString.load(bits).contents[1:])["modulus"].native
    assert modulus.bit_length() == 3072


@pytest.mark.parametrize("spec,message", [
    ({"oids": ["not-an-oid"]}, "dotted object identifier"),
    ({"nonsense": []}, "unknown csrattrs key"),
    ({"der": "AAAA", "oids": []}, "cannot be combined"),
    ({"der": base64.b64encode(b"\x02\x01\x00").decode()}, "SEQUENCE"),
    ({"der": "!!"}, "not valid base64"),
    ({"attributes": [{"type": "challengePassword", "values": []}]}, "at least one value"),
    ({"extensions": [{"oid": "keyUsage"}]}, "needs its value"),
    ({"extensions": [{"oid": "keyUsage", "value": "AwIHgA=="}, {"oid": "2.5.29.15", "value": "AwIHgA=="}]}, "twice"),
    ({"template": {"key": "DSA-1024"}}, "unknown key algorithm"),
    ({"template": {"subject": [{"value": "x"}]}}, "template RDN"),
])
def test_bad_specs_are_refused_with_a_reason(spec: dict, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        build_csrattrs(spec)


def test_no_spec_means_no_attributes() -> None:
    assert build_csrattrs(None) is None and build_csrattrs({}) is None
