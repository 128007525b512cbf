"""The autopilot: walk a :class:`RolloutPlan`, judge its gates, roll back by itself.

A rollout is supervised by the process that runs it (a notebook cell, a runbook, a panel worker);
the supervisor is the only writer of traffic while it runs. Every check it

1. writes a heartbeat into the rollout's ConfigMap and reads back a person's approval or abort;
2. reads the service (someone else changed the model → stop, leave traffic as it is; the candidate
   revision failed → roll back);
3. reads cumulative per-revision counters from the metric source, subtracts the counters saved
   when the candidate started serving, and judges every gate on them — one failed gate rolls back
   at once, whatever the step;
4. advances when the step has baked ``interval`` seconds with ``min_requests`` candidate requests
   and no failed gate (or, with ``require_pass``, every gate passed); the last step promotes.

In Standard mode (``spec.canary[]``) the candidate is a new canary and what is compared are two
*sides*, ``stable`` and the canary's name, each every pod of its Deployment: the metric source is
read through its ``for_sides`` view, the steps set that canary's ``trafficPercent``, a rollback
removes it (other canaries stay) and 100 promotes it.

Gates are anytime-valid (see :mod:`kserve_nb.rollout.gates`), so checking every few seconds does
not raise the chance of a false rollback above ``plan.alpha``. What happens when the supervisor
dies is described in :mod:`kserve_nb.rollout.state`: the service holds at its step.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from kserve_nb import errors
from kserve_nb import semantics_standard as std
from kserve_nb.history import DONE, FAILED, new_entry
from kserve_nb.metrics.sample import MetricSource, RevisionSample, describe
from kserve_nb.progress import in_kernel
from kserve_nb.rollout.plan import PAUSE, RolloutPlan, plan_picture
from kserve_nb.rollout.state import (
    DEFAULT_LEASE_SECONDS,
    RolloutState,
    StateStore,
    sample_from_dict,
    sample_to_dict,
    supervisor_id,
)
from kserve_nb.status import STABLE

if TYPE_CHECKING:  # pragma: no cover
    from kserve_nb.service import Service
    from kserve_nb.status import ServiceStatus

log = logging.getLogger(__name__)

#: Seconds between checks: a fifth of the interval, within these bounds.
MIN_CHECK_SECONDS = 0.5
MAX_CHECK_SECONDS = 5.0


#: Timeline event of each final phase.
_FINAL_EVENTS = {"Succeeded": "succeeded", "RolledBack": "rolled back", "Aborted": "aborted", "Failed": "failed"}


def check_period(plan: RolloutPlan) -> float:
    """How often the supervisor checks (a fifth of the bake interval, 0.5–5 s)."""
    return min(max(plan.interval / 5.0, MIN_CHECK_SECONDS), MAX_CHECK_SECONDS)


@dataclass(frozen=True)
class RolloutResult:
    """How a rollout ended: phase, reason, the timeline and the evidence of its last check."""

    service: str
    namespace: str
    plan: RolloutPlan
    state: RolloutState
    evidence: tuple[Any, ...] = ()
    samples: Mapping[str, RevisionSample] | None = None

    @property
    def phase(self) -> str:
        """``Succeeded``, ``RolledBack``, ``Aborted``, ``Failed``, or a live phase when interrupted."""
        return self.state.phase

    @property
    def ok(self) -> bool:
        """Whether the candidate was promoted."""
        return self.state.phase == "Succeeded"

    @property
    def reason(self) -> str:
        """Why it ended as it did."""
        return self.state.reason

    def timeline(self) -> pd.DataFrame:
        """One row per event: time, step, percent, event, message, decision details."""
        rows = []
        for e in self.state.timeline:
            rows.append({
                "time": pd.Timestamp(float(e["time"]), unit="s", tz="UTC").strftime("%H:%M:%S"),
                "step": int(e.get("step", 0)) + 1,
                "percent": int(e.get("percent", 0)),
                "event": e.get("event", ""),
                "message": e.get("message", ""),
            })
        return pd.DataFrame(rows, columns=["time", "step", "percent", "event", "message"])

    def gates(self) -> pd.DataFrame:
        """The last check's gates: metric, decision, values, interval, sample sizes, statement."""
        return evidence_frame(self.evidence)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly evidence record: plan, outcome, every step event and the last gate values."""
        return {
            "service": self.service, "namespace": self.namespace, "plan": self.plan.to_dict(),
            "phase": self.phase, "reason": self.reason, "candidate": self.state.candidate,
            "baseline": self.state.baseline, "source": self.state.source,
            # Standard mode: the compared sides (candidate/baseline are side names) and their Deployments.
            "mode": "Standard" if self.state.standard else "Knative", "sides": dict(self.state.sides),
            "timeline": [dict(e) for e in self.state.timeline],
            "gates": [_evidence_dict(e) for e in self.evidence],
            "samples": {k: describe(v) for k, v in (self.samples or {}).items()},
            # What was asked to get those numbers (the resolved PromQL), beside the numbers.
            "queries": {k: dict(v.queries) for k, v in (self.samples or {}).items() if v.queries},
        }

    def summary(self) -> str:
        """One line."""
        return f"{self.namespace}/{self.service}: {self.state.summary()}"

    def __repr__(self) -> str:
        return f"<RolloutResult {self.summary()}>"

    def _repr_html_(self) -> str:
        return rollout_html(self.plan, self.state, self.evidence, self.samples)


def evidence_frame(evidence: Sequence[Any]) -> pd.DataFrame:
    """Gate evidence as a table (the values behind every decision, never a bare verdict)."""
    rows = [_evidence_dict(e) for e in evidence]
    cols = [
        "gate", "decision", "candidate", "baseline", "limit", "low", "high", "n_candidate", "n_baseline", "statement",
    ]
    return pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=cols)


def _evidence_dict(e: Any) -> dict[str, Any]:
    d = dict(e.to_dict()) if hasattr(e, "to_dict") else {"statement": str(e)}
    interval = d.pop("interval", None)
    if isinstance(interval, Mapping):
        d.setdefault("low", interval.get("low"))
        d.setdefault("high", interval.get("high"))
    d.setdefault("gate", getattr(e, "gate", None) or d.get("metric"))
    return d


def rollout_html(plan: RolloutPlan, state: RolloutState | None, evidence: Sequence[Any] = (),
                 samples: Mapping[str, RevisionSample] | None = None, note: str = "") -> str:
    """The step picture, the state line, the gate values and the timeline, as HTML."""
    outcome: dict[int, str] = {}
    current = None
    if state is not None:
        for i in range(len(plan.steps)):
            if i < state.step or (state.phase == "Succeeded" and i <= state.step):
                outcome[i] = "done"
        if state.phase in ("RolledBack", "Aborted", "Failed"):
            outcome[state.step] = "failed"
        current = state.step if state.live else None
    parts = [plan_picture(plan, current, outcome)]
    if state is not None:
        parts.append(f'<div class="kserve-nb-rollout-state"><b>{html.escape(state.summary())}</b></div>')
    if note:
        parts.append(f"<div>{html.escape(note)}</div>")
    if evidence:
        table = evidence_frame(evidence).drop(columns=["statement"])
        parts.append(table.to_html(index=False, border=0, classes="kserve-nb-table", float_format=lambda x: f"{x:.4g}"))
        parts.append("<ul>" + "".join(f"<li>{html.escape(str(e))}</li>" for e in evidence) + "</ul>")
    if samples:
        frame = pd.DataFrame([describe(s) for s in samples.values()])
        if state is not None and state.standard:  # Standard mode compares sides: name each one's Deployment
            frame = frame.rename(columns={"revision": "side"})
            frame.insert(1, "deployment", [state.sides.get(str(n), "") for n in frame["side"]])
        parts.append(frame.to_html(index=False, border=0, classes="kserve-nb-table"))
        queries = {q: text for s in samples.values() for q, text in s.queries.items()}
        if queries:  # the numbers' own questions, one click away
            rows = "".join(f"<li>{html.escape(q)}: <code>{html.escape(t)}</code></li>" for q, t in queries.items())
            parts.append(f"<details><summary>queries behind these numbers</summary><ul>{rows}</ul></details>")
    if state is not None and state.timeline:
        rows = "".join(
            f"<tr><td>{html.escape(time.strftime('%H:%M:%S', time.gmtime(float(e['time']))))}</td>"
            f"<td>{int(e.get('step', 0)) + 1}</td><td>{int(e.get('percent', 0))}%</td>"
            f"<td>{html.escape(str(e.get('event', '')))}</td><td>{html.escape(str(e.get('message', '')))}</td></tr>"
            for e in state.timeline[-12:]
        )
        parts.append(
            '<table class="kserve-nb-table"><tr><th>time (UTC)</th><th>step</th><th>share</th><th>event</th>'
            f"<th>message</th></tr>{rows}</table>"
        )
    return '<div class="kserve-nb-rollout">' + "".join(parts) + "</div>"


class _Display:
    """The live view of a running rollout: one display updated in place in a kernel, logs elsewhere."""

    def __init__(self, plan: RolloutPlan, enabled: bool) -> None:
        self.plan = plan
        self._handle: Any = None
        self._last = ""
        if enabled:
            from IPython.display import HTML, display

            self._handle = display(HTML(rollout_html(plan, None, note="starting…")), display_id=True)

    def show(self, state: RolloutState, evidence: Sequence[Any] = (),
             samples: Mapping[str, RevisionSample] | None = None, note: str = "") -> None:
        if self._handle is not None:
            from IPython.display import HTML

            self._handle.update(HTML(rollout_html(self.plan, state, evidence, samples, note)))
        line = state.summary() + (f" — {note}" if note else "")
        if line != self._last:
            self._last = line
            log.info("%s/%s: %s", state.namespace, state.service, line)


class Supervisor:
    """Runs one rollout of one service to its end (or until cancelled)."""

    def __init__(
        self,
        service: Service,
        plan: RolloutPlan,
        source: MetricSource,
        *,
        cancel: threading.Event | None = None,
        display: bool | None = None,
        on_update: Callable[[RolloutState, Sequence[Any]], None] | None = None,
        lease: float | None = None,
    ) -> None:
        self.svc = service
        self.plan = plan
        #: The source as given; ``source`` is it read per side once a Standard-mode rollout knows them.
        self.base_source = source
        self.source = source
        self.cancel = cancel or threading.Event()
        self.store = StateStore(service.session.cluster, service.name, service.namespace)
        self.period = check_period(plan)
        # How long a silent supervisor still counts as alive: a few missed checks, not one.
        self.lease = lease if lease is not None else max(DEFAULT_LEASE_SECONDS, 4 * self.period)
        self.view = _Display(plan, in_kernel() if display is None else display)
        self.on_update = on_update
        self.evidence: tuple[Any, ...] = ()
        self.samples: dict[str, RevisionSample] = {}

    # ------------------------------------------------------------------ entry

    def run(self) -> RolloutResult:
        """Start or resume the rollout and supervise it until it ends; never leaves traffic moving
        unsupervised (an interrupt leaves the service held at its step, with the state saying so)."""
        state = self._begin()
        try:
            state = self._supervise(state)
        except KeyboardInterrupt:
            state = self._release(state, "interrupted: the rollout holds at this step; re-run to resume or --abort")
            self.view.show(state, self.evidence, self.samples)
            raise
        except errors.KServeNbError as err:
            state = self._release(state, f"stopped supervising: {err}")
            self.view.show(state, self.evidence, self.samples)
            raise
        self.view.show(state, self.evidence, self.samples)
        return RolloutResult(self.svc.name, self.svc.namespace, self.plan, state, self.evidence, dict(self.samples))

    # ------------------------------------------------------------------ start / resume

    def _begin(self) -> RolloutState:
        existing = self.store.load()
        if existing is not None and existing.live:
            return self._resume(existing)
        st = self.svc.status()
        if st.standard:
            return self._start_standard(st)
        if not st.ready or not st.latest_rolledout_revision:
            raise errors.ValidationError(
                f"{self.svc.name} is not ready (READY {st.ready_status}); a rollout starts from a ready service — "
                "create it first (%kserve deploy) and wait until it is ready"
            )
        # A canary at 0 % is a rolled-back one: a new rollout may start from it.
        if st.canary_traffic_percent and st.latest_ready_revision != st.latest_rolledout_revision:
            raise errors.ValidationError(
                f"{self.svc.name} already has a canary in flight ({st.summary()}); promote or roll it back first"
            )
        if st.storage_uri == self.plan.storage_uri:
            raise errors.ValidationError(
                f"{self.svc.name} already serves {self.plan.storage_uri}; a rollout needs a new model"
            )
        now = time.time()
        state = RolloutState(
            self.svc.name, self.svc.namespace, self.plan, phase="Progressing", step=0,
            baseline=st.latest_rolledout_revision, source=self.source.name, started=now, step_started=now,
            heartbeat=now, lease=self.lease, supervisor=supervisor_id(),
        )
        # The intent is saved before anything changes, so a supervisor that dies during the first
        # patch still leaves a visible, resumable rollout.
        state = self.store.start(state.event("start", self.plan.describe()))
        self._record("rollout", f"started: {self.plan.describe()}")
        first = self.plan.steps[0]
        assert isinstance(first, int)
        try:
            release = self.svc.canary(
                self.plan.storage_uri, first, tag_routing=self.plan.tag_routing, cancel=self.cancel,
            )
        except errors.RolloutError as err:
            # The candidate never became ready: it got no traffic; pin the baseline and stop.
            self._rollback_quietly(state)
            return self._finish(state, "Failed", f"the candidate did not start: {err}")
        candidate = getattr(release, "new_revision", None) or self.svc.status().latest_ready_revision
        origin = self._snapshot([candidate, state.baseline])
        state = replace(
            state, candidate=candidate, origin={k: sample_to_dict(v) for k, v in origin.items()},
            step_started=time.time(),
        )
        return self._save(state.event("step", f"{first}% of the traffic to {candidate}"))

    def _use_sides(self, sides: Mapping[str, str]) -> None:
        """Read the metric source per side from now on (a source without ``for_sides`` is
        asked with the side names as they are)."""
        for_sides = getattr(self.base_source, "for_sides", None)
        self.source = for_sides(dict(sides)) if callable(for_sides) else self.base_source

    def _start_standard(self, st: ServiceStatus) -> RolloutState:
        """A new Standard-mode rollout: the candidate is a new ``spec.canary[]`` entry, judged as
        its side against the ``stable`` side, each side being all the pods of its Deployment."""
        from kserve_nb import standard

        stable = st.stable
        if stable is None or not stable.ready:
            raise errors.ValidationError(
                f"{self.svc.name}'s stable predictor is not ready; a rollout starts from a ready service — "
                "wait until it is ready"
            )
        moving = [c for c in st.canaries if c.percent > 0]
        if moving:
            raise errors.ValidationError(
                f"{self.svc.name} already has a canary in flight ({moving[-1].name}: {moving[-1].percent}%); "
                "promote or roll it back first"
            )
        if stable.storage_uri == self.plan.storage_uri:
            raise errors.ValidationError(
                f"{self.svc.name} already serves {self.plan.storage_uri}; a rollout needs a new model"
            )
        if self.plan.tag_routing:
            raise errors.ValidationError(
                "tag routing (latest-/prev- URLs) exists only in Knative mode; a Standard-mode rollout "
                "needs none (each side answers on its own host): drop tag_routing / --tag-routing"
            )
        cname = standard.next_canary_name(st.raw)
        sides = {STABLE: stable.deployment, cname: std.predictor_service_name(self.svc.name, cname)}
        self._use_sides(sides)
        now = time.time()
        state = RolloutState(
            self.svc.name, self.svc.namespace, self.plan, phase="Progressing", step=0, candidate=cname,
            baseline=STABLE, source=self.source.name, started=now, step_started=now, heartbeat=now,
            lease=self.lease, supervisor=supervisor_id(), sides=sides,
        )
        state = self.store.start(state.event("start", self.plan.describe()))
        self._record("rollout", f"started: {self.plan.describe()}")
        first = self.plan.steps[0]
        assert isinstance(first, int)
        try:
            self.svc.canary(self.plan.storage_uri, first, name=cname, cancel=self.cancel)
        except errors.RolloutError as err:
            self._rollback_quietly(state)
            return self._finish(state, "Failed", f"the candidate did not start: {err}")
        origin = self._snapshot([cname, STABLE])
        state = replace(state, origin={k: sample_to_dict(v) for k, v in origin.items()}, step_started=time.time())
        return self._save(state.event("step", f"{first}% of the traffic to {_who(state)}"))

    def _resume(self, existing: RolloutState) -> RolloutState:
        me = supervisor_id()
        if not existing.plan.same_release(self.plan):
            raise errors.ValidationError(
                f"another rollout of {self.svc.name} is in progress ({existing.plan.storage_uri}, "
                f"{existing.summary()}); run it again to resume it, or abort it first (--abort)"
            )
        if not existing.held() and existing.supervisor != me:
            raise errors.ValidationError(
                f"this rollout of {self.svc.name} is already supervised by {existing.supervisor} "
                f"(heartbeat {time.time() - existing.heartbeat:.0f}s ago); wait for it, or --abort"
            )
        st = self.svc.status()
        changed = self._changed_outside(existing, st)
        if changed:
            return self._finish(existing, "Failed", changed)
        if existing.standard:
            self._use_sides(existing.sides)
        origin = dict(existing.origin)
        note = f"resumed by {me} at step {existing.step + 1} (the step's bake starts again)"
        if existing.source != self.source.name or not origin:
            # Counters from another source are not comparable: judge from now on.
            fresh = self._snapshot([r for r in (existing.candidate, existing.baseline) if r])
            origin = {k: sample_to_dict(v) for k, v in fresh.items()}
            note += f"; metrics now from {self.source.name}, counted from here"
        state = replace(
            existing, supervisor=me, heartbeat=time.time(), lease=self.lease, step_started=time.time(),
            source=self.source.name, origin=origin, plan=existing.plan,
        )
        self.plan = existing.plan  # the saved plan wins (interval, gates): a rerun resumes, not edits
        self.view.plan = existing.plan
        self._record("rollout", note)
        return self._save(state.event("resume", note))

    # ------------------------------------------------------------------ the loop

    def _supervise(self, state: RolloutState) -> RolloutState:
        step_origin = self._snapshot_or_none(state)
        metrics_down_since: float | None = None
        while state.live:
            if self.cancel.is_set():
                return self._release(state, "stopped by request: the rollout holds at this step")
            state = self._save(replace(state, heartbeat=time.time()))
            if state.abort_requested:
                return self._roll_back(state, "Aborted", f"aborted by {state.abort_requested}")
            st = self.svc.status()
            changed = self._changed_outside(state, st)
            if changed:
                return self._finish(state, "Failed", changed)
            failure = self._candidate_failure(state, st)
            if failure:
                return self._roll_back(state, "RolledBack", f"the candidate {state.candidate} failed: {failure}")
            try:
                now_samples = self._snapshot([state.candidate, state.baseline])
                metrics_down_since = None
            except errors.KServeNbError as err:
                metrics_down_since = metrics_down_since or time.monotonic()
                if time.monotonic() - metrics_down_since > max(3 * self.period, self.plan.interval):
                    return self._roll_back(state, "RolledBack", f"no metrics to judge the candidate by: {err}")
                self.view.show(state, self.evidence, self.samples, note=f"metrics unavailable, retrying: {err}")
                self._sleep()
                continue
            since_start = self._since(state, now_samples)
            self.samples = since_start
            cand = since_start[state.candidate or ""]
            base = since_start.get(state.baseline or "")
            self.evidence = tuple(g.evaluate(cand, base, self.plan.gate_alpha, self.plan.min_requests)
                                  for g in self.plan.gates)
            failed = [e for e in self.evidence if e.decision == "fail"]
            if failed:
                return self._roll_back(state, "RolledBack", "gate failed: " + "; ".join(str(e) for e in failed))
            if step_origin is None:
                step_origin = now_samples
            step_requests = (now_samples[state.candidate or ""] - step_origin[state.candidate or ""]).requests
            step_before = state.step
            state = self._maybe_advance(state, st, step_requests)
            if state.step != step_before:  # a new step: its requests are counted anew
                step_origin = now_samples
            if self.on_update is not None:
                self.on_update(state, self.evidence)
            if state.live:
                self._sleep()
        return state

    def _changed_outside(self, state: RolloutState, st: ServiceStatus) -> str | None:
        """Why the service no longer runs this rollout's release (someone else changed it), or None."""
        if not state.standard:
            if st.storage_uri != state.plan.storage_uri:
                return f"the service's model was changed to {st.storage_uri} outside the rollout; traffic left as it is"
            return None
        side = st.side(state.candidate or "")
        if side is None or side.role == STABLE:
            return f"canary {state.candidate} was removed or promoted outside the rollout; traffic left as it is"
        if side.storage_uri != state.plan.storage_uri:
            return (
                f"canary {state.candidate}'s model was changed to {side.storage_uri} outside the rollout; "
                "traffic left as it is"
            )
        return None

    def _candidate_failure(self, state: RolloutState, st: ServiceStatus) -> str | None:
        """The candidate's failure (a revision that failed; a canary Deployment that gave up)."""
        if not state.standard:
            return st.failure if st.failure and st.latest_created_revision == state.candidate else None
        side = st.side(state.candidate or "")
        if side is None or side.ready:
            return None
        from kserve_nb import standard

        return standard.deployment_failure(self.svc.session.cluster, side.deployment, self.svc.namespace)

    def _maybe_advance(self, state: RolloutState, st: ServiceStatus, step_requests: int) -> RolloutState:
        step = state.current_step
        if step == PAUSE:
            if state.step in state.approved:
                return self._next(state.event("approved", "approved; going on"))
            if state.phase != "Paused":
                state = self._save(replace(state, phase="Paused").event("pause", "waiting for approval"))
            self.view.show(state, self.evidence, self.samples)
            return state
        baked = time.time() - state.step_started
        passing = all(e.decision == "pass" for e in self.evidence)
        enough = step_requests >= self.plan.min_requests
        note = (
            f"step {state.step + 1}: {baked:.0f}/{self.plan.interval:g}s baked, "
            f"{step_requests}/{self.plan.min_requests} candidate requests"
        )
        self.view.show(state, self.evidence, self.samples, note=note)
        if baked >= self.plan.interval and enough and (passing or not self.plan.require_pass):
            verdict = ", ".join(f"{e.metric} {e.decision}" for e in self.evidence) or "no gates"
            gates = [_evidence_dict(e) for e in self.evidence]
            return self._next(state.event("baked", f"{note}; {verdict}", gates=gates))
        if baked >= self.plan.interval + self.plan.max_wait:
            why = (
                f"step {state.step + 1} saw {step_requests} of {self.plan.min_requests} candidate requests"
                if not enough else "the gates stayed inconclusive"
            ) + f" in {baked:.0f}s"
            if self.plan.on_inconclusive == "pause":
                # Turn the step into a wait for a person: approve to go on, abort to roll back.
                state = replace(state, phase="Paused").event("pause", f"{why}; waiting for approval")
                return self._save(state)
            return self._roll_back(state, "RolledBack", f"not enough evidence: {why}")
        return state

    def _next(self, state: RolloutState) -> RolloutState:
        nxt = state.step + 1
        entry = self.plan.steps[nxt]
        state = replace(state, step=nxt, phase="Progressing", step_started=time.time())
        if entry == PAUSE:
            state = replace(state, phase="Paused").event("pause", "waiting for approval")
            self._record("rollout", f"paused at step {nxt + 1} for approval")
            return self._save(state)
        assert isinstance(entry, int)
        which = _which(state)
        if entry == 100:
            state = self._save(state.event("promote", f"promoting {_who(state)}"))
            self.svc.promote(cancel=self.cancel, **which)
            return self._finish(state, "Succeeded", f"{_who(state)} promoted after {nxt} step(s)")
        self.svc.set_traffic(entry, cancel=self.cancel, **which)
        state = replace(state, step_started=time.time())
        self._record("rollout", f"step {nxt + 1}: {entry}% to {_who(state)}")
        return self._save(state.event("step", f"{entry}% of the traffic to {_who(state)}"))

    # ------------------------------------------------------------------ endings

    def _roll_back(self, state: RolloutState, phase: str, reason: str) -> RolloutState:
        # The intent first (a supervisor dying mid-rollback leaves it visible), then the outcome.
        state = self._save(state.event("rollback", reason))
        self._rollback_quietly(state)
        return self._finish(state, phase, reason, f"all traffic back on {_who(state, state.baseline)}")

    def _rollback_quietly(self, state: RolloutState) -> None:
        try:
            self.svc.rollback(cancel=None, **_which(state))
        except errors.ValidationError:
            pass  # nothing to roll back to (the candidate never got traffic)

    def _finish(self, state: RolloutState, phase: str, reason: str, message: str | None = None) -> RolloutState:
        event = _FINAL_EVENTS.get(phase, phase.lower())
        state = replace(state, phase=phase, reason=reason, heartbeat=time.time()).event(event, message or reason)
        if phase == "Succeeded":
            self._record("rollout", f"{phase}: {reason}")
        else:  # the release did not happen: the history says failed, and why
            self._record("rollout", phase, outcome=FAILED, error=reason)
        return self._save(state)

    def _release(self, state: RolloutState, why: str) -> RolloutState:
        # Hand the rollout over: lease 0 makes it "held" at once for the next supervisor.
        try:
            return self._save(replace(state, lease=0.0).event("held", why))
        except errors.KServeNbError:
            return state

    # ------------------------------------------------------------------ helpers

    def _save(self, state: RolloutState) -> RolloutState:
        saved = self.store.save(state)
        self.view.show(saved, self.evidence, self.samples)
        return saved

    def _snapshot(self, revisions: Sequence[str | None]) -> dict[str, RevisionSample]:
        names = [r for r in revisions if r]
        got = self.source.snapshot(self.svc.namespace, self.svc.name, names)
        return {r: got.get(r) or RevisionSample(r, source=self.source.name) for r in names}

    def _snapshot_or_none(self, state: RolloutState) -> dict[str, RevisionSample] | None:
        try:
            return self._snapshot([state.candidate, state.baseline])
        except errors.KServeNbError:
            return None

    def _since(self, state: RolloutState, now: Mapping[str, RevisionSample]) -> dict[str, RevisionSample]:
        out = {}
        for rev, sample in now.items():
            saved = state.origin.get(rev)
            out[rev] = sample - sample_from_dict(saved) if saved else sample
        return out

    def _sleep(self) -> None:
        self.cancel.wait(self.period)

    def _record(self, action: str, detail: str, outcome: str = DONE, error: str | None = None) -> None:
        # Through the service's own recorder: a history that cannot be written is a visible
        # warning there, never a failed rollout.
        self.svc._record(new_entry(action, self.svc.session.context, outcome=outcome, detail=detail,
                                   storageUri=self.plan.storage_uri, error=error))


