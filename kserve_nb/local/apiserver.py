"""The local cluster's Kubernetes API server: the HTTP layer over :class:`~kserve_nb.local.store.Store`.

It serves the subset of the Kubernetes API that ``kubectl`` 1.32, the official ``kubernetes``
Python client and KServe's SDK use for InferenceServices (serving.kserve.io/v1beta1), Knative
revisions (read-only), pods (read-only), configmaps and namespaces:

- discovery (legacy and aggregated v2), ``/version``, health endpoints, OpenAPI v2 and v3;
- create/get/list/watch/replace/patch/delete, the ``status`` subresource, dry-run;
- JSON merge patch, JSON patch, strategic merge patch for core types (CRDs answer 415 as a real
  server does), server-side apply (ownership tracked per Apply manager), JSON, YAML and (for
  ``kubectl create namespace|configmap``) protobuf bodies, server-side field validation;
- ``meta.k8s.io`` Table output for ``kubectl get`` (also on watches);
- Kubernetes ``Status`` errors with the reasons and message texts of a real cluster, and KServe's
  admission (defaulting the legacy predictor form, validating names and predictors).

Every request needs ``Authorization: Bearer <token>``; serve it over TLS (:func:`self_signed_tls`),
because kubectl sends a kubeconfig's token only over HTTPS. The controller is not involved here: it
watches the store. Entry point: :func:`create_app`.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import platform
import random
import re
import ssl
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, cast
from urllib.parse import unquote

import orjson
import yaml
from aiohttp import web

from kserve_nb.local import openapi, tables
from kserve_nb.local.admission import (
    AdmissionDenied,
    FieldError,
    default_inferenceservice,
    validate_inferenceservice,
    validate_object_meta,
)
from kserve_nb.local.patching import (
    PatchError,
    applied_fields,
    apply_merge,
    clone,
    fields_v1,
    get_path,
    json_patch,
    merge_patch,
    parse_fields_v1,
    remove_path,
    strategic_merge_patch,
)
from kserve_nb.local.store import (
    CONFIGMAPS,
    INFERENCESERVICES,
    NAMESPACES,
    PODS,
    RESOURCE_TYPES,
    ResourceType,
    Store,
    StoreAlreadyExists,
    StoreConflict,
    StoreGone,
    StoreNotFound,
    WatchEvent,
    now_rfc3339,
)

log = logging.getLogger(__name__)

KUBERNETES_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0"}
MAX_BODY_BYTES = 3 * 1024 * 1024  # the API server's request size limit
DEFAULT_WATCH_TIMEOUT = 1800.0
BOOKMARK_INTERVAL = 60.0
PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"

JSON = "application/json"
DISCOVERY_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
DISCOVERY_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", APPLY_PATCH)

# ================================================================================ errors


class ApiError(Exception):
    """An error answered as a Kubernetes ``Status`` object."""

    def __init__(self, code: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = dict(details) if details else None

    def status(self) -> dict[str, Any]:
        """The ``Status`` body."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def qualified_resource(rt: ResourceType) -> str:
    """``inferenceservices.serving.kserve.io`` / ``configmaps``: how errors name a resource."""
    return f"{rt.plural}.{rt.group}" if rt.group else rt.plural


def qualified_kind(rt: ResourceType) -> str:
    """``InferenceService.serving.kserve.io`` / ``ConfigMap``: how Invalid errors name a kind."""
    return f"{rt.kind}.{rt.group}" if rt.group else rt.kind


def _details(rt: ResourceType, name: str, *, kind: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name}
    if rt.group:
        out["group"] = rt.group
    out["kind"] = kind or rt.plural
    return out


def not_found(rt: ResourceType, name: str) -> ApiError:
    """404 ``<resource> "<name>" not found``."""
    return ApiError(404, "NotFound", f'{qualified_resource(rt)} "{name}" not found', _details(rt, name))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    """409 AlreadyExists."""
    return ApiError(409, "AlreadyExists", f'{qualified_resource(rt)} "{name}" already exists', _details(rt, name))


def conflict(rt: ResourceType, name: str, detail: str | None = None) -> ApiError:
    """409 Conflict, with the optimistic-concurrency message of a real server."""
    detail = detail or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {qualified_resource(rt)} "{name}": {detail}',
                    _details(rt, name))


def invalid_error(rt: ResourceType, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid listing field errors like ``field.ErrorList``."""
    rendered = [e.render() for e in errors]
    text = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    details = _details(rt, name, kind=rt.kind)
    details["causes"] = [e.cause() for e in errors]
    return ApiError(422, "Invalid", f'{qualified_kind(rt)} "{name}" is invalid: {text}', details)


def bad_request(message: str) -> ApiError:
    """400 BadRequest."""
    return ApiError(400, "BadRequest", message)


def method_not_allowed() -> ApiError:
    """405 MethodNotAllowed."""
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource", {})


def path_not_found() -> ApiError:
    """404 for a path that names no resource."""
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def unsupported_media_type(accepted: list[str]) -> ApiError:
    """415 UnsupportedMediaType."""
    return ApiError(415, "UnsupportedMediaType",
                    "the body of the request was in an unknown format - accepted media types include: "
                    + ", ".join(accepted))


def _status_for(rt: ResourceType, name: str, exc: Exception) -> ApiError:
    if isinstance(exc, StoreNotFound):
        return not_found(rt, name)
    if isinstance(exc, StoreAlreadyExists):
        return already_exists(rt, name)
    if isinstance(exc, StoreConflict):
        return conflict(rt, name)
    raise exc


UNAUTHORIZED = ApiError(401, "Unauthorized", "Unauthorized")

# ============================================================================ selectors


@dataclass(frozen=True)
class Requirement:
    """One label selector requirement: ``op`` is =, !=, in, notin, exists or !exists."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this requirement."""
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        return not present or labels[self.key] not in self.values  # != and notin


_SET_TERM = re.compile(r"^\s*([A-Za-z0-9][-A-Za-z0-9_./]*)\s+(in|notin)\s*\(([^)]*)\)\s*$")
_KEY = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_./]*$")


