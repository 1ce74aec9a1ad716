"""The Active Directory LDAP client: accounts, their groups, certificate templates and the
enrollment service, read by the gateway's service account over TLS.

- Transport: ``ldaps://`` (TLS from the first byte) or ``ldap://`` followed by StartTLS,
  always; the DC certificate is verified (``CERT_REQUIRED``) against ``ca_file`` or the
  system store, and must name the host or one of ``tls_names``. Plain LDAP is never used.
- ldap3 is synchronous: each operation runs in a worker thread under
  ``asyncio.wait_for(timeout)``, and ldap3's own connect/receive timeouts make a stuck
  thread end too. A connection the caller stopped waiting for is closed when its thread ends.
- Servers are tried in order by our own loop rather than ldap3's ``ServerPool``: each
  failing server gets one WARNING with its reason, a hung server costs one timeout and
  then the next is tried, StartTLS happens per server before the bind, and a refused
  service-account bind stops the loop (every DC would refuse it, and trying them all
  only brings the account closer to lockout).
- One service connection, opened lazily and re-opened once when it is lost (DCs drop idle
  connections); its operations are serialised (an ldap3 SYNC connection is not thread-safe).
- Answers are cached (:class:`Cache`) for ``cache_seconds``; "no such object" for at most
  :data:`NEGATIVE_SECONDS`.
- The password is never logged, never in an exception, never in a repr.

ldap3 has no type information: it is imported lazily (so the module imports without it,
like python-gssapi in ``negotiate.py``) and what it returns is turned into the dataclasses
below at once.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
import re
import ssl
import time
import uuid
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from types import ModuleType
from typing import Any, Awaitable, Callable, Hashable, Literal, TypeVar, cast

from gateway.errors import ConfigError, ErrorKind, GatewayError

log = logging.getLogger(__name__)

T = TypeVar("T")

NEGATIVE_SECONDS = 30.0
"""How long "no such account/object" is believed: it may be created any moment."""
SD_FLAGS_OID = "1.2.840.113556.1.4.801"  # LDAP_SERVER_SD_FLAGS_OID (MS-ADTS 3.1.1.3.4.1.11)
SD_FLAGS_OWNER_GROUP_DACL = b"\x30\x03\x02\x01\x07"  # SEQUENCE { INTEGER 7 }: no SACL (needs privilege)
PAGE_SIZE = 500  # below AD's MaxPageSize (1000)
UF_ACCOUNTDISABLE = 0x2
SERVER_RE = re.compile(r"^(ldaps?)://([A-Za-z0-9.-]+)(?::([0-9]{1,5}))?/?$")
SID_RE = re.compile(r"^S-1-[0-9]+(-[0-9]+){1,15}$")
REASON_CHARS = 300
RESULT_SUCCESS, RESULT_NO_SUCH_OBJECT, RESULT_INVALID_CREDENTIALS = 0, 32, 49

ACCOUNT_ATTRIBUTES = ["sAMAccountName", "objectSid", "objectClass", "userAccountControl", "userPrincipalName",
                      "mail", "dNSHostName", "cn", "objectGUID"]
TEMPLATE_ATTRIBUTES = [
    "cn", "displayName", "msPKI-Cert-Template-OID", "msPKI-Template-Schema-Version", "revision",
    "msPKI-Template-Minor-Revision", "flags", "msPKI-Enrollment-Flag", "msPKI-Certificate-Name-Flag",
    "msPKI-Private-Key-Flag", "msPKI-RA-Signature", "msPKI-Minimal-Key-Size", "pKIDefaultKeySpec",
    "pKIExtendedKeyUsage", "msPKI-Certificate-Application-Policy", "pKIKeyUsage", "pKIExpirationPeriod",
    "pKIOverlapPeriod", "pKIDefaultCSPs", "msPKI-Supersede-Templates", "nTSecurityDescriptor",
]
SERVICE_ATTRIBUTES = ["cn", "dNSHostName", "certificateTemplates", "cACertificate"]


class DirectoryUnavailable(GatewayError):
    """No directory server could be used: down, too slow, TLS refused, service bind refused."""

    kind = ErrorKind.UNAVAILABLE


class DirectoryError(GatewayError):
    """The directory answered, but with nothing we can use (no configuration naming context...)."""

    kind = ErrorKind.UNAVAILABLE


# --- what the directory says -------------------------------------------------------------


@dataclass(frozen=True)
class DirectoryConfig:
    """Where the directory is and how to reach it; the password is already unsealed."""

    servers: tuple[str, ...]  # "ldaps://dc1.corp.example:636" or "ldap://dc1.corp.example:389" (StartTLS)
    bind_user: str  # a DN, "svc@corp.example" or "CORP\\svc"
    password: str = field(repr=False)
    base_dn: str
    ca_file: Path | None = None  # None: the system store; verification is always on
    tls_names: tuple[str, ...] = ()  # more names a DC certificate may carry
    timeout: float = 5.0
    cache_seconds: float = 300.0

    def __post_init__(self) -> None:
        if not self.servers or not all(SERVER_RE.match(s) for s in self.servers):
            raise ConfigError("directory: servers must be ldaps://host[:port] or ldap://host[:port] URLs")
        if any(not name or "*" in name for name in self.tls_names):
            # ldap3 takes a valid name "*" as "any name", which would switch host name checks off.
            raise ConfigError("directory: tls_names must be host names, without wildcards")
        if not self.timeout > 0 or self.cache_seconds < 0:
            raise ConfigError("directory: timeout must be positive and cache_seconds not negative")


@dataclass(frozen=True)
class Account:
    """A user or computer account, with the SIDs of all its groups (nested, primary)."""

    dn: str
    sam_account_name: str
    sid: str
    kind: Literal["user", "computer"]
    disabled: bool  # userAccountControl ACCOUNTDISABLE (a lockout is not read here)
    user_principal_name: str | None
    mail: str | None
    dns_host_name: str | None
    common_name: str
    object_guid: uuid.UUID
    group_sids: tuple[str, ...]


@dataclass(frozen=True)
class TemplateEntry:
    """One ``pKICertificateTemplate`` (MS-CRTD 2), flags as unsigned 32-bit values."""

    name: str
    display_name: str
    oid: str
    schema_version: int = 1
    major_revision: int = 0
    minor_revision: int = 0
    flags: int = 0
    enrollment_flag: int = 0
    name_flag: int = 0
    private_key_flag: int = 0
    ra_signature: int = 0
    minimal_key_size: int = 0
    key_spec: int = 1  # AT_KEYEXCHANGE, what a template without pKIDefaultKeySpec is treated as
    ekus: tuple[str, ...] = ()
    application_policies: tuple[str, ...] = ()
    key_usage: bytes = b""
    validity_seconds: int = 0  # 0: the template does not say
    renewal_seconds: int = 0
    csps: tuple[str, ...] = ()  # in the template's order of preference
    superseded: tuple[str, ...] = ()
    # Owner, group and DACL; b"" when the directory returned none (no READ_CONTROL for the
    # service account): such a template must be taken as granting nobody anything.
    security_descriptor: bytes = field(default=b"", repr=False)


@dataclass(frozen=True)
class EnrollmentService:
    """A ``pKIEnrollmentService``: the CA object naming the templates it issues."""

    name: str
    dns_host_name: str | None
    templates: tuple[str, ...]
    ca_certificate: bytes | None = field(default=None, repr=False)  # DER


def period_seconds(raw: bytes) -> int:
    """``pKIExpirationPeriod`` / ``pKIOverlapPeriod`` in seconds.

    AD stores them as an 8-byte little-endian FILETIME *interval*: a negative count of
    100-nanosecond units (one year is -315360000000000). The sign only marks it relative.
    """
    if len(raw) != 8:
        raise ValueError(f"a period is 8 bytes, not {len(raw)}")
    return abs(int.from_bytes(raw, "little", signed=True)) // 10**7


def sid_to_str(raw: bytes) -> str:
    """A binary SID (objectSid, tokenGroups) as ``S-1-5-21-...``."""
    if len(raw) < 8 or len(raw) != 8 + 4 * raw[1]:
        raise ValueError("not a binary SID")
    authority = int.from_bytes(raw[2:8], "big")
    subs = (int.from_bytes(raw[8 + 4 * i:12 + 4 * i], "little") for i in range(raw[1]))
    return "-".join(["S", str(raw[0]), str(authority), *map(str, subs)])


def sid_to_bytes(sid: str) -> bytes:
    """``S-1-5-21-...`` as the binary SID objectSid holds."""
    if not SID_RE.match(sid):
        raise ValueError(f"{sid!r} is not a SID")
    _, revision, authority, *subs = sid.split("-")
    return (bytes([int(revision), len(subs)]) + int(authority).to_bytes(6, "big")
            + b"".join(int(s).to_bytes(4, "little") for s in subs))


# --- the cache ---------------------------------------------------------------------------


class Cache:
    """Answers for ``ttl`` seconds (None ones for at most :data:`NEGATIVE_SECONDS`);
    concurrent misses for one key share one load, which a cancelled caller does not cancel."""

    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._clock = clock
        self._entries: dict[Hashable, tuple[float, object]] = {}
        self._loading: dict[Hashable, asyncio.Task[Any]] = {}
        self._generation = 0

    async def get(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        hit = self._entries.get(key)
        if hit is not None and hit[0] > self._clock():
            return cast(T, hit[1])
        task = self._loading.get(key)
        if task is None:
            task = asyncio.ensure_future(self._fill(key, load, self._generation))
            self._loading[key] = task
            task.add_done_callback(partial(self._done, key))
        return cast(T, await asyncio.shield(task))

    async def _fill(self, key: Hashable, load: Callable[[], Awaitable[T]], generation: int) -> T:
        value = await load()
        if generation == self._generation:  # not invalidated meanwhile
            ttl = self._ttl if value is not None else min(self._ttl, NEGATIVE_SECONDS)
            self._entries[key] = (self._clock() + ttl, value)
        return value

    def _done(self, key: Hashable, task: asyncio.Task[Any]) -> None:
        if self._loading.get(key) is task:
            del self._loading[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone

    def invalidate(self) -> None:
        self._entries.clear()
        self._loading.clear()
        self._generation += 1


# --- ldap3, kept at the edge -------------------------------------------------------------


@cache
def _ldap3(module: str = "") -> ModuleType:
    name = f"ldap3.{module}" if module else "ldap3"
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ConfigError("Active Directory needs the ldap3 package (pip install ldap3)") from None


class _Failed(Exception):
    """A server could not be used (transport, TLS, an error answer); the reason is safe to show."""


class _Lost(_Failed):
    """The connection broke (closed by the DC, reset, idle timeout): worth opening again."""


class _Refused(Exception):
    """The bind was answered with a refusal (wrong password, disabled, locked...)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= REASON_CHARS else text[:REASON_CHARS] + "..."


