"""An Intune configuration whose app signs in with a certificate, set up with the real CLI,
and a real scepclient enrolling through it (the simulator verifies the client assertion)."""

from __future__ import annotations

import json
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.intune.test_client_certificate import app_certificate, pem_key

from .conftest import CONFIG, IntuneEnv
from .conftest import env  # noqa: F401 - the fixture, shared
from .test_enrollment import certificate, issued


async def test_a_device_enrolls_through_an_app_signing_in_with_a_certificate(
        env: IntuneEnv, tmp_path: Path) -> None:  # noqa: F811
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = app_certificate(key)
    (tmp_path / "app.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "app.key").write_bytes(pem_key(key))
    env.sim.register_certificate(cert)
    env.sim.client_secret = "sim~rotated-away"  # the secret set by the fixture no longer signs in

    out = await env.cli("scep", "intune", "set", "--config", CONFIG, "--client-certificate",
                        str(tmp_path / "app.pem"), "--client-key-file", str(tmp_path / "app.key"))
    thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    assert json.loads(out)["client_certificate_thumbprint"] == thumbprint
    stored = (await env.door.configuration(CONFIG)).settings["intune"]
    assert "client_secret" not in stored and stored["client_key"].startswith("v1.")
    key_body = "".join(pem_key(key).decode().splitlines()[1:-1])
    shown = await env.cli("scep", "intune", "show", "--config", CONFIG)
    assert json.loads(shown)["client_certificate_thumbprint"] == thumbprint
    assert key_body[:40] not in json.dumps(stored) + out + shown

    challenge = env.sim.issue_challenge("device-c", subject_cn="device-c")
    code, text = await env.scepclient(tmp_path / "dc", "-challenge", challenge, "-cn", "device-c")
    assert code == 0, text
    assert isinstance(certificate(tmp_path / "dc"), x509.Certificate)
    assert len(env.sim.validations) == 1 and len(env.sim.successes) == 1 and len(await issued(env)) == 1
