"""Admin API inputs that crashed the admin-inputs fuzz target, sent to the real admin app
(aiohttp test server over a socket, the store of tests/test_admin_api.py's fixture)."""

from __future__ import annotations

import json

import pytest

from fuzz.targets import admin_inputs
from tests.test_admin_api import Admin, admin, app, gw, make_csr  # noqa: F401  (fixtures)


@pytest.mark.parametrize("validity", ["1e300", "1e400", "99999999999999"])
def test_huge_validity_override_through_the_target(validity: str) -> None:
    # OverflowError in dt.timedelta (1e300, inf) or in not_before + validity: HTTP 500
    admin_inputs.test_one_input(b'\n\n{"overrides": {"validity_seconds": %s}}' % validity.encode())


def test_deeply_nested_body_through_the_target() -> None:
    # RecursionError from json.loads on 100,000 nested arrays: HTTP 500
    admin_inputs.test_one_input(b"\n\n" + b"[" * 100_000)


async def test_huge_validity_override_is_400(admin: Admin) -> None:  # noqa: F811
    before = (await admin.get("/certificates"))["total"]
    for validity in ("1e300", "1e400", "99999999999999"):
        body = ('{"ca": "issuing", "profile": "tls-server", "csr": %s, "overrides": {"validity_seconds": %s}}'
                % (json.dumps(make_csr()), validity))
        result = await admin.call("POST", "/certificates", 400, data=body,
                                  headers={"Content-Type": "application/json"})
        assert "validity_seconds" in result.data["detail"]
    assert (await admin.get("/certificates"))["total"] == before  # nothing was issued


async def test_deeply_nested_body_is_400(admin: Admin) -> None:  # noqa: F811
    result = await admin.call("POST", "/certificates", 400, data=b"[" * 100_000,
                              headers={"Content-Type": "application/json"})
    assert "nested" in result.data["detail"]


async def test_not_before_near_year_9999_with_a_validity_is_refused(admin: Admin) -> None:  # noqa: F811
    # not_before 9999-12-30 + 10 days overflowed datetime in gateway/ca/builder.py: HTTP 500
    body = {"ca": "issuing", "profile": "tls-server", "csr": make_csr(),
            "overrides": {"not_before": "9999-12-30T00:00:00Z", "validity_seconds": 864000}}
    result = await admin.call("POST", "/certificates", 403, json_body=body)
    assert "issuing CA" in result.data["detail"]
