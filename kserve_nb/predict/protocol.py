"""Pure KServe V1/V2 REST payloads: build requests, parse responses, explain failures.

Nothing here does I/O. The shapes follow KServe's model server:

- V1 ``POST /v1/models/{model}:predict`` with ``{"instances": [...]}`` answers ``{"predictions": [...]}``.
- V2 ``POST /v2/models/{model}/infer`` with ``{"inputs": [{"name", "shape", "datatype", "data"}]}``
  answers ``{"outputs": [{"name", "shape", "datatype", "data"}], ...}``.
- Every error body is ``{"error": "..."}`` except FastAPI's 422 ``{"detail": [...]}``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kserve_nb.errors import PredictionError, ValidationError
from kserve_nb.resources import TAG_ROUTING_ANNOTATION

PROTOCOLS = ("v1", "v2")

_orjson: Any
try:  # orjson: the bulk path's encoder and decoder, much faster than json; kserve itself depends on it.
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised only where orjson is absent
    _orjson = None


# --------------------------------------------------------------------------------------------
# URLs
# --------------------------------------------------------------------------------------------


def model_path(model: str, protocol: str = "v1") -> str:
    """URL path of the inference endpoint of ``model``.

    Parameters
    ----------
    model:
        Model name; for an InferenceService it is the isvc name.
    protocol:
        ``"v1"`` (``/v1/models/{model}:predict``) or ``"v2"`` (``/v2/models/{model}/infer``).
    """
    check_protocol(protocol)
    if not model or "/" in model:
        raise ValidationError(f"invalid model name {model!r}; use the InferenceService name, e.g. 'sklearn-iris'")
    return f"/v1/models/{model}:predict" if protocol == "v1" else f"/v2/models/{model}/infer"


def check_protocol(protocol: str) -> str:
    """Return ``protocol`` if it is ``"v1"`` or ``"v2"``, else raise :class:`ValidationError`."""
    if protocol not in PROTOCOLS:
        raise ValidationError(f"unknown protocol {protocol!r}; use 'v1' or 'v2'")
    return protocol


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def is_v1_payload(x: Any) -> bool:
    """True for a dict already in V1 form: ``{"instances": [...]}`` (or KServe's ``{"inputs": [rows]}``)."""
    if not isinstance(x, Mapping):
        return False
    if "instances" in x:
        return True
    return "inputs" in x and not is_v2_payload(x)


def is_v2_payload(x: Any) -> bool:
    """True for a dict already in V2 form: ``{"inputs": [{"name", "shape", "datatype", "data"}, ...]}``."""
    if not isinstance(x, Mapping):
        return False
    inputs = x.get("inputs")
    return (
        isinstance(inputs, list)
        and len(inputs) > 0
        and all(isinstance(i, Mapping) and "data" in i and "datatype" in i for i in inputs)
    )


def to_instances(x: Any) -> list[Any] | dict[str, Any]:
    """Normalise user input to a list of instances (rows), or pass a ready payload through.

    Parameters
    ----------
    x:
        A list (or tuple) of instances, a numpy array (rows along the first axis), a pandas
        DataFrame (one instance per row, in column order), a pandas Series (one instance per
        element), or a dict already in V1/V2 form, which is returned unchanged.

    Returns
    -------
    list or dict
        JSON-ready instances (numpy scalars converted to Python), or the payload dict as given.
    """
    if isinstance(x, Mapping):
        if is_v1_payload(x) or is_v2_payload(x):
            return dict(x)
        raise ValidationError(
            "a dict input must be a V1 payload ({'instances': [...]}) or a V2 payload "
            "({'inputs': [{'name', 'shape', 'datatype', 'data'}]}); to send rows, pass a list or a DataFrame"
        )
    # Duck-typed so this module does not import pandas/numpy (kept light for %load_ext).
    if hasattr(x, "itertuples") and hasattr(x, "columns"):  # DataFrame
        return [[_py(v) for v in row] for row in x.itertuples(index=False, name=None)]
    if hasattr(x, "tolist") and hasattr(x, "dtype"):  # numpy array or pandas Series
        out = x.tolist()
        if not isinstance(out, list):  # 0-d array
            raise ValidationError("got a single scalar; pass a list of instances, e.g. [[6.8, 2.8, 4.8, 1.4]]")
        return out
    if isinstance(x, (str, bytes)) or not isinstance(x, Iterable):
        raise ValidationError(
            f"cannot send a {type(x).__name__}; pass a list of rows, a numpy array, a DataFrame or a V1/V2 dict"
        )
    return [_py(v) for v in x]  # any iterable (a generator of rows too)


def _py(v: Any) -> Any:
    """Convert numpy scalars/arrays (anything with ``.tolist()``) to plain Python for JSON."""
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [_py(i) for i in v]
    return v


def check_width(instances: Sequence[Any], expected: int) -> None:
    """Raise :class:`ValidationError` unless every instance is a row of ``expected`` features.

    Parameters
    ----------
    instances:
        Rows as returned by :func:`to_instances`.
    expected:
        Number of features the model takes.
    """
    for i, row in enumerate(instances):
        if isinstance(row, (str, bytes)) or not isinstance(row, Sequence):
            raise ValidationError(
                f"the model expects {expected} features per row, got a single value ({row!r}) in row {i}; "
                f"wrap each instance in a list, e.g. [[…{expected} values…]]"
            )
        if len(row) != expected:
            raise ValidationError(
                f"the model expects {expected} features per row, got {len(row)} in row {i}; "
                "check the columns you selected (and their order) before sending"
            )


def v1_request(instances: Any) -> dict[str, Any]:
    """Build a V1 request body ``{"instances": [...]}``.

    Parameters
    ----------
    instances:
        Anything :func:`to_instances` accepts. A V1 dict passes through unchanged; a V2 dict is
        refused (it would fail on the V1 route with an unhelpful 500).
    """
    inst = to_instances(instances)
    if isinstance(inst, dict):
        if is_v2_payload(inst):
            raise ValidationError("this payload is V2 (inputs with shape/datatype/data); pass protocol='v2'")
        return inst
    return {"instances": inst}


def v2_request(instances: Any, *, name: str = "input-0", datatype: str | None = None) -> dict[str, Any]:
    """Build a V2 (Open Inference Protocol) request with one input tensor.

    Parameters
    ----------
    instances:
        Anything :func:`to_instances` accepts; rows must be rectangular. A V2 dict passes through.
    name:
        Tensor name; KServe's sklearn/xgboost servers take the first input whatever its name.
    datatype:
        ``FP32``, ``FP64``, ``INT64``, ``BOOL``, ``BYTES``… Inferred when omitted: numpy dtypes map
        directly; Python floats become ``FP64`` (lossless), ints ``INT64``, bools ``BOOL``, strings ``BYTES``.

    Returns
    -------
    dict
        ``{"inputs": [{"name", "shape", "datatype", "data"}]}`` with ``data`` flattened row-major.
    """
    dtype_hint = _numpy_datatype(instances)
    inst = to_instances(instances)
    if isinstance(inst, dict):
        if is_v2_payload(inst):
            return inst
        raise ValidationError("this payload is V1 ({'instances': …}); pass protocol='v1'")
    shape = _shape(inst)
    flat = _flatten(inst, len(shape))
    dt = datatype or dtype_hint or infer_datatype(flat)
    return {"inputs": [{"name": name, "shape": shape, "datatype": dt, "data": flat}]}


def _numpy_datatype(x: Any) -> str | None:
    dtype: Any = getattr(x, "dtype", None)
    kind = getattr(dtype, "kind", None)
    if dtype is None or kind is None or hasattr(x, "columns"):
        return None
    if kind == "f":
        return {2: "FP16", 4: "FP32"}.get(dtype.itemsize, "FP64")
    if kind == "i":
        return f"INT{dtype.itemsize * 8}"
    if kind == "u":
        return f"UINT{dtype.itemsize * 8}"
    if kind == "b":
        return "BOOL"
    if kind in ("U", "S"):
        return "BYTES"
    return None


def _shape(inst: list[Any]) -> list[int]:
    """Shape of a rectangular nested list; raise on ragged rows."""
    shape = [len(inst)]
    level: list[Any] = inst
    while level and isinstance(level[0], (list, tuple)):
        width = len(level[0])
        for i, item in enumerate(level):
            if not isinstance(item, (list, tuple)) or len(item) != width:
                got = len(item) if isinstance(item, (list, tuple)) else "a single value"
                raise ValidationError(
                    f"V2 needs rectangular input: expected {width} values per row, got {got} in row {i}"
                )
        shape.append(width)
        level = [v for item in level for v in item]
    return shape


def _flatten(inst: list[Any], depth: int) -> list[Any]:
    out = inst
    for _ in range(depth - 1):
        out = [v for item in out for v in item]
    return out


def infer_datatype(values: Sequence[Any]) -> str:
    """V2 datatype of a flat list of Python values.

    ``BOOL`` if all are bools, ``INT64`` if all ints, ``FP64`` if numbers with any float, ``BYTES``
    if all strings. Mixed strings and numbers raise :class:`ValidationError` (a tensor has one type).
    """
    if not values:
        return "FP32"
    kinds = set()
    for v in values:
        if isinstance(v, bool):
            kinds.add("bool")
        elif isinstance(v, int):
            kinds.add("int")
        elif isinstance(v, float) or v is None:
            kinds.add("float")
        elif isinstance(v, (str, bytes)):
            kinds.add("str")
        else:
            kinds.add(type(v).__name__)
    if kinds == {"bool"}:
        return "BOOL"
    if kinds == {"int"}:
        return "INT64"
    if kinds <= {"int", "float"}:
        return "FP64"
    if kinds == {"str"}:
        return "BYTES"
    raise ValidationError(
        f"cannot infer one V2 datatype for values of types {sorted(kinds)}; pass datatype=… or use protocol='v1'"
    )


def build_request(x: Any, protocol: str = "v1") -> dict[str, Any]:
    """Build a request body for ``protocol`` from anything :func:`to_instances` accepts."""
    check_protocol(protocol)
    return v1_request(x) if protocol == "v1" else v2_request(x)


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------


def dumps(obj: Any) -> bytes:
    """Encode a request body. orjson when installed (numpy-aware, NaN → null), else stdlib json."""
    if _orjson is not None:
        try:
            data: bytes = _orjson.dumps(obj, option=_orjson.OPT_SERIALIZE_NUMPY)
            return data
        except TypeError as exc:
            raise ValidationError(f"the input is not JSON-serialisable: {exc}") from exc
    try:
        return json.dumps(obj, separators=(",", ":"), default=_json_default).encode()
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"the input is not JSON-serialisable: {exc}") from exc


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def loads(data: bytes | str) -> Any:
    """Decode a response body (orjson when installed)."""
    if _orjson is not None:
        return _orjson.loads(data)
    return json.loads(data)


