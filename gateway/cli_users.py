"""``gateway user``: console users from the command line (the first Owner comes from here).

``add`` prints a generated password once (or takes one from ``--password-env`` /
``--password-stdin``, never from the command line); ``--client-cert`` registers a TLS
client certificate that signs in without a password.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .admin.roles import ROLE_TITLES, ROLES
from .errors import BadRequest

if TYPE_CHECKING:
    from .console.users import ConsoleUsers
    from .runtime import Gateway


def _users(gw: "Gateway") -> "ConsoleUsers":
    from .console.users import ConsoleUsers

    return ConsoleUsers(gw.store, gw.clock)


async def cmd_user_add(args: argparse.Namespace) -> int:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from .cli import _cli_actor, _with_gateway, read_secret

    password = read_secret(args.password_env, args.password_stdin)
    der = None
    if args.client_cert:
        try:
            cert = x509.load_pem_x509_certificate(Path(args.client_cert).read_bytes())
        except (OSError, ValueError) as exc:
            raise BadRequest(f"--client-cert: not a readable PEM certificate ({exc})") from None
        der = cert.public_bytes(Encoding.DER)

    async def run(gw: "Gateway") -> int:
        issued = await _users(gw).add(args.name, args.role, password=password, certificate_der=der,
                                      actor=_cli_actor())
        print(f"console user {args.name} ({ROLE_TITLES[args.role]}) created")
        if password is None:
            print(f"password (shown once): {issued.secret}")
        return 0

    return await _with_gateway(args, run)


async def cmd_user_list(args: argparse.Namespace) -> int:
    from .cli import _with_gateway

    async def run(gw: "Gateway") -> int:
        users = await _users(gw).list()
        rows = [{"username": u.username, "role": u.role, "client_certificate": u.cert_sha256,
                 "created_at": u.created_at.isoformat(), "created_by": u.created_by} for u in users]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for r in rows:
                print(f"{r['username']:<24} {r['role']:<18} {'certificate' if r['client_certificate'] else ''}")
        return 0

    return await _with_gateway(args, run)


async def cmd_user_role(args: argparse.Namespace) -> int:
    from .cli import _cli_actor, _with_gateway

    async def run(gw: "Gateway") -> int:
        await _users(gw).set_role(args.name, args.role, actor=_cli_actor())
        print(f"console user {args.name} is now {ROLE_TITLES[args.role]}")
        return 0

    return await _with_gateway(args, run)


async def cmd_user_password(args: argparse.Namespace) -> int:
    from .cli import _cli_actor, _with_gateway, read_secret
    from .console.users import CONFIG_ID

    password = read_secret(args.password_env, args.password_stdin)

    async def run(gw: "Gateway") -> int:
        users = _users(gw)
        if await users.get(args.name) is None:
            raise BadRequest(f"no console user {args.name!r}")
        value = await users.passwords.set_password(CONFIG_ID, args.name, password, actor=_cli_actor())
        print(f"password of {args.name} changed (failures and lockout cleared)")
        if password is None:
            print(f"password (shown once): {value}")
        return 0

    return await _with_gateway(args, run)


async def cmd_user_remove(args: argparse.Namespace) -> int:
    from .cli import _cli_actor, _with_gateway

    async def run(gw: "Gateway") -> int:
        await _users(gw).remove(args.name, actor=_cli_actor())
        print(f"console user {args.name} removed (its sessions end)")
        return 0

    return await _with_gateway(args, run)


def _secret_options(s: argparse.ArgumentParser) -> None:
    s.add_argument("--password-env", metavar="VAR", help="take the password from this environment variable")
    s.add_argument("--password-stdin", action="store_true", help="take the password from stdin's first line")


def add_commands(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", common: argparse.ArgumentParser) -> None:
    users = sub.add_parser("user", help="console users and their roles").add_subparsers(
        dest="user_command", required=True)
    s = users.add_parser("add", parents=[common], help="add a console user (a generated password is printed once)")
    s.add_argument("name", help="user name (2-64 printable characters, no ':')")
    s.add_argument("--role", choices=list(ROLES), required=True,
                   help="owner, ca-admin, certificate-admin, ca-auditor, protocol-operator, protocol-auditor")
    _secret_options(s)
    s.add_argument("--client-cert", metavar="PEM", help="also sign in with this TLS client certificate")
    s.set_defaults(fn=cmd_user_add)
    s = users.add_parser("list", parents=[common], help="console users (never passwords)")
    s.add_argument("--json", action="store_true", help="print the users as JSON")
    s.set_defaults(fn=cmd_user_list)
    s = users.add_parser("role", parents=[common], help="change a console user's role")
    s.add_argument("name", help="the user's name")
    s.add_argument("role", choices=list(ROLES), help="the new role")
    s.set_defaults(fn=cmd_user_role)
    s = users.add_parser("password", parents=[common], help="set a new password (generated when none is given)")
    s.add_argument("name", help="the user's name")
    _secret_options(s)
    s.set_defaults(fn=cmd_user_password)
    s = users.add_parser("remove", parents=[common], help="remove a console user")
    s.add_argument("name", help="the user's name")
    s.set_defaults(fn=cmd_user_remove)