def _answer(conn: Any) -> str:
    result = conn.result or {}
    message = str(result.get("message") or "").strip()
    return f"{result.get('description', 'error')}" + (f" ({message})" if message else "")


@dataclass(frozen=True)
class _Server:
    url: str
    host: str
    port: int
    ldaps: bool

    @classmethod
    def parse(cls, url: str) -> _Server:
        match = SERVER_RE.match(url)
        assert match is not None  # DirectoryConfig checked
        ldaps = match.group(1) == "ldaps"
        port = int(match.group(3)) if match.group(3) else (636 if ldaps else 389)
        return cls(url=f"{match.group(1)}://{match.group(2)}:{port}", host=match.group(2), port=port, ldaps=ldaps)


Entry = tuple[str, dict[str, list[bytes]]]  # DN, attribute name in lower case -> raw values


def _search(conn: Any, base: str, search_filter: str, scope: str, attributes: list[str],
            controls: list[tuple[str, bool, bytes]] | None = None, paged: bool = False) -> list[Entry] | None:
    """Entries found (continuation references skipped), None when ``base`` does not exist."""
    entries: list[Entry] = []
    cookie: bytes | None = None
    while True:
        extra: dict[str, Any] = {"paged_size": PAGE_SIZE, "paged_cookie": cookie} if paged else {}
        conn.search(base, search_filter, search_scope=scope, attributes=attributes, controls=controls, **extra)
        code = conn.result.get("result")
        if code == RESULT_NO_SUCH_OBJECT:
            return None
        if code != RESULT_SUCCESS:
            raise _Failed(f"search of {base!r} answered {_answer(conn)}")
        for item in conn.response or []:
            if item.get("type") == "searchResEntry":
                raw = item.get("raw_attributes") or {}
                entries.append((str(item["dn"]), {str(k).lower(): list(v) for k, v in raw.items()}))
        if not paged:
            return entries
        page = (conn.result.get("controls") or {}).get("1.2.840.113556.1.4.319", {})
        cookie = page.get("value", {}).get("cookie") or None
        if not cookie:
            return entries


