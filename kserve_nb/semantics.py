"""KServe's Knative-mode canary semantics as a pure function (shared by the local cluster and dry runs).

One InferenceService predictor owns one emulated Knative Service (Configuration + Route), kept in
:class:`KsvcState`. :func:`reconcile` plays one KServe controller pass followed by Knative's own
reconciliation and returns the InferenceService status KServe would write. It is pure: the caller
feeds in revision readiness (from the model-server processes) and persists the returned state.

The rules, and the KServe and Knative code they come from:

- KServe's ``createKnativeService`` (the ksvc reconciler): desired traffic from
  ``canaryTrafficPercent`` (P) and ``latestRolledoutRevision`` (R); ``latest`` tag only with tag
  routing, ``prev`` tag always.
- Knative: a new revision only when the revision template changes; the ``latestRevision`` target
  resolves to the *latest ready* revision; a named target must be ready or the route keeps its old
  programming; each percent 0..100 and the sum 100, else the ksvc update is rejected whole.
- KServe's ``PropagateStatus`` (the InferenceService status): the promotion rule and the rollback
  rule, run until stable, which gives the two-pass rollback after a promotion.
- URLs and tag URLs, conditions, ``observedGeneration`` = the ksvc generation.
- KServe's ServingRuntime lookup (:mod:`kserve_nb.servingruntimes`) before anything else: an
  unknown or unsuitable runtime leaves the ksvc alone and fails ``modelStatus`` (InvalidSpec).
- ``serving.kserve.io/stop: "true"``: KServe deletes the ksvc (its revisions and pods go with it)
  and writes a cleared status with ``Stopped=True``; removing it creates the ksvc again.
- The events KServe's controller records (:attr:`ReconcileResult.events`,
  :func:`readiness_events`).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from kserve_nb import conditions
from kserve_nb import resources as r
from kserve_nb.servingruntimes import RuntimeFailure, select_runtime

# A rollback after a promotion needs two passes (rolled-out moves back, then the prev target
# follows it); a third pass proves the state is stable. More than that would be a bug.
MAX_PASSES = 4

INFO_CONDITIONS = frozenset(
    {
        "PredictorRouteReady",
        "PredictorConfigurationReady",
        "LatestDeploymentReady",
        "RoutesReady",
        "Stopped",
    }
)


STOP_ANNOTATION = r.STOP_ANNOTATION
#: KServe's ``constants.DefaultMinReplicas``: the min-scale of a predictor without ``minReplicas``.
DEFAULT_MIN_REPLICAS = 1
KPA_CLASS = "kpa.autoscaling.knative.dev"
CLASS_ANNOTATION = "autoscaling.knative.dev/class"
MIN_SCALE_ANNOTATION = r.MIN_SCALE_ANNOTATION
MAX_SCALE_ANNOTATION = r.MAX_SCALE_ANNOTATION
METRIC_ANNOTATION = "autoscaling.knative.dev/metric"
TARGET_ANNOTATION = "autoscaling.knative.dev/target"


@dataclass
class Revision:
    """One emulated Knative revision of the predictor."""

    name: str
    number: int
    template: dict[str, Any]
    template_hash: str
    created_at: str
    ready: bool = False  # the Revision's Ready condition has been True
    failed: bool = False  # failed before ever becoming ready (e.g. the model could not load)
    message: str | None = None
    pod: dict[str, Any] | None = None  # name and creation time of its pod while it is live

    @property
    def storage_uri(self) -> str | None:
        return storage_uri_of(self.template.get("predictor") or {})


@dataclass
class KsvcState:
    """The emulated Knative Service of one InferenceService predictor (persisted by the caller)."""

    uid: str
    generation: int = 0
    revisions: list[Revision] = field(default_factory=list)
    latest_ready: str | None = None
    spec_traffic: list[dict[str, Any]] = field(default_factory=list)
    status_traffic: list[dict[str, Any]] | None = None
    route_ready: bool = False
    route_reason: str | None = None
    route_message: str | None = None

    # ---- (de)serialisation for the store's private table
    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KsvcState:
        data = dict(data)
        revisions = [Revision(**rev) for rev in data.pop("revisions", [])]
        return cls(revisions=revisions, **data)

    def delete(self) -> None:
        """The ksvc is deleted (its revisions with it): what is left is a fresh, empty state."""
        fresh = KsvcState(uid=self.uid)
        for name in ("generation", "revisions", "latest_ready", "spec_traffic", "status_traffic",
                     "route_ready", "route_reason", "route_message"):
            setattr(self, name, getattr(fresh, name))

    # ---- lookups
    @property
    def latest_created(self) -> Revision | None:
        return self.revisions[-1] if self.revisions else None

    def revision(self, name: str) -> Revision | None:
        for rev in self.revisions:
            if rev.name == name:
                return rev
        return None

    # ---- readiness events (Knative's Configuration bookkeeping)
    def mark_ready(self, name: str) -> bool:
        """Record that revision ``name`` became ready. Returns True when anything changed."""
        rev = self.revision(name)
        if rev is None or rev.failed:
            return False
        changed = not rev.ready
        rev.ready = True
        rev.message = None
        # Knative advances latestReadyRevisionName only when the latest *created* revision is ready.
        if self.latest_created is rev and self.latest_ready != name:
            self.latest_ready = name
            changed = True
        return changed

    def mark_failed(self, name: str, message: str) -> bool:
        """Record that revision ``name`` failed before becoming ready. Returns True if it changed."""
        rev = self.revision(name)
        if rev is None or rev.ready or (rev.failed and rev.message == message):
            return False
        rev.failed = True
        rev.message = message
        return True


@dataclass
class Settings:
    """Cluster-wide knobs that shape URLs (Knative's config-domain)."""

    domain: str = r.DEFAULT_DOMAIN


# --------------------------------------------------------------------------- template


def storage_uri_of(predictor: Mapping[str, Any]) -> str | None:
    """The storageUri of a predictor spec, new (``model``) or legacy framework form."""
    model = predictor.get("model")
    if isinstance(model, Mapping) and model.get("storageUri"):
        return str(model["storageUri"])
    for value in predictor.values():
        if isinstance(value, Mapping) and value.get("storageUri"):
            return str(value["storageUri"])
    return None


def model_format_of(predictor: Mapping[str, Any]) -> str | None:
    """The model format name of a predictor spec (``model.modelFormat.name``)."""
    model = predictor.get("model")
    if isinstance(model, Mapping):
        fmt = model.get("modelFormat")
        if isinstance(fmt, Mapping) and fmt.get("name"):
            return str(fmt["name"])
    return None


def revision_template(isvc: Mapping[str, Any]) -> dict[str, Any]:
    """What KServe puts in the Knative revision template, canonicalised.

    The predictor spec (without ``canaryTrafficPercent``, which only shapes the traffic block) plus
    the isvc's labels and every annotation KServe copies into the template. A change in any of
    them makes Knative create a new revision; changing only the percent does not.
    """
    meta = isvc.get("metadata") or {}
    predictor = copy.deepcopy(dict((isvc.get("spec") or {}).get("predictor") or {}))
    predictor.pop("canaryTrafficPercent", None)
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if k not in r.TEMPLATE_ANNOTATION_DISALLOWED
    }
    return {"annotations": annotations, "labels": dict(meta.get("labels") or {}), "predictor": predictor}


