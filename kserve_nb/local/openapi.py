"""How the local API server describes its API: OpenAPI schemas and documents, discovery, validation.

Three uses of one set of schemas:

- :func:`validate` checks a request body the way a real API server decodes and validates it:
  unknown fields (reported for ``fieldValidation=Strict``/``Warn`` and pruned), type and enum
  errors (422 for custom resources), ``required`` fields. ``null`` values of non-nullable fields
  are dropped first, as the CRD machinery does.
- :func:`v3_document` / :func:`v3_root` serve ``/openapi/v3``. kubectl reads the PATCH operation of
  a kind to learn that the server supports ``fieldValidation`` (then it validates server-side
  instead of client-side) and which patch types it accepts (custom resources: no strategic merge
  patch, so ``kubectl apply`` sends a JSON merge patch).
- :func:`v2_document` serves ``/openapi/v2`` (JSON) for clients that still read Swagger 2.0.
- :func:`resource_list`, :func:`api_group` and :func:`aggregated_discovery` are the discovery
  documents (legacy ``APIResourceList``/``APIGroupList`` and aggregated ``apidiscovery.k8s.io/v2``,
  which kubectl 1.32 asks for first).

The InferenceService schema is a faithful subset of KServe's CRD (``serving.kserve.io`` v1beta1):
everything the canary flow touches is typed, pod-spec-like content is typed loosely, and the
transformer, explainer and status are ``x-kubernetes-preserve-unknown-fields`` objects.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kserve_nb.local.admission import FieldError, invalid, not_supported, required
from kserve_nb.local.store import (
    CONFIGMAPS,
    DEPLOYMENTS,
    EVENTS,
    HTTPROUTES,
    INFERENCESERVICES,
    KSERVICES,
    NAMESPACES,
    PODS,
    RESOURCE_TYPES,
    REVISIONS,
    SERVICES,
    ResourceType,
    is_builtin,
)

Schema = dict[str, Any]
REF_PREFIX = "#/components/schemas/"
META = "io.k8s.apimachinery.pkg.apis.meta.v1."

# --------------------------------------------------------------------- schema helpers


def _ref(name: str) -> Schema:
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
QUANTITY_MAP = _map(_int_or_string())

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
        "metadata": _ref(META + "ListMeta"),
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
PATCH = {"type": "object", "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body."}

# ------------------------------------------------------------------ core v1 schemas

CONFIGMAP = _obj(
    {
        "apiVersion": _s(),
        "kind": _s(),
        "metadata": _ref(META + "ObjectMeta"),
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
        "metadata": _ref(META + "ObjectMeta"),
        "spec": _obj({"finalizers": _arr(_s())}),
        "status": _obj({"phase": _s(), "conditions": _arr(_loose())}),
    },
    description="Namespace provides a scope for Names.",
)
POD = _obj(
    {
        "apiVersion": _s(),
        "kind": _s(),
        "metadata": _ref(META + "ObjectMeta"),
        "spec": _loose("Specification of the desired behavior of the pod."),
        "status": _loose("Most recently observed status of the pod."),
    },
    description="Pod is a collection of containers that can run on a host.",
)
REVISION = _obj(
    {
        "apiVersion": _s(),
        "kind": _s(),
        "metadata": _ref(META + "ObjectMeta"),
        "spec": _loose("RevisionSpec holds the desired state of the Revision."),
        "status": _loose("RevisionStatus communicates the observed state of the Revision."),
    },
    description="Revision is an immutable snapshot of code and configuration.",
)

KSERVICE = _obj(
    {
        "apiVersion": _s(),
        "kind": _s(),
        "metadata": _ref(META + "ObjectMeta"),
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
        "metadata": _ref(META + "ObjectMeta"),
        "involvedObject": _obj(
            {"apiVersion": _s(), "fieldPath": _s(), "kind": _s(), "name": _s(), "namespace": _s(),
             "resourceVersion": _s(), "uid": _s()},
            description="The object that this event is about.",
        ),
        "reason": _s("This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
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
        "metadata": _ref(META + "ObjectMeta"),
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
        "metadata": _ref(META + "ObjectMeta"),
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
            {"loadBalancer": _loose("LoadBalancer contains the current status of the load-balancer, if one is present."),
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
        "metadata": _ref(META + "ObjectMeta"),
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
                                description="BackendRefs defines the backend(s) where matching requests should be sent.",
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

ENV_VAR = _obj({"name": _s(), "value": _s(), "valueFrom": _loose()}, ("name",))
CONTAINER_FIELDS: dict[str, Schema] = {
    "name": _s("Name of the container specified as a DNS_LABEL."),
    "image": _s("Container image name."),
    "imagePullPolicy": _s(),
    "command": _arr(_s()),
    "args": _arr(_s()),
    "workingDir": _s(),
    "ports": _arr(
        _obj(
            {
                "containerPort": _i("int32"),
                "hostIP": _s(),
                "hostPort": _i("int32"),
                "name": _s(),
                "protocol": _s(),
            },
            ("containerPort",),
        )
    ),
    "env": _arr(ENV_VAR, **{"x-kubernetes-list-map-keys": ["name"], "x-kubernetes-list-type": "map"}),
    "envFrom": _arr(_loose()),
    "resources": _obj({"limits": QUANTITY_MAP, "requests": QUANTITY_MAP, "claims": _arr(_loose())}),
    "resizePolicy": _arr(_loose()),
    "restartPolicy": _s(),
    "volumeMounts": _arr(
        _obj(
            {
                "name": _s(),
                "mountPath": _s(),
                "readOnly": _b(),
                "subPath": _s(),
                "subPathExpr": _s(),
                "mountPropagation": _s(),
                "recursiveReadOnly": _s(),
            },
            ("mountPath", "name"),
        )
    ),
    "volumeDevices": _arr(_loose()),
    "livenessProbe": _loose(),
    "readinessProbe": _loose(),
    "startupProbe": _loose(),
    "lifecycle": _loose(),
    "securityContext": _loose(),
    "terminationMessagePath": _s(),
    "terminationMessagePolicy": _s(),
    "stdin": _b(),
    "stdinOnce": _b(),
    "tty": _b(),
}
CONTAINER = _obj(CONTAINER_FIELDS, ("name",), "A single application container.")

PREDICTOR_EXTENSION_FIELDS: dict[str, Schema] = {
    **CONTAINER_FIELDS,
    "storageUri": _s("This field points to the location of the trained model which is mounted onto the pod."),
    "runtimeVersion": _s("Runtime version of the predictor docker image"),
    "protocolVersion": _s("Protocol version to use by the predictor (i.e. v1 or v2 or grpc-v1 or grpc-v2)"),
    "storage": _loose("Storage Spec for model location"),
    "confidential": _loose(),
}
FRAMEWORK_SPEC = _obj(PREDICTOR_EXTENSION_FIELDS, description="Legacy framework predictor (rewritten into model).")
MODEL_SPEC = _obj(
    {
        **PREDICTOR_EXTENSION_FIELDS,
        "modelFormat": _obj(
            {"name": _s("Name of the model format."), "version": _s("Version of the model format.")},
            ("name",),
            "ModelFormat being served.",
        ),
        "runtime": _s("Specific ClusterServingRuntime/ServingRuntime name to use for deployment."),
    },
    ("modelFormat",),
    "Model spec for any arbitrary framework.",
)

POD_SPEC_FIELDS: dict[str, Schema] = {
    "containers": _arr(CONTAINER),
    "initContainers": _arr(CONTAINER),
    "ephemeralContainers": _arr(_loose()),
    "volumes": _arr(_loose()),
    "restartPolicy": _s(),
    "terminationGracePeriodSeconds": _i("int64"),
    "activeDeadlineSeconds": _i("int64"),
    "dnsPolicy": _s(),
    "dnsConfig": _loose(),
    "nodeSelector": STRING_MAP,
    "serviceAccountName": _s(),
    "serviceAccount": _s(),
    "automountServiceAccountToken": _b(),
    "nodeName": _s(),
    "hostNetwork": _b(),
    "hostPID": _b(),
    "hostIPC": _b(),
    "hostUsers": _b(),
    "shareProcessNamespace": _b(),
    "securityContext": _loose(),
    "imagePullSecrets": _arr(_loose()),
    "hostname": _s(),
    "subdomain": _s(),
    "affinity": _loose(),
    "schedulerName": _s(),
    "tolerations": _arr(_loose()),
    "hostAliases": _arr(_loose()),
    "priorityClassName": _s(),
    "priority": _i("int32"),
    "readinessGates": _arr(_loose()),
    "runtimeClassName": _s(),
    "enableServiceLinks": _b(),
    "preemptionPolicy": _s(),
    "overhead": QUANTITY_MAP,
    "topologySpreadConstraints": _arr(_loose()),
    "setHostnameAsFQDN": _b(),
    "os": _loose(),
    "schedulingGates": _arr(_loose()),
    "resourceClaims": _arr(_loose()),
    "resources": _loose(),
}
COMPONENT_EXTENSION_FIELDS: dict[str, Schema] = {
    "minReplicas": _i("int32", "Minimum number of replicas, defaults to 1 but can be set to 0 to enable scale-to-zero."),
    "maxReplicas": _i("int32", "Maximum number of replicas for autoscaling."),
    "scaleTarget": _i("int32", "ScaleTarget specifies the integer target value of the metric type the Autoscaler watches for."),
    "scaleMetric": _s("ScaleMetric defines the scaling metric type watched by autoscaler.",
                      enum=["cpu", "memory", "concurrency", "rps"]),
    "scaleMetricType": _s("Type of metric to use.", enum=["Utilization", "Value", "AverageValue"]),
    "autoScaling": _loose("AutoScaling autoscaling spec which is backed up HPA or KEDA."),
    "containerConcurrency": _i("int64", "ContainerConcurrency specifies how many requests can be processed concurrently."),
    "timeout": _i("int64", "TimeoutSeconds specifies the number of seconds to wait before timing out a request to the component."),
    "canaryTrafficPercent": _i(
        "int64",
        "CanaryTrafficPercent defines the traffic split percentage between the candidate revision and the last ready revision",
    ),
    "logger": _loose("Activate request/response logging and logger configurations"),
    "batcher": _loose("Activate request batching and batching configurations"),
    "labels": STRING_MAP,
    "annotations": STRING_MAP,
    "deploymentStrategy": _loose("The deployment strategy to use to replace existing pods with new ones."),
}
PREDICTOR_SPEC = _obj(
    {
        **{key: FRAMEWORK_SPEC for key in ("sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx",
                                           "huggingface", "pmml", "lightgbm", "paddle")},
        "model": MODEL_SPEC,
        "storageUris": _arr(_obj({"uri": _s(), "mountPath": _s()}, ("uri",))),
        "workerSpec": _loose("WorkerSpec for enabling multi-node/multi-gpu"),
        "name": _s("Name of the predictor workload."),
        **POD_SPEC_FIELDS,
        **COMPONENT_EXTENSION_FIELDS,
    },
    description="PredictorSpec defines the configuration for a predictor. Users must specify exactly one implementation.",
)
INFERENCESERVICE = _obj(
    {
        "apiVersion": _s("APIVersion defines the versioned schema of this representation of an object."),
        "kind": _s("Kind is a string value representing the REST resource this object represents."),
        "metadata": _ref(META + "ObjectMeta"),
        "spec": _obj(
            {
                "predictor": PREDICTOR_SPEC,
                "transformer": _loose("Transformer for pre/post-processing."),
                "explainer": _loose("Explainer for the model."),
                "canary": _arr(_loose(), description="Standard-mode canaries (KServe >= 0.20)."),
                "tracing": _loose(),
            },
            ("predictor",),
            "InferenceServiceSpec is the top level type for this resource",
        ),
        "status": _loose("InferenceServiceStatus defines the observed state of InferenceService"),
    },
    description="InferenceService is the Schema for the InferenceServices API",
)

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

# ---------------------------------------------------------------------- validation


@dataclass
class SchemaResult:
    """Outcome of :func:`validate`: the pruned object, unknown field paths and field errors."""

    obj: Any
    unknown: list[str] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)
    # (path, actual JSON type, expected type) of each type mismatch, for built-in kinds' 400 text.
    type_errors: list[tuple[str, str, str]] = field(default_factory=list)


def json_type(value: Any) -> str:
    """The JSON type name of a value, as OpenAPI validation errors print it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _resolve(schema: Schema) -> Schema:
    while True:
        if "$ref" in schema:
            schema = REGISTRY[schema["$ref"][len(REF_PREFIX):]]
        elif "allOf" in schema and len(schema["allOf"]) == 1 and "type" not in schema:
            schema = schema["allOf"][0]
        else:
            return schema


