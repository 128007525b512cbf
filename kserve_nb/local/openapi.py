"""The OpenAPI documents of the local API server (``/openapi/v3`` and ``/openapi/v2``).

- :func:`v3_document` (per group-version) and :meth:`Documents.v3_root` serve ``/openapi/v3``.
  kubectl reads the PATCH operation of a kind to learn that the server supports
  ``fieldValidation`` (then it validates server-side instead of client-side) and which patch types
  it accepts (custom resources: no strategic merge patch, so ``kubectl apply`` sends a JSON merge
  patch).
- :func:`v2_document` serves ``/openapi/v2`` (JSON) for clients that still read Swagger 2.0.

The schemas come from :mod:`kserve_nb.local.schemas`; :func:`build_documents` renders them once.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kserve_nb.local.schemas import META, REF_PREFIX, REGISTRY, TYPES, Schema, TypeInfo, list_schema, ref
from kserve_nb.local.store import RESOURCE_TYPES, ResourceType, is_builtin

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
    "watch": ("Watch for changes to the described resources and return them as a stream of add, update, and "
              "remove notifications."),
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
    return {t: {"schema": ref(schema_name)} for t in types}


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
        obj["put"] = _operation(rt, "put", f"replace the specified {kind}",
                                _op_id("replace", rt, namespaced=namespaced),
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
                              _op_id("read", rt, namespaced=namespaced, suffix="Status"), READ_PARAMS,
                              info.schema_name),
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
        schemas[info.schema_name + "List"] = list_schema(info)
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
                v2_op["responses"] = {code: _v2_response(r) for code, r in op["responses"].items()}
                v2_item[method] = v2_op
            paths[path] = v2_item
    return {"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.32.0"},
            "paths": paths, "definitions": definitions}


def _v2_response(response: Schema) -> Schema:
    if "content" not in response:
        return {"description": response["description"]}
    schema = next(iter(response["content"].values()))["schema"]
    return {"description": response["description"], "schema": _to_v2(schema)}


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