def template_hash(template: Mapping[str, Any]) -> str:
    """Stable hash of a template: a Knative revision's, or (Standard mode) a Deployment's pod template."""
    blob = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


# --------------------------------------------------------------------------- traffic


def desired_traffic(
    canary_percent: Any, rolled_out: str | None, tag_routing: bool
) -> list[dict[str, Any]]:
    """The ksvc ``spec.traffic`` KServe writes (its ``createKnativeService``)."""
    latest: dict[str, Any] = {"latestRevision": True}
    if tag_routing:
        latest["tag"] = "latest"
    if canary_percent is not None and rolled_out:
        pct = canary_percent
        targets = [{**latest, "percent": pct}]
        if isinstance(pct, int) and pct < 100:
            targets.append(
                {"tag": "prev", "revisionName": rolled_out, "latestRevision": False, "percent": 100 - pct}
            )
        return targets
    return [{**latest, "percent": 100}]


def validate_traffic(targets: Sequence[Mapping[str, Any]]) -> str | None:
    """Knative's route validation of ``spec.traffic``; the error message, or None when valid.

    As ``validateTrafficList`` + ``FieldError.Error()``: every target's bounds and the sum are
    checked, equal messages merge their paths, and the lines are sorted by message.
    """
    found: dict[str, list[str]] = {}
    total = 0
    for i, target in enumerate(targets):
        pct = target.get("percent")
        path = f"spec.traffic[{i}].percent"
        if not isinstance(pct, int) or isinstance(pct, bool):
            found.setdefault(f"invalid value: {pct!r}", []).append(path)
            continue
        if pct < 0 or pct > 100:
            found.setdefault(f"expected 0 <= {pct} <= 100", []).append(path)
        total += pct
    if total != 100:
        found.setdefault(f"Traffic targets sum to {total}, want 100", []).append("spec.traffic")
    if not found:
        return None
    lines = [f"{message}: {', '.join(sorted(paths))}" for message, paths in sorted(found.items())]
    return (
        'fails to reconcile knative service: admission webhook "validation.webhook.serving.knative.dev" '
        "denied the request: validation failed: " + "\n".join(lines)
    )