# --------------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------------


def parse_v1_response(body: Any) -> list[Any]:
    """Return the ``predictions`` list of a V1 response body.

    Raises
    ------
    PredictionError
        If the body is an error body or has no ``predictions`` list.
    """
    if isinstance(body, dict) or isinstance(body, Mapping):  # noqa: SIM101 - dict first: the abc check is slower
        if "predictions" in body:
            preds = body["predictions"]
            return preds if isinstance(preds, list) else [preds]
        if "error" in body:
            raise PredictionError(f"the model server answered with an error: {body['error']}", body=body)
        if "outputs" in body:
            raise PredictionError("the response is V2 (outputs), not V1; pass protocol='v2'", body=body)
    raise PredictionError(f"unexpected V1 response (no 'predictions'): {_short(body)}", body=body)


def parse_v2_response(body: Any) -> list[Any]:
    """Return ``outputs[0].data`` reshaped by ``outputs[0].shape`` (one element per instance).

    A shape ``[2]`` gives ``[a, b]``; ``[2, 3]`` gives two rows of three (e.g. class probabilities).
    Data that is already nested is flattened first, so both wire forms parse alike.

    Raises
    ------
    PredictionError
        If the body is an error body or has no outputs.
    """
    if isinstance(body, Mapping):
        outputs = body.get("outputs")
        if isinstance(outputs, list) and outputs and isinstance(outputs[0], Mapping):
            out = outputs[0]
            data = out.get("data")
            if not isinstance(data, list):
                data = [data]
            shape = out.get("shape") or [len(data)]
            return _reshape(_flatten_all(data), [int(s) for s in shape])
        if "error" in body:
            raise PredictionError(f"the model server answered with an error: {body['error']}", body=body)
        if "predictions" in body:
            raise PredictionError("the response is V1 (predictions), not V2; pass protocol='v1'", body=body)
    raise PredictionError(f"unexpected V2 response (no 'outputs'): {_short(body)}", body=body)


