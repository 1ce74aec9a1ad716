"""The benchmark's own building blocks: statistics, JWS, verification, CMS, ceiling, report."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

import josepy
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from bench import ceiling
from bench.acme_client import Issued
from bench.jws import AccountKey, b64url_decode
from bench.report import goals, render
from bench.scep_message import make_device, pkcs_req
from bench.stats import median, percentile
from bench.verify import verify_acme


def test_percentile_is_nearest_rank_and_median_skips_missing() -> None:
    values = list(range(1, 101))
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    assert median([3, None, 1, 2]) == 2
    assert median([1, 2, 3, 4]) == 2.5
    assert median([None]) is None


def test_jws_verifies_with_an_independent_implementation() -> None:
    key = AccountKey()
    body = json.loads(key.sign("https://127.0.0.1/acme/new-order", "nonce-1", {"identifiers": []}, kid="acct/1"))
    protected = json.loads(b64url_decode(body["protected"]))
    assert protected == {"alg": "ES256", "nonce": "nonce-1", "url": "https://127.0.0.1/acme/new-order",
                         "kid": "acct/1"}
    public = josepy.JWKEC(key=key.key.public_key())
    jws = josepy.JWS.from_json({"protected": body["protected"], "payload": body["payload"],
                                "signature": body["signature"]})
    assert jws.verify(public)
    # POST-as-GET carries an empty payload; a jwk request embeds the key
    as_get = json.loads(key.sign("https://x/y", "n2", None))
    assert as_get["payload"] == ""
    assert json.loads(b64url_decode(as_get["protected"]))["jwk"] == key.jwk
    tampered = dict(body, payload=body["payload"][:-2] + "AA")
    assert not josepy.JWS.from_json(tampered).verify(public)


def _ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _issued(ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], name: str, serial: int,
            key_for_cert: ec.EllipticCurvePrivateKey | None = None) -> Issued:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca_cert.subject)
            .public_key((key_for_cert or key).public_key()).serial_number(serial)
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM)
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return Issued(name, chain, public, 5)


def test_only_correct_certificates_with_unshared_serials_count() -> None:
    ca = _ca()
    items = [
        _issued(ca, "a.example", 10),
        _issued(ca, "b.example", 11),
        _issued(ca, "c.example", 11),  # shares a serial with b: both discarded
        _issued(ca, "d.example", 12, key_for_cert=ec.generate_private_key(ec.SECP256R1())),  # not our key
    ]
    other_ca = _ca()
    forged = _issued(other_ca, "e.example", 13)
    real_issuer = ca[1].public_bytes(serialization.Encoding.PEM)
    items.append(Issued(forged.name, forged.chain_pem.split(b"-----END CERTIFICATE-----")[0]
                        + b"-----END CERTIFICATE-----\n" + real_issuer, forged.public_key_der, 5))
    verdict = verify_acme(items)
    assert verdict.checked == 5
    assert verdict.valid_unique == 1
    assert verdict.duplicate_serial == 2
    assert verdict.invalid == 2
    assert verdict.reasons["wrong public key"] == 1
    assert any(r.startswith("signature") for r in verdict.reasons)
    assert verdict.ca_key == "EC-P256"


def test_pkcs_req_is_a_signed_envelope_openssl_can_open(tmp_path: Path) -> None:
    """The request verifies and decrypts with the real openssl CLI, and carries the challenge."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SCEP CA")])
    now = dt.datetime.now(dt.UTC)
    ca_cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
               .serial_number(7).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .sign(ca_key, hashes.SHA256()))
    device = make_device("bench-device")
    request = pkcs_req(device, "device-42", "s3cret-challenge", ca_cert)
    (tmp_path / "req.der").write_bytes(request.body)
    (tmp_path / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "ca.key").write_bytes(ca_key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    openssl = lambda *a: subprocess.run(["openssl", *a], cwd=tmp_path, capture_output=True, check=True)
    openssl("cms", "-verify", "-noverify", "-inform", "DER", "-in", "req.der", "-out", "env.der", "-binary")
    openssl("cms", "-decrypt", "-inform", "DER", "-in", "env.der", "-recip", "ca.pem", "-inkey", "ca.key",
            "-out", "csr.der", "-binary")
    text = openssl("req", "-inform", "DER", "-in", "csr.der", "-noout", "-text", "-verify").stdout.decode()
    assert "CN=device-42" in text.replace(" = ", "=")
    assert "s3cret-challenge" in text
    assert "aes-128-cbc" in openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", "env.der").stdout.decode()
    assert request.transaction_id.encode() in (tmp_path / "req.der").read_bytes()


def test_ceiling_counts_the_operations_it_is_given() -> None:
    ops = ceiling.acme_operations(5, "EC-P256")
    assert [(o[1], o[3]) for o in ops] == [("verify", 5), ("verify", 1), ("sign", 1)]
    result = ceiling.measure(ops, duration=0.05).as_dict()
    assert result["rate_one_core"] > 0 and result["rate_all_cores"] > 0
    assert set(result["microseconds_per_operation"]) == {"verify EC-P256", "sign EC-P256"}
    scep = ceiling.scep_operations("RSA-2048", "RSA-2048")
    assert sum(o[3] for o in scep) == 6


def test_report_renders_unavailable_legs_and_goals() -> None:
    result = {
        "meta": {"mode": "quick", "cpus": 2, "duration_s": 1.0},
        "acme": {"c8": {"pebble": {"status": "ok", "rate": 100.0, "p50_ms": 5.0, "p99_ms": 9.0, "runs": 1,
                                   "stalled_runs": 1},
                        "gateway_sqlite": {"status": "unavailable", "reason": "protocols/acme missing"},
                        "gateway_postgresql": {"status": "unavailable", "reason": "protocols/acme missing"},
                        "ratio_vs_pebble": None},
                 "pebble_version": "2.4"},
        "scep": {"status": "unavailable", "reason": "no namespace"},
    }
    result["goals"] = goals(result)
    text = render(result)
    assert "unavailable" in text and "stalled 1/1" in text and "no namespace" in text
    assert result["goals"]["acme_c8_sqlite_vs_pebble"]["met"] is None
    assert "acme_c8_sqlite_vs_pebble" in text and "NOT met" not in text


def test_goals_are_issue_18s_with_raw_scep_rate_and_cpu_ratios() -> None:
    """SCEP is judged on scepserver's raw rate (duplicates included), CPU per certificate
    against the peer's, and a gateway that answers one bad certificate misses the goal."""
    def leg(rate: float, raw: float, cpu: float, **extra: Any) -> dict[str, Any]:
        return {"rate": rate, "raw_rate": raw, "server_cpu_ms_per_cert": cpu, **extra}

    result: dict[str, Any] = {
        "acme": {"c8": {"pebble": leg(300, 300, 3.0), "gateway_sqlite": leg(330, 330, 6.0),
                        "gateway_postgresql": leg(150, 150, 9.0), "ratio_vs_pebble": 1.1,
                        "ratio_vs_pebble_postgresql": 0.5, "p99_ratio_vs_pebble": 0.9,
                        "p99_ratio_vs_pebble_postgresql": 1.2},
                 "fraction_of_ceiling": 0.3},
        "scep": {"c8": {"scepserver": leg(4, 300, 5.0), "gateway": leg(310, 310, 8.0, invalid=0, duplicate_serial=0),
                        "ratio_vs_scepserver_raw": 1.03},
                 "fraction_of_ceiling": 0.2},
        "memory": {"growth_bytes_per_issuance": 800.0},
    }
    g = goals(result)
    met = {name: goal["met"] for name, goal in g.items()}
    assert met["acme_c8_sqlite_vs_pebble"] and met["acme_c8_p99_sqlite_vs_pebble"]
    assert met["acme_c8_postgresql_vs_pebble"] is False and met["acme_c8_p99_postgresql_vs_pebble"] is False
    assert g["acme_c8_cpu_per_cert_sqlite_vs_pebble"]["value"] == 2.0 and met["acme_c8_cpu_per_cert_sqlite_vs_pebble"]
    assert met["acme_c8_cpu_per_cert_postgresql_vs_pebble"] is False
    assert met["scep_c8_vs_scepserver_raw"] and met["scep_c8_cpu_per_cert_vs_scepserver"] is False
    assert met["acme_c8_fraction_of_ceiling"] and met["scep_c8_fraction_of_ceiling"] is False
    assert met["memory_growth_bytes_per_issuance_from_10k"] is False and met["est_in_bench"] is None
    result["scep"]["c8"]["gateway"]["duplicate_serial"] = 1
    assert goals(result)["scep_c8_vs_scepserver_raw"]["met"] is False


def test_est_leg_verifies_key_issuer_and_unique_serials_and_renders() -> None:
    """The EST leg's check: a certificate for another key or from another CA is invalid,
    a repeated serial is a duplicate; its table and the EST goal render."""
    import base64
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import pkcs7
    from cryptography.x509.oid import NameOID

    from bench.est_leg import _verify
    from bench.est_leg import render as render_est

    def cert(issuer_key, issuer_name, key, serial, subject=None):  # type: ignore[no-untyped-def]
        now = dt.datetime.now(dt.timezone.utc)
        subject = subject or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "d")])
        return (x509.CertificateBuilder().subject_name(subject)
                .issuer_name(issuer_name).public_key(key.public_key()).serial_number(serial)
                .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)).sign(issuer_key, hashes.SHA256()))

    ca_key, other_ca = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA")])
    ca = cert(ca_key, ca_name, ca_key, 1, ca_name)
    device = ec.generate_private_key(ec.SECP256R1())
    spki = device.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    def answer(c: x509.Certificate) -> bytes:
        return base64.b64encode(pkcs7.serialize_certificates([c], serialization.Encoding.DER))

    good = cert(ca_key, ca_name, device, 10)
    verdict = _verify([(answer(good), spki), (answer(good), spki),
                       (answer(cert(other_ca, ca_name, device, 11)), spki),
                       (answer(cert(ca_key, ca_name, ec.generate_private_key(ec.SECP256R1()), 12)), spki)], ca)
    assert (verdict.checked, verdict.valid_unique, verdict.duplicate_serial, verdict.invalid) == (4, 1, 1, 2)
    text = "\n".join(render_est({"peer": "none", "c1": {"rate": 10.0}, "c8": {"rate": 20.0},
                                 "ceiling": {"rate_all_cores": 100.0, "rate_one_core": 60.0},
                                 "fraction_of_ceiling_c8": 0.2}))
    assert "20.0%" in text and "/simpleenroll" in text
    assert goals({"est": {"fraction_of_ceiling_c8": 0.2}})["est_c8_fraction_of_ceiling"]["met"] is False
