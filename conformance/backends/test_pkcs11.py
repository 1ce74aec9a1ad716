"""CA keys on a SoftHSM2 token: created there with ``gateway ca create --backend pkcs11``,
EC and RSA, signing what certbot, scepclient and curl EST receive, the CRL and the OCSP
responses themselves (or, when asked, a delegated responder's certificate), and never
leaving the token; the token found by label or by slot, the PIN from the environment or a
file; a missing token, module or PIN stops ``gateway serve`` with one line that names it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from conformance.harness import GatewayProcess, run_cli, running_gateway
from gateway import bootstrap
from gateway.ca.backend import RevocationReason
from gateway.store.records import serial_hex

from conformance.scep.support import run

from .clients import curl_est_through, issue_with_every_client, scepclient_through
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
    try:
        session = token.open(user_pin=hsm.pin)
    except pkcs11.exceptions.UserAlreadyLoggedIn:  # an earlier test's gateway in this process logged in
        session = token.open()
    with session:
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


async def _ocsp(cert: x509.Certificate, issuer: x509.Certificate) -> ocsp.OCSPResponse:
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
    async with aiohttp.ClientSession() as session:
        async with session.post(_url(cert, AuthorityInformationAccessOID.OCSP),
                                data=request.public_bytes(serialization.Encoding.DER),
                                headers={"Content-Type": "application/ocsp-request"}) as resp:
            assert resp.status == 200
            answer = ocsp.load_der_ocsp_response(await resp.read())
    assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    return answer


def _signed_by_ca_itself(answer: ocsp.OCSPResponse, ca: x509.Certificate) -> None:
    """The response carries no responder certificate, names the CA's key and verifies under it."""
    assert answer.certificates == []
    spki = ca.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    from asn1crypto import keys as asn1_keys

    bits = asn1_keys.PublicKeyInfo.load(spki)["public_key"].contents[1:]
    digest = hashes.Hash(hashes.SHA1())
    digest.update(bits)
    assert answer.responder_key_hash == digest.finalize()
    key = ca.public_key()
    assert answer.signature_hash_algorithm is not None
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(answer.signature, answer.tbs_response_bytes, padding.PKCS1v15(), answer.signature_hash_algorithm)
    else:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(answer.signature, answer.tbs_response_bytes, ec.ECDSA(answer.signature_hash_algorithm))


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

        # revocation: the CRL the token signs lists it; OCSP (signed by the token key itself)
        # says revoked, verified by openssl up to the token root
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
            checked = await run("openssl", "ocsp", "-issuer", str(data_dir / "cas" / "hsm-issuing.pem"),
                                "-cert", str(leaf), "-url", _url(cert, AuthorityInformationAccessOID.OCSP),
                                "-CAfile", str(full_chain))
            assert "Response verify OK" in checked.stderr + checked.stdout, checked.stdout + checked.stderr
            assert f"{leaf}: {expect}" in checked.stdout, checked.stdout
            _signed_by_ca_itself(await _ocsp(cert, issuing), issuing)  # EC: no responder certificate


def _slot_of(hsm: SoftHsm) -> int:
    import pkcs11

    return int(pkcs11.lib(hsm.module).get_token(token_label=hsm.token).slot.slot_id)


