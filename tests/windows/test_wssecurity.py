"""WS-Security UsernameToken: namespace-strict parsing, PasswordText only, the freshness
window and single use of (Nonce, Created) held in the store; over a real socket, a replay
and a wrong password issue nothing."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.store.records import CertificateFilter
from protocols.windows import soap, wssecurity, wstep

from .helpers import WSSE, SoapReply, WindowsServer
from .wstep_helpers import (
    PASSWORD_DIGEST,
    enrollment_fault,
    rst_body,
    rstr,
    username_token,
    windows_csr,
)

NOW = dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.timezone.utc)


def security_of(header: str) -> wssecurity.UsernameToken | None:
    env = soap.parse_envelope(rst_body(security=header))
    return wssecurity.parse_username_token(env.security)


def test_password_text_with_nonce_and_created() -> None:
    token = security_of(username_token("alice", " pass word ", nonce=b"n" * 16, created=NOW))
    assert token is not None
    assert (token.username, token.password, token.nonce, token.created) == ("alice", " pass word ", b"n" * 16, NOW)


def test_password_type_defaults_to_text_and_windows_capture_form_parses() -> None:
    token = security_of(username_token("demo@example.com", "demo", password_type=None))
    assert token is not None and token.password == "demo" and token.nonce is None and token.created is None


def test_password_digest_is_refused_with_a_clear_reason() -> None:
    with pytest.raises(wssecurity.UnsupportedSecurityToken) as exc:
        security_of(username_token("alice", "x", password_type=PASSWORD_DIGEST))
    assert "PasswordDigest" in exc.value.detail and exc.value.fault == "UnsupportedSecurityToken"


def test_lookups_are_namespace_strict() -> None:
    """A UsernameToken in another namespace (the 2002 draft's) is not ours: no token."""
    other = "http://schemas.xmlsoap.org/ws/2002/07/secext"
    header = username_token("alice", "x").replace(f'xmlns:o="{WSSE}"', f'xmlns:o="{WSSE}" xmlns:p="{other}"')
    header = header.replace("<o:UsernameToken", "<p:UsernameToken").replace("</o:UsernameToken>", "</p:UsernameToken>")
    header = header.replace("<o:Username>", "<p:Username>").replace("</o:Username>", "</p:Username>")
    assert security_of(header) is None


@pytest.mark.parametrize("created, message", [
    ("2026-12-02T08:00:00", "time zone"),
    ("yesterday", "time zone"),
    ("2026-13-02T08:00:00Z", "valid date"),
])
def test_created_must_be_a_zoned_datetime(created: str, message: str) -> None:
    header = username_token("alice", "x").replace(
        "</o:UsernameToken>", f"<u:Created>{created}</u:Created></o:UsernameToken>")
    with pytest.raises(wssecurity.InvalidSecurity) as exc:
        security_of(header)
    assert message in exc.value.detail


def test_created_with_an_offset_is_converted_to_utc() -> None:
    assert wssecurity.parse_datetime("2026-12-02T09:30:00.5+01:30") == dt.datetime(
        2026, 12, 2, 8, 0, 0, 500000, tzinfo=dt.timezone.utc)


def test_freshness_window_and_nonce_rules() -> None:
    fresh = wssecurity.UsernameToken("a", "b", b"n", NOW - dt.timedelta(minutes=4))
    wssecurity.check_freshness(fresh, NOW)
    for created in (NOW - dt.timedelta(minutes=6), NOW + dt.timedelta(minutes=6)):
        with pytest.raises(wssecurity.MessageExpired):
            wssecurity.check_freshness(wssecurity.UsernameToken("a", "b", b"n", created), NOW)
    with pytest.raises(wssecurity.InvalidSecurity):
        wssecurity.check_freshness(wssecurity.UsernameToken("a", "b", b"n", None), NOW)
    wssecurity.check_freshness(wssecurity.UsernameToken("a", "b"), NOW)  # neither: Windows over HTTPS
    with pytest.raises(wssecurity.MessageExpired):
        wssecurity.check_freshness(wssecurity.UsernameToken("a", "b"), NOW, require_fresh=True)


def test_bad_nonce_and_two_tokens_are_refused() -> None:
    bad = username_token("alice", "x").replace("</o:UsernameToken>", "<o:Nonce>not base64!</o:Nonce></o:UsernameToken>")
    with pytest.raises(wssecurity.InvalidSecurity):
        security_of(bad)
    token = username_token("alice", "x")
    inner = token[token.index("<o:UsernameToken"):token.index("</o:Security>")]
    with pytest.raises(wssecurity.InvalidSecurity):
        security_of(token.replace("</o:Security>", inner + "</o:Security>"))


# --- over a real socket ------------------------------------------------------------------------


async def _issue(windows: WindowsServer, security: str) -> SoapReply:
    from .test_ces import user_oid

    csr = windows_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048), "alice",
                      template_oid=await user_oid(windows))
    return await windows.post(windows.dev["ces"]["username"],
                              rst_body(token=csr.public_bytes(serialization.Encoding.DER), security=security))


