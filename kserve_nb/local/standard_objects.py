"""The Kubernetes objects of a Standard-mode (RawDeployment) InferenceService, as the API serves them.

Pure builders from the emulated state of :mod:`kserve_nb.semantics_standard`:

- :func:`deployment_object` — the ``apps/v1`` Deployment KServe creates per predictor variant
  (``createRawDefaultDeployment``), with the status the Kubernetes Deployment controller writes;
- :func:`service_object` — its same-named ``v1`` Service (``createDefaultSvc``: ClusterIP,
  port 80 → 8080, selector ``app: isvc.{name}``);
- :func:`httproute_objects` — the two ``gateway.networking.k8s.io/v1`` HTTPRoutes
  (``semantics_standard.httproute_objects``) with the parent status the Gateway writes once it
  accepted them.

Every object carries KServe's labels (the isvc's own, ``serving.kserve.io/inferenceservice``,
``component: predictor``, ``app: isvc.{name}``) and a controller owner reference to the isvc,
so deleting the isvc deletes them. The API server fills in ``uid``, ``resourceVersion``,
``creationTimestamp`` and ``generation`` when they are stored.

Deployment and Service statuses are a status subresource: a caller writing them through
:class:`~kserve_nb.local.store.Store` updates the main object, then its ``status``. The store
counts a Deployment's ``metadata.generation`` per spec write, so the caller copies the stored
generation into ``status.observedGeneration`` (the emulated Deployment controller is instantaneous).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from typing import Any

from kserve_nb import resources as r
from kserve_nb import semantics_standard as std
from kserve_nb.local.store import DEPLOYMENTS, HTTPROUTES, SERVICES, ResourceType
from kserve_nb.semantics import model_format_of, storage_uri_of
from kserve_nb.semantics_standard import DeploymentRecord, StandardSettings, StandardState

PREDICTOR_COMPONENT = "predictor"
MODEL_DIR = "/mnt/models"
# The local Gateway's controller name in HTTPRoute parent status (a domain-prefixed path, as the
# Gateway API requires; it names our emulated gateway, not a real implementation).
GATEWAY_CONTROLLER = "kserve-nb.local/gateway-controller"
# Images of KServe 0.21's ClusterServingRuntimes by model format; other formats follow the
# sklearn pattern (these "containers" are local processes, the image is what a cluster would show).
RUNTIME_IMAGES = {
    "sklearn": "kserve/sklearnserver:v0.21.0",
    "xgboost": "kserve/xgbserver:v0.21.0",
    "lightgbm": "kserve/lgbserver:v0.21.0",
    "pmml": "kserve/pmmlserver:v0.21.0",
    "paddle": "kserve/paddleserver:v0.21.0",
    "huggingface": "kserve/huggingfaceserver:v0.21.0",
}
# The Service CIDR kubeadm and kind use by default; 10.96.0.1 is the ``kubernetes`` Service.
SERVICE_CIDR = ipaddress.IPv4Network("10.96.0.0/12")


def _meta(isvc: Mapping[str, Any]) -> Mapping[str, Any]:
    return isvc.get("metadata") or {}


def raw_service_label(name: str) -> str:
    """``constants.GetRawServiceLabel``: the ``app`` label value of a predictor's pods, ``isvc.{name}``."""
    return f"isvc.{name}"


