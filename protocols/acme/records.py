"""The ACME server's internal model: accounts, orders, authorizations, challenges, EAB keys.

Plain dataclasses, no SQL. Statuses follow RFC 8555 section 7.1.6. Time-based
transitions (expiry) are computed when read, with :meth:`Order.effective_status`
and :meth:`Authorization.effective_status`, so nothing needs to sweep the tables
for them to be right.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any

from .identifiers import Identifier


def now_utc() -> dt.datetime:
    """Now, to the microsecond: expiry and ordering need more than the core's whole seconds."""
    return dt.datetime.now(dt.timezone.utc)


@dataclass
class Account:
    id: str
    config_id: str
    thumbprint: str
    jwk: dict[str, Any]
    entity_id: str
    status: str = "valid"  # valid | deactivated | revoked
    contact: list[str] = field(default_factory=list)
    tos_agreed: bool = False
    eab_kid: str | None = None
    allowed_identifiers: list[str] | None = None
    created_at: dt.datetime = field(default_factory=now_utc)
    entity_status: str = "active"  # the core end entity's status, asked of the door per request

    @property
    def usable(self) -> bool:
        return self.status == "valid" and self.entity_status == "active"


@dataclass
class Challenge:
    type: str
    token: str
    status: str = "pending"  # pending | processing | valid | invalid
    validated: dt.datetime | None = None
    error: dict[str, Any] | None = None
    started: dt.datetime | None = None  # when the current validation attempt began

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type, "token": self.token, "status": self.status,
            "validated": self.validated.isoformat() if self.validated else None,
            "error": self.error, "started": self.started.isoformat() if self.started else None,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> "Challenge":
        def when(v: str | None) -> dt.datetime | None:
            return dt.datetime.fromisoformat(v) if v else None

        return cls(obj["type"], obj["token"], obj["status"], when(obj.get("validated")), obj.get("error"),
                   when(obj.get("started")))


@dataclass
class Authorization:
    id: str
    config_id: str
    account_id: str
    identifier: Identifier  # the base name (no "*."); see ``wildcard``
    wildcard: bool
    expires: dt.datetime
    challenges: list[Challenge]
    status: str = "pending"  # pending | valid | invalid | deactivated | expired | revoked
    attempt: str | None = None
    created_at: dt.datetime = field(default_factory=now_utc)

    def effective_status(self, now: dt.datetime) -> str:
        if self.status in ("pending", "valid") and self.expires <= now:
            return "expired"
        return self.status

    def challenge(self, type_: str) -> Challenge | None:
        return next((c for c in self.challenges if c.type == type_), None)

    def with_challenge(self, updated: Challenge) -> list[Challenge]:
        return [updated if c.type == updated.type else c for c in self.challenges]

    def copy(self, **changes: Any) -> "Authorization":
        return replace(self, **changes)


@dataclass
class Order:
    id: str
    config_id: str
    account_id: str
    expires: dt.datetime
    identifiers: list[Identifier]
    authz_ids: list[str]
    profile: str
    status: str = "pending"  # pending | ready | processing | valid | invalid
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    error: dict[str, Any] | None = None
    serial: str | None = None
    request_id: str | None = None
    replaces: str | None = None
    created_at: dt.datetime = field(default_factory=now_utc)
    updated_at: dt.datetime = field(default_factory=now_utc)

    def effective_status(self, now: dt.datetime) -> str:
        if self.status in ("pending", "ready") and self.expires <= now:
            return "invalid"
        return self.status


@dataclass
class EabKey:
    kid: str
    config_id: str
    hmac_key_encrypted: str
    label: str = ""
    created_by: str = ""
    identifiers: list[str] | None = None
    account_id: str | None = None
    bound_at: dt.datetime | None = None
    revoked: bool = False
    created_at: dt.datetime = field(default_factory=now_utc)

    def view(self) -> dict[str, Any]:
        """Operator view; never the key."""
        return {
            "kid": self.kid, "config": self.config_id, "label": self.label, "identifiers": self.identifiers,
            "account": self.account_id, "bound_at": self.bound_at.isoformat() if self.bound_at else None,
            "revoked": self.revoked, "created_by": self.created_by, "created_at": self.created_at.isoformat(),
        }
