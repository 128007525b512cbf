"""kserve-nb: canary releases of KServe InferenceServices from Jupyter."""

from __future__ import annotations

__version__ = "0.1.0"
