"""kserve-nb: canary releases of KServe InferenceServices from Jupyter.

``%load_ext kserve_nb`` registers the ``%kserve`` magics; :func:`connect` returns a
:class:`Session` for plain Python. Heavy modules (pandas, plotly, kubernetes) load lazily so
loading the extension stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "connect",
    "Session",
    "Service",
    "ServiceStatus",
    "compare",
    "Panel",
    "KServeNbError",
    "load_ipython_extension",
    "unload_ipython_extension",
]

_LAZY = {
    "connect": ("kserve_nb.session", "connect"),
    "Session": ("kserve_nb.session", "Session"),
    "Service": ("kserve_nb.service", "Service"),
    "ServiceStatus": ("kserve_nb.status", "ServiceStatus"),
    "compare": ("kserve_nb.analysis", "compare"),
    "Panel": ("kserve_nb.widgets", "Panel"),
    "KServeNbError": ("kserve_nb.errors", "KServeNbError"),
}

if TYPE_CHECKING:  # pragma: no cover
    from kserve_nb.analysis import compare
    from kserve_nb.errors import KServeNbError
    from kserve_nb.service import Service
    from kserve_nb.session import Session, connect
    from kserve_nb.status import ServiceStatus
    from kserve_nb.widgets import Panel


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kserve_nb' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext kserve_nb``: register the ``%kserve`` line and cell magics."""
    from kserve_nb.magics import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext kserve_nb``: stop background work and close clients."""
    from kserve_nb.magics import unload

    unload(ipython)
