"""KServe's Standard-mode (RawDeployment) canary semantics as pure functions.

Standard mode has no Knative revisions: each predictor variant is a Kubernetes Deployment plus a
Service named ``{isvc}[-{name}]-predictor``, and ``spec.canary[]`` entries split traffic only
through Gateway API HTTPRoute weights. This module is the Standard-mode counterpart of
:mod:`kserve_nb.semantics` (the Knative rules), shared by the local cluster's controller and by the
client's dry runs and patch builders. Nothing here does I/O.

The rules and their sources are in ``docs/standard-mode-canary.md``:

- webhook validation (``validateCanarySpecs``, ``validatePredictorNameChange``) → :func:`validate`;
- the canary Deployments (``reconcileCanaryDeployments``: stable spec overlaid with the canary's,
  fixed replicas, orphan cleanup) and the stable's replica reduction by *ready* canaries
  (``adjustStableMinReplicasForCanaries``) → :func:`desired_workloads`;
- the HTTPRoute backends (``applyCanaryWeights``: stable 100 − Σ ready canary %, one weighted
  backend per ready canary, an unready canary gets none) → :func:`route_backends`;
- status (``canaryStatuses``, ``CanaryPredictorReady``, ``PropagateRawStatus``, the HTTPRoute
  status check, URLs, ``Ready`` over ``PredictorReady`` and ``IngressReady``) → :func:`reconcile`;
- the client's merge patches for add / set percent / promote / roll back → ``*_patch``.

The caller owns a :class:`StandardState` (the emulated Deployments and programmed routes), reports
readiness with :meth:`StandardState.mark_ready` / :meth:`~StandardState.mark_failed` /
:meth:`~StandardState.accept_routes`, runs :func:`reconcile`, and persists the state.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from kserve_nb import conditions, errors
from kserve_nb import resources as r
from kserve_nb.semantics import storage_uri_of, template_hash

STANDARD = "Standard"
LEGACY_RAW = "RawDeployment"
STOP_ANNOTATION = r.STOP_ANNOTATION
AUTOSCALER_CLASS_ANNOTATION = "serving.kserve.io/autoscalerClass"
CANARY_READY = "CanaryPredictorReady"
STOPPED_REASON = "Stopped"
GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAY_VERSION = "v1"
HTTPROUTE_PLURAL = "httproutes"
ISVC_NAME_HEADER = "KServe-Isvc-Name"
ISVC_NAMESPACE_HEADER = "KServe-Isvc-Namespace"
SERVICE_PORT = 80  # constants.CommonDefaultHttpPort: the Service port every backendRef uses
CONTAINER_PORT = 8080
FALLBACK_PATH = "^/.*$"  # constants.FallbackPrefix()
DEFAULT_MIN_REPLICAS = 1

# The CRD's pattern for predictor.name (a DNS-1123 label without dots).
NAME_PATTERN = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

# Fields that size or scale a Deployment but are not part of its pod template: changing them (or
# the predictor's name) never restarts pods, which is what makes promotion restart-free.
REPLICA_FIELDS = (
    "minReplicas",
    "maxReplicas",
    "scaleTarget",
    "scaleMetric",
    "autoScaling",
    "deploymentStrategy",
    "canaryTrafficPercent",  # a Knative-mode field; Standard mode ignores it
)

# Conditions outside the Ready condition set carry severity Info (knative.dev/pkg condition sets).
INFO_CONDITIONS = frozenset({CANARY_READY, "Stopped"})

# A status change can need a second pass (force stop first wipes the status, then the canary
# step writes CanaryPredictorReady=Stopped again); a third proves it is stable.
MAX_PASSES = 4


@dataclass(frozen=True)
class StandardSettings:
    """KServe's ``inferenceservice-config`` ingress knobs that shape names and URLs."""

    ingress_domain: str = r.DEFAULT_DOMAIN  # ingress.ingressDomain
    url_scheme: str = "http"  # ingress.urlScheme
    gateway: str = "kserve/kserve-ingress-gateway"  # ingress.kserveIngressGateway
    cluster_domain: str = "cluster.local"


# --------------------------------------------------------------------------- names and URLs


def predictor_service_name(isvc_name: str, variant: str | None = None) -> str:
    """``constants.PredictorServiceName``: ``{isvc}-{variant}-predictor``, or ``{isvc}-predictor``."""
    return f"{isvc_name}-{variant}-predictor" if variant else f"{isvc_name}-predictor"


def domain_name(name: str, namespace: str, settings: StandardSettings) -> str:
    """``GenerateDomainName`` with KServe's default template ``{{.Name}}-{{.Namespace}}.{{.IngressDomain}}``."""
    return f"{name}-{namespace}.{settings.ingress_domain}"


def top_level_host(isvc_name: str, namespace: str, settings: StandardSettings | None = None) -> str:
    """Host of the top-level HTTPRoute ``{isvc}`` and of ``status.url``: ``{isvc}-{ns}.{domain}``."""
    return domain_name(isvc_name, namespace, settings or StandardSettings())


def predictor_route_host(isvc_name: str, namespace: str, settings: StandardSettings | None = None) -> str:
    """Host of the predictor HTTPRoute ``{isvc}-predictor``; it never changes on promotion."""
    return domain_name(predictor_service_name(isvc_name), namespace, settings or StandardSettings())


def component_url(
    isvc_name: str, variant: str | None, namespace: str, settings: StandardSettings | None = None
) -> str:
    """``status.components.predictor.url``: the raw reconciler's URL of the stable Deployment's name.

    After a promotion it names ``{isvc}-{variant}-predictor-{ns}.{domain}``, a host no HTTPRoute
    lists (the predictor route keeps ``{isvc}-predictor-{ns}``).
    """
    settings = settings or StandardSettings()
    return "http://" + domain_name(predictor_service_name(isvc_name, variant), namespace, settings)


# --------------------------------------------------------------------------- spec accessors


def _meta(isvc: Mapping[str, Any]) -> Mapping[str, Any]:
    return isvc.get("metadata") or {}


