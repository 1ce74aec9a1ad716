"""The ``gateway`` command: init, serve, info, and operator commands for CAs and certificates.

Every command takes ``--data-dir`` (default ``$GATEWAY_DATA_DIR`` or ``./gateway-data``).
Errors print one line to stderr and exit 1 (2 for usage errors); no tracebacks.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Coroutine, TypeVar

from cryptography import x509

from .admin.roles import ROLES

from . import bootstrap, keygen_cli
from .ca.backend import RevocationReason
from .ca.pem import cert_to_pem, certs_to_pem
from .config import Config, default_data_dir, load_config, parse_duration
from .errors import ConfigError, GatewayError
from .info import gather_info
from .logs import configure as configure_logging
from .logs import emit_banner
from .runtime import Gateway
from .store import Store
from .store.records import CertificateFilter

if TYPE_CHECKING:
    from .ca.pkcs11 import Pkcs11Location


def _config(args: argparse.Namespace) -> Config:
    cfg = load_config(Path(args.data_dir))
    for name, value in _init_server_settings(args).items():
        if name.startswith("public"):
            setattr(cfg.server, name, value)
    return cfg.with_overrides(
        getattr(args, "host", None), getattr(args, "https_port", None), getattr(args, "http_port", None)
    )


def _require_init(args: argparse.Namespace) -> None:
    if not bootstrap.is_initialized(Path(args.data_dir)):
        raise ConfigError(f"{args.data_dir} is not initialized; run 'gateway init' first")


_T = TypeVar("_T")


async def _with_gateway(args: argparse.Namespace, fn: Callable[[Gateway], Awaitable[_T]]) -> _T:
    _require_init(args)
    gw = await Gateway.open(_config(args))
    try:
        return await fn(gw)
    finally:
        await gw.close()


# --- commands ---------------------------------------------------------------------
def _init_server_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``[server]`` settings ``init`` stores: listeners and the public URL its certificates carry."""
    out: dict[str, Any] = {}
    for name in ("host", "https_port", "http_port", "public_host", "public_https_port", "public_http_port"):
        value = getattr(args, name, None)
        if value is not None:
            out[name] = value
    if getattr(args, "public_url", None):
        from urllib.parse import urlsplit

        url = urlsplit(args.public_url)
        if url.scheme not in ("http", "https") or not url.hostname or url.path not in ("", "/"):
            raise ConfigError("--public-url must look like https://gateway.example.com[:port] (no path)")
        out["public_host"] = url.hostname
        port = url.port or (443 if url.scheme == "https" else 80)
        out["public_https_port" if url.scheme == "https" else "public_http_port"] = port
    return out


async def cmd_init(args: argparse.Namespace) -> int:
    await bootstrap.initialize(Path(args.data_dir), force=args.force, store_url=args.store_url,
                               server=_init_server_settings(args))
    print(f"initialized {Path(args.data_dir).resolve()}")
    creds = bootstrap.read_dev_credentials(_config(args))
    console = creds.get("console") or {}
    if console:
        print(f"console: sign in as {console['username']} with password {console['password']} "
              f"(role {console['role']}; development login, shown by gateway info --json)")
    print("dev credentials: gateway info --json --data-dir", args.data_dir)
    return 0


def _banner(info: dict[str, Any]) -> str:
    lines = [
        "enrollment gateway is running",
        f"  HTTPS            {info['https']}",
        f"  HTTP (CRL/OCSP)  {info['http']}",
        f"  admin API        {info['admin']['url']}  (OpenAPI: {info['admin']['url']}/openapi.json)",
        f"  console          {info['console']['url'] or '(off: [console] enabled = false)'}"
        + ("  (dev sign-in: gateway info --json | jq .console)" if info["console"].get("username") else ""),
        f"  TLS trust anchor {info['tls_ca']}",
    ]
    for ca in info["cas"]:
        lines.append(f"  CA {ca['id']:<13} CRL {ca['crl']}  OCSP {ca['ocsp']}")
    for proto, entries in info["protocols"].items():
        if not entries:
            lines.append(f"  {proto.upper():<16} (not available yet)")
        for entry in entries:
            url = entry.get("directory") or entry.get("url")
            lines.append(f"  {proto.upper():<16} {url}")
    lines.append("  credentials: gateway info --json")
    return "\n".join(lines)


def _with_workers(cfg: Config, args: argparse.Namespace) -> Config:
    if args.workers is not None:
        cfg.server.workers = args.workers
    return cfg