_MISSING = object()


class _Walker:
    def __init__(self) -> None:
        self.unknown: list[str] = []
        self.errors: list[FieldError] = []
        self.type_errors: list[tuple[str, str, str]] = []

    def type_error(self, path: str, value: Any, expected: str) -> None:
        actual = json_type(value)
        self.type_errors.append((path, actual, expected))
        self.errors.append(invalid(path, actual, f'{path} in body must be of type {expected}: "{actual}"'))

    def walk(self, value: Any, schema: Schema, path: str) -> Any:
        schema = _resolve(schema)
        if schema.get("x-kubernetes-int-or-string"):
            if isinstance(value, bool) or not isinstance(value, (int, str, float)):
                self.type_error(path, value, "integer,string")
            return value
        expected = schema.get("type")
        if expected is None:
            return value  # preserve-unknown with no type: anything goes
        checker = _TYPE_CHECKS[expected]
        if not checker(value):
            self.type_error(path, value, expected)
            return value
        if expected == "integer" and isinstance(value, float):
            value = int(value)  # 10.0 decodes as an integer in Go's JSON → unstructured path
        if "enum" in schema and value not in schema["enum"]:
            self.errors.append(not_supported(path, value, list(schema["enum"])))
        if expected == "object":
            return self.walk_object(value, schema, path)
        if expected == "array":
            items = schema.get("items")
            if items is None:
                return value
            return [self.walk(item, items, f"{path}[{i}]") for i, item in enumerate(value)]
        return value

    def walk_object(self, value: dict[str, Any], schema: Schema, path: str) -> dict[str, Any]:
        props: Mapping[str, Schema] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
        out: dict[str, Any] = {}
        for key, item in value.items():
            child_path = f"{path}.{key}" if path else key
            sub = props.get(key)
            if sub is None and isinstance(additional, dict):
                sub = additional
            if sub is None:
                if preserve or additional is True:
                    out[key] = item
                else:
                    self.unknown.append(child_path)
                continue
            if item is None and not _resolve(sub).get("nullable"):
                continue  # nulls of non-nullable fields are pruned, as for CRDs
            out[key] = self.walk(item, sub, child_path)
        for key in schema.get("required") or ():
            if key not in out:
                self.errors.append(required(f"{path}.{key}" if path else key))
        return out


