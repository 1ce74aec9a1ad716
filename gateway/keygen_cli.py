"""``gateway cert keygen``: server-side key generation to a PKCS#12 file (see :mod:`gateway.keygen`).

The password never goes on the command line (where ``ps`` and shell history show it):
it comes from ``--password-file``, else ``$GATEWAY_PKCS12_PASSWORD``, else a prompt on
a terminal.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .keygen import DEFAULT_ALGORITHM, MIN_PASSWORD, keygen_pkcs12, order
from .keys import KEY_ALGORITHMS

PASSWORD_ENV = "GATEWAY_PKCS12_PASSWORD"


def read_password(args: argparse.Namespace) -> str:
    if args.password_file:
        text = Path(args.password_file).read_text(encoding="utf-8")
        return text.splitlines()[0] if text else ""
    env = os.environ.get(PASSWORD_ENV)
    if env is not None:
        return env
    if not sys.stdin.isatty():
        raise ConfigError(f"give the PKCS#12 password with --password-file or ${PASSWORD_ENV} "
                          "(or run on a terminal to be asked)")
    first = getpass.getpass("PKCS#12 password: ")
    if getpass.getpass("again: ") != first:
        raise ConfigError("the passwords do not match")
    return first


async def cmd_cert_keygen(args: argparse.Namespace) -> int:
    from .cli import _cli_actor, _with_gateway
    from .runtime import Gateway
    from .store.records import serial_hex

    out = Path(args.out)
    if out.exists():
        raise ConfigError(f"{out} exists; remove it or choose another --out")
    req = order(args.config, password=read_password(args), common_name=args.cn, subject=args.subject,
                sans=args.san or [], profile=args.profile, key_algorithm=args.key_algorithm,
                encryption="legacy" if args.legacy else "modern", entity=args.entity)

    async def run(gw: Gateway) -> int:
        result = await keygen_pkcs12(gw.authority, req, actor=_cli_actor(), source="cli")
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(result.pkcs12)
        print(f"issued {serial_hex(result.issued.serial)} for {req.subject.rfc4514_string()}; "
              f"{'legacy' if args.legacy else 'modern'} PKCS#12 written to {out}")
        return 0
    return await _with_gateway(args, run)


def add_cli(cert: Any, common: argparse.ArgumentParser) -> None:
    """``keygen`` under ``gateway cert`` (``cert`` is its sub-parsers object)."""
    s = cert.add_parser("keygen", parents=[common], help="generate a key on the server, issue its certificate "
                        "under a protocol configuration and write both as a password-protected PKCS#12")
    s.add_argument("--config", required=True, help="protocol configuration whose CA, profiles and end "
                   "entities are used (e.g. est; gateway info --json lists them)")
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--cn", help="subject commonName (also the PKCS#12 friendly name and the entity name)")
    who.add_argument("--subject", help="RFC 4514 subject instead of --cn, e.g. 'CN=dev1,O=Example'")
    s.add_argument("--san", action="append", help="subjectAltName TYPE:value (DNS, IP, email, URI); repeatable")
    s.add_argument("--profile", help="certificate profile (default: the configuration's default)")
    s.add_argument("--key-algorithm", choices=list(KEY_ALGORITHMS),
                   help=f"key to make (default {DEFAULT_ALGORITHM['modern']}, "
                   f"{DEFAULT_ALGORITHM['legacy']} with --legacy)")
    s.add_argument("--entity", help="end entity name (default: the commonName)")
    s.add_argument("--out", required=True, help="PKCS#12 file to write (mode 0600; must not exist)")
    s.add_argument("--password-file", help=f"read the password (at least {MIN_PASSWORD} characters) from the "
                   f"first line of this file (default ${PASSWORD_ENV}, else a prompt)")
    s.add_argument("--legacy", action="store_true", help="3DES/SHA-1 PKCS#12 for old devices (default: "
                   "AES-256-CBC, PBKDF2-HMAC-SHA256, SHA-256 MAC)")
    s.set_defaults(fn=cmd_cert_keygen)
