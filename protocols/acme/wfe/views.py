"""The JSON objects of RFC 8555 section 7.1 (and the ARI/profile additions), from the model."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..records import Account, Authorization, Challenge, Order
from .context import Urls, rfc3339


def account_view(account: Account, urls: Urls) -> dict[str, Any]:
    view: dict[str, Any] = {
        "status": account.status,
        "contact": account.contact,
        "orders": urls.orders(account.id),
        "termsOfServiceAgreed": account.tos_agreed,
        "key": account.jwk,
        "createdAt": rfc3339(account.created_at),
    }
    return view


def challenge_view(authz: Authorization, challenge: Challenge, urls: Urls) -> dict[str, Any]:
    view: dict[str, Any] = {
        "type": challenge.type,
        "url": urls.challenge(authz.id, challenge.type),
        "status": challenge.status,
        "token": challenge.token,
    }
    if challenge.validated is not None:
        view["validated"] = rfc3339(challenge.validated)
    if challenge.error is not None:
        view["error"] = challenge.error
    return view


def authz_view(authz: Authorization, urls: Urls, now: dt.datetime) -> dict[str, Any]:
    view: dict[str, Any] = {
        "identifier": authz.identifier.to_json(),
        "status": authz.effective_status(now),
        "expires": rfc3339(authz.expires),
        "challenges": [challenge_view(authz, c, urls) for c in authz.challenges],
    }
    if authz.wildcard:
        view["wildcard"] = True
    return view


def order_view(order: Order, urls: Urls, now: dt.datetime) -> dict[str, Any]:
    status = order.effective_status(now)
    view: dict[str, Any] = {
        "status": status,
        "expires": rfc3339(order.expires),
        "identifiers": [i.to_json() for i in order.identifiers],
        "authorizations": [urls.authz(a) for a in order.authz_ids],
        "finalize": urls.finalize(order.id),
        "profile": order.profile,
    }
    if order.not_before is not None:
        view["notBefore"] = rfc3339(order.not_before)
    if order.not_after is not None:
        view["notAfter"] = rfc3339(order.not_after)
    if order.replaces is not None:
        view["replaces"] = order.replaces
    if order.error is not None:
        view["error"] = order.error
    elif status == "invalid" and order.status in ("pending", "ready"):
        view["error"] = {"type": "urn:ietf:params:acme:error:malformed", "status": 400,
                         "detail": "the order expired before it was finalized"}
    if status == "valid" and order.serial is not None:
        view["certificate"] = urls.certificate(order.serial)
    return view