async def test_an_rsa_token_ca_found_by_slot_with_its_pin_in_a_file(softhsm: SoftHsm, tmp_path: Path) -> None:
    """RSA token keys: a root found by slot-id with the PIN read from a file, an RSA issuing CA
    under it; curl EST and scepclient get leaves the RSA token key signed, its CRL and its OCSP
    responses too (openssl verifies them up to the root, with no responder certificate); a CA
    made with ``--pkcs11-ocsp-signer delegated`` keeps the delegated responder instead."""
    data_dir = await _init(tmp_path)
    pin_file = tmp_path / "pin"
    pin_file.write_text(softhsm.pin + "\n")
    pin_file.chmod(0o600)
    by_slot = f"pkcs11:slot-id={_slot_of(softhsm)};object=t4-root?module-path={softhsm.module}"
    run_cli("ca", "create", "rsa-root", "--name", "Token RSA Root", "--key", "RSA-3072", "--backend", "pkcs11",
            "--pkcs11-uri", by_slot, "--pkcs11-pin-file", str(pin_file), data_dir=data_dir,
            env={"GATEWAY_PKCS11_PIN": ""})  # the file's PIN, not the environment's
    run_cli("ca", "create", "rsa-issuing", "--name", "Token RSA Issuing", "--key", "RSA-2048", "--parent", "rsa-root",
            "--backend", "pkcs11", "--pkcs11-uri", softhsm.uri("t4-issuing"), data_dir=data_dir)
    run_cli("ca", "create", "rsa-delegated", "--name", "Token RSA Delegated", "--key", "RSA-2048",
            "--parent", "rsa-root", "--backend", "pkcs11", "--pkcs11-uri", softhsm.uri("t4-delegated"),
            "--pkcs11-ocsp-signer", "delegated", data_dir=data_dir)
    root, issuing = _ca_pem(data_dir, "rsa-root"), _ca_pem(data_dir, "rsa-issuing")
    assert isinstance(issuing.public_key(), rsa.RSAPublicKey) and isinstance(root.public_key(), rsa.RSAPublicKey)
    issuing.verify_directly_issued_by(root)
    assert _token_key(softhsm, "t4-root")["never_extractable"]

    async with running_gateway(data_dir) as (gw, info):
        async with gw.store.read() as q:
            settings = (await q.cas.get("rsa-root")).backend_settings
        assert settings["slot_id"] == _slot_of(softhsm) and settings["token_label"] is None
        assert settings["pin_source"] == f"file:{pin_file}" and softhsm.pin not in json.dumps(settings)

        est = await curl_est_through(info, "rsa-issuing", tmp_path / "est")
        scep = await scepclient_through(gw, info, "rsa-issuing", tmp_path)
        chain = tmp_path / "chain.pem"
        chain.write_bytes((data_dir / "cas" / "rsa-root.pem").read_bytes()
                          + (data_dir / "cas" / "rsa-issuing.pem").read_bytes())
        for cert in (est, scep):
            cert.verify_directly_issued_by(issuing)  # PKCS#1 v1.5 by the token's RSA key
            leaf = tmp_path / "leaf.pem"
            leaf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            verified = await run("openssl", "verify", "-CAfile", str(chain), str(leaf))
            assert verified.returncode == 0, verified.stdout + verified.stderr

        await gw.authority.revoke(serial_hex(est.serial_number), RevocationReason.superseded, actor="test")
        await gw.authority.crl("rsa-issuing", force=True)
        crl = x509.load_der_x509_crl(await _get(_crl_url(est)))
        assert crl.is_signature_valid(issuing.public_key())  # type: ignore[arg-type]
        assert crl.signature_hash_algorithm is not None and crl.signature_hash_algorithm.name == "sha256"
        assert crl.get_revoked_certificate_by_serial_number(est.serial_number) is not None
        assert crl.get_revoked_certificate_by_serial_number(scep.serial_number) is None
        (tmp_path / "crl.der").write_bytes(crl.public_bytes(serialization.Encoding.DER))
        checked = await run("openssl", "crl", "-inform", "DER", "-in", str(tmp_path / "crl.der"), "-noout",
                            "-CAfile", str(chain))
        assert "verify OK" in checked.stderr + checked.stdout, checked.stdout + checked.stderr

        for cert, expect in ((est, "revoked"), (scep, "good")):
            leaf = tmp_path / "ocsp-leaf.pem"
            leaf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            checked = await run("openssl", "ocsp", "-issuer", str(data_dir / "cas" / "rsa-issuing.pem"),
                                "-cert", str(leaf), "-url", _url(cert, AuthorityInformationAccessOID.OCSP),
                                "-CAfile", str(chain))
            assert "Response verify OK" in checked.stderr + checked.stdout, checked.stdout + checked.stderr
            assert f"{leaf}: {expect}" in checked.stdout, checked.stdout
            _signed_by_ca_itself(await _ocsp(cert, issuing), issuing)

        # the delegated choice: a responder certificate the token signed, carried in the response
        delegated = _ca_pem(data_dir, "rsa-delegated")
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "delegated.example.test")]))
               .sign(key, hashes.SHA256()))
        leaf_cert = (await gw.authority.issue_direct("rsa-delegated", csr, "tls-client", actor="test")).certificate
        answer = await _ocsp(leaf_cert, delegated)
        assert len(answer.certificates) == 1 and answer.certificates[0] != delegated
        answer.certificates[0].verify_directly_issued_by(delegated)
        assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD


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