def _split_terms(text: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += ch
    terms.append(current)
    return [t for t in (t.strip() for t in terms) if t]


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Parse a label selector (``a=b,c!=d,e,!f,g in (x,y),h notin (z)``). Raises ApiError 400."""
    if not text:
        return []
    out: list[Requirement] = []
    for term in _split_terms(text):
        set_match = _SET_TERM.match(term)
        if set_match:
            values = tuple(v.strip() for v in set_match.group(3).split(",") if v.strip())
            out.append(Requirement(set_match.group(1), set_match.group(2), values))
            continue
        if term.startswith("!"):
            key, op, values = term[1:].strip(), "!exists", ()
        elif "!=" in term:
            key, value = term.split("!=", 1)
            op, values = "!=", (value.strip(),)
        elif "==" in term:
            key, value = term.split("==", 1)
            op, values = "=", (value.strip(),)
        elif "=" in term:
            key, value = term.split("=", 1)
            op, values = "=", (value.strip(),)
        else:
            key, op, values = term, "exists", ()
        key = key.strip()
        if not _KEY.match(key):
            raise bad_request(f"unable to parse requirement: <nil>: Invalid value: \"{key}\": "
                              "name part must consist of alphanumeric characters, '-', '_' or '.'")
        out.append(Requirement(key, op, values))
    return out


FIELD_LABELS = {
    "": ("metadata.name", "metadata.namespace"),
    PODS.key: ("metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy",
               "spec.schedulerName", "spec.serviceAccountName", "status.phase", "status.podIP",
               "status.nominatedNodeName"),
    NAMESPACES.key: ("metadata.name", "status.phase"),
}


def parse_field_selector(text: str | None, rt: ResourceType) -> list[tuple[str, bool, str]]:
    """Parse a field selector into ``(field, equal, value)`` terms. Raises ApiError 400."""
    if not text:
        return []
    allowed = FIELD_LABELS.get(rt.key, FIELD_LABELS[""])
    out = []
    for term in _split_terms(text):
        if "!=" in term:
            key, value = term.split("!=", 1)
            equal = False
        elif "==" in term:
            key, value = term.split("==", 1)
            equal = True
        elif "=" in term:
            key, value = term.split("=", 1)
            equal = True
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        key = key.strip()
        if key not in allowed:
            raise bad_request(f'field label not supported: {key}')
        out.append((key, equal, value.strip()))
    return out


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return "" if node is None else str(node)


@dataclass
class Selection:
    """Label and field selectors of a list or watch."""

    labels: list[Requirement] = field(default_factory=list)
    fields: list[tuple[str, bool, str]] = field(default_factory=list)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """Whether ``obj`` is selected."""
        labels = (obj.get("metadata") or {}).get("labels") or {}
        if not all(req.matches(labels) for req in self.labels):
            return False
        return all((_field_value(obj, key) == value) == equal for key, equal, value in self.fields)


# ======================================================================== content types


@dataclass(frozen=True)
class Negotiated:
    """What representation a GET asks for: ``json``, ``table`` or ``partial``."""

    form: str = "json"
    api_version: str = "meta.k8s.io/v1"

    @property
    def content_type(self) -> str:
        """Response Content-Type."""
        if self.form == "table":
            version = self.api_version.split("/")[1]
            return f"application/json;as=Table;v={version};g=meta.k8s.io"
        return JSON


def _media_ranges(accept: str) -> list[tuple[str, dict[str, str]]]:
    out = []
    for clause in accept.split(","):
        parts = [p.strip() for p in clause.split(";")]
        params = {}
        for part in parts[1:]:
            if "=" in part:
                key, value = part.split("=", 1)
                params[key.strip()] = value.strip()
        out.append((parts[0].lower(), params))
    return out


def negotiate(accept: str | None) -> Negotiated:
    """Pick the response form from an Accept header (first supported media range wins)."""
    for media, params in _media_ranges(accept or JSON):
        if media not in (JSON, "*/*", "application/*"):
            continue
        as_ = params.get("as")
        if as_ is None:
            return Negotiated()
        if params.get("g") != "meta.k8s.io" or params.get("v") not in ("v1", "v1beta1"):
            continue
        version = f"meta.k8s.io/{params['v']}"
        if as_ == "Table":
            return Negotiated("table", version)
        if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList"):
            return Negotiated("partial", version)
    return Negotiated()


def _discovery_v2(accept: str | None) -> str | None:
    for media, params in _media_ranges(accept or ""):
        if media == JSON and params.get("g") == "apidiscovery.k8s.io" and params.get("as") == "APIGroupDiscoveryList":
            if params.get("v") in ("v2", "v2beta1"):
                return params["v"]
    return None


def negotiate_openapi_v2(accept: str | None) -> bool:
    """Whether an ``/openapi/v2`` request accepts JSON (we serve no protobuf form)."""
    return any(media in (JSON, "*/*", "application/*") for media, _ in _media_ranges(accept or JSON))


def json_response(body: Any, status: int = 200, content_type: str = JSON,
                  warnings: list[str] | None = None) -> web.Response:
    """A JSON response encoded with orjson."""
    response = web.Response(body=orjson.dumps(body), status=status, content_type=None)
    response.headers["Content-Type"] = content_type
    for warning in warnings or ():
        response.headers.add("Warning", '299 - "' + warning.replace('"', '\\"') + '"')
    return response


def status_response(error: ApiError) -> web.Response:
    """The ``Status`` answer of an :class:`ApiError`."""
    return json_response(error.status(), status=error.code)


class _JsonSafeLoader(yaml.SafeLoader):
    """Safe YAML loader that keeps timestamps as strings, as sigs.k8s.io/yaml does."""


_JsonSafeLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _jsonable(value: Any, path: str = "") -> Any:
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, bool) else str(k).lower(): _jsonable(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v, path) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64_MIN <= value <= _INT64_MAX:
        raise bad_request(f"json: cannot unmarshal number {value} into Go value of type int64")
    if isinstance(value, float) and value != value:
        raise bad_request("error converting YAML to JSON: NaN is not valid JSON")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise bad_request(f"error converting YAML to JSON: unsupported value of type {type(value).__name__} at {path or '<root>'}")


def decode_body(raw: bytes, content_type: str) -> Any:
    """Decode a request body as JSON, (safe) YAML or Kubernetes protobuf. Raises ApiError 400/415."""
    if content_type == PROTOBUF:
        return decode_protobuf(raw)
    if content_type not in ("", JSON, "application/octet-stream") and content_type not in YAML_TYPES:
        raise unsupported_media_type([JSON, "application/yaml"])
    if not raw.strip():
        raise bad_request("the request body is empty")
    if content_type in YAML_TYPES:
        try:
            value = yaml.load(raw, Loader=_JsonSafeLoader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            raise bad_request(f"error converting YAML to JSON: {exc}".replace("\n", " ")) from None
        return _jsonable(value)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None
    _check_int64(value)
    return value


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _check_int64(value: Any) -> None:
    """Reject integers Go cannot hold (orjson would accept them on input but not on output)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, int) and not isinstance(item, bool) and not _INT64_MIN <= item <= _INT64_MAX:
            raise bad_request(f"json: cannot unmarshal number {item} into Go value of type int64")


# ========================================================================== protobuf

# kubectl's typed clients (``kubectl create namespace``, ``kubectl create configmap``) send
# Kubernetes protobuf and do not fall back to JSON, so the core types we accept writes for are
# decoded here: the ``k8s\0`` envelope (runtime.Unknown) and the generated.proto field numbers.
_PB_MAGIC = b"k8s\x00"
_PB_TIME = {1: ("seconds", "int"), 2: ("nanos", "int")}
_PB_OWNER = {1: ("kind", "str"), 3: ("name", "str"), 4: ("uid", "str"), 5: ("apiVersion", "str"),
             6: ("controller", "bool"), 7: ("blockOwnerDeletion", "bool")}
_PB_META = {1: ("name", "str"), 2: ("generateName", "str"), 3: ("namespace", "str"), 4: ("selfLink", "str"),
            5: ("uid", "str"), 6: ("resourceVersion", "str"), 7: ("generation", "int"),
            8: ("creationTimestamp", "time"), 9: ("deletionTimestamp", "time"),
            10: ("deletionGracePeriodSeconds", "int"), 11: ("labels", "map"), 12: ("annotations", "map"),
            13: ("ownerReferences", ("list", _PB_OWNER)), 14: ("finalizers", "strlist")}
