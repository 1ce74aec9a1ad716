"""Protocol adapters, one package per protocol (see :mod:`protocols.base`)."""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import ProtocolAdapter

KNOWN = ("acme", "scep", "est", "windows", "xcep", "mdm")
"""The registry: protocol packages this gateway looks for, in order. Every list of
protocols in the core derives from the packages found here (``gateway.composition``)."""


@lru_cache(maxsize=1)
def adapters() -> "tuple[ProtocolAdapter, ...]":
    """Every protocol package present in this installation, imported once."""
    found = []
    for name in KNOWN:
        try:
            module = importlib.import_module(f"protocols.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"protocols.{name}":
                raise  # a real import error inside the package must not be hidden
            continue
        found.append(module.ADAPTER)
    return tuple(found)
