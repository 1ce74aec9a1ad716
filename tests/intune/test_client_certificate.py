"""The Intune client signing in with a certificate (a client_assertion msal signs), against the
simulator's token endpoint, which verifies the JWT with the registered certificate's key."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from conformance.intune.simulator import IntuneSimulator
from protocols.scep.intune.client import IntuneAuthError, IntuneClient

from .conftest import connection_for
from .test_client import make_csr


def app_certificate(key: rsa.RSAPrivateKey) -> x509.Certificate:
    """A self-signed certificate as an operator uploads to the app registration."""
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "enrollment-gateway intune app")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))


def pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def certificate_client(simulator: IntuneSimulator, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> IntuneClient:
    return IntuneClient(connection_for(simulator, client_secret=None,
                                       client_certificate=cert.public_bytes(serialization.Encoding.PEM),
                                       client_key=pem_key(key)))


async def test_validate_with_a_certificate_credential(simulator: IntuneSimulator,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = app_certificate(key)
    simulator.register_certificate(cert)
    client = certificate_client(simulator, cert, key)
    try:
        await client.validate("txn-c1", make_csr(simulator.issue_challenge("device-1")))
    finally:
        await client.close()
    assert len(simulator.validations) == 1 and simulator.token_requests
    key_pem = pem_key(key).decode()
    body = "".join(key_pem.splitlines()[1:-1])
    text = caplog.text + repr(client._conn)  # noqa: SLF001 - what a traceback would show
    assert body[:40] not in text and key_pem not in text


async def test_a_key_other_than_the_registered_certificates_is_refused(
        simulator: IntuneSimulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    registered = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = app_certificate(registered)
    simulator.register_certificate(cert)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client = certificate_client(simulator, cert, other)  # the right thumbprint, the wrong signature
    try:
        with pytest.raises(IntuneAuthError, match="AADSTS700027") as info:
            await client.validate("txn-c2", make_csr(simulator.issue_challenge("device-2")))
    finally:
        await client.close()
    assert simulator.validations == [] and simulator.token_requests == []
    body = "".join(pem_key(other).decode().splitlines()[1:-1])
    assert body[:40] not in caplog.text + str(info.value)


async def test_an_unregistered_certificate_is_refused(simulator: IntuneSimulator) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    simulator.register_certificate(app_certificate(key))
    stray = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client = certificate_client(simulator, app_certificate(stray), stray)
    try:
        with pytest.raises(IntuneAuthError, match="AADSTS700027"):
            await client.validate("txn-c3", make_csr(simulator.issue_challenge("device-3")))
    finally:
        await client.close()


def test_a_connection_takes_a_secret_or_a_certificate_not_both(simulator: IntuneSimulator) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = app_certificate(key).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(ValueError, match="either a client secret or a certificate"):
        connection_for(simulator, client_certificate=cert, client_key=pem_key(key))
    with pytest.raises(ValueError, match="either a client secret or a certificate"):
        connection_for(simulator, client_secret=None, client_certificate=cert)
