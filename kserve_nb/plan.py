"""Dry runs: what a release step would change, and the traffic table it would settle into.

A plan applies the step's merge patch to the live object and runs KServe's own semantics
(:mod:`kserve_nb.semantics`) on a Knative state reconstructed from the live status, assuming the
new revision (if any) becomes ready. Nothing is sent to the cluster.

In Standard mode there are no revisions: the patched object goes through KServe's webhook rules
(:func:`kserve_nb.semantics_standard.validate`, a refusal is raised as the webhook would) and the
route weights KServe would program (``route_backends``) with every canary assumed ready.
"""

from __future__ import annotations

import copy
import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from kserve_nb import errors
from kserve_nb import resources as r
from kserve_nb import semantics as sem
from kserve_nb import semantics_standard as std
from kserve_nb.patches import merge_patch
from kserve_nb.splits import split_text
from kserve_nb.status import ServiceStatus


def reconstruct_state(isvc: Mapping[str, Any]) -> sem.KsvcState:
    """A Knative state consistent with a live InferenceService's status.

    Revision templates other than the latest are unknown, so only the latest carries the live
    template; that is all the semantics need to decide whether a change makes a new revision.
    """
    status = isvc.get("status") or {}
    predictor = (status.get("components") or {}).get("predictor") or {}
    name = (isvc.get("metadata") or {})["name"]
    latest_created = predictor.get("latestCreatedRevision")
    latest_ready = predictor.get("latestReadyRevision")
    ks = sem.KsvcState(uid="plan", generation=int(status.get("observedGeneration") or 0))
    if not latest_created:
        return ks
    failed = (r.condition(isvc, "Ready") or {}).get("reason") == "RevisionFailed"
    # Revisions in the route, and any that was ever rolled out, have been ready.
    ready_names = {e.get("revisionName") for e in predictor.get("traffic") or []} | {
        latest_ready,
        predictor.get("latestRolledoutRevision"),
        predictor.get("previousRolledoutRevision"),
    }
    for number in range(1, r.revision_number(latest_created) + 1):
        rev_name = r.revision_name(name, number)
        is_latest = rev_name == latest_created
        template = sem.revision_template(isvc) if is_latest else {"unknown": rev_name}
        ks.revisions.append(
            sem.Revision(
                name=rev_name,
                number=number,
                template=template,
                template_hash=sem.template_hash(template),
                created_at="",
                ready=rev_name in ready_names or (is_latest and rev_name == latest_ready),
                failed=is_latest and failed and rev_name != latest_ready,
            )
        )
    ks.latest_ready = latest_ready
    ks.spec_traffic = sem.desired_traffic(
        predictor_spec(isvc).get("canaryTrafficPercent"),
        predictor.get("latestRolledoutRevision"),
        r.tag_routing_enabled(isvc),
    )
    ks.status_traffic = copy.deepcopy(predictor.get("traffic"))
    ks.route_ready = True
    return ks


def predictor_spec(isvc: Mapping[str, Any]) -> Mapping[str, Any]:
    """``spec.predictor`` of an isvc dict (empty when absent)."""
    return (isvc.get("spec") or {}).get("predictor") or {}


@dataclass(frozen=True)
class Plan:
    """A dry run: the exact patch, the spec before/after, and the traffic before/after."""

    action: str
    patch: dict[str, Any]
    before: ServiceStatus
    after: ServiceStatus
    new_revision: str | None
    #: Standard mode: Deployments the step creates / deletes (e.g. a canary's, the old stable's).
    new_deployments: tuple[str, ...] = ()
    removed_deployments: tuple[str, ...] = ()

    @property
    def standard(self) -> bool:
        """Whether this plans a Standard-mode step (sides and Deployments, not revisions)."""
        return self.after.standard

    @property
    def changes(self) -> pd.DataFrame:
        """Changed fields as rows (field, before, after)."""
        rows = []
        for path, old, new in _diff(_release_fields(self.before.raw), _release_fields(self.after.raw)):
            rows.append({"field": path, "before": old, "after": new})
        return pd.DataFrame(rows, columns=["field", "before", "after"])

    @property
    def traffic(self) -> pd.DataFrame:
        """The traffic table before and after, side by side per revision/tag (Standard mode: per
        side — its Deployment, model, configured percent and the share the route would send it)."""
        rows = []
        if self.standard:
            for label, st in (("before", self.before), ("after", self.after)):
                for side in st.sides:
                    rows.append({"when": label, "side": side.name, "deployment": side.deployment,
                                 "storageUri": side.storage_uri or "", "percent": side.percent, "routed": side.routed})
            frame = pd.DataFrame(rows, columns=["when", "side", "deployment", "storageUri", "percent", "routed"])
            frame["routed"] = frame["routed"].astype("Int64")
            return frame
        for label, st in (("before", self.before), ("after", self.after)):
            for e in st.traffic:
                rows.append(
                    {"when": label, "revision": e.revision, "percent": e.percent, "latestRevision": e.latest,
                     "tag": e.tag or ""}
                )
        return pd.DataFrame(rows, columns=["when", "revision", "percent", "latestRevision", "tag"])

    @property
    def workloads(self) -> pd.DataFrame:
        """Standard mode: the Deployments KServe would keep after the step (name, side, model,
        replicas), every canary assumed ready; empty in Knative mode."""
        columns = ["deployment", "side", "storageUri", "replicas"]
        if not self.standard:
            return pd.DataFrame([], columns=columns)
        patched = self.after.raw
        ready = {c.name: True for c in self.after.canaries}
        return pd.DataFrame(
            [
                {"deployment": w.name, "side": w.variant if w.role == "canary" else "stable",
                 "storageUri": w.storage_uri or "", "replicas": w.replicas}
                for w in std.desired_workloads(patched, ready)
            ],
            columns=columns,
        )

    def summary(self) -> str:
        """One line: what would change and the split it would settle into."""
        if self.standard:
            made = "; ".join(
                x
                for x in (
                    "new Deployment " + ", ".join(self.new_deployments) if self.new_deployments else "",
                    "deletes " + ", ".join(self.removed_deployments) if self.removed_deployments else "",
                )
                if x
            ) or "no new Deployment"
            return (
                f"dry run of {self.action} on {self.before.namespace}/{self.before.name}: {made}; "
                f"traffic → {self.after._standard_split_text()} (canaries assumed ready)"
            )
        split = split_text(((e.revision, e.percent) for e in self.after.traffic), empty="no traffic yet")
        rev = f"new revision {self.new_revision}; " if self.new_revision else "no new revision; "
        return f"dry run of {self.action} on {self.before.namespace}/{self.before.name}: {rev}traffic → {split}"

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return f"<Plan {self.summary()}>"

    def _repr_html_(self) -> str:
        return (
            f"<div><b>{html.escape(self.summary())}</b>"
            f"<div>patch: <code>{html.escape(json.dumps(self.patch, sort_keys=True))}</code></div>"
            f"{self.changes.to_html(index=False, border=0)}{self.traffic.to_html(index=False, border=0, na_rep='')}"
            f"{self.workloads.to_html(index=False, border=0) if self.standard else ''}</div>"
        )


