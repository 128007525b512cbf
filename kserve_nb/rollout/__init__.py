"""Progressive rollouts: steps, anytime-valid gates, automatic rollback, state kept in the cluster.

``Service.rollout(...)`` / ``%kserve rollout NAME …`` build a :class:`RolloutPlan` and run a
:class:`Supervisor` on it; see :mod:`kserve_nb.rollout.runner` for the loop and
:mod:`kserve_nb.rollout.state` for what happens when the notebook driving it dies.
"""

from kserve_nb.rollout.gates import Gate, parse_gates
from kserve_nb.rollout.plan import RolloutPlan, parse_duration, parse_steps
from kserve_nb.rollout.runner import RolloutResult, Supervisor, abort, approve
from kserve_nb.rollout.state import RolloutState, StateStore

__all__ = [
    "Gate", "parse_gates", "RolloutPlan", "parse_duration", "parse_steps", "RolloutResult", "Supervisor",
    "abort", "approve", "RolloutState", "StateStore",
]
