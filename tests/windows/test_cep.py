"""MS-XCEP GetPolicies over a real socket, on the gateway's and AD CS's paths, for each
authentication mode; every response validates against the MS-XCEP schema."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from asn1crypto import core
from cryptography import x509

from protocols.windows.settings import WindowsSettings
from protocols.windows.templates import TEMPLATE_INFORMATION

from .helpers import SOAP12, WSSE, XCEP, SoapReply, WindowsServer, assert_valid, get_policies_body


class TemplateInfo(core.Sequence):  # type: ignore[misc]  # MS-WCCE 2.2.2.7.7.2, read independently
    _fields = [("id", core.ObjectIdentifier), ("major", core.Integer), ("minor", core.Integer, {"optional": True})]


def q(*names: str) -> str:
    return "/".join(f"{{{XCEP}}}{n}" for n in names)


def policies(rep: SoapReply) -> dict[str, object]:
    """commonName -> attributes element of each policy in a GetPoliciesResponse."""
    return {str(p.findtext(q("attributes", "commonName"))): p.find(q("attributes"))
            for p in rep.payload.findall(q("response", "policies", "policy"))}


def oids(rep: SoapReply) -> dict[int, tuple[str, int]]:
    return {int(o.findtext(q("oIDReferenceID"))): (str(o.findtext(q("value"))), int(o.findtext(q("group"))))
            for o in rep.payload.findall(q("oIDs", "oID"))}


def cauris(rep: SoapReply) -> list[tuple[int, str, bool]]:
    return [(int(u.findtext(q("clientAuthentication"))), str(u.findtext(q("uri"))), u.findtext(q("renewalOnly")) == "true")
            for u in rep.payload.findall(q("cAs", "cA", "uris", "cAURI"))]


async def get_policies(windows: WindowsServer, url: str, **kw: object) -> SoapReply:
    cert = kw.pop("cert", None)
    security = kw.pop("security", windows.security())
    rep = await windows.post(url, get_policies_body(security=str(security), **kw), cert=cert)  # type: ignore[arg-type]
    if rep.status == 200:
        assert rep.payload.tag == f"{{{XCEP}}}GetPoliciesResponse"
        assert_valid(rep.payload)
    return rep


async def test_username_endpoint_serves_both_dev_templates_with_what_windows_reads(windows: WindowsServer) -> None:
    rep = await get_policies(windows, windows.dev["cep"]["username"], message_id="urn:uuid:1234")
    assert rep.status == 200
    assert rep.action == f"{XCEP}/IPolicy/GetPoliciesResponse" and rep.relates_to == "urn:uuid:1234"
    settings = WindowsSettings.of(await windows.gw.door("windows").configuration("windows"))
    assert rep.payload.findtext(q("response", "policyID")) == settings.policy_id
    assert rep.payload.findtext(q("response", "nextUpdateHours")) == "8"
    found = policies(rep)
    assert set(found) == {"GatewayUser", "GatewayComputer"}
    refs = oids(rep)
    for name, attrs in found.items():
        template = settings.template(name)
        assert template is not None
        assert attrs.findtext(q("policySchema")) == "2"  # type: ignore[attr-defined]
        assert attrs.findtext(q("revision", "majorRevision")) == "100"  # type: ignore[attr-defined]
        assert attrs.findtext(q("privateKeyAttributes", "minimalKeyLength")) == "2048"  # type: ignore[attr-defined]
        assert attrs.findtext(q("permission", "enroll")) == "true"  # type: ignore[attr-defined]
        assert attrs.findtext(q("permission", "autoEnroll")) == "true"  # type: ignore[attr-defined]
        assert int(attrs.findtext(q("enrollmentFlags"))) & 0x20  # type: ignore[attr-defined] # CT_FLAG_AUTO_ENROLLMENT
        general = int(attrs.findtext(q("generalFlags")))  # type: ignore[attr-defined]
        assert bool(general & 0x40) == (name == "GatewayComputer")  # machine template
        exts = {refs[int(e.findtext(q("oIDReference")))][0]: e for e in attrs.findall(q("extensions", "extension"))}  # type: ignore[attr-defined]
        assert set(exts) >= {TEMPLATE_INFORMATION, "2.5.29.37", "2.5.29.15"}
        assert exts["2.5.29.15"].findtext(q("critical")) == "true"
        info = TemplateInfo.load(base64.b64decode(exts[TEMPLATE_INFORMATION].findtext(q("value"))))
        assert (info["id"].native, info["major"].native, info["minor"].native) == (template.oid, 100, 0)
        policy_ref = next(int(p.findtext(q("policyOIDReference"))) for p in rep.payload.findall(q("response", "policies", "policy"))
                          if p.findtext(q("attributes", "commonName")) == name)
        assert refs[policy_ref] == (template.oid, 9)
    ca_der = base64.b64decode(rep.payload.findtext(q("cAs", "cA", "certificate")))
    assert x509.load_der_x509_certificate(ca_der) == windows.gw.door("windows").ca_certificate("issuing-rsa")
    assert cauris(rep) == [(4, windows.dev["ces"]["username"], False), (8, windows.dev["ces"]["certificate"], False)]


async def test_adcs_paths_answer_case_insensitively_and_point_at_adcs_ces_paths(windows: WindowsServer) -> None:
    adcs = windows.dev["adcs"]
    assert adcs["cep"]["username"].endswith("/ADPolicyProvider_CEP_UsernamePassword/service.svc/CEP")
    for url in (adcs["cep"]["username"], windows.info.https + "/adpolicyprovider_cep_usernamepassword/service.svc/cep"):
        rep = await get_policies(windows, url)
        assert rep.status == 200
        assert cauris(rep) == [(4, adcs["ces"]["username"], False), (8, adcs["ces"]["certificate"], False)]
    unknown = await windows.post("/SomethingElse_CEP_UsernamePassword/service.svc/CEP", get_policies_body())
    assert unknown.status == 404


async def test_certificate_endpoints_take_a_client_certificate_from_the_gateway(windows: WindowsServer) -> None:
    cred = await windows.client_cert("pc-1.example.com")
    rep = await get_policies(windows, windows.dev["cep"]["certificate"], cert=cred, security="")
    assert rep.status == 200 and set(policies(rep)) == {"GatewayUser", "GatewayComputer"}
    missing = await get_policies(windows, windows.dev["cep"]["certificate"], security="")
    missing.assert_fault()
    assert missing.fault_subcode == "FailedAuthentication"
    foreign = await windows.client_cert("pc-9.example.com", profile="tls-client", ca="issuing")  # another CA
    refused = await get_policies(windows, windows.dev["cep"]["certificate"], cert=foreign, security="")
    refused.assert_fault()
    assert refused.fault_subcode == "FailedAuthentication"


async def test_key_based_renewal_endpoint_offers_the_certificate_ces_as_renewal_only(windows: WindowsServer) -> None:
    cred = await windows.client_cert("pc-2.example.com")
    for url in (windows.dev["cep"]["keybasedrenewal"], windows.dev["adcs"]["cep"]["keybasedrenewal"]):
        rep = await get_policies(windows, url, cert=cred, security="")
        assert rep.status == 200
        ces = windows.dev["adcs" if "KeyBased" in url else "ces"]
        ces = ces["ces"] if "ces" in ces else ces
        assert cauris(rep) == [(8, ces["certificate"], True)]
        for attrs in policies(rep).values():
            assert int(attrs.findtext(q("enrollmentFlags"))) & 0x00010000  # type: ignore[attr-defined]


async def test_kerberos_is_a_clear_fault_not_faked(windows: WindowsServer) -> None:
    for url in (windows.dev["cep"]["kerberos"], windows.dev["adcs"]["cep"]["kerberos"]):
        rep = await get_policies(windows, url)
        rep.assert_fault()
        assert rep.fault_code == "s:Receiver" and "Kerberos" in rep.reason
        assert b"GetPoliciesResponse" not in rep.body


async def test_wrong_password_and_missing_token_are_authentication_faults(windows: WindowsServer) -> None:
    url = windows.dev["cep"]["username"]
    wrong = await get_policies(windows, url, security=windows.security(password="not-the-password"))
    wrong.assert_fault()
    assert wrong.fault_code == "s:Sender" and wrong.fault_subcode == "FailedAuthentication"
    subcode = wrong.payload.find(f"{{{SOAP12}}}Code/{{{SOAP12}}}Subcode/{{{SOAP12}}}Value")
    prefix = str(subcode.text).split(":")[0]
    assert subcode.nsmap[prefix] == WSSE  # wsse:FailedAuthentication, namespace-qualified
    none = await get_policies(windows, url, security="")
    none.assert_fault()
    assert none.fault_subcode == "FailedAuthentication"
    assert b"GatewayUser" not in wrong.body + none.body


async def test_wrong_action_and_wrong_body_are_faults(windows: WindowsServer) -> None:
    url = windows.dev["cep"]["username"]
    body = get_policies_body(security=windows.security()).replace(b"IPolicy/GetPolicies<", b"IPolicy/Other<")
    rep = await windows.post(url, body)
    rep.assert_fault()
    assert rep.fault_subcode == "ActionNotSupported"
    no_client = get_policies_body(security=windows.security()).replace(
        b'<client><lastUpdate xsi:nil="true"/><preferredLanguage xsi:nil="true"/></client>', b'<client xsi:nil="true"/>')
    rep = await windows.post(url, no_client)
    rep.assert_fault()
    assert "client" in rep.reason


async def test_policies_not_changed_follows_last_update(windows: WindowsServer) -> None:
    url = windows.dev["cep"]["username"]
    first = await get_policies(windows, url)
    assert first.payload.find(q("response", "policiesNotChanged")).get("{http://www.w3.org/2001/XMLSchema-instance}nil") == "true"
    later = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # when the client got its copy
    same = await get_policies(windows, url, last_update=later)
    assert same.payload.findtext(q("response", "policiesNotChanged")) == "true"
    assert same.payload.findall(q("response", "policies", "policy")) == []
    assert same.payload.find(q("cAs")).get("{http://www.w3.org/2001/XMLSchema-instance}nil") == "true"
    # an old client copy (Windows' first request says 0001-01-01) gets everything
    old = await get_policies(windows, url, last_update="0001-01-01T00:00:00")
    assert len(policies(old)) == 2
    # the policy changes (a template's revision moves): the client's copy is stale again
    door = windows.gw.door("windows")
    rec = await door.configuration("windows")
    settings = dict(rec.settings)
    settings["templates"] = [dict(t, minor_revision=1) for t in settings["templates"]]
    await door.update_configuration("windows", settings=settings)
    changed = await get_policies(windows, url, last_update=later)
    assert len(policies(changed)) == 2
    assert changed.payload.findtext(q("response", "policies", "policy", "attributes", "revision", "minorRevision")) == "1"


async def test_request_filter_and_nil_versions(windows: WindowsServer) -> None:
    url = windows.dev["cep"]["username"]
    settings = WindowsSettings.of(await windows.gw.door("windows").configuration("windows"))
    user = settings.template("GatewayUser")
    assert user is not None
    by_oid = await get_policies(windows, url, request_filter=(
        f"<requestFilter><policyOIDs><oid>{user.oid}</oid></policyOIDs>"
        '<clientVersion xsi:nil="true"/><serverVersion xsi:nil="true"/></requestFilter>'))
    assert set(policies(by_oid)) == {"GatewayUser"}
    # versions as Windows 10 sends them keep both v2 templates; version 0 keeps none
    modern = await get_policies(windows, url, request_filter=(
        '<requestFilter><policyOIDs xsi:nil="true"/><clientVersion>6</clientVersion>'
        "<serverVersion>6</serverVersion></requestFilter>"))
    assert len(policies(modern)) == 2
    ancient = await get_policies(windows, url, request_filter=(
        '<requestFilter><policyOIDs xsi:nil="true"/><clientVersion>0</clientVersion>'
        '<serverVersion xsi:nil="true"/></requestFilter>'))
    assert policies(ancient) == {}
    assert ancient.payload.find(q("response", "policies")).get("{http://www.w3.org/2001/XMLSchema-instance}nil") == "true"


async def test_a_caller_gets_only_the_templates_it_may_enroll_in(windows: WindowsServer) -> None:
    door = windows.gw.door("windows")
    rec = await door.configuration("windows")
    settings = dict(rec.settings)
    user, computer = settings["templates"]
    settings["templates"] = [dict(user, enroll=["someone-else"]), dict(computer, autoenroll_for=["someone-else"])]
    await door.update_configuration("windows", settings=settings)
    rep = await get_policies(windows, windows.dev["cep"]["username"])
    found = policies(rep)
    assert set(found) == {"GatewayComputer"}
    assert found["GatewayComputer"].findtext(q("permission", "enroll")) == "true"  # type: ignore[attr-defined]
    assert found["GatewayComputer"].findtext(q("permission", "autoEnroll")) == "false"  # type: ignore[attr-defined]
    # nobody may enroll in anything: no policies, and the CA says so
    settings["templates"] = [dict(user, enroll=["someone-else"]), dict(computer, enroll=["someone-else"])]
    await door.update_configuration("windows", settings=settings)
    none = await get_policies(windows, windows.dev["cep"]["username"])
    assert policies(none) == {}
    assert none.payload.findtext(q("cAs", "cA", "enrollPermission")) == "false"


async def test_a_broken_configuration_is_a_receiver_fault(windows: WindowsServer) -> None:
    door = windows.gw.door("windows")
    rec = await door.configuration("windows")
    await door.update_configuration("windows", settings=dict(rec.settings, templates=[]))
    rep = await get_policies(windows, windows.dev["cep"]["username"])
    rep.assert_fault()
    assert "templates" in rep.reason and b"Traceback" not in rep.body


async def test_unknown_cep_paths_are_plain_404s(windows: WindowsServer) -> None:
    for path in ("/windows/windows/cep/ntlm", "/windows/nope/cep", "/ADPolicyProvider_CEP_Ntlm/service.svc/CEP"):
        rep = await windows.post(path, get_policies_body(security=windows.security()))
        assert rep.status == 404, path
    missing = await windows.post("/windows/no-such-config/cep/username", get_policies_body(security=windows.security()))
    missing.assert_fault()  # a configuration that does not exist: the service answers, as a fault


async def test_the_key_flag_provider_and_ca_fields_windows_reads_are_on_the_wire(windows: WindowsServer) -> None:
    """The rest of what certenroll reads from a schema 2 policy (MS-XCEP 3.1.4.1.3, MS-CRTD
    flag values), checked on the wire rather than on the template model: subject from the
    request, legacy key spec and CSPs, v2 client/server version nibbles, no RA signatures or
    key archival, the EKU and extension OIDs in their groups, one cAURI priority."""
    rep = await get_policies(windows, windows.dev["cep"]["username"])
    assert rep.status == 200
    xsi_nil = "{http://www.w3.org/2001/XMLSchema-instance}nil"
    refs = oids(rep)
    for name, attrs in policies(rep).items():
        a: Any = attrs
        assert int(a.findtext(q("subjectNameFlags"))) & 0x1, name  # CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT
        assert int(a.findtext(q("privateKeyFlags"))) & 0x0F0F0000 == 0x01010000, name  # schema 2: client 1, server 1
        assert a.findtext(q("privateKeyAttributes", "keySpec")) == "1", name  # AT_KEYEXCHANGE
        assert [p.text for p in a.findall(q("privateKeyAttributes", "cryptoProviders", "provider"))] == [
            "Microsoft Enhanced Cryptographic Provider v1.0", "Microsoft Base Cryptographic Provider v1.0"], name
        assert a.find(q("privateKeyAttributes", "algorithmOIDReference")).get(xsi_nil) == "true"  # schema 2
        assert a.find(q("hashAlgorithmOIDReference")).get(xsi_nil) == "true"
        assert a.find(q("rARequirements")).get(xsi_nil) == "true", name
        assert a.find(q("keyArchivalAttributes")).get(xsi_nil) == "true", name
        groups = {refs[int(e.findtext(q("oIDReference")))] for e in a.findall(q("extensions", "extension"))}
        assert ("2.5.29.37", 6) in groups and ("2.5.29.15", 6) in groups, name
    assert ("1.3.6.1.5.5.7.3.2", 7) in set(refs.values())  # client authentication, an EKU OID (group 7)
    priorities = [u.findtext(q("priority")) for u in rep.payload.findall(q("cAs", "cA", "uris", "cAURI"))]
    assert priorities == ["1", "1"]
    assert rep.payload.findtext(q("cAs", "cA", "enrollPermission")) == "true"
    assert rep.payload.findtext(q("response", "policyFriendlyName")) == "Gateway Dev Enrollment Policy"


async def test_the_configurations_auth_modes_decide_the_cauris_and_the_endpoints(windows: WindowsServer) -> None:
    """``auth`` lists the modes offered: each gets one cAURI (Kerberos: clientAuthentication 2,
    advertised for the next issue's Negotiate), and a CEP endpoint whose mode is not listed
    answers nothing, as its CES does."""
    door = windows.gw.door("windows")
    rec = await door.configuration("windows")
    await door.update_configuration("windows", settings={**rec.settings, "auth": ["username", "kerberos"]})
    rep = await get_policies(windows, windows.dev["cep"]["username"])
    assert rep.status == 200
    assert cauris(rep) == [(4, windows.dev["ces"]["username"], False), (2, windows.dev["ces"]["kerberos"], False)]
    cred = await windows.client_cert("pc-5.example.com")
    for url in (windows.dev["cep"]["certificate"], windows.dev["cep"]["keybasedrenewal"],
                windows.dev["adcs"]["cep"]["certificate"]):
        refused = await get_policies(windows, url, cert=cred, security="")
        refused.assert_fault()
        assert "not offered" in refused.reason and b"GatewayUser" not in refused.body, url
    await door.update_configuration("windows", settings={**rec.settings, "auth": ["certificate"]})
    off = await get_policies(windows, windows.dev["cep"]["username"])
    off.assert_fault()
    assert "not offered" in off.reason