async def _issued(windows: WindowsServer) -> int:
    async with windows.gw.store.read() as q:
        return await q.certificates.count(CertificateFilter(protocol_config="windows"))


async def test_a_replayed_username_token_issues_nothing_more(windows: WindowsServer) -> None:
    header = username_token(windows.dev["username"], windows.dev["password"], nonce=os.urandom(16),
                            created=dt.datetime.now(dt.timezone.utc))
    first = await _issue(windows, header)
    assert rstr(first).disposition == wstep.ISSUED
    assert len(await windows.table_rows(wssecurity.nonces)) == 1  # held in the store: every worker sees it
    replay = await _issue(windows, header)
    enrollment_fault(replay)
    assert replay.fault_subcode == "MessageExpired"
    assert await _issued(windows) == 1


async def test_a_token_created_outside_the_window_is_refused(windows: WindowsServer) -> None:
    header = username_token(windows.dev["username"], windows.dev["password"], nonce=os.urandom(16),
                            created=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10))
    rep = await _issue(windows, header)
    enrollment_fault(rep)
    assert rep.fault_subcode == "MessageExpired"
    assert await _issued(windows) == 0


async def test_password_digest_over_the_wire_is_a_clear_fault(windows: WindowsServer) -> None:
    rep = await _issue(windows, username_token(windows.dev["username"], "digest==", password_type=PASSWORD_DIGEST))
    enrollment_fault(rep)
    assert rep.fault_subcode == "UnsupportedSecurityToken"
    assert "PasswordDigest" in rep.reason


async def test_repeated_wrong_passwords_lock_the_user_out(windows: WindowsServer) -> None:
    user = windows.dev["username"]
    for _ in range(wssecurity.LOCKOUT.max_failures or 0):
        rep = await _issue(windows, username_token(user, "wrong-password"))
        assert rep.fault_subcode == "FailedAuthentication"
    locked = await _issue(windows, username_token(user, windows.dev["password"]))
    enrollment_fault(locked)
    assert "too many failed attempts" in locked.reason
    assert await _issued(windows) == 0


# --- two replicas sharing the store ---------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
async def shared_store(request: pytest.FixtureRequest, tmp_path):  # type: ignore[no-untyped-def]
    """A data directory initialized on SQLite or on a fresh PostgreSQL database."""
    from conformance.harness import run_cli
    from tests.conftest import fresh_pg_database

    data_dir = tmp_path / "data"
    if request.param == "sqlite":
        run_cli("init", data_dir=data_dir)
        yield data_dir
        return
    async with fresh_pg_database("test_wsse") as url:
        run_cli("init", "--store-url", url, data_dir=data_dir)
        yield data_dir


async def test_a_token_used_on_one_replica_is_a_replay_on_another(shared_store, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from conformance.harness import running_gateway

    async with running_gateway(shared_store) as (gw_a, info_a), running_gateway(shared_store) as (gw_b, info_b):
        a, b = WindowsServer(gw_a, info_a, tmp_path), WindowsServer(gw_b, info_b, tmp_path)
        header = username_token(a.dev["username"], a.dev["password"], nonce=os.urandom(16),
                                created=dt.datetime.now(dt.timezone.utc))
        assert rstr(await _issue(a, header)).disposition == wstep.ISSUED
        replay = await _issue(b, header)
        enrollment_fault(replay)
        assert replay.fault_subcode == "MessageExpired"
        assert await _issued(b) == 1
