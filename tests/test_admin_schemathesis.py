"""schemathesis against the live admin API: the OpenAPI document and the server agree.

A real ``gateway serve`` on free ports; the schema is read from its own
``/admin/openapi.json``. Each operation gets a bounded, derandomized set of positive
(schema-valid) and negative (schema-invalid) requests; every answer must be no 5xx, a
documented status with a body matching its schema, and valid requests must be accepted
(no 4xx other than 404/409 for missing or conflicting objects) while invalid ones are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.checks import (
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from conformance.harness import GatewayProcess, GatewayInfo

MAX_EXAMPLES = 80
"""Per operation and generation mode; with ~35 operations a run takes about a minute."""
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance,
          negative_data_rejection, positive_data_acceptance]
CONTENT_FIELDS = {"certificate", "chain", "csr", "expires_at", "rdn_format", "parent_dn", "identifiers"}
"""Body fields a schema cannot fully describe: PEM certificates and CSRs ("a valid CSR"),
an API key's expiry ("in the future"), an MDM digital ID's RDN format and parent DN (a DN
grammar with variables), an EAB key's identifiers (DNS names and IP networks). A well-typed but unusable value is a
documented 400, so positive data acceptance is not asked of bodies that carry one
(every other check is)."""


@pytest.fixture(scope="module")
def live_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayInfo]:
    data_dir = tmp_path_factory.mktemp("schemathesis") / "data"
    with GatewayProcess(data_dir) as info:
        yield info


def _run_operation(operation: Any, mode: GenerationMode, info: GatewayInfo, failures: list[str]) -> int:
    """Run one operation's bounded cases; append one line per distinct failure, return cases run."""
    seen: set[str] = set()
    ran = 0

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    def run(case: Any) -> None:
        nonlocal ran
        ran += 1
        response = case.call(headers={"Authorization": f"Bearer {info.api_key}"}, verify=info.tls_ca)
        try:
            checks = CHECKS
            if isinstance(case.body, dict) and CONTENT_FIELDS & set(case.body):
                checks = [c for c in CHECKS if c is not positive_data_acceptance]
            case.validate_response(response, checks=checks)
        except FailureGroup as group:
            for failure in group.exceptions:
                key = f"{operation.label} [{mode.value}] {failure.title}"
                if key not in seen:
                    seen.add(key)
                    failures.append(f"{key}: {response.status_code} {response.text[:200]}\n"
                                    f"    {case.as_curl_command()}")

    run()
    return ran


def test_admin_api_agrees_with_its_schema(live_gateway: GatewayInfo) -> None:
    schema = schemathesis.openapi.from_url(f"{live_gateway.https}/admin/openapi.json", verify=live_gateway.tls_ca)
    failures: list[str] = []
    operations = cases = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            cases += _run_operation(operation, mode, live_gateway, failures)
    print(f"schemathesis: {operations} operations, {cases} cases, {len(failures)} distinct failures")
    assert operations >= 30
    assert not failures, "\n".join(failures)
