"""Property-based API test: schemathesis generates requests from /openapi.json against the live
server (with a buyer key) and checks for server errors and responses that break the schema."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from ciyuan.db import tx
from ciyuan.ledger import ledger

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 25


@pytest.mark.slow
def test_api_conforms_and_never_500s(mkt):
    tx.run(lambda s: ledger.deposit(s, "dep", mkt.accounts["alice"].id, 1_000_000, "CNY"))
    schema = schemathesis.openapi.from_url(mkt.url + "/openapi.json")
    auth = {"Authorization": f"Bearer {mkt.keys['alice']}"}
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 12

    for op in operations:

        @given(case=op.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case):
            headers = {**auth, **(case.headers or {})}
            case.call_and_validate(base_url=mkt.url, headers=headers, checks=CHECKS)

        run()