def owner_reference(isvc: Mapping[str, Any]) -> dict[str, Any]:
    """The controller owner reference KServe sets on everything it creates for ``isvc``."""
    meta = _meta(isvc)
    return {
        "apiVersion": r.API_VERSION,
        "kind": r.KIND,
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def component_labels(isvc: Mapping[str, Any], rec: DeploymentRecord) -> dict[str, str]:
    """Labels of a predictor Deployment, its pods and its Service.

    The isvc's labels and the predictor's ``labels``, then ``serving.kserve.io/inferenceservice``,
    ``component`` and ``app`` (the Deployment reconciler adds ``app`` to the component metadata that
    the Service shares).
    """
    meta = _meta(isvc)
    return {
        **{str(k): str(v) for k, v in (meta.get("labels") or {}).items()},
        **{str(k): str(v) for k, v in (rec.predictor.get("labels") or {}).items()},
        r.ISVC_LABEL: str(meta.get("name", "")),
        r.COMPONENT_LABEL: PREDICTOR_COMPONENT,
        "app": raw_service_label(rec.name),
    }


def component_annotations(isvc: Mapping[str, Any], rec: DeploymentRecord) -> dict[str, str]:
    """Annotations of a predictor Deployment and its pod template.

    The isvc's annotations minus those KServe never propagates, the predictor's ``annotations``, and
    the storage initializer's source URI (which the pod webhook reads to inject the initializer).
    """
    meta = _meta(isvc)
    out = {
        str(k): str(v)
        for k, v in (meta.get("annotations") or {}).items()
        if k not in r.TEMPLATE_ANNOTATION_DISALLOWED
    }
    out.update({str(k): str(v) for k, v in (rec.predictor.get("annotations") or {}).items()})
    uri = storage_uri_of(rec.predictor)
    if uri:
        out[r.STORAGE_URI_ANNOTATION] = uri
    return out


def _containers(isvc: Mapping[str, Any], rec: DeploymentRecord) -> list[dict[str, Any]]:
    predictor = rec.predictor
    custom = predictor.get("containers")
    if isinstance(custom, list) and custom:
        return [dict(c) for c in custom if isinstance(c, Mapping)]
    fmt = model_format_of(predictor) or "sklearn"
    container: dict[str, Any] = {
        "name": "kserve-container",
        "image": RUNTIME_IMAGES.get(fmt, f"kserve/{fmt}server:v0.21.0"),
        "args": [f"--model_name={_meta(isvc).get('name', '')}", f"--model_dir={MODEL_DIR}",
                 f"--http_port={std.CONTAINER_PORT}"],
        "imagePullPolicy": "IfNotPresent",
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    model = predictor.get("model")
    if isinstance(model, Mapping) and isinstance(model.get("resources"), Mapping):
        container["resources"] = dict(model["resources"])
    else:
        container["resources"] = {}
    return [container]


def _deployment_condition(
    ctype: str, status: str, reason: str, message: str, at: str
) -> dict[str, Any]:
    return {"type": ctype, "status": status, "reason": reason, "message": message,
            "lastUpdateTime": at, "lastTransitionTime": at}


def deployment_status(rec: DeploymentRecord, observed_generation: int | None = None) -> dict[str, Any]:
    """The status the Deployment controller writes for ``rec``.

    Replicas are all-or-nothing (the emulation has one process per Deployment): all available on
    the current template (settled); all available on the previous one while one surge pod of the
    new template is not ready (a rolling update, ``maxSurge`` 25 % rounded up); or none available.
    Conditions follow the same states (``Available`` ``MinimumReplicasAvailable`` /
    ``MinimumReplicasUnavailable``; ``Progressing`` ``NewReplicaSetAvailable`` /
    ``ReplicaSetUpdated``, or False ``ProgressDeadlineExceeded`` when the template cannot become
    ready). Zero-valued counts are omitted, as Kubernetes serves them. Condition times are the
    Deployment's creation time (the record keeps no transition times).
    """
    at = rec.created_at
    rs = rec.replica_set
    out: dict[str, Any] = {"observedGeneration": rec.generation if observed_generation is None
                           else observed_generation}
    desired = rec.replicas
    if desired <= 0:
        counts: dict[str, int] = {}
        available = _deployment_condition("Available", "True", "MinimumReplicasAvailable",
                                          "Deployment has minimum availability.", at)
    elif rec.updated:
        counts = {"replicas": desired, "updatedReplicas": desired, "readyReplicas": desired,
                  "availableReplicas": desired}
        available = _deployment_condition("Available", "True", "MinimumReplicasAvailable",
                                          "Deployment has minimum availability.", at)
    elif rec.available:
        counts = {"replicas": desired + 1, "updatedReplicas": 1, "readyReplicas": desired,
                  "availableReplicas": desired, "unavailableReplicas": 1}
        available = _deployment_condition("Available", "True", "MinimumReplicasAvailable",
                                          "Deployment has minimum availability.", at)
    else:
        counts = {"replicas": desired, "updatedReplicas": desired, "unavailableReplicas": desired}
        available = _deployment_condition("Available", "False", "MinimumReplicasUnavailable",
                                          "Deployment does not have minimum availability.", at)
    if rec.failed is not None and desired > 0:
        progressing = _deployment_condition("Progressing", "False", "ProgressDeadlineExceeded",
                                            f'ReplicaSet "{rs}" has timed out progressing.', at)
    elif desired <= 0 or rec.updated:
        progressing = _deployment_condition("Progressing", "True", "NewReplicaSetAvailable",
                                            f'ReplicaSet "{rs}" has successfully progressed.', at)
    else:
        progressing = _deployment_condition("Progressing", "True", "ReplicaSetUpdated",
                                            f'ReplicaSet "{rs}" is progressing.', at)
    out.update(counts)
    out["conditions"] = [available, progressing]
    return out


def deployment_object(
    isvc: Mapping[str, Any], rec: DeploymentRecord, *, observed_generation: int | None = None
) -> dict[str, Any]:
    """The ``apps/v1`` Deployment ``rec.name`` as KServe creates it and Kubernetes serves it.

    ``spec.replicas`` is the record's fixed count (``autoscalerClass: none``); the strategy and
    limits carry the API server's defaults. ``status.observedGeneration`` is the record's generation
    unless ``observed_generation`` (the stored object's ``metadata.generation``) is given.
    """
    meta = _meta(isvc)
    labels = component_labels(isvc, rec)
    annotations = component_annotations(isvc, rec)
    selector = {"app": raw_service_label(rec.name)}
    return {
        "apiVersion": DEPLOYMENTS.api_version,
        "kind": DEPLOYMENTS.kind,
        "metadata": {
            "name": rec.name,
            "namespace": meta.get("namespace", "default"),
            "labels": dict(labels),
            "annotations": dict(annotations),
            "ownerReferences": [owner_reference(isvc)],
        },
        "spec": {
            "replicas": rec.replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": dict(labels), "annotations": dict(annotations)},
                "spec": {
                    "containers": _containers(isvc, rec),
                    "restartPolicy": "Always",
                    "terminationGracePeriodSeconds": 30,
                    "dnsPolicy": "ClusterFirst",
                    "schedulerName": "default-scheduler",
                    "securityContext": {},
                },
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
        "status": deployment_status(rec, observed_generation),
    }


def cluster_ip(namespace: str, name: str) -> str:
    """A stable ClusterIP for a Service (derived from its namespace and name, never 10.96.0.1)."""
    digest = int.from_bytes(hashlib.sha256(f"{namespace}/{name}".encode()).digest()[:8], "big")
    usable = SERVICE_CIDR.num_addresses - 3  # not the network, the kubernetes Service, the broadcast
    return str(SERVICE_CIDR.network_address + 2 + digest % usable)


def service_object(isvc: Mapping[str, Any], rec: DeploymentRecord) -> dict[str, Any]:
    """The ``v1`` Service ``rec.name``: ClusterIP, port 80 (named after the Service) → 8080/TCP."""
    meta = _meta(isvc)
    ns = meta.get("namespace", "default")
    ip = cluster_ip(ns, rec.name)
    return {
        "apiVersion": SERVICES.api_version,
        "kind": SERVICES.kind,
        "metadata": {
            "name": rec.name,
            "namespace": ns,
            "labels": component_labels(isvc, rec),
            "annotations": component_annotations(isvc, rec),
            "ownerReferences": [owner_reference(isvc)],
        },
        "spec": {
            "ports": [{"name": rec.name, "port": std.SERVICE_PORT, "protocol": "TCP",
                       "targetPort": std.CONTAINER_PORT}],
            "selector": {"app": raw_service_label(rec.name)},
            "clusterIP": ip,
            "clusterIPs": [ip],
            "type": "ClusterIP",
            "sessionAffinity": "None",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Cluster",
        },
        "status": {"loadBalancer": {}},
    }


def route_parent_status(
    route: Mapping[str, Any], accepted: bool, transition_time: str
) -> dict[str, Any]:
    """An HTTPRoute's ``status``: no parents until the Gateway accepted it, then Accepted and
    ResolvedRefs True for each parent."""
    if not accepted:
        return {"parents": []}
    parents = []
    for ref in (route.get("spec") or {}).get("parentRefs") or []:
        parents.append({
            "parentRef": dict(ref),
            "controllerName": GATEWAY_CONTROLLER,
            "conditions": [
                {"type": "Accepted", "status": "True", "reason": "Accepted",
                 "message": "Route is accepted", "lastTransitionTime": transition_time},
                {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs",
                 "message": "Resolved all the Object references for the Route",
                 "lastTransitionTime": transition_time},
            ],
        })
    return {"parents": parents}


def httproute_objects(
    isvc: Mapping[str, Any],
    state: StandardState,
    settings: StandardSettings | None = None,
    *,
    transition_time: str | None = None,
) -> list[dict[str, Any]]:
    """Both HTTPRoutes of ``isvc`` (``{isvc}-predictor``, then ``{isvc}``) with owner and status.

    Empty while ``state`` has no programmed routes (before the predictor was first ready, and
    while stopped). The backends are the programmed ones (``state.backends()``); the parent status
    says Accepted/ResolvedRefs once ``state.routes_accepted``. ``transition_time`` stamps the
    conditions (default: the isvc's creation time).
    """
    if state.routes is None:
        return []
    when = transition_time or str(_meta(isvc).get("creationTimestamp") or "")
    out = []
    for route in std.httproute_objects(isvc, state.backends(), settings):
        route["metadata"]["ownerReferences"] = [owner_reference(isvc)]
        route["status"] = route_parent_status(route, state.routes_accepted, when)
        out.append(route)
    return out


def standard_objects(
    isvc: Mapping[str, Any], state: StandardState, settings: StandardSettings | None = None
) -> list[tuple[ResourceType, dict[str, Any]]]:
    """Every object the API should serve for ``isvc``: per Deployment record its Deployment and
    Service (stable first), then the HTTPRoutes. Anything of these kinds owned by the isvc (its
    ``ownerReferences`` uid) and not listed here is an orphan to delete."""
    out: list[tuple[ResourceType, dict[str, Any]]] = []
    for rec in std.workloads(state):
        out.append((DEPLOYMENTS, deployment_object(isvc, rec)))
        out.append((SERVICES, service_object(isvc, rec)))
    out += [(HTTPROUTES, route) for route in httproute_objects(isvc, state, settings)]
    return out
