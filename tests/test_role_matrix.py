"""Role matrix on the admin API: every operation x every role, allowed or 403, generated
from one table.

Why: the roles table (:mod:`gateway.admin.roles`) is the single source of who may do
what; the admin API's middleware, the console and these tests all read it. Here a real
``gateway serve`` (real sockets, real TLS) is asked every operation its own OpenAPI
document lists (protocol routes added by adapters included) with one CLI-made API key per
role. The expectation of each case is ``may(role, area_of(path, operationId), method)``;
a refused call must be a 403 ``forbidden`` naming the role and the area the table gives
(so the server's idea of a route's area is checked too, not only the outcome), and an
allowed one must get past authorization (anything but 401/403). Every path parameter is a
placeholder naming nothing and every body is ``{}``, so allowed calls end in 400/404 and
change no real object. A few facts are asserted independently of the table, so a table
edited by mistake (or a matrix that ran no cases) cannot pass unnoticed.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest

from conformance.harness import GatewayInfo, GatewayProcess, run_cli
from gateway.admin.roles import (
    CA_AUDITOR, CERT_ADMIN, LEGACY_ADMIN, LEGACY_AUDITOR, OWNER, PROTOCOL_AUDITOR, PROTOCOL_OPERATOR,
    READ_METHODS, ROLES, area_of, may,
)

MIN_OPERATIONS = 40
"""The admin API has ~60 operations; fewer listed means the document (or the walk) broke."""
CONCURRENCY = 8
PLACEHOLDERS: dict[str, str] = {
    "id": "no-such-thing", "name": "no-such-thing", "config": "no-such-thing",
    "serial": "abcdef", "kid": "no-such-kid", "username": "no-such-user",
}
"""Path parameter values that exist nowhere (each fits its parameter's pattern, if any)."""
NEVER_REFUSED = (OWNER, LEGACY_ADMIN)


@dataclass(frozen=True)
class Operation:
    method: str
    template: str  # relative to /admin, as in the OpenAPI document
    operation_id: str
    path: str  # the template with placeholders filled in

    @property
    def area(self) -> str:
        return area_of(self.template, self.operation_id)

    def __str__(self) -> str:
        return f"{self.method} {self.template} ({self.operation_id}, area {self.area})"


@dataclass(frozen=True)
class Case:
    operation: Operation
    role: str
    expected: bool  # may the role call it, per the table
    status: int
    error: str | None
    detail: str | None

    @property
    def refused(self) -> bool:
        return self.status == 403

    def mismatch(self) -> str | None:
        """Why this answer disagrees with the table, or None."""
        op, what = self.operation, "read" if self.operation.method in READ_METHODS else "change"
        got = f"got {self.status} {self.error!r}: {self.detail!r}"
        if not self.expected:
            wanted = f"the {self.role} role may not {what} {op.area}"
            if (self.status, self.error, self.detail) != (403, "forbidden", wanted):
                return f"{op} as {self.role}: expected 403 forbidden {wanted!r}, {got}"
        elif self.status in (401, 403) or self.status >= 500:
            return f"{op} as {self.role}: expected allowed (not 401/403/5xx), {got}"
        return None


@dataclass
class Matrix:
    info: GatewayInfo
    keys: dict[str, str]  # role -> API key
    operations: list[Operation]
    cases: list[Case]

    def case(self, role: str, method: str, template: str) -> Case:
        return next(c for c in self.cases
                    if c.role == role and (c.operation.method, c.operation.template) == (method, template))


# --- the live gateway and its operations ----------------------------------------------------


def operations_of(document: dict[str, Any]) -> list[Operation]:
    """Every non-public operation of the admin OpenAPI document, path parameters filled."""
    out = []
    for template, item in document["paths"].items():
        for method, op in item.items():
            if method.upper() not in {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}:
                continue
            if op.get("security") == [] or op["operationId"] == "getOpenAPI":
                continue
            path = template
            for param in op.get("parameters", []):
                if param.get("in") != "path":
                    continue
                value = PLACEHOLDERS[param["name"]]  # KeyError: a new parameter wants a placeholder here
                pattern = param.get("schema", {}).get("pattern")
                assert pattern is None or re.search(pattern, value), (template, param["name"], pattern)
                path = path.replace("{" + param["name"] + "}", value)
            assert "{" not in path, f"unfilled path parameter in {template}"
            out.append(Operation(method.upper(), template, op["operationId"], path))
    return out


async def _call(session: aiohttp.ClientSession, base: str, op: Operation, role: str, key: str,
                gate: asyncio.Semaphore) -> Case:
    kwargs: dict[str, Any] = {} if op.method in READ_METHODS else {"json": {}}
    async with gate, session.request(op.method, base + op.path, headers={"Authorization": f"Bearer {key}"},
                                     allow_redirects=False, **kwargs) as resp:
        raw = await resp.read()
    error = detail = None
    if resp.content_type == "application/json" and raw:
        body = json.loads(raw)
        if isinstance(body, dict):
            error, detail = body.get("error"), body.get("detail")
    return Case(op, role, may(role, op.area, op.method), resp.status, error, detail)


async def _run(info: GatewayInfo, keys: dict[str, str]) -> tuple[list[Operation], list[Case]]:
    base = info.data["admin"]["url"]
    gate = asyncio.Semaphore(CONCURRENCY)
    ctx = ssl.create_default_context(cafile=info.tls_ca)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=CONCURRENCY),
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        async with session.get(base + "/openapi.json") as resp:  # public: no key
            assert resp.status == 200, resp.status
            operations = operations_of(await resp.json())
        cases = await asyncio.gather(*(_call(session, base, op, role, keys[role], gate)
                                       for op in operations for role in ROLES))
    return operations, list(cases)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    data_dir: Path = tmp_path_factory.mktemp("role-matrix") / "data"
    run_cli("init", data_dir=data_dir)
    keys = {}
    for role in ROLES:  # as an operator makes them; the key is alone on stdout
        out = run_cli("apikey", "create", f"role-matrix-{role}", "--role", role, data_dir=data_dir).stdout
        (keys[role],) = out.split()
    with GatewayProcess(data_dir) as info:
        operations, cases = asyncio.run(_run(info, keys))
        yield Matrix(info, keys, operations, cases)


