"""The tidy results frame shared by the prediction client and the analysis layer.

One row per request and target::

    target  revision  row  repeat  input  prediction  status_code  latency_ms  error

``target`` is ``latest``/``prev``/``default`` (or any name the caller gave its Target); ``revision``
is the revision that answered (the ``x-kserve-revision`` header when present, else the target's
revision, else missing); ``error`` is None for a success and a one-line text otherwise. Pure: pandas in,
pandas out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from kserve_nb.errors import ValidationError

RESULT_COLUMNS: tuple[str, ...] = (
    "target",
    "revision",
    "row",
    "repeat",
    "input",
    "prediction",
    "status_code",
    "latency_ms",
    "error",
)

_DTYPES: dict[str, str] = {
    "target": "object",
    "revision": "object",
    "row": "int64",
    "repeat": "int64",
    "input": "object",
    "prediction": "object",
    "status_code": "Int64",  # nullable: no status when the connection failed
    "latency_ms": "float64",
    "error": "object",
}

_DEFAULTS: dict[str, Any] = {
    "target": None,
    "revision": None,
    "row": 0,
    "repeat": 0,
    "input": None,
    "prediction": None,
    "status_code": None,
    "latency_ms": math.nan,
    "error": None,
}

#: Prediction kinds understood by :func:`normalize_predictions`.
KINDS = ("class", "numeric", "vector", "empty")


def results_frame(records: Iterable[Mapping[str, Any]] | Mapping[str, list[Any]]) -> pd.DataFrame:
    """Build a results frame with the canonical columns and dtypes.

    Parameters
    ----------
    records:
        Row dicts, or a dict of equal-length column lists (faster for thousands of rows).
    """
    if not isinstance(records, Mapping):
        rows = list(records)
        records = {c: [r.get(c, _DEFAULTS[c]) for r in rows] for c in RESULT_COLUMNS}
    n = max((len(v) for v in records.values()), default=0)
    cols = {}
    for c in RESULT_COLUMNS:
        values = list(records.get(c, [_DEFAULTS[c]] * n))
        if c in ("row", "repeat"):
            values = [_DEFAULTS[c] if _missing(v) else v for v in values]
        if len(values) != n:
            raise ValidationError(f"column {c!r} has {len(values)} values, expected {n}")
        # Object columns are built as object up front: letting pandas infer would turn a
        # prediction column of ints with one None into floats (2 -> 2.0).
        if _DTYPES[c] == "object":
            cols[c] = pd.Series(values, dtype=object)
        elif _DTYPES[c] == "Int64":
            cols[c] = pd.Series(pd.array(values, dtype="Int64"))
        else:
            cols[c] = pd.Series([math.nan if _missing(v) else v for v in values], dtype=_DTYPES[c])
    return pd.DataFrame(cols)


def empty_results() -> pd.DataFrame:
    """An empty results frame with the canonical columns."""
    return results_frame({})


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    for col, dtype in _DTYPES.items():
        if col not in df:
            continue
        if dtype == "object":
            # NaN placeholders become None so "missing" reads the same everywhere.
            df[col] = df[col].astype(object).where(df[col].notna(), None)
        elif dtype == "Int64":
            df[col] = pd.array([None if _missing(v) else int(v) for v in df[col].tolist()], dtype="Int64")
        else:
            df[col] = df[col].astype(dtype)
    return df


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def check_results(df: pd.DataFrame) -> pd.DataFrame:
    """Validate a results frame and return a normalised copy.

    Missing optional columns (``revision``, ``repeat``, ``input``, ``error``, ``status_code``) are
    filled; ``target``, ``row``, ``prediction`` and ``latency_ms`` are required.

    Raises
    ------
    ValidationError
        If ``df`` is not a DataFrame or lacks a required column.
    """
    if not isinstance(df, pd.DataFrame):
        raise ValidationError(f"expected the DataFrame returned by send(), got {type(df).__name__}")
    required = ("target", "row", "prediction", "latency_ms")
    missing = [c for c in required if c not in df.columns]
    if missing and len(df.columns):
        raise ValidationError(
            f"the results frame lacks column(s) {missing}; pass the DataFrame returned by PredictionClient.send"
        )
    out = df.copy()
    for col in RESULT_COLUMNS:
        if col not in out.columns:
            out[col] = _DEFAULTS[col]
    extras = [c for c in out.columns if c not in RESULT_COLUMNS]
    out = _typed(out[list(RESULT_COLUMNS) + extras])
    out["row"] = out["row"].astype("int64")
    out["repeat"] = out["repeat"].astype("int64")
    return out


def ok_mask(df: pd.DataFrame) -> pd.Series:
    """Rows that succeeded: no error text and (when known) a 2xx status."""
    ok = df["error"].isna()
    status = df["status_code"]
    ok &= status.isna() | ((status >= 200) & (status < 300)).fillna(False).astype(bool)
    return ok.astype(bool)


def group_label(target: Any, revision: Any) -> str:
    """Human label of a (target, revision) group, e.g. ``latest · sklearn-iris-predictor-00002``."""
    t = "?" if target is None else str(target)
    return t if revision is None or (isinstance(revision, float) and math.isnan(revision)) else f"{t} · {revision}"


# --------------------------------------------------------------------------------------------
# Predictions: classes, numbers or vectors
# --------------------------------------------------------------------------------------------


def _unwrap(v: Any) -> Any:
    # A one-element list ([2] or [0.7]) is a scalar prediction in disguise.
    while isinstance(v, list) and len(v) == 1:
        v = v[0]
    return v


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def prediction_kind(values: Iterable[Any]) -> str:
    """Classify predictions as ``class``, ``numeric``, ``vector`` or ``empty``.

    - ints, bools and strings are class labels;
    - floats are continuous (regression scores);
    - lists of numbers (e.g. class probabilities) are vectors; their class is the argmax;
    - anything else (dicts, mixed lists) is treated as an opaque class label.
    """
    seen = {_kind_of(_unwrap(v)) for v in values if v is not None}
    seen.discard(None)
    if not seen:
        return "empty"
    if seen == {"numeric"}:
        return "numeric"
    if seen == {"vector"}:
        return "vector"
    if seen <= {"numeric", "int"}:
        return "numeric" if "numeric" in seen else "class"
    return "class"


def _kind_of(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, float):
        return None if math.isnan(v) else "numeric"
    if isinstance(v, (bool, str)):
        return "label"
    if isinstance(v, int):
        return "int"
    if isinstance(v, list) and v and all(_is_number(i) for i in v):
        return "vector"
    return "label"


def to_label(v: Any, kind: str) -> Any:
    """Class label of one prediction under ``kind`` (argmax for vectors; None when missing)."""
    v = _unwrap(v)
    if v is None:
        return None
    if kind == "vector" and isinstance(v, list) and v and all(_is_number(i) for i in v):
        return max(range(len(v)), key=v.__getitem__)
    if isinstance(v, (list, dict)):
        return json.dumps(v, sort_keys=True, default=str)
    return v


def to_number(v: Any) -> float:
    """Numeric value of one prediction (NaN when not a number)."""
    v = _unwrap(v)
    return float(v) if _is_number(v) else math.nan


def to_vector(v: Any) -> list[float] | None:
    """Vector value of one prediction (None when not a list of numbers)."""
    v = _unwrap(v)
    if isinstance(v, list) and v and all(_is_number(i) for i in v):
        return [float(i) for i in v]
    return None


def normalize_predictions(predictions: pd.Series, kind: str | None = None) -> tuple[str, pd.Series, pd.Series]:
    """Labels and numbers for a prediction column.

    Parameters
    ----------
    predictions:
        The ``prediction`` column (successful rows).
    kind:
        Force ``class``/``numeric``/``vector``; inferred with :func:`prediction_kind` when None.

    Returns
    -------
    (kind, labels, numbers)
        ``labels`` holds class labels (for ``numeric`` they are the raw numbers), ``numbers`` the
        float value (NaN for non-numeric predictions).
    """
    if kind is None:
        kind = prediction_kind(predictions.tolist())
    elif kind not in KINDS:
        raise ValidationError(f"unknown prediction kind {kind!r}; use one of {KINDS[:3]}")
    labels = predictions.map(lambda v: to_label(v, kind))
    numbers = predictions.map(to_number).astype(float)
    return kind, labels, numbers
