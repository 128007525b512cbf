"""The schemas the local API server serves, validates against and documents.

- Kubernetes' own kinds (meta types, Namespace, ConfigMap, Pod, Event, Service, Deployment), the
  Knative kinds and the Gateway API HTTPRoute are written here with a small schema DSL: what
  clients read and ``kubectl explain`` shows is typed, the rest is
  ``x-kubernetes-preserve-unknown-fields``.
- The InferenceService schema is data: ``kserve_nb/data/inferenceservice-v1beta1.schema.json``,
  an OpenAPI v3 subset of KServe's CRD (``serving.kserve.io`` v1beta1), loaded at import. Everything
  the release flow touches is typed, pod-spec-like content is typed loosely, and the transformer,
  explainer and status are preserve-unknown objects. ``tests/local/test_isvc_schema.py`` diffs it
  against KServe's SDK models and lists every deliberate difference.

:data:`TYPES` maps each served resource to its schema; :data:`REGISTRY` holds every named schema
(``$ref`` targets) by its OpenAPI name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from kserve_nb.local.store import (
    CONFIGMAPS,
    DEPLOYMENTS,
    EVENTS,
    HTTPROUTES,
    INFERENCESERVICES,
    KSERVICES,
    NAMESPACES,
    PODS,
    REVISIONS,
    SERVICES,
    ResourceType,
    is_builtin,
)

Schema = dict[str, Any]
REF_PREFIX = "#/components/schemas/"
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
INFERENCESERVICE_SCHEMA_FILE = "inferenceservice-v1beta1.schema.json"

# ------------------------------------------------------------------ schema helpers


def ref(name: str) -> Schema:
    """A ``$ref`` to the named schema of the document."""
    return {"$ref": REF_PREFIX + name}


def _s(description: str = "", **extra: Any) -> Schema:
    out: Schema = {"type": "string", **extra}
    if description:
        out["description"] = description
    return out


def _i(fmt: str = "int32", description: str = "") -> Schema:
    out: Schema = {"type": "integer", "format": fmt}
    if description:
        out["description"] = description
    return out


def _b() -> Schema:
    return {"type": "boolean"}


def _arr(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


def _map(values: Schema) -> Schema:
    return {"type": "object", "additionalProperties": values}


def _obj(props: Mapping[str, Schema], required_: Iterable[str] = (), description: str = "") -> Schema:
    out: Schema = {"type": "object", "properties": dict(props)}
    req = list(required_)
    if req:
        out["required"] = req
    if description:
        out["description"] = description
    return out


def _loose(description: str = "") -> Schema:
    """An object whose content is not checked (pod-spec-like fields we do not model)."""
    out: Schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if description:
        out["description"] = description
    return out


def _int_or_string() -> Schema:
    return {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]}


STRING_MAP = _map(_s())

# ---------------------------------------------------------------------- meta schemas

OBJECT_META = _obj(
    {
        "name": _s("Name must be unique within a namespace."),
        "generateName": _s("Optional prefix the server uses to generate a unique name."),
        "namespace": _s("Namespace defines the space within which each name must be unique."),
        "selfLink": _s("Deprecated."),
        "uid": _s("UID is the unique in time and space value for this object."),
        "resourceVersion": _s("An opaque value that represents the internal version of this object."),
        "generation": _i("int64", "A sequence number representing a specific generation of the desired state."),
        "creationTimestamp": _s("Server time when this object was created (RFC 3339).", format="date-time"),
        "deletionTimestamp": _s("RFC 3339 date and time at which this resource will be deleted.", format="date-time"),
        "deletionGracePeriodSeconds": _i("int64"),
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
        "ownerReferences": _arr(
            _obj(
                {
                    "apiVersion": _s(),
                    "kind": _s(),
                    "name": _s(),
                    "uid": _s(),
                    "controller": _b(),
                    "blockOwnerDeletion": _b(),
                },
                ("apiVersion", "kind", "name", "uid"),
            ),
            **{"x-kubernetes-patch-merge-key": "uid", "x-kubernetes-patch-strategy": "merge"},
        ),
        "finalizers": _arr(_s(), **{"x-kubernetes-patch-strategy": "merge"}),
        "managedFields": _arr(_loose()),
    },
    description="ObjectMeta is metadata that all persisted resources must have.",
)
LIST_META = _obj(
    {"resourceVersion": _s(), "continue": _s(), "remainingItemCount": _i("int64"), "selfLink": _s()}
)
STATUS = _obj(
    {
        "apiVersion": _s(),
        "kind": _s(),
        "metadata": ref(META + "ListMeta"),
        "status": _s(),
        "message": _s(),
        "reason": _s(),
        "details": _loose(),
        "code": _i("int32"),
    }
)
DELETE_OPTIONS = _obj(
    {
        "apiVersion": _s(),
        "kind": _s(),
        "dryRun": _arr(_s()),
        "gracePeriodSeconds": _i("int64"),
        "ignoreStoreReadErrorWithClusterBreakingPotential": _b(),
        "orphanDependents": _b(),
        "preconditions": _obj({"resourceVersion": _s(), "uid": _s()}),
        "propagationPolicy": _s(),
    }
)
WATCH_EVENT = _obj({"type": _s(), "object": _loose()}, ("type", "object"))
PATCH = {"type": "object",
         "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body."}

# ------------------------------------------------------------------ core v1 schemas

CONFIGMAP = _obj(
    {
        "apiVersion": _s(),
        "kind": _s(),
        "metadata": ref(META + "ObjectMeta"),
        "data": STRING_MAP,
        "binaryData": _map(_s(format="byte")),
        "immutable": _b(),
    },
    description="ConfigMap holds configuration data for pods to consume.",
)
NAMESPACE = _obj(
    {
        "apiVersion": _s(),
        "kind": _s(),
        "metadata": ref(META + "ObjectMeta"),
        "spec": _obj({"finalizers": _arr(_s())}),
        "status": _obj({"phase": _s(), "conditions": _arr(_loose())}),
    },
    description="Namespace provides a scope for Names.",
)
POD = _obj(
    {
        "apiVersion": _s(),
        "kind": _s(),
        "metadata": ref(META + "ObjectMeta"),
        "spec": _loose("Specification of the desired behavior of the pod."),
        "status": _loose("Most recently observed status of the pod."),
    },
    description="Pod is a collection of containers that can run on a host.",
)
REVISION = _obj(
    {
        "apiVersion": _s(),
        "kind": _s(),
        "metadata": ref(META + "ObjectMeta"),
        "spec": _loose("RevisionSpec holds the desired state of the Revision."),
        "status": _loose("RevisionStatus communicates the observed state of the Revision."),
    },
    description="Revision is an immutable snapshot of code and configuration.",
)

KSERVICE = _obj(
    {
        "apiVersion": _s(),
        "kind": _s(),
        "metadata": ref(META + "ObjectMeta"),
        "spec": _loose("ServiceSpec represents the configuration for the Service object."),
        "status": _loose("ServiceStatus represents the Status stanza of the Service resource."),
    },
    description="Service acts as a top-level container that manages a Route and Configuration.",
)
_TIME = _s(format="date-time")
EVENT = _obj(
    {
        "apiVersion": _s(),
        "kind": _s(),
        "metadata": ref(META + "ObjectMeta"),
        "involvedObject": _obj(
            {"apiVersion": _s(), "fieldPath": _s(), "kind": _s(), "name": _s(), "namespace": _s(),
             "resourceVersion": _s(), "uid": _s()},
            description="The object that this event is about.",
        ),
        "reason": _s("This should be a short, machine understandable string that gives the reason for the "
                     "transition into the object's current status."),
        "message": _s("A human-readable description of the status of this operation."),
        "source": _obj({"component": _s(), "host": _s()}, description="The component reporting this event."),
        "firstTimestamp": _TIME,
        "lastTimestamp": _TIME,
        "count": _i("int32", "The number of times this event has occurred."),
        "type": _s("Type of this event (Normal, Warning), new types could be added in the future"),
        "eventTime": {**_TIME, "nullable": True},
        "series": _loose(),
        "action": _s(),
        "related": _loose(),
        "reportingComponent": _s(),
        "reportingInstance": _s(),
    },
    ("metadata", "involvedObject"),
    "Event is a report of an event somewhere in the cluster.",
)

_CONDITION_TIME = _s(format="date-time")
DEPLOYMENT = _obj(
    {
        "apiVersion": _s(),
        "kind": _s(),
        "metadata": ref(META + "ObjectMeta"),
        "spec": _obj(
            {
                "replicas": _i("int32", "Number of desired pods. Defaults to 1."),
                "selector": _obj(
                    {"matchLabels": STRING_MAP, "matchExpressions": _arr(_loose())},
                    description="Label selector for pods. It must match the pod template's labels.",
                ),
                "template": _loose("Template describes the pods that will be created."),
                "strategy": _obj(
                    {"type": _s("Type of deployment. Can be \"Recreate\" or \"RollingUpdate\"."),
                     "rollingUpdate": _obj({"maxSurge": _int_or_string(), "maxUnavailable": _int_or_string()})},
                    description="The deployment strategy to use to replace existing pods with new ones.",
                ),
                "minReadySeconds": _i("int32"),
                "revisionHistoryLimit": _i("int32"),
                "paused": _b(),
                "progressDeadlineSeconds": _i("int32"),
            },
            ("selector", "template"),
            "DeploymentSpec is the specification of the desired behavior of the Deployment.",
        ),
        "status": _obj(
            {
                "observedGeneration": _i("int64", "The generation observed by the deployment controller."),
                "replicas": _i("int32", "Total number of non-terminating pods targeted by this deployment."),
                "updatedReplicas": _i("int32", "Total number of non-terminating pods targeted by this "
                                      "deployment that have the desired template spec."),
                "readyReplicas": _i("int32", "Total number of non-terminating pods targeted by this "
                                    "Deployment with a Ready Condition."),
                "availableReplicas": _i("int32", "Total number of available non-terminating pods (ready for "
                                        "at least minReadySeconds) targeted by this deployment."),
                "unavailableReplicas": _i("int32"),
                "terminatingReplicas": _i("int32"),
                "collisionCount": _i("int32"),
                "conditions": _arr(
                    _obj(
                        {"type": _s(), "status": _s(), "reason": _s(), "message": _s(),
                         "lastUpdateTime": _CONDITION_TIME, "lastTransitionTime": _CONDITION_TIME},
                        ("type", "status"),
                    ),
                    **{"x-kubernetes-patch-merge-key": "type", "x-kubernetes-patch-strategy": "merge"},
                ),
            },
            description="Most recently observed status of the Deployment.",
        ),
    },
    description="Deployment enables declarative updates for Pods and ReplicaSets.",
)
SERVICE = _obj(
    {
        "apiVersion": _s(),
        "kind": _s(),
        "metadata": ref(META + "ObjectMeta"),
        "spec": _obj(
            {
                "ports": _arr(
                    _obj(
                        {"name": _s(), "protocol": _s(), "appProtocol": _s(),
                         "port": _i("int32", "The port that will be exposed by this service."),
                         "targetPort": _int_or_string(), "nodePort": _i("int32")},
                        ("port",),
                    ),
                    **{"x-kubernetes-list-map-keys": ["port", "protocol"], "x-kubernetes-list-type": "map"},
                ),
                "selector": STRING_MAP,
                "clusterIP": _s("clusterIP is the IP address of the service."),
                "clusterIPs": _arr(_s()),
                "type": _s("type determines how the Service is exposed. Defaults to ClusterIP."),
                "externalIPs": _arr(_s()),
                "sessionAffinity": _s(),
                "loadBalancerIP": _s(),
                "loadBalancerSourceRanges": _arr(_s()),
                "externalName": _s(),
                "externalTrafficPolicy": _s(),
                "healthCheckNodePort": _i("int32"),
                "publishNotReadyAddresses": _b(),
                "sessionAffinityConfig": _loose(),
                "ipFamilies": _arr(_s()),
                "ipFamilyPolicy": _s(),
                "allocateLoadBalancerNodePorts": _b(),
                "loadBalancerClass": _s(),
                "internalTrafficPolicy": _s(),
                "trafficDistribution": _s(),
            },
            description="ServiceSpec describes the attributes that a user creates on a service.",
        ),
        "status": _obj(
            {"loadBalancer": _loose("LoadBalancer contains the current status of the load-balancer, if one is "
                                    "present."),
             "conditions": _arr(_loose())},
            description="Most recently observed status of the service.",
        ),
    },
    description="Service is a named abstraction of software service (for example, mysql) consisting of "
                "local port (for example 3306) that the proxy listens on, and the selector that "
                "determines which pods will answer requests sent through the proxy.",
)
_PARENT_REF = _obj(
    {"group": _s(), "kind": _s(), "namespace": _s(), "name": _s(), "sectionName": _s(), "port": _i("int32")},
    ("name",),
    "ParentReference identifies an API object (usually a Gateway) that can be considered a parent of this resource.",
)
HTTPROUTE = _obj(
    {
        "apiVersion": _s(),
        "kind": _s(),
        "metadata": ref(META + "ObjectMeta"),
        "spec": _obj(
            {
                "hostnames": _arr(_s(), description="Hostnames defines a set of hostnames that should match "
                                  "against the HTTP Host header to select a HTTPRoute used to process the request."),
                "parentRefs": _arr(_PARENT_REF, description="ParentRefs references the resources (usually "
                                   "Gateways) that a Route wants to be attached to."),
                "rules": _arr(
                    _obj(
                        {
                            "name": _s(),
                            "matches": _arr(_loose()),
                            "filters": _arr(_loose()),
                            "backendRefs": _arr(
                                _obj(
                                    {"group": _s(), "kind": _s(), "name": _s(), "namespace": _s(),
                                     "port": _i("int32"), "weight": _i("int32"), "filters": _arr(_loose())},
                                    ("name",),
                                ),
                                description="BackendRefs defines the backend(s) where matching requests should "
                                            "be sent.",
                            ),
                            "timeouts": _obj({"request": _s(), "backendRequest": _s()}),
                            "retry": _loose(),
                            "sessionPersistence": _loose(),
                        }
                    ),
                    description="Rules are a list of HTTP matchers, filters and actions.",
                ),
            },
            description="Spec defines the desired state of HTTPRoute.",
        ),
        "status": _obj(
            {
                "parents": _arr(
                    _obj(
                        {"parentRef": _PARENT_REF, "controllerName": _s(), "conditions": _arr(_loose())},
                        ("controllerName", "parentRef"),
                    ),
                    description="Parents is a list of parent resources (usually Gateways) that are associated "
                                "with the route, and the status of the route with respect to each parent.",
                ),
            },
            ("parents",),
            "Status defines the current state of HTTPRoute.",
        ),
    },
    description="HTTPRoute provides a way to route HTTP requests.",
)

# ------------------------------------------------------------- InferenceService schema


def load_inferenceservice_schema() -> Schema:
    """The InferenceService schema from the package data (an OpenAPI v3 object schema)."""
    text = files("kserve_nb").joinpath("data", INFERENCESERVICE_SCHEMA_FILE).read_text(encoding="utf-8")
    schema = json.loads(text)
    if not isinstance(schema, dict) or schema.get("type") != "object" or "properties" not in schema:
        raise ValueError(f"{INFERENCESERVICE_SCHEMA_FILE} is not an OpenAPI object schema")
    return schema


INFERENCESERVICE = load_inferenceservice_schema()

# ------------------------------------------------------------------------ registry


@dataclass(frozen=True)
class TypeInfo:
    """How a served resource type is described in OpenAPI."""

    rt: ResourceType
    schema_name: str
    schema: Schema
    description: str


def _schema_prefix(rt: ResourceType) -> str:
    if is_builtin(rt):
        return f"io.k8s.api.{rt.group or 'core'}.{rt.version}."
    # CRD naming: the group reversed (serving.kserve.io -> io.kserve.serving), then the version.
    return ".".join(reversed(rt.group.split("."))) + f".{rt.version}."


TYPES: dict[str, TypeInfo] = {
    rt.key: TypeInfo(rt, _schema_prefix(rt) + rt.kind, schema, schema.get("description", ""))
    for rt, schema in (
        (NAMESPACES, NAMESPACE),
        (CONFIGMAPS, CONFIGMAP),
        (PODS, POD),
        (SERVICES, SERVICE),
        (EVENTS, EVENT),
        (DEPLOYMENTS, DEPLOYMENT),
        (INFERENCESERVICES, INFERENCESERVICE),
        (REVISIONS, REVISION),
        (KSERVICES, KSERVICE),
        (HTTPROUTES, HTTPROUTE),
    )
}

SHARED_SCHEMAS: dict[str, Schema] = {
    META + "ObjectMeta": OBJECT_META,
    META + "ListMeta": LIST_META,
    META + "Status": STATUS,
    META + "DeleteOptions": DELETE_OPTIONS,
    META + "WatchEvent": WATCH_EVENT,
    META + "Patch": PATCH,
}


def _registry() -> dict[str, Schema]:
    out = dict(SHARED_SCHEMAS)
    for info in TYPES.values():
        out[info.schema_name] = info.schema
    return out


REGISTRY = _registry()


def list_schema(info: TypeInfo) -> Schema:
    """The ``<Kind>List`` schema of a served type."""
    rt = info.rt
    schema = _obj(
        {
            "apiVersion": _s(),
            "kind": _s(),
            "items": _arr(ref(info.schema_name)),
            "metadata": ref(META + "ListMeta"),
        },
        ("items",),
        f"{rt.kind}List is a list of {rt.kind}",
    )
    schema["x-kubernetes-group-version-kind"] = [{"group": rt.group, "kind": rt.kind + "List", "version": rt.version}]
    return schema