def _flatten_all(data: list[Any]) -> list[Any]:
    if not any(isinstance(v, list) for v in data):
        return data
    out: list[Any] = []
    for v in data:
        out.extend(_flatten_all(v) if isinstance(v, list) else [v])
    return out


def _reshape(flat: list[Any], shape: list[int]) -> list[Any]:
    if len(shape) <= 1 or math.prod(shape) != len(flat):
        return flat
    step = math.prod(shape[1:])
    return [_reshape(flat[i : i + step], shape[1:]) for i in range(0, len(flat), step)]


def parse_response(body: Any, protocol: str = "v1") -> list[Any]:
    """Parse a response body of ``protocol`` to a list of predictions."""
    return parse_v1_response(body) if check_protocol(protocol) == "v1" else parse_v2_response(body)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

_EXPECTS = re.compile(r"expecting (\d+) features")
_HAS = re.compile(r"X has (\d+) features")


def error_text(status: int | None, body: Any) -> str:
    """Short one-line description of a failed response, for a results row.

    Uses the model server's ``{"error": …}`` text, FastAPI's 422 ``detail``, or the raw body.
    """
    detail = server_message(body)
    prefix = f"HTTP {status}" if status is not None else "no response"
    return f"{prefix}: {detail}" if detail else prefix


def server_message(body: Any) -> str:
    """The human part of an error body (``error`` text, 422 ``detail`` locations, or raw text)."""
    if isinstance(body, Mapping):
        if "error" in body:
            return str(body["error"])
        detail = body.get("detail")
        if isinstance(detail, list):
            parts = []
            for d in detail[:3]:
                if isinstance(d, Mapping):
                    loc = ".".join(str(p) for p in d.get("loc", []))
                    parts.append(f"{loc}: {d.get('msg', d.get('type', ''))}".strip(": "))
            return "; ".join(parts) or _short(detail)
        if detail is not None:
            return str(detail)
    if body is None or body == "" or body == b"":
        return ""
    return _short(body)


