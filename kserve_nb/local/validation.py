"""Request bodies checked against the served schemas, the way a real API server decodes them.

:func:`validate` reports unknown fields (for ``fieldValidation=Strict``/``Warn``; they are
pruned), type and enum errors (422 for custom resources) and missing ``required`` fields. ``null``
values of non-nullable fields are dropped first, as the CRD machinery does.
:func:`go_type_error` phrases a type mismatch as Go's JSON decoder does for built-in kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kserve_nb.local.admission import FieldError, invalid, not_supported, required
from kserve_nb.local.schemas import REF_PREFIX, REGISTRY, TYPES, Schema
from kserve_nb.local.store import ResourceType


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
