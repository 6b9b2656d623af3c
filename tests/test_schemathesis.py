"""Property-based API tests: schemathesis drives every operation of /openapi.json in-process.

Valid and invalid requests alike must never get a 5xx, and every response must have a
documented status and content type and match its documented schema (problem bodies
included). Runs against the real app in stories mode
with the real default model, so the embedding path is exercised too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from conftest import OPERATIONS
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from service.settings import Settings

pytestmark = [pytest.mark.model, pytest.mark.slow]

# Bounded so the whole run stays around a minute on a small CPU.
MAX_EXAMPLES = 15


@pytest.fixture(scope="module")
def api_schema(
    tmp_path_factory: pytest.TempPathFactory, default_model: Path
) -> Iterator[schemathesis.BaseSchema]:
    app = create_app(
        Settings(
            data_dir=tmp_path_factory.mktemp("schemathesis"),
            model_cache_dir=default_model.parent,
            synchronous="normal",
        )
    )
    # Loading the schema starts the app's lifespan, which loads the engine in the background.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    client = asgi.get_client(app)
    deadline = time.monotonic() + 300
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the app did not get ready"
        time.sleep(0.1)
    yield schema
    asgi.shutdown_lifespans()


def test_api_conforms_to_its_schema(api_schema: schemathesis.BaseSchema) -> None:
    # One test for all operations: schemathesis' pytest plugin ends ASGI lifespans after
    # every test, and reloading the model per operation would cost minutes.
    documented = {
        (operation.ok().method.upper(), operation.ok().path)
        for operation in api_schema.get_all_operations()
    }
    assert documented == set(OPERATIONS)

    for method, path in OPERATIONS:
        operation = api_schema[path][method]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck)
            )
            def check(case: schemathesis.Case) -> None:
                case.call_and_validate(
                    checks=[
                        not_a_server_error,
                        status_code_conformance,
                        content_type_conformance,
                        response_schema_conformance,
                    ]
                )

            try:
                check()
            except Unsatisfiable:
                # An operation without parameters or body has no invalid request to make.
                assert mode is GenerationMode.NEGATIVE, f"{method} {path}: no valid input"
            except BaseException as error:
                error.add_note(f"operation: {method} {path}, {mode.value} examples")
                raise