def force_stop(isvc: Mapping[str, Any]) -> bool:
    """KServe's ``GetForceStopRuntime``: the stop annotation is "true" (any case)."""
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(STOP_ANNOTATION, "")).lower() == "true"


def min_scale(template: Mapping[str, Any]) -> int:
    """The ``autoscaling.knative.dev/min-scale`` a revision template gets (``minReplicas``, default 1)."""
    value = (template.get("predictor") or {}).get("minReplicas")
    return value if isinstance(value, int) and not isinstance(value, bool) else DEFAULT_MIN_REPLICAS


def autoscaling_annotations(template: Mapping[str, Any]) -> dict[str, str]:
    """The revision template annotations KServe sets (``SetAutoScalingAnnotations``).

    The class (KPA unless the isvc names one), ``target`` from ``scaleTarget``, ``metric`` from
    ``scaleMetric``, ``min-scale`` from ``minReplicas`` (1 when unset) and ``max-scale`` from a
    non-zero ``maxReplicas``. They are derived from the template, so they never make a revision.
    """
    predictor = template.get("predictor") or {}
    annotations = template.get("annotations") or {}
    out = {CLASS_ANNOTATION: str(annotations.get(CLASS_ANNOTATION) or KPA_CLASS)}
    if predictor.get("scaleTarget") is not None:
        out[TARGET_ANNOTATION] = str(predictor["scaleTarget"])
    if predictor.get("scaleMetric") is not None:
        out[METRIC_ANNOTATION] = str(predictor["scaleMetric"])
    out[MIN_SCALE_ANNOTATION] = str(min_scale(template))
    if predictor.get("maxReplicas"):
        out[MAX_SCALE_ANNOTATION] = str(predictor["maxReplicas"])
    return out


def resolve_route(ks: KsvcState, isvc_name: str, namespace: str, settings: Settings) -> None:
    """Knative's route reconciler: pin each target to a ready revision, or keep the old programming."""
    entries = []
    for target in ks.spec_traffic:
        if target.get("latestRevision"):
            rev_name = ks.latest_ready
            if rev_name is None:
                _route_not_ready(
                    ks,
                    "RevisionMissing",
                    f'Configuration "{r.predictor_name(isvc_name)}" is waiting for a Revision to become ready.',
                )
                return
        else:
            rev_name = target.get("revisionName")
            rev = ks.revision(rev_name) if rev_name else None
            if rev is None or not rev.ready:
                _route_not_ready(
                    ks, "RevisionMissing", f'Revision "{rev_name}" referenced in traffic not found.'
                )
                return
        entry: dict[str, Any] = {
            "latestRevision": bool(target.get("latestRevision")),
            "percent": target["percent"],
            "revisionName": rev_name,
        }
        if target.get("tag"):
            entry["tag"] = target["tag"]
            entry["url"] = "http://" + r.tag_host(target["tag"], isvc_name, namespace, settings.domain)
        entries.append(entry)
    ks.status_traffic = entries
    ks.route_ready, ks.route_reason, ks.route_message = True, None, None


def _route_not_ready(ks: KsvcState, reason: str, message: str) -> None:
    # Knative keeps serving the previous programming (status.traffic unchanged).
    ks.route_ready, ks.route_reason, ks.route_message = False, reason, message


# --------------------------------------------------------------------------- status


