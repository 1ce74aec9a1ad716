"""What Entra ID, Microsoft Graph and Intune answer the gateway (protocols/scep/intune/client.py):
the JSON body, Graph's service discovery and Intune's revocation list, as the client reads
them before acting on them.

Declared errors: :class:`protocols.scep.intune.client.IntuneUnavailable` (the client's
"Intune sent something unusable", which SCEP answers with 503).
"""

from __future__ import annotations

from protocols.scep.intune.client import IntuneUnavailable, parse_answer, parse_discovery, parse_revocations

DESCRIPTION = "Intune/Graph JSON answers: the body, service discovery, revocation requests"


def seeds() -> list[bytes]:
    return [
        b'{"value":[{"providerName":"ScepRequestValidationFEService","uri":"https://a.example/Scep"},'
        b'{"providerName":"PkiConnectorFEService","uri":"https://a.example/Pki"}]}',
        b'{"value":[{"requestContext":"ctx-1","serialNumber":"1A2B","issuerName":"CN=CA",'
        b'"caConfiguration":"gw"}]}',
        b'{"code":"Success","errorDescription":""}',
        b'{"value":true}',
        b"[" * 64,
    ]


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        answer = parse_answer(text, "fuzz.example")
    except IntuneUnavailable:
        return
    for parse in (parse_discovery, parse_revocations):
        try:
            parse(answer)
        except IntuneUnavailable:
            pass
