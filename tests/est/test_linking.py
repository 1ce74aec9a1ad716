"""tls-unique linking of the CSR to the TLS session (RFC 7030 section 3.5), over real TLS 1.2."""

from __future__ import annotations

import base64

from .helpers import EstServer, b64, basic, http_post, make_csr, raw_exchange


def _enroll(label: str, auth: tuple[str, str], challenge_for):  # type: ignore[no-untyped-def]
    """Request bytes built after the handshake, with the challengePassword ``challenge_for(tls_unique)``."""
    def build(unique: bytes | None) -> bytes:
        challenge = challenge_for(unique)
        csr, _ = make_csr("linked-device", challenge=challenge)
        return http_post(f"/.well-known/est/{label}/simpleenroll", b64(csr),
                         {"Content-Type": "application/pkcs10", "Authorization": basic(*auth)})
    return build


async def test_required_linking_accepts_this_sessions_tls_unique(est: EstServer) -> None:
    await est.label("linked", users={"user": "p"}, pop_linking="required")
    status, headers, _, unique = await raw_exchange(
        est, _enroll("linked", ("user", "p"), lambda u: base64.b64encode(u).decode()))
    assert unique is not None and len(unique) == 12  # TLS 1.2 Finished verify_data
    assert status == 200 and headers["content-type"] == "application/pkcs7-mime; smime-type=certs-only"
    assert await est.issued("linked") == 1


async def test_required_linking_refuses_missing_foreign_or_tls13(est: EstServer) -> None:
    await est.label("linked", users={"user": "p"}, pop_linking="required")
    foreign = base64.b64encode(b"another session").decode()
    for challenge, tls12 in ((lambda u: None, True), (lambda u: foreign, True),
                             (lambda u: base64.b64encode(b"x" * 12).decode(), False)):
        status, headers, body, _ = await raw_exchange(est, _enroll("linked", ("user", "p"), challenge), tls12=tls12)
        assert status == 401 and headers["www-authenticate"] == 'Basic realm="EST linked"' and body == b""
    assert await est.issued("linked") == 0


async def test_optional_linking_checks_a_challenge_password_when_it_can(est: EstServer) -> None:
    await est.label("maybe", users={"user": "p"}, pop_linking="optional")
    status, *_ = await raw_exchange(est, _enroll("maybe", ("user", "p"), lambda u: "not-the-tls-unique"))
    assert status == 401
    status, *_ = await raw_exchange(est, _enroll("maybe", ("user", "p"), lambda u: None))
    assert status == 200
    # TLS 1.3 has no tls-unique: an optional link cannot be checked and is not held against the client.
    status, *_ = await raw_exchange(est, _enroll("maybe", ("user", "p"), lambda u: "anything"), tls12=False)
    assert status == 200
    assert await est.issued("maybe") == 2


async def test_linking_off_ignores_the_challenge_password(est: EstServer) -> None:
    await est.label("plain", users={"user": "p"}, pop_linking="off")
    csr, _ = make_csr("plain-device", challenge="one-time-secret")
    assert (await est.post("simpleenroll", b64(csr), label="plain", auth=("user", "p"), tls12=True)).status == 200
