"""Progressive rollouts: steps, anytime-valid gates, automatic rollback, state kept in the cluster.

``Service.rollout(...)`` / ``%kserve rollout NAME …`` build a :class:`RolloutPlan` and run a
:class:`Supervisor` on it; see :mod:`kserve_nb.rollout.runner` for the loop and
:mod:`kserve_nb.rollout.state` for what happens when the notebook driving it dies. Names load
lazily: the runner needs pandas, the plan and gates do not.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Gate": "gates", "parse_gates": "gates", "RolloutPlan": "plan", "parse_steps": "plan",
    "RolloutResult": "runner", "Supervisor": "runner", "abort": "runner", "approve": "runner",
    "RolloutState": "state", "StateStore": "state",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"kserve_nb.rollout.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'kserve_nb.rollout' has no attribute {name!r}")
