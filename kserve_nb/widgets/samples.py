"""A small built-in input source for the panel's test traffic: rows of the iris data set.

The seeded models are sklearn iris classifiers, so iris rows are the natural smoke test. The
full data set comes from scikit-learn when it is installed; otherwise 30 real rows (10 per
class, the first of each class in Fisher's table) ship here so the panel works without it.
"""

from __future__ import annotations

IRIS_SOURCE = "iris sample"
IRIS_COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]

_BUILTIN: list[list[float]] = [
    [5.1, 3.5, 1.4, 0.2], [4.9, 3.0, 1.4, 0.2], [4.7, 3.2, 1.3, 0.2], [4.6, 3.1, 1.5, 0.2],
    [5.0, 3.6, 1.4, 0.2], [5.4, 3.9, 1.7, 0.4], [4.6, 3.4, 1.4, 0.3], [5.0, 3.4, 1.5, 0.2],
    [4.4, 2.9, 1.4, 0.2], [4.9, 3.1, 1.5, 0.1],
    [7.0, 3.2, 4.7, 1.4], [6.4, 3.2, 4.5, 1.5], [6.9, 3.1, 4.9, 1.5], [5.5, 2.3, 4.0, 1.3],
    [6.5, 2.8, 4.6, 1.5], [5.7, 2.8, 4.5, 1.3], [6.3, 3.3, 4.7, 1.6], [4.9, 2.4, 3.3, 1.0],
    [6.6, 2.9, 4.6, 1.3], [5.2, 2.7, 3.9, 1.4],
    [6.3, 3.3, 6.0, 2.5], [5.8, 2.7, 5.1, 1.9], [7.1, 3.0, 5.9, 2.1], [6.3, 2.9, 5.6, 1.8],
    [6.5, 3.0, 5.8, 2.2], [7.6, 3.0, 6.6, 2.1], [4.9, 2.5, 4.5, 1.7], [7.3, 2.9, 6.3, 1.8],
    [6.7, 2.5, 5.8, 1.8], [7.2, 3.6, 6.1, 2.5],
]


def _all_rows() -> list[list[float]]:
    try:
        from sklearn.datasets import load_iris
    except ImportError:
        return _BUILTIN
    return [[float(x) for x in row] for row in load_iris().data]


def iris_rows(n: int) -> list[list[float]]:
    """``n`` iris rows, classes interleaved (so any prefix mixes all three); repeats past the end."""
    rows = _all_rows()
    per_class = len(rows) // 3
    mixed = [rows[c * per_class + i] for i in range(per_class) for c in range(3)]
    return [mixed[i % len(mixed)] for i in range(n)]
