"""``gateway scep intune ...``: a SCEP configuration's Microsoft Intune connection.

    echo "$SECRET" | gateway scep intune set --config intune --tenant contoso.onmicrosoft.com \\
        --client-id 11111111-2222-3333-4444-555555555555 --client-secret-stdin
    gateway scep intune show --config intune     # the values for the Intune profiles
    gateway scep intune sync --config intune     # one revocation pass now

The client secret is read from stdin only (never the command line), sealed under the CA
passphrase and stored sealed; every change is audited (``config_update``).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from gateway.door import Door, DoorCommand, ProtocolConfigRecord, cli_actor, door_command
from gateway.errors import BadRequest, ConfigError

from ..settings import parse_settings
from .clients import IntuneClients
from .revocation import sync_revocations
from .settings import VERIFIER, parse_intune, seal_key, seal_secret

PROTOCOL = "scep"
Command = DoorCommand


def _with_door(fn: Command) -> Callable[[argparse.Namespace], Awaitable[int]]:
    return door_command(PROTOCOL, fn)


def intune_table(args: argparse.Namespace, current: dict[str, Any], door: Door, config_id: str) -> dict[str, Any]:
    """The ``intune`` table after ``set``: options given replace, the rest stays."""
    table = dict(current)
    for key, value in (("tenant", args.tenant), ("client_id", args.client_id),
                       ("authority_url", args.authority_url), ("graph_url", args.graph_url),
                       ("ca_file", args.ca_file), ("timeout_seconds", args.timeout), ("retries", args.retries),
                       ("revocation_sync_seconds", args.revocation_sync_seconds)):
        if value is not None:
            table[key] = value
    if args.client_secret_stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
        if not secret:
            raise BadRequest("the client secret read from stdin is empty")
        table["client_secret"] = seal_secret(door, config_id, secret)
        table.pop("client_certificate", None)
        table.pop("client_key", None)
    if (args.client_certificate is None) != (args.client_key_file is None):
        raise BadRequest("--client-certificate and --client-key-file go together")
    if args.client_certificate is not None:
        if args.client_secret_stdin:
            raise BadRequest("give a client secret or a certificate, not both")
        table["client_certificate"] = str(Path(args.client_certificate).resolve())
        _thumbprint_of(Path(table["client_certificate"]))  # refused now if it is no certificate
        try:
            key_pem = Path(args.client_key_file).read_bytes()
            serialization.load_pem_private_key(key_pem, password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise BadRequest(f"--client-key-file: not an unencrypted PEM private key ({type(exc).__name__})") from None
        table["client_key"] = seal_key(door, config_id, key_pem)
        table.pop("client_secret", None)
    return table


def _thumbprint_of(path: Path) -> str:
    """The SHA-1 thumbprint Entra shows for an uploaded certificate."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise BadRequest(f"{path}: not a PEM certificate ({type(exc).__name__})") from None
    return cert.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - Entra's thumbprint


async def cmd_set(door: Door, args: argparse.Namespace) -> int:
    rec = await door.configuration(args.config)
    settings = copy.deepcopy(rec.settings)
    settings["intune"] = intune_table(args, settings.get("intune") or {}, door, rec.id)
    verifiers = settings.get("challenge_verifiers")
    if isinstance(verifiers, list) and VERIFIER not in verifiers:
        settings["challenge_verifiers"] = [VERIFIER, *verifiers]  # Intune asked first
    parse_settings(settings, rec.id)  # refused before anything is stored
    await door.update_configuration(rec.id, settings=settings)
    await door.record_event("config_update", "success", protocol_config=rec.id, ca_id=rec.ca_id,
                            actor=cli_actor(), fields=["intune"])
    print(json.dumps(show(door, rec.id, rec.ca_id, settings), indent=2))
    return 0


def show(door: Door, config_id: str, ca_id: str, settings: dict[str, Any]) -> dict[str, Any]:
    """The Intune profiles' values: SCEP server URL and the chain to upload as trusted certificate."""
    intune = parse_intune(settings.get("intune"), config_id)
    out: dict[str, Any] = {
        "config": config_id,
        "scep_server_url": f"{door.config.http_url}/scep/{config_id}",
        "trusted_certificate_chain": str((door.config.data_dir / "cas" / f"{ca_id}-chain.pem").resolve()),
    }
    if intune is not None:
        out.update(tenant=intune.tenant, client_id=intune.client_id, authority_url=intune.authority_url,
                   graph_url=intune.graph_url, revocation_sync_seconds=intune.revocation_sync_seconds)
        if intune.client_certificate is not None:  # upload it under Certificates & secrets
            out.update(client_certificate=str(intune.client_certificate),
                       client_certificate_thumbprint=_thumbprint_of(intune.client_certificate))
    return out


async def _intune_configuration(door: Door, config_id: str) -> ProtocolConfigRecord:
    rec = await door.configuration(config_id)
    if not isinstance(rec.settings.get("intune"), dict):
        raise ConfigError(f"SCEP configuration {config_id!r} has no Intune connection; set it with "
                          f"`gateway scep intune set --config {config_id} ...`")
    return rec


async def cmd_show(door: Door, args: argparse.Namespace) -> int:
    rec = await _intune_configuration(door, args.config)
    print(json.dumps(show(door, rec.id, rec.ca_id, rec.settings), indent=2))
    return 0


async def cmd_sync(door: Door, args: argparse.Namespace) -> int:
    rec = await _intune_configuration(door, args.config)
    intune = parse_intune(rec.settings.get("intune"), rec.id)
    assert intune is not None
    clients = IntuneClients(door)
    try:
        report = await sync_revocations(door, await clients.client(rec.id, intune), rec, actor=cli_actor())
    finally:
        await clients.close()
    print(json.dumps(report.as_dict()))
    return 0


def add_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser,
            config: argparse.ArgumentParser) -> None:
    intune = sub.add_parser("intune", help="Microsoft Intune: challenge validation and revocation sync")
    verbs = intune.add_subparsers(dest="scep_intune_command", required=True)
    s = verbs.add_parser("set", parents=[common, config], help="set (or change) the Intune connection")
    s.add_argument("--tenant", help="Entra tenant id (GUID) or name (contoso.onmicrosoft.com)")
    s.add_argument("--client-id", help="the app registration's application (client) id")
    s.add_argument("--client-secret-stdin", action="store_true", help="read the client secret from stdin (sealed)")
    s.add_argument("--client-certificate", help="the app's PEM certificate, instead of a secret (its path is stored)")
    s.add_argument("--client-key-file", help="its unencrypted PEM private key (read once, sealed)")
    s.add_argument("--authority-url", help="Entra ID base URL (default https://login.microsoftonline.com)")
    s.add_argument("--graph-url", help="Microsoft Graph base URL (default https://graph.microsoft.com)")
    s.add_argument("--ca-file", help="extra CA bundle for Entra ID, Graph and Intune (absolute path)")
    s.add_argument("--timeout", type=float, help="seconds per HTTP call (default 10)")
    s.add_argument("--retries", type=int, help="attempts on 5xx, timeouts and connection errors (default 3)")
    s.add_argument("--revocation-sync-seconds", type=int, help="revocation sync period; 0 turns it off (default 900)")
    s.set_defaults(fn=_with_door(cmd_set))
    s = verbs.add_parser("show", parents=[common, config], help="the values for the Intune profiles")
    s.set_defaults(fn=_with_door(cmd_show))
    s = verbs.add_parser("sync", parents=[common, config], help="run one revocation sync pass now")
    s.set_defaults(fn=_with_door(cmd_sync))