_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer() and -(2.0**63) <= v < 2.0**63),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def validate(obj: Mapping[str, Any], rt: ResourceType) -> SchemaResult:
    """Check ``obj`` against the schema of ``rt``.

    Returns the object with unknown fields and nulls pruned, the dotted paths of unknown fields
    (``spec.predictor.foo``, ``spec.predictor.containers[0].bar``) and field errors (wrong types,
    unsupported enum values, missing required fields).
    """
    walker = _Walker()
    pruned = walker.walk(dict(obj), TYPES[rt.key].schema, "")
    # Sorted, so that messages and warnings do not depend on the order of keys in the body.
    return SchemaResult(pruned, sorted(walker.unknown), walker.errors, walker.type_errors)


def go_type_error(kind: str, path: str, actual: str, expected: str) -> str:
    """A type mismatch phrased as Go's JSON decoder reports it for built-in kinds (a 400 there)."""
    go_actual = {"boolean": "bool", "integer": "number", "number": "number"}.get(actual, actual)
    go_expected = {"boolean": "bool", "integer": "int64", "object": "map[string]interface {}",
                   "array": "[]interface {}"}.get(expected, expected)
    return f"json: cannot unmarshal {go_actual} into Go struct field {kind}.{path} of type {go_expected}"


# ----------------------------------------------------------------------- documents

