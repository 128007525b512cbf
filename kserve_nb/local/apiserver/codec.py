"""Content negotiation and request bodies: JSON, YAML, and the protobuf kubectl sends for core types."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import yaml
from aiohttp import web
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from kserve_nb.local.apiserver.failures import ApiError, bad_request, unsupported_media_type

JSON = "application/json"
DISCOVERY_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
DISCOVERY_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", APPLY_PATCH)


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


def wants_discovery_v2(accept: str | None) -> str | None:
    for media, params in _media_ranges(accept or ""):
        if (
            media == JSON
            and params.get("g") == "apidiscovery.k8s.io"
            and params.get("as") == "APIGroupDiscoveryList"
            and params.get("v") in ("v2", "v2beta1")
        ):
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


#: Deepest nesting a request body (or a stored object) may have. Kubernetes objects are a few
#: dozen levels deep at most; the bound keeps every recursive step after decoding (merging,
#: validation, orjson's encoder, which stops at 255) far from Python's recursion limit.
MAX_DEPTH = 100
#: Nodes YAML aliases may add beyond the document's own. Anchors stay usable; an alias bomb (each
#: level multiplying the one below) is refused after composing, before anything is expanded.
MAX_ALIAS_EXPANSION = 10_000


if yaml.__with_libyaml__:
    from yaml._yaml import CParser

    class _SafeEvents(Composer, CParser, SafeConstructor, Resolver):  # type: ignore[misc]
        """A safe loader on libyaml's events: its scanner is linear in the input where PyYAML's is
        quadratic in the flow nesting it looks ahead over, and it stops at 1,000 levels itself.
        The composer stays Python, so :class:`_JsonSafeLoader` can bound depth and aliases."""

        def __init__(self, stream: Any) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
else:  # pragma: no cover - PyYAML without libyaml
    _SafeEvents = yaml.SafeLoader  # type: ignore[misc]


class _JsonSafeLoader(_SafeEvents):
    """Safe YAML loader that keeps timestamps as strings, as sigs.k8s.io/yaml does.

    It also bounds what a small hostile document can cost: nesting depth while composing (the
    composer recurses per level) and the size aliases would expand to (checked on the node graph,
    in time linear in the document, before construction).
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise bad_request(f"error converting YAML to JSON: yaml: exceeded max depth of {MAX_DEPTH}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node)
        return node


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a composed YAML graph whose expansion is too deep, too large or cyclic.

    Iterative post-order walk over distinct nodes, each visited once: an alias is the anchored node
    itself, so its expanded size is computed once and reused (sizes may be astronomically large
    integers for a bomb; they are only compared, never materialised).
    """
    def children(node: yaml.Node) -> list[yaml.Node]:
        if isinstance(node, yaml.MappingNode):
            return [n for pair in node.value for n in pair]
        if isinstance(node, yaml.SequenceNode):
            return list(node.value)
        return []

    done: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded node count, expanded depth)
    entered: set[int] = set()  # nodes on the current path
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        key = id(node)
        if leaving:
            kids = children(node)
            size = 1 + sum(done[id(k)][0] for k in kids)
            depth = 1 + max((done[id(k)][1] for k in kids), default=0)
            if depth > MAX_DEPTH:
                raise bad_request(f"error converting YAML to JSON: yaml: exceeded max depth of {MAX_DEPTH}")
            entered.discard(key)
            done[key] = (size, depth)
            continue
        if key in done:
            continue
        if key in entered:
            raise bad_request("error converting YAML to JSON: yaml: an alias refers to a node that contains it")
        entered.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in children(node) if id(k) not in done)
    if done[id(root)][0] > len(done) + MAX_ALIAS_EXPANSION:
        raise bad_request("error converting YAML to JSON: yaml: document contains excessive aliasing")


_JsonSafeLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in Resolver.yaml_implicit_resolvers.items()
}


def _jsonable(value: Any, path: str = "") -> Any:
    if isinstance(value, dict):
        return {
            str(k) if not isinstance(k, bool) else str(k).lower(): _jsonable(v, f"{path}.{k}") for k, v in value.items()
        }
    if isinstance(value, list):
        return [_jsonable(v, path) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not _INT64_MIN <= value <= _INT64_MAX:
        raise bad_request(f"json: cannot unmarshal number {value} into Go value of type int64")
    if isinstance(value, float) and not math.isfinite(value):
        raise bad_request(f"error converting YAML to JSON: {value} is not valid JSON")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise bad_request(
        f"error converting YAML to JSON: unsupported value of type {type(value).__name__} at {path or '<root>'}"
    )


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
        except (yaml.YAMLError, ValueError) as exc:  # ValueError: an integer past Python's digit limit
            raise bad_request(f"error converting YAML to JSON: {exc}".replace("\n", " ")) from None
        return _jsonable(value)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None
    check_json(value)
    return value


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def check_json(value: Any) -> None:
    """Reject what Go's decoder would, before anything recurses into ``value``: integers outside
    int64 (orjson reads them but cannot write them) and nesting deeper than :data:`MAX_DEPTH`."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise bad_request(f"json: exceeded max depth of {MAX_DEPTH}")
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
        elif isinstance(item, int) and not isinstance(item, bool) and not _INT64_MIN <= item <= _INT64_MAX:
            raise bad_request(f"json: cannot unmarshal number {item} into Go value of type int64")


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
        if isinstance(raw, int) != (kind in ("int", "bool")):
            raise ValueError(f"field {number} ({name}) has the wrong wire type")
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
                out[name] = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
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
    except (ValueError, TypeError, AttributeError, OverflowError, OSError) as exc:  # malformed (wire types, times)
        raise bad_request(f"unable to decode protobuf body: {exc}") from None
    return {"apiVersion": type_meta.get("apiVersion", "v1"), "kind": kind, **obj}