def _which(state: RolloutState) -> dict[str, Any]:
    """The release-step argument naming the candidate: its canary in Standard mode (other canaries
    are left alone), nothing in Knative mode (the revision in flight is the candidate)."""
    return {"canary": state.candidate} if state.standard else {}


def _who(state: RolloutState, name: str | None = None) -> str:
    """A compared revision, or a side with its Deployment (``canary v2 (Deployment …)``)."""
    name = state.candidate if name is None else name
    if not state.standard or name is None:
        return name or "the candidate"
    kind = "the stable" if name == STABLE else f"canary {name}"
    deployment = state.sides.get(name)
    return f"{kind} (Deployment {deployment})" if deployment else kind


# ---------------------------------------------------------------------- person-side operations


def approve(service: Service) -> RolloutState:
    """Approve the pause step the rollout waits at (its supervisor goes on at its next check)."""
    store = StateStore(service.session.cluster, service.name, service.namespace)
    state = store.load()
    if state is None or not state.live:
        raise errors.ValidationError(f"{service.name} has no rollout in progress to approve")
    if state.current_step != PAUSE:
        raise errors.ValidationError(
            f"the rollout of {service.name} is not waiting for approval ({state.summary()})"
        )
    store.request(f"approve-{state.step}", supervisor_id())
    return store.load() or state


def abort(service: Service, wait: float = 30.0) -> RolloutState:
    """Stop the rollout and send all traffic back to the baseline.

    A live supervisor is asked to do it (so it stops moving traffic first); a held rollout (its
    supervisor gone) is rolled back right here.
    """
    store = StateStore(service.session.cluster, service.name, service.namespace)
    state = store.load()
    if state is None or not state.live:
        raise errors.ValidationError(f"{service.name} has no rollout in progress to abort")
    who = supervisor_id()
    if not state.held():
        store.request("abort", who)
        deadline = time.monotonic() + min(wait, state.lease * 2)
        while time.monotonic() < deadline:
            time.sleep(0.2)
            current = store.load()
            if current is not None and not current.live:
                return current
            if current is not None and current.held():
                state = current
                break
        else:
            state = store.load() or state
    # Nobody supervises it (or nobody answered): roll back here.
    try:
        service.rollback(**_which(state))
    except errors.ValidationError:
        pass
    final = replace(state, phase="Aborted", reason=f"aborted by {who}", heartbeat=time.time()).event(
        "aborted", f"aborted by {who}; traffic back on {_who(state, state.baseline)}"
    )
    return store.save(final)
