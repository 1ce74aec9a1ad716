"""Console users and sessions on both store engines, with a clock the test moves: the
idle timeout and the absolute lifetime end a session, use keeps it alive, removing a
user ends its sessions, a role change applies to live sessions, and a password is
refused after a lockout even when right."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gateway.clock import FakeClock
from gateway.config import ConfigError, load_config
from gateway.console.sessions import IDLE_TIMEOUT, MAX_LIFETIME, Sessions
from gateway.console.users import ConsoleUsers
from gateway.credentials import LockedOut
from gateway.errors import Conflict, Unauthorized
from gateway.store import Store


async def test_idle_sessions_time_out_and_used_ones_live_until_their_lifetime(store: Store) -> None:
    clock = FakeClock()
    users, sessions = ConsoleUsers(store, clock), Sessions(store, clock)
    await users.add("alice", "ca-auditor", password="correct horse battery", actor="test")
    token, csrf = await sessions.start("alice")
    found = await sessions.find(token)
    assert (found.username, found.role, found.csrf_ok(csrf), found.csrf_ok("other")) == ("alice", "ca-auditor", True,
                                                                                          False)
    clock.advance(IDLE_TIMEOUT + dt.timedelta(seconds=1))
    with pytest.raises(Unauthorized, match="timed out"):
        await sessions.find(token)
    with pytest.raises(Unauthorized, match="not signed in"):  # and it is gone for good
        await sessions.find(token)

    token, _ = await sessions.start("alice")
    used = dt.timedelta(0)
    while used + IDLE_TIMEOUT / 2 < MAX_LIFETIME:  # a page every few minutes keeps it alive...
        clock.advance(IDLE_TIMEOUT / 2)
        used += IDLE_TIMEOUT / 2
        await sessions.find(token)
    clock.advance(IDLE_TIMEOUT / 2)
    with pytest.raises(Unauthorized):  # ...until the absolute lifetime
        await sessions.find(token)


async def test_role_changes_apply_and_removal_ends_sessions(store: Store) -> None:
    clock = FakeClock()
    users, sessions = ConsoleUsers(store, clock), Sessions(store, clock)
    await users.add("bob", "protocol-auditor", password="bob's long password", actor="test")
    with pytest.raises(Conflict):
        await users.add("bob", "owner", actor="test")
    token, _ = await sessions.start("bob")
    await users.set_role("bob", "protocol-operator", actor="test")
    assert (await sessions.find(token)).role == "protocol-operator"
    await users.remove("bob", actor="test")
    with pytest.raises(Unauthorized):
        await sessions.find(token)
    with pytest.raises(Unauthorized):
        await users.login("bob", "bob's long password")


async def test_a_locked_out_user_is_refused_even_with_the_right_password(store: Store) -> None:
    clock = FakeClock()
    users = ConsoleUsers(store, clock)
    issued = await users.add("carol", "owner", actor="test")  # generated password, returned once
    assert len(issued.secret) >= 20
    assert (await users.login("carol", issued.secret)).role == "owner"
    for _ in range(4):
        with pytest.raises(Unauthorized):
            await users.login("carol", "guess")
    with pytest.raises(LockedOut):
        await users.login("carol", "guess")
    with pytest.raises(LockedOut):
        await users.login("carol", issued.secret)
    clock.advance(dt.timedelta(minutes=16))
    assert (await users.login("carol", issued.secret)).username == "carol"


def test_console_settings_are_checked_and_used(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "config.toml").write_text('[console]\nidle_timeout = "PT5M"\nsession_lifetime = "PT1H"\n')
    cfg = load_config(data_dir)
    assert (cfg.console_duration("idle_timeout"), cfg.console_duration("session_lifetime")) == (
        dt.timedelta(minutes=5), dt.timedelta(hours=1))
    assert "[console]" in cfg.to_toml()
    for bad in ('idle_timeout = "PT2H"\nsession_lifetime = "PT1H"', 'idle_timeout = "soon"', 'enabled = "maybe"'):
        (data_dir / "config.toml").write_text(f"[console]\n{bad}\n")
        with pytest.raises(ConfigError):
            load_config(data_dir)
