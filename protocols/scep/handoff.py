"""SCEP's offer to the protocols that hand out its one-time challenges (the MDM web service).

The core reaches it through ``Door.challenge_issuer("scep")`` (the adapter's
``challenge_issuer``), so the MDM package never imports SCEP: it asks for a challenge
bound to a subject and a profile, gives it to its platform, and the device redeems it
against this configuration's SCEP URL like any mscep_admin challenge (single use,
bound, expiring: :class:`.challenge.DynamicChallengeVerifier`). The profile travels
with the challenge, so one SCEP configuration serves every digital ID of an MDM
configuration, each under its own profile.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from gateway.door import Door, OneTimeChallenge
from gateway.errors import BadRequest, NotFound

from .challenge import END_ENTITY, issue_dynamic_challenge
from .ra import issue_ra
from .repository import ScepRepository
from .settings import parse_settings

HANDOFF_SETTINGS = {"challenge_verifiers": ["dynamic"]}
"""A configuration provisioned for another protocol takes its one-time challenges only:
no static challenge, so every enrollment was vouched for by the protocol that asked."""


class ScepChallengeIssuer:
    def __init__(self, door: Door) -> None:
        self._door = door
        self._repo = ScepRepository(door.tables)

    def url(self, config_id: str) -> str:
        return f"{self._door.config.http_url}/scep/{config_id}"

    async def issue(
        self, config_id: str, *, bound_subject: str, profile: str, issued_by: str,
        ttl: dt.timedelta | None = None, attributes: Mapping[str, str] | None = None,
        entity: str | None = None,
    ) -> OneTimeChallenge:
        rec = await self._door.find_configuration(config_id)
        if rec is None or not rec.enabled:
            raise NotFound(f"SCEP configuration {config_id!r} does not exist or is disabled")
        if profile not in rec.profiles:
            raise BadRequest(f"SCEP configuration {config_id!r} does not offer profile {profile!r}")
        settings = parse_settings(rec.settings, rec.id)
        if "dynamic" not in settings.verifiers:
            raise BadRequest(f"SCEP configuration {config_id!r} does not accept one-time challenges")
        issued = await issue_dynamic_challenge(
            self._repo, rec.id, ttl=settings.challenge_lifetime(ttl), limit=settings.dynamic_challenge_limit,
            source=self._source(issued_by), issued_by=issued_by, bound_subject=bound_subject,
            attributes={**(attributes or {}), **({END_ENTITY: entity[:255]} if entity else {})}, profile=profile,
            now=self._door.clock(),
        )
        await self._door.record_event(
            "scep_challenge", "success", protocol_config=rec.id, source=self._source(issued_by),
            actor=issued_by, bound=True, profile=profile,
        )
        return OneTimeChallenge(issued.challenge, rec.id, issued.expires_at, bound_subject, self.url(rec.id))

    async def provision(self, config_id: str, ca_id: str, *, profiles: list[str], actor: str) -> str:
        await self._door.create_configuration(config_id, ca_id, profiles, settings=dict(HANDOFF_SETTINGS), actor=actor)
        await issue_ra(self._door, self._repo, config_id, ca_id, actor=actor)
        return self.url(config_id)

    @staticmethod
    def _source(issued_by: str) -> str:
        """The protocol that asked (``mdm`` from ``mdm:<config>:<user>``), the challenge's source."""
        return issued_by.split(":", 1)[0][:32] or "handoff"
