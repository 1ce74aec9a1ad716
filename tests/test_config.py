"""config.toml: the [store] replicas setting decides where per-process state may live."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError


def _write(tmp_path: Path, store: str) -> Path:
    (tmp_path / "config.toml").write_text(f"[store]\n{store}\n")
    return tmp_path


def test_replicas_auto_follows_the_database(tmp_path: Path) -> None:
    assert load_config(tmp_path).store_has_replicas is False  # embedded SQLite
    pg = _write(tmp_path, 'url = "postgresql+asyncpg://gw@127.0.0.1:5432/gateway"')
    assert load_config(pg).store_has_replicas is True


@pytest.mark.parametrize(("value", "expected"), [("yes", True), ("no", False)])
def test_replicas_can_be_stated(tmp_path: Path, value: str, expected: bool) -> None:
    assert load_config(_write(tmp_path, f'replicas = "{value}"')).store_has_replicas is expected


def test_an_unknown_replicas_value_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="replicas"):
        load_config(_write(tmp_path, 'replicas = "maybe"'))


def test_event_loop_setting_is_checked(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[server]\nevent_loop = "trio"\n')
    with pytest.raises(ConfigError, match="event_loop"):
        load_config(tmp_path)
