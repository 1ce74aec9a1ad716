"""Core migration 0004 on a store made at 0003: keys become admin, never expiring, names unique."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config

from gateway.store.engine import MIGRATIONS_DIR


def _config(db: Path) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", f"sqlite+aiosqlite:///{db}")
    return config


def test_upgrade_from_0003_keeps_keys_as_admin_and_dedupes_names(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    command.upgrade(_config(db), "0003")
    with sqlite3.connect(db) as conn:
        for key_id, name, digest, when in (("a1", "ops", "h1", "2026-01-01 00:00:00"),
                                           ("b2", "ops", "h2", "2026-02-01 00:00:00"),
                                           ("c3", "dev-admin", "h3", "2026-01-01 00:00:00")):
            conn.execute("INSERT INTO api_keys (id, name, key_sha256, created_at, revoked) VALUES (?, ?, ?, ?, 0)",
                         (key_id, name, digest, when))
    command.upgrade(_config(db), "heads")
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, name, role, expires_at FROM api_keys ORDER BY id").fetchall()
        assert rows == [("a1", "ops", "admin", None), ("b2", "ops-b2", "admin", None),
                        ("c3", "dev-admin", "admin", None)]
        try:
            conn.execute("INSERT INTO api_keys (id, name, key_sha256, created_at, revoked, role) "
                         "VALUES ('d4', 'ops', 'h4', '2026-03-01', 0, 'admin')")
        except sqlite3.IntegrityError:
            pass
        else:
            raise AssertionError("a duplicate API key name was stored")
