"""The HTTP API fuzzed from its own OpenAPI schema (schemathesis): no input makes the service answer 5xx, and every
answer conforms to the schema (status, body, content type). A bounded number of examples per operation here;
``SEARCHREL_FUZZ_EXAMPLES=500 .venv/bin/pytest tests/test_fuzz_api.py -s`` runs a longer campaign and prints how
many cases each operation ran."""

import os
import zlib

import pytest
import schemathesis  # noqa: E402  (a test extra)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from searchrel.serve.app import create_app  # noqa: E402
from searchrel.serve.service import ServeConfig  # noqa: E402
from test_serve import setup  # noqa: E402,F401  (the module-scoped student, index and dataset)

EXAMPLES = int(os.environ.get("SEARCHREL_FUZZ_EXAMPLES", 15))  # per operation: ~10 s for all of them on 2 cores


@pytest.fixture(scope="module")
def api_schema(setup):  # noqa: F811
    ds, sdir, index = setup
    app = create_app(ServeConfig(index=index, student=sdir, data=ds.path, onnx=False))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _real_ids(value, ids: list[str]):
    """``value`` with about half of its item ids swapped for ids the index holds (chosen by the generated id's
    hash), so the fuzzer reaches the scoring paths, not only the unknown-id ones."""
    if isinstance(value, dict):
        out = {k: _real_ids(v, ids) for k, v in value.items()}
        if isinstance(value.get("item_ids"), list):
            out["item_ids"] = [_swap(i, ids) for i in value["item_ids"]]
        if isinstance(value.get("item_id"), str):
            out["item_id"] = _swap(value["item_id"], ids)
        return out
    if isinstance(value, list):
        return [_real_ids(v, ids) for v in value]
    return value


def _swap(item_id, ids: list[str]):
    if not isinstance(item_id, str):
        return item_id
    h = zlib.crc32(item_id.encode("utf-8", "surrogatepass"))
    return ids[(h >> 1) % len(ids)] if h % 2 == 0 else item_id


def test_no_input_makes_a_server_error_or_breaks_the_schema(api_schema, setup):  # noqa: F811
    ids = setup[0].items["item_id"].tolist()
    ran = {}
    for result in api_schema.get_all_operations():
        operation = result.ok()
        calls = []

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            if case.body is not None:
                case.body = _real_ids(case.body, ids)
            if case.path_parameters and "item_id" in case.path_parameters:
                case.path_parameters = _real_ids(case.path_parameters, ids)
            case.call_and_validate(checks=[not_a_server_error, status_code_conformance, response_schema_conformance,
                                           content_type_conformance])
            calls.append(1)

        fuzz()
        ran[operation.label] = len(calls)
    print(f"fuzzed {sum(ran.values())} cases: {ran}")
    assert len(ran) >= 8 and all(n >= 1 for n in ran.values()), ran
