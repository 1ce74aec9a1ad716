"""The labels an EST app serves, re-read whenever any protocol configuration changes.

A label is an EST protocol configuration (see :mod:`.policy`). Each request asks the
door for the configuration generation (one small read), and the EST configurations
are read again only when it has moved: an admin edit made through any worker or
replica is seen on the next request, and a label's policy (trust anchors parsed,
CSR attributes encoded) is not rebuilt on every request in between.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.door import Door, ProtocolConfigRecord, is_configuration_id
from gateway.errors import NotFound

from .policy import DEFAULT_LABEL, LabelPolicy, is_default, policy_for


@dataclass(frozen=True)
class Label:
    """One label as a request sees it: the configuration and the policy read from it."""

    record: ProtocolConfigRecord
    policy: LabelPolicy


@dataclass
class _Snapshot:
    """The EST configurations as of one configuration generation."""

    generation: int
    records: dict[str, ProtocolConfigRecord]
    policies: dict[str, LabelPolicy] = field(default_factory=dict)

    def default_label(self) -> str:
        """The label served at ``/.well-known/est/``: the one marked ``default`` (the
        first by name if several are), else the dev label ``est``."""
        marked = sorted(rec.id for rec in self.records.values() if is_default(rec))
        if marked:
            return marked[0]
        if DEFAULT_LABEL in self.records:
            return DEFAULT_LABEL
        raise NotFound("there is no default EST label here; use /.well-known/est/<label>/")


class Labels:
    """This app's view of its labels, cached per configuration generation."""

    def __init__(self, door: Door) -> None:
        self._door = door
        self._snapshot: _Snapshot | None = None

    async def _current(self) -> _Snapshot:
        generation = await self._door.configuration_generation()  # before the records: never newer data
        snapshot = self._snapshot
        if snapshot is None or snapshot.generation != generation:
            records = {rec.id: rec for rec in await self._door.configurations()}
            snapshot = _Snapshot(generation, records)
            if self._snapshot is None or self._snapshot.generation <= generation:
                self._snapshot = snapshot  # a slower, older read does not replace a newer one
        return snapshot

    async def resolve(self, name: str | None) -> Label:
        """The label a request names (None: the default label); NotFound / Forbidden
        (disabled) as the core decides, LabelMisconfigured for unusable settings."""
        snapshot = await self._current()
        if name is None:
            name = snapshot.default_label()
        elif not is_configuration_id(name):
            raise NotFound(f"no EST label {name!r}")
        record = self._door.check_configuration(snapshot.records.get(name), name)
        policy = snapshot.policies.get(name)
        if policy is None:
            policy = snapshot.policies[name] = policy_for(record)
        return Label(record, policy)

    def forget(self) -> None:
        """Drop what was read (the app is stopping)."""
        self._snapshot = None