_QUERY_DESCRIPTIONS = {
    "dryRun": "When present, indicates that modifications should not be persisted. Valid values: All",
    "fieldManager": "fieldManager is a name associated with the actor or entity that is making these changes.",
    "fieldValidation": (
        "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) "
        "containing unknown or duplicate fields. Valid values are: - Ignore - Warn (default) - Strict"
    ),
    "force": "Force is going to \"force\" Apply requests. It must be unset for non-apply patch requests.",
    "pretty": "If 'true', then the output is pretty printed.",
    "allowWatchBookmarks": "allowWatchBookmarks requests watch events with type \"BOOKMARK\".",
    "continue": "The continue option should be set when retrieving more results from the server.",
    "fieldSelector": "A selector to restrict the list of returned objects by their fields.",
    "labelSelector": "A selector to restrict the list of returned objects by their labels.",
    "limit": "limit is a maximum number of responses to return for a list call.",
    "resourceVersion": "resourceVersion sets a constraint on what resource versions a request may be served from.",
    "resourceVersionMatch": "resourceVersionMatch determines how resourceVersion is applied to list calls.",
    "sendInitialEvents": "`sendInitialEvents=true` may be set together with `watch=true`.",
    "timeoutSeconds": "Timeout for the list/watch call.",
    "watch": "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications.",
    "gracePeriodSeconds": "The duration in seconds before the object should be deleted.",
    "propagationPolicy": "Whether and how garbage collection will be performed.",
    "orphanDependents": "Deprecated: please use the PropagationPolicy.",
}
_QUERY_TYPES = {"force": "boolean", "allowWatchBookmarks": "boolean", "sendInitialEvents": "boolean",
                "watch": "boolean", "orphanDependents": "boolean", "limit": "integer",
                "timeoutSeconds": "integer", "gracePeriodSeconds": "integer"}
WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")
LIST_PARAMS = ("allowWatchBookmarks", "continue", "fieldSelector", "labelSelector", "limit",
               "resourceVersion", "resourceVersionMatch", "sendInitialEvents", "timeoutSeconds", "watch")
DELETE_PARAMS = ("dryRun", "gracePeriodSeconds", "orphanDependents", "propagationPolicy")
READ_PARAMS = ("resourceVersion",)


def _query(name: str) -> Schema:
    schema: Schema = {"type": _QUERY_TYPES.get(name, "string"), "uniqueItems": True}
    return {"name": name, "in": "query", "description": _QUERY_DESCRIPTIONS[name], "schema": schema}


def _path_param(name: str, description: str) -> Schema:
    return {"name": name, "in": "path", "description": description, "required": True,
            "schema": {"type": "string", "uniqueItems": True}}


def patch_content_types(rt: ResourceType) -> list[str]:
    """PATCH media types the server accepts for ``rt`` (custom resources: no strategic merge)."""
    types = ["application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json"]
    if is_builtin(rt):
        types.append("application/strategic-merge-patch+json")
    return types


def _content(schema_name: str, types: Iterable[str] = ("application/json", "application/yaml")) -> Schema:
    return {t: {"schema": _ref(schema_name)} for t in types}


def _op_id(verb: str, rt: ResourceType, *, namespaced: bool, suffix: str = "",
           all_namespaces: bool = False) -> str:
    # Kubernetes' operation ids: listCoreV1NamespacedConfigMap, readServingKserveIoV1beta1Namespaced…Status,
    # listServingKserveIoV1beta1InferenceServiceForAllNamespaces.
    if rt.group:
        prefix = "".join(part.capitalize() for part in rt.group.split(".")) + rt.version.capitalize()
    else:
        prefix = "CoreV1"
    if all_namespaces:
        return f"{verb}{prefix}{rt.kind}ForAllNamespaces"
    scope = "Namespaced" if namespaced else ""
    return f"{verb}{prefix}{scope}{rt.kind}{suffix}"


def _gvk(rt: ResourceType) -> dict[str, str]:
    return {"group": rt.group, "version": rt.version, "kind": rt.kind}


