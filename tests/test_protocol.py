"""Pure V1/V2 payload building, parsing and error wording (no server)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kserve_nb.errors import PredictionError, ValidationError
from kserve_nb.predict import protocol as proto
from kserve_nb.predict.protocol import (
    build_request,
    check_width,
    describe_http_error,
    error_text,
    infer_datatype,
    model_path,
    parse_v1_response,
    parse_v2_response,
    to_instances,
    v1_request,
    v2_request,
)

ROWS = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]


@pytest.mark.parametrize(
    ("model", "protocol", "path"),
    [
        ("sklearn-iris", "v1", "/v1/models/sklearn-iris:predict"),
        ("sklearn-iris", "v2", "/v2/models/sklearn-iris/infer"),
    ],
)
def test_model_paths(model: str, protocol: str, path: str) -> None:
    assert model_path(model, protocol) == path


@pytest.mark.parametrize(("model", "protocol"), [("", "v1"), ("a/b", "v1"), ("m", "v3")])
def test_bad_model_or_protocol_is_refused(model: str, protocol: str) -> None:
    with pytest.raises(ValidationError):
        model_path(model, protocol)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (ROWS, ROWS),
        ((tuple(ROWS[0]),), [[6.8, 2.8, 4.8, 1.4]]),
        (np.array(ROWS), ROWS),
        (np.array([1, 2, 3]), [1, 2, 3]),
        (pd.DataFrame(ROWS, columns=list("abcd")), ROWS),
        (pd.DataFrame({"x": [1, 2], "s": ["a", "b"]}), [[1, "a"], [2, "b"]]),
        (pd.Series([1.5, 2.5]), [1.5, 2.5]),
        ([np.float32(1.5), np.int64(3)], [1.5, 3]),
        (["hello", "world"], ["hello", "world"]),
        ((r for r in ROWS), ROWS),
        ([], []),
    ],
)
def test_to_instances_normalises_rows(given: Any, expected: list[Any]) -> None:
    out = to_instances(given)
    assert out == expected
    json.dumps(out)  # plain Python, JSON-ready


def test_to_instances_dataframe_values_are_python_scalars() -> None:
    out = to_instances(pd.DataFrame({"i": np.array([1, 2], dtype=np.int64), "f": [0.5, 1.5]}))
    assert all(type(v) in (int, float) for row in out for v in row)


@pytest.mark.parametrize(
    "payload",
    [
        {"instances": ROWS},
        {"inputs": ROWS},
        {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": [1] * 8}]},
    ],
)
def test_ready_payloads_pass_through(payload: dict[str, Any]) -> None:
    assert to_instances(payload) == payload


@pytest.mark.parametrize("bad", [{"foo": 1}, "abc", 3.5, np.float64(2.0), object()])
def test_to_instances_refuses_what_it_cannot_send(bad: Any) -> None:
    with pytest.raises(ValidationError):
        to_instances(bad)


@pytest.mark.parametrize(
    ("rows", "expected", "fragment"),
    [
        ([[1, 2, 3]], 4, "the model expects 4 features per row, got 3 in row 0"),
        ([[1, 2, 3, 4], [1, 2]], 4, "got 2 in row 1"),
        ([5.0], 4, "got a single value"),
        (["abcd"], 4, "got a single value"),
    ],
)
def test_check_width_names_the_row_and_counts(rows: list[Any], expected: int, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        check_width(rows, expected)


def test_check_width_accepts_matching_rows() -> None:
    check_width(ROWS, 4)
    check_width([], 4)


def test_v1_request_wraps_instances() -> None:
    assert v1_request(ROWS) == {"instances": ROWS}
    assert v1_request(np.array(ROWS)) == {"instances": ROWS}
    assert v1_request({"instances": [[1]]}) == {"instances": [[1]]}


def test_v1_request_refuses_v2_payload() -> None:
    v2 = v2_request(ROWS)
    with pytest.raises(ValidationError, match="protocol='v2'"):
        v1_request(v2)


@pytest.mark.parametrize(
    ("given", "datatype", "shape"),
    [
        (ROWS, "FP64", [2, 4]),
        ([[1, 2], [3, 4]], "INT64", [2, 2]),
        ([[1, 2.5]], "FP64", [1, 2]),
        ([True, False], "BOOL", [2]),
        (["a", "b"], "BYTES", [2]),
        (np.array(ROWS, dtype=np.float32), "FP32", [2, 4]),
        (np.array([[1, 2]], dtype=np.int32), "INT32", [1, 2]),
        (np.array([[1, 2]], dtype=np.uint8), "UINT8", [1, 2]),
        (np.zeros((2, 3, 2)), "FP64", [2, 3, 2]),
    ],
)
def test_v2_request_infers_datatype_and_shape(given: Any, datatype: str, shape: list[int]) -> None:
    body = v2_request(given)
    tensor = body["inputs"][0]
    assert tensor["datatype"] == datatype
    assert tensor["shape"] == shape
    assert tensor["name"] == "input-0"
    assert len(tensor["data"]) == int(np.prod(shape))  # flattened row-major
    assert not any(isinstance(v, list) for v in tensor["data"])


def test_v2_request_explicit_datatype_and_name() -> None:
    body = v2_request(ROWS, name="x", datatype="FP32")
    assert body["inputs"][0]["datatype"] == "FP32" and body["inputs"][0]["name"] == "x"
    assert body["inputs"][0]["data"][:4] == ROWS[0]


@pytest.mark.parametrize("ragged", [[[1, 2], [3]], [[1, 2], 3]])
def test_v2_request_refuses_ragged_rows(ragged: list[Any]) -> None:
    with pytest.raises(ValidationError, match="rectangular"):
        v2_request(ragged)


def test_v2_request_refuses_mixed_types_and_v1_payloads() -> None:
    with pytest.raises(ValidationError, match="datatype"):
        v2_request([[1, "a"]])
    with pytest.raises(ValidationError, match="protocol='v1'"):
        v2_request({"instances": ROWS})


@pytest.mark.parametrize(
    ("values", "expected"),
    [([], "FP32"), ([1, 2], "INT64"), ([1, 2.0], "FP64"), ([True], "BOOL"), (["x"], "BYTES"), ([None, 1.0], "FP64")],
)
def test_infer_datatype(values: list[Any], expected: str) -> None:
    assert infer_datatype(values) == expected


def test_build_request_dispatches_on_protocol() -> None:
    assert build_request(ROWS, "v1") == {"instances": ROWS}
    assert build_request(ROWS, "v2")["inputs"][0]["shape"] == [2, 4]
    with pytest.raises(ValidationError):
        build_request(ROWS, "grpc")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"predictions": [2, 2]}, [2, 2]),
        ({"predictions": [[0.1, 0.9], [0.8, 0.2]]}, [[0.1, 0.9], [0.8, 0.2]]),
        ({"predictions": 3}, [3]),
        ({"predictions": []}, []),
    ],
)
def test_parse_v1_response(body: Any, expected: list[Any]) -> None:
    assert parse_v1_response(body) == expected


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"error": "Model with name x does not exist."}, "does not exist"),
        ({"outputs": []}, "protocol='v2'"),
        ("not json", "unexpected V1 response"),
        (None, "unexpected V1 response"),
    ],
)
def test_parse_v1_response_errors(body: Any, fragment: str) -> None:
    with pytest.raises(PredictionError, match=fragment):
        parse_v1_response(body)


def _v2(data: Any, shape: list[int], datatype: str = "INT64") -> dict[str, Any]:
    return {"model_name": "m", "outputs": [{"name": "output-0", "shape": shape, "datatype": datatype, "data": data}]}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (_v2([2, 2], [2]), [2, 2]),
        (_v2([0.1, 0.9, 0.8, 0.2], [2, 2], "FP64"), [[0.1, 0.9], [0.8, 0.2]]),
        (_v2([[0.1, 0.9], [0.8, 0.2]], [2, 2], "FP64"), [[0.1, 0.9], [0.8, 0.2]]),  # nested on the wire
        (_v2(list(range(8)), [2, 2, 2]), [[[0, 1], [2, 3]], [[4, 5], [6, 7]]]),
        (_v2([1, 2, 3], [2, 2]), [1, 2, 3]),  # inconsistent shape: leave flat rather than guess
        (_v2(["a", "b"], [2], "BYTES"), ["a", "b"]),
        (_v2(7, [1]), [7]),
    ],
)
def test_parse_v2_response_reshapes_by_shape(body: Any, expected: list[Any]) -> None:
    assert parse_v2_response(body) == expected


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"error": "boom"}, "boom"),
        ({"predictions": [1]}, "protocol='v1'"),
        ({"outputs": []}, "unexpected V2 response"),
        ([1, 2], "unexpected V2 response"),
    ],
)
def test_parse_v2_response_errors(body: Any, fragment: str) -> None:
    with pytest.raises(PredictionError, match=fragment):
        parse_v2_response(body)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (500, {"error": "X has 3 features"}, "HTTP 500: X has 3 features"),
        (404, None, "HTTP 404"),
        (502, "upstream connect error", "HTTP 502: upstream connect error"),
        (
            422,
            {"detail": [{"type": "missing", "loc": ["body", "inputs", 0, "shape"], "msg": "Field required"}]},
            "HTTP 422: body.inputs.0.shape: Field required",
        ),
        (None, None, "no response"),
        (503, "x" * 500, "HTTP 503: " + "x" * 199 + "…"),
    ],
)
def test_error_text_is_one_short_line(status: int | None, body: Any, expected: str) -> None:
    assert error_text(status, body) == expected


SKLEARN_WIDTH = {"error": "X has 3 features, but LogisticRegression is expecting 4 features as input."}


@pytest.mark.parametrize(
    ("status", "body", "fragments"),
    [
        (500, SKLEARN_WIDTH, ["latest (h)", "500", "the model expects 4 features per row, got 3"]),
        (404, {"error": "Model with name nope does not exist."}, ["404", "'m'", "InferenceService name"]),
        (404, None, ["404", "no route for this Host", "enable-tag-routing"]),
        (503, {"error": "Model with name m is not ready."}, ["503", "not ready", "wait for the InferenceService"]),
        (422, {"detail": [{"loc": ["body", "inputs"], "msg": "Field required"}]}, ["422", "V1 schema", "v1_request"]),
        (400, {"error": 'Expected "instances" to be a list'}, ["400", "bad request", "instances"]),
        (500, {"error": "Expected 2D array, got 1D array instead"}, ["wrap a single instance"]),
        (401, "", ["401", "credentials"]),
        (418, {"error": "teapot"}, ["418", "teapot"]),
    ],
)
def test_describe_http_error_says_what_to_do(status: int, body: Any, fragments: list[str]) -> None:
    msg = describe_http_error(status, body, target="latest", host="h", model="m")
    for f in fragments:
        assert f in msg
    assert "\n" not in msg


def test_dumps_handles_numpy_and_round_trips() -> None:
    body = {"instances": [np.array([1.5, 2.5]), [np.int64(3)]]}
    assert proto.loads(proto.dumps(body)) == {"instances": [[1.5, 2.5], [3]]}


def test_dumps_refuses_unserialisable_input() -> None:
    with pytest.raises(ValidationError, match="JSON"):
        proto.dumps({"instances": [object()]})