def _first(attrs: dict[str, list[bytes]], name: str) -> bytes | None:
    values = attrs.get(name.lower())
    return values[0] if values else None


def _text(attrs: dict[str, list[bytes]], name: str) -> str | None:
    value = _first(attrs, name)
    return None if value is None else value.decode()


def _texts(attrs: dict[str, list[bytes]], name: str) -> tuple[str, ...]:
    return tuple(v.decode() for v in attrs.get(name.lower(), []))


def _int(attrs: dict[str, list[bytes]], name: str, default: int, *, unsigned: bool = False) -> int:
    value = _first(attrs, name)
    if value is None:
        return default
    number = int(value)
    return number & 0xFFFFFFFF if unsigned else number


def _csps(values: tuple[str, ...]) -> tuple[str, ...]:
    """pKIDefaultCSPs values are "n,Provider name": ordered by n, the prefix dropped."""
    ranked: list[tuple[int, int, str]] = []
    for index, value in enumerate(values):
        rank, sep, name = value.partition(",")
        if sep and rank.strip().isdigit():
            ranked.append((int(rank), index, name.strip()))
        else:
            ranked.append((1 << 31, index, value.strip()))
    return tuple(name for _, _, name in sorted(ranked))


def _template(attrs: dict[str, list[bytes]]) -> TemplateEntry:
    name, oid = _text(attrs, "cn"), _text(attrs, "msPKI-Cert-Template-OID")
    if not name or not oid:
        raise ValueError("no " + ("cn" if not name else "msPKI-Cert-Template-OID"))
    expiration, overlap = _first(attrs, "pKIExpirationPeriod"), _first(attrs, "pKIOverlapPeriod")
    return TemplateEntry(
        name=name, display_name=_text(attrs, "displayName") or name, oid=oid,
        schema_version=_int(attrs, "msPKI-Template-Schema-Version", 1),
        major_revision=_int(attrs, "revision", 0),
        minor_revision=_int(attrs, "msPKI-Template-Minor-Revision", 0),
        flags=_int(attrs, "flags", 0, unsigned=True),
        enrollment_flag=_int(attrs, "msPKI-Enrollment-Flag", 0, unsigned=True),
        name_flag=_int(attrs, "msPKI-Certificate-Name-Flag", 0, unsigned=True),
        private_key_flag=_int(attrs, "msPKI-Private-Key-Flag", 0, unsigned=True),
        ra_signature=_int(attrs, "msPKI-RA-Signature", 0),
        minimal_key_size=_int(attrs, "msPKI-Minimal-Key-Size", 0),
        key_spec=_int(attrs, "pKIDefaultKeySpec", 1),
        ekus=_texts(attrs, "pKIExtendedKeyUsage"),
        application_policies=_texts(attrs, "msPKI-Certificate-Application-Policy"),
        key_usage=_first(attrs, "pKIKeyUsage") or b"",
        validity_seconds=period_seconds(expiration) if expiration is not None else 0,
        renewal_seconds=period_seconds(overlap) if overlap is not None else 0,
        csps=_csps(_texts(attrs, "pKIDefaultCSPs")),
        superseded=_texts(attrs, "msPKI-Supersede-Templates"),
        security_descriptor=_first(attrs, "nTSecurityDescriptor") or b"",
    )