def _spec(isvc: Mapping[str, Any]) -> Mapping[str, Any]:
    return isvc.get("spec") or {}


def stable_predictor(isvc: Mapping[str, Any]) -> Mapping[str, Any]:
    """``spec.predictor`` (empty when absent)."""
    return _spec(isvc).get("predictor") or {}


def canaries(isvc: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """``spec.canary`` entries in spec order (empty when absent)."""
    return [c for c in _spec(isvc).get("canary") or [] if isinstance(c, Mapping)]


def canary_name(entry: Mapping[str, Any]) -> str:
    """The canary's ``predictor.name`` ("" when missing)."""
    return str((entry.get("predictor") or {}).get("name") or "")


def stable_variant(isvc: Mapping[str, Any]) -> str | None:
    """``spec.predictor.name`` or None for the default ``{isvc}-predictor``."""
    return stable_predictor(isvc).get("name") or None


def is_stopped(isvc: Mapping[str, Any]) -> bool:
    """``utils.GetForceStopRuntime``: annotation ``serving.kserve.io/stop`` equal to "true", any case."""
    value = (_meta(isvc).get("annotations") or {}).get(STOP_ANNOTATION)
    return isinstance(value, str) and value.lower() == "true"


def normalized_mode(isvc: Mapping[str, Any]) -> str:
    """The deployment mode, with the legacy ``RawDeployment`` read as ``Standard``."""
    return r.deployment_mode(isvc)


def _min_replicas(predictor: Mapping[str, Any]) -> int:
    value = predictor.get("minReplicas")
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else DEFAULT_MIN_REPLICAS


# --------------------------------------------------------------------------- validation (webhook)


def validate(isvc: Mapping[str, Any], old: Mapping[str, Any] | None = None) -> str | None:
    """KServe's validating webhook rules for Standard-mode canaries; the error message, or None.

    ``validateCanarySpecs`` on every create/update, and ``validatePredictorNameChange`` on updates
    (``old`` given). The messages are KServe's. The annotation must literally be ``Standard``: the
    mutating webhook has already rewritten a legacy ``RawDeployment`` (see :func:`default_mode_annotation`).
    """
    if old is not None:
        error = validate_name_change(isvc, old)
        if error is not None:
            return error
    return validate_canaries(isvc)


def validate_name_change(isvc: Mapping[str, Any], old: Mapping[str, Any]) -> str | None:
    """``validatePredictorNameChange`` (updates only): a new ``predictor.name`` needs a new model."""
    old_name = stable_predictor(old).get("name") or ""
    new_name = stable_predictor(isvc).get("name") or ""
    if old_name != new_name and (storage_uri_of(stable_predictor(old)) or "") == (
        storage_uri_of(stable_predictor(isvc)) or ""
    ):
        return "predictor.name change requires a model change (e.g. storageUri)"
    return None


def validate_canaries(isvc: Mapping[str, Any]) -> str | None:
    """``validateCanarySpecs`` (creates and updates): KServe's message for the first broken rule, or None."""
    entries = list(_spec(isvc).get("canary") or [])
    if not entries:
        return None
    annotations = _meta(isvc).get("annotations") or {}
    if annotations.get(r.DEPLOYMENT_MODE_ANNOTATION) != STANDARD:
        return f"canary is only supported in {STANDARD} deployment mode"
    stable = stable_predictor(isvc)
    if storage_uri_of(stable) is None and not isinstance(stable.get("model"), Mapping):
        return "canary requires a stable predictor with a model (multi-model serving is not supported with canary)"
    names: set[str] = set()
    total = 0
    stable_min = _min_replicas(stable)
    for i, entry in enumerate(entries):
        predictor = (entry.get("predictor") or {}) if isinstance(entry, Mapping) else {}
        name = str(predictor.get("name") or "")
        if not name:
            return f"canary[{i}] predictor.name is required"
        if name in names:
            return f'canary predictor.name "{name}" is duplicated'
        names.add(name)
        if name == (stable.get("name") or ""):
            return f'canary predictor.name "{name}" conflicts with stable predictor name'
        pct = entry.get("trafficPercent")
        if not isinstance(pct, int) or isinstance(pct, bool):
            # The CRD schema requires an integer; the API server rejects this before the webhook.
            return f'canary "{name}" trafficPercent must be an integer from 0 to 100, got {pct!r}'
        if pct < 0 or pct > 100:
            return f'canary "{name}" trafficPercent must be between 0 and 100, got {pct}'
        total += pct
        if len(_implementations(predictor)) != 1:
            return (
                f'canary "{name}" predictor: exactly one of [SKLearn, XGBoost, Tensorflow, PyTorch, Triton, '
                "ONNX, HuggingFace, PMML, LightGBM, Paddle, Model, PodSpec] must be specified in PredictorSpec"
            )
        if predictor.get("workerSpec") is not None:
            return f'canary "{name}" must not set workerSpec (multi-node is not yet supported for canary)'
        if (predictor.get("maxReplicas") or 0) > 0:
            return f'canary "{name}" must not set maxReplicas (canary uses fixed replicas)'
        for key in ("scaleTarget", "scaleMetric", "autoScaling"):
            if predictor.get(key) is not None:
                return f'canary "{name}" must not set {key} (canary uses fixed replicas)'
        own_min = predictor.get("minReplicas")
        if isinstance(own_min, int) and own_min > stable_min:
            return (
                f'canary "{name}" minReplicas ({own_min}) must not exceed '
                f"stable predictor minReplicas ({stable_min})"
            )
    if total > 100:
        return f"sum of canary trafficPercent values ({total}) must be <= 100"
    return None


_FRAMEWORKS = (
    "model",
    "sklearn",
    "xgboost",
    "tensorflow",
    "pytorch",
    "triton",
    "onnx",
    "huggingface",
    "pmml",
    "lightgbm",
    "paddle",
)


def _implementations(predictor: Mapping[str, Any]) -> list[str]:
    found = [key for key in _FRAMEWORKS if isinstance(predictor.get(key), Mapping)]
    if predictor.get("containers"):
        found.append("containers")
    return found


def default_mode_annotation(isvc: Mapping[str, Any]) -> dict[str, Any] | None:
    """The mutating webhook's rewrite of a legacy ``RawDeployment`` annotation to ``Standard``.

    Returns the merge patch to apply (``DefaultInferenceService``), or None when nothing changes.
    """
    annotations = _meta(isvc).get("annotations") or {}
    if annotations.get(r.DEPLOYMENT_MODE_ANNOTATION) == LEGACY_RAW:
        return {"metadata": {"annotations": {r.DEPLOYMENT_MODE_ANNOTATION: STANDARD}}}
    return None


# --------------------------------------------------------------------------- desired workloads


def _empty(value: Any) -> bool:
    # mergo's isEmptyValue: zero values never override (nil, "", 0, false, empty map/slice).
    return value is None or value == "" or value is False or value == 0 or value == [] or value == {}


def overlay(stable: Mapping[str, Any], canary: Mapping[str, Any]) -> dict[str, Any]:
    """``buildCanaryPredictor``'s ``mergo.Merge(WithOverride)``: the canary's non-empty fields win.

    Objects merge key by key, recursively; lists and scalars replace; empty values never override.
    """
    out = copy.deepcopy(dict(stable))
    for key, value in canary.items():
        if _empty(value):
            continue
        current = out.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            out[key] = overlay(current, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def canary_replicas(isvc: Mapping[str, Any], entry: Mapping[str, Any]) -> int:
    """``canaryReplicaCount``: the canary's own minReplicas, else ceil(stable min × percent / 100).

    A 0 % canary without its own minReplicas gets 0 replicas and so never becomes ready.
    """
    own = (entry.get("predictor") or {}).get("minReplicas")
    if isinstance(own, int) and not isinstance(own, bool):
        return own
    pct = entry.get("trafficPercent") or 0
    return int(math.ceil(_min_replicas(stable_predictor(isvc)) * int(pct) / 100))


def stable_replicas(isvc: Mapping[str, Any], canary_ready: Mapping[str, bool]) -> int:
    """``adjustStableMinReplicasForCanaries``: stable min minus the replicas of *ready* canaries, floor 1.

    Only when the stable sets minReplicas and there are canaries; otherwise its own minimum.
    """
    stable = stable_predictor(isvc)
    base = _min_replicas(stable)
    entries = canaries(isvc)
    if not entries or stable.get("minReplicas") is None:
        return base
    ready = sum(canary_replicas(isvc, e) for e in entries if canary_ready.get(canary_name(e)))
    return max(base - ready, 1) if ready > 0 else base


def pod_template(isvc: Mapping[str, Any], predictor: Mapping[str, Any]) -> dict[str, Any]:
    """What ends up in a Deployment's pod template, canonicalised (replica fields and name excluded)."""
    meta = _meta(isvc)
    spec = {k: copy.deepcopy(v) for k, v in predictor.items() if k not in REPLICA_FIELDS and k != "name"}
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if k not in r.TEMPLATE_ANNOTATION_DISALLOWED
    }
    return {"annotations": annotations, "labels": dict(meta.get("labels") or {}), "predictor": spec}


def replica_set_name(deployment: str, template: str) -> str:
    """``{deployment}-{pod-template-hash}``: the ReplicaSet of ``deployment`` running ``template``."""
    return f"{deployment}-{r.pod_template_hash(template)}"


def deployment_of(replica_set: str) -> str:
    """The Deployment of a ``{deployment}-{pod-template-hash}`` name (:func:`replica_set_name`'s inverse).

    The local ingress names the process that answered so (``x-kserve-revision``); this is the side's
    Deployment whichever of its templates (old or new, during a rolling update) answered.
    """
    return replica_set.rsplit("-", 1)[0]


@dataclass(frozen=True)
class Workload:
    """One desired predictor Deployment + Service (``{isvc}[-{variant}]-predictor``)."""

    name: str
    variant: str | None
    role: str  # "stable" or "canary"
    predictor: dict[str, Any]  # the effective predictor spec (a canary: stable overlaid)
    replicas: int
    template_hash: str
    traffic_percent: int | None = None  # canaries only

    @property
    def storage_uri(self) -> str | None:
        """The storageUri this Deployment's pods load."""
        return storage_uri_of(self.predictor)


def desired_workloads(isvc: Mapping[str, Any], canary_ready: Mapping[str, bool]) -> list[Workload]:
    """The Deployments/Services KServe keeps for ``isvc``: the stable one first, then each canary.

    ``canary_ready`` maps canary name → ready (``AvailableReplicas > 0``); it only sizes the stable.
    """
    meta = _meta(isvc)
    name = meta["name"]
    stable = dict(stable_predictor(isvc))
    out = []
    s_template = pod_template(isvc, stable)
    out.append(
        Workload(
            name=predictor_service_name(name, stable_variant(isvc)),
            variant=stable_variant(isvc),
            role="stable",
            predictor=stable,
            replicas=stable_replicas(isvc, canary_ready),
            template_hash=template_hash(s_template),
        )
    )
    for entry in canaries(isvc):
        cname = canary_name(entry)
        replicas = canary_replicas(isvc, entry)
        effective = overlay(stable, entry.get("predictor") or {})
        for key in ("maxReplicas", "scaleTarget", "scaleMetric", "autoScaling"):
            effective.pop(key, None)
        effective["minReplicas"] = replicas
        out.append(
            Workload(
                name=predictor_service_name(name, cname),
                variant=cname,
                role="canary",
                predictor=effective,
                replicas=replicas,
                template_hash=template_hash(pod_template(isvc, effective)),
                traffic_percent=int(entry.get("trafficPercent") or 0),
            )
        )
    return out


# --------------------------------------------------------------------------- routing


@dataclass(frozen=True)
class Backend:
    """One HTTPRoute backendRef: a predictor Service and its weight (None = unweighted)."""

    service: str
    weight: int | None = None


def route_backends(isvc: Mapping[str, Any], canary_ready: Mapping[str, bool]) -> list[Backend]:
    """``applyCanaryWeights``: the backends of each HTTPRoute rule.

    Without canaries: the stable Service alone, unweighted. With canaries: the stable Service with
    weight 100 − Σ(percent of *ready* canaries), then each ready canary's Service with its percent
    (a ready 0 % canary is listed with weight 0); an unready canary is left out.
    """
    name = _meta(isvc)["name"]
    stable = Backend(predictor_service_name(name, stable_variant(isvc)))
    entries = canaries(isvc)
    if not entries:
        return [stable]
    ready = [e for e in entries if canary_ready.get(canary_name(e))]
    total = sum(int(e.get("trafficPercent") or 0) for e in ready)
    out = [Backend(stable.service, 100 - total)]
    out += [
        Backend(predictor_service_name(name, canary_name(e)), int(e.get("trafficPercent") or 0)) for e in ready
    ]
    return out


def split(backends: Sequence[Backend]) -> dict[str, float]:
    """The share of requests each Service receives (Gateway API: weight / Σ weights; one = all)."""
    if len(backends) == 1:
        return {backends[0].service: 0.0 if backends[0].weight == 0 else 1.0}
    total = sum(b.weight or 0 for b in backends)
    if total <= 0:
        return {b.service: 0.0 for b in backends}
    return {b.service: (b.weight or 0) / total for b in backends}


def httproute_objects(
    isvc: Mapping[str, Any],
    backends: Sequence[Backend],
    settings: StandardSettings | None = None,
) -> list[dict[str, Any]]:
    """The two HTTPRoutes KServe writes for a predictor-only isvc, as the API serves them.

    ``{isvc}-predictor`` (host ``{isvc}-predictor-{ns}.{domain}``) and the top-level ``{isvc}``
    (host ``{isvc}-{ns}.{domain}``), one rule each (path ``^/.*$``, the isvc name/namespace
    headers, a 60 s timeout), both with the same backends, with the CRD's defaults filled in as the
    API server serves them. Status is not included.
    """
    settings = settings or StandardSettings()
    meta = _meta(isvc)
    name, ns = meta["name"], meta.get("namespace", "default")
    gw_ns, _, gw_name = settings.gateway.partition("/")
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k not in r.TEMPLATE_ANNOTATION_DISALLOWED
    }
    refs = []
    for b in backends:
        # KServe leaves a lone backend unweighted; the Gateway API CRD defaults weight to 1, which is
        # what the API serves back (as it does group "" and kind Service)
        weight = 1 if b.weight is None else b.weight
        refs.append(
            {
                "group": "",
                "kind": "Service",
                "name": b.service,
                "namespace": ns,
                "port": SERVICE_PORT,
                "weight": weight,
            }
        )
    rule = {
        "backendRefs": refs,
        "filters": [
            {
                "type": "RequestHeaderModifier",
                "requestHeaderModifier": {
                    "set": [
                        {"name": ISVC_NAME_HEADER, "value": name},
                        {"name": ISVC_NAMESPACE_HEADER, "value": ns},
                    ]
                },
            }
        ],
        "matches": [{"path": {"type": "RegularExpression", "value": FALLBACK_PATH}}],
        "timeouts": {"request": "60s"},
    }
    out = []
    for route_name, host in (
        (predictor_service_name(name), predictor_route_host(name, ns, settings)),
        (name, top_level_host(name, ns, settings)),
    ):
        out.append(
            {
                "apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}",
                "kind": "HTTPRoute",
                "metadata": {
                    "name": route_name,
                    "namespace": ns,
                    "annotations": dict(annotations),
                    "labels": dict(meta.get("labels") or {}),
                },
                "spec": {
                    "hostnames": [host],
                    "parentRefs": [
                        {"group": GATEWAY_GROUP, "kind": "Gateway", "name": gw_name, "namespace": gw_ns}
                    ],
                    "rules": [copy.deepcopy(rule)],
                },
            }
        )
    return out