def _short(body: Any, limit: int = 200) -> str:
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_http_error(
    status: int,
    body: Any,
    *,
    target: str,
    host: str,
    model: str,
    protocol: str = "v1",
) -> str:
    """One-line message for a failed prediction: what happened, where, and what to do next.

    Parameters
    ----------
    status:
        HTTP status code.
    body:
        Decoded response body (dict, text, or None).
    target:
        Target name (``latest``/``prev``/``default``), for the reader.
    host:
        Host header sent, for the reader.
    model:
        Model name on the URL.
    protocol:
        ``v1`` or ``v2``.
    """
    msg = server_message(body)
    where = f"{target} ({host})"
    said = f": {msg}" if msg else ""
    if status == 404:
        if "does not exist" in msg or "Model with name" in msg:
            hint = f"check the model name '{model}' (it is the InferenceService name)"
        else:
            hint = (
                "no route for this Host; check the target host and that tag routing is enabled "
                f'(annotation {TAG_ROUTING_ANNOTATION}: "true") for latest-/prev- hosts'
            )
        return f"{where} answered 404{said}; {hint}"
    if status == 500 and (m := _EXPECTS.search(msg)):
        has = _HAS.search(msg)
        got = f", got {has.group(1)}" if has else ""
        return (
            f"{where} answered 500{said}; the model expects {m.group(1)} features per row{got}: "
            "fix the input columns"
        )
    if status == 500 and "Expected 2D array" in msg:
        return (
            f"{where} answered 500{said}; the model wants rows: wrap a single instance in a list, "
            "e.g. [[6.8, 2.8, 4.8, 1.4]]"
        )
    if status == 422:
        return (
            f"{where} answered 422 (payload does not match the {protocol.upper()} schema{said}); "
            f"build it with kserve_nb.predict.protocol.{protocol}_request"
        )
    if status == 400:
        return f"{where} answered 400 (bad request{said}); check the payload format for protocol {protocol}"
    if status in (502, 503, 504):
        return (
            f"{where} answered {status}{said}; the revision is not ready or not reachable: "
            "wait for the InferenceService to be Ready and retry"
        )
    if status in (401, 403):
        return f"{where} answered {status}{said}; the ingress refused the credentials: check the auth headers"
    return f"{where} answered {status}{said}"