async def cmd_serve(args: argparse.Namespace) -> int:
    from .web.server import serve
    from .web.workers import run_workers, set_parent_death_signal, worker_sockets

    data_dir = Path(args.data_dir)
    if args.workers is not None and not 1 <= args.workers <= 64:
        raise ConfigError("--workers must be from 1 to 64")
    inherited = worker_sockets()
    if inherited is not None:  # a worker process started by the command below
        set_parent_death_signal()  # first: a parent that dies while this worker starts ends it too
        index, https_sock, http_sock = inherited
        cfg = _with_workers(_config(args), args)
        configure_logging(args.log_format or cfg.server.log_format, args.log_level or cfg.server.log_level)
        await serve(cfg, sockets=(https_sock, http_sock), worker=index)
        return 0
    if not bootstrap.is_initialized(data_dir):
        configure_logging(args.log_format or "text", args.log_level or "INFO")  # before config.toml exists
        emit_banner(f"initializing {data_dir.resolve()} (first run)", sys.stderr)
        # the first run stores the listeners it was given, so certificates made now match them
        await bootstrap.initialize(data_dir, server=_init_server_settings(args))
    cfg = _with_workers(_config(args), args)
    configure_logging(args.log_format or cfg.server.log_format, args.log_level or cfg.server.log_level)
    if cfg.worker_count > 1:
        argv = ["--data-dir", str(data_dir), "--workers", str(cfg.worker_count),
                "--host", cfg.server.host, "--https-port", str(cfg.server.https_port),
                "--http-port", str(cfg.server.http_port)]
        if args.log_format:
            argv += ["--log-format", args.log_format]
        if args.log_level:
            argv += ["--log-level", args.log_level]
        return await run_workers(cfg, argv, banner=await _banner_if_reachable(cfg))
    await serve(cfg, banner=lambda gw: _banner_now(cfg, gw.store))
    return 0


async def _banner_now(cfg: Config, store: Store | None = None) -> str:
    return _banner(await gather_info(cfg, store))


async def _banner_if_reachable(cfg: Config) -> str:
    """The workers' banner; while the store is unreachable the workers wait for it (and
    answer 503), so the parent says so instead of failing."""
    from .web.unready import store_unreachable

    try:
        return await _banner_now(cfg)
    except GatewayError as exc:
        if not store_unreachable(exc):
            raise
        return (f"gateway starting on {cfg.https_url} and {cfg.http_url}: the store is unreachable, "
                "the workers answer 503 until it is (gateway info --json once it is up)")


async def cmd_info(args: argparse.Namespace) -> int:
    _require_init(args)
    info = await gather_info(_config(args))
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(_banner(info).replace("is running", "configuration"))
    return 0


async def cmd_ca_list(args: argparse.Namespace) -> int:
    async def run(gw: Gateway) -> int:
        rows = [
            {"id": r.id, "name": r.name, "kind": r.kind, "state": r.state, "parent": r.parent_id,
             "key": r.key_algorithm, "backend": r.backend}
            for r in gw.cas.records()
        ]
        _print_rows(rows, args.json)
        return 0
    return await _with_gateway(args, run)


async def _create_upstream(gw: Gateway, args: argparse.Namespace) -> None:
    """A CA another server signs for (``--backend est`` or ``acme``): its certificate and
    chain come from the upstream (EST /cacerts) or the operator (ACME: --upstream-chain);
    the credentials are sealed in the CA record."""
    from .ca.upstream import est

    if args.parent or args.external or args.pkcs11_uri:
        raise ConfigError(f"--backend {args.backend} takes no --parent, --external or --pkcs11-* options")
    if not args.upstream_url:
        raise ConfigError(f"--backend {args.backend} needs --upstream-url")
    trust = Path(args.upstream_trust).read_text() if args.upstream_trust else None
    if args.backend == "acme":
        await _create_acme_upstream(gw, args, trust)
        return
    if args.backend == "adcs":
        await _create_adcs_upstream(gw, args, trust)
        return
    password = _upstream_password(args)
    settings = est.settings_for(
        args.id, gw.cas.sealer(est.KIND), url=args.upstream_url, username=args.upstream_user, password=password,
        client_certificate_pem=Path(args.upstream_client_cert).read_text() if args.upstream_client_cert else None,
        client_key_pem=Path(args.upstream_client_key).read_bytes() if args.upstream_client_key else None,
        trust_pem=trust,
    )
    issuing, chain = await est.discover(args.upstream_url, trust)
    cns = issuing.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    name = args.name or (str(cns[0].value) if cns else issuing.subject.rfc4514_string())
    await gw.cas.add_backend_ca(args.id, name, est.KIND, issuing, chain, settings)


