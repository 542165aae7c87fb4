"""Property-based checks of the API against its own OpenAPI document (schemathesis): for
every operation, generated requests (a few each, as an admin with a valid token) never get a
5xx, and every response matches the status codes, content types, headers and schemas the
document declares. Bounded: a few examples per operation, against a live uvicorn."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from _apisupport import ADMIN, Live
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = pytest.mark.integration

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def test_api_conforms_to_its_schema(quiet_live: Live) -> None:
    token = quiet_live.token(ADMIN)
    schema = schemathesis.openapi.from_url(f"{quiet_live.url}/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=4,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: Any) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)

        try:
            run()
        except Exception as exc:  # every operation is checked; all failures reported at once
            failures.append(f"{operation.label}: {exc}")
    assert operations >= 40
    requests = [line for line in quiet_live.logs.lines if line.startswith("uvicorn.access")]
    assert len(requests) >= 2 * operations  # the examples did reach the server
    assert not [line for line in requests if '" 5' in line], "a 5xx was answered"
    assert not failures, "\n\n".join(failures)
