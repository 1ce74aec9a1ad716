"""Gateway configuration: one TOML file in the data directory, validated on load.

The data directory holds everything a gateway instance owns::

    config.toml        this file
    profiles/          certificate profiles (TOML, see gateway.profiles)
    cas/<id>.pem       exported CA certificates and chains (for operators and clients)
    tls/               the HTTPS listener's certificate and key
    secrets/           CA-key passphrase and dev credentials (mode 0600)
    gateway.db         the embedded SQLite store (unless [store].url points elsewhere)
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import isodate
import tomli_w

from .errors import ConfigError

DATA_DIR_ENV = "GATEWAY_DATA_DIR"
PASSPHRASE_ENV = "GATEWAY_CA_PASSPHRASE"
DEFAULT_DATA_DIR = "./gateway-data"
CONFIG_FILE = "config.toml"
DEV_CREDENTIALS = "secrets/dev-credentials.json"
METRICS_ACCESS = ("key", "public", "off")


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def parse_duration(value: str, where: str) -> dt.timedelta:
    """ISO 8601 duration to timedelta; years and months count as 365 and 30 days."""
    try:
        parsed = isodate.parse_duration(value)  # untyped: a timedelta, or a Duration when years/months appear
    except (isodate.ISO8601Error, ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {value!r} is not an ISO 8601 duration") from exc
    delta: dt.timedelta
    if isinstance(parsed, isodate.Duration):
        delta = dt.timedelta(days=int(parsed.years) * 365 + int(parsed.months) * 30) + parsed.tdelta
    else:
        delta = parsed
    if delta <= dt.timedelta(0):
        raise ConfigError(f"{where}: duration must be positive")
    return delta


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    https_port: int = 8443
    http_port: int = 8080
    public_host: str = ""  # host name put in CDP/AIA/directory URLs; defaults to host
    public_http_port: int = 0  # port in the public http:// URLs (behind a proxy or NAT); 0: http_port
    public_https_port: int = 0  # port in the public https:// URLs; 0: https_port
    max_body_bytes: int = 1 << 20
    log_format: str = "text"  # "text" | "json"
    log_level: str = "INFO"
    shutdown_timeout: float = 10.0
    event_loop: str = "auto"  # "auto" (uvloop when installed) | "uvloop" | "asyncio"
    # serving processes on the same listeners (one core each); > 1 implies replicas.
    # "auto": one on SQLite (one writer: more processes only contend for it), one per
    # core up to AUTO_WORKERS_MAX on PostgreSQL (see Config.worker_count)
    workers: int | str = "auto"
    metrics: str = "key"  # /metrics: "key" (HTTPS, any admin API key), "public" (both listeners), "off"


@dataclass
class TLSSettings:
    certificate: str = "tls/server.pem"  # relative to the data directory
    key: str = "tls/server-key.pem"
    request_client_certificate: bool = True
    client_trust_anchors: list[str] = field(default_factory=list)  # extra PEM files


@dataclass
class StoreSettings:
    url: str = ""  # empty: SQLite file gateway.db in the data directory
    # Do other gateway processes serve from this store? "auto": yes on PostgreSQL, and on
    # SQLite with [server] workers > 1; no otherwise. Only a store with no replicas lets a
    # process keep replay state (ACME nonces) in memory instead of the database.
    replicas: str = "auto"  # "auto" | "yes" | "no"


@dataclass
class CASettings:
    passphrase_file: str = "secrets/ca-passphrase"
    crl_validity: str = "P7D"
    crl_overlap: str = "P3D"  # a CRL is reissued once it is this close to nextUpdate
    crl_check_interval: float = 300.0  # seconds between scheduled CRL checks
    upstream_poll_interval: float = 30.0  # seconds between asking upstream CAs about requests they hold
    outbox_interval: float = 2.0  # seconds between delivery passes over the distribution outbox
    # seconds a cluster-wide job's lease outlasts two of its intervals (clock skew between
    # replicas, a slow run): another replica takes a dead holder's job this much later
    lease_margin: float = 30.0
    ocsp_response_validity: str = "PT4H"
    ocsp_signer_validity: str = "P30D"


@dataclass
class ConsoleSettings:
    enabled: bool = True  # the web console at /console/ (the admin API is there either way)
    idle_timeout: str = "PT15M"  # a session unused this long ends
    session_lifetime: str = "PT12H"  # and every session ends this long after sign-in


@dataclass
class Config:
    """The loaded configuration plus where it came from."""

    data_dir: Path
    server: ServerSettings = field(default_factory=ServerSettings)
    tls: TLSSettings = field(default_factory=TLSSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    ca: CASettings = field(default_factory=CASettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)

    # --- derived paths and URLs -------------------------------------------------
    def path(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.data_dir / p

    @property
    def profiles_dir(self) -> Path:
        return self.data_dir / "profiles"

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite+aiosqlite:///{(self.data_dir / 'gateway.db').resolve()}"

    @property
    def worker_count(self) -> int:
        """Serving processes: ``[server] workers``, with "auto" resolved for this store.

        Measured on 2 cores (bench, 2026-12-04, ACME c8): PostgreSQL 52.7 -> 66.7
        certificates/s with 2 workers; SQLite 84.6 -> 74.2 (shared nonces, one writer)."""
        workers = self.server.workers
        if workers != "auto":
            return int(workers)
        if self.store_url.startswith("sqlite"):
            return 1
        return max(1, min(os.cpu_count() or 1, AUTO_WORKERS_MAX))

    @property
    def store_has_replicas(self) -> bool:
        """Whether other processes may serve requests from the same store (see StoreSettings)."""
        if self.store.replicas == "auto":
            return not self.store_url.startswith("sqlite") or self.worker_count > 1
        return self.store.replicas == "yes"

    @property
    def public_host(self) -> str:
        """The host clients reach: baked into CDP/AIA/OCSP URLs of every certificate, so an
        unspecified listen address (0.0.0.0, ::) cannot stand in for it."""
        host = self.server.public_host or self.server.host
        check_public_host(host, "[server].public_host" if self.server.public_host else "--host")
        return host

    @property
    def http_url(self) -> str:
        port = self.server.public_http_port or self.server.http_port
        return f"http://{_host_for_url(self.public_host)}:{port}"

    @property
    def https_url(self) -> str:
        port = self.server.public_https_port or self.server.https_port
        return f"https://{_host_for_url(self.public_host)}:{port}"

    def crl_url(self, ca_id: str) -> str:
        return f"{self.http_url}/crl/{ca_id}.crl"

    def ocsp_url(self, ca_id: str) -> str:
        return f"{self.http_url}/ocsp/{ca_id}"

    def ca_issuers_url(self, ca_id: str) -> str:
        return f"{self.http_url}/ca/{ca_id}.cer"

    def duration(self, name: str) -> dt.timedelta:
        return parse_duration(getattr(self.ca, name), f"[ca].{name}")

    def console_duration(self, name: str) -> dt.timedelta:
        return parse_duration(getattr(self.console, name), f"[console].{name}")

    def ca_passphrase(self) -> bytes:
        """CA-key passphrase: $GATEWAY_CA_PASSPHRASE wins over the passphrase file."""
        env = os.environ.get(PASSPHRASE_ENV)
        if env:
            return env.encode()
        path = self.path(self.ca.passphrase_file)
        try:
            value = path.read_bytes().strip()
        except FileNotFoundError:
            raise ConfigError(
                f"no CA passphrase: set ${PASSPHRASE_ENV} or create {path}"
            ) from None
        if not value:
            raise ConfigError(f"CA passphrase file {path} is empty")
        return value

    def with_overrides(
        self, host: str | None = None, https_port: int | None = None, http_port: int | None = None
    ) -> "Config":
        """Command-line overrides for the listeners (``--host/--https-port/--http-port``)."""
        if host:
            self.server.host = host
        if https_port is not None:
            self.server.https_port = https_port
        if http_port is not None:
            self.server.http_port = http_port
        return self

    # --- persistence --------------------------------------------------------
    def to_toml(self) -> str:
        return tomli_w.dumps(
            {
                "server": _as_dict(self.server),
                "tls": _as_dict(self.tls),
                "store": _as_dict(self.store),
                "ca": _as_dict(self.ca),
                "console": _as_dict(self.console),
            }
        )

    def save(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / CONFIG_FILE).write_text(self.to_toml())


def update_dev_credentials(config: Config, protocol: str, config_id: str, values: dict[str, Any]) -> None:
    """Keep ``gateway info``'s copy of a dev credential current after a command changes
    it (a rotated static challenge); only for configurations ``init`` wrote there, and
    only while the dev-credentials file exists (deleting it is the production advice)."""
    import json

    path = config.data_dir / DEV_CREDENTIALS
    if not path.exists():
        return
    creds = json.loads(path.read_text())
    entry = creds.get(protocol, {}).get(config_id)
    if not isinstance(entry, dict):
        return
    entry.update(values)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(creds, indent=2))
    os.replace(tmp, path)


def check_public_host(host: str, where: str) -> None:
    """Refuse a host clients cannot connect to as the public one."""
    import ipaddress

    try:
        unspecified = ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        unspecified = False
    if unspecified or not host:
        raise ConfigError(
            f"{where} {host!r} listens on every address but is no address clients can reach, and "
            "certificates carry the public host in their CRL/OCSP/CA URLs: set the name clients use "
            "with 'gateway init --public-host NAME' (or [server].public_host in config.toml)"
        )


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _as_dict(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj)}


def _fill(cls: type, data: dict[str, Any], section: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"[{section}]: unknown setting(s) {sorted(unknown)}")
    obj = cls()
    for key, value in data.items():
        default = getattr(obj, key)
        if (section, key) == ("server", "workers"):  # a number or "auto" (checked by load_config)
            setattr(obj, key, value)
            continue
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"[{section}].{key}: expected true or false")
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise ConfigError(f"[{section}].{key}: expected a number")
        if isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"[{section}].{key}: expected a string")
        if isinstance(default, list) and not isinstance(value, list):
            raise ConfigError(f"[{section}].{key}: expected a list")
        setattr(obj, key, value)
    return obj


AUTO_WORKERS_MAX = 4
"""Workers "auto" starts at most on PostgreSQL (each is a full process, ~100 MB)."""


def check_workers(value: object) -> None:
    """``[server] workers``: "auto" or a whole number from 1 to 64 (ConfigError otherwise)."""
    if value == "auto":
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 64:
        raise ConfigError("[server].workers must be \"auto\" or a whole number from 1 to 64")


def load_config(data_dir: Path) -> Config:
    """Load ``config.toml`` from a data directory; absent file means all defaults."""
    data_dir = Path(data_dir)
    path = data_dir / CONFIG_FILE
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    sections = {"server": ServerSettings, "tls": TLSSettings, "store": StoreSettings, "ca": CASettings,
                "console": ConsoleSettings}
    unknown = set(raw) - set(sections)
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {sorted(unknown)}")
    cfg = Config(
        data_dir=data_dir,
        **{name: _fill(cls, raw.get(name, {}), name) for name, cls in sections.items()},
    )
    check_workers(cfg.server.workers)
    if cfg.server.metrics not in METRICS_ACCESS:
        raise ConfigError("[server].metrics must be 'key', 'public' or 'off'")
    if cfg.server.event_loop not in ("auto", "uvloop", "asyncio"):
        raise ConfigError("[server].event_loop must be 'auto', 'uvloop' or 'asyncio'")
    if cfg.store.replicas not in ("auto", "yes", "no"):
        raise ConfigError("[store].replicas must be 'auto', 'yes' or 'no'")
    for name in ("https_port", "http_port", "public_https_port", "public_http_port"):
        port = getattr(cfg.server, name)
        if not isinstance(port, int) or not 0 <= port <= 65535 or (port == 0 and not name.startswith("public")):
            raise ConfigError(f"[server].{name} must be a port number from 1 to 65535")
    if cfg.server.log_format not in ("text", "json"):
        raise ConfigError("[server].log_format must be 'text' or 'json'")
    for name in ("crl_validity", "crl_overlap", "ocsp_response_validity", "ocsp_signer_validity"):
        cfg.duration(name)
    if cfg.duration("crl_overlap") >= cfg.duration("crl_validity"):
        raise ConfigError("[ca].crl_overlap must be shorter than [ca].crl_validity")
    for name in ("idle_timeout", "session_lifetime"):
        if cfg.console_duration(name) <= dt.timedelta(0):
            raise ConfigError(f"[console].{name} must be a positive duration")
    if cfg.console_duration("idle_timeout") > cfg.console_duration("session_lifetime"):
        raise ConfigError("[console].idle_timeout must not be longer than [console].session_lifetime")
    return cfg