def read_secret(env_name: str | None, from_stdin: bool) -> str | None:
    """A secret from a named environment variable (which must be set) or stdin's first line;
    None when neither is asked for. Never from the command line, where ps would show it."""
    if env_name:
        value = os.environ.get(env_name)
        if not value:
            raise ConfigError(f"the environment variable {env_name} is not set")
        return value
    return sys.stdin.readline().rstrip("\n") if from_stdin else None


def _upstream_password(args: argparse.Namespace) -> str | None:
    return read_secret(args.upstream_password_env, args.upstream_password_stdin)


async def _create_adcs_upstream(gw: Gateway, args: argparse.Namespace, trust: str | None) -> None:
    from .ca.upstream import wstep

    if not args.upstream_ca_cert:
        raise ConfigError("--backend adcs needs --upstream-ca-cert: the AD CS issuing CA certificate and its "
                          "chain (PEM; MS-WSTEP publishes no CA certificate)")
    issuing, chain = wstep.discover(args.upstream_url, Path(args.upstream_ca_cert).read_text(), trust)
    settings = wstep.settings_for(
        args.id, gw.cas.sealer(wstep.KIND), url=args.upstream_url, username=args.upstream_user,
        password=_upstream_password(args),
        client_certificate_pem=Path(args.upstream_client_cert).read_text() if args.upstream_client_cert else None,
        client_key_pem=Path(args.upstream_client_key).read_bytes() if args.upstream_client_key else None,
        trust_pem=trust, template=args.upstream_template,
    )
    cns = issuing.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    name = args.name or (str(cns[0].value) if cns else issuing.subject.rfc4514_string())
    await gw.cas.add_backend_ca(args.id, name, wstep.KIND, issuing, list(chain), settings)


async def _create_acme_upstream(gw: Gateway, args: argparse.Namespace, trust: str | None) -> None:
    from .ca.pem import load_certificates
    from .ca.upstream import acme

    if not args.upstream_chain:
        raise ConfigError("--backend acme needs --upstream-chain: the upstream's issuing CA certificate, then "
                          "its issuers (PEM; ACME publishes no CA certificates of its own)")
    chain = load_certificates(Path(args.upstream_chain).read_text())
    if not chain:
        raise ConfigError(f"{args.upstream_chain} holds no PEM certificate")
    hmac_key = None
    if args.upstream_eab_hmac_env:
        hmac_key = os.environ.get(args.upstream_eab_hmac_env)
        if not hmac_key:
            raise ConfigError(f"the environment variable {args.upstream_eab_hmac_env} is not set")
    settings = await acme.register(
        args.id, gw.cas.sealer(acme.KIND), directory=args.upstream_url, email=args.upstream_email,
        eab_kid=args.upstream_eab_kid, eab_hmac=hmac_key, trust_pem=trust, challenge=args.upstream_challenge,
        dns_hook=str(Path(args.upstream_dns_hook).resolve()) if args.upstream_dns_hook else None,
        profile=args.upstream_profile,
    )
    cns = chain[0].subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    name = args.name or (str(cns[0].value) if cns else chain[0].subject.rfc4514_string())
    await gw.cas.add_backend_ca(args.id, name, acme.KIND, chain[0], chain[1:], settings)


async def cmd_ca_create(args: argparse.Namespace) -> int:
    async def run(gw: Gateway) -> int:
        if args.backend in ("est", "acme", "adcs"):
            await _create_upstream(gw, args)
            await bootstrap.export_ca_files(gw)
            await gw.authority.events.record("ca_create", "success", ca_id=args.id, actor=_cli_actor(),
                                             kind="upstream", backend=args.backend, upstream=args.upstream_url)
            what = {"est": "EST server", "acme": "ACME CA", "adcs": "AD CS enrollment service"}[args.backend]
            print(f"created CA {args.id} (signed for by the {what} {args.upstream_url})", file=sys.stderr)
            return 0
        if not args.name:
            raise ConfigError("--name (the CA's common name) is required")
        validity = parse_duration(args.validity, "--validity") if args.validity else None
        h = gw.cas.hierarchy
        token = _token_location(args)
        if args.external and token is not None:
            raise ConfigError("--external CAs keep their key here; a token key is for --backend pkcs11 roots "
                              "and issuing CAs")
        if args.external:
            _, csr = await h.create_external_csr(args.id, args.name, args.key)
            if args.csr_out:
                Path(args.csr_out).write_bytes(csr)
            else:
                sys.stdout.write(csr.decode())
        elif args.parent:
            parent = await gw.cas.local(args.parent)
            await h.create_intermediate(parent, args.id, args.name, args.key, validity, token=token)
        else:
            await h.create_root(args.id, args.name, args.key, validity or parse_duration("P10Y", "validity"),
                                token=token)
        await gw.cas.load()
        await bootstrap.export_ca_files(gw)
        kind = "external_csr" if args.external else "intermediate" if args.parent else "root"
        detail = {"backend": "pkcs11", "key_location": token.uri()} if token is not None else {}
        await gw.authority.events.record("ca_create", "success", ca_id=args.id, actor=_cli_actor(), kind=kind,
                                         **detail)
        where = f" (key on {token.token_name}, object {token.key_label!r})" if token is not None else ""
        print(f"created CA {args.id}{where}", file=sys.stderr)
        return 0
    return await _with_gateway(args, run)


