"""Property-based API conformance: schemathesis generates requests from the app's own OpenAPI
spec for the department API (``/v1/notices``, ``/v1/catalogue``) and checks that no request
makes a server error and every response conforms to its documented schema.

In-process (ASGI) on SQLite, with a department API key, ~25 examples per operation.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from api.app import create_app
from clearing.config import Settings
from clearing.db import transaction
from clearing.runtime import build_runtime
from notices import catalogue
from notices.departments import SCOPES, create_department
from reconciliation import users

CHECKS = [not_a_server_error, response_schema_conformance]


@pytest.fixture(scope="module")
def department_app(sqlite_template, tmp_path_factory):
    var = tmp_path_factory.mktemp("schemathesis")
    path = var / "feishui.db"
    shutil.copy(sqlite_template, path)
    settings_ = Settings(
        database_url=f"sqlite:///{path}",
        var_dir=var,
        env="test",
        public_base_url="http://testserver",
    )
    runtime = build_runtime(settings_)
    app = create_app(runtime, simulators=False)
    with transaction(runtime.sessions) as s:
        catalogue.seed(s, catalogue.load_seed())
        users.create_user(s, "officer", "finance_officer", "correct horse battery staple")
        app.state.finance_token = users.issue_api_token(s, "officer").full
        app.state.test_key = create_department(
            s, "成都市公安局交通管理局", "510100", "police", scopes=SCOPES
        ).full
    return app


#: Valid bodies of POST /v1/notices: random bodies almost never pass validation, so these explicit
#: cases make sure the 201 answer (and the notices the path operations address) is checked too.
VALID_NOTICES = [
    {
        "kind": "traffic_fine",
        "payer": {"name": "张小三", "id_number": "11010519491231002X"},
        "items": [{"item_code": "TF-RED-LIGHT"}],
        "decision_date": (date.today() - timedelta(days=3)).isoformat(),
        "reference": "JT-ST-001",
        "description": "闯红灯",
    },
    {
        "kind": "traffic_fine",
        "payer": {"name": "李四"},
        "items": [{"item_code": "TF-RED-LIGHT"}],
        "decision_date": date.today().isoformat(),
        "reference": "JT-ST-002",
        "description": "违停",
    },
]


def test_department_api_conforms(department_app):
    """Every operation under /v1/notices and /v1/catalogue; failures of all operations are
    gathered, then reported together. Path ``notice_id``s are mostly pointed at real notices
    (else every one would be a 404)."""
    auth = {"Authorization": f"Bearer {department_app.state.test_key}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", department_app).include(
        path_regex=r"^/v1/(notices|catalogue)"
    )
    operations, notice_ids = {}, []
    for loaded in schema.get_all_operations():
        operation = loaded.ok()
        operations[operation.label] = operation
    create = operations["POST /v1/notices"]
    for body in VALID_NOTICES:
        response = create.Case(body=body, media_type="application/json").call_and_validate(
            headers=auth, checks=CHECKS
        )
        assert response.status_code == 201, response.text
        notice_ids.append(response.json()["id"])

    failures = exercise(operations, auth, notice_ids, max_examples=25)
    assert len(operations) >= 8
    assert not failures, "\n\n".join(failures)


def test_finance_read_api_conforms(department_app):
    """The finance API's read operations (GET /v1/finance/...) with a finance officer's token,
    on an empty ledger and no runs: fewer examples, the reports render PDFs."""
    auth = {"Authorization": f"Bearer {department_app.state.finance_token}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", department_app).include(
        path_regex=r"^/v1/finance", method="GET"
    )
    operations = {loaded.ok().label: loaded.ok() for loaded in schema.get_all_operations()}
    assert len(operations) >= 5
    failures = exercise(operations, auth, [], max_examples=10)
    assert not failures, "\n\n".join(failures)


def exercise(operations, auth, notice_ids, *, max_examples):
    """Run each operation's generated cases; returns the failures (all operations are run)."""
    failures = []
    for label, operation in operations.items():

        @given(case=operation.as_strategy())
        @settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            generated = (case.path_parameters or {}).get("notice_id")
            if notice_ids and isinstance(generated, int) and generated % 5:
                case.path_parameters["notice_id"] = notice_ids[generated % len(notice_ids)]
            case.call_and_validate(headers=auth, checks=CHECKS)

        try:
            run()
        except Exception as exc:
            failures.append(f"{label}: {exc}")
    return failures
