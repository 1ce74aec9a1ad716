"""Bounds the admin API enforces, stated in its OpenAPI document: a client validating
against the schema is refused by neither, and bound + 1 is refused by both (400)."""

from __future__ import annotations

from typing import Any

import jsonschema

from tests.test_admin_api import Admin, admin, app, gw, make_csr  # noqa: F401  (fixtures)

HUNDRED_YEARS = 36525 * 86400


def _issue_request_validator(doc: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        {"$ref": "#/components/schemas/IssueRequest", "components": doc["components"]})


async def test_validity_seconds_maximum_is_in_the_schema_and_bound_plus_one_is_400(admin: Admin) -> None:  # noqa: F811
    prop = admin.doc["components"]["schemas"]["Overrides"]["properties"]["validity_seconds"]
    assert prop["maximum"] == HUNDRED_YEARS
    validator = _issue_request_validator(admin.doc)

    def body(validity: int) -> dict[str, Any]:
        return {"ca": "issuing", "profile": "tls-server", "csr": make_csr(),
                "overrides": {"validity_seconds": validity}}

    assert validator.is_valid(body(HUNDRED_YEARS)) and not validator.is_valid(body(HUNDRED_YEARS + 1))
    before = (await admin.get("/certificates"))["total"]
    refused = await admin.call("POST", "/certificates", 400, json_body=body(HUNDRED_YEARS + 1))
    assert "validity_seconds" in refused.data["detail"]
    assert (await admin.get("/certificates"))["total"] == before  # nothing was issued
    # at the bound the maximum is not what refuses it: the profile's max_validity is (403)
    refused = await admin.call("POST", "/certificates", 403, json_body=body(HUNDRED_YEARS))
    assert "maximum of profile tls-server" in refused.data["detail"]