def _token_location(args: argparse.Namespace) -> "Pkcs11Location | None":
    """The PKCS#11 location ``--backend pkcs11`` asks for (None for a key held here)."""
    backend = getattr(args, "backend", "local")
    if backend == "local":
        if (args.pkcs11_uri or args.pkcs11_module or args.pkcs11_pin_env or args.pkcs11_pin_file
                or args.pkcs11_ocsp_signer):
            raise ConfigError("the --pkcs11-* options need --backend pkcs11")
        return None
    if backend != "pkcs11":
        raise ConfigError(f"--backend {backend}: gateway ca create makes local or pkcs11 CAs")
    if not args.pkcs11_uri:
        raise ConfigError("--backend pkcs11 needs --pkcs11-uri (e.g. 'pkcs11:token=gateway;object=my-ca')")
    if args.pkcs11_pin_env and args.pkcs11_pin_file:
        raise ConfigError("give --pkcs11-pin-env or --pkcs11-pin-file, not both")
    pin_source = (f"env:{args.pkcs11_pin_env}" if args.pkcs11_pin_env
                  else f"file:{Path(args.pkcs11_pin_file).resolve()}" if args.pkcs11_pin_file else None)
    from .ca.pkcs11 import Pkcs11Location

    return Pkcs11Location.from_uri(args.pkcs11_uri, default_label=args.id, module=args.pkcs11_module,
                                   pin_source=pin_source, ocsp_signer=args.pkcs11_ocsp_signer or "ca-key")


async def cmd_ca_import(args: argparse.Namespace) -> int:
    async def run(gw: Gateway) -> int:
        cert = Path(args.certificate).read_bytes()
        if args.root:
            await gw.cas.hierarchy.import_external_root(args.id, args.name or args.id, cert)
        else:
            if not args.chain:
                raise ConfigError("--chain (the issuer chain up to the root) is required")
            await gw.cas.hierarchy.import_signed_certificate(args.id, cert, Path(args.chain).read_bytes())
        await gw.cas.load()
        await bootstrap.export_ca_files(gw)
        await gw.authority.events.record("ca_import", "success", ca_id=args.id, actor=_cli_actor(),
                                         kind="external_root" if args.root else "external_signed")
        print(f"imported certificate for CA {args.id}", file=sys.stderr)
        return 0
    return await _with_gateway(args, run)


async def _crl_for(gw: Gateway, ca_id: str, force: bool, out: str | None) -> None:
    """Reissue one CA's CRL when due (or forced); one line to stderr either way."""
    ca = await gw.cas.backend(ca_id)
    async with gw.store.read() as q:
        record = await q.cas.get(ca.id)
    if not force and record is not None and not gw.authority.crl_due(record, gw.clock()):
        print(
            f"CRL for {ca.id} is current until {record.crl_next_update:%Y-%m-%dT%H:%M:%SZ} and not yet "
            "in its overlap period; use --force to reissue now", file=sys.stderr,
        )
        return
    der = await gw.authority.crl(ca.id, force=True)
    await gw.authority.events.record("crl_issue", "success", ca_id=ca.id, actor=_cli_actor(), forced=force)
    if out:
        Path(out).write_bytes(der)
    print(f"issued a new CRL for {ca.id}", file=sys.stderr)


