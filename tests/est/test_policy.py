"""Label settings: what an operator may store, and how a bad record surfaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import BadRequest, ErrorKind
from gateway.secrets import hash_secret
from gateway.store.records import ProtocolConfigRecord
from protocols.est.policy import LabelMisconfigured, policy_for, validate_settings

from .helpers import device_certificate, manufacturer_ca, pem


def record(settings: dict, credentials: dict | None = None) -> ProtocolConfigRecord:
    return ProtocolConfigRecord(id="lbl", protocol="est", ca_id="issuing", profiles=["device"],
                                default_profile="device", credentials=credentials or {}, settings=settings)


def test_defaults() -> None:
    policy = policy_for(record({}))
    assert (policy.auth, policy.pop_linking, policy.retry_after) == ("either", "optional", 60)
    assert policy.accept_issued_certificates and policy.serverkeygen and not policy.manual_approval
    assert policy.csrattrs is None and policy.trust_anchors == ()
    assert policy.serverkeygen_algorithm == "EC-P256" and policy.profile == "device"


def test_approval_is_read_and_users_are_not_configuration(caplog: pytest.LogCaptureFixture) -> None:
    """Users are enrollment credentials (door.credentials); JSON users left in a record
    are not accepted, and the log says so."""
    hashed = hash_secret("pw")
    policy = policy_for(record({"approval": "manual"}, {"basic": [{"username": "u", "password": hashed}]}))
    assert policy.manual_approval and not hasattr(policy, "users")
    assert "credentials.basic" in caplog.text and "gateway est user add lbl" in caplog.text


@pytest.mark.parametrize("settings,message", [
    ({"auth": "telepathy"}, "auth must be one of"),
    ({"pop_linking": "sometimes"}, "pop_linking"),
    ({"retry_after": 0}, "retry_after"),
    ({"retry_after": True}, "retry_after"),
    ({"serverkeygen": "yes"}, "true or false"),
    ({"serverkeygen_algorithm": "DSA"}, "unknown key algorithm"),
    ({"client_trust_anchors": "not a list"}, "list of PEM"),
    ({"client_trust_anchors": ["garbage"]}, "not a PEM certificate"),
    ({"csrattrs": {"oids": ["x"]}}, "dotted"),
    ({"colour": "blue"}, "unknown EST setting"),
])
def test_invalid_settings_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        validate_settings(settings)


def test_an_end_entity_certificate_is_no_trust_anchor(tmp_path: Path) -> None:
    ca, key, _ = manufacturer_ca(tmp_path)
    leaf = device_certificate(ca, key, "SN-1", tmp_path)
    validate_settings({"client_trust_anchors": [pem(ca).decode()]})
    with pytest.raises(BadRequest, match="not a CA certificate"):
        validate_settings({"client_trust_anchors": [pem(leaf.certificate).decode()]})


def test_a_broken_stored_record_is_the_operators_problem() -> None:
    with pytest.raises(LabelMisconfigured) as info:
        policy_for(record({"auth": "nope"}))
    assert info.value.kind is ErrorKind.UNAVAILABLE and "lbl" in info.value.detail
    # The credentials document is not read any more: a plaintext "hash" left in it
    # (the migration leaves what it cannot move) breaks nothing and lets nobody in.
    assert policy_for(record({}, {"basic": [{"username": "u", "password": "plaintext"}]})).label == "lbl"
