"""``gateway init``: a working data directory with development CAs and credentials.

What it creates is meant for a first run on one machine: a dev root and issuing CA,
a TLS certificate for localhost, the default profiles, an admin API key and one
protocol configuration per protocol. Plaintext dev credentials are written once to
``secrets/dev-credentials.json`` (mode 0600) so ``gateway info`` can show them; the
store keeps only their hashes. Delete that file in production.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from . import keys
from .ca.backend import IssueOverrides
from .ca.pem import cert_to_pem, certs_to_pem
from .config import DEV_CREDENTIALS, PASSPHRASE_ENV, Config, load_config
from .errors import ConfigError
from .profiles.loader import default_profiles_dir
from .runtime import Gateway
from .secrets import api_key_hash, new_token
from .store.records import ApiKeyRecord

ROOT_CA = "root"
ISSUING_CA = "issuing"
RSA_ISSUING_CA = "issuing-rsa"
"""The dev SCEP configuration's CA: NDES deployments and older SCEP clients (micromdm's
scepclient without ``-ca-fingerprint``, which encrypts to every certificate GetCACert
returns) expect RSA throughout the chain, so the dev root is RSA too."""
PROTOCOL_CAS = {"scep": RSA_ISSUING_CA, "windows": RSA_ISSUING_CA}  # windows: legacy CSPs, AD CS-like


DEV_CONSOLE_USER = "dev-owner"
"""The console login ``gateway init`` makes (an Owner), printed by init and ``gateway info``."""


def _write_secret(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def is_initialized(data_dir: Path) -> bool:
    return (data_dir / DEV_CREDENTIALS).exists() or (data_dir / "config.toml").exists()


def read_dev_credentials(config: Config) -> dict[str, Any]:
    path = config.data_dir / DEV_CREDENTIALS
    return json.loads(path.read_text()) if path.exists() else {}


async def export_ca_files(gw: Gateway) -> None:
    """Write every CA's certificate and chain to ``cas/`` for operators and clients."""
    out = gw.config.data_dir / "cas"
    out.mkdir(parents=True, exist_ok=True)
    for rec in gw.cas.records():
        if rec.certificate_pem:
            (out / f"{rec.id}.pem").write_text(rec.certificate_pem)
            (out / f"{rec.id}-chain.pem").write_text(rec.certificate_pem + rec.chain_pem)


async def issue_tls_certificate(gw: Gateway, hosts: list[str]) -> None:
    """The HTTPS listener's certificate from the issuing CA (localhost, 127.0.0.1, ::1)."""
    import ipaddress

    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    key = keys.generate_private_key("EC-P256")
    issued = await gw.authority.issue_internal(
        ISSUING_CA, "tls-server", key.public_key(),
        IssueOverrides(
            subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]), sans=tuple(sans)
        ),
        purpose="https-listener", protocol=None, protocol_config=None, actor="init",
    )
    cert_path = gw.config.path(gw.config.tls.certificate)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    cert_path.write_text(certs_to_pem([issued.certificate, *issued.chain[:-1]]))
    _write_secret(
        gw.config.path(gw.config.tls.key),
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


async def bootstrap_protocols(gw: Gateway, ca_id: str) -> dict[str, Any]:
    """Each adapter makes its dev configuration(s), with credentials, through its door,
    on ``ca_id`` unless :data:`PROTOCOL_CAS` names another for it (SCEP: RSA)."""
    from .composition import adapters

    creds: dict[str, Any] = {}
    for adapter in adapters():
        known = {rec.id for rec in gw.cas.records()}
        chosen = PROTOCOL_CAS.get(adapter.name, ca_id)
        chosen = chosen if chosen in known else ca_id
        creds[adapter.name] = await adapter.bootstrap(gw.door(adapter.name), chosen)
    return creds


async def initialize(data_dir: Path, *, force: bool = False, store_url: str | None = None,
                     server: dict[str, Any] | None = None) -> dict[str, Any]:
    """Create the data directory; refuses to touch an initialized one unless forced.
    ``store_url``: keep the store in that database (PostgreSQL for replicas) instead
    of the embedded SQLite file. ``server``: ``[server]`` settings (listeners, public
    host and ports) stored in config.toml before anything is issued, since the CA and
    TLS certificates made here carry the public URLs."""
    data_dir = Path(data_dir)
    probe = Config(data_dir=data_dir)
    for key, value in (server or {}).items():
        setattr(probe.server, key, value)
    _ = probe.https_url, probe.http_url  # refuses an unreachable public host before touching anything
    if is_initialized(data_dir):
        if not force:
            raise ConfigError(f"{data_dir} is already initialized (use --force to recreate it)")
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    config = Config(data_dir=data_dir)
    for key, value in (server or {}).items():
        setattr(config.server, key, value)
    if store_url:
        config.store.url = store_url
    config.save()
    config = load_config(data_dir)
    if not os.environ.get(PASSPHRASE_ENV):
        _write_secret(config.path(config.ca.passphrase_file), new_token(32).encode())
    shutil.copytree(default_profiles_dir(), config.profiles_dir, dirs_exist_ok=True)

    gw = await Gateway.open(config)
    try:
        # an RSA root (one trust anchor) over an ECDSA issuing CA for ACME, EST and TLS
        # and an RSA one for SCEP (see RSA_ISSUING_CA)
        await gw.cas.hierarchy.create_root(ROOT_CA, "Gateway Dev Root CA", "RSA-3072")
        await gw.cas.load()
        root = await gw.cas.local(ROOT_CA)
        await gw.cas.hierarchy.create_intermediate(root, ISSUING_CA, "Gateway Dev Issuing CA", "EC-P256")
        await gw.cas.hierarchy.create_intermediate(root, RSA_ISSUING_CA, "Gateway Dev RSA Issuing CA", "RSA-2048")
        await gw.cas.load()
        await issue_tls_certificate(gw, list(dict.fromkeys(["localhost", "127.0.0.1", "::1", config.public_host])))
        for ca in gw.cas.issuing():
            await ca.ocsp_signer(config.duration("ocsp_signer_validity"))
            await gw.authority.crl(ca.id, force=True)
        await export_ca_files(gw)

        api_key = new_token(32)
        async with gw.store.transaction() as q:
            await q.api_keys.insert(
                ApiKeyRecord(id=uuid.uuid4().hex, name="dev-admin", key_sha256=api_key_hash(api_key))
            )
        creds: dict[str, Any] = {"admin_api_key": api_key}
        from .admin.roles import OWNER
        from .console.users import ConsoleUsers

        owner = await ConsoleUsers(gw.store, gw.clock).add(DEV_CONSOLE_USER, OWNER, actor="gateway init")
        creds["console"] = {"username": DEV_CONSOLE_USER, "password": owner.secret, "role": OWNER}
        creds.update(await bootstrap_protocols(gw, ISSUING_CA))
        _write_secret(data_dir / DEV_CREDENTIALS, json.dumps(creds, indent=2).encode())
    finally:
        await gw.close()
    return creds
