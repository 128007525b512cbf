"""Compare the sides of a release: tidy frames, statistics, verdicts and figures.

``kserve_nb.analysis.compare`` is the :func:`~kserve_nb.analysis.compare.compare` function (the
module of the same name is importable as ``from kserve_nb.analysis.compare import Comparison``).
"""

from __future__ import annotations

from kserve_nb.analysis.compare import Agreement, Check, Comparison, Verdict, compare
from kserve_nb.analysis.frames import RESULT_COLUMNS, results_frame
from kserve_nb.style import SIDE_COLORS

__all__ = [
    "RESULT_COLUMNS",
    "SIDE_COLORS",
    "Agreement",
    "Check",
    "Comparison",
    "Verdict",
    "compare",
    "results_frame",
]