_PB_KINDS: dict[str, dict[int, tuple[str, Any]]] = {
    "Namespace": {1: ("metadata", _PB_META), 2: ("spec", {1: ("finalizers", "strlist")}),
                  3: ("status", {1: ("phase", "str")})},
    "ConfigMap": {1: ("metadata", _PB_META), 2: ("data", "map"), 3: ("binaryData", "bytesmap"),
                  4: ("immutable", "bool")},
}


def _pb_fields(data: bytes) -> list[tuple[int, Any]]:
    """Split a protobuf message into (field number, raw value) pairs."""
    out: list[tuple[int, Any]] = []
    pos = 0

    def varint() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            if pos >= len(data) or shift > 63:
                raise ValueError("truncated varint")
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7

    while pos < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            out.append((number, varint()))
        elif wire == 2:
            length = varint()
            if pos + length > len(data):
                raise ValueError("truncated field")
            out.append((number, data[pos:pos + length]))
            pos += length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            out.append((number, data[pos:pos + size]))
            pos += size
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def _pb_signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _pb_message(data: bytes, schema: Mapping[int, tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, raw in _pb_fields(data):
        if number not in schema:
            continue  # fields we do not model are dropped, as an older server would
        name, kind = schema[number]
        # Go writes empty strings and zero integers of non-pointer fields; JSON omits them.
        if kind == "str":
            if raw:
                out[name] = raw.decode()
        elif kind == "int":
            if raw:
                out[name] = _pb_signed(raw)
        elif kind == "bool":
            out[name] = bool(raw)
        elif kind == "strlist":
            out.setdefault(name, []).append(raw.decode())
        elif kind in ("map", "bytesmap"):
            entry = dict(_pb_fields(raw))
            value = entry.get(2, b"")
            out.setdefault(name, {})[entry.get(1, b"").decode()] = (
                base64.b64encode(value).decode() if kind == "bytesmap" else value.decode())
        elif kind == "time":
            seconds = _pb_signed(dict(_pb_fields(raw)).get(1, 0))
            if seconds > 0:
                out[name] = datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        elif isinstance(kind, tuple):
            out.setdefault(name, []).append(_pb_message(raw, kind[1]))
        else:
            out[name] = _pb_message(raw, kind)
    return out


def decode_protobuf(raw: bytes) -> dict[str, Any]:
    """Decode a Kubernetes protobuf body of a Namespace or ConfigMap into its JSON form."""
    if not raw.startswith(_PB_MAGIC):
        raise bad_request("the protobuf body does not start with the Kubernetes envelope")
    try:
        envelope = dict(_pb_fields(raw[len(_PB_MAGIC):]))
        type_meta = _pb_message(envelope.get(1, b""), {1: ("apiVersion", "str"), 2: ("kind", "str")})
        kind = type_meta.get("kind", "")
        if kind not in _PB_KINDS:
            raise unsupported_media_type([JSON, "application/yaml"])
        obj = _pb_message(envelope.get(2, b""), _PB_KINDS[kind])
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"unable to decode protobuf body: {exc}") from None
    return {"apiVersion": type_meta.get("apiVersion", "v1"), "kind": kind, **obj}


# ============================================================================ routing


@dataclass(frozen=True)
class Target:
    """A resource URL: the type, namespace, object name and subresource it names."""

    rt: ResourceType
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    watch: bool = False  # the deprecated /watch/ path prefix


def parse_target(segments: list[str]) -> Target | None:
    """Map path segments (after ``/api/v1`` or ``/apis/<g>/<v>``) to a :class:`Target`."""
    if not segments:
        return None
    if segments[0] == "api":
        group, version, rest = "", segments[1] if len(segments) > 1 else "", segments[2:]
    elif segments[0] == "apis" and len(segments) >= 3:
        group, version, rest = segments[1], segments[2], segments[3:]
    else:
        return None
    kinds = openapi.BY_GROUP_VERSION.get((group, version))
    if kinds is None or not rest:
        return None
    watch = False
    if rest[0] == "watch":
        watch, rest = True, rest[1:]
        if not rest:
            return None
    namespace = None
    # /namespaces/{ns}/{plural}/... names a namespaced collection, except the namespace's own
    # subresources (/api/v1/namespaces/{name}/status|finalize).
    if rest[0] == "namespaces" and len(rest) >= 3 and not (group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")):
        namespace, rest = rest[1], rest[2:]
    rt = kinds.get(rest[0])
    if rt is None or len(rest) > 3:
        return None
    if namespace is not None and not rt.namespaced:
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    return Target(rt, namespace, name, sub, watch)


# ========================================================================== helpers


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string such as ``32s`` or ``1m30s``. Raises ValueError."""
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if not match:
            raise ValueError(text)
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not text:
        raise ValueError(text)
    return total


def _query_flag(params: Mapping[str, str], name: str) -> bool:
    return params.get(name, "").lower() in ("true", "1")


_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # apiserver's SimpleNameGenerator alphabet


def _generate_name(prefix: str) -> str:
    return prefix[: 63 - 5] + "".join(random.choice(_NAME_CHARS) for _ in range(5))  # noqa: S311


def _strip_server_fields(meta: dict[str, Any]) -> None:
    for key in ("managedFields", "selfLink"):
        meta.pop(key, None)


def simulate_update(rt: ResourceType, old: Mapping[str, Any], new: Mapping[str, Any],
                    subresource: str | None) -> dict[str, Any]:
    """What :meth:`Store.update` would store (for dry-run), without writing."""
    if subresource == "status":
        merged = clone(dict(old))
        if "status" in new:
            merged["status"] = clone(new["status"])
        else:
            merged.pop("status", None)
        return merged
    out = clone(dict(new))
    meta = out.setdefault("metadata", {})
    old_meta = old.get("metadata") or {}
    if rt.has_status:
        if "status" in old:
            out["status"] = clone(old["status"])
        else:
            out.pop("status", None)
    for key in ("uid", "creationTimestamp", "generation", "deletionTimestamp"):
        if key in old_meta:
            meta[key] = old_meta[key]
        else:
            meta.pop(key, None)
    if rt.group and out.get("spec") != old.get("spec"):
        meta["generation"] = int(old_meta.get("generation", 1)) + 1
    meta["resourceVersion"] = old_meta.get("resourceVersion")
    out["apiVersion"], out["kind"] = rt.api_version, rt.kind
    return out


def _simulate_create(rt: ResourceType, obj: Mapping[str, Any]) -> dict[str, Any]:
    out = clone(dict(obj))
    meta = out.setdefault("metadata", {})
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = now_rfc3339()
    meta.pop("resourceVersion", None)
    if rt.group:
        meta["generation"] = 1
    out["apiVersion"], out["kind"] = rt.api_version, rt.kind
    return out


@dataclass
class WriteOptions:
    """Query parameters shared by create, update and patch."""

    dry_run: bool
    field_validation: str  # Strict, Warn or Ignore

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> WriteOptions:
        """Read and check ``dryRun`` and ``fieldValidation``."""
        dry = params.getall("dryRun", []) if hasattr(params, "getall") else [params.get("dryRun", "")]
        dry = [d for d in dry if d]
        if any(d != "All" for d in dry):
            raise bad_request(f"Invalid dry run value: {dry}")
        mode = params.get("fieldValidation", "") or "Warn"
        canonical = {"strict": "Strict", "warn": "Warn", "ignore": "Ignore"}.get(mode.lower())
        if canonical is None:
            raise bad_request(f'fieldValidation: Unsupported value: "{mode}": supported values: "Ignore", "Strict", "Warn"')
        return cls(bool(dry), canonical)


# ======================================================================== the server


class ApiServer:
    """Request handlers bound to one store. Use :func:`create_app` to get a wired application."""

    def __init__(self, store: Store, token: str) -> None:
        self.store = store
        self._token = ("Bearer " + token).encode()
        self._documents = openapi.build_documents()
        self._watchers: dict[int, Any] = {}  # id(subscriber) -> subscriber of each open watch
        self._closing = False

    # ------------------------------------------------------------------ middleware

    def authorized(self, request: web.Request) -> bool:
        """Whether the request carries the bearer token (constant-time comparison)."""
        header = request.headers.get("Authorization", "")
        return hmac.compare_digest(header.encode("utf-8", "surrogateescape"), self._token)

    async def on_shutdown(self, _app: web.Application) -> None:
        """End every open watch so the server can stop without waiting for clients."""
        self._closing = True
        for sub in list(self._watchers.values()):
            sub.queue.put_nowait(None)

    # -------------------------------------------------------------------- dispatch

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        """Route one request."""
        path = request.path
        segments = [unquote(s) for s in path.split("/") if s]
        if request.method in ("GET", "HEAD"):
            fixed = self._fixed_route(path, segments, request)
            if fixed is not None:
                return fixed
        target = parse_target(segments)
        if target is None:
            raise path_not_found()
        return await self._resource(request, target)

    def _fixed_route(self, path: str, segments: list[str], request: web.Request) -> web.StreamResponse | None:
        if path in ("/healthz", "/livez", "/readyz") or (segments and segments[0] in ("healthz", "livez", "readyz")):
            return web.Response(text="ok", content_type="text/plain")
        if path == "/version":
            return json_response(self._version())
        if path == "/api":
            v2 = _discovery_v2(request.headers.get("Accept"))
            if v2:
                content = DISCOVERY_V2 if v2 == "v2" else DISCOVERY_V2BETA1
                return json_response(openapi.aggregated_discovery(True, v2), content_type=content)
            return json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}]})
        if path == "/apis":
            v2 = _discovery_v2(request.headers.get("Accept"))
            if v2:
                content = DISCOVERY_V2 if v2 == "v2" else DISCOVERY_V2BETA1
                return json_response(openapi.aggregated_discovery(False, v2), content_type=content)
            return json_response({"kind": "APIGroupList", "apiVersion": "v1",
                                  "groups": [openapi.api_group(g) for g in openapi.GROUPS]})
        if segments == ["api", "v1"]:
            return json_response(openapi.resource_list("", "v1"))
        if len(segments) == 2 and segments[0] == "apis":
            if segments[1] not in openapi.GROUPS:
                raise path_not_found()
            return json_response({"kind": "APIGroup", "apiVersion": "v1", **openapi.api_group(segments[1])})
        if len(segments) == 3 and segments[0] == "apis":
            if (segments[1], segments[2]) not in openapi.BY_GROUP_VERSION:
                raise path_not_found()
            return json_response(openapi.resource_list(segments[1], segments[2]))
        if segments[:1] == ["openapi"]:
            return self._openapi(segments[1:], request.headers.get("Accept"))
        return None

    def _version(self) -> dict[str, Any]:
        machine = platform.machine().lower()
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
        return {**KUBERNETES_VERSION, "gitCommit": "kserve-nb-local", "gitTreeState": "clean",
                "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.3", "compiler": "gc",
                "platform": f"{platform.system().lower()}/{arch}"}

    def _openapi(self, rest: list[str], accept: str | None) -> web.StreamResponse:
        docs = self._documents
        if rest == ["v2"]:
            if negotiate_openapi_v2(accept):
                return web.Response(body=docs.v2, content_type=JSON)
            # Only protobuf wanted (kubectl's patcher): we have none, answer as a server without v2.
            raise path_not_found()
        if rest == ["v3"]:
            return json_response(docs.v3_root())
        if rest[:1] == ["v3"]:
            gv = "/".join(rest[1:])
            body = docs.v3.get(gv)
            if body is None:
                raise path_not_found()
            response = web.Response(body=body, content_type=JSON)
            response.headers["Cache-Control"] = "public, immutable"
            response.headers["Etag"] = f'"{docs.v3_hash[gv]}"'
            return response
        raise path_not_found()

    async def _resource(self, request: web.Request, target: Target) -> web.StreamResponse:
        method = request.method
        rt = target.rt
        if target.subresource is not None:
            if target.subresource != "status" or not rt.has_status or not rt.user_writable:
                raise path_not_found()
            if method == "GET":
                return self._get(request, target)
            if method == "PUT":
                return await self._replace(request, target)
            if method == "PATCH":
                return await self._patch(request, target)
            raise method_not_allowed()
        if target.name is None:
            if method == "GET":
                if target.watch or _query_flag(request.query, "watch"):
                    return await self._watch(request, target)
                return self._list(request, target)
            if method == "POST" and rt.user_writable:
                return await self._create(request, target)
            if method == "DELETE" and rt.user_writable:
                return await self._delete_collection(request, target)
            raise method_not_allowed()
        if method == "GET":
            if target.watch or _query_flag(request.query, "watch"):
                return await self._watch(request, target)
            return self._get(request, target)
        if not rt.user_writable:
            raise method_not_allowed()
        if method == "PUT":
            return await self._replace(request, target)
        if method == "PATCH":
            return await self._patch(request, target)
        if method == "DELETE":
            return await self._delete(request, target)
        raise method_not_allowed()

    # ------------------------------------------------------------------------ reads

    def _get(self, request: web.Request, target: Target) -> web.Response:
        rt = target.rt
        assert target.name is not None
        obj = self.store.get(rt, target.namespace if rt.namespaced else None, target.name)
        if obj is None:
            raise not_found(rt, target.name)
        return self._render(request, rt, [obj], single=True)

    def _selection(self, request: web.Request, target: Target) -> Selection:
        params = request.query
        selection = Selection(parse_label_selector(params.get("labelSelector")),
                              parse_field_selector(params.get("fieldSelector"), target.rt))
        if target.name is not None:
            selection.fields.append(("metadata.name", True, target.name))
        return selection

    def _list(self, request: web.Request, target: Target) -> web.Response:
        rt = target.rt
        selection = self._selection(request, target)
        items, rv = self.store.list(rt, target.namespace if rt.namespaced else None)
        items = [o for o in items if selection.matches(o)]
        return self._render(request, rt, items, single=False, resource_version=str(rv))

    def _render(self, request: web.Request, rt: ResourceType, items: list[dict[str, Any]], *,
                single: bool, resource_version: str | None = None) -> web.Response:
        form = negotiate(request.headers.get("Accept"))
        if form.form == "table":
            include = request.query.get("includeObject") or "Metadata"
            if include not in ("None", "Metadata", "Object"):
                raise bad_request(f'includeObject: Unsupported value: "{include}": supported values: "None", "Metadata", "Object"')
            rv = resource_version if not single else None
            table = tables.to_table(rt, items, include_object=include, resource_version=rv,
                                    api_version=form.api_version)
            return json_response(table, content_type=form.content_type)
        if form.form == "partial":
            partials = [tables.partial_object_metadata(o, form.api_version) for o in items]
            if single:
                return json_response(partials[0])
            return json_response({"kind": "PartialObjectMetadataList", "apiVersion": form.api_version,
                                  "metadata": {"resourceVersion": resource_version}, "items": partials})
        if single:
            return json_response(items[0])
        return json_response({"apiVersion": rt.api_version, "items": items, "kind": rt.kind + "List",
                              "metadata": {"continue": "", "resourceVersion": resource_version}})

    # ----------------------------------------------------------------------- writes

    async def _body(self, request: web.Request) -> Any:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, "RequestEntityTooLarge",
                           f"Request entity too large: limit is {MAX_BODY_BYTES}") from None
        return decode_body(raw, request.content_type)

    def _check_kind(self, rt: ResourceType, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            kind = openapi.json_type(body)
            raise bad_request(f"couldn't get version/kind; json parse error: json: cannot unmarshal {kind} "
                              "into Go value of type struct { APIVersion string \"json:\\\"apiVersion,omitempty\\\"\"; "
                              "Kind string \"json:\\\"kind,omitempty\\\"\" }")
        # A missing apiVersion or kind defaults to the URL's, as the API server's decoder does.
        api_version = body.get("apiVersion") or rt.api_version
        kind = body.get("kind") or rt.kind
        if not isinstance(api_version, str) or not isinstance(kind, str):
            raise bad_request("couldn't get version/kind; json parse error: json: cannot unmarshal non-string "
                              "into Go struct field .apiVersion of type string")
        if api_version != rt.api_version:
            raise bad_request(f"the API version in the data ({api_version}) does not match the expected "
                              f"API version ({rt.api_version})")
        if kind != rt.kind:
            version = api_version.rsplit("/", 1)[-1]
            raise bad_request(f'{kind} in version "{version}" cannot be handled as a {rt.kind}: no kind '
                              f'"{kind}" is registered for version "{rt.api_version}" in scheme '
                              '"pkg/runtime/scheme.go:100"')
        return {**body, "apiVersion": api_version, "kind": kind}

    def _schema_check(self, rt: ResourceType, obj: dict[str, Any], name: str,
                      options: WriteOptions) -> tuple[dict[str, Any], list[str]]:
        """Field validation: unknown fields by ``fieldValidation`` mode, then types (422 / 400)."""
        result = openapi.validate(obj, rt)
        warnings: list[str] = []
        if result.unknown:
            texts = [f'unknown field "{path}"' for path in result.unknown]
            if options.field_validation == "Strict":
                raise bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                                  f"strict decoding error: {', '.join(texts)}")
            if options.field_validation == "Warn":
                warnings = texts
        if result.errors:
            if rt.group:
                raise invalid_error(rt, name, result.errors)
            path, actual, expected = result.type_errors[0] if result.type_errors else (result.errors[0].field, "", "")
            if result.type_errors:
                raise bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                                  + openapi.go_type_error(rt.kind, path, actual, expected))
            raise invalid_error(rt, name, result.errors)
        return result.obj, warnings

    def _admit(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None,
               subresource: str | None) -> dict[str, Any]:
        """Object-meta validation (422) and type-specific admission; returns the object to store."""
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        rule = "label" if rt.key == NAMESPACES.key else "subdomain"
        errors = validate_object_meta(meta, name_rule=rule)
        if old is None and meta.get("resourceVersion"):
            meta.pop("resourceVersion", None)
        if errors:
            raise invalid_error(rt, name, errors)
        if rt.key == NAMESPACES.key:
            meta.setdefault("labels", {})[NAMESPACE_NAME_LABEL] = name
            if old is None:
                obj["spec"] = {"finalizers": ["kubernetes"]}
                obj["status"] = {"phase": "Active"}
        elif rt.has_status and old is None:
            obj.pop("status", None)  # the status subresource: create ignores status
        if rt.key == INFERENCESERVICES.key and subresource is None:
            obj = default_inferenceservice(obj)
            try:
                validate_inferenceservice(obj, old)
            except AdmissionDenied as exc:
                raise ApiError(403, "Forbidden", exc.message) from None
        return obj

    def _prepare(self, rt: ResourceType, body: Any, *, namespace: str | None, url_name: str | None,
                 old: dict[str, Any] | None, options: WriteOptions, subresource: str | None = None,
                 managed_fields: list[dict[str, Any]] | None = None) -> tuple[dict[str, Any], list[str]]:
        # ``body`` is ours (freshly decoded or patched): no copy needed, _check_kind makes a shallow one.
        obj = self._check_kind(rt, body)
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        elif not isinstance(meta, dict):
            raise bad_request(f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: '
                              f"json: cannot unmarshal {openapi.json_type(meta)} into Go struct field "
                              f"{rt.kind}.metadata of type v1.ObjectMeta")
        _strip_server_fields(meta)
        # managedFields are the server's: kept from the stored object unless an apply computed new ones.
        if managed_fields is not None:
            meta["managedFields"] = managed_fields
        elif old is not None and (old.get("metadata") or {}).get("managedFields"):
            meta["managedFields"] = old["metadata"]["managedFields"]
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and body_ns != namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if url_name is not None:
            body_name = meta.get("name")
            if body_name and body_name != url_name:
                raise bad_request(f"the name of the object ({body_name}) does not match the name on the URL ({url_name})")
            meta["name"] = url_name
        elif not meta.get("name") and meta.get("generateName"):
            meta["name"] = _generate_name(str(meta["generateName"]))
        name = str(meta.get("name") or "")
        obj, warnings = self._schema_check(rt, obj, name, options)
        return self._admit(rt, obj, old, subresource), warnings

    async def _create(self, request: web.Request, target: Target) -> web.Response:
        rt = target.rt
        options = WriteOptions.parse(request.query)
        body = await self._body(request)
        obj, warnings = self._prepare(rt, body, namespace=target.namespace, url_name=None, old=None, options=options)
        return self._store_create(target, obj, options, warnings)

    def _store_create(self, target: Target, obj: dict[str, Any], options: WriteOptions,
                      warnings: list[str]) -> web.Response:
        rt = target.rt
        name = obj["metadata"]["name"]
        if rt.namespaced:
            if target.namespace is None:
                raise method_not_allowed()
            if self.store.get(NAMESPACES, None, target.namespace) is None:
                raise not_found(NAMESPACES, target.namespace)
        if options.dry_run:
            if self.store.get(rt, target.namespace, name) is not None:
                raise already_exists(rt, name)
            return json_response(_simulate_create(rt, obj), status=201, warnings=warnings)
        try:
            created = self.store.create(rt, obj)
        except StoreAlreadyExists:
            raise already_exists(rt, name) from None
        return json_response(created, status=201, warnings=warnings)

    def _existing(self, target: Target) -> dict[str, Any]:
        rt = target.rt
        assert target.name is not None
        old = self.store.get(rt, target.namespace if rt.namespaced else None, target.name)
        if old is None:
            raise not_found(rt, target.name)
        return old

    def _store_update(self, target: Target, obj: dict[str, Any], old: dict[str, Any],
                      options: WriteOptions) -> dict[str, Any]:
        rt = target.rt
        assert target.name is not None
        sent_rv = obj["metadata"].get("resourceVersion")
        if sent_rv not in (None, "") and str(sent_rv) != old["metadata"]["resourceVersion"]:
            raise conflict(rt, target.name)
        if options.dry_run:
            return simulate_update(rt, old, obj, target.subresource)
        try:
            return self.store.update(rt, obj, subresource=target.subresource)
        except (StoreNotFound, StoreConflict) as exc:
            raise _status_for(rt, target.name, exc) from None

    async def _replace(self, request: web.Request, target: Target) -> web.Response:
        rt = target.rt
        options = WriteOptions.parse(request.query)
        body = await self._body(request)
        old = self._existing(target)
        obj, warnings = self._prepare(rt, body, namespace=target.namespace, url_name=target.name, old=old,
                                      options=options, subresource=target.subresource)
        if rt.group and not obj["metadata"].get("resourceVersion"):
            # Custom resources do not allow unconditional updates.
            raise invalid_error(rt, str(target.name), [FieldError(
                "metadata.resourceVersion", "FieldValueInvalid", "Invalid value: 0x0: must be specified for an update")])
        updated = self._store_update(target, obj, old, options)
        return json_response(updated, warnings=warnings)

    async def _patch(self, request: web.Request, target: Target) -> web.Response:
        rt = target.rt
        options = WriteOptions.parse(request.query)
        ctype = request.content_type
        accepted = openapi.patch_content_types(rt)
        if ctype not in accepted or (ctype == APPLY_PATCH and target.subresource is not None):
            raise unsupported_media_type([t for t in (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)
                                          if t in accepted])
        if ctype == APPLY_PATCH:
            return await self._apply(request, target, options)
        if _query_flag(request.query, "force"):
            raise bad_request("force: Invalid value: true: may not be specified for non-apply patch")
        raw = await request.read()
        try:
            patch = orjson.loads(raw) if raw.strip() else None
        except orjson.JSONDecodeError as exc:
            raise bad_request(f"error decoding patch: {exc}") from None
        _check_int64(patch)
        old = self._existing(target)
        try:
            if ctype == JSON_PATCH:
                patched = json_patch(old, patch)
            elif ctype == MERGE_PATCH:
                patched = merge_patch(old, patch)
            else:
                patched = strategic_merge_patch(old, patch)
        except PatchError as exc:
            if exc.bad_request:
                raise bad_request(exc.message) from None
            # A real server says only this; the cause (our addition) tells which operation failed.
            raise ApiError(422, "Invalid", "the server rejected our request due to an error in our request",
                           {"causes": [{"reason": "FieldValueInvalid", "field": exc.path, "message": exc.message}]}) from None
        if patched is None:
            raise bad_request("the patch removed the whole object")
        obj, warnings = self._prepare(rt, patched, namespace=target.namespace, url_name=target.name, old=old,
                                      options=options, subresource=target.subresource)
        updated = self._store_update(target, obj, old, options)
        return json_response(updated, warnings=warnings)

    async def _apply(self, request: web.Request, target: Target, options: WriteOptions) -> web.Response:
        """Server-side apply (``application/apply-patch+yaml``), with ownership tracked per Apply manager.

        Fields the manager applied before and no longer applies are removed unless another Apply
        manager owns them; changing a field another Apply manager owns is a conflict unless
        ``force=true``. Writers using update/patch are not tracked as owners (a simplification).
        """
        rt = target.rt
        name = str(target.name)
        manager = request.query.get("fieldManager", "")
        if not manager:
            raise bad_request("fieldManager: Required value: is required for apply patch")
        raw = await request.read()
        try:
            config = orjson.loads(raw)
            _check_int64(config)
        except orjson.JSONDecodeError:
            config = decode_body(raw, "application/yaml")
        config = self._check_kind(rt, config)
        old = self.store.get(rt, target.namespace if rt.namespaced else None, name)
        entries = [e for e in ((old or {}).get("metadata") or {}).get("managedFields") or [] if isinstance(e, dict)]
        mine: set[tuple[str, ...]] = set()
        others: dict[int, set[tuple[str, ...]]] = {}
        for index, entry in enumerate(entries):
            if entry.get("operation") != "Apply":
                continue
            fields = parse_fields_v1(entry.get("fieldsV1"))
            if entry.get("manager") == manager:
                mine = fields
            else:
                others[index] = fields
        wanted = applied_fields(config)
        conflicts = self._apply_conflicts(old, config, wanted, others)
        if conflicts and not _query_flag(request.query, "force"):
            raise self._conflict_error(rt, name, entries, conflicts)
        for index, path in conflicts:  # forced: the fields change hands
            others[index].discard(path)
        result = apply_merge(old or {}, config)
        for path in mine - wanted:
            if not any(path in fields for fields in others.values()):
                remove_path(result, path)
        # Other managers keep their entries (minus fields taken by force; emptied Apply entries go).
        managed = [dict(entry, fieldsV1=fields_v1(others[i])) if i in others else entry
                   for i, entry in enumerate(entries)
                   if not (entry.get("operation") == "Apply" and entry.get("manager") == manager)]
        managed = [e for e in managed if not (e.get("operation") == "Apply" and not e.get("fieldsV1"))]
        managed.append({"manager": manager, "operation": "Apply", "apiVersion": rt.api_version,
                        "time": now_rfc3339(), "fieldsType": "FieldsV1", "fieldsV1": fields_v1(wanted)})
        obj, warnings = self._prepare(rt, result, namespace=target.namespace, url_name=name, old=old,
                                      options=options, managed_fields=managed)
        if old is None:
            return self._store_create(target, obj, options, warnings)
        return json_response(self._store_update(target, obj, old, options), warnings=warnings)

    @staticmethod
    def _apply_conflicts(old: dict[str, Any] | None, config: dict[str, Any], wanted: set[tuple[str, ...]],
                         others: dict[int, set[tuple[str, ...]]]) -> list[tuple[int, tuple[str, ...]]]:
        """(entry index, field) pairs the apply would change although another Apply manager owns them."""
        if old is None:
            return []
        conflicts = []
        for index, fields in others.items():
            for path in sorted(wanted & fields):
                if get_path(old, path) != get_path(config, path):
                    conflicts.append((index, path))
        return conflicts

    def _conflict_error(self, rt: ResourceType, name: str, entries: list[Any],
                        conflicts: list[tuple[int, tuple[str, ...]]]) -> ApiError:
        """409 for an apply that would change fields another Apply manager owns (SSA's wording)."""
        by_manager: dict[str, list[str]] = {}
        causes = []
        for index, path in conflicts:
            manager = f'"{entries[index].get("manager", "")}"'
            field = "." + ".".join(path)
            by_manager.setdefault(manager, []).append(field)
            causes.append({"reason": "FieldManagerConflict", "message": f"conflict with {manager}", "field": field})
        if len(conflicts) == 1:
            message = f"Apply failed with 1 conflict: conflict with {next(iter(by_manager))}: {causes[0]['field']}"
        else:
            parts = []
            for manager in sorted(by_manager):
                parts.append(f"conflicts with {manager}:")
                parts += [f"- {field}" for field in by_manager[manager]]
            message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(parts)
        return ApiError(409, "Conflict", message, {"causes": causes})

    # ---------------------------------------------------------------------- deletes

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw.strip():
            options: dict[str, Any] = {}
        else:
            options = decode_body(raw, request.content_type)
            if not isinstance(options, dict):
                raise bad_request("DeleteOptions must be a JSON object")
        dry = list(request.query.getall("dryRun", [])) + list(options.get("dryRun") or [])
        if any(d != "All" for d in dry if d):
            raise bad_request(f"Invalid dry run value: {dry}")
        policy = options.get("propagationPolicy") or request.query.get("propagationPolicy")
        if policy not in (None, "", "Orphan", "Background", "Foreground"):
            raise bad_request(f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                              '"Foreground", "Background", "Orphan", "nil"')
        options["_dry_run"] = any(dry)
        return options

    async def _delete(self, request: web.Request, target: Target) -> web.Response:
        rt = target.rt
        name = str(target.name)
        options = await self._delete_options(request)
        old = self._existing(target)
        preconditions = options.get("preconditions") or {}
        uid = preconditions.get("uid")
        if uid and uid != old["metadata"].get("uid"):
            raise conflict(rt, name, f"Precondition failed: UID in precondition: {uid}, UID in object meta: "
                                     f"{old['metadata'].get('uid')}")
        want_rv = preconditions.get("resourceVersion")
        if want_rv and want_rv != old["metadata"].get("resourceVersion"):
            raise conflict(rt, name, f"the ResourceVersion in the precondition ({want_rv}) does not match the "
                                     f"ResourceVersion in record ({old['metadata'].get('resourceVersion')}). "
                                     "The object might have been modified")
        if rt.key == NAMESPACES.key and name in PROTECTED_NAMESPACES:
            raise ApiError(403, "Forbidden", f'namespaces "{name}" is forbidden: this namespace may not be deleted',
                           _details(rt, name))
        if options["_dry_run"]:
            deleted = old
        else:
            if rt.key == NAMESPACES.key:
                self._empty_namespace(name)
            try:
                deleted = self.store.delete(rt, target.namespace if rt.namespaced else None, name)
            except StoreNotFound:
                raise not_found(rt, name) from None
        return json_response(self._deleted_body(rt, deleted))

    def _deleted_body(self, rt: ResourceType, deleted: dict[str, Any]) -> dict[str, Any]:
        meta = deleted.get("metadata") or {}
        if rt.key == CONFIGMAPS.key:
            # Built-in types without ReturnDeletedObject answer a Success Status.
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": meta.get("name"), "kind": rt.plural, "uid": meta.get("uid")}}
        if rt.key == NAMESPACES.key:
            out = clone(deleted)
            out["metadata"]["deletionTimestamp"] = now_rfc3339()
            out["status"] = {"phase": "Terminating"}
            return out
        return deleted

    def _empty_namespace(self, namespace: str) -> None:
        """Delete every namespaced object in ``namespace`` (isvcs first, so the controller sees them go)."""
        order = sorted((rt for rt in RESOURCE_TYPES if rt.namespaced),
                       key=lambda rt: rt.key != INFERENCESERVICES.key)
        for rt in order:
            items, _ = self.store.list(rt, namespace)
            for item in items:
                try:
                    self.store.delete(rt, namespace, item["metadata"]["name"])
                except StoreNotFound:
                    pass

    async def _delete_collection(self, request: web.Request, target: Target) -> web.Response:
        rt = target.rt
        options = await self._delete_options(request)
        selection = self._selection(request, target)
        items, _ = self.store.list(rt, target.namespace if rt.namespaced else None)
        deleted = []
        for item in items:
            if not selection.matches(item):
                continue
            name = item["metadata"]["name"]
            if rt.key == NAMESPACES.key and name in PROTECTED_NAMESPACES:
                continue
            if not options["_dry_run"]:
                if rt.key == NAMESPACES.key:
                    self._empty_namespace(name)
                item = self.store.delete(rt, item["metadata"].get("namespace") if rt.namespaced else None, name)
            deleted.append(item)
        return json_response({"apiVersion": rt.api_version, "kind": rt.kind + "List", "items": deleted,
                              "metadata": {"resourceVersion": str(self.store.resource_version)}})

    # ------------------------------------------------------------------------ watch

    async def _watch(self, request: web.Request, target: Target) -> web.StreamResponse:
        return await WatchStream(self, request, target).run()


# ============================================================================= watch


class WatchStream:
    """One watch request: initial state or resumption, then live events until timeout/disconnect."""

    def __init__(self, server: ApiServer, request: web.Request, target: Target) -> None:
        self.server = server
        self.store = server.store
        self.request = request
        self.target = target
        self.rt = target.rt
        self.namespace = target.namespace if target.rt.namespaced else None
        params = request.query
        self.selection = server._selection(request, target)
        self.form = negotiate(request.headers.get("Accept"))
        self.include = params.get("includeObject") or "Metadata"
        self.bookmarks = _query_flag(params, "allowWatchBookmarks")
        self.send_initial = _query_flag(params, "sendInitialEvents")
        self.rv_param = params.get("resourceVersion", "")
        try:
            if params.get("timeoutSeconds"):
                self.timeout = float(params["timeoutSeconds"])
            elif params.get("timeout"):
                self.timeout = parse_go_duration(params["timeout"])  # the client's request timeout
            else:
                self.timeout = DEFAULT_WATCH_TIMEOUT
        except ValueError:
            raise bad_request(f"invalid timeoutSeconds: {params.get('timeoutSeconds')}") from None
        self.headers_sent = False
        self.visible: set[tuple[str, str]] = set()  # objects this watcher has seen as selected
        self.last_rv = 0

    async def run(self) -> web.StreamResponse:
        """Serve the watch; returns when it times out, the client leaves or the server stops."""
        # sendInitialEvents (streaming list) always starts from the current state, like rv "" or "0".
        if self.rv_param not in ("", "0") and not self.send_initial:
            try:
                start_rv = int(self.rv_param)
            except ValueError:
                raise bad_request(f"invalid resource version: {self.rv_param}") from None
        else:
            start_rv = None
        sub = self.store.subscribe(self.rt, self.namespace)
        self.server._watchers[id(sub)] = sub
        try:
            # No await between subscribing and reading the backlog: nothing can slip in between.
            backlog, gone = self._backlog(start_rv)
            response = web.StreamResponse(status=200)
            response.headers["Content-Type"] = self.form.content_type if self.form.form == "table" else JSON
            response.headers["Cache-Control"] = "no-cache, private"
            response.enable_chunked_encoding()
            await response.prepare(self.request)
            if gone is not None:
                await self._send(response, {"type": "ERROR", "object": gone.status()})
                return await self._finish(response)
            for etype, obj in backlog:
                await self._send_object(response, etype, obj)
            if start_rv is None and self.send_initial and self.bookmarks:
                await self._send_bookmark(response, initial_end=True)
            await self._follow(response, sub)
            return await self._finish(response)
        except (ConnectionError, asyncio.CancelledError):
            raise
        finally:
            self.store.unsubscribe(sub)
            self.server._watchers.pop(id(sub), None)

    async def _finish(self, response: web.StreamResponse) -> web.StreamResponse:
        try:
            await response.write_eof()
        except ConnectionError:
            pass
        return response

    def _backlog(self, start_rv: int | None) -> tuple[list[tuple[str, dict[str, Any]]], ApiError | None]:
        if start_rv is None:
            items, rv = self.store.list(self.rt, self.namespace)
            self.last_rv = rv
            return [("ADDED", o) for o in items if self.selection.matches(o)], None
        try:
            # (cast: Store.list shadows the builtin in store.py's annotations, which confuses mypy)
            events = cast("list[WatchEvent]", self.store.events_since(start_rv, self.rt, self.namespace))
        except StoreGone as exc:
            return [], ApiError(410, "Expired", str(exc))
        self.last_rv = max([start_rv] + [e.rv for e in events])
        return [(e.type, e.obj) for e in events], None

    async def _follow(self, response: web.StreamResponse, sub: Any) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        next_bookmark = loop.time() + BOOKMARK_INTERVAL
        transport = self.request.transport
        while not self.server._closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                event: WatchEvent | None = await asyncio.wait_for(sub.queue.get(), min(remaining, 1.0))
            except asyncio.TimeoutError:
                if transport is None or transport.is_closing():
                    return  # the client went away
                if self.bookmarks and loop.time() >= next_bookmark:
                    await self._send_bookmark(response)
                    next_bookmark = loop.time() + BOOKMARK_INTERVAL
                continue
            if event is None:
                return  # server shutdown
            if event.rv <= self.last_rv:
                continue  # already covered by the backlog
            self.last_rv = event.rv
            await self._send_object(response, event.type, event.obj)

    async def _send_object(self, response: web.StreamResponse, etype: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        selected = self.selection.matches(obj)
        if not selected:
            if key in self.visible and etype != "DELETED":
                # It left the selection: to this watcher it was deleted.
                self.visible.discard(key)
                await self._send(response, {"type": "DELETED", "object": self._present(obj)})
            return
        if etype == "DELETED":
            self.visible.discard(key)
        else:
            if etype == "MODIFIED" and key not in self.visible and self.selection.labels:
                etype = "ADDED"  # it entered the selection
            self.visible.add(key)
        await self._send(response, {"type": etype, "object": self._present(obj)})

    def _present(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self.form.form == "table":
            table = tables.to_table(self.rt, [obj], include_object=self.include, headers=not self.headers_sent,
                                    api_version=self.form.api_version,
                                    resource_version=(obj.get("metadata") or {}).get("resourceVersion"))
            self.headers_sent = True
            return table
        if self.form.form == "partial":
            return tables.partial_object_metadata(obj, self.form.api_version)
        return obj

    async def _send_bookmark(self, response: web.StreamResponse, *, initial_end: bool = False) -> None:
        meta: dict[str, Any] = {"resourceVersion": str(max(self.last_rv, 0))}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        await self._send(response, {"type": "BOOKMARK",
                                    "object": {"kind": self.rt.kind, "apiVersion": self.rt.api_version, "metadata": meta}})

    async def _send(self, response: web.StreamResponse, event: dict[str, Any]) -> None:
        await response.write(orjson.dumps(event) + b"\n")


# ========================================================================= the app


def _namespace_manifest(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {NAMESPACE_NAME_LABEL: name}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def ensure_default_namespaces(store: Store) -> None:
    """Create ``default``, ``kube-system`` and ``kube-public`` when missing."""
    for name in PROTECTED_NAMESPACES:
        if store.get(NAMESPACES, None, name) is None:
            store.create(NAMESPACES, _namespace_manifest(name))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SERVER_KEY = web.AppKey("kserve_nb_apiserver", ApiServer)


@web.middleware
async def _errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return status_response(exc)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except web.HTTPException as exc:
        # aiohttp's own refusals (e.g. a body over the size limit) become Status objects too.
        return status_response(ApiError(exc.status, exc.reason.replace(" ", ""), exc.text or exc.reason))
    except Exception:  # noqa: BLE001 - never leak a traceback for bad input
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return status_response(ApiError(500, "InternalError",
                                        "Internal error occurred: unexpected server error",
                                        {"causes": [{"message": "unexpected server error"}]}))


@web.middleware
async def _auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    server = request.app[SERVER_KEY]
    if not server.authorized(request):
        return status_response(UNAUTHORIZED)
    return await handler(request)


@dataclass(frozen=True)
class TlsMaterial:
    """A private CA and a server certificate for the loopback API server (PEM bytes).

    kubectl (client-go) sends a kubeconfig's bearer token only over TLS, so the server must speak
    HTTPS even on 127.0.0.1; clients trust ``ca_pem`` through ``certificate-authority-data``.
    """

    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    def server_context(self) -> ssl.SSLContext:
        """An SSL context serving the certificate (for ``web.TCPSite(..., ssl_context=…)``)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as tmp:
            # load_cert_chain only reads files; the directory is private and removed at once.
            cert_file, key_file = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
            cert_file.write_bytes(self.cert_pem + self.ca_pem)
            key_file.touch(mode=0o600)
            key_file.write_bytes(self.key_pem)
            context.load_cert_chain(cert_file, key_file)
        return context


def self_signed_tls(hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), days: int = 3650) -> TlsMaterial:
    """Generate a CA and a server certificate for ``hosts`` (IP addresses or DNS names)."""
    import ipaddress
    from datetime import datetime, timedelta, timezone

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(timezone.utc) - timedelta(minutes=5)
    until = now + timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kserve-nb-local-ca")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kserve-nb-apiserver")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return TlsMaterial(
        ca_pem=ca_cert.public_bytes(pem),
        cert_pem=cert.public_bytes(pem),
        key_pem=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def kubeconfig(server: str, token: str, ca_pem: bytes, *, context: str = "kserve-nb-local",
               namespace: str | None = None) -> dict[str, Any]:
    """A kubeconfig document for the local cluster (write it with mode 0600: it holds the token)."""
    ctx: dict[str, Any] = {"cluster": context, "user": context}
    if namespace:
        ctx["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {
            "server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": context, "user": {"token": token}}],
        "contexts": [{"name": context, "context": ctx}],
        "current-context": context,
        "preferences": {},
    }


def create_app(store: Store, token: str) -> web.Application:
    """The local Kubernetes API server as an aiohttp application.

    Parameters
    ----------
    store:
        The object store (its methods are called on the application's event loop).
    token:
        The bearer token every request must carry. It is never logged.
    """
    ensure_default_namespaces(store)
    server = ApiServer(store, token)
    app = web.Application(middlewares=[_errors_middleware, _auth_middleware], client_max_size=MAX_BODY_BYTES)
    app[SERVER_KEY] = server
    app.router.add_route("*", "/{tail:.*}", server.dispatch)
    app.on_shutdown.append(server.on_shutdown)
    return app
