"""SCEP (RFC 8894), NDES-compatible: see :mod:`.service` for the protocol, :mod:`.http`
for the transport and NDES paths, :mod:`.challenge` for challenge passwords."""

from .adapter import ADAPTER

__all__ = ["ADAPTER"]
