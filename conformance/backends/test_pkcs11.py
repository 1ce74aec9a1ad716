"""CA keys on a SoftHSM2 token: created there with ``gateway ca create --backend pkcs11``,
signing what certbot, scepclient and curl EST receive, the CRL and the OCSP responder's
certificate, and never leaving the token; a missing token, module or PIN stops
``gateway serve`` with one line that names it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import AuthorityInformationAccessOID

from conformance.harness import GatewayProcess, run_cli, running_gateway
from gateway import bootstrap
from gateway.ca.backend import RevocationReason
from gateway.store.records import serial_hex

from conformance.scep.support import run

from .clients import issue_with_every_client
from .softhsm import SoftHsm, make_token_dir


async def _init(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    await bootstrap.initialize(data_dir)
    return data_dir


def _ca_pem(data_dir: Path, ca_id: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((data_dir / "cas" / f"{ca_id}.pem").read_bytes())


def _token_key(hsm: SoftHsm, label: str) -> dict[str, bool]:
    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    token = pkcs11.lib(hsm.module).get_token(token_label=hsm.token)
    with token.open(user_pin=hsm.pin) as session:
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
        return {name: bool(key[attr]) for name, attr in (
            ("sensitive", Attribute.SENSITIVE), ("extractable", Attribute.EXTRACTABLE),
            ("never_extractable", Attribute.NEVER_EXTRACTABLE), ("local", Attribute.LOCAL))}


def _url(cert: x509.Certificate, method: x509.ObjectIdentifier) -> str:
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    return next(str(d.access_location.value) for d in aia if d.access_method == method)


def _crl_url(cert: x509.Certificate) -> str:
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    return str(cdp[0].full_name[0].value)  # type: ignore[index]


async def _get(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200, (url, resp.status)
        return await resp.read()


async def test_every_client_issues_from_a_token_key(softhsm: SoftHsm, tmp_path: Path) -> None:
    data_dir = await _init(tmp_path)
    run_cli("ca", "create", "hsm-root", "--name", "Token Root", "--key", "RSA-3072", "--backend", "pkcs11",
            "--pkcs11-uri", softhsm.uri("t1-root"), data_dir=data_dir)
    run_cli("ca", "create", "hsm-issuing", "--name", "Token Issuing", "--key", "EC-P256", "--parent", "hsm-root",
            "--backend", "pkcs11", "--pkcs11-uri", softhsm.uri("t1-issuing"), data_dir=data_dir)
    root, issuing = _ca_pem(data_dir, "hsm-root"), _ca_pem(data_dir, "hsm-issuing")
    issuing.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)

    # the keys were generated on the token and cannot leave it; the store keeps only where they are
    for label in ("t1-root", "t1-issuing"):
        assert _token_key(softhsm, label) == {"sensitive": True, "extractable": False,
                                              "never_extractable": True, "local": True}
    async with running_gateway(data_dir) as (gw, info):
        async with gw.store.read() as q:
            record = await q.cas.get("hsm-issuing")
        assert record.key_pem_encrypted is None and record.backend == "pkcs11"
        assert record.backend_settings["key_label"] == "t1-issuing"
        assert record.backend_settings["pin_source"] == "env:GATEWAY_PKCS11_PIN"
        assert softhsm.pin not in json.dumps(record.backend_settings)
        assert not any(b"PRIVATE KEY" in p.read_bytes() for p in (data_dir / "cas").iterdir())

        issued = await issue_with_every_client(gw, info, "hsm-issuing", tmp_path)
        chain = tmp_path / "chain.pem"
        chain.write_bytes((data_dir / "cas" / "hsm-root.pem").read_bytes())
        for client, cert in issued.all().items():
            cert.verify_directly_issued_by(issuing)  # signed by the token's key, not a software one
            leaf = tmp_path / f"{client}.pem"
            leaf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            verified = await run("openssl", "verify", "-CAfile", str(chain), "-untrusted",
                                 str(data_dir / "cas" / "hsm-issuing.pem"), str(leaf))
            assert verified.returncode == 0 and f"{leaf}: OK" in verified.stdout, verified.stdout + verified.stderr

        # revocation: the CRL the token signs lists it; OCSP (a delegated responder whose
        # certificate the token signed) says revoked, verified by openssl up to the token root
        revoked = issued.certbot
        await gw.authority.revoke(serial_hex(revoked.serial_number), RevocationReason.key_compromise, actor="test")
        await gw.authority.crl("hsm-issuing", force=True)
        crl = x509.load_der_x509_crl(await _get(_crl_url(revoked)))
        assert crl.is_signature_valid(issuing.public_key())  # type: ignore[arg-type]
        assert crl.get_revoked_certificate_by_serial_number(revoked.serial_number) is not None
        assert crl.get_revoked_certificate_by_serial_number(issued.curl_est.serial_number) is None
        full_chain = tmp_path / "full-chain.pem"
        full_chain.write_bytes(chain.read_bytes() + (data_dir / "cas" / "hsm-issuing.pem").read_bytes())
        for cert, expect in ((revoked, "revoked"), (issued.scep, "good")):
            leaf = tmp_path / "ocsp-leaf.pem"
            leaf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            ocsp = await run("openssl", "ocsp", "-issuer", str(data_dir / "cas" / "hsm-issuing.pem"),
                             "-cert", str(leaf), "-url", _url(cert, AuthorityInformationAccessOID.OCSP),
                             "-CAfile", str(full_chain))
            assert "Response verify OK" in ocsp.stderr + ocsp.stdout, ocsp.stdout + ocsp.stderr
            assert f"{leaf}: {expect}" in ocsp.stdout, ocsp.stdout


def _serve_error(data_dir: Path, env: dict[str, str]) -> str:
    proc = GatewayProcess(data_dir, env=env)
    with pytest.raises(RuntimeError) as excinfo:
        proc.start(timeout=60)
    return str(excinfo.value)


async def test_serve_refuses_to_start_without_its_token(softhsm: SoftHsm, tmp_path: Path) -> None:
    data_dir = await _init(tmp_path)
    module_copy = tmp_path / "libsofthsm2.so"
    shutil.copy(softhsm.module, module_copy)
    run_cli("ca", "create", "hsm-ca", "--name", "Token CA", "--key", "EC-P384", "--backend", "pkcs11",
            "--pkcs11-uri", f"pkcs11:token={softhsm.token};object=t2-ca", "--pkcs11-module", str(module_copy),
            "--pkcs11-pin-env", "T2_PIN", data_dir=data_dir, env={"T2_PIN": softhsm.pin})

    out = _serve_error(data_dir, {"T2_PIN": "not-the-pin"})
    assert "CA hsm-ca: wrong PIN for token 'gateway-tests' (from env:T2_PIN)" in out
    assert "not-the-pin" not in out and "Traceback" not in out
    out = _serve_error(data_dir, {})
    assert "comes from the environment variable T2_PIN, which is not set" in out
    empty_conf, _ = make_token_dir(tmp_path / "no-tokens", None)
    out = _serve_error(data_dir, {"T2_PIN": softhsm.pin, "SOFTHSM2_CONF": str(empty_conf)})
    assert "no token 'gateway-tests' in PKCS#11 module" in out
    module_copy.unlink()
    out = _serve_error(data_dir, {"T2_PIN": softhsm.pin})
    assert f"PKCS#11 module {module_copy} does not exist" in out

    # with all of them back, it starts (and the PIN is in no log line)
    shutil.copy(softhsm.module, module_copy)
    proc = GatewayProcess(data_dir, env={"T2_PIN": softhsm.pin})
    with proc:
        pass
    assert softhsm.pin not in proc.log_path.read_text()


async def test_ca_create_refusals(softhsm: SoftHsm, tmp_path: Path) -> None:
    data_dir = await _init(tmp_path)

    def refused(*args: str) -> str:
        out = run_cli("ca", "create", *args, data_dir=data_dir, check=False)
        assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
        return out.stderr

    assert "pin-value" in refused("t3", "--name", "x", "--backend", "pkcs11",
                                  "--pkcs11-uri", softhsm.uri("t3") + "&pin-value=1234")
    assert "need --backend pkcs11" in refused("t3", "--name", "x", "--pkcs11-uri", softhsm.uri("t3"))
    assert "needs --pkcs11-uri" in refused("t3", "--name", "x", "--backend", "pkcs11")
    assert "a token key is one of" in refused("t3", "--name", "x", "--backend", "pkcs11", "--key", "Ed25519",
                                              "--pkcs11-uri", softhsm.uri("t3-ed"))
    run_cli("ca", "create", "t3", "--name", "x", "--backend", "pkcs11", "--pkcs11-uri", softhsm.uri("t3-dup"),
            data_dir=data_dir)
    assert "already has a key labelled 't3-dup'" in refused("t3b", "--name", "y", "--backend", "pkcs11",
                                                            "--pkcs11-uri", softhsm.uri("t3-dup"))
    listed = run_cli("ca", "list", "--json", data_dir=data_dir).stdout
    assert '"t3b"' not in listed and '"backend": "pkcs11"' in listed