def _cond(ctype: str, status: str, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    return conditions.make(ctype, status, reason, message, INFO_CONDITIONS)


_combine = conditions.combine


def ksvc_conditions(ks: KsvcState, isvc_name: str) -> dict[str, dict[str, Any]]:
    """The emulated ksvc's ConfigurationsReady, RoutesReady and Ready conditions."""
    latest = ks.latest_created
    if latest is None:
        config = _cond("ConfigurationsReady", "Unknown")
    elif latest.failed:
        config = _cond(
            "ConfigurationsReady",
            "False",
            "RevisionFailed",
            f'Revision "{latest.name}" failed with message: {latest.message}.',
        )
    elif ks.latest_ready == latest.name:
        config = _cond("ConfigurationsReady", "True")
    elif ks.latest_ready is None:
        config = _cond(
            "ConfigurationsReady",
            "Unknown",
            "RevisionMissing",
            f'Configuration "{r.predictor_name(isvc_name)}" is waiting for a Revision to become ready.',
        )
    else:
        config = _cond("ConfigurationsReady", "Unknown")
    if ks.route_ready:
        route = _cond("RoutesReady", "True")
    else:
        route = _cond("RoutesReady", "Unknown", ks.route_reason, ks.route_message)
    ready = _cond("Ready", *_combine(config, route))
    return {"ConfigurationsReady": config, "RoutesReady": route, "Ready": ready}


def ksvc_status(
    ks: KsvcState, isvc_name: str, ns: str, settings: Settings,
    old_conditions: Sequence[Mapping[str, Any]], now: str,
) -> dict[str, Any]:
    """The emulated Knative Service's ``status`` (what ``kubectl get ksvc`` shows)."""
    conds = ksvc_conditions(ks, isvc_name)
    # Dependents of the ksvc's Ready: no Info severity there (unlike the isvc's copies).
    fresh = [{k: v for k, v in c.items() if k != "severity"}
             for c in (conds["ConfigurationsReady"], conds["Ready"], conds["RoutesReady"])]
    out: dict[str, Any] = {
        "observedGeneration": ks.generation,
        "conditions": _merge_conditions(list(old_conditions), fresh, now),
    }
    if ks.latest_created is not None:
        out["latestCreatedRevisionName"] = ks.latest_created.name
    if ks.latest_ready:
        out["latestReadyRevisionName"] = ks.latest_ready
    if ks.status_traffic is not None:
        out["url"] = "http://" + r.predictor_host(isvc_name, ns, settings.domain)
        out["address"] = {"url": "http://" + r.cluster_local_host(r.predictor_name(isvc_name), ns)}
        out["traffic"] = copy.deepcopy(ks.status_traffic)
    return out


def propagate_status(
    predictor: dict[str, Any], ks: KsvcState, ksvc_ready: bool, settings: Settings, name: str, ns: str
) -> None:
    """KServe's ``PropagateStatus`` of the ksvc status into ``status.components.predictor``."""
    latest_created = ks.latest_created.name if ks.latest_created else None
    if latest_created:
        predictor["latestCreatedRevision"] = latest_created
    traffic = ks.status_traffic or []
    per_revision: dict[str, int] = {}
    for entry in traffic:
        per_revision[entry["revisionName"]] = per_revision.get(entry["revisionName"], 0) + entry["percent"]
    for entry in traffic:
        if not (entry["revisionName"] == ks.latest_ready and entry.get("latestRevision")):
            continue
        rolled = predictor.get("latestRolledoutRevision") or ""
        if rolled != ks.latest_ready:
            if entry["percent"] == 100:  # promotion rule
                _set_or_drop(predictor, "previousRolledoutRevision", rolled)
                predictor["latestRolledoutRevision"] = ks.latest_ready
        elif (
            ks.latest_ready == latest_created
            and entry["percent"] < 100
            and per_revision.get(entry["revisionName"]) == 100
            and predictor.get("previousRolledoutRevision")
        ):  # rollback rule: the split is over one revision, fall back to the previous one
            predictor["latestRolledoutRevision"] = predictor["previousRolledoutRevision"]
    if ks.latest_ready:
        predictor["latestReadyRevision"] = ks.latest_ready
    if ksvc_ready:
        predictor["url"] = "http://" + r.predictor_host(name, ns, settings.domain)
        predictor["address"] = {"url": "http://" + r.cluster_local_host(r.predictor_name(name), ns)}
    if ks.status_traffic is not None:
        predictor["traffic"] = copy.deepcopy(ks.status_traffic)


def _set_or_drop(obj: dict[str, Any], key: str, value: str) -> None:
    # omitempty: an empty string is absent from the JSON
    if value:
        obj[key] = value
    else:
        obj.pop(key, None)


def model_status(ks: KsvcState) -> dict[str, Any]:
    """``status.modelStatus`` following the latest created revision (``PropagateModelStatus``)."""
    latest = ks.latest_created
    if latest is not None and latest.failed:
        return {
            "transitionStatus": "BlockedByFailedLoad",
            "states": {"activeModelState": "FailedToLoad", "targetModelState": "FailedToLoad"},
            "lastFailureInfo": {"reason": "ModelLoadFailed", "message": latest.message or "", "exitCode": 1},
            "copies": {"failedCopies": 1, "totalCopies": 1},
        }
    if latest is not None and latest.ready and ks.latest_ready == latest.name:
        return {
            "transitionStatus": "UpToDate",
            "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
            "copies": {"failedCopies": 0, "totalCopies": 1},
        }
    return {
        "transitionStatus": "InProgress",
        "states": {"activeModelState": "Pending", "targetModelState": "Loading"},
        "copies": {"failedCopies": 0, "totalCopies": 1},
    }


_merge_conditions = conditions.merge


# --------------------------------------------------------------------------- the pass


@dataclass
class ReconcileResult:
    """The status KServe would write, whether the emulated ksvc changed, and what to record.

    ``error`` is the reconcile error (KServe's controller logs it and records it as a Warning
    ``InternalError`` event, which ``events`` holds: dicts of ``type``, ``reason``, ``message``).
    ``stopped``: the ksvc is deleted (stop annotation); its revisions are gone from the state.
    """

    status: dict[str, Any]
    ksvc_changed: bool
    error: str | None = None
    events: list[dict[str, str]] = field(default_factory=list)
    stopped: bool = False


def _event(etype: str, reason: str, message: str) -> dict[str, str]:
    return {"type": etype, "reason": reason, "message": message}


def readiness_events(old: Mapping[str, Any] | None, new: Mapping[str, Any], name: str) -> list[dict[str, str]]:
    """The events KServe's ``updateStatus`` records when a status write moves Ready.

    True → False: Warning ``InferenceServiceNotReady`` naming every False condition; anything
    else → True: Normal ``InferenceServiceReady``.
    """
    def ready(status: Mapping[str, Any] | None) -> str | None:
        for cond in (status or {}).get("conditions") or []:
            if cond.get("type") == "Ready":
                return str(cond.get("status"))
        return None

    was, now = ready(old), ready(new)
    if was == "True" and now == "False":
        failing = ", ".join(str(c.get("type")) for c in new.get("conditions") or [] if c.get("status") == "False")
        return [_event("Warning", "InferenceServiceNotReady",
                       f"InferenceService [{name}] is no longer Ready because of: {failing}")]
    if was != "True" and now == "True":
        return [_event("Normal", "InferenceServiceReady", f"InferenceService [{name}] is Ready")]
    return []


def reconcile(
    isvc: Mapping[str, Any], ks: KsvcState, now: str, settings: Settings | None = None
) -> ReconcileResult:
    """One KServe + Knative reconciliation of ``isvc``; mutates ``ks`` and returns the new status.

    ``now`` is the RFC 3339 time used for new revisions and condition transitions.
    """
    settings = settings or Settings()
    meta = isvc.get("metadata") or {}
    name, ns = meta["name"], meta.get("namespace", "default")
    status = copy.deepcopy(dict(isvc.get("status") or {}))
    components = status.setdefault("components", {})
    predictor = components.setdefault("predictor", {})
    mode = r.deployment_mode(isvc)
    if mode not in r.KNATIVE_MODES:
        return _unsupported_mode(status, mode, now)
    status["deploymentMode"] = "Knative"

    spec_predictor = (isvc.get("spec") or {}).get("predictor") or {}
    model = spec_predictor.get("model")
    if isinstance(model, Mapping):
        # reconcileModel runs before the ksvc is touched: without a runtime nothing else happens.
        choice = select_runtime(model, multi_node=spec_predictor.get("workerSpec") is not None)
        if isinstance(choice, RuntimeFailure):
            return _runtime_failed(_without_empty_components(status), choice, now)
        status["clusterServingRuntimeName"] = choice.name
        status.pop("servingRuntimeName", None)
    if force_stop(isvc):
        return _stopped(_without_empty_components(status), ks, now)

    canary = spec_predictor.get("canaryTrafficPercent")
    tag_routing = r.tag_routing_enabled(isvc)
    template = revision_template(isvc)
    thash = template_hash(template)
    changed = False
    error = None

    for _ in range(MAX_PASSES):
        traffic = desired_traffic(canary, predictor.get("latestRolledoutRevision"), tag_routing)
        invalid = validate_traffic(traffic)
        if invalid:
            # reconcileKnativeDeployment wraps the ksvc reconciler's error.
            error = "fails to reconcile predictor: " + invalid
            break  # the ksvc update is rejected whole: no new revision, old traffic keeps serving
        pass_changed = False
        latest = ks.latest_created
        if latest is None or latest.template_hash != thash:
            number = latest.number + 1 if latest else 1
            ks.revisions.append(
                Revision(r.revision_name(name, number), number, template, thash, now)
            )
            pass_changed = True
        if traffic != ks.spec_traffic:
            ks.spec_traffic = traffic
            pass_changed = True
        if pass_changed:
            ks.generation += 1
            changed = True
        resolve_route(ks, name, ns, settings)
        before = (predictor.get("latestRolledoutRevision"), predictor.get("previousRolledoutRevision"))
        kconds = ksvc_conditions(ks, name)
        propagate_status(predictor, ks, kconds["Ready"]["status"] == "True", settings, name, ns)
        after = (predictor.get("latestRolledoutRevision"), predictor.get("previousRolledoutRevision"))
        if after == before and not pass_changed:
            break

    kconds = ksvc_conditions(ks, name)
    if error:
        predictor_ready = _cond("PredictorReady", "False", "ReconcileFailed", error)
    else:
        predictor_ready = _cond("PredictorReady", *_combine(kconds["Ready"]))
    conditions = [
        predictor_ready,
        _cond("PredictorRouteReady", *_combine(kconds["RoutesReady"])),
        _cond("PredictorConfigurationReady", *_combine(kconds["ConfigurationsReady"])),
        _cond("RoutesReady", *_combine(kconds["RoutesReady"])),
        _cond("LatestDeploymentReady", *_combine(kconds["ConfigurationsReady"])),
        _cond("Stopped", "False"),
    ]
    if predictor.get("url"):
        status["url"] = "http://" + r.service_host(name, ns, settings.domain)
        status["address"] = {"url": "http://" + r.cluster_local_host(name, ns)}
        ingress = _cond("IngressReady", "True")
    else:
        ingress = _cond(
            "IngressReady", "Unknown", "PredictorIngressNotCreated", "Predictor ingress not created"
        )
    conditions.append(ingress)
    conditions.append(_cond("Ready", *_combine(predictor_ready, ingress)))
    status["conditions"] = _merge_conditions(status.get("conditions") or [], conditions, now)
    status["modelStatus"] = model_status(ks)
    status["observedGeneration"] = ks.generation
    events = [_event("Warning", "InternalError", error)] if error else []
    return ReconcileResult(status, changed, error, events)


def _without_empty_components(status: dict[str, Any]) -> dict[str, Any]:
    # The pass above starts a predictor component; KServe has none until the ksvc reports one.
    if status.get("components") == {"predictor": {}}:
        del status["components"]
    return status


def _runtime_failed(status: dict[str, Any], failure: RuntimeFailure, now: str) -> ReconcileResult:
    """No runtime: KServe fails ``modelStatus`` (InvalidSpec) and leaves the ksvc and conditions alone."""
    conditions = [dict(c) for c in status.get("conditions") or []]
    present = {c.get("type") for c in conditions}
    if "Ready" not in present:  # InitializeConditions: Ready and its dependents start Unknown
        conditions += [_cond(t, "Unknown") for t in ("IngressReady", "PredictorReady", "Ready") if t not in present]
    status["conditions"] = _merge_conditions(status.get("conditions") or [], conditions, now)
    model = dict(status.get("modelStatus") or {})
    model["transitionStatus"] = "InvalidSpec"
    states = dict(model.get("states") or {"activeModelState": ""})
    states["targetModelState"] = "FailedToLoad"
    model["states"] = states
    model["lastFailureInfo"] = {"reason": failure.reason, "message": failure.message}
    status["modelStatus"] = model
    return ReconcileResult(status, False, failure.error, [_event("Warning", "InternalError", failure.error)])


def _stopped(status: dict[str, Any], ks: KsvcState, now: str) -> ReconcileResult:
    """The stop annotation: the ksvc is deleted and the status cleared down to ``Stopped``.

    KServe's predictor clears the whole status once (keeping ``deploymentMode``) and sets
    PredictorReady False/Stopped; its controller adds ``Stopped=True`` and the ingress reconciler
    IngressReady False/Stopped, so Ready is False/Stopped. An isvc already stopped keeps its status.
    """
    changed = bool(ks.revisions) or ks.generation > 0
    ks.delete()
    old = [dict(c) for c in status.get("conditions") or []]
    already = any(c.get("type") == "PredictorReady" and c.get("status") == "False" and c.get("reason") == "Stopped"
                  for c in old)
    if not already:
        runtime = status.get("clusterServingRuntimeName")
        status = {"deploymentMode": status.get("deploymentMode"), "modelStatus": {"transitionStatus": ""}}
        if runtime:
            status["clusterServingRuntimeName"] = runtime  # reconcileModel sets it again on every pass
        old = []
    predictor_ready = _cond("PredictorReady", "False", "Stopped")
    ingress = _cond("IngressReady", "False", "Stopped")
    ready = _cond("Ready", *_combine(predictor_ready, ingress))
    conditions = [predictor_ready, ingress, _cond("Stopped", "True"), ready]
    status["conditions"] = _merge_conditions(old, conditions, now)
    return ReconcileResult(status, changed, stopped=True)


def _unsupported_mode(status: dict[str, Any], mode: str, now: str) -> ReconcileResult:
    # These are the Knative-mode rules; say so in status rather than pretend. The local controller
    # hands Standard isvcs to kserve_nb.semantics_standard, so only other modes (ModelMesh) get here.
    if mode == "Standard":
        message = (
            "deployment mode 'Standard' is reconciled by the Standard-mode rules "
            "(kserve_nb.semantics_standard, spec.canary[]), not by the Knative rules"
        )
    else:
        message = (
            f"deployment mode {mode!r} is not emulated by the kserve-nb local cluster; it emulates "
            "KServe's Knative (Serverless) mode, where canaryTrafficPercent applies, and its Standard "
            "(RawDeployment) mode, where spec.canary[] applies"
        )
    conditions = [
        _cond("PredictorReady", "False", "UnsupportedDeploymentMode", message),
        _cond("Ready", "False", "UnsupportedDeploymentMode", message),
    ]
    status["deploymentMode"] = mode
    status["conditions"] = _merge_conditions(status.get("conditions") or [], conditions, now)
    return ReconcileResult(status, False, message)


# --------------------------------------------------------------------------- views


def live_revisions(ks: KsvcState, status: Mapping[str, Any]) -> list[Revision]:
    """Revisions that need a running model server.

    Those with traffic or a tag in the route, those the route still references at 0% while their
    min-scale is above zero (Knative keeps a routed revision at min-scale: a pinned canary keeps
    its pod), plus the latest created revision while it is still on its way to ready (it must run
    to become ready). Knative scales unrouted revisions away, whatever their min-scale.
    """
    predictor = ((status.get("components") or {}).get("predictor")) or {}
    wanted = set()
    for entry in predictor.get("traffic") or []:
        rev = ks.revision(entry["revisionName"])
        if entry.get("percent", 0) > 0 or entry.get("tag") or (rev is not None and min_scale(rev.template) > 0):
            wanted.add(entry["revisionName"])
    latest = ks.latest_created
    if latest is not None and not latest.ready and not latest.failed:
        wanted.add(latest.name)
    return [rev for rev in ks.revisions if rev.name in wanted and not rev.failed]


def routes(
    status: Mapping[str, Any], name: str, ns: str, settings: Settings | None = None
) -> dict[str, list[tuple[str, str, int]]]:
    """Ingress routes for one isvc: host → weighted ``(namespace, revision, percent)`` targets."""
    settings = settings or Settings()
    predictor = ((status.get("components") or {}).get("predictor")) or {}
    traffic = predictor.get("traffic") or []
    if not traffic:
        return {}
    split: dict[str, int] = {}
    for entry in traffic:
        split[entry["revisionName"]] = split.get(entry["revisionName"], 0) + int(entry["percent"])
    weighted = [(ns, rev, pct) for rev, pct in split.items()]
    table = {
        r.service_host(name, ns, settings.domain): weighted,
        r.predictor_host(name, ns, settings.domain): weighted,
    }
    for entry in traffic:
        if entry.get("tag"):
            table[r.tag_host(entry["tag"], name, ns, settings.domain)] = [(ns, entry["revisionName"], 100)]
    return table
