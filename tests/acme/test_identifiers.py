"""Identifiers (RFC 8555 section 7.1.4, RFC 8738) and the identifier policy."""

from __future__ import annotations

from typing import Any

import pytest

from protocols.acme.identifiers import Identifier, IdentifierPolicy, check_identifiers, parse_identifiers
from protocols.acme.problems import Problem


def idents(*values: str) -> list[dict[str, str]]:
    out = []
    for v in values:
        out.append({"type": "ip" if v[0].isdigit() or ":" in v else "dns", "value": v})
    return out


def test_identifiers_are_canonical_and_deduplicated() -> None:
    parsed = parse_identifiers(idents("WWW.Example.COM", "www.example.com", "2001:DB8:0::1", "10.0.0.1"))
    assert parsed == [Identifier("dns", "www.example.com"), Identifier("ip", "2001:db8::1"),
                      Identifier("ip", "10.0.0.1")]


def test_wildcards_keep_their_prefix_and_know_their_base() -> None:
    (w,) = parse_identifiers(idents("*.example.com"))
    assert w.wildcard and w.base == "example.com" and w.value == "*.example.com"


@pytest.mark.parametrize("raw, kind", [
    ([], "malformed"),
    ("x", "malformed"),
    ([{"type": "dns"}], "malformed"),
    ([{"type": "email", "value": "a@b.c"}], "unsupportedIdentifier"),
])
def test_malformed_lists(raw: Any, kind: str) -> None:
    with pytest.raises(Problem) as info:
        parse_identifiers(raw)
    assert info.value.type == kind


def test_every_bad_identifier_is_a_subproblem() -> None:
    with pytest.raises(Problem) as info:
        parse_identifiers(idents("ok.example.com", "bad_name.example.com", "*.*.example.com", "localhost",
                                 "example.com.", "300.1.1.1"))
    problem = info.value
    assert problem.type == "rejectedIdentifier"
    bad = [s.identifier["value"] for s in problem.subproblems]
    assert bad == ["bad_name.example.com", "*.*.example.com", "localhost", "example.com.", "300.1.1.1"]
    doc = problem.to_json()
    assert doc["subproblems"][0]["type"] == "urn:ietf:params:acme:error:rejectedIdentifier"


def test_too_many_identifiers() -> None:
    with pytest.raises(Problem) as info:
        parse_identifiers(idents(*[f"h{i}.example.com" for i in range(5)]), limit=4)
    assert info.value.type == "rejectedIdentifier"


@pytest.mark.parametrize("name, allowed", [
    ("example.com", True),
    ("www.example.com", True),
    ("a.b.example.com", True),
    ("*.example.com", True),
    ("exact.org", True),
    ("sub.exact.org", False),
    ("evil-example.com", False),
    ("blocked.example.com", False),
    ("x.blocked.example.com", False),
    ("10.1.2.3", True),
    ("10.9.0.1", False),
    ("192.168.0.1", False),
])
def test_policy_allow_and_deny(name: str, allowed: bool) -> None:
    policy = IdentifierPolicy.parse(["example.com", "*.example.com", "exact.org", "10.1.0.0/16"],
                                    ["*.blocked.example.com", "blocked.example.com"])
    (ident,) = parse_identifiers(idents(name))
    assert (policy.refusal(ident) is None) is allowed


def test_policy_switches_for_wildcards_and_ips() -> None:
    policy = IdentifierPolicy.parse(wildcards=False, ip=False)
    with pytest.raises(Problem) as info:
        check_identifiers(parse_identifiers(idents("*.example.com", "192.0.2.1", "ok.example.com")), policy)
    assert [s.identifier["value"] for s in info.value.subproblems] == ["*.example.com", "192.0.2.1"]


def test_every_policy_must_allow() -> None:
    config = IdentifierPolicy.parse(["*.example.com"])
    key = IdentifierPolicy.parse(["a.example.com"])
    check_identifiers(parse_identifiers(idents("a.example.com")), config, key)
    with pytest.raises(Problem):
        check_identifiers(parse_identifiers(idents("b.example.com")), config, key)


def test_bad_policy_entries_are_errors() -> None:
    with pytest.raises(ValueError):
        IdentifierPolicy.parse(["not a name"])
