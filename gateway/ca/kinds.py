"""Backend kinds: how a CA record becomes the backend that signs for it.

A kind is a name (``CARecord.backend``) and a factory. The local CA is built in;
connectors (upstream ACME, EST, AD CS) and HSM-held keys register theirs here, or
ship them as installed plugins under the entry-point group ``gateway.ca_backends``
(each entry point names a factory). Adding a kind touches nothing else in the core:
the Authority only ever sees :class:`gateway.ca.backend.CABackend`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Callable, Iterator

from .. import sealing
from ..errors import Unavailable
from ..store.records import CARecord
from .backend import CABackend
from .local import LocalCA, LocalCASettings
from .upstream.http01 import Http01Tokens

if TYPE_CHECKING:
    from .hierarchy import CAHierarchy

log = logging.getLogger(__name__)


class BackendStartupError(Unavailable):
    """A CA's backend cannot start for a reason the operator must fix (a token that is
    missing, a wrong PIN): ``gateway serve`` refuses to start and names it, rather than
    serving a gateway whose CA fails every request."""

ENTRY_POINT_GROUP = "gateway.ca_backends"
BUILT_IN = ("local", "pkcs11", "est", "acme", "adcs")


@functools.lru_cache(maxsize=4)
def _sealing_master(passphrase: bytes) -> bytes:
    return sealing.stretch(passphrase, salt=b"enrollment-gateway ca-backends v1")


@dataclass(frozen=True)
class BackendContext:
    """What the core hands a factory: settings and CA tooling, never the store."""

    settings: LocalCASettings
    hierarchy: "CAHierarchy"
    http01: Http01Tokens = field(default_factory=Http01Tokens)
    """http-01 answers the gateway serves for ACME upstreams (one set per registry)."""

    def sealer(self, kind: str) -> sealing.Sealer:
        """Seals a kind's secrets (an upstream password, an ACME account key) in its
        ``backend_settings``: opened with the CA passphrase, nothing in the store alone."""
        return sealing.Sealer(sealing.derive(_sealing_master(self.settings.passphrase), f"ca:{kind}".encode()))


BackendFactory = Callable[[CARecord, BackendContext], CABackend]


def _local(record: CARecord, context: BackendContext) -> CABackend:
    return LocalCA(record, context.settings, context.hierarchy)


def _pkcs11(record: CARecord, context: BackendContext) -> CABackend:
    from . import pkcs11  # python-pkcs11 is loaded only by gateways that have such a CA

    return pkcs11.build(record, context.settings, context.hierarchy)


def _acme(record: CARecord, context: BackendContext) -> CABackend:
    from .upstream.acme import KIND, AcmeUpstream

    return AcmeUpstream(record, context.sealer(KIND), context.http01)


def _adcs(record: CARecord, context: BackendContext) -> CABackend:
    from .upstream.wstep import KIND, WstepUpstream

    return WstepUpstream(record, context.sealer(KIND))


def _est(record: CARecord, context: BackendContext) -> CABackend:
    from .upstream.est import KIND, EstUpstream

    return EstUpstream(record, context.sealer(KIND))


class BackendKinds:
    """The kinds known to one gateway: built-ins, plugins, and those registered in code."""

    def __init__(self) -> None:
        self._factories: dict[str, BackendFactory] = {"local": _local, "pkcs11": _pkcs11, "est": _est, "acme": _acme,
                                                       "adcs": _adcs}
        self._plugins_loaded = False

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in self._factories:
                continue
            try:
                self._factories[ep.name] = ep.load()
            except Exception:  # a broken plugin must not stop the gateway; its CAs stay unavailable
                log.exception("CA backend plugin %s failed to load", ep.name)

    def register(self, name: str, factory: BackendFactory) -> None:
        if name in self._factories:
            raise ValueError(f"CA backend kind {name!r} is already registered")
        self._factories[name] = factory

    def unregister(self, name: str) -> None:
        if name in BUILT_IN:
            raise ValueError(f"the {name} backend kind is built in")
        self._factories.pop(name, None)

    @contextlib.contextmanager
    def registered(self, name: str, factory: BackendFactory) -> Iterator[None]:
        """A kind for the duration of a block (tests)."""
        self.register(name, factory)
        try:
            yield
        finally:
            self.unregister(name)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._factories)

    def build(self, record: CARecord, context: BackendContext) -> CABackend:
        self._load_plugins()
        factory = self._factories.get(record.backend)
        if factory is None:
            raise Unavailable(f"CA {record.id}: no backend kind {record.backend!r} is installed")
        return factory(record, context)


KINDS = BackendKinds()
"""The process's backend kinds (a registry of code, like a codec registry: no runtime state)."""
