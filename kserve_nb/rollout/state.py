"""A rollout's state, kept in the cluster so that it outlives the notebook that drives it.

One ConfigMap per service (``{name}-kserve-nb-rollout``), beside the release history and for the
same reason: KServe copies an InferenceService's annotations into the revision template, so state
written there would itself roll out a revision. Keys:

``state``
    The plan, the phase, the current step, what is compared — two revisions, or in Standard mode two
    sides (``stable`` and the candidate canary's name, with their Deployments) — the counters at the
    start (so a resumed rollout judges from the same origin), the timeline, and the supervisor's
    heartbeat. Written only by the supervisor (the process running the rollout).
``approve-<step>`` / ``abort``
    Written by a person (``%kserve rollout NAME --approve`` / ``--abort``, the panel), so a
    heartbeat never overwrites a decision. Every write re-reads the object and is guarded by its
    ``resourceVersion``.

What happens when the supervisor dies (the kernel is killed, the laptop sleeps): nothing moves the
traffic any more, so the service **holds at its current step** — KServe keeps serving the split
in the spec. The state still says ``Progressing`` but its heartbeat goes stale, which
``%kserve status`` and :meth:`RolloutState.held` report; re-running the rollout resumes it at that
step (the step's bake starts again), and ``--abort`` rolls it back without a supervisor.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kserve_nb import errors
from kserve_nb import resources as r
from kserve_nb.history import MANAGED_BY, actor
from kserve_nb.metrics.sample import Histogram, RevisionSample
from kserve_nb.rollout.plan import RolloutPlan

#: Phases: Progressing and Paused are live; the others are final.
LIVE_PHASES = ("Progressing", "Paused")
FINAL_PHASES = ("Succeeded", "RolledBack", "Aborted", "Failed")
#: A heartbeat older than this (s) means nobody supervises the rollout any more.
DEFAULT_LEASE_SECONDS = 20.0
#: Timeline entries kept (the ConfigMap must stay far below its 1 MiB limit).
MAX_TIMELINE = 200
_WRITE_DEADLINE_SECONDS = 30.0


def configmap_name(isvc: str) -> str:
    """Name of the rollout state ConfigMap of ``isvc``."""
    return f"{isvc}-kserve-nb-rollout"


def sample_to_dict(s: RevisionSample) -> dict[str, Any]:
    """A sample as stored in the state (counts only; bounds are :data:`LATENCY_BUCKETS_MS`)."""
    return {
        "revision": s.revision, "requests": s.requests, "errors": s.errors,
        "latency": [[b if b != float("inf") else "+Inf" for b in s.latency.bounds], list(s.latency.counts)],
        "labelled": s.labelled, "correct": s.correct, "codes": dict(s.codes), "source": s.source,
    }


def sample_from_dict(d: Mapping[str, Any]) -> RevisionSample:
    """The sample saved by :func:`sample_to_dict`."""
    bounds, counts = d["latency"]
    return RevisionSample(
        str(d["revision"]), int(d["requests"]), int(d["errors"]),
        Histogram(tuple(float("inf") if b == "+Inf" else float(b) for b in bounds), tuple(int(c) for c in counts)),
        int(d.get("labelled", 0)), int(d.get("correct", 0)), dict(d.get("codes") or {}), str(d.get("source", "")),
    )


@dataclass(frozen=True)
class RolloutState:
    """The saved state of one rollout (see the module docstring)."""

    service: str
    namespace: str
    plan: RolloutPlan
    phase: str = "Progressing"
    step: int = 0
    candidate: str | None = None
    baseline: str | None = None
    source: str = ""
    origin: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    started: float = 0.0
    step_started: float = 0.0
    heartbeat: float = 0.0
    lease: float = DEFAULT_LEASE_SECONDS
    supervisor: str = ""
    reason: str = ""
    timeline: tuple[Mapping[str, Any], ...] = ()
    approved: frozenset[int] = frozenset()
    abort_requested: str = ""
    #: Standard mode: side name → Deployment of the compared sides (``candidate`` and ``baseline``
    #: are then side names); empty in Knative mode, where they are revisions.
    sides: Mapping[str, str] = field(default_factory=dict)

    @property
    def standard(self) -> bool:
        """Whether this rollout compares Standard-mode sides (not revisions)."""
        return bool(self.sides)

    @property
    def live(self) -> bool:
        """Progressing or Paused (not finished)."""
        return self.phase in LIVE_PHASES

    def held(self, now: float | None = None) -> bool:
        """Live, but its supervisor stopped beating: the service holds at the current step."""
        now = time.time() if now is None else now
        return self.live and now - self.heartbeat > self.lease

    @property
    def current_step(self) -> int | str:
        """The plan's entry at :attr:`step`."""
        return self.plan.steps[min(self.step, len(self.plan.steps) - 1)]

    @property
    def percent(self) -> int:
        """The candidate's share at the current step (the last traffic step for a pause)."""
        for s in reversed(self.plan.steps[: self.step + 1]):
            if isinstance(s, int):
                return s
        return 0

    def summary(self, now: float | None = None) -> str:
        """One line: phase, step, candidate share, and who supervises it."""
        n = len(self.plan.steps)
        where = f"step {self.step + 1}/{n} ({self.percent}% to {self.candidate or 'the candidate'})"
        if self.held(now):
            ago = (time.time() if now is None else now) - self.heartbeat
            return (
                f"rollout {self.phase.lower()} but HELD at {where}: its supervisor ({self.supervisor}) stopped "
                f"{ago:.0f}s ago; the split stays as it is — re-run the rollout to resume, or --abort to roll back"
            )
        if self.phase == "Paused":
            return f"rollout paused at {where}: waiting for approval (%kserve rollout {self.service} --approve)"
        if self.live:
            return f"rollout progressing at {where}, supervised by {self.supervisor}"
        return f"rollout {self.phase}: {self.reason}" if self.reason else f"rollout {self.phase}"

    def __repr__(self) -> str:
        return f"<RolloutState {self.namespace}/{self.service}: {self.summary()}>"

    def _repr_html_(self) -> str:
        from kserve_nb.rollout.runner import rollout_html

        return rollout_html(self.plan, self)

    def event(self, kind: str, message: str, **fields: Any) -> RolloutState:
        """This state with one more timeline entry."""
        entry = {"time": time.time(), "step": self.step, "percent": self.percent, "event": kind, "message": message}
        entry.update({k: v for k, v in fields.items() if v is not None})
        return replace(self, timeline=(*self.timeline, entry)[-MAX_TIMELINE:])

    def origin_sample(self, revision: str) -> RevisionSample | None:
        """The counters of ``revision`` when the candidate started serving."""
        d = self.origin.get(revision)
        return sample_from_dict(d) if d else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (without the person-written keys)."""
        return {
            "service": self.service, "namespace": self.namespace, "plan": self.plan.to_dict(),
            "phase": self.phase, "step": self.step, "candidate": self.candidate, "baseline": self.baseline,
            "source": self.source, "origin": dict(self.origin), "started": self.started,
            "stepStarted": self.step_started, "heartbeat": self.heartbeat, "lease": self.lease,
            "supervisor": self.supervisor, "reason": self.reason, "timeline": list(self.timeline),
            "sides": dict(self.sides),
        }

    @classmethod
    def from_configmap(cls, cm: Mapping[str, Any]) -> RolloutState:
        """Read the state (and the person-written keys) from the ConfigMap."""
        data = cm.get("data") or {}
        try:
            d = json.loads(data["state"])
            plan = RolloutPlan.from_dict(d["plan"])
        except (KeyError, ValueError, TypeError, errors.ValidationError) as err:
            name = (cm.get("metadata") or {}).get("name")
            raise errors.ValidationError(
                f"the rollout state in ConfigMap {name} cannot be read ({err}); delete it "
                "(kubectl delete configmap …) to start over"
            ) from None
        approved = frozenset(int(k.split("-", 1)[1]) for k in data if k.startswith("approve-") and k[8:].isdigit())
        return cls(
            service=str(d["service"]), namespace=str(d["namespace"]), plan=plan, phase=str(d["phase"]),
            step=int(d["step"]), candidate=d.get("candidate"), baseline=d.get("baseline"),
            source=str(d.get("source", "")), origin=d.get("origin") or {}, started=float(d.get("started", 0)),
            step_started=float(d.get("stepStarted", 0)), heartbeat=float(d.get("heartbeat", 0)),
            lease=float(d.get("lease", DEFAULT_LEASE_SECONDS)), supervisor=str(d.get("supervisor", "")),
            reason=str(d.get("reason", "")), timeline=tuple(d.get("timeline") or ()), approved=approved,
            abort_requested=str(data.get("abort", "")),
            sides={str(k): str(v) for k, v in (d.get("sides") or {}).items()},
        )


def supervisor_id() -> str:
    """Who supervises: ``user@host pid N``."""
    return f"{actor()} pid {os.getpid()}"


class StateStore:
    """Read and write one service's rollout ConfigMap through a ``Cluster``."""

    def __init__(self, cluster: Any, service: str, namespace: str) -> None:
        self.cluster = cluster
        self.service = service
        self.namespace = namespace
        self.name = configmap_name(service)

    def load(self) -> RolloutState | None:
        """The saved state, or None when this service has never had a rollout."""
        cm = self.cluster.get_configmap(self.name, self.namespace)
        if cm is None or "state" not in (cm.get("data") or {}):
            return None
        return RolloutState.from_configmap(cm)

    def start(self, state: RolloutState) -> RolloutState:
        """Save the state of a new rollout, replacing a finished one (its person-written keys go)."""
        self._write({"state": json.dumps(state.to_dict())}, reset=True)
        return state

    def save(self, state: RolloutState) -> RolloutState:
        """Save the supervisor's state; returns it with the person-written keys read back."""
        cm = self._write({"state": json.dumps(state.to_dict())})
        return RolloutState.from_configmap(cm)

    def request(self, key: str, value: str) -> None:
        """A person's decision: ``approve-<step>`` or ``abort``."""
        self._write({key: value})

    def _write(self, values: Mapping[str, str], reset: bool = False) -> dict[str, Any]:
        deadline = time.monotonic() + _WRITE_DEADLINE_SECONDS
        delay = 0.02
        while True:
            current = self.cluster.get_configmap(self.name, self.namespace)
            try:
                if current is None:
                    body = {
                        "apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {
                            "name": self.name, "namespace": self.namespace,
                            "labels": {**MANAGED_BY, r.ISVC_LABEL: self.service},
                        },
                        "data": dict(values),
                    }
                    return dict(self.cluster.create_configmap(body, self.namespace))
                data = {} if reset else dict(current.get("data") or {})
                data.update(values)
                current["data"] = data
                return dict(self.cluster.replace_configmap(current, self.namespace))
            except errors.Conflict:
                # Someone wrote in between (an approval during a heartbeat): re-read, keep theirs.
                if time.monotonic() > deadline:
                    raise errors.Conflict(
                        f"could not save the rollout state of {self.service}: its ConfigMap kept changing"
                    ) from None
                time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - retry jitter, not security
                delay = min(delay * 2, 1.0)