def _account(dn: str, attrs: dict[str, list[bytes]], groups: tuple[str, ...]) -> Account:
    sam, sid, guid = _text(attrs, "sAMAccountName"), _first(attrs, "objectSid"), _first(attrs, "objectGUID")
    if not sam or sid is None or guid is None:
        raise _Failed(f"account {dn!r} came without sAMAccountName, objectSid or objectGUID")
    classes = {c.lower() for c in _texts(attrs, "objectClass")}
    return Account(
        dn=dn, sam_account_name=sam, sid=sid_to_str(sid), kind="computer" if "computer" in classes else "user",
        disabled=bool(_int(attrs, "userAccountControl", 0) & UF_ACCOUNTDISABLE),
        user_principal_name=_text(attrs, "userPrincipalName"), mail=_text(attrs, "mail"),
        dns_host_name=_text(attrs, "dNSHostName"), common_name=_text(attrs, "cn") or sam,
        object_guid=uuid.UUID(bytes_le=guid), group_sids=groups,
    )


class _BindRefusedBy(Exception):
    def __init__(self, server: str, reason: str) -> None:
        super().__init__(reason)
        self.server, self.reason = server, reason


def _unbind(conn: Any) -> None:
    """Close an ldap3 connection, whatever state it is in."""
    if conn is None:
        return
    try:
        conn.unbind()
    except Exception:  # already broken: nothing left to close
        pass


