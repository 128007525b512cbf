"""The InferenceService schema the local API server serves, diffed against KServe's own definition.

``kserve_nb/data/inferenceservice-v1beta1.schema.json`` is a subset of KServe's CRD. KServe's SDK
(``kserve`` 0.21 from PyPI) carries the same API as generated models: every ``V1beta1*`` class
(and the ``kubernetes`` client's ``V1*`` classes it refers to) lists its fields in
``attribute_map`` and their types in ``openapi_types``. The test walks both trees together and
requires the same field names and types everywhere, except the differences listed below, each
with its reason. A listed difference that no longer occurs fails too, so the lists stay true.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import pytest

from kserve_nb.local import openapi, schemas

kserve_models = pytest.importorskip("kserve.models")
k8s_models = pytest.importorskip("kubernetes.client.models")

# Where our schema stops typing (an x-kubernetes-preserve-unknown-fields object, stored as sent).
_POD = "pod-level scheduling, volume and security settings: the model server is a local process"
_CONTAINER = "container runtime settings (probes, hooks, security, devices): a local process has none"
_UNUSED = "not acted on by the emulation; stored as written"
LOOSE: dict[str, str] = {
    "status": "written only by the local controller, never validated",
    "spec.transformer": "only the predictor is emulated; the transformer is stored as written",
    "spec.explainer": "only the predictor is emulated; the explainer is stored as written",
    "spec.tracing": _UNUSED,
    "spec.canary[]": "Standard-mode canary entries are checked by KServe's webhook rules in admission "
                     "(semantics_standard.validate), not typed field by field",
    "spec.predictor.workerSpec": "multi-node serving is not emulated",
    "spec.predictor.logger": _UNUSED,
    "spec.predictor.batcher": _UNUSED,
    "spec.predictor.autoScaling": "autoscaling is not emulated (one process per revision or Deployment)",
    "spec.predictor.deploymentStrategy": _UNUSED,
    "spec.predictor.resources": "pod-level resources are not enforced on a local process",
    **{f"spec.predictor.{name}": _POD for name in (
        "affinity", "dnsConfig", "os", "securityContext", "ephemeralContainers[]", "hostAliases[]",
        "imagePullSecrets[]", "readinessGates[]", "resourceClaims[]", "schedulingGates[]", "tolerations[]",
        "topologySpreadConstraints[]", "volumes[]")},
    **{f"*.{name}": _CONTAINER for name in (
        "livenessProbe", "readinessProbe", "startupProbe", "lifecycle", "securityContext", "envFrom[]",
        "env[].valueFrom", "resizePolicy[]", "volumeDevices[]", "resources.claims[]")},
    "*.storage": "the storage spec (a storage key and parameters) is not used: models load from storageUri",
    "*.confidential": "confidential computing is not emulated",
}

# Fields whose types differ on purpose.
TYPE_DIFFERENCES: dict[str, str] = {
    "*.resources.limits{}": "a Kubernetes Quantity is int-or-string in the CRD; the Python client types it str",
    "*.resources.requests{}": "a Kubernetes Quantity is int-or-string in the CRD; the Python client types it str",
}

# SDK fields our schema does not have (the API server prunes them, reporting unknown fields).
MISSING: dict[str, str] = {
    "spec.predictor.schedulingGroup": "in the 0.21 SDK's model but not in KServe's CRD (master aaac4e294), so a "
                                      "real API server prunes it too",
}

# Fields our schema has that the SDK does not.
EXTRA: dict[str, str] = {}

_LIST = re.compile(r"^list\[(.+)\]$")
_DICT = re.compile(r"^dict[(\[]\w+, (.+)[)\]]$")
_PRIMITIVES = {"str": "string", "int": "integer", "bool": "boolean", "float": "number",
               "datetime": "string", "date": "string", "object": "any", "ResourceQuantity": "int-or-string"}


@dataclass(frozen=True)
class Difference:
    kind: str  # loose, type, missing, extra
    path: str
    detail: str


def _model(name: str) -> Any:
    return getattr(kserve_models, name, None) or getattr(k8s_models, name, None)


def _sdk_kind(sdk_type: str) -> str:
    if sdk_type in _PRIMITIVES:
        return _PRIMITIVES[sdk_type]
    if _LIST.match(sdk_type):
        return "array"
    if _DICT.match(sdk_type):
        return "map"
    return "object"


def _our_kind(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return "ref"
    if schema.get("x-kubernetes-int-or-string"):
        return "int-or-string"
    kind = schema.get("type")
    if kind is None:
        return "any"
    if kind == "object":
        if "properties" in schema:
            return "object"
        if isinstance(schema.get("additionalProperties"), dict):
            return "map"
        return "loose" if schema.get("x-kubernetes-preserve-unknown-fields") else "object"
    return str(kind)


def diff(sdk_type: str, schema: dict[str, Any], path: str = "") -> list[Difference]:
    """Walk the SDK type and our schema together; the differences found, in walk order."""
    ours, theirs = _our_kind(schema), _sdk_kind(sdk_type)
    if ours == "loose":
        return [Difference("loose", path, sdk_type)]
    if ours == "ref":  # a shared Kubernetes schema (ObjectMeta), not part of the data file
        target = schema["$ref"].rsplit(".", 1)[-1]
        return [] if sdk_type == f"V1{target}" else [Difference("type", path, f"{sdk_type} vs $ref {target}")]
    if ours != theirs:
        return [Difference("type", path, f"SDK {sdk_type} ({theirs}) vs ours {ours}")]
    if theirs == "array":
        return diff(_LIST.match(sdk_type).group(1), schema["items"], path + "[]")  # type: ignore[union-attr]
    if theirs == "map":
        return diff(_DICT.match(sdk_type).group(1), schema["additionalProperties"], path + "{}")  # type: ignore[union-attr]
    if theirs != "object":
        return []
    model = _model(sdk_type)
    assert model is not None, f"{path}: no SDK model {sdk_type}"
    fields = {model.attribute_map[attr]: kind for attr, kind in model.openapi_types.items()}
    props = schema.get("properties") or {}
    out: list[Difference] = []
    for name in sorted(set(fields) | set(props)):
        child = f"{path}.{name}" if path else name
        if name not in props:
            out.append(Difference("missing", child, fields[name]))
        elif name not in fields:
            out.append(Difference("extra", child, _our_kind(props[name])))
        else:
            out += diff(fields[name], props[name], child)
    return out


def _listed(path: str, table: dict[str, str]) -> str | None:
    return next((pattern for pattern in table if fnmatchcase(path, pattern)), None)


def test_inferenceservice_schema_matches_kserve_sdk_except_listed_differences() -> None:
    found = diff("V1beta1InferenceService", schemas.INFERENCESERVICE)
    tables = {"loose": LOOSE, "type": TYPE_DIFFERENCES, "missing": MISSING, "extra": EXTRA}
    unlisted = [d for d in found if _listed(d.path, tables[d.kind]) is None]
    assert unlisted == [], "differences from KServe's SDK not listed in this test:\n" + "\n".join(
        f"  {d.kind} {d.path}: {d.detail}" for d in unlisted)
    used = {(d.kind, _listed(d.path, tables[d.kind])) for d in found}
    stale = [(kind, pattern) for kind, table in tables.items() for pattern in table if (kind, pattern) not in used]
    assert stale == [], f"listed differences that no longer occur: {stale}"


def test_the_diff_sees_a_field_kserve_has_and_a_wrong_type() -> None:
    schema = json.loads(json.dumps(schemas.INFERENCESERVICE))
    predictor = schema["properties"]["spec"]["properties"]["predictor"]["properties"]
    del predictor["minReplicas"]
    predictor["timeout"] = {"type": "string"}
    found = {(d.kind, d.path) for d in diff("V1beta1InferenceService", schema)}
    assert ("missing", "spec.predictor.minReplicas") in found
    assert ("type", "spec.predictor.timeout") in found


def test_the_served_document_carries_the_data_file() -> None:
    doc = json.loads(openapi.build_documents().v3["apis/serving.kserve.io/v1beta1"])
    served = doc["components"]["schemas"]["io.kserve.serving.v1beta1.InferenceService"]
    served.pop("x-kubernetes-group-version-kind")
    assert served == schemas.load_inferenceservice_schema()