async def cmd_ca_crl(args: argparse.Namespace) -> int:
    """One CA by id; without an id, every CA that publishes CRLs here, a line each."""
    async def run(gw: Gateway) -> int:
        if args.id is not None:
            await _crl_for(gw, args.id, bool(args.force), args.out)
            return 0
        if args.out:
            raise ConfigError("--out needs a CA id (without one, every CA's CRL is reissued)")
        code = 0
        for ca_id in [r.id for r in gw.cas.records()]:
            backend = next((b for b in gw.cas.issuing() if b.id == ca_id), None)
            if backend is None or not backend.capabilities.crl:
                continue
            try:
                await _crl_for(gw, ca_id, bool(args.force), None)
            except GatewayError as exc:
                print(f"CRL for {ca_id} not issued: {exc.detail}", file=sys.stderr)
                code = 1
        return code
    return await _with_gateway(args, run)


async def cmd_cert_issue(args: argparse.Namespace) -> int:
    async def run(gw: Gateway) -> int:
        from .ca.overrides import overrides_from_json

        overrides = overrides_from_json(json.loads(args.overrides)) if args.overrides else None
        csr = Path(args.csr).read_bytes()
        kwargs = {"overrides": overrides} if overrides else {}
        issued = await gw.authority.issue_direct(args.ca, csr, args.profile, actor=_cli_actor(), source="cli", **kwargs)
        out = cert_to_pem(issued.certificate)
        if args.chain:
            out += certs_to_pem(issued.chain)
        sys.stdout.write(out)
        return 0
    return await _with_gateway(args, run)


async def cmd_cert_revoke(args: argparse.Namespace) -> int:
    async def run(gw: Gateway) -> int:
        status = await gw.authority.revoke(args.serial, RevocationReason.parse(args.reason), actor=_cli_actor())
        print(f"revoked {args.serial} ({status.reason.name if status.reason else 'unspecified'})")
        return 0
    return await _with_gateway(args, run)


async def cmd_cert_list(args: argparse.Namespace) -> int:
    async def run(gw: Gateway) -> int:
        flt = CertificateFilter(ca_id=args.ca, status=args.status, profile=args.profile)
        async with gw.store.read() as q:
            records = await q.certificates.list(flt, limit=args.limit)
        rows = [
            {"serial": r.serial, "ca": r.ca_id, "status": r.status, "profile": r.profile,
             "subject": r.subject, "not_after": r.not_after.isoformat()}
            for r in records
        ]
        _print_rows(rows, args.json)
        return 0
    return await _with_gateway(args, run)


async def cmd_entity_list(args: argparse.Namespace) -> int:
    async def run(gw: Gateway) -> int:
        async with gw.store.read() as q:
            records = await q.entities.list(args.status, args.config, limit=args.limit)
        rows = [{"id": r.id, "name": r.name, "kind": r.kind, "status": r.status, "config": r.protocol_config}
                for r in records]
        _print_rows(rows, args.json)
        return 0
    return await _with_gateway(args, run)


async def cmd_entity_status(args: argparse.Namespace) -> int:
    async def run(gw: Gateway) -> int:
        change = await gw.authority.change_entity_status(
            args.id, args.status, _cli_actor(), revoke_certificates=args.revoke_certificates,
        )
        line = f"end entity {change.entity.name} ({change.entity.id}) is {change.entity.status}"
        if args.revoke_certificates:
            line += f"; revoked {change.revoked} certificate(s) (cessationOfOperation)"
            if change.failed:
                line += f", {change.failed} could not be revoked (see the events)"
        if change.remaining_valid:
            line += f"; {change.remaining_valid} certificate(s) remain valid"
            if args.status == "decommissioned" and not args.revoke_certificates:
                line += " (add --revoke-certificates to revoke them)"
        print(line)
        return 1 if change.failed else 0
    return await _with_gateway(args, run)


def _cli_actor() -> str:
    """Who an operator command is audited as: ``cli:<os user>`` (shared with the protocols' commands)."""
    from .door import cli_actor

    return cli_actor()


async def cmd_apikey_create(args: argparse.Namespace) -> int:
    async def run(gw: Gateway) -> int:
        from .admin.keys import create_key, parse_lifetime

        expires_at = gw.clock() + parse_lifetime(args.expires) if args.expires else None
        _, key = await create_key(gw, args.name, role=args.role, expires_at=expires_at, by=_cli_actor())
        print(key)  # shown once; only its hash is stored
        return 0
    return await _with_gateway(args, run)


async def cmd_apikey_list(args: argparse.Namespace) -> int:
    async def run(gw: Gateway) -> int:
        from .admin.keys import key_view, list_keys

        now = gw.clock()
        _print_rows([key_view(r, now) for r in await list_keys(gw)], args.json)
        return 0
    return await _with_gateway(args, run)