def _too_late(late: Callable[[Any], None] | None, future: asyncio.Future[Any]) -> None:
    if future.cancelled():
        return
    failed = future.exception() is not None  # retrieved either way: nobody else waits for it
    if late is not None:
        late(None if failed else future.result())


def _guarded(op: Callable[[Any], T], conn: Any) -> T:
    """``op(conn)`` with ldap3's exceptions turned into ours (worker thread)."""
    errors = _ldap3("core.exceptions")
    try:
        return op(conn)
    except (errors.LDAPCommunicationError, OSError) as exc:
        raise _Lost(_reason(exc)) from None
    except (errors.LDAPException, ValueError) as exc:
        raise _Failed(_reason(exc)) from None


# --- the client --------------------------------------------------------------------------


class Directory:
    """One Active Directory, read by the service account; see the module docstring."""

    def __init__(self, config: DirectoryConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._servers = tuple(_Server.parse(url) for url in config.servers)
        self._cache = Cache(config.cache_seconds, clock)
        self._lock = asyncio.Lock()
        self._conn: Any = None
        self._conn_server: _Server | None = None

    # -- public API ------------------------------------------------------------------------

    async def account(self, sam_account_name: str) -> Account | None:
        """The user ("alice") or computer ("WS1$") of that sAMAccountName, None if none."""
        conv = _ldap3("utils.conv")
        search_filter = f"(&(objectClass=user)(sAMAccountName={conv.escape_filter_chars(sam_account_name)}))"
        return await self._cache.get(("account", sam_account_name.lower()),
                                     lambda: self._service(partial(self._find_account, search_filter)))

    async def account_by_sid(self, sid: str) -> Account | None:
        """The account whose objectSid is ``sid``; None if none (or ``sid`` is not a SID)."""
        try:
            raw = sid_to_bytes(sid.upper())
        except ValueError:
            return None
        search_filter = f"(&(objectClass=user)(objectSid={_ldap3('utils.conv').escape_bytes(raw)}))"
        return await self._cache.get(("sid", sid.upper()),
                                     lambda: self._service(partial(self._find_account, search_filter)))

    async def templates(self) -> tuple[TemplateEntry, ...]:
        """Every certificate template of the forest (entries we cannot read are logged, skipped)."""
        config_nc = await self._configuration_nc()
        base = f"CN=Certificate Templates,CN=Public Key Services,CN=Services,{config_nc}"
        return await self._cache.get(("templates",), lambda: self._service(partial(self._read_templates, base)))

    async def enrollment_service(self, name: str) -> EnrollmentService | None:
        """The ``pKIEnrollmentService`` of that ``cn``, None if there is none."""
        config_nc = await self._configuration_nc()
        rdn = _ldap3("utils.dn").escape_rdn(name)
        dn = f"CN={rdn},CN=Enrollment Services,CN=Public Key Services,CN=Services,{config_nc}"
        return await self._cache.get(("service", name.lower()),
                                     lambda: self._service(partial(self._read_service, dn)))

    async def check_password(self, user: str, password: str) -> bool:
        """Whether ``user`` (a sAMAccountName, or a UPN / DOMAIN\\user / DN as given) binds with
        ``password``; on a connection of its own, closed at once. Refusals are False."""
        if not password:
            return False  # an empty simple bind is an anonymous bind, which "succeeds"
        bind_name = user
        if not any(c in user for c in "@\\="):
            account = await self.account(user)
            if account is None:
                log.info("password check for %r: no such account", user)
                return False
            bind_name = account.dn
        try:
            conn, _ = await self._connect(bind_name, password)
        except _BindRefusedBy as refused:
            log.info("password check for %r refused by %s: %s", user, refused.server, refused.reason)
            return False
        await self._quietly_close(conn)
        return True

    def invalidate(self) -> None:
        """Forget every cached answer (the next lookups read the directory again)."""
        self._cache.invalidate()

    async def close(self) -> None:
        async with self._lock:
            conn, self._conn, self._conn_server = self._conn, None, None
        if conn is not None:
            await self._quietly_close(conn)

    # -- connections -----------------------------------------------------------------------

    async def _in_thread(self, fn: Callable[[], T], late: Callable[[T | None], None] | None = None) -> T:
        """``fn()`` in a worker thread, waited for at most ``timeout`` (TimeoutError then).
        When the thread ends after that, ``late`` gets its result (None if it raised): the
        connection it holds can be closed then, not while the thread still uses it."""
        future = asyncio.get_running_loop().run_in_executor(None, fn)
        try:
            return await asyncio.wait_for(asyncio.shield(future), self._config.timeout)
        except TimeoutError:
            future.add_done_callback(partial(_too_late, late))
            raise

    def _open(self, server: _Server, user: str, password: str) -> Any:
        """A TLS connection to ``server`` bound as ``user`` (worker thread).
        Raises _Failed (server unusable) or _Refused (bind answered with a refusal)."""
        ldap3 = _ldap3()
        errors = _ldap3("core.exceptions")
        timeout = self._config.timeout
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED,
                        ca_certs_file=str(self._config.ca_file) if self._config.ca_file else None,
                        valid_names=list(self._config.tls_names) or None,
                        sni=None if re.fullmatch(r"[0-9.]+", server.host) else server.host)
        conn = None
        try:
            ldap_server = ldap3.Server(server.host, port=server.port, use_ssl=server.ldaps, tls=tls,
                                       get_info=ldap3.NONE, connect_timeout=timeout)
            # receive_timeout must be whole seconds: ldap3 packs it into SO_RCVTIMEO as integers.
            conn = ldap3.Connection(ldap_server, user=user, password=password, authentication=ldap3.SIMPLE,
                                    client_strategy=ldap3.SYNC, auto_bind=ldap3.AUTO_BIND_NONE, read_only=True,
                                    receive_timeout=max(1, math.ceil(timeout)), raise_exceptions=False,
                                    auto_referrals=False)
            conn.open()
            if not server.ldaps:
                conn.start_tls()
            if not conn.bind():
                raise _Refused(int(conn.result.get("result", -1)), _reason(Exception(_answer(conn))))
            return conn
        except _Refused:
            _unbind(conn)
            raise
        except (errors.LDAPException, OSError) as exc:
            _unbind(conn)
            raise _Failed(_reason(exc)) from None

    async def _connect(self, user: str, password: str) -> tuple[Any, _Server]:
        """The first server, in order, that takes a TLS connection bound as ``user``."""
        failures: list[str] = []
        for server in self._servers:
            try:
                conn = await self._in_thread(partial(self._open, server, user, password), late=_unbind)
            except TimeoutError:
                reason = f"no answer within {self._config.timeout:g} s"
            except _Failed as exc:
                reason = str(exc)
            except _Refused as exc:
                raise _BindRefusedBy(server.url, str(exc)) from None
            else:
                return conn, server
            log.warning("directory server %s failed: %s", server.url, reason)
            failures.append(f"{server.url}: {reason}")
        raise DirectoryUnavailable("no directory server could be used: " + "; ".join(failures))

    async def _service_connection(self) -> tuple[Any, _Server]:
        if self._conn is None or self._conn_server is None:
            try:
                conn, server = await self._connect(self._config.bind_user, self._config.password)
            except _BindRefusedBy as refused:
                raise DirectoryUnavailable(f"service account bind refused by {refused.server}: "
                                           f"{refused.reason}") from None
            log.info("directory: connected to %s as %s", server.url, self._config.bind_user)
            self._conn, self._conn_server = conn, server
        return self._conn, self._conn_server

    async def _service(self, op: Callable[[Any], T]) -> T:
        """``op(connection)`` on the service connection, opened again once if it was lost."""
        async with self._lock:
            for attempt in (1, 2):
                conn, server = await self._service_connection()
                try:
                    return await self._in_thread(partial(_guarded, op, conn), late=lambda _: _unbind(conn))
                except TimeoutError:
                    self._drop(conn, now=False)
                    raise DirectoryUnavailable(f"directory server {server.url}: no answer within "
                                               f"{self._config.timeout:g} s") from None
                except _Lost as exc:
                    self._drop(conn)
                    if attempt == 2:
                        raise DirectoryUnavailable(f"directory server {server.url}: {exc}") from None
                    log.warning("directory server %s: connection lost (%s); opening it again", server.url, exc)
                except _Failed as exc:
                    raise DirectoryError(f"directory server {server.url}: {exc}") from None
        raise AssertionError("unreachable")

    def _drop(self, conn: Any, *, now: bool = True) -> None:
        """Stop using the service connection (closed now, or by _in_thread's ``late``)."""
        if self._conn is conn:
            self._conn, self._conn_server = None, None
        if now:
            _unbind(conn)

    async def _quietly_close(self, conn: Any) -> None:
        try:
            await self._in_thread(partial(_unbind, conn))
        except TimeoutError:
            pass  # the thread goes on closing it

    # -- reads (worker thread, on the service connection) ---------------------------------

    def _find_account(self, search_filter: str, conn: Any) -> Account | None:
        found = _search(conn, self._config.base_dn, search_filter, _ldap3().SUBTREE, ACCOUNT_ATTRIBUTES)
        if not found:
            return None
        dn, attrs = found[0]
        # tokenGroups is constructed: AD computes it only for a base-scope search.
        token = _search(conn, dn, "(objectClass=*)", _ldap3().BASE, ["tokenGroups"]) or []
        groups = tuple(sid_to_str(raw) for _, a in token for raw in a.get("tokengroups", []))
        return _account(dn, attrs, groups)

    @staticmethod
    def _read_templates(base: str, conn: Any) -> tuple[TemplateEntry, ...]:
        found = _search(conn, base, "(objectClass=pKICertificateTemplate)", _ldap3().LEVEL, TEMPLATE_ATTRIBUTES,
                        controls=[(SD_FLAGS_OID, True, SD_FLAGS_OWNER_GROUP_DACL)], paged=True)
        if found is None:
            log.warning("directory: no %s (AD CS never installed in this forest?): no templates", base)
            return ()
        templates: list[TemplateEntry] = []
        for dn, attrs in found:
            try:
                templates.append(_template(attrs))
            except (ValueError, UnicodeDecodeError) as exc:
                log.warning("directory: certificate template %s skipped: %s", dn, exc)
        return tuple(sorted(templates, key=lambda t: t.name.lower()))

    @staticmethod
    def _read_service(dn: str, conn: Any) -> EnrollmentService | None:
        found = _search(conn, dn, "(objectClass=pKIEnrollmentService)", _ldap3().BASE, SERVICE_ATTRIBUTES)
        if not found:
            return None
        _, attrs = found[0]
        return EnrollmentService(name=_text(attrs, "cn") or dn, dns_host_name=_text(attrs, "dNSHostName"),
                                 templates=_texts(attrs, "certificateTemplates"),
                                 ca_certificate=_first(attrs, "cACertificate"))

    async def _configuration_nc(self) -> str:
        async def load() -> str:
            found = await self._service(
                lambda conn: _search(conn, "", "(objectClass=*)", _ldap3().BASE, ["configurationNamingContext"]))
            value = _text(found[0][1], "configurationNamingContext") if found else None
            if not value:
                raise DirectoryError("the directory's RootDSE names no configurationNamingContext")
            return value

        return await self._cache.get(("configuration-nc",), load)
