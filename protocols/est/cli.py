"""``gateway est ...``: create and tune EST labels, manage their Basic users.

Examples::

    gateway est create factory --profile device --auth certificate \\
        --trust-anchor manufacturer-ca.pem --pop-linking required
    gateway est user add factory provisioner        # prints a generated password once
    gateway est user list factory                   # who is disabled or locked out
    gateway est user unlock factory provisioner     # end a lockout now
    gateway est set est --approval manual --retry-after 300
    gateway est list

Users are the label's enrollment credentials (``door.credentials``): stored as scrypt
hashes in the store, never in the label's configuration, and audited there.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

from gateway.config import load_config
from gateway.door import CredentialInfo, Door, ProtocolConfigRecord, cli_actor, default_issuing_ca, open_door
from gateway.errors import BadRequest, NotFound

from .policy import AUTH_MODES, POP_LINKING, load_anchors, policy_for, validate_settings

PROTOCOL = "est"


async def _with_door(args: argparse.Namespace, fn: Callable[[Door], Awaitable[int]]) -> int:
    async with open_door(load_config(Path(args.data_dir)), PROTOCOL) as door:
        return await fn(door)


async def _label(door: Door, label: str) -> ProtocolConfigRecord:
    rec = await door.find_configuration(label)
    if rec is None:
        raise NotFound(f"no EST label {label!r}")
    return rec


def _trust_anchor_files(door: Door, label: str, files: list[str]) -> list[str]:
    """PEM texts for the label, and the files made known to the HTTPS listener.

    The listener verifies client certificates during the handshake, so an anchor
    it does not trust never reaches the label: the file is copied into the data
    directory and listed in ``[tls].client_trust_anchors`` (effective on restart).
    """
    pems = []
    for name in files:
        text = Path(name).read_text()
        load_anchors([text])
        pems.append(text)
    if pems:
        cfg = load_config(door.config.data_dir)
        target = Path("tls") / f"est-{label}-anchors.pem"
        (cfg.data_dir / target).parent.mkdir(parents=True, exist_ok=True)
        (cfg.data_dir / target).write_text("".join(pems))
        if str(target) not in cfg.tls.client_trust_anchors:
            cfg.tls.client_trust_anchors.append(str(target))
            cfg.save()
        print(f"trust anchors for {label} written to {target} and listed in [tls].client_trust_anchors; "
              "restart 'gateway serve' to load them", file=sys.stderr)
    return pems


def _settings_from_args(door: Door, label: str, args: argparse.Namespace) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in ("auth", "pop_linking", "approval", "retry_after", "serverkeygen_algorithm"):
        value = getattr(args, name, None)
        if value is not None:
            changes[name] = value
    if getattr(args, "serverkeygen", None) is not None:
        changes["serverkeygen"] = args.serverkeygen
    if getattr(args, "csrattrs_auth", None) is not None:
        changes["csrattrs_auth"] = args.csrattrs_auth
    if getattr(args, "default", False):
        changes["default"] = True
    if getattr(args, "csrattrs", None):
        raw = Path(args.csrattrs).read_bytes()
        if args.csrattrs.endswith(".json"):
            changes["csrattrs"] = json.loads(raw)
        else:  # a DER (or base64) CsrAttrs served as is
            der = raw if raw[:1] == b"\x30" else base64.b64decode(b"".join(raw.split()))
            changes["csrattrs"] = {"der": base64.b64encode(der).decode()}
    if getattr(args, "no_csrattrs", False):
        changes["csrattrs"] = None
    if getattr(args, "trust_anchor", None):
        changes["client_trust_anchors"] = _trust_anchor_files(door, label, args.trust_anchor)
    return changes


def _merged(settings: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    merged = dict(settings)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    validate_settings(merged)
    return merged


async def _clear_default(door: Door, keep: str) -> None:
    """One label answers at /.well-known/est/ at a time (the label losing it is audited too)."""
    for other in await door.configurations():
        if other.id != keep and other.settings.get("default"):
            await door.update_configuration(
                other.id, settings={k: v for k, v in other.settings.items() if k != "default"})
            await door.record_event("config_update", "success", protocol_config=other.id, ca_id=other.ca_id,
                                    actor=cli_actor(), fields=["default"])


async def cmd_create(args: argparse.Namespace) -> int:
    async def run(door: Door) -> int:
        settings = _merged({}, _settings_from_args(door, args.label, args))
        profiles = args.profile or ["device"]
        if settings.get("default"):
            await _clear_default(door, args.label)
        await door.create_configuration(args.label, args.ca, profiles, default_profile=args.default_profile,
                                        settings=settings, credentials={}, actor=cli_actor())
        print(f"created EST label {args.label}: {door.config.https_url}/.well-known/est/{args.label}/")
        return 0
    return await _with_door(args, run)


async def cmd_set(args: argparse.Namespace) -> int:
    async def run(door: Door) -> int:
        rec = await _label(door, args.label)
        changes = _settings_from_args(door, args.label, args)
        if not changes:
            raise BadRequest("nothing to change")
        settings = _merged(rec.settings, changes)
        if settings.get("default"):
            await _clear_default(door, rec.id)
        await door.update_configuration(rec.id, settings=settings)
        await door.record_event("config_update", "success", protocol_config=rec.id, ca_id=rec.ca_id,
                               actor=cli_actor(), fields=sorted(changes))
        print(f"updated EST label {rec.id}: {', '.join(sorted(changes))}")
        return 0
    return await _with_door(args, run)


async def _user(door: Door, label: str, username: str) -> CredentialInfo:
    found = await door.credentials.find_user(label, username)
    if found is None:
        raise NotFound(f"label {label} has no user {username!r}")
    return found


async def cmd_user_add(args: argparse.Namespace) -> int:
    async def run(door: Door) -> int:
        rec = await _label(door, args.label)
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
        issued = await door.credentials.create_user(rec.id, args.username, password, actor=cli_actor(), replace=True)
        if issued.credential.disabled:
            print(f"user {args.username!r} is disabled; 'gateway est user enable {rec.id} {args.username}' "
                  "lets it in again", file=sys.stderr)
        if not args.password_stdin:
            print(issued.secret)  # shown once; only its hash is stored
        return 0
    return await _with_door(args, run)


async def cmd_user_remove(args: argparse.Namespace) -> int:
    async def run(door: Door) -> int:
        rec = await _label(door, args.label)
        user = await _user(door, rec.id, args.username)
        await door.credentials.delete(rec.id, user.id, actor=cli_actor())
        return 0
    return await _with_door(args, run)


async def cmd_user_change(args: argparse.Namespace) -> int:
    """``disable`` / ``enable`` / ``unlock`` one user."""
    async def run(door: Door) -> int:
        rec = await _label(door, args.label)
        user = await _user(door, rec.id, args.username)
        verb = {"disable": door.credentials.disable, "enable": door.credentials.enable,
                "unlock": door.credentials.unlock}[args.est_user_command]
        await verb(rec.id, user.id, actor=cli_actor())
        return 0
    return await _with_door(args, run)


def _user_row(user: CredentialInfo, door: Door) -> dict[str, Any]:
    def stamp(value: dt.datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "username": user.username, "disabled": user.disabled, "locked": user.locked(door.clock()),
        "locked_until": stamp(user.locked_until), "failures": user.failures,
        "created_at": stamp(user.created_at), "last_used_at": stamp(user.last_used_at),
    }


async def cmd_user_list(args: argparse.Namespace) -> int:
    async def run(door: Door) -> int:
        rec = await _label(door, args.label)
        rows = [_user_row(u, door) for u in await door.credentials.list(rec.id, kind="user")]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for row in rows:
                print("  ".join(f"{k}={v}" for k, v in row.items()))
        return 0
    return await _with_door(args, run)


async def cmd_list(args: argparse.Namespace) -> int:
    async def run(door: Door) -> int:
        rows = []
        for rec in await door.configurations():
            policy = policy_for(rec)
            rows.append({
                "label": rec.id, "enabled": rec.enabled, "ca": rec.ca_id, "profile": rec.default_profile,
                "auth": policy.auth, "pop_linking": policy.pop_linking,
                "approval": "manual" if policy.manual_approval else "auto",
                "users": [u.username for u in await door.credentials.list(rec.id, kind="user")],
                "trust_anchors": [a.subject.rfc4514_string() for a in policy.trust_anchors],
                "csrattrs": policy.csrattrs is not None, "default": bool(rec.settings.get("default")),
                "url": f"{door.config.https_url}/.well-known/est/{rec.id}/",
            })
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for row in rows:
                print("  ".join(f"{k}={v}" for k, v in row.items()))
        return 0
    return await _with_door(args, run)


def _policy_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--auth", choices=AUTH_MODES, help="how clients authenticate (default either)")
    p.add_argument("--pop-linking", dest="pop_linking", choices=POP_LINKING,
                   help="tls-unique linking of the CSR to the TLS session (default optional)")
    p.add_argument("--approval", choices=["auto", "manual"], help="hold requests for an operator (202)")
    p.add_argument("--retry-after", dest="retry_after", type=int, help="seconds a held client waits")
    p.add_argument("--trust-anchor", dest="trust_anchor", action="append",
                   help="PEM file of a CA whose client certificates authenticate (repeatable)")
    p.add_argument("--csrattrs", help="CSR attributes: a .json spec, or a DER/base64 CsrAttrs file")
    p.add_argument("--no-csrattrs", dest="no_csrattrs", action="store_true", help="serve 204 on /csrattrs")
    p.add_argument("--csrattrs-auth", dest="csrattrs_auth", action=argparse.BooleanOptionalAction,
                   help="require the enrollment credentials on /csrattrs")
    p.add_argument("--serverkeygen", action=argparse.BooleanOptionalAction, help="offer /serverkeygen")
    p.add_argument("--serverkeygen-algorithm", dest="serverkeygen_algorithm",
                   help="key made when the CSR's key type is not allowed (default EC-P256)")
    p.add_argument("--default", action="store_true", help="serve this label at /.well-known/est/")


def add_commands(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]",
                 common: argparse.ArgumentParser) -> None:
    est = subparsers.add_parser("est", help="EST labels and their users").add_subparsers(
        dest="est_command", required=True)
    s = est.add_parser("list", parents=[common], help="EST labels and their policies")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.set_defaults(fn=cmd_list)
    s = est.add_parser("create", parents=[common], help="a new EST label (protocol configuration)")
    s.add_argument("label", help="EST label (path segment after /.well-known/est/)")
    s.add_argument("--ca", default=default_issuing_ca(), help="issuing CA id (default: the dev issuing CA)")
    s.add_argument("--profile", action="append", help="certificate profile (repeatable; first is default)")
    s.add_argument("--default-profile", dest="default_profile", help="certificate profile used when none is asked for")
    _policy_options(s)
    s.set_defaults(fn=cmd_create)
    s = est.add_parser("set", parents=[common], help="change a label's EST settings")
    s.add_argument("label", help="EST label (path segment after /.well-known/est/)")
    _policy_options(s)
    s.set_defaults(fn=cmd_set)
    user = est.add_parser("user", help="HTTP Basic users of a label").add_subparsers(
        dest="est_user_command", required=True)
    s = user.add_parser("add", parents=[common], help="add or reset a user; prints a generated password")
    s.add_argument("label", help="EST label (path segment after /.well-known/est/)")
    s.add_argument("username", help="HTTP Basic user name")
    s.add_argument("--password-stdin", dest="password_stdin", action="store_true",
                   help="read the password from stdin instead of generating one")
    s.set_defaults(fn=cmd_user_add)
    s = user.add_parser("remove", parents=[common], help="delete a user")
    s.add_argument("label", help="EST label (path segment after /.well-known/est/)")
    s.add_argument("username", help="HTTP Basic user name")
    s.set_defaults(fn=cmd_user_remove)
    for verb, text in (("disable", "refuse a user from now on (kept; 'enable' lets it in again)"),
                       ("enable", "let a disabled user in again"),
                       ("unlock", "end a lockout after repeated wrong passwords now")):
        s = user.add_parser(verb, parents=[common], help=text)
        s.add_argument("label", help="EST label (path segment after /.well-known/est/)")
        s.add_argument("username", help="HTTP Basic user name")
        s.set_defaults(fn=cmd_user_change)
    s = user.add_parser("list", parents=[common], help="a label's users: disabled, locked out, last used")
    s.add_argument("label", help="EST label (path segment after /.well-known/est/)")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.set_defaults(fn=cmd_user_list)
