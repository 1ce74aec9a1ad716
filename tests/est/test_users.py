"""EST's Basic users are enrollment credentials: a lockout after repeated wrong
passwords, over real HTTPS, with the gateway's clock moved instead of waiting."""

from __future__ import annotations

import base64
import datetime as dt

import pytest

from gateway.clock import FakeClock
from protocols.est.auth import LOCKOUT

from .helpers import EstServer, Reply, b64, make_csr

CHALLENGE = 'Basic realm="EST line"'
WRONG = "not-the-password-42"
MAX_FAILURES = LOCKOUT.max_failures or 0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def refused(reply: Reply) -> bool:
    """What a client sees for wrong, unknown and locked-out credentials alike."""
    return reply.status == 401 and reply.headers.get("WWW-Authenticate") == CHALLENGE and reply.body == b""


async def test_a_locked_out_user_is_refused_with_the_right_password_until_the_period_passes(
        est: EstServer, clock: FakeClock) -> None:
    await est.label("line", users={"tech": "s3cret", "other": "other-pw"})
    csr = b64(make_csr("line-1")[0])
    for _ in range(MAX_FAILURES):
        assert refused(await est.post("simpleenroll", csr, label="line", auth=("tech", WRONG)))

    # Locked: the right password gets the same 401 and its challenge, and nothing is issued.
    assert refused(await est.post("simpleenroll", csr, label="line", auth=("tech", "s3cret")))
    assert await est.issued("line") == 0
    [lockout] = await est.events(type="credential_lockout")
    assert lockout.protocol_config == "line" and lockout.detail["username"] == "tech"
    assert lockout.detail["failures"] == MAX_FAILURES
    # Every refusal was audited, none with a password in it.
    failures = await est.events(type="auth", status="failure")
    assert len(failures) == MAX_FAILURES + 1
    assert not any("s3cret" in str(e.detail) or WRONG in str(e.detail) for e in failures)

    # The lockout is the user's, not the label's.
    assert (await est.post("simpleenroll", b64(make_csr("line-2")[0]), label="line",
                           auth=("other", "other-pw"))).status == 200

    clock.advance(LOCKOUT.period - dt.timedelta(seconds=1))
    assert refused(await est.post("simpleenroll", csr, label="line", auth=("tech", "s3cret")))
    clock.advance(dt.timedelta(seconds=2))
    reply = await est.post("simpleenroll", csr, label="line", auth=("tech", "s3cret"))
    assert reply.status == 200, reply.text
    assert reply.certificates[0].subject.rfc4514_string() == "CN=line-1"
    assert await est.issued("line") == 2


async def test_a_success_resets_the_count(est: EstServer) -> None:
    await est.label("line", users={"tech": "s3cret"})
    csr = b64(make_csr("reset-1")[0])
    for _ in range(2):
        for _ in range(MAX_FAILURES - 1):
            assert refused(await est.post("simpleenroll", csr, label="line", auth=("tech", WRONG)))
        assert (await est.post("simpleenroll", csr, label="line", auth=("tech", "s3cret"))).status == 200
    assert await est.events(type="credential_lockout") == []


async def test_the_lockout_holds_on_reenroll_in_both_mode(est: EstServer) -> None:
    """simplereenroll asks the password on top of the certificate when auth is ``both``."""
    await est.label("line", users={"tech": "s3cret"}, auth="both")
    device = await est.client_cert("both-1")
    renewal = b64(make_csr("both-1", key=device.key)[0])
    for _ in range(MAX_FAILURES):
        assert refused(await est.post("simplereenroll", renewal, label="line", cert=device, auth=("tech", WRONG)))
    assert refused(await est.post("simplereenroll", renewal, label="line", cert=device, auth=("tech", "s3cret")))


async def test_iso_8859_1_credentials_of_pre_rfc7617_clients_are_accepted(est: EstServer) -> None:
    await est.label("line", users={"jürgen": "pässwort"})
    header = "Basic " + base64.b64encode("jürgen:pässwort".encode("latin-1")).decode()
    reply = await est.post("simpleenroll", b64(make_csr("latin-1")[0]), label="line", auth=header)
    assert reply.status == 200, reply.text
    utf8 = "Basic " + base64.b64encode("jürgen:pässwort".encode()).decode()
    assert (await est.post("simpleenroll", b64(make_csr("utf-8")[0]), label="line", auth=utf8)).status == 200
