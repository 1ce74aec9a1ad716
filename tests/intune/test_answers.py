"""The client's readers of what Entra, Graph and Intune answer: malformed bodies are
IntuneUnavailable (503 to the device), never an unhandled exception (fuzz target intune-answers)."""

from __future__ import annotations

from typing import Any

import pytest

from protocols.scep.intune.client import IntuneUnavailable, parse_answer, parse_discovery, parse_revocations


@pytest.mark.parametrize("text", ["[" * 100_000, "not json", "[1, 2]", '"text"', ""])
def test_bodies_that_are_not_a_json_object(text: str) -> None:
    with pytest.raises(IntuneUnavailable):
        parse_answer(text, "intune.example")


def test_discovery_keeps_only_well_formed_entries() -> None:
    found = parse_discovery({"value": [{"providerName": "PkiConnectorFEService", "uri": "https://p"},
                                       {"providerName": 3, "uri": "https://x"}, "junk", {"uri": "https://y"}]})
    assert found == {"pkiconnectorfeservice": "https://p"}
    with pytest.raises(IntuneUnavailable):
        parse_discovery({"value": {"a": 1}})


@pytest.mark.parametrize("item", [["ctx"], "ctx", {"requestContext": "c"}, {"requestContext": None, "serialNumber": "1"},
                                  {"requestContext": "c", "serialNumber": True}, {"requestContext": {}, "serialNumber": "1"}])
def test_a_malformed_revocation_request_refuses_the_batch(item: Any) -> None:
    with pytest.raises(IntuneUnavailable):
        parse_revocations({"value": [item]})


def test_revocation_requests_with_odd_optional_fields() -> None:
    (req,) = parse_revocations({"value": [{"requestContext": "c", "serialNumber": 26, "issuerName": ["x"],
                                           "caConfiguration": {"a": 1}}]})
    assert (req.request_context, req.serial_number, req.issuer_name, req.ca_configuration) == ("c", "26", "", None)
