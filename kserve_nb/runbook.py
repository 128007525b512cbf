"""Small helpers for the release runbooks (``notebooks/03-release-runbook.ipynb`` and its
progressive variant ``notebooks/03b-progressive-runbook.ipynb``).

The runbook decides with :meth:`Comparison.verdict <kserve_nb.analysis.compare.Comparison.verdict>`
and acts only through the :class:`~kserve_nb.service.Service` façade. This module adds what a
runbook needs on top: pre-flight checks, the mapping from findings to one :class:`Decision`, the
:class:`Evidence` record written as a JSON sidecar, and the :class:`RunbookVerdict` the last cell
shows. Executed headless (``papermill``) the notebook is the release procedure; its JSON record is
what a CI job or an approver reads.
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kserve_nb import __version__, errors
from kserve_nb.history import actor
from kserve_nb.resources import now_rfc3339
from kserve_nb.splits import split_text

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from kserve_nb.analysis.compare import Comparison, Verdict
    from kserve_nb.rollout.runner import RolloutResult
    from kserve_nb.service import Service
    from kserve_nb.session import Session
    from kserve_nb.status import ServiceStatus

#: Version of the JSON record layout; bump when a field changes meaning.
RECORD_FORMAT = 1

PROMOTE, ROLLBACK, NONE = "promote", "rollback", "none"


def _plain(value: Any) -> Any:
    """``value`` as plain JSON: numpy scalars unwrapped, NaN/inf as None, containers recursed."""
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict, str)):
        try:
            value = value.item()
        except (ValueError, TypeError):
            pass
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else round(value, 6)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [_plain(row) for row in frame.to_dict(orient="records")]


# ---------------------------------------------------------------------- inputs and snapshots


def sample_inputs(n: int, path: str | Path | None = None) -> list[Any]:
    """``n`` test rows: from a JSON file (``{"instances": [...]}`` or a list), else iris rows.

    Rows are cycled to reach ``n`` so a small file still gives the requested number of requests.
    """
    if n < 1:
        raise errors.ValidationError(f"n_predictions must be at least 1, got {n}")
    if path is None:
        from kserve_nb.widgets.samples import iris_rows

        return iris_rows(n)
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise errors.ValidationError(f"cannot read test inputs from {path}: {err}") from err
    rows = data.get("instances") if isinstance(data, Mapping) else data
    if not isinstance(rows, list) or not rows:
        raise errors.ValidationError(f"{path} holds no rows: expected {{\"instances\": [[...], ...]}} or a list")
    return [rows[i % len(rows)] for i in range(n)]


def labelled_inputs(path: str | Path | None = None) -> tuple[list[Any], list[Any] | None]:
    """Test rows and their true labels (None when unknown), for test traffic that can be scored.

    From a JSON file ``{"instances": [...], "labels": [...]}`` (labels optional), else the iris
    data set with its classes (scikit-learn's copy when installed, else the rows that ship here).
    """
    if path is not None:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise errors.ValidationError(f"cannot read test inputs from {path}: {err}") from err
        rows = data.get("instances") if isinstance(data, Mapping) else data
        labels = data.get("labels") if isinstance(data, Mapping) else None
        if not isinstance(rows, list) or not rows:
            raise errors.ValidationError(f"{path} holds no rows: expected {{\"instances\": [[...], ...]}}")
        if labels is not None and (not isinstance(labels, list) or len(labels) != len(rows)):
            raise errors.ValidationError(f"{path}: 'labels' must be a list with one label per row")
        return rows, labels
    from kserve_nb.widgets import samples

    try:
        from sklearn.datasets import load_iris
    except ImportError:
        per_class = len(samples._BUILTIN) // 3
        return list(samples._BUILTIN), [c for c in range(3) for _ in range(per_class)]
    iris = load_iris()
    return [[float(x) for x in row] for row in iris.data], [int(t) for t in iris.target]


def status_snapshot(st: ServiceStatus | None) -> dict[str, Any] | None:
    """The release state as plain JSON (what ``kubectl get isvc`` and its traffic block say)."""
    if st is None:
        return None
    snapshot: dict[str, Any] = {
        "summary": st.summary(),
        "ready": st.ready_status,
        "url": st.url,
        "storageUri": st.storage_uri,
        "canaryTrafficPercent": st.canary_traffic_percent,
        "tagRouting": st.tag_routing,
        "prev": st.prev_percent,
        "latest": st.latest_percent,
        "prevRolledoutRevision": st.prev_revision,
        "latestReadyRevision": st.latest_ready_revision,
        "latestCreatedRevision": st.latest_created_revision,
        "latestRolledoutRevision": st.latest_rolledout_revision,
        "previousRolledoutRevision": st.previous_rolledout_revision,
        "traffic": [
            {"revisionName": e.revision, "percent": e.percent, "latestRevision": e.latest, "tag": e.tag}
            for e in st.traffic
        ],
        "failure": st.failure,
        "generation": st.generation,
        "observedGeneration": st.observed_generation,
    }
    if st.standard:  # Standard mode has sides instead of revisions
        snapshot["deploymentMode"] = st.deployment_mode
        snapshot["sides"] = [
            {"side": s.name, "deployment": s.deployment, "storageUri": s.storage_uri, "ready": s.ready,
             "percent": s.percent, "routed": s.routed}
            for s in st.sides
        ]
    return snapshot


def serving(svc: Service) -> pd.DataFrame:
    """Revisions that receive traffic right now, with their model (``revision, storageUri, percent``).

    Standard mode: the sides the route sends traffic to, ``revision`` naming the side's Deployment.
    """
    import pandas as pd

    st = svc.status()
    if st.standard:
        rows = [
            {"revision": s.deployment, "storageUri": s.storage_uri or "", "percent": s.routed}
            for s in st.sides
            if s.routed
        ]
        return pd.DataFrame(rows, columns=["revision", "storageUri", "percent"])
    revs = svc.revisions()
    return revs[revs["percent"] > 0][["revision", "storageUri", "percent"]].reset_index(drop=True)


def comparison_snapshot(cmp: Comparison | None) -> dict[str, Any] | None:
    """Summary, agreement and tests of a comparison as plain JSON."""
    if cmp is None:
        return None
    ag = cmp.agreement
    return {
        "baseline": cmp.baseline,
        "candidate": cmp.candidate,
        "kind": cmp.kind,
        "requests": int(len(cmp.results)),
        "summary": _records(cmp.summary),
        "agreement": {"rate": _plain(ag.rate), "pairs": ag.n_pairs, "mean_abs_delta": _plain(ag.mean_abs_delta)},
        "tests": _records(cmp.tests),
    }


def verdict_snapshot(verdict: Verdict | None) -> dict[str, Any] | None:
    """A :class:`~kserve_nb.analysis.compare.Verdict` as plain JSON."""
    if verdict is None:
        return None
    return {
        "recommendation": verdict.recommendation,
        "checks": [
            {"check": c.name, "passed": c.passed, "observed": _plain(c.observed), "threshold": _plain(c.threshold),
             "detail": c.detail}
            for c in verdict.checks
        ],
        "reasons": list(verdict.reasons),
    }


# ---------------------------------------------------------------------- pre-flight


def delete_service(svc: Service, timeout: float = 60.0) -> bool:
    """Delete ``svc`` if it exists and wait (bounded) until it is gone. True when it existed."""
    if not svc.exists():
        return False
    svc.delete()
    deadline = time.monotonic() + timeout
    while svc.exists():
        if time.monotonic() > deadline:
            raise errors.RolloutError(
                f"{svc.namespace}/{svc.name} was deleted but still exists after {timeout:.0f}s; "
                "check `%kserve status` and try again"
            )
        time.sleep(0.1)
    return True


def preflight(svc: Service, baseline_uri: str, candidate_uri: str) -> list[str]:
    """Reasons not to start a canary of ``candidate_uri`` on ``svc`` now (empty: go ahead).

    The runbook releases *over the declared baseline*: it refuses when another canary is in flight,
    when the service serves some other model than ``baseline_uri`` (the cell and the cluster
    disagree about where we are), or when the candidate already serves all traffic (nothing to do).
    """
    st = svc.status()
    live = serving(svc)
    uris = sorted(set(live["storageUri"]))
    problems = []
    if len(live) > 1:
        split = split_text(zip(live["revision"], live["percent"]))
        problems.append(f"a canary is already in flight ({split}): promote or roll it back first")
    elif uris == [candidate_uri]:
        problems.append(f"the candidate {candidate_uri} already serves 100% of {svc.name}: nothing to release")
    elif uris and uris != [baseline_uri]:
        problems.append(
            f"{svc.name} serves {', '.join(uris)}, not the declared baseline {baseline_uri}: "
            "re-run with baseline_uri set to what serves"
        )
    if not st.ready and not problems:
        problems.append(f"{svc.name} is not Ready ({st.failure or 'READY ' + str(st.ready_status)}): fix it first")
    return problems


# ---------------------------------------------------------------------- decision


@dataclass(frozen=True)
class Decision:
    """What the runbook does about the candidate, and why.

    Attributes
    ----------
    action:
        ``"promote"``, ``"rollback"`` or ``"none"`` (pre-flight refused to start).
    reasons:
        One line per reason: the failed checks or the failure for a rollback, the passed checks for
        a promotion, the pre-flight problems for ``none``.
    basis:
        ``"verdict"`` (the comparison decided), ``"failure"`` (the candidate failed before it could
        be compared) or ``"preflight"``.
    """

    action: str
    reasons: tuple[str, ...]
    basis: str

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reasons": list(self.reasons), "basis": self.basis}

    def __repr__(self) -> str:
        lines = [f"Decision: {self.action.upper()} (from the {self.basis})"]
        lines += [f"  - {r}" for r in self.reasons]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        color = {PROMOTE: "#1a7f37", ROLLBACK: "#cf222e"}.get(self.action, "#9a6700")
        items = "".join(f"<li>{html.escape(r)}</li>" for r in self.reasons)
        return (
            f'<div class="kserve-nb-decision"><b style="color:{color}">Decision: {self.action.upper()}</b> '
            f"(from the {html.escape(self.basis)})<ul>{items}</ul></div>"
        )


def failure_reason(err: BaseException, stage: str = "canary") -> str:
    """One line saying how the candidate failed, for the decision's reasons."""
    if stage == "traffic":
        return f"the test traffic could not be sent: {err}"
    if isinstance(err, errors.ValidationError):
        return f"the candidate was refused before anything was applied: {err}"
    if isinstance(err, errors.RolloutError):
        return f"the candidate revision did not become ready: {err}"
    return f"the canary could not be deployed: {err}"


def decide(
    verdict: Verdict | None, *, failure: str | None = None, blockers: Sequence[str] = ()
) -> Decision:
    """One decision from what the runbook found, most serious first.

    Pre-flight blockers mean nothing was started (``none``); a failed candidate (its revision never
    became ready, or it could not be called) is rolled back whatever the numbers say; otherwise the
    comparison's verdict decides.
    """
    if blockers:
        return Decision(NONE, tuple(blockers), "preflight")
    if failure:
        return Decision(ROLLBACK, (failure,), "failure")
    if verdict is None:
        return Decision(ROLLBACK, ("no comparison was made, so nothing supports a promotion",), "failure")
    return Decision(PROMOTE if verdict.promote else ROLLBACK, tuple(verdict.reasons), "verdict")


def decide_rollout(
    result: RolloutResult | None, *, failure: str | None = None, blockers: Sequence[str] = ()
) -> Decision:
    """The decision a progressive rollout reached (the autopilot already acted on it).

    Succeeded → promote, with the gates' evidence at the last check as reasons; RolledBack,
    Aborted or Failed → roll back, with the autopilot's reason and the failing evidence.
    """
    if blockers:
        return Decision(NONE, tuple(blockers), "preflight")
    if failure or result is None:
        return Decision(ROLLBACK, (failure or "the rollout did not run",), "failure")
    reason = result.reason or f"the rollout ended {result.phase}"
    gates = tuple(str(e) for e in result.evidence if str(e) not in reason)  # each statement once
    if result.ok:
        return Decision(PROMOTE, (f"every step passed: {reason}", *gates), "rollout")
    return Decision(ROLLBACK, (reason, *gates), "rollout")


def finish_rollout(svc: Service, result: RolloutResult | None, *, baseline_uri: str) -> str:
    """What is left to do after a rollout, in one line.

    The autopilot promotes and rolls back by itself; only a candidate that never became ready
    leaves the spec naming the broken model (the service is not Ready), so the baseline model is
    deployed again, as :func:`carry_out` does for a failed canary.
    """
    if result is None:
        return "nothing done: the rollout did not run"
    if result.ok:
        return f"promoted by the autopilot: {result.reason}"
    st = svc.status()
    if not st.ready:
        return f"{result.phase}: {result.reason}; baseline restored: {svc.deploy(baseline_uri).summary()}"
    return f"rolled back by the autopilot ({result.phase}): {result.reason}"


def carry_out(
    svc: Service, decision: Decision, *, before: ServiceStatus, baseline_uri: str
) -> str:
    """Act on ``decision`` through the façade; returns one line saying what was done.

    - promote: :meth:`Service.promote` (``canaryTrafficPercent`` removed).
    - rollback of a candidate that became ready: :meth:`Service.rollback` (``canaryTrafficPercent: 0``,
      KServe's own rollback; the candidate revision stays at 0% for inspection).
    - rollback of a candidate whose revision failed: traffic never left the baseline, but the spec
      still names the broken model and the service is not Ready, so the baseline model is deployed
      again (:meth:`Service.deploy`), which makes the service Ready on the baseline model.
    - rollback when nothing was applied (pre-flight of the storageUri refused it): nothing to undo.

    Standard mode: the candidate is a ``spec.canary[]`` entry beside an untouched stable, so a
    rollback removes it whether it became ready or not (:meth:`Service.rollback`).
    """
    if decision.action == NONE:
        return "nothing done: " + "; ".join(decision.reasons)
    now = svc.status()
    if now.standard:
        added = {c.name for c in now.canaries} - {c.name for c in before.canaries}
        if decision.action == PROMOTE:
            return svc.promote().summary()
        if not added:
            return f"nothing to undo: the candidate was never applied; {before.summary()}"
        return svc.rollback().summary()
    applied = now.latest_created_revision != before.latest_created_revision
    if decision.action == PROMOTE:
        return svc.promote().summary()
    if not applied:
        return f"nothing to undo: the candidate was never applied; {before.summary()}"
    candidate_ready = now.latest_ready_revision == now.latest_created_revision
    if candidate_ready:
        return svc.rollback().summary()
    return svc.deploy(baseline_uri).summary()


def check_outcome(
    svc: Service,
    decision: Decision,
    *,
    baseline_uri: str,
    candidate_uri: str,
    before_serving: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Whether the cluster is where the decision says it is, with that state, as plain JSON.

    promote: the candidate model alone serves 100% and the service is Ready. rollback: the baseline
    model alone serves 100% and the service is Ready. none: the same revisions serve as before.
    """
    st = svc.status()
    live = _records(serving(svc))
    if decision.action == NONE:
        expected = None
        ok = live == [_plain(dict(r)) for r in before_serving]
    else:
        expected = candidate_uri if decision.action == PROMOTE else baseline_uri
        ok = (
            st.ready
            and len(live) == 1
            and live[0]["storageUri"] == expected
            and live[0]["percent"] == 100
        )
    return {"expected_storageUri": expected, "serving": live, "ready": st.ready_status, "consistent": bool(ok)}


# ---------------------------------------------------------------------- evidence


@dataclass
class Evidence:
    """Everything the runbook saw and did, saved as a JSON record beside the notebook.

    Fill it as the runbook goes (``step``, ``before``, ``comparison``…), then :meth:`save`.
    """

    parameters: dict[str, Any]
    cluster: dict[str, Any]
    started: str = field(default_factory=now_rfc3339)
    steps: list[dict[str, Any]] = field(default_factory=list)
    preflight: list[str] = field(default_factory=list)
    before: dict[str, Any] | None = None
    canary: dict[str, Any] | None = None
    comparison: dict[str, Any] | None = None
    verdict: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    action: str | None = None
    after: dict[str, Any] | None = None
    outcome: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    finished: str | None = None
    #: The progressive variant: the plan, every step's event, every gate value and the outcome.
    rollout: dict[str, Any] | None = None
    runbook: str = "03-release-runbook"

    @classmethod
    def start(cls, session: Session, parameters: Mapping[str, Any]) -> Evidence:
        """A new record for a run with ``parameters`` on ``session``'s cluster."""
        ref = session.cluster.ref
        return cls(
            parameters=_plain(dict(parameters)),
            cluster={
                "banner": session.banner,
                "context": session.context,
                "server": ref.server,
                "namespace": session.namespace,
                "local": session.is_local,
            },
        )

    def step(self, name: str, detail: str) -> str:
        """Record one step; returns ``"name: detail"`` for the cell to show."""
        self.steps.append({"time": now_rfc3339(), "step": name, "detail": detail})
        return f"{name}: {detail}"

    def collect_history(self, svc: Service) -> None:
        """The service's release-history entries written since this run started."""
        from kserve_nb.history import History

        entries = History(svc.session.cluster, svc.name, svc.namespace).entries()
        self.history = [_plain(e) for e in entries if str(e.get("time", "")) >= self.started]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "runbook": self.runbook,
            "kserve_nb": __version__,
            "actor": actor(),
            "started": self.started,
            "finished": self.finished,
            "parameters": self.parameters,
            "cluster": self.cluster,
            "steps": self.steps,
            "preflight": self.preflight,
            "before": self.before,
            "canary": self.canary,
            "comparison": self.comparison,
            "verdict": self.verdict,
            "decision": self.decision,
            "action": self.action,
            "after": self.after,
            "outcome": self.outcome,
            "history": self.history,
            "rollout": self.rollout,
        }

    def save(self, path: str | Path | None) -> Path:
        """Write the record as JSON to ``path`` (default: ``records/`` in the kserve-nb home)."""
        self.finished = self.finished or now_rfc3339()
        if path is None:
            from kserve_nb.local.manager import default_state_dir

            stamp = self.started.replace(":", "").replace("-", "")
            svc = self.parameters.get("service", "service")
            ns = self.parameters.get("namespace", "default")
            path = default_state_dir() / "records" / f"{ns}.{svc}.{stamp}.json"
        out = Path(path).expanduser()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        return out.resolve()


# ---------------------------------------------------------------------- the verdict


_HEADLINES = {PROMOTE: "PROMOTED", ROLLBACK: "ROLLED BACK", NONE: "NO CHANGE"}


@dataclass(frozen=True)
class RunbookVerdict:
    """The last cell of the runbook: what was decided, what the cluster now serves, and why."""

    decision: Decision
    service: str
    namespace: str
    candidate_uri: str
    consistent: bool
    serving: tuple[tuple[str, str, int], ...]
    record_path: str | None = None

    @classmethod
    def from_evidence(cls, evidence: Evidence, decision: Decision, record_path: Path | None) -> RunbookVerdict:
        outcome = evidence.outcome or {}
        p = evidence.parameters
        return cls(
            decision=decision,
            service=str(p.get("service")),
            namespace=str(p.get("namespace")),
            candidate_uri=str(p.get("candidate_uri")),
            consistent=bool(outcome.get("consistent")),
            serving=tuple((s["revision"], s["storageUri"], int(s["percent"])) for s in outcome.get("serving", [])),
            record_path=str(record_path) if record_path else None,
        )

    @property
    def ok(self) -> bool:
        """True when the cluster ended in the state the decision claims."""
        return self.consistent

    @property
    def headline(self) -> str:
        if not self.consistent:
            return f"FAILED TO {self.decision.action.upper()}"
        return _HEADLINES[self.decision.action]

    def lines(self) -> list[str]:
        where = f"{self.namespace}/{self.service}"
        served = split_text(((f"{rev} ({uri})", pct) for rev, uri, pct in self.serving), empty="nothing")
        out = [f"RELEASE VERDICT: {self.headline}", f"{where} candidate {self.candidate_uri}", f"now serving: {served}"]
        if not self.consistent:
            out.append(
                "the cluster is NOT in the state this decision needs: check `%kserve status` before anything else"
            )
        out.append("why:")
        out += [f"  - {r}" for r in self.decision.reasons]
        if self.record_path:
            out.append(f"evidence: {self.record_path}")
        return out

    def __repr__(self) -> str:
        return "\n".join(self.lines())

    def _repr_html_(self) -> str:
        color = "#cf222e" if not self.consistent else {PROMOTE: "#1a7f37", ROLLBACK: "#bc4c00"}.get(
            self.decision.action, "#57606a"
        )
        head, *rest = self.lines()
        body = html.escape("\n".join(rest))
        return (
            f'<div class="kserve-nb-verdict" style="border:3px solid {color};padding:8px 12px;border-radius:6px">'
            f'<div style="font-size:20px;font-weight:bold;color:{color}">{html.escape(head)}</div>'
            f'<pre style="margin:6px 0 0 0">{body}</pre></div>'
        )

    def raise_if_failed(self) -> None:
        """Fail the run (papermill exits non-zero) when the cluster is not where the decision says."""
        if not self.consistent:
            raise errors.RolloutError(
                f"the runbook decided to {self.decision.action} {self.namespace}/{self.service} but the cluster "
                f"serves {self.serving}; see the record {self.record_path}"
            )
