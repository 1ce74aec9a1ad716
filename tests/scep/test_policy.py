"""What SCEP hands to the core: profile subject policy, end-entity state, and the
pluggable challenge verifier (the seam an Intune validation service plugs into)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from conformance.scep.simulator import make_csr
from gateway.profiles.loader import parse_profile
from protocols.scep import challenge as challenge_module
from protocols.scep.challenge import ChallengeGrant, ChallengeRequest, IssuedInfo
from protocols.scep.types import FailInfo, PkiStatus

from .conftest import STATIC, Env

DEVICE_PROFILE = Path(__file__).resolve().parents[2] / "gateway" / "profiles" / "defaults" / "device.toml"


async def test_profile_replaces_the_subject(env: Env) -> None:
    data = tomllib.loads(DEVICE_PROFILE.read_text())
    data["name"] = "kiosk"
    data["subject"] = {"mode": "format", "format": "CN=<cn>,OU=Kiosks,O=Example"}
    env.gw.profiles["kiosk"] = parse_profile(data, "test")
    await env.gw.authority.create_config("kiosk", "scep", "issuing", ["kiosk"])
    from protocols.scep.challenge import set_static_challenge

    await set_static_challenge(env.repo, "kiosk", STATIC)
    device = await env.device("kiosk")
    rep = await env.post(device.pkcs_req(make_csr(device.key, "kiosk-3", challenge=STATIC))[0], "/scep/kiosk")
    assert rep.status is PkiStatus.SUCCESS, rep.fail_text
    assert device.issued(rep)[0].subject.rfc4514_string() == "CN=kiosk-3,OU=Kiosks,O=Example"


async def test_a_deactivated_device_gets_nothing(env: Env) -> None:
    device = await env.device()
    assert (await env.post(device.pkcs_req(make_csr(device.key, "lost-phone", challenge=STATIC))[0])).status \
        is PkiStatus.SUCCESS
    entity = next(e for e in await env.core.list_end_entities(protocol_config="scep") if e.name == "lost-phone")
    await env.gw.authority.set_entity_status(entity.id, "inactive", "operator")
    again = await env.device()
    rep = await env.post(again.pkcs_req(make_csr(again.key, "lost-phone", challenge=STATIC))[0])
    assert (rep.status, rep.fail_info) == (PkiStatus.FAILURE, FailInfo.BAD_REQUEST)
    assert "inactive" in (rep.fail_text or "")


class RecordingVerifier:
    """An external validation service stand-in: approves CSRs whose CN starts with
    ``mdm-`` and records the notifications, as Intune's API would receive them."""

    name = "recording"
    calls: list[tuple[str, Any]] = []

    def __init__(self, _repo: Any) -> None:
        pass

    async def verify(self, request: ChallengeRequest) -> ChallengeGrant | None:
        self.calls.append(("verify", request.challenge))
        cn = request.csr.subject.rfc4514_string()
        if request.challenge == "opaque-mdm-token" and cn.startswith("CN=mdm-"):
            return ChallengeGrant(self.name, {"managed": "yes"})
        return None

    async def notify_success(self, request: ChallengeRequest, grant: ChallengeGrant, issued: IssuedInfo | None) -> None:
        self.calls.append(("success", issued))

    async def notify_failure(self, request: ChallengeRequest, grant: ChallengeGrant, reason: str) -> None:
        self.calls.append(("failure", reason))


@pytest.fixture
def recording_verifier(monkeypatch: pytest.MonkeyPatch) -> type[RecordingVerifier]:
    RecordingVerifier.calls = []
    monkeypatch.setitem(challenge_module.VERIFIERS, "recording", RecordingVerifier)
    return RecordingVerifier


async def test_a_registered_verifier_decides_and_hears_the_outcome(env: Env, recording_verifier: Any) -> None:
    await env.core.update_protocol_config("scep", settings={"challenge_verifiers": ["recording", "static"]})
    device = await env.device()
    rep = await env.post(device.pkcs_req(make_csr(device.key, "mdm-laptop", challenge="opaque-mdm-token"))[0])
    assert rep.status is PkiStatus.SUCCESS
    cert = device.issued(rep)[0]
    kinds = [k for k, _ in recording_verifier.calls]
    assert kinds == ["verify", "success"]
    issued = recording_verifier.calls[-1][1]
    assert issued.serial_hex == format(cert.serial_number, "x") and issued.not_after == cert.not_valid_after_utc
    # an enrollment it vouched for that the core then refuses is reported as a failure
    bad = make_csr(device.key, "mdm-laptop", challenge="opaque-mdm-token", dns=("not a hostname",))
    refused = await env.post(device.pkcs_req(bad)[0])
    assert refused.fail_info is FailInfo.BAD_REQUEST and recording_verifier.calls[-1][0] == "failure"
    # it does not know the static challenge: the next verifier does
    assert (await env.post(device.pkcs_req(make_csr(device.key, "plain", challenge=STATIC))[0])).status \
        is PkiStatus.SUCCESS
    # unknown to all of them
    rep = await env.post(device.pkcs_req(make_csr(device.key, "mdm-x", challenge="nope"))[0])
    assert rep.fail_info is FailInfo.BAD_REQUEST


async def test_an_unavailable_verifier_is_a_clean_failure(env: Env) -> None:
    await env.core.update_protocol_config("scep", settings={"challenge_verifiers": ["radius"]})
    device = await env.device()
    rep = await env.post(device.pkcs_req(make_csr(device.key, "d", challenge=STATIC))[0])
    assert rep.fail_info is FailInfo.BAD_REQUEST and "radius" in (rep.fail_text or "")