# --------------------------------------------------------------------------- emulated state


@dataclass
class DeploymentRecord:
    """One emulated predictor Deployment (and its same-named Service)."""

    name: str
    variant: str | None
    role: str
    predictor: dict[str, Any]
    replicas: int
    template_hash: str
    created_at: str
    generation: int = 1
    serving_hash: str | None = None  # the pod template its available pods run; None = none available
    serving_uri: str | None = None  # the storageUri those pods loaded
    failed: str | None = None  # why the pods of the current template cannot become ready

    @property
    def storage_uri(self) -> str | None:
        """The storageUri of the desired pod template."""
        return storage_uri_of(self.predictor)

    @property
    def available(self) -> bool:
        """``AvailableReplicas > 0``: some pods serve (maybe an older template during a rollout)."""
        return self.serving_hash is not None and self.replicas > 0

    @property
    def updated(self) -> bool:
        """Its available pods run the current template."""
        return self.available and self.serving_hash == self.template_hash

    @property
    def replica_set(self) -> str:
        """The name of the current ReplicaSet, ``{deployment}-{pod-template-hash}``."""
        return replica_set_name(self.name, self.template_hash)


@dataclass
class StandardState:
    """The emulated Deployments and HTTPRoutes of one Standard-mode isvc (persisted by the caller)."""

    uid: str
    deployments: dict[str, DeploymentRecord] = field(default_factory=dict)
    routes: list[dict[str, Any]] | None = None  # programmed backends; None = no HTTPRoutes exist
    routes_accepted: bool = False  # the Gateway has written Accepted parent status

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (for the store's private table)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StandardState:
        """The inverse of :meth:`to_json`."""
        data = dict(data)
        deployments = {k: DeploymentRecord(**v) for k, v in (data.pop("deployments", None) or {}).items()}
        return cls(deployments=deployments, **data)

    def backends(self) -> list[Backend]:
        """The programmed HTTPRoute backends (empty when no route exists)."""
        return [Backend(b["service"], b.get("weight")) for b in self.routes or []]

    def mark_ready(self, name: str, template: str | None = None) -> bool:
        """Pods of Deployment ``name`` running ``template`` (default: the current one) became ready.

        A report for a template that is no longer current is ignored (a stale pod). Returns True
        when anything changed.
        """
        rec = self.deployments.get(name)
        if rec is None or rec.replicas <= 0 or (template is not None and template != rec.template_hash):
            return False  # unknown, scaled to zero (no pod to be ready), or a stale template
        if rec.serving_hash == rec.template_hash and rec.failed is None:
            return False
        rec.serving_hash, rec.serving_uri, rec.failed = rec.template_hash, rec.storage_uri, None
        return True

    def mark_failed(self, name: str, message: str, template: str | None = None) -> bool:
        """Pods of ``name``'s current template cannot become ready (e.g. the model fails to load).

        Pods of an older template keep serving, as in a stuck rolling update. Returns True when
        anything changed.
        """
        rec = self.deployments.get(name)
        if rec is None or (template is not None and template != rec.template_hash):
            return False
        if rec.serving_hash == rec.template_hash or rec.failed == message:
            return False
        rec.failed = message
        return True

    def mark_unavailable(self, name: str) -> bool:
        """All pods of ``name`` are gone (e.g. the process died); the template stays desired."""
        rec = self.deployments.get(name)
        if rec is None or rec.serving_hash is None:
            return False
        rec.serving_hash = rec.serving_uri = None
        return True

    def accept_routes(self) -> bool:
        """The Gateway accepted the HTTPRoutes (their parent status has no False condition)."""
        if self.routes is None or self.routes_accepted:
            return False
        self.routes_accepted = True
        return True


# --------------------------------------------------------------------------- status


def _condition(ctype: str, status: str, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    return conditions.make(ctype, status, reason, message, INFO_CONDITIONS)


_combine = conditions.combine
_merge_conditions = conditions.merge


def predictor_ready_condition(rec: DeploymentRecord | None) -> dict[str, Any]:
    """``PropagateRawStatus`` over the stable Deployment's Available/Progressing conditions.

    Settled: True ``NewReplicaSetAvailable``. Rolling to a new template while old pods serve: True
    ``MinimumReplicasAvailable``. No pod available yet: False ``MinimumReplicasUnavailable``. The
    current template cannot become ready: False ``ProgressDeadlineExceeded`` (Kubernetes reports it
    after the progress deadline, 600 s by default; the emulation reports it when the failure is known).
    """
    if rec is None:
        return _condition("PredictorReady", "False")
    if rec.failed is not None:
        return _condition(
            "PredictorReady",
            "False",
            "ProgressDeadlineExceeded",
            f'ReplicaSet "{rec.replica_set}" has timed out progressing.',
        )
    if rec.updated:
        return _condition(
            "PredictorReady",
            "True",
            "NewReplicaSetAvailable",
            f'ReplicaSet "{rec.replica_set}" has successfully progressed.',
        )
    if rec.available:
        return _condition(
            "PredictorReady", "True", "MinimumReplicasAvailable", "Deployment has minimum availability."
        )
    return _condition(
        "PredictorReady", "False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability."
    )


def canary_statuses(isvc: Mapping[str, Any], state: StandardState) -> list[dict[str, Any]]:
    """``status.canaryStatuses``: one entry per spec entry, ready = its Deployment has available pods.

    ``modelStatus`` is declared but never filled by the controller; Go's JSON encoder still writes the
    empty struct, hence ``{"transitionStatus": ""}``.
    """
    name = _meta(isvc)["name"]
    out = []
    for entry in canaries(isvc):
        rec = state.deployments.get(predictor_service_name(name, canary_name(entry)))
        out.append(
            {
                "modelStatus": {"transitionStatus": ""},
                "name": canary_name(entry),
                "ready": bool(rec is not None and rec.available),
                "trafficPercent": int(entry.get("trafficPercent") or 0),
            }
        )
    return out


def model_status(rec: DeploymentRecord | None) -> dict[str, Any]:
    """``status.modelStatus`` from the stable Deployment's pods (``PropagateModelStatus``, raw branch)."""
    if rec is not None and rec.failed is not None:
        return {
            "transitionStatus": "BlockedByFailedLoad",
            "states": {"activeModelState": "Loaded" if rec.available else "", "targetModelState": "FailedToLoad"},
            "lastFailureInfo": {"reason": "ModelLoadFailed", "message": rec.failed, "exitCode": 1},
            "copies": {"failedCopies": 0, "totalCopies": rec.replicas if rec.available else 0},
        }
    if rec is not None and rec.updated:
        return {
            "transitionStatus": "UpToDate",
            "states": {"activeModelState": "Loaded", "targetModelState": "Loaded"},
            "copies": {"failedCopies": 0, "totalCopies": rec.replicas},
        }
    serving = rec is not None and rec.available
    return {
        "transitionStatus": "InProgress",
        "states": {"activeModelState": "Loaded" if serving else "", "targetModelState": "Pending"},
        "copies": {"failedCopies": 0, "totalCopies": rec.replicas if rec is not None and serving else 0},
    }


@dataclass
class StandardResult:
    """The status KServe would write, and whether the emulated objects changed."""

    status: dict[str, Any]
    changed: bool
    error: str | None = None


def reconcile(
    isvc: Mapping[str, Any],
    state: StandardState,
    now: str,
    settings: StandardSettings | None = None,
) -> StandardResult:
    """KServe's Standard-mode reconciliation of ``isvc``: mutates ``state``, returns the new status.

    Runs controller passes until the status is stable. ``now`` stamps new Deployments and condition
    transitions. The caller reports pod readiness and route acceptance between calls.
    """
    settings = settings or StandardSettings()
    mode = normalized_mode(isvc)
    if mode != STANDARD:
        raise ValueError(f"semantics_standard handles Standard mode only, got {mode!r}")
    status = copy.deepcopy(dict(isvc.get("status") or {}))
    changed = False
    for _ in range(MAX_PASSES):
        before = copy.deepcopy(status)
        status, pass_changed = _pass(isvc, state, status, now, settings)
        changed = changed or pass_changed
        if status == before and not pass_changed:
            break
    return StandardResult(status, changed)


def _sync(state: StandardState, want: Workload, now: str) -> bool:
    rec = state.deployments.get(want.name)
    if rec is None:
        state.deployments[want.name] = DeploymentRecord(
            name=want.name,
            variant=want.variant,
            role=want.role,
            predictor=copy.deepcopy(want.predictor),
            replicas=want.replicas,
            template_hash=want.template_hash,
            created_at=now,
        )
        return True
    spec_changed = rec.template_hash != want.template_hash or rec.replicas != want.replicas
    if rec.template_hash != want.template_hash:
        rec.failed = None  # a new template gets a fresh chance
    meta_changed = (rec.variant, rec.role, rec.predictor) != (want.variant, want.role, want.predictor)
    rec.variant, rec.role, rec.predictor = want.variant, want.role, copy.deepcopy(want.predictor)
    rec.replicas, rec.template_hash = want.replicas, want.template_hash
    if rec.replicas == 0 and rec.serving_hash is not None:
        rec.serving_hash = rec.serving_uri = None  # scaled to zero: no pod left
    if spec_changed:
        rec.generation += 1
    return spec_changed or meta_changed


def _pass(
    isvc: Mapping[str, Any],
    state: StandardState,
    status: dict[str, Any],
    now: str,
    settings: StandardSettings,
) -> tuple[dict[str, Any], bool]:
    meta = _meta(isvc)
    name, ns = meta["name"], meta.get("namespace", "default")
    stopped = is_stopped(isvc)
    changed = False
    conds: dict[str, dict[str, Any]] = {c["type"]: dict(c) for c in status.get("conditions") or []}

    # 1. canaries first (reconcileCanaryDeployments), so the stable sizing and the route weights
    #    below see this pass's readiness
    desired = desired_workloads(isvc, {})
    if stopped:
        # Deployments and Services are deleted (each carries the stop annotation)
        if state.deployments:
            state.deployments.clear()
            changed = True
    else:
        for want in desired[1:]:
            changed |= _sync(state, want, now)
    statuses = canary_statuses(isvc, state)
    if statuses:
        status["canaryStatuses"] = statuses
        all_ready = all(s["ready"] for s in statuses)
        if stopped:
            conds[CANARY_READY] = _condition(CANARY_READY, "False", STOPPED_REASON)
        elif all_ready:
            conds[CANARY_READY] = _condition(CANARY_READY, "True", "AllCanariesReady")
        else:
            conds[CANARY_READY] = _condition(CANARY_READY, "False", "CanariesNotReady")
    else:
        status.pop("canaryStatuses", None)
        conds.pop(CANARY_READY, None)
    ready_map = {s["name"]: s["ready"] for s in statuses}

    # orphan cleanup: every predictor Deployment/Service not named by the spec goes
    expected = {w.name for w in desired}
    for orphan in [n for n in state.deployments if n not in expected]:
        del state.deployments[orphan]
        changed = True

    # 2. the stable Deployment, sized by the ready canaries (PropagateRawStatus)
    stable = desired_workloads(isvc, ready_map)[0]
    if not stopped:
        changed |= _sync(state, stable, now)
        rec = state.deployments[stable.name]
        predictor_ready = predictor_ready_condition(rec)
        conds["PredictorReady"] = predictor_ready
        component = status.setdefault("components", {}).setdefault("predictor", {})
        if predictor_ready["status"] == "True":
            component["url"] = component_url(name, stable.variant, ns, settings)
        status["observedGeneration"] = rec.generation
    else:
        rec = None
        previous = conds.get("PredictorReady") or {}
        if not (previous.get("status") == "False" and previous.get("reason") == STOPPED_REASON):
            # the first stopped pass wipes the whole status (canary statuses included) but the
            # deployment mode; the next pass writes CanaryPredictorReady=Stopped again
            status = {"deploymentMode": status.get("deploymentMode", STANDARD)}
            conds = {}
            conds["PredictorReady"] = _condition("PredictorReady", "False", STOPPED_REASON)

    # 3. Stopped
    conds["Stopped"] = _condition("Stopped", "True" if stopped else "False")

    # 4. ingress (RawHTTPRouteReconciler)
    if stopped:
        if state.routes is not None:
            state.routes, state.routes_accepted = None, False
            changed = True
        conds["IngressReady"] = _condition("IngressReady", "False", STOPPED_REASON)
    else:
        if conds["PredictorReady"]["status"] == "True":
            wanted = [asdict(b) for b in route_backends(isvc, ready_map)]
            if state.routes is None:
                state.routes, state.routes_accepted = wanted, False
                changed = True
            elif state.routes != wanted:
                state.routes = wanted  # an update keeps the parents' Accepted status
                changed = True
        else:
            # the routes keep their last programming while the predictor is not ready
            conds["IngressReady"] = _condition("IngressReady", "False", "Predictor ingress not created")
        if state.routes is None:
            conds["IngressReady"] = _condition(
                "IngressReady", "False", "Predictor Deployment NotReady", "Predictor HTTPRoute not created"
            )
        elif not state.routes_accepted:
            conds["IngressReady"] = _condition(
                "IngressReady", "False", "ParentStatusNotAvailable", "Predictor HttpRouteNotReady"
            )
        else:
            conds["IngressReady"] = _condition("IngressReady", "True")
            status["url"] = f"{settings.url_scheme}://{top_level_host(name, ns, settings)}"
            status["address"] = {"url": "http://" + r.cluster_local_host(stable.name, ns, settings.cluster_domain)}

    # 5. Ready = PredictorReady ∧ IngressReady (knative living condition set)
    conds["Ready"] = _condition("Ready", *_combine(conds["PredictorReady"], conds["IngressReady"]))
    status["conditions"] = _merge_conditions(status.get("conditions") or [], list(conds.values()), now)
    if not stopped:
        status["modelStatus"] = model_status(rec)
    status["deploymentMode"] = STANDARD
    return status, changed


# --------------------------------------------------------------------------- views


def workloads(state: StandardState) -> list[DeploymentRecord]:
    """The emulated Deployments, stable first, then canaries by name."""
    return sorted(state.deployments.values(), key=lambda d: (d.role != "stable", d.name))


def serving_processes(state: StandardState) -> list[tuple[str, str, str | None]]:
    """What must run: ``(deployment, template hash, storageUri)`` per Deployment with replicas.

    The current template of each Deployment (it must run to become ready) and, during a rolling
    update, the older template that still serves until the new one is ready.
    """
    out = []
    for rec in workloads(state):
        if rec.replicas <= 0:
            continue
        if rec.failed is None:
            out.append((rec.name, rec.template_hash, rec.storage_uri))
        if rec.serving_hash is not None and rec.serving_hash != rec.template_hash:
            out.append((rec.name, rec.serving_hash, rec.serving_uri))
    return out


def ingress_routes(
    isvc: Mapping[str, Any], state: StandardState, settings: StandardSettings | None = None
) -> dict[str, list[tuple[str, str, int]]]:
    """Ingress routes: host → weighted ``(namespace, service, weight)`` targets, per programmed route.

    Both route hosts split by the route's weights; each predictor Service is also reachable on its
    own component host ``{service}-{ns}.{domain}`` (a local extension: KServe creates no route for
    it) so per-side test predictions can reach the stable and each canary. An unnamed stable's
    component host is the predictor route's own (weighted) host, so every Service is also routed
    on its in-cluster name ``{service}.{ns}.svc.{cluster domain}``, which never clashes: the host
    the client calls a side on (``kserve_nb.standard.side_host``).
    """
    settings = settings or StandardSettings()
    meta = _meta(isvc)
    name, ns = meta["name"], meta.get("namespace", "default")
    table: dict[str, list[tuple[str, str, int]]] = {}
    backends = state.backends()
    if backends:
        weighted = [(ns, b.service, 100 if b.weight is None else b.weight) for b in backends]
        table[predictor_route_host(name, ns, settings)] = weighted
        table[top_level_host(name, ns, settings)] = weighted
    for rec in workloads(state):
        if rec.available:
            table.setdefault(domain_name(rec.name, ns, settings), [(ns, rec.name, 100)])
            table.setdefault(r.cluster_local_host(rec.name, ns, settings.cluster_domain), [(ns, rec.name, 100)])
    return table


# --------------------------------------------------------------------------- client patches


def _require_standard(isvc: Mapping[str, Any]) -> None:
    mode = normalized_mode(isvc)
    if mode != STANDARD:
        name = _meta(isvc).get("name", "?")
        raise errors.ValidationError(
            f"{name} runs in {mode} mode; spec.canary exists only in Standard (RawDeployment) mode — "
            "use canaryTrafficPercent there"
        )


def _mode_annotation_patch(isvc: Mapping[str, Any]) -> dict[str, Any]:
    # validateCanarySpecs reads the annotation literally; a missing or legacy one (possible when the
    # mode came from the cluster default or an old object) would make the webhook refuse the canary.
    annotations = _meta(isvc).get("annotations") or {}
    if annotations.get(r.DEPLOYMENT_MODE_ANNOTATION) != STANDARD:
        return {"annotations": {r.DEPLOYMENT_MODE_ANNOTATION: STANDARD}}
    return {}


def _check_percent(percent: Any) -> int:
    if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
        raise errors.ValidationError(f"canary percent must be a whole number from 0 to 100, got {percent!r}")
    return percent


def _check_name(isvc: Mapping[str, Any], cname: str) -> str:
    if not isinstance(cname, str) or not NAME_PATTERN.match(cname):
        raise errors.ValidationError(
            f"canary name {cname!r} must be lower-case letters, digits and '-', starting with a letter "
            "and ending with a letter or digit (e.g. v2)"
        )
    service = predictor_service_name(_meta(isvc)["name"], cname)
    if len(service) > r.DNS_LABEL_MAX:
        raise errors.ValidationError(
            f"canary name {cname!r} makes the Service name {service} {len(service)} characters long; "
            f"Kubernetes allows {r.DNS_LABEL_MAX} — use a shorter canary name"
        )
    if cname == (stable_predictor(isvc).get("name") or ""):
        raise errors.ValidationError(
            f"canary name {cname!r} is the stable predictor's name; choose another (e.g. v2)"
        )
    return cname


def _check_sum(entries: Sequence[Mapping[str, Any]]) -> None:
    total = sum(int(e.get("trafficPercent") or 0) for e in entries)
    if total > 100:
        parts = ", ".join(f"{canary_name(e)} {e.get('trafficPercent')}%" for e in entries)
        raise errors.ValidationError(
            f"the canaries would take {total}% of the traffic ({parts}); together they may take at most 100%"
        )


def _find(isvc: Mapping[str, Any], cname: str | None) -> Mapping[str, Any]:
    entries = canaries(isvc)
    isvc_name = _meta(isvc).get("name", "?")
    if not entries:
        raise errors.ValidationError(f"{isvc_name} has no canary; add one first")
    if cname is None:
        if len(entries) > 1:
            names = ", ".join(canary_name(e) for e in entries)
            raise errors.ValidationError(
                f"{isvc_name} has {len(entries)} canaries ({names}); name the one you mean"
            )
        return entries[0]
    for entry in entries:
        if canary_name(entry) == cname:
            return entry
    names = ", ".join(canary_name(e) for e in entries)
    raise errors.ValidationError(f"{isvc_name} has no canary named {cname!r}; its canaries: {names}")


def _patch(meta_patch: Mapping[str, Any], spec_patch: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"spec": dict(spec_patch)}
    if meta_patch:
        out["metadata"] = dict(meta_patch)
    return out


def add_canary_patch(
    isvc: Mapping[str, Any],
    name: str,
    storage_uri: str,
    percent: int,
    *,
    model_format: str | None = None,
    min_replicas: int | None = None,
) -> dict[str, Any]:
    """Merge patch adding (or replacing) canary ``name`` serving ``storage_uri`` with ``percent`` %.

    ``spec.canary`` is an atomic list and a merge patch replaces lists whole, so the patch carries
    every entry. The canary names its model in ``model`` form with the stable's model format (a
    legacy framework key would sit beside the stable's ``model`` and be ignored). A 0 % canary gets
    ``minReplicas: 1`` unless given: KServe would size it ceil(min × 0 / 100) = 0 replicas, and a
    Deployment without pods never becomes ready.
    """
    _require_standard(isvc)
    cname = _check_name(isvc, name)
    pct = _check_percent(percent)
    if not isinstance(storage_uri, str) or not storage_uri.strip():
        raise errors.ValidationError("storageUri must be a non-empty string such as gs://bucket/model")
    uri = storage_uri.strip()
    stable = stable_predictor(isvc)
    stable_min = _min_replicas(stable)
    if min_replicas is None and pct == 0:
        min_replicas = 1
    if min_replicas is not None:
        if isinstance(min_replicas, bool) or not isinstance(min_replicas, int) or min_replicas < 0:
            raise errors.ValidationError(f"canary minReplicas must be a whole number ≥ 0, got {min_replicas!r}")
        if min_replicas > stable_min:
            raise errors.ValidationError(
                f"canary minReplicas {min_replicas} exceeds the stable predictor's minReplicas {stable_min}; "
                "KServe refuses that — lower it or raise the stable's"
            )
    fmt = model_format or _model_format(stable)
    model: dict[str, Any] = {"storageUri": uri}
    if fmt:
        model["modelFormat"] = {"name": fmt}
    predictor: dict[str, Any] = {"name": cname, "model": model}
    if min_replicas is not None:
        predictor["minReplicas"] = min_replicas
    entry = {"predictor": predictor, "trafficPercent": pct}
    entries = [copy.deepcopy(dict(e)) for e in canaries(isvc) if canary_name(e) != cname]
    # keep a replaced entry's position so the route's backend order stays put
    position = next((i for i, e in enumerate(canaries(isvc)) if canary_name(e) == cname), len(entries))
    entries.insert(position, entry)
    _check_sum(entries)
    return _patch(_mode_annotation_patch(isvc), {"canary": entries})


def _model_format(predictor: Mapping[str, Any]) -> str | None:
    model = predictor.get("model")
    if isinstance(model, Mapping):
        fmt = model.get("modelFormat")
        if isinstance(fmt, Mapping) and fmt.get("name"):
            return str(fmt["name"])
    for key in _FRAMEWORKS[1:]:
        if isinstance(predictor.get(key), Mapping):
            return key
    return None


def set_percent_patch(isvc: Mapping[str, Any], percent: int, name: str | None = None) -> dict[str, Any]:
    """Merge patch setting canary ``name``'s ``trafficPercent`` (the only canary when ``name`` is None)."""
    _require_standard(isvc)
    pct = _check_percent(percent)
    target = canary_name(_find(isvc, name))
    entries = []
    for entry in canaries(isvc):
        updated = copy.deepcopy(dict(entry))
        if canary_name(updated) == target:
            updated["trafficPercent"] = pct
        entries.append(updated)
    _check_sum(entries)
    return _patch(_mode_annotation_patch(isvc), {"canary": entries})


def promote_patch(isvc: Mapping[str, Any], name: str | None = None) -> dict[str, Any]:
    """Merge patch promoting canary ``name``: the stable takes its name and spec, the entry goes.

    The stable predictor becomes the canary's effective spec (stable overlaid with the canary's
    fields, the stable's own replica settings kept), so the canary's Deployment becomes the stable
    one with an unchanged pod template: no pod restarts. KServe then deletes the old stable
    Deployment and Service. Other canaries stay.
    """
    _require_standard(isvc)
    entry = _find(isvc, name)
    target = canary_name(entry)
    stable = stable_predictor(isvc)
    canary_predictor = {k: v for k, v in (entry.get("predictor") or {}).items() if k not in REPLICA_FIELDS}
    if (storage_uri_of(overlay(stable, canary_predictor)) or "") == (storage_uri_of(stable) or ""):
        raise errors.ValidationError(
            f"canary {target!r} serves the same storageUri as the stable predictor; KServe only accepts a "
            "predictor.name change with a model change — roll the canary back instead"
        )
    spec_predictor: dict[str, Any] = {}
    _merge_into_patch(spec_predictor, stable, canary_predictor)
    if isinstance(canary_predictor.get("model"), Mapping):
        # a legacy framework block beside the new ``model`` would make two implementations
        for key in _implementations(stable):
            if key not in ("model", "containers"):
                spec_predictor[key] = None
    spec_predictor["name"] = target
    rest = [copy.deepcopy(dict(e)) for e in canaries(isvc) if canary_name(e) != target]
    return _patch(_mode_annotation_patch(isvc), {"predictor": spec_predictor, "canary": rest or None})


def _merge_into_patch(patch: dict[str, Any], current: Mapping[str, Any], over: Mapping[str, Any]) -> None:
    # Builds the merge patch that turns ``current`` into overlay(current, over): only non-empty
    # values of ``over`` that differ; objects recurse so untouched stable keys stay.
    for key, value in over.items():
        if _empty(value):
            continue
        live = current.get(key)
        if isinstance(value, Mapping) and isinstance(live, Mapping):
            sub: dict[str, Any] = {}
            _merge_into_patch(sub, live, value)
            if sub:
                patch[key] = sub
        elif live != value:
            patch[key] = copy.deepcopy(value)


def rollback_patch(isvc: Mapping[str, Any], name: str | None = None) -> dict[str, Any]:
    """Merge patch removing canary ``name`` (every canary when ``name`` is None); the stable stays.

    KServe deletes the removed canaries' Deployments and Services and restores the stable's replicas.
    """
    _require_standard(isvc)
    entries = canaries(isvc)
    if not entries:
        raise errors.ValidationError(f"{_meta(isvc).get('name', '?')} has no canary to roll back")
    if name is None:
        rest: list[dict[str, Any]] = []
    else:
        target = canary_name(_find(isvc, name))
        rest = [copy.deepcopy(dict(e)) for e in entries if canary_name(e) != target]
    return {"spec": {"canary": rest or None}}
