"""Every recorded GetPolicies request (MS-XCEP spec, MS-MDE2 spec, a real Windows 10 MDM
client) replayed against the real server: each gets a GetPoliciesResponse that validates
against the MS-XCEP schema.

The captures carry no usable credentials (the MS-XCEP example elides them, the MDM ones are
someone else's), so each is replayed as it is except for its authentication:

- a capture with a UsernameToken goes to the UsernamePassword endpoint with the dev
  user's name and password put into its Username and Password (nothing else changes,
  not even its stale ``u:Timestamp``);
- one without (the MS-MDE2 Federated example carries an MDM BinarySecurityToken) goes to
  the Certificate endpoint over TLS with a client certificate from the gateway's CA; its
  security header is left as it is (that endpoint does not read it).

The MS-XCEP capture is sent to the exact path it names in ``a:To`` (AD CS's, lower case);
the MDM ones name MDM enrollment paths this package does not serve, so they go to the
gateway's own CEP paths.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from lxml import etree

from conformance.harness import SHARED_CAPTURES

from .helpers import SOAP12, WSA, WSSE, XCEP, WindowsServer, assert_valid, capture

CAPTURES = sorted([*(SHARED_CAPTURES / "xcep-wstep" / "ms-xcep").glob("*GetPolicies*request*.xml"),
                   *(SHARED_CAPTURES / "mde2").glob("*/*GetPolicies*request*.xml")])
EXPECTED = {"4.1.1.1-GetPolicies-initial-request.xml", "2-GetPolicies-request.xml",
            "4.2.1.1-GetPolicies-request-Federated.xml", "4.2.1.3-GetPolicies-request-OnPremise.xml"}


def test_the_captures_are_all_there() -> None:
    capture("xcep-wstep", "ms-xcep")
    assert {p.name for p in CAPTURES} >= EXPECTED


def with_credentials(data: bytes, username: str, password: str) -> bytes:
    root = etree.fromstring(data)
    for local, value in (("Username", username), ("Password", password)):
        for el in root.iter(f"{{{WSSE}}}{local}"):
            for child in list(el):
                el.remove(child)  # the spec's <!--Removed-->
            el.text = value
    return etree.tostring(root)


@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
async def test_each_recorded_get_policies_gets_a_schema_valid_answer(windows: WindowsServer, path: Path) -> None:
    data = path.read_bytes()
    root = etree.fromstring(data)
    has_username_token = root.find(f".//{{{WSSE}}}UsernameToken") is not None
    to = root.findtext(f"{{{SOAP12}}}Header/{{{WSA}}}To").strip()
    if has_username_token:
        body = with_credentials(data, windows.dev["username"], windows.dev["password"])
        target = urlsplit(to).path
        url = target if target.lower().endswith("/service.svc/cep") else windows.dev["cep"]["username"]
        rep = await windows.post(url, body)
    else:
        cert = await windows.client_cert("replay.example.com")
        rep = await windows.post(windows.dev["cep"]["certificate"], data, cert=cert)
    assert rep.status == 200, rep.body[:600]
    assert rep.action == f"{XCEP}/IPolicy/GetPoliciesResponse"
    assert rep.relates_to == root.findtext(f"{{{SOAP12}}}Header/{{{WSA}}}MessageID").strip()
    assert rep.payload.tag == f"{{{XCEP}}}GetPoliciesResponse"
    assert_valid(rep.payload)
    names = {p.findtext(f"{{{XCEP}}}attributes/{{{XCEP}}}commonName")
             for p in rep.payload.iter(f"{{{XCEP}}}policy")}
    assert names == {"GatewayUser", "GatewayComputer"}


async def test_a_capture_without_a_username_token_is_refused_on_the_username_endpoint(windows: WindowsServer) -> None:
    data = capture("mde2", "ms-mde2-spec", "4.2.1.1-GetPolicies-request-Federated.xml").read_bytes()
    rep = await windows.post(windows.dev["cep"]["username"], data)
    rep.assert_fault()
    assert rep.fault_subcode == "FailedAuthentication"


async def test_a_capture_with_the_recorded_password_is_refused(windows: WindowsServer) -> None:
    data = capture("mde2", "win10-19043-capture-marcosd4h", "2-GetPolicies-request.xml").read_bytes()
    rep = await windows.post(windows.dev["cep"]["username"], data)  # demo@pocmdmserver.com / demo
    rep.assert_fault()
    assert rep.fault_subcode == "FailedAuthentication"