# --- the tests ------------------------------------------------------------------------------


def test_every_operation_and_role_is_allowed_or_refused_as_the_table_says(matrix: Matrix) -> None:
    mismatches = [m for m in (c.mismatch() for c in matrix.cases) if m is not None]
    assert not mismatches, f"{len(mismatches)} of {len(matrix.cases)} cases disagree with the table:\n" + \
        "\n".join(mismatches)


def test_the_matrix_is_not_vacuous(matrix: Matrix) -> None:
    assert len(matrix.operations) >= MIN_OPERATIONS, [str(op) for op in matrix.operations]
    assert len(matrix.cases) == len(matrix.operations) * len(ROLES) >= MIN_OPERATIONS * len(ROLES)
    templates = {(op.method, op.template) for op in matrix.operations}
    # protocol routes come from the adapters' ``extend``: the walk must have seen them
    assert {("POST", "/acme/{config}/eab-keys"), ("GET", "/scep/{id}/challenges"),
            ("POST", "/windows/{id}/users"), ("GET", "/mdm/{id}/credentials")} <= templates
    for role in ROLES:
        mine = [c for c in matrix.cases if c.role == role]
        assert any(not c.refused for c in mine), f"{role}: every operation refused"
        if role in NEVER_REFUSED:
            assert not any(c.refused for c in mine), f"{role}: {[str(c.operation) for c in mine if c.refused]}"
        else:
            assert any(c.refused for c in mine), f"{role}: no operation refused"
    # an allowed call must have reached its handler: no placeholder names a real object
    assert not any(200 <= c.status < 300 and c.operation.method not in READ_METHODS for c in matrix.cases), \
        [(str(c.operation), c.role, c.status) for c in matrix.cases
         if 200 <= c.status < 300 and c.operation.method not in READ_METHODS]


@pytest.mark.parametrize("role, method, template, allowed", [
    (CA_AUDITOR, "POST", "/certificates/{serial}/revoke", False),
    (CERT_ADMIN, "POST", "/certificates/{serial}/revoke", True),
    (CA_AUDITOR, "GET", "/certificates/{serial}", True),
    (PROTOCOL_OPERATOR, "POST", "/acme/{config}/eab-keys", True),
    (PROTOCOL_OPERATOR, "POST", "/cas", False),
    (PROTOCOL_OPERATOR, "GET", "/cas", True),
    (PROTOCOL_AUDITOR, "GET", "/protocol-configs", True),
    (PROTOCOL_AUDITOR, "POST", "/protocol-configs", False),
    (PROTOCOL_AUDITOR, "GET", "/certificates", False),
    (CERT_ADMIN, "POST", "/protocol-configs/{id}/keygen", True),  # certificate work under a config
    (PROTOCOL_OPERATOR, "POST", "/protocol-configs/{id}/keygen", False),
    (CERT_ADMIN, "POST", "/api-keys", False),
    (CERT_ADMIN, "GET", "/api-keys", False),
])
def test_spot_checks_independent_of_the_table(matrix: Matrix, role: str, method: str, template: str,
                                              allowed: bool) -> None:
    """Facts stated here, not computed from GRANTS: a grant flipped by mistake fails these."""
    case = matrix.case(role, method, template)
    assert case.expected is allowed, f"the table says {case.expected} for {role} {method} {template}"
    assert (not case.refused) is allowed, case


def test_legacy_roles_keep_their_meaning(matrix: Matrix) -> None:
    """Keys made before the Entrust roles: ``admin`` is an Owner, ``auditor`` reads everything."""
    wrong = []
    for case in matrix.cases:
        if case.role == LEGACY_ADMIN and case.refused:
            wrong.append(f"admin refused {case.operation}")
        if case.role == LEGACY_AUDITOR and case.refused is (case.operation.method == "GET"):
            wrong.append(f"auditor {'refused' if case.refused else 'allowed'} {case.operation}: {case.status}")
    assert not wrong, "\n".join(wrong)
    for legacy, like in ((LEGACY_ADMIN, OWNER), (LEGACY_AUDITOR, None)):
        statuses = {(c.operation.method, c.operation.template): c.status for c in matrix.cases if c.role == legacy}
        assert len(statuses) == len(matrix.operations)
        if like is not None:  # same answers as an Owner, case by case
            owner = {(c.operation.method, c.operation.template): c.status for c in matrix.cases if c.role == like}
            assert statuses == owner


def test_no_route_is_404_or_405_for_every_role(matrix: Matrix) -> None:
    """Nothing matched: the router's answer, not a 403 about an area no route has."""
    import urllib.error
    import urllib.request

    ctx = ssl.create_default_context(cafile=matrix.info.tls_ca)
    for role in (CA_AUDITOR, PROTOCOL_AUDITOR, OWNER):
        for method, path, status in (("GET", "/no-such-route", 404), ("PUT", "/cas", 405)):
            req = urllib.request.Request(matrix.info.data["admin"]["url"] + path, method=method,
                                         headers={"Authorization": f"Bearer {matrix.keys[role]}"})
            try:
                urllib.request.urlopen(req, context=ctx, timeout=30)
            except urllib.error.HTTPError as exc:
                assert exc.code == status, (role, method, path, exc.code)
            else:
                raise AssertionError(f"{method} {path} answered 2xx for {role}")
