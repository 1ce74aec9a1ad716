"""A real Samba AD domain controller (directory + KDC) for the Active Directory tests.

:func:`start_dc` provisions a fresh domain ``GW.TEST`` into a directory with
``samba-tool domain provision`` and runs ``samba`` in the foreground, bound to one
loopback address only, with just the ``ldap`` and ``kdc`` services (no SMB, NetBIOS, DNS).
LDAP's ports (389/636/3268/3269) are fixed in Samba, so when 127.0.0.1 already has them
in use (another test session's DC) the next free address of 127.0.88.0/24 is taken:
everything on loopback routes without configuration, and every client here is given
the address explicitly (krb5.conf ``kdc =``, ``curl --resolve``), never through DNS or
/etc/hosts, so the tests, the gateway under test and its clients share the host's
network namespace. See tests/ad/README.md.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

REALM = "GW.TEST"
DNS_DOMAIN = "gw.test"
NETBIOS_DOMAIN = "GW"
BASE_DN = "DC=gw,DC=test"
DC_HOSTNAME = "dc.gw.test"
CONFIG_DN = f"CN=Configuration,{BASE_DN}"
PUBLIC_KEY_SERVICES_DN = f"CN=Public Key Services,CN=Services,{CONFIG_DN}"
TEMPLATES_DN = f"CN=Certificate Templates,{PUBLIC_KEY_SERVICES_DN}"
ENROLLMENT_SERVICES_DN = f"CN=Enrollment Services,{PUBLIC_KEY_SERVICES_DN}"

# Extended rights on certificate templates (MS-CRTD 2.5.2): Certificate-Enrollment, Certificate-AutoEnrollment.
ENROLL_RIGHT = "0e10c968-78fb-11d2-90d4-00c04f79dc55"  # Certificate-Enrollment (MS-ADTS, adschema)
AUTOENROLL_RIGHT = "a05b8cc2-17bc-4802-a710-e7c15ab866a2"

# Ports Samba's ldap and kdc services listen on (only the Kerberos ones are configurable).
DC_PORTS = (88, 389, 464, 636, 3268, 3269)
# msDS-SupportedEncryptionTypes: AES128 | AES256. Without it Samba issues RC4 service tickets
# to user-account services and exports only the RC4 key for their SPNs.
AES_ENCTYPES = 0x18


class SambaError(RuntimeError):
    """A Samba command failed; the message carries its output."""


def missing_tools() -> list[str]:
    """Names of what a DC needs and this machine lacks (empty when it can run one)."""
    missing = [tool for tool in ("samba", "samba-tool", "kinit", "klist") if shutil.which(tool) is None]
    if not Path("/usr/share/samba/setup/ad-schema").is_dir():
        missing.append("samba-ad-provision (/usr/share/samba/setup/ad-schema)")
    return missing


def _samba_python() -> str:
    """The interpreter samba-tool runs under: the one that has Samba's own bindings."""
    tool = shutil.which("samba-tool") or "/usr/bin/samba-tool"
    first = Path(tool).read_text(errors="replace").splitlines()[0]
    return first.removeprefix("#!").strip().split()[0] if first.startswith("#!") else "/usr/bin/python3"


def _ports_free(address: str) -> bool:
    for port in DC_PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, port))
            except OSError:
                return False
    return True


def pick_address(skip: set[str] | frozenset[str] = frozenset()) -> str:
    """127.0.0.1 if Samba's ports are free there, else the first free 127.0.88.x."""
    for address in ["127.0.0.1", *(f"127.0.88.{n}" for n in range(1, 255))]:
        if address not in skip and _ports_free(address):
            return address
    raise SambaError("no loopback address with ports 88/389/464/636/3268/3269 free")


def _password() -> str:
    # AD complexity: three character classes and no part of the account name.
    return f"Gw-{secrets.token_urlsafe(12)}-9a"


