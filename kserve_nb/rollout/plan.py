"""A progressive rollout's plan: the steps, how long each bakes, and the gates that judge it.

``steps`` reads like Argo Rollouts' ``setWeight``/``pause`` list: ``"5,10,25,50,100"`` sends 5 % of
the traffic to the candidate, then 10 %, … and promotes at 100; a ``pause`` entry
(``"5,10,pause,50,100"``) waits for a person to approve before going on.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kserve_nb import errors
from kserve_nb.durations import parse_duration
from kserve_nb.rollout.gates import Gate, parse_gates
from kserve_nb.style import SIDE_COLORS

PAUSE = "pause"
DEFAULT_STEPS = (5, 10, 25, 50, 100)
DEFAULT_GATES = ("error_rate<=prev+0.01", "p95<=1.2*prev")

def parse_steps(value: Any) -> tuple[int | str, ...]:
    """Steps from ``"5,10,pause,50,100"`` or a list; percents rise, and the last step is 100."""
    items: Sequence[Any] = [s for s in str(value).split(",")] if isinstance(value, str) else list(value)
    steps: list[int | str] = []
    for raw in items:
        item = str(raw).strip().lower().rstrip("%")
        if item in (PAUSE, "approve", "approval"):
            steps.append(PAUSE)
            continue
        try:
            pct = int(item)
        except ValueError:
            raise errors.ValidationError(
                f"step {raw!r} is neither a percent nor 'pause'; write e.g. --steps 5,10,pause,50,100"
            ) from None
        if not 1 <= pct <= 100:
            raise errors.ValidationError(f"step {pct}% is out of range; each step is a percent from 1 to 100")
        if steps and any(isinstance(s, int) and s >= pct for s in steps):
            raise errors.ValidationError(f"steps must rise: {pct}% comes after a step of at least {pct}%")
        steps.append(pct)
    percents = [s for s in steps if isinstance(s, int)]
    if not percents:
        raise errors.ValidationError("a rollout needs at least one traffic step, e.g. --steps 10,50,100")
    if percents[-1] != 100:
        steps.append(100)  # a rollout that ends short of 100 % never releases the model
    if steps[0] == PAUSE:
        raise errors.ValidationError("the first step must be a percent (the canary's first share), not 'pause'")
    return tuple(steps)


@dataclass(frozen=True)
class RolloutPlan:
    """What a rollout will do. Pure data: saved with the rollout's state in the cluster.

    Attributes
    ----------
    storage_uri:
        The candidate model.
    steps:
        Percents (rising, ending at 100 = promote) and ``"pause"`` approval steps.
    interval:
        Seconds each traffic step bakes before it may advance.
    gates:
        Conditions judged on the counts since the candidate started serving.
    alpha:
        Chance of a false rollback of a candidate as good as the baseline, over the whole rollout
        and all gates together (each gate gets ``alpha / len(gates)``).
    min_requests:
        Candidate requests a step needs before it may advance.
    max_wait:
        Seconds a step may wait beyond ``interval`` for ``min_requests``; then ``on_inconclusive``.
    on_inconclusive:
        ``"rollback"`` (Flagger's "no data is a failed check") or ``"pause"`` (wait for a person).
    require_pass:
        Advance only when every gate *passes* (its interval shows the condition holds), rather
        than when none fails with enough requests seen.
    """

    storage_uri: str
    steps: tuple[int | str, ...] = DEFAULT_STEPS
    interval: float = 30.0
    gates: tuple[Gate, ...] = field(default_factory=lambda: parse_gates(DEFAULT_GATES))
    alpha: float = 0.05
    min_requests: int = 50
    max_wait: float = 300.0
    on_inconclusive: str = "rollback"
    require_pass: bool = False
    tag_routing: bool | None = None

    @classmethod
    def build(
        cls,
        storage_uri: str,
        *,
        steps: Any = DEFAULT_STEPS,
        interval: Any = 30.0,
        gates: Any = DEFAULT_GATES,
        alpha: float = 0.05,
        min_requests: int = 50,
        max_wait: Any = 300.0,
        on_inconclusive: str = "rollback",
        require_pass: bool = False,
        tag_routing: bool | None = None,
    ) -> RolloutPlan:
        """Validate every argument and build the plan (one-line errors naming the bad one)."""
        if not isinstance(alpha, (int, float)) or not 0 < alpha < 0.5:
            raise errors.ValidationError(f"alpha must be between 0 and 0.5 (e.g. 0.05), got {alpha!r}")
        if isinstance(min_requests, bool) or not isinstance(min_requests, int) or min_requests < 1:
            raise errors.ValidationError(f"min_requests must be a positive whole number, got {min_requests!r}")
        if on_inconclusive not in ("rollback", "pause"):
            raise errors.ValidationError(f"on_inconclusive must be 'rollback' or 'pause', got {on_inconclusive!r}")
        return cls(
            storage_uri=storage_uri,
            steps=parse_steps(steps),
            interval=parse_duration(interval, "interval"),
            gates=parse_gates(gates),
            alpha=float(alpha),
            min_requests=min_requests,
            max_wait=parse_duration(max_wait, "max_wait"),
            on_inconclusive=on_inconclusive,
            require_pass=bool(require_pass),
            tag_routing=tag_routing,
        )

    @property
    def gate_alpha(self) -> float:
        """The error budget of each gate (Bonferroni over the gates)."""
        return self.alpha / max(1, len(self.gates))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, stored with the rollout's state."""
        return {
            "storageUri": self.storage_uri,
            "steps": list(self.steps),
            "interval": self.interval,
            "gates": [g.text for g in self.gates],
            "alpha": self.alpha,
            "minRequests": self.min_requests,
            "maxWait": self.max_wait,
            "onInconclusive": self.on_inconclusive,
            "requirePass": self.require_pass,
            "tagRouting": self.tag_routing,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RolloutPlan:
        """The plan saved by :meth:`to_dict`."""
        return cls.build(
            str(d["storageUri"]),
            steps=d.get("steps", DEFAULT_STEPS),
            interval=d.get("interval", 30.0),
            gates=d.get("gates", DEFAULT_GATES),
            alpha=float(d.get("alpha", 0.05)),
            min_requests=int(d.get("minRequests", 50)),
            max_wait=d.get("maxWait", 300.0),
            on_inconclusive=str(d.get("onInconclusive", "rollback")),
            require_pass=bool(d.get("requirePass", False)),
            tag_routing=d.get("tagRouting"),
        )

    def same_release(self, other: RolloutPlan) -> bool:
        """Whether ``other`` describes the same release (so a rerun resumes rather than conflicts)."""
        return self.storage_uri == other.storage_uri and self.steps == other.steps

    def describe(self) -> str:
        """The plan in a few plain lines."""
        steps = " → ".join("⏸ approve" if s == PAUSE else ("promote" if s == 100 else f"{s}%") for s in self.steps)
        gates = ", ".join(g.text for g in self.gates) or "none (time-based steps only)"
        return (
            f"rollout of {self.storage_uri}: {steps}; each step bakes {_seconds(self.interval)} and needs "
            f"{self.min_requests} candidate requests; gates {gates} "
            f"(anytime-valid, α={self.alpha:g} over the whole rollout); a failed gate rolls back"
        )

    def __str__(self) -> str:
        return self.describe()

    def _repr_html_(self) -> str:
        return plan_picture(self)


def _seconds(s: float) -> str:
    if s >= 3600 and s % 3600 == 0:
        return f"{s / 3600:g}h"
    if s >= 60 and s % 60 == 0:
        return f"{s / 60:g}m"
    return f"{s:g}s"


def plan_picture(plan: RolloutPlan, current: int | None = None, outcome: Mapping[int, str] | None = None) -> str:
    """The steps as a strip of boxes (Argo Rollouts style), the current one outlined.

    ``outcome`` maps a step index to ``"done"``, ``"failed"`` or ``"waiting"``.
    """
    outcome = outcome or {}
    boxes = []
    for i, step in enumerate(plan.steps):
        state = outcome.get(i, "")
        if step == PAUSE:
            label, sub = "⏸", "approve"
        elif step == 100:
            label, sub = "100%", "promote"
        else:
            label, sub = f"{step}%", _seconds(plan.interval)
        color = {"done": SIDE_COLORS["default"], "failed": "#E45756"}.get(state, "var(--jp-layout-color2, #eaeef2)")
        text = "white" if state in ("done", "failed") else "var(--jp-ui-font-color1, #24292f)"
        ring = "2px solid " + SIDE_COLORS["latest"] if i == current else "1px solid var(--jp-border-color1, #d0d7de)"
        mark = {"done": "✔ ", "failed": "✘ "}.get(state, "")
        boxes.append(
            f'<div class="kserve-nb-step" data-state="{state}" style="min-width:64px;padding:4px 6px;'
            f'text-align:center;border:{ring};border-radius:4px;background:{color};color:{text}">'
            f'<div style="font-weight:bold">{mark}{html.escape(label)}</div>'
            f'<div style="font-size:11px">{html.escape(sub)}</div></div>'
        )
    arrow = '<div style="align-self:center;color:var(--jp-ui-font-color2, #6e7781)">→</div>'
    gates = "".join(f"<code>{html.escape(g.text)}</code> " for g in plan.gates) or "<i>none</i>"
    return (
        f'<div class="kserve-nb-rollout-plan" style="font-family:var(--jp-ui-font-family, sans-serif)">'
        f"<div>Rollout of <code>{html.escape(plan.storage_uri)}</code></div>"
        f'<div style="display:flex;gap:4px;flex-wrap:wrap;margin:6px 0">{arrow.join(boxes)}</div>'
        f'<div style="font-size:12px">gates: {gates}· α={plan.alpha:g} over the rollout · '
        f"≥{plan.min_requests} candidate requests a step · a failed gate rolls back</div></div>"
    )
