"""Server-side ``meta.k8s.io/v1`` Table output, as ``kubectl get`` asks for it.

Columns and cell rules copy what a real API server prints:

- InferenceService and Revision use their CRDs' ``additionalPrinterColumns`` through the CRD table
  converter's rules (first JSONPath match only; a missing value is a ``null`` cell, which kubectl
  prints empty; ``date`` columns become a human duration).
- Pod, Namespace, ConfigMap, Deployment and Service use the built-in printers of
  ``pkg/printers/internalversion`` (the API server always prints wide: ``-o wide`` only shows the
  priority-1 columns); HTTPRoute uses the Gateway API CRD's printer columns.

:func:`human_duration` follows apimachinery's ``duration.HumanDuration`` rules exactly.
Everything here is pure; ``now`` is injectable for tests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kserve_nb import resources
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
)
from kserve_nb.pods import pod_state
from kserve_nb.resources import human_duration, parse_time

TABLE_API_VERSIONS = ("meta.k8s.io/v1", "meta.k8s.io/v1beta1")

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some "
    "resources may allow a client to request the generation of an appropriate name automatically. "
    "Name is primarily intended for creation idempotence and configuration definition. Cannot be "
    "updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
AGE_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. It "
    "is not guaranteed to be set in happens-before order across separate operations. Clients may not "
    "set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. "
    "Read-only. Null for lists. More info: "
    "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)

# ------------------------------------------------------------------------------ durations


def timestamp_since(value: Any, now: datetime) -> str:
    """``translateTimestampSince`` of the built-in printers: ``<unknown>`` for a missing time."""
    when = parse_time(value)
    if when is None:
        return "<unknown>"
    return human_duration((now - when).total_seconds())


# ------------------------------------------------------------------------------- JSONPath

_TOKEN = re.compile(
    r"""\.(?P<field>(?:[A-Za-z0-9_\-]|\\\.)+)
      | \[\s*'(?P<quoted>(?:[^'\\]|\\.)*)'\s*\]
      | \[\s*\?\(\s*@(?P<fpath>(?:\.(?:[A-Za-z0-9_\-]|\\\.)+)+)\s*==\s*(?P<fvalue>'[^']*'|true|false|-?\d+)\s*\)\s*\]
      | \[\s*(?P<index>\d+|\*)\s*\]""",
    re.VERBOSE,
)


def _unescape(name: str) -> str:
    return name.replace("\\.", ".")


def compile_jsonpath(expr: str) -> Callable[[Any], list[Any]]:
    """Compile the JSONPath subset CRD printer columns use into a function returning all matches.

    Supported: ``.field``, ``['quoted\\.key']``, ``[n]``, ``[*]`` and ``[?(@.a.b=='v')]`` with a
    string, boolean or integer literal. A ``{...}`` wrapper is accepted.
    """
    text = expr.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    steps: list[Callable[[Any], Iterable[Any]]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise ValueError(f"unsupported JSONPath {expr!r} at {pos}")
        steps.append(_step(match))
        pos = match.end()

    def evaluate(obj: Any) -> list[Any]:
        current = [obj]
        for step in steps:
            current = [out for node in current for out in step(node)]
        return current

    return evaluate


def _step(match: re.Match[str]) -> Callable[[Any], Iterable[Any]]:
    if match.group("field") is not None or match.group("quoted") is not None:
        raw = match.group("field") if match.group("field") is not None else match.group("quoted")
        key = _unescape(raw)
        return lambda node: [node[key]] if isinstance(node, dict) and key in node else []
    if match.group("fpath") is not None:
        keys = [_unescape(k) for k in re.findall(r"\.((?:[A-Za-z0-9_\-]|\\\.)+)", match.group("fpath"))]
        literal = _literal(match.group("fvalue"))
        return lambda node: [item for item in _items(node) if _filter_match(item, keys, literal)]
    index = match.group("index")
    if index == "*":
        return lambda node: list(node.values()) if isinstance(node, dict) else _items(node)
    position = int(index)
    return lambda node: [node[position]] if isinstance(node, list) and position < len(node) else []


def _items(node: Any) -> list[Any]:
    return list(node) if isinstance(node, list) else []


def _literal(text: str) -> Any:
    if text.startswith("'"):
        return text[1:-1]
    if text in ("true", "false"):
        return text == "true"
    return int(text)


def _filter_match(item: Any, keys: Sequence[str], literal: Any) -> bool:
    node = item
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    if isinstance(literal, bool) or isinstance(node, bool):
        return isinstance(node, bool) and isinstance(literal, bool) and node == literal
    return bool(node == literal)


# ------------------------------------------------------------------------- column types


def column(name: str, ctype: str = "string", *, description: str = "", priority: int = 0,
           fmt: str = "") -> dict[str, Any]:
    """One ``TableColumnDefinition``."""
    return {"name": name, "type": ctype, "format": fmt, "description": description, "priority": priority}


def _crd_cell(ctype: str, value: Any, now: datetime) -> Any:
    """The CRD table converter's cell for a JSONPath value (``cellForJSONValue``)."""
    if value is None:
        return None
    if ctype == "string":
        return _print_value(value)
    if ctype == "integer":
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return int(value)
        return None
    if ctype == "number":
        if isinstance(value, bool):
            return None
        return value if isinstance(value, (int, float)) else None
    if ctype == "boolean":
        return value if isinstance(value, bool) else None
    if ctype == "date":
        if not isinstance(value, str):
            return None
        when = parse_time(value)
        return "<invalid>" if when is None else human_duration((now - when).total_seconds())
    return None


def _print_value(value: Any) -> str:
    # JSONPath printing of a string column: strings raw, scalars in JSON form, maps/lists as JSON.
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


class CrdColumns:
    """Printer columns of a CRD: ``(name, type, jsonPath)`` triples plus the implicit Name column."""

    def __init__(self, columns: Sequence[tuple[str, str, str]]) -> None:
        self.columns = [(name, ctype, compile_jsonpath(path)) for name, ctype, path in columns]
        self.definitions = [column("Name", fmt="name", description=NAME_DESCRIPTION)] + [
            column(name, ctype) for name, ctype, _ in columns
        ]

    def cells(self, obj: Mapping[str, Any], now: datetime) -> list[Any]:
        """One row's cells."""
        out: list[Any] = [(obj.get("metadata") or {}).get("name", "")]
        for _name, ctype, path in self.columns:
            matches = path(obj)
            out.append(_crd_cell(ctype, matches[0], now) if matches else None)
        return out


REVISION_COLUMNS = (
    ("Config Name", "string", ".metadata.labels['serving\\.knative\\.dev/configuration']"),
    ("Generation", "string", ".metadata.labels['serving\\.knative\\.dev/configurationGeneration']"),
    ("Ready", "string", ".status.conditions[?(@.type=='Ready')].status"),
    ("Reason", "string", ".status.conditions[?(@.type=='Ready')].reason"),
    ("Actual Replicas", "integer", ".status.actualReplicas"),
    ("Desired Replicas", "integer", ".status.desiredReplicas"),
)
"""Knative Serving's ``additionalPrinterColumns`` for Revision (no Age column, as in Knative)."""

KSERVICE_COLUMNS = (
    ("URL", "string", ".status.url"),
    ("LatestCreated", "string", ".status.latestCreatedRevisionName"),
    ("LatestReady", "string", ".status.latestReadyRevisionName"),
    ("Ready", "string", ".status.conditions[?(@.type=='Ready')].status"),
    ("Reason", "string", ".status.conditions[?(@.type=='Ready')].reason"),
)
"""Knative Serving's ``additionalPrinterColumns`` for Service (no Age column, as in Knative)."""

HTTPROUTE_COLUMNS = (
    ("Hostnames", "string", ".spec.hostnames"),
    ("Age", "date", ".metadata.creationTimestamp"),
)
"""The Gateway API CRD's ``additionalPrinterColumns`` for HTTPRoute (hostnames print as a JSON list)."""

_ISVC = CrdColumns(resources.ISVC_COLUMNS)
_REVISION = CrdColumns(REVISION_COLUMNS)
_KSERVICE = CrdColumns(KSERVICE_COLUMNS)
_HTTPROUTE = CrdColumns(HTTPROUTE_COLUMNS)

# ------------------------------------------------------------------- built-in printers

_POD_DEFINITIONS = [
    column("Name", fmt="name", description=NAME_DESCRIPTION),
    column("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
    column("Status", description="The aggregate status of the containers in this pod."),
    column("Restarts", description="The number of times the containers in this pod have been restarted "
           "and when the last container in this pod has restarted."),
    column("Age", description=AGE_DESCRIPTION),
    column("IP", priority=1, description="podIP address allocated to the pod. Routable at least within "
           "the cluster. Empty if not yet allocated."),
    column("Node", priority=1, description="NodeName indicates in which node this pod is scheduled."),
    column("Nominated Node", priority=1, description="nominatedNodeName is set only when this pod "
           "preempts other pods on the node."),
    column("Readiness Gates", priority=1, description="If specified, all readiness gates will be "
           "evaluated for pod readiness."),
]
_NAMESPACE_DEFINITIONS = [
    column("Name", fmt="name", description=NAME_DESCRIPTION),
    column("Status", description="The status of the namespace"),
    column("Age", description=AGE_DESCRIPTION),
]
_EVENT_DEFINITIONS = [
    column("Last Seen", description="The time at which the most recent occurrence of this event was recorded."),
    column("Type", description="Type of this event (Normal, Warning), new types could be added in the future."),
    column("Reason", description="reason is why the action was taken. It is human-readable."),
    column("Object", description="The object that this event is about."),
    column("Subobject", priority=1, description="If referring to a piece of an object instead of an entire "
           "object, this string should contain a valid JSON/Go field access statement."),
    column("Source", priority=1, description="The component reporting this event."),
    column("Message", description="A human-readable description of the status of this operation."),
    column("First Seen", priority=1, description="The time at which the event was first recorded."),
    column("Count", priority=1, description="The number of times this event has occurred."),
    column("Name", priority=1, fmt="name", description=NAME_DESCRIPTION),
]
_CONFIGMAP_DEFINITIONS = [
    column("Name", fmt="name", description=NAME_DESCRIPTION),
    column("Data", description="Data contains the configuration data."),
    column("Age", description=AGE_DESCRIPTION),
]
_DEPLOYMENT_DEFINITIONS = [
    column("Name", fmt="name", description=NAME_DESCRIPTION),
    column("Ready", description="Number of the pod with ready state"),
    column("Up-to-date", "integer", description="Total number of non-terminating pods targeted by this "
           "deployment that have the desired template spec."),
    column("Available", "integer", description="Total number of available non-terminating pods (ready for "
           "at least minReadySeconds) targeted by this deployment."),
    column("Age", description=AGE_DESCRIPTION),
    column("Containers", priority=1, description="Names of each container in the template."),
    column("Images", priority=1, description="Images referenced by each container in the template."),
    column("Selector", priority=1, description="Label selector for pods. Existing ReplicaSets whose pods "
           "are selected by this will be the ones affected by this deployment. It must match the pod "
           "template's labels."),
]
_SERVICE_DEFINITIONS = [
    column("Name", fmt="name", description=NAME_DESCRIPTION),
    column("Type", description="type determines how the Service is exposed. Defaults to ClusterIP. Valid "
           "options are ExternalName, ClusterIP, NodePort, and LoadBalancer."),
    column("Cluster-IP", description="clusterIP is the IP address of the service and is usually assigned "
           "randomly."),
    column("External-IP", description="externalIPs is a list of IP addresses for which nodes in the cluster "
           "will also accept traffic for this service."),
    column("Port(s)", description="The list of ports that are exposed by this service."),
    column("Age", description=AGE_DESCRIPTION),
    column("Selector", priority=1, description="Route service traffic to pods with label keys and values "
           "matching this selector."),
]


def pod_cells(pod: Mapping[str, Any], now: datetime) -> tuple[list[Any], list[dict[str, Any]]]:
    """Cells and row conditions of a pod, following kubectl's server-side ``printPod``
    (READY, STATUS and RESTARTS from :func:`kserve_nb.pods.pod_state`, shared with the client)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    phase = status.get("phase") or ""
    conditions: list[dict[str, Any]] = []
    if phase == "Succeeded":
        conditions = [{"type": "Completed", "status": "True", "reason": "Succeeded",
                       "message": "The pod has completed successfully."}]
    elif phase == "Failed":
        conditions = [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]
    state = pod_state(pod)

    pod_ips = status.get("podIPs") or []
    pod_ip = (pod_ips[0] or {}).get("ip") if pod_ips else ""
    gates = spec.get("readinessGates") or []
    gates_text = "<none>"
    if gates:
        true_count = 0
        for gate in gates:
            for cond in status.get("conditions") or []:
                if cond.get("type") == gate.get("conditionType"):
                    true_count += cond.get("status") == "True"
                    break
        gates_text = f"{true_count}/{len(gates)}"
    cells = [
        meta.get("name", ""),
        state.ready_text,
        state.status,
        state.restarts_text(now),
        timestamp_since(meta.get("creationTimestamp"), now),
        pod_ip or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_text,
    ]
    return cells, conditions


def event_cells(event: Mapping[str, Any], now: datetime) -> list[Any]:
    """Cells of an event, following the server-side ``printEvent`` (always wide on the server)."""
    meta = event.get("metadata") or {}
    involved = event.get("involvedObject") or {}
    first = timestamp_since(event.get("firstTimestamp"), now) if event.get("firstTimestamp") else \
        timestamp_since(event.get("eventTime"), now)
    last = timestamp_since(event.get("lastTimestamp"), now) if event.get("lastTimestamp") else first
    count = event.get("count") or 1
    series = event.get("series")
    if isinstance(series, Mapping):
        last = timestamp_since(series.get("lastObservedTime"), now)
        count = series.get("count") or count
    kind = str(involved.get("kind") or "").lower()
    target = f"{kind}/{involved['name']}" if involved.get("name") else kind
    source = event.get("source") or {}
    component = source.get("component") or event.get("reportingComponent") or ""
    instance = source.get("host") or event.get("reportingInstance") or ""
    return [last, event.get("type", ""), event.get("reason", ""), target, involved.get("fieldPath", ""),
            f"{component}, {instance}" if instance else component, str(event.get("message") or "").strip(),
            first, int(count), meta.get("name", "")]


def _namespace_cells(ns: Mapping[str, Any], now: datetime) -> list[Any]:
    meta = ns.get("metadata") or {}
    return [meta.get("name", ""), (ns.get("status") or {}).get("phase", ""),
            timestamp_since(meta.get("creationTimestamp"), now)]


def _format_labels(labels: Mapping[str, Any] | None) -> str:
    """``labels.FormatLabels``: sorted ``k=v`` pairs joined by commas, ``<none>`` when empty."""
    if not labels:
        return "<none>"
    return ",".join(f"{key}={labels[key]}" for key in sorted(labels))


def _selector_string(selector: Mapping[str, Any] | None) -> str:
    """``LabelSelectorAsSelector(...).String()``: requirements sorted by key; empty for no selector."""
    if not selector:
        return ""
    terms: list[tuple[str, str]] = [(k, f"{k}={v}") for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        key, op = str(expr.get("key", "")), str(expr.get("operator", ""))
        values = ",".join(sorted(str(v) for v in expr.get("values") or []))
        text = {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})",
                "Exists": key, "DoesNotExist": f"!{key}"}.get(op, "<invalid>")
        terms.append((key, text))
    return ",".join(text for _key, text in sorted(terms, key=lambda t: t[0]))


def deployment_cells(deploy: Mapping[str, Any], now: datetime) -> list[Any]:
    """Cells of a Deployment, following the server-side ``printDeployment`` (always wide)."""
    meta = deploy.get("metadata") or {}
    spec = deploy.get("spec") or {}
    status = deploy.get("status") or {}
    desired = spec.get("replicas")
    desired = 1 if desired is None else int(desired)  # the API server defaults replicas to 1
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return [
        meta.get("name", ""),
        f"{int(status.get('readyReplicas') or 0)}/{desired}",
        int(status.get("updatedReplicas") or 0),
        int(status.get("availableReplicas") or 0),
        timestamp_since(meta.get("creationTimestamp"), now),
        ",".join(str(c.get("name", "")) for c in containers),
        ",".join(str(c.get("image", "")) for c in containers),
        _selector_string(spec.get("selector")),
    ]


def _service_external_ip(spec: Mapping[str, Any], status: Mapping[str, Any]) -> str:
    kind = spec.get("type") or "ClusterIP"
    external = [str(ip) for ip in spec.get("externalIPs") or []]
    if kind in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if kind == "ExternalName":
        return str(spec.get("externalName") or "")
    # LoadBalancer: the ingress points, then the external IPs; <pending> until one is assigned
    ingress = ((status.get("loadBalancer") or {}).get("ingress")) or []
    points = [str(i.get("ip") or i.get("hostname") or "") for i in ingress] + external
    points = [p for p in points if p]
    return ",".join(points) if points else "<pending>"


def service_cells(svc: Mapping[str, Any], now: datetime) -> list[Any]:
    """Cells of a Service, following the server-side ``printService`` (always wide)."""
    meta = svc.get("metadata") or {}
    spec = svc.get("spec") or {}
    cluster_ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    ports = []
    for port in spec.get("ports") or []:
        protocol = port.get("protocol") or "TCP"
        if int(port.get("nodePort") or 0) > 0:
            ports.append(f"{port.get('port')}:{port['nodePort']}/{protocol}")
        else:
            ports.append(f"{port.get('port')}/{protocol}")
    return [
        meta.get("name", ""),
        spec.get("type") or "ClusterIP",
        cluster_ips[0] if cluster_ips else "<none>",
        _service_external_ip(spec, svc.get("status") or {}),
        ",".join(ports) or "<none>",
        timestamp_since(meta.get("creationTimestamp"), now),
        _format_labels(spec.get("selector")),
    ]


def _configmap_cells(cm: Mapping[str, Any], now: datetime) -> list[Any]:
    meta = cm.get("metadata") or {}
    count = len(cm.get("data") or {}) + len(cm.get("binaryData") or {})
    return [meta.get("name", ""), count, timestamp_since(meta.get("creationTimestamp"), now)]


# -------------------------------------------------------------------------------- tables


def column_definitions(rt: ResourceType) -> list[dict[str, Any]]:
    """The Table ``columnDefinitions`` for a resource type."""
    if rt.key == INFERENCESERVICES.key:
        return list(_ISVC.definitions)
    if rt.key == REVISIONS.key:
        return list(_REVISION.definitions)
    if rt.key == KSERVICES.key:
        return list(_KSERVICE.definitions)
    if rt.key == EVENTS.key:
        return list(_EVENT_DEFINITIONS)
    if rt.key == PODS.key:
        return list(_POD_DEFINITIONS)
    if rt.key == NAMESPACES.key:
        return list(_NAMESPACE_DEFINITIONS)
    if rt.key == CONFIGMAPS.key:
        return list(_CONFIGMAP_DEFINITIONS)
    if rt.key == DEPLOYMENTS.key:
        return list(_DEPLOYMENT_DEFINITIONS)
    if rt.key == SERVICES.key:
        return list(_SERVICE_DEFINITIONS)
    if rt.key == HTTPROUTES.key:
        return list(_HTTPROUTE.definitions)
    # Any other type: the CRD default of Name and Age.
    return [
        column("Name", fmt="name", description=NAME_DESCRIPTION),
        column("Age", "date", description=AGE_DESCRIPTION),
    ]


def row(rt: ResourceType, obj: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """One ``TableRow`` (cells and conditions; the ``object`` is added by :func:`to_table`)."""
    conditions: list[dict[str, Any]] = []
    if rt.key == INFERENCESERVICES.key:
        cells = _ISVC.cells(obj, now)
    elif rt.key == REVISIONS.key:
        cells = _REVISION.cells(obj, now)
    elif rt.key == KSERVICES.key:
        cells = _KSERVICE.cells(obj, now)
    elif rt.key == EVENTS.key:
        cells = event_cells(obj, now)
    elif rt.key == PODS.key:
        cells, conditions = pod_cells(obj, now)
    elif rt.key == NAMESPACES.key:
        cells = _namespace_cells(obj, now)
    elif rt.key == CONFIGMAPS.key:
        cells = _configmap_cells(obj, now)
    elif rt.key == DEPLOYMENTS.key:
        cells = deployment_cells(obj, now)
    elif rt.key == SERVICES.key:
        cells = service_cells(obj, now)
    elif rt.key == HTTPROUTES.key:
        cells = _HTTPROUTE.cells(obj, now)
    else:
        meta = obj.get("metadata") or {}
        cells = [meta.get("name", ""), timestamp_since(meta.get("creationTimestamp"), now)]
    out: dict[str, Any] = {"cells": cells}
    if conditions:
        out["conditions"] = conditions
    return out


def partial_object_metadata(obj: Mapping[str, Any], api_version: str = "meta.k8s.io/v1") -> dict[str, Any]:
    """The ``PartialObjectMetadata`` form of an object (what ``includeObject=Metadata`` embeds)."""
    return {"kind": "PartialObjectMetadata", "apiVersion": api_version, "metadata": obj.get("metadata") or {}}


def to_table(
    rt: ResourceType,
    objects: Sequence[Mapping[str, Any]],
    *,
    include_object: str = "Metadata",
    resource_version: str | None = None,
    headers: bool = True,
    api_version: str = "meta.k8s.io/v1",
    now: datetime | None = None,
) -> dict[str, Any]:
    """A ``Table`` of ``objects`` with one row each.

    ``include_object`` is the ``includeObject`` query parameter: ``None``, ``Metadata`` (default)
    or ``Object``. ``headers=False`` leaves ``columnDefinitions`` null, as a watch does after its
    first event.
    """
    when = now or datetime.now(UTC)
    rows = []
    for obj in objects:
        out = row(rt, obj, when)
        if include_object == "Object":
            out["object"] = obj
        elif include_object != "None":
            out["object"] = partial_object_metadata(obj, api_version)
        rows.append(out)
    metadata: dict[str, Any] = {}
    if resource_version is not None:
        metadata["resourceVersion"] = resource_version
    return {
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": metadata,
        "columnDefinitions": column_definitions(rt) if headers else None,
        "rows": rows,
    }