def run(argv: list[str], *, env: Mapping[str, str] | None = None, input: str | None = None,
        check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, env=dict(env) if env is not None else None, input=input,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise SambaError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def sid_to_str(raw: bytes) -> str:
    """A binary SID (objectSid, tokenGroups) as S-1-...; independent of Samba and ldap3."""
    revision, count = raw[0], raw[1]
    authority = int.from_bytes(raw[2:8], "big")
    subs = [int.from_bytes(raw[8 + 4 * i:12 + 4 * i], "little") for i in range(count)]
    return "-".join(["S", str(revision), str(authority), *map(str, subs)])


@dataclass
class SambaDC:
    """A running DC: its files, address, admin credentials and helpers to drive it."""

    root: Path
    address: str
    admin_password: str
    process: subprocess.Popen[str] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    realm: str = REALM
    dns_domain: str = DNS_DOMAIN
    base_dn: str = BASE_DN
    hostname: str = DC_HOSTNAME

    @property
    def smb_conf(self) -> Path:
        return self.root / "etc" / "smb.conf"

    @property
    def krb5_conf(self) -> Path:
        return self.root / "krb5.conf"

    @property
    def ca_file(self) -> Path:
        """The CA of the LDAPS certificate Samba generates at first start (CN=DC.gw.test)."""
        return self.root / "private" / "tls" / "ca.pem"

    @property
    def log_file(self) -> Path:
        return self.root / "samba.log"

    @property
    def domain_sid(self) -> str:
        return self.sid_of("Domain Admins").rsplit("-", 1)[0]

    # -- Kerberos -----------------------------------------------------------------------

    def krb5_env(self, ccache: Path | None = None, keytab: Path | None = None,
                 base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for MIT krb5 clients (kinit, curl, gssapi): this realm, a private ccache."""
        env = dict(os.environ if base is None else base)
        env["KRB5_CONFIG"] = str(self.krb5_conf)
        env["KRB5CCNAME"] = f"FILE:{ccache or self.root / 'ccache.default'}"
        if keytab is not None:
            env["KRB5_KTNAME"] = f"FILE:{keytab}"
            env["KRB5_CLIENT_KTNAME"] = f"FILE:{keytab}"
        env.pop("KRB5RCACHEDIR", None)
        return env

    def kinit(self, principal: str, *, ccache: Path, password: str | None = None,
              keytab: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """kinit with a password (on stdin) or a keytab into ``ccache``."""
        argv = ["kinit"]
        if keytab is not None:
            argv += ["-k", "-t", str(keytab)]
        argv.append(principal if "@" in principal else f"{principal}@{self.realm}")
        return run(argv, env=self.krb5_env(ccache), input=None if password is None else password + "\n", check=check)

    # -- samba-tool (on the DC's database directly, no network) ------------------------

    def samba_tool(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["samba-tool", *args, "-s", str(self.smb_conf)], check=check)

    def create_user(self, name: str, password: str | None = None, *, mail: str | None = None,
                    upn: str | None = None) -> str:
        """A user account; returns its password. UPN defaults to name@gw.test (samba-tool's own)."""
        password = password or _password()
        args = ["user", "create", name, password]
        if mail:
            args.append(f"--mail-address={mail}")
        self.samba_tool(*args)
        if upn:
            self.modify(self.dn_of(name), {"userPrincipalName": [upn]})
        return password

    def create_computer(self, name: str, *, dns_host_name: str | None = None,
                        password: str | None = None) -> str:
        """A computer account ``NAME$`` with a known password (so its keys, and a keytab, exist)."""
        self.samba_tool("computer", "create", name)
        password = password or _password()
        self.samba_tool("user", "setpassword", f"{name}$", f"--newpassword={password}")
        if dns_host_name:
            self.modify(self.dn_of(f"{name}$"), {"dNSHostName": [dns_host_name]})
        return password

    def create_group(self, name: str, members: tuple[str, ...] = ()) -> str:
        """A global security group with ``members`` (sAMAccountNames); returns its SID."""
        self.samba_tool("group", "add", name)
        if members:
            self.samba_tool("group", "addmembers", name, ",".join(members))
        return self.sid_of(name)

    def create_service(self, account: str, spn: str, keytab: Path) -> Path:
        """A service account holding ``spn`` (AES enabled) and its keytab exported to ``keytab``."""
        self.create_user(account)
        self.samba_tool("spn", "add", spn, account)
        self.modify(self.dn_of(account), {"msDS-SupportedEncryptionTypes": [str(AES_ENCTYPES)]})
        return self.export_keytab(spn, keytab)

    def export_keytab(self, principal: str, keytab: Path) -> Path:
        keytab.unlink(missing_ok=True)
        self.samba_tool("domain", "exportkeytab", str(keytab), f"--principal={principal}")
        return keytab

    # -- LDAP (ldap3, LDAPS with the DC's CA verified) ----------------------------------

    def tls(self) -> Any:
        import ldap3

        return ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(self.ca_file), valid_names=[self.hostname])

    def ldap(self, user: str | None = None, password: str | None = None, *, port: int = 636) -> Any:
        """A bound ldap3 Connection over LDAPS (administrator by default), certificate verified."""
        import ldap3

        server = ldap3.Server(self.address, port=port, use_ssl=True, tls=self.tls(), get_info=ldap3.NONE,
                              connect_timeout=10)
        return ldap3.Connection(server, user=user or f"administrator@{self.dns_domain}",
                                password=password if user else self.admin_password,
                                auto_bind=True, receive_timeout=30, raise_exceptions=True)

    def dn_of(self, sam_account_name: str) -> str:
        with self._admin() as conn:
            conn.search(self.base_dn, f"(sAMAccountName={_escape(sam_account_name)})", attributes=["cn"])
            if not conn.entries:
                raise SambaError(f"no account {sam_account_name!r}")
            return str(conn.entries[0].entry_dn)

    def sid_of(self, sam_account_name: str) -> str:
        with self._admin() as conn:
            conn.search(self.base_dn, f"(sAMAccountName={_escape(sam_account_name)})", attributes=["objectSid"])
            if not conn.entries:
                raise SambaError(f"no account {sam_account_name!r}")
            return sid_to_str(conn.entries[0].objectSid.raw_values[0])

    def modify(self, dn: str, replace: Mapping[str, list[Any]]) -> None:
        import ldap3

        with self._admin() as conn:
            conn.modify(dn, {k: [(ldap3.MODIFY_REPLACE, v)] for k, v in replace.items()})

    def security_descriptor(self, sddl: str) -> bytes:
        """SDDL as the binary self-relative descriptor AD stores (encoded by Samba's own code)."""
        script = ("import sys\nfrom samba.dcerpc import security\nfrom samba.ndr import ndr_pack\n"
                  "sd = security.descriptor.from_sddl(sys.argv[1], security.dom_sid(sys.argv[2]))\n"
                  "sys.stdout.write(ndr_pack(sd).hex())\n")
        return bytes.fromhex(run([_samba_python(), "-c", script, sddl, self.domain_sid]).stdout)

    def add_certificate_template(self, name: str, attributes: Mapping[str, Any], sddl: str) -> str:
        """A pKICertificateTemplate under CN=Certificate Templates, as AD CS would publish it."""
        dn = f"CN={name},{TEMPLATES_DN}"
        with self._admin() as conn:
            conn.add(dn, "pKICertificateTemplate",
                     {"displayName": name, **attributes, "nTSecurityDescriptor": self.security_descriptor(sddl)})
        return dn

    def _admin(self) -> Any:
        return self.ldap()

    # -- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the DC by its PID (SIGTERM, then SIGKILL) and reap it."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        finally:
            if proc.stdin:
                proc.stdin.close()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session (start_new_session): any helper it forked


def _escape(value: str) -> str:
    from ldap3.utils.conv import escape_filter_chars

    return str(escape_filter_chars(value))


def _krb5_conf(address: str) -> str:
    return f"""[libdefaults]
    default_realm = {REALM}
    dns_lookup_realm = false
    dns_lookup_kdc = false
    rdns = false
    dns_canonicalize_hostname = false
    udp_preference_limit = 1

[realms]
    {REALM} = {{
        kdc = {address}
        admin_server = {address}
        kpasswd_server = {address}
    }}

[domain_realm]
    .{DNS_DOMAIN} = {REALM}
    {DNS_DOMAIN} = {REALM}
"""


def provision(root: Path, address: str) -> SambaDC:
    """A fresh domain in ``root`` (which must not exist yet or be empty), not started."""
    root.mkdir(parents=True, exist_ok=True)
    run_dir = root / "run"
    options = {
        "interfaces": f"{address}/8",
        "bind interfaces only": "yes",
        "server services": "ldap, kdc",
        "log file": str(root / "log.%m"),
        "panic action": "",
        "pid directory": str(run_dir),
        "ncalrpc dir": str(run_dir / "ncalrpc"),
        "winbindd socket directory": str(run_dir / "winbindd"),
        "ntp signd socket directory": str(run_dir / "ntp_signd"),
    }
    dc = SambaDC(root=root, address=address, admin_password=_password())
    started = time.monotonic()
    run(["samba-tool", "domain", "provision", f"--realm={REALM}", f"--domain={NETBIOS_DOMAIN}",
         "--server-role=dc", "--dns-backend=NONE", f"--host-name={DC_HOSTNAME.split('.')[0]}",
         f"--host-ip={address}", f"--targetdir={root}", f"--adminpass={dc.admin_password}",
         *(f"--option={k}={v}" for k, v in options.items())], timeout=300)
    dc.timings["provision"] = time.monotonic() - started
    run_dir.mkdir(exist_ok=True)
    dc.krb5_conf.write_text(_krb5_conf(address))
    return dc


def start(dc: SambaDC, timeout: float = 60) -> SambaDC:
    """Run ``samba`` in the foreground (-i: it also exits when its stdin closes, so a killed
    test run cannot leave it behind) and wait until LDAPS answers and the KDC accepts."""
    started = time.monotonic()
    log = dc.log_file.open("w")
    dc.process = subprocess.Popen(
        ["samba", "-s", str(dc.smb_conf), "-i", "-M", "single", "--debug-stdout", "-d", "1"],
        stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    log.close()
    deadline = started + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if dc.process.poll() is not None:
            raise SambaError(f"samba exited {dc.process.returncode}:\n{_tail(dc.log_file)}")
        try:
            with socket.create_connection((dc.address, 88), timeout=2):
                pass
            dc.ldap().unbind()
            dc.timings["start"] = time.monotonic() - started
            return dc
        except Exception as exc:  # not answering yet
            last = exc
            time.sleep(0.2)
    dc.stop()
    raise SambaError(f"samba did not answer on {dc.address} within {timeout:.0f}s ({last}):\n{_tail(dc.log_file)}")


def start_dc(root: Path, attempts: int = 3) -> SambaDC:
    """Provision and start a DC on a free loopback address. Another test session may take
    the address between the check and samba's bind (provisioning takes seconds): then the
    next free address is tried, with a fresh provision."""
    taken: set[str] = set()
    for attempt in range(attempts):
        address = pick_address(skip=taken)
        target = root if attempt == 0 else root.with_name(f"{root.name}-{attempt}")
        try:
            return start(provision(target, address))
        except SambaError as exc:
            if "ADDRESS_ALREADY_ASSOCIATED" not in str(exc) or attempt == attempts - 1:
                raise
            taken.add(address)
    raise AssertionError("unreachable")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
