"""The composition root: the one core module that knows which protocol packages exist.

Every list of protocols derives from the registry in :mod:`protocols` (the adapters
found there): the protocols a configuration may name, the Alembic branches the store
upgrades, the profiles adapters declare (SCEP's RA profile), the dev configurations
``gateway init`` makes, the routes and CLI commands. No other core module imports
``protocols`` (an import contract in ``.ci/run`` keeps it so).
"""

from __future__ import annotations

import importlib.util
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError
from .profiles.loader import parse_profile
from .profiles.model import Profile

if TYPE_CHECKING:
    from protocols.base import ProtocolAdapter


@lru_cache(maxsize=1)
def protocol_names() -> tuple[str, ...]:
    """Names of the protocol packages installed, without importing them (cheap, and safe
    at import time of modules the packages themselves import)."""
    import protocols

    return tuple(name for name in protocols.KNOWN if importlib.util.find_spec(f"protocols.{name}") is not None)


def adapters() -> "tuple[ProtocolAdapter, ...]":
    """Every installed protocol adapter, imported once."""
    import protocols

    return protocols.adapters()


def adapter(name: str) -> "ProtocolAdapter | None":
    return next((a for a in adapters() if a.name == name), None)


def migration_locations() -> list[Path]:
    """Each protocol's own Alembic branch (off the core's first revision), for the store."""
    import protocols

    root = Path(protocols.__file__).parent
    locations = []
    for name in protocol_names():
        directory = root / name / "migrations"
        if directory.is_dir():
            locations.append(directory)
    return locations


def declared_profiles() -> dict[str, Profile]:
    """Profiles adapters ship for certificates they need themselves (``ADAPTER.profiles``:
    name to TOML text); the data directory's profiles of the same name override them."""
    found: dict[str, Profile] = {}
    for a in adapters():
        for name, text in getattr(a, "profiles", {}).items():
            source = f"protocols/{a.name} profile {name}"
            try:
                profile = parse_profile(tomllib.loads(text), source)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{source}: {exc}") from exc
            if profile.name != name:
                raise ConfigError(f"{source} is named {profile.name!r}")
            found[name] = profile
    return found