def _release_fields(isvc: Mapping[str, Any]) -> dict[str, Any]:
    meta = isvc.get("metadata") or {}
    return {"annotations": meta.get("annotations") or {}, "spec": isvc.get("spec") or {}}


def _diff(a: Any, b: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            if key == r.LAST_APPLIED_ANNOTATION:
                continue
            out += _diff(a.get(key), b.get(key), f"{path}.{key}" if path else str(key))
        return out
    return [] if a == b else [(path, a, b)]


def plan(
    action: str, isvc: Mapping[str, Any], patch: Mapping[str, Any], before: ServiceStatus | None = None
) -> Plan:
    """Predict the settled result of merge-patching ``isvc`` with ``patch``.

    ``before`` is the live status as read (in Standard mode it carries the live route); parsed
    from ``isvc`` when not given.
    """
    before = before or ServiceStatus.from_isvc(isvc)
    patched = merge_patch(dict(isvc), {k: v for k, v in patch.items() if k != "status"})
    meta = patched.setdefault("metadata", {})
    meta.pop("resourceVersion", None)
    if before.standard:
        return _plan_standard(action, isvc, patched, patch, before)
    ks = reconstruct_state(isvc)
    known = ks.latest_created.name if ks.latest_created else None
    result = sem.reconcile(patched, ks, "")
    new = ks.latest_created.name if ks.latest_created and ks.latest_created.name != known else None
    if new:
        ks.mark_ready(new)
    for _ in range(sem.MAX_PASSES):
        result = sem.reconcile({**patched, "status": result.status}, ks, "")
    after = ServiceStatus.from_isvc({**patched, "status": result.status})
    return Plan(action, dict(patch), before, after, new)


def _plan_standard(
    action: str, isvc: Mapping[str, Any], patched: dict[str, Any], patch: Mapping[str, Any], before: ServiceStatus
) -> Plan:
    """A Standard-mode plan: the webhook's verdict on the patched object, then the route KServe
    would program with every canary ready (it routes only ready canaries; a dry run cannot know
    whether a model will load)."""
    defaulted = std.default_mode_annotation(patched)
    if defaulted:
        patched = merge_patch(patched, defaulted)
    refusal = std.validate(patched, isvc)
    if refusal:
        raise errors.ValidationError(f"KServe would refuse this change ({refusal}); nothing was applied")
    status = copy.deepcopy(dict(patched.get("status") or {}))
    entries = std.canaries(patched)
    if entries:
        status["canaryStatuses"] = [
            {"name": std.canary_name(e), "ready": True, "trafficPercent": int(e.get("trafficPercent") or 0)}
            for e in entries
        ]
    else:
        status.pop("canaryStatuses", None)
    ready = {std.canary_name(e): True for e in entries}
    route = [(b.service, b.weight) for b in std.route_backends(patched, ready)]
    after = ServiceStatus.from_isvc({**patched, "status": status}, route=route)
    was = [s.deployment for s in before.sides]
    now = [s.deployment for s in after.sides]
    return Plan(
        action, dict(patch), before, after, None,
        new_deployments=tuple(d for d in now if d not in was),
        removed_deployments=tuple(d for d in was if d not in now),
    )
