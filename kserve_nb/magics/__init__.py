"""The ``%kserve`` magics. :func:`load` / :func:`unload` back ``%load_ext`` / ``%unload_ext kserve_nb``."""

from __future__ import annotations

from kserve_nb.magics.core import KServeMagics, load, unload

__all__ = ["KServeMagics", "load", "unload"]