def _operation(rt: ResourceType, action: str, description: str, op_id: str, params: Iterable[str],
               response: str, *, request: str | None = None, request_types: Iterable[str] = (),
               created: bool = False) -> Schema:
    op: Schema = {
        "tags": [_tag(rt)],
        "description": description,
        "operationId": op_id,
        "parameters": [_query(p) for p in params],
        "responses": {
            "200": {"description": "OK", "content": _content(response)},
            "401": {"description": "Unauthorized"},
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(rt),
    }
    if created:
        op["responses"]["201"] = {"description": "Created", "content": _content(response)}
    if request:
        op["requestBody"] = {"content": _content(request, request_types), "required": True}
    if not op["parameters"]:
        del op["parameters"]
    return op


def _tag(rt: ResourceType) -> str:
    if not rt.group:
        return "core_v1"
    if is_builtin(rt):
        return f"{rt.group}_{rt.version}"
    return "".join(p if i == 0 else p.capitalize() for i, p in enumerate(rt.group.split("."))) + "_" + rt.version


def _paths_for(rt: ResourceType) -> dict[str, Schema]:
    info = TYPES[rt.key]
    base = f"/apis/{rt.group}/{rt.version}" if rt.group else "/api/v1"
    list_name = info.schema_name + "List"
    kind = rt.kind
    writable = rt.user_writable
    ns_param = _path_param("namespace", "object name and auth scope, such as for teams and projects")
    name_param = _path_param("name", f"name of the {kind}")
    pretty = _query("pretty")
    paths: dict[str, Schema] = {}

    collection = f"{base}/namespaces/{{namespace}}/{rt.plural}" if rt.namespaced else f"{base}/{rt.plural}"
    item = f"{collection}/{{name}}"
    scope_params = [ns_param] if rt.namespaced else []
    namespaced = rt.namespaced

    coll: Schema = {
        "get": _operation(rt, "list", f"list or watch objects of kind {kind}",
                          _op_id("list", rt, namespaced=namespaced), LIST_PARAMS, list_name),
        "parameters": scope_params + [pretty],
    }
    if writable:
        coll["post"] = _operation(rt, "post", f"create a {kind}", _op_id("create", rt, namespaced=namespaced),
                                  WRITE_PARAMS, info.schema_name, request=info.schema_name,
                                  request_types=("application/json", "application/yaml"), created=True)
    paths[collection] = coll

    obj: Schema = {
        "get": _operation(rt, "get", f"read the specified {kind}", _op_id("read", rt, namespaced=namespaced),
                          READ_PARAMS, info.schema_name),
        "parameters": [name_param] + scope_params + [pretty],
    }
    if writable:
        obj["put"] = _operation(rt, "put", f"replace the specified {kind}", _op_id("replace", rt, namespaced=namespaced),
                                WRITE_PARAMS, info.schema_name, request=info.schema_name,
                                request_types=("application/json", "application/yaml"), created=True)
        obj["patch"] = _operation(rt, "patch", f"partially update the specified {kind}",
                                  _op_id("patch", rt, namespaced=namespaced), WRITE_PARAMS + ("force",),
                                  info.schema_name, request=META + "Patch",
                                  request_types=patch_content_types(rt), created=True)
        obj["delete"] = _operation(rt, "delete", f"delete a {kind}", _op_id("delete", rt, namespaced=namespaced),
                                   DELETE_PARAMS, info.schema_name, request=META + "DeleteOptions",
                                   request_types=("application/json", "application/yaml"))
    paths[item] = obj

    if rt.has_status and writable:
        paths[f"{item}/status"] = {
            "get": _operation(rt, "get", f"read status of the specified {kind}",
                              _op_id("read", rt, namespaced=namespaced, suffix="Status"), READ_PARAMS, info.schema_name),
            "put": _operation(rt, "put", f"replace status of the specified {kind}",
                              _op_id("replace", rt, namespaced=namespaced, suffix="Status"), WRITE_PARAMS,
                              info.schema_name, request=info.schema_name,
                              request_types=("application/json", "application/yaml"), created=True),
            "patch": _operation(rt, "patch", f"partially update status of the specified {kind}",
                                _op_id("patch", rt, namespaced=namespaced, suffix="Status"), WRITE_PARAMS + ("force",),
                                info.schema_name, request=META + "Patch",
                                request_types=patch_content_types(rt), created=True),
            "parameters": [name_param] + scope_params + [pretty],
        }
    if rt.namespaced:
        paths[f"{base}/{rt.plural}"] = {
            "get": _operation(rt, "list", f"list or watch objects of kind {kind}",
                              _op_id("list", rt, namespaced=False, all_namespaces=True), LIST_PARAMS, list_name),
            "parameters": [pretty],
        }
    return paths


def _list_schema(info: TypeInfo) -> Schema:
    rt = info.rt
    schema = _obj(
        {
            "apiVersion": _s(),
            "kind": _s(),
            "items": _arr(_ref(info.schema_name)),
            "metadata": _ref(META + "ListMeta"),
        },
        ("items",),
        f"{rt.kind}List is a list of {rt.kind}",
    )
    schema["x-kubernetes-group-version-kind"] = [{"group": rt.group, "kind": rt.kind + "List", "version": rt.version}]
    return schema


def _collect_refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            name = ref[len(REF_PREFIX):]
            if name not in found:
                found.add(name)
                _collect_refs(REGISTRY.get(name), found)  # list schemas are not in the registry
        for value in node.values():
            _collect_refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _collect_refs(value, found)


def group_versions() -> list[str]:
    """The ``/openapi/v3`` path keys of our group-versions: ``api/v1``, ``apis/<group>/<version>``."""
    out: list[str] = []
    for rt in RESOURCE_TYPES:
        key = f"apis/{rt.group}/{rt.version}" if rt.group else "api/v1"
        if key not in out:
            out.append(key)
    return out


def _types_of(gv: str) -> list[TypeInfo]:
    return [info for info in TYPES.values()
            if (f"apis/{info.rt.group}/{info.rt.version}" if info.rt.group else "api/v1") == gv]


def v3_document(gv: str) -> Schema | None:
    """The OpenAPI 3.0 document of one group-version (``api/v1`` or ``apis/<group>/<version>``)."""
    infos = _types_of(gv)
    if not infos:
        return None
    paths: dict[str, Schema] = {}
    schemas: dict[str, Schema] = {}
    for info in infos:
        paths.update(_paths_for(info.rt))
        schema = copy.deepcopy(info.schema)
        schema["x-kubernetes-group-version-kind"] = [_gvk(info.rt)]
        schemas[info.schema_name] = schema
        schemas[info.schema_name + "List"] = _list_schema(info)
    refs: set[str] = set()
    _collect_refs({"paths": paths, "schemas": schemas}, refs)
    for name in sorted(refs):
        if name not in schemas:
            schemas[name] = copy.deepcopy(REGISTRY[name])
    builtin = is_builtin(infos[0].rt)
    title = "Kubernetes" if builtin else "Kubernetes CRD Swagger"
    return {
        "openapi": "3.0.0",
        "info": {"title": title, "version": "v1.32.0" if builtin else "v0.1.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


@dataclass(frozen=True)
class Documents:
    """Pre-rendered OpenAPI documents with their hashes (clients cache by hash)."""

    v3: dict[str, bytes]
    v3_hash: dict[str, str]
    v2: bytes

    def v3_root(self) -> dict[str, Any]:
        """The ``/openapi/v3`` discovery document."""
        return {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={self.v3_hash[gv]}"}
                          for gv in self.v3}}


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _to_v2(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                out[key] = value.replace(REF_PREFIX, "#/definitions/")
            elif key == "anyOf":
                continue  # Swagger 2.0 has no anyOf; int-or-string is carried by the extension
            else:
                out[key] = _to_v2(value)
        return out
    if isinstance(node, list):
        return [_to_v2(v) for v in node]
    return node


def v2_document() -> Schema:
    """A Swagger 2.0 document of every served type (``/openapi/v2``, JSON only)."""
    paths: dict[str, Any] = {}
    definitions: dict[str, Any] = {}
    for gv in group_versions():
        doc = v3_document(gv)
        assert doc is not None
        definitions.update(_to_v2(doc["components"]["schemas"]))
        for path, item in doc["paths"].items():
            v2_item: dict[str, Any] = {}
            for method, op in item.items():
                if method == "parameters":
                    v2_item["parameters"] = [_v2_param(p) for p in op]
                    continue
                v2_op = {k: _to_v2(v) for k, v in op.items() if k not in ("requestBody", "responses", "parameters")}
                params = [_v2_param(p) for p in op.get("parameters", [])]
                if "requestBody" in op:
                    content = op["requestBody"]["content"]
                    v2_op["consumes"] = sorted(content)
                    schema = next(iter(content.values()))["schema"]
                    params.insert(0, {"name": "body", "in": "body", "required": True, "schema": _to_v2(schema)})
                if params:
                    v2_op["parameters"] = params
                v2_op["produces"] = ["application/json", "application/yaml"]
                v2_op["schemes"] = ["https"]
                v2_op["responses"] = {
                    code: ({"description": r["description"], "schema": _to_v2(next(iter(r["content"].values()))["schema"])}
                           if "content" in r else {"description": r["description"]})
                    for code, r in op["responses"].items()
                }
                v2_item[method] = v2_op
            paths[path] = v2_item
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "paths": paths, "definitions": definitions}


def _v2_param(param: Schema) -> Schema:
    out = {k: v for k, v in param.items() if k != "schema"}
    out.update(param.get("schema", {}))
    return out


def build_documents() -> Documents:
    """Render every document once (the API server serves the bytes)."""
    v3: dict[str, bytes] = {}
    hashes: dict[str, str] = {}
    for gv in group_versions():
        body = _dumps(v3_document(gv))
        v3[gv] = body
        hashes[gv] = hashlib.sha512(body).hexdigest().upper()[:128]
    return Documents(v3, hashes, _dumps(v2_document()))


# ---------------------------------------------------------------------- discovery

BY_GROUP_VERSION: dict[tuple[str, str], dict[str, ResourceType]] = {}
for _rt in RESOURCE_TYPES:
    BY_GROUP_VERSION.setdefault((_rt.group, _rt.version), {})[_rt.plural] = _rt
GROUPS: dict[str, list[str]] = {}
for (_group, _version) in BY_GROUP_VERSION:
    if _group:
        GROUPS.setdefault(_group, []).append(_version)


def _verbs(rt: ResourceType) -> list[str]:
    return sorted(rt.verbs) if rt.user_writable else sorted(set(rt.verbs) & {"get", "list", "watch"})


def _api_resources(group: str, version: str) -> list[dict[str, Any]]:
    out = []
    for rt in BY_GROUP_VERSION[(group, version)].values():
        entry: dict[str, Any] = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": _verbs(rt),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        out.append(entry)
        if rt.has_status and rt.user_writable:
            out.append({"name": f"{rt.plural}/status", "singularName": "", "namespaced": rt.namespaced,
                        "kind": rt.kind, "verbs": ["get", "patch", "update"]})
    return out


def resource_list(group: str, version: str) -> dict[str, Any]:
    """The legacy ``APIResourceList`` of a group-version."""
    body: dict[str, Any] = {"kind": "APIResourceList"}
    if group:
        body["apiVersion"] = "v1"
    body["groupVersion"] = f"{group}/{version}" if group else version
    body["resources"] = _api_resources(group, version)
    return body


def api_group(group: str) -> dict[str, Any]:
    """The ``APIGroup`` body of a group (its versions and preferred version)."""
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in GROUPS[group]]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def _discovery_group(group: str) -> dict[str, Any]:
    versions = []
    for version in (["v1"] if not group else GROUPS[group]):
        resources = []
        for rt in BY_GROUP_VERSION[(group, version)].values():
            entry: dict[str, Any] = {
                "resource": rt.plural,
                "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
                "scope": "Namespaced" if rt.namespaced else "Cluster",
                "singularResource": rt.singular,
                "verbs": _verbs(rt),
            }
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            if rt.has_status and rt.user_writable:
                entry["subresources"] = [{
                    "subresource": "status",
                    "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
                    "verbs": ["get", "patch", "update"],
                }]
            resources.append(entry)
        versions.append({"version": version, "resources": resources, "freshness": "Current"})
    return {"metadata": {"name": group, "creationTimestamp": None}, "versions": versions}


def aggregated_discovery(core: bool, version: str) -> dict[str, Any]:
    """``APIGroupDiscoveryList`` for ``/api`` (core) or ``/apis``."""
    items = [_discovery_group("")] if core else [_discovery_group(g) for g in GROUPS]
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {}, "items": items}