async def cmd_apikey_revoke(args: argparse.Namespace) -> int:
    async def run(gw: Gateway) -> int:
        from .admin.keys import revoke_key

        rec = await revoke_key(gw, args.key, by=_cli_actor())
        print(f"revoked API key {rec.name} ({rec.id})", file=sys.stderr)
        return 0
    return await _with_gateway(args, run)


def _print_rows(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        print("  ".join(f"{k}={v}" for k, v in row.items()))


# --- parser -----------------------------------------------------------------------
STORE_URL_ENV = "GATEWAY_STORE_URL"
"""``gateway init``'s store URL when ``--store-url`` is not given (containers, replicas)."""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-dir", default=str(default_data_dir()),
                        help="data directory (default $GATEWAY_DATA_DIR or ./gateway-data)")
    listen = argparse.ArgumentParser(add_help=False)
    listen.add_argument("--host", help="listen address (default 127.0.0.1)")
    listen.add_argument("--https-port", type=int, help="HTTPS port (default 8443)")
    listen.add_argument("--http-port", type=int, help="plain HTTP port (default 8080)")

    p = argparse.ArgumentParser(prog="gateway", description="certificate enrollment gateway")
    sub = p.add_subparsers(dest="command", required=True)

    public = argparse.ArgumentParser(add_help=False)
    public.add_argument("--public-host", help="host name clients use, put in certificates' CRL/OCSP/CA "
                        "URLs and the banner (default: --host; 0.0.0.0 and :: are refused)")
    public.add_argument("--public-url", help="public base URL instead of --public-host, e.g. "
                        "https://gw.example.com (its port, 443 by default, becomes the public HTTPS port)")
    public.add_argument("--public-http-port", type=int, help="port in the public http:// URLs when a "
                        "proxy or NAT maps it (default: --http-port)")
    public.add_argument("--public-https-port", type=int, help="port in the public https:// URLs "
                        "(default: --https-port)")

    s = sub.add_parser("init", parents=[common, listen, public], help="create the data directory with dev CAs; "
                       "listeners and the public URL are stored in config.toml")
    s.add_argument("--force", action="store_true", help="wipe and recreate an existing data directory")
    s.add_argument("--store-url", default=os.environ.get(STORE_URL_ENV) or None,
                   help="keep the store in this database instead of the embedded SQLite file, e.g. "
                   f"postgresql://user@host:5432/gateway (several replicas share one; default ${STORE_URL_ENV})")
    s.set_defaults(fn=cmd_init)

    s = sub.add_parser("serve", parents=[common, listen, public],
                       help="run the gateway (init on first run, with these listener and public options)")
    s.add_argument("--log-format", choices=["text", "json"], help="log line format (default text)")
    s.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], type=str.upper,
                   help="least severe level logged (default [server] log_level, INFO); WARNING drops "
                   "the per-request access lines")
    s.add_argument("--workers", type=int, help="serving processes sharing the listeners (default 1; "
                   "[server] workers)")
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser("info", parents=[common, listen], help="URLs, CAs and dev credentials")
    s.add_argument("--json", action="store_true", help="print JSON instead of text")
    s.set_defaults(fn=cmd_info)

    ca = sub.add_parser("ca", help="certificate authorities").add_subparsers(dest="ca_command", required=True)
    s = ca.add_parser("list", parents=[common], help="list the certificate authorities")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(fn=cmd_ca_list)
    s = ca.add_parser("create", parents=[common], help="a root, an issuing CA (--parent) or an external CSR")
    s.add_argument("id", help="CA id (used by --ca and --parent)")
    s.add_argument("--name", help="subject common name of the CA (an upstream CA: a display name, "
                   "default its certificate's)")
    s.add_argument("--key", default="EC-P384", help="RSA-2048|RSA-3072|RSA-4096|EC-P256|EC-P384|EC-P521")
    s.add_argument("--parent", help="sign by this local CA (issuing CA)")
    s.add_argument("--external", action="store_true", help="make a CSR for an external root to sign")
    s.add_argument("--csr-out", help="where to write the CSR (default stdout)")
    s.add_argument("--validity", help="ISO 8601 duration, e.g. P10Y")
    s.add_argument("--backend", choices=("local", "pkcs11", "est", "acme", "adcs"), default="local",
                   help="who signs: a key encrypted in the data directory (local), a key on a PKCS#11 token "
                   "(pkcs11), another EST server (est), an ACME CA (acme) or an AD CS / Microsoft CA through "
                   "its CES (adcs, MS-WSTEP), with --upstream-*")
    s.add_argument("--pkcs11-uri", help="RFC 7512 URI of the token and key label, e.g. "
                   "'pkcs11:token=gateway;object=hsm-root?module-path=/usr/lib/softhsm/libsofthsm2.so'")
    s.add_argument("--pkcs11-module", help="PKCS#11 module (default: the URI's module-path or $GATEWAY_PKCS11_MODULE)")
    s.add_argument("--pkcs11-pin-env", help="environment variable holding the token PIN "
                   "(default GATEWAY_PKCS11_PIN); the PIN is never stored")
    s.add_argument("--pkcs11-pin-file", help="file holding the token PIN (instead of --pkcs11-pin-env)")
    s.add_argument("--pkcs11-ocsp-signer", choices=("ca-key", "delegated"),
                   help="who signs OCSP responses: the token key itself (ca-key, the default) or a delegated "
                   "responder certificate the token signs, whose key is kept here (fewer token operations)")
    s.add_argument("--upstream-url", help="the upstream's URL (est: https://host/.well-known/est[/label]; "
                   "acme: its directory URL; adcs: the CES URL, .../service.svc/CES)")
    s.add_argument("--upstream-ca-cert", help="adcs: PEM file of the issuing CA certificate and its chain")
    s.add_argument("--upstream-template", help="adcs: the certificate template to ask for (e.g. WebServer)")
    s.add_argument("--upstream-chain", help="acme: PEM file of the upstream's issuing CA certificate, then its issuers")
    s.add_argument("--upstream-email", help="acme: the account's contact address")
    s.add_argument("--upstream-eab-kid", help="acme: external account binding key id (used once, not stored)")
    s.add_argument("--upstream-eab-hmac-env", help="acme: environment variable holding the EAB HMAC key (base64url)")
    s.add_argument("--upstream-challenge", choices=("http-01", "dns-01"), default="http-01",
                   help="acme: http-01 answered on this gateway's HTTP listener, or dns-01 through --upstream-dns-hook")
    s.add_argument("--upstream-dns-hook", help="acme: command run as '<hook> present|cleanup <domain> <txt value>'")
    s.add_argument("--upstream-profile", help="acme: the upstream's certificate profile to order (draft ACME profiles)")
    s.add_argument("--upstream-trust", help="PEM bundle the upstream's TLS certificate must chain to "
                   "(default: the system's roots)")
    s.add_argument("--upstream-user", help="HTTP Basic user at the upstream")
    s.add_argument("--upstream-password-env", help="environment variable holding that user's password")
    s.add_argument("--upstream-password-stdin", action="store_true", help="read that password from stdin")
    s.add_argument("--upstream-client-cert", help="PEM client certificate for TLS authentication at the upstream")
    s.add_argument("--upstream-client-key", help="its PEM private key (sealed in the store; unencrypted PEM)")
    s.set_defaults(fn=cmd_ca_create)
    s = ca.add_parser("import", parents=[common], help="import a signed CA certificate or an external root")
    s.add_argument("id", help="CA id (of the CA created with --external, or a new one for --root)")
    s.add_argument("certificate", help="PEM file of the signed CA certificate")
    s.add_argument("--chain", help="issuer chain PEM (for an externally signed CA)")
    s.add_argument("--root", action="store_true", help="import an external root (no key)")
    s.add_argument("--name", help="display name (default: the certificate's subject)")
    s.set_defaults(fn=cmd_ca_import)
    s = ca.add_parser("crl", parents=[common], help="reissue a CA's CRL when due (or --force); "
                      "without an id, the CRL of every CA whose CRLs this gateway signs")
    s.add_argument("id", nargs="?", help="CA id (default: every CA that publishes CRLs here, one line each)")
    s.add_argument("--force", action="store_true", help="reissue even if the current CRL is not due")
    s.add_argument("--out", help="also write the DER CRL here")
    s.set_defaults(fn=cmd_ca_crl)

    cert = sub.add_parser("cert", help="certificates").add_subparsers(dest="cert_command", required=True)
    s = cert.add_parser("issue", parents=[common], help="issue from a CSR; prints the PEM certificate")
    s.add_argument("--csr", required=True, help="PEM or DER CSR file")
    s.add_argument("--profile", default="tls-server", help="certificate profile (default tls-server)")
    s.add_argument("--ca", default=bootstrap.ISSUING_CA, help="issuing CA id (default: the dev issuing CA)")
    s.add_argument("--chain", action="store_true", help="append the CA chain")
    s.add_argument("--overrides", help="JSON request overrides (subject, sans, validity_seconds, ...)")
    s.set_defaults(fn=cmd_cert_issue)
    keygen_cli.add_cli(cert, common)
    s = cert.add_parser("revoke", parents=[common], help="revoke a certificate by serial")
    s.add_argument("serial", help="hex serial")
    s.add_argument("--reason", default="unspecified", help="RFC 5280 reason name or code")
    s.set_defaults(fn=cmd_cert_revoke)
    s = cert.add_parser("list", parents=[common], help="list issued certificates")
    s.add_argument("--ca", help="only this CA's certificates")
    s.add_argument("--status", choices=["valid", "revoked", "hold"], help="only certificates in this status")
    s.add_argument("--profile", help="only certificates of this profile")
    s.add_argument("--limit", type=int, default=100, help="at most this many rows (default 100)")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(fn=cmd_cert_list)

    ent = sub.add_parser("entity", help="end entities (devices, users, ACME accounts)").add_subparsers(
        dest="entity_command", required=True)
    s = ent.add_parser("list", parents=[common], help="list end entities by name")
    s.add_argument("--status", choices=["active", "inactive", "decommissioned"], help="only entities in this state")
    s.add_argument("--config", help="only entities of this protocol configuration")
    s.add_argument("--limit", type=int, default=100, help="at most this many rows (default 100)")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(fn=cmd_entity_list)
    s = ent.add_parser("status", parents=[common], help="activate, deactivate or decommission an end entity "
                       "(decommissioning is final)")
    s.add_argument("id", help="end entity id (gateway entity list)")
    s.add_argument("status", choices=["active", "inactive", "decommissioned"], help="the new status")
    s.add_argument("--revoke-certificates", action="store_true", help="with decommissioned: also revoke "
                   "its certificates in force (reason cessationOfOperation)")
    s.set_defaults(fn=cmd_entity_status)

    from gateway.composition import adapters

    for adapter in adapters():
        adapter.add_cli(sub, common)

    key = sub.add_parser("apikey", help="admin API keys").add_subparsers(dest="key_command", required=True)
    s = key.add_parser("create", parents=[common], help="create an admin API key (printed once)")
    s.add_argument("name", help="unique name (1-64 letters, digits, _.@:-)")
    s.add_argument("--role", choices=list(ROLES), default="admin",
                   help="owner, ca-admin, certificate-admin, ca-auditor, protocol-operator, protocol-auditor; "
                        "admin (= owner) and auditor (reads everything) as before (default: admin)")
    s.add_argument("--expires", help="lifetime: 30d, 12h, 2w or an ISO 8601 duration (default: never)")
    s.set_defaults(fn=cmd_apikey_create)
    s = key.add_parser("list", parents=[common], help="keys and client certificates (never the key)")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(fn=cmd_apikey_list)
    s = key.add_parser("revoke", parents=[common], help="revoke a key by name or id")
    s.add_argument("key", metavar="NAME_OR_ID", help="the key's name or id")
    s.set_defaults(fn=cmd_apikey_revoke)

    from .cli_events import add_command as add_events_command

    add_events_command(sub, common)
    from .cli_distribution import add_commands as add_distribution_commands

    add_distribution_commands(sub, common)
    from .cli_notifications import add_commands as add_notify_commands

    add_notify_commands(sub, common)
    from .cli_users import add_commands as add_user_commands

    add_user_commands(sub, common)
    return p


def _loop_factory(args: argparse.Namespace) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop for ``serve`` (measured +10% ACME throughput at c8) unless
    ``[server] event_loop = "asyncio"``; the standard loop for everything else."""
    if args.command != "serve":
        return None
    choice = "auto"
    try:
        choice = load_config(Path(args.data_dir)).server.event_loop
    except (GatewayError, OSError):
        pass  # not initialized yet, or broken: serve reports that itself
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("[server].event_loop is 'uvloop' but uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command != "serve":
        configure_logging("text", "WARNING")
    try:
        with asyncio.Runner(loop_factory=_loop_factory(args)) as runner:
            # every sub-command sets fn to an ``async def cmd_*(args) -> int`` (here or in an adapter's add_cli)
            command: Callable[[argparse.Namespace], Coroutine[Any, Any, int]] = args.fn
            return runner.run(command(args))
    except GatewayError as exc:
        print(f"gateway: error: {exc.detail}", file=sys.stderr)
        return 1
    except (OSError, json.JSONDecodeError) as exc:
        print(f"gateway: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
