"""The patch formats the local API server accepts beyond a merge patch, as pure functions.

- :func:`json_patch` — RFC 6902 JSON patch (``application/json-patch+json``): add, remove, replace,
  move, copy, test, with RFC 6901 pointers.
- :func:`strategic_merge_patch` — the subset of Kubernetes' strategic merge patch that the core
  types we serve (ConfigMap, Namespace) need: a merge patch that understands and drops the
  ``$patch`` / ``$retainKeys`` / ``$setElementOrder`` / ``$deleteFromPrimitiveList`` directives.
- server-side apply (``application/apply-patch+yaml``): the fields an apply configuration owns
  (:func:`applied_fields`, ``managedFields``' ``FieldsV1`` form) and :func:`apply_merge`.

The RFC 7386 merge patch (``application/merge-patch+json``) is :func:`kserve_nb.patches.merge_patch`,
the one the client's release steps build and dry-run too.

Error texts follow the Go libraries behind a real API server (evanphx/json-patch), so that a client
sees the same message it would see from Kubernetes.
"""

from __future__ import annotations

from typing import Any

import orjson

from kserve_nb.patches import clone

#: The API server's limits on a JSON patch: operations per patch, and bytes all ``copy``
#: operations of one patch may add.
MAX_JSON_PATCH_OPERATIONS = 10_000
MAX_COPY_BYTES = 3 * 1024 * 1024


class PatchError(ValueError):
    """A patch document is malformed (``bad_request``) or does not apply to the target."""

    def __init__(self, message: str, *, bad_request: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.path = ""  # the JSON pointer of the failing operation, when known
        # True: the patch itself is malformed (400); False: it does not apply to the object (422).
        self.bad_request = bad_request


# ----------------------------------------------------------------- strategic merge patch

_SMP_DIRECTIVE_PREFIXES = ("$setElementOrder/", "$deleteFromPrimitiveList/", "$retainKeys")


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Apply a strategic merge patch to a type without merge-keyed lists (ConfigMap, Namespace).

    For such types a strategic merge patch is a merge patch plus directives; ``$patch: delete``
    on a map removes it, ``$patch: replace`` replaces it, the ordering/retain directives carry no
    information for maps and are dropped.
    """
    if not isinstance(patch, dict):
        return clone(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    body = {k: v for k, v in patch.items() if not _is_directive(k)}
    if directive == "replace":
        return _strip_directives(body)
    result = clone(target) if isinstance(target, dict) else {}
    for key, value in body.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = _strip_directives(clone(value))
    return result


def _is_directive(key: str) -> bool:
    return key == "$patch" or key.startswith(_SMP_DIRECTIVE_PREFIXES)


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not _is_directive(k)}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


# ---------------------------------------------------------------------------- JSON patch

_MISSING = object()


def json_patch(document: Any, operations: Any) -> Any:
    """Apply an RFC 6902 JSON patch and return the result (the input is not modified).

    Raises :class:`PatchError` with ``bad_request=True`` when the patch document is malformed and
    with ``bad_request=False`` when an operation does not apply (a failed ``test``, a missing path).
    """
    if not isinstance(operations, list):
        kind = _go_json_kind(operations)
        raise PatchError(
            f"json: cannot unmarshal {kind} into Go value of type jsonpatch.Patch", bad_request=True
        )
    if len(operations) > MAX_JSON_PATCH_OPERATIONS:
        raise PatchError(f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, "
                         f"got {len(operations)}", bad_request=True)
    doc = clone(document)
    copied = [0]  # bytes copied so far: each copy may double the document
    for op in operations:
        if not isinstance(op, dict):
            raise PatchError(
                f"json: cannot unmarshal {_go_json_kind(op)} into Go value of type jsonpatch.Operation",
                bad_request=True,
            )
        try:
            doc = _copy(doc, op, op.get("path"), copied) if op.get("op") == "copy" else _apply_operation(doc, op)
        except PatchError as exc:
            path = op.get("path")
            exc.path = path if isinstance(path, str) else ""
            raise
    return doc


def _go_json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if value is None:
        return "null"
    return "number"


def _apply_operation(doc: Any, op: dict[str, Any]) -> Any:
    kind = op.get("op")
    path = op.get("path")
    if not isinstance(kind, str) or kind not in _OPERATIONS:
        raise PatchError(f"Unexpected kind: {kind if isinstance(kind, str) else 'unknown'}")
    if not isinstance(path, str):
        raise PatchError(f"{kind} operation missing path", bad_request=False)
    return _OPERATIONS[kind](doc, op, path)


def parse_pointer(pointer: str) -> list[str]:
    """Split an RFC 6901 JSON pointer into unescaped reference tokens."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f'JSON pointer must be empty or start with a "/": {pointer}')
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _array_index(token: str, length: int, *, allow_end: bool) -> int:
    if token == "-" and allow_end:  # noqa: S105 - a JSON Pointer token, not a secret
        return length
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"invalid array index: {token}")
    index = int(token)
    limit = length if allow_end else length - 1
    if index > limit:
        raise PatchError(f"index out of bounds: {index}")
    return index


def _container(doc: Any, tokens: list[str], pointer: str, opname: str) -> Any:
    """The parent container of the location ``tokens`` points at."""
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            try:
                node = node[_array_index(token, len(node), allow_end=False)]
            except PatchError:
                raise PatchError(
                    f"{opname} operation does not apply: doc is missing path: \"{pointer}\": missing value"
                ) from None
        else:
            raise PatchError(f"{opname} operation does not apply: doc is missing path: \"{pointer}\": missing value")
    return node


def _get(doc: Any, pointer: str, opname: str) -> Any:
    node = doc
    for token in parse_pointer(pointer):
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            try:
                node = node[_array_index(token, len(node), allow_end=False)]
            except PatchError:
                return _MISSING
        else:
            return _MISSING
    return node


def _add(doc: Any, op: dict[str, Any], path: str) -> Any:
    if "value" not in op:
        raise PatchError("add operation missing value")
    return _insert(doc, path, clone(op["value"]), "add")


def _insert(doc: Any, path: str, value: Any, opname: str) -> Any:
    tokens = parse_pointer(path)
    if not tokens:
        return value
    parent = _container(doc, tokens, path, opname)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_array_index(last, len(parent), allow_end=True), value)
    else:
        raise PatchError(f"{opname} operation does not apply: doc is missing path: \"{path}\": missing value")
    return doc


def _remove(doc: Any, op: dict[str, Any], path: str) -> Any:
    tokens = parse_pointer(path)
    if not tokens:
        raise PatchError("unable to remove the whole document")
    parent = _container(doc, tokens, path, "remove")
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"Unable to remove nonexistent key: {last}: missing value")
        del parent[last]
    elif isinstance(parent, list):
        try:
            del parent[_array_index(last, len(parent), allow_end=False)]
        except PatchError:
            raise PatchError(f"Unable to remove nonexistent key: {last}: missing value") from None
    else:
        raise PatchError(f"remove operation does not apply: doc is missing path: \"{path}\": missing value")
    return doc


def _replace(doc: Any, op: dict[str, Any], path: str) -> Any:
    if "value" not in op:
        raise PatchError("replace operation missing value")
    tokens = parse_pointer(path)
    value = clone(op["value"])
    if not tokens:
        return value
    parent = _container(doc, tokens, path, "replace")
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        parent[last] = value
    elif isinstance(parent, list):
        try:
            parent[_array_index(last, len(parent), allow_end=False)] = value
        except PatchError:
            raise PatchError(f"replace operation does not apply: doc is missing key: {path}: missing value") from None
    else:
        raise PatchError(f"replace operation does not apply: doc is missing key: {path}: missing value")
    return doc


def _move(doc: Any, op: dict[str, Any], path: str) -> Any:
    source = op.get("from")
    if not isinstance(source, str):
        raise PatchError("move operation missing from")
    if path.startswith(source + "/"):
        raise PatchError("move operation does not apply: a location cannot be moved into one of its children")
    value = _get(doc, source, "move")
    if value is _MISSING:
        raise PatchError(f"move operation does not apply: doc is missing from path: {source}: missing value")
    doc = _remove(doc, {"path": source}, source)
    return _insert(doc, path, value, "move")


def _copy(doc: Any, op: dict[str, Any], path: Any, copied: list[int] | None = None) -> Any:
    if not isinstance(path, str):
        raise PatchError("copy operation missing path", bad_request=False)
    source = op.get("from")
    if not isinstance(source, str):
        raise PatchError("copy operation missing from")
    value = _get(doc, source, "copy")
    if value is _MISSING:
        raise PatchError(f"copy operation does not apply: doc is missing from path: {source}: missing value")
    encoded = orjson.dumps(value)
    if copied is not None:
        # As the API server's json-patch library: a few copies of a copy would otherwise grow the
        # document exponentially (2^n) before anything else could refuse it.
        copied[0] += len(encoded)
        if copied[0] > MAX_COPY_BYTES:
            raise PatchError(f"Unable to copy, the accumulated size increase of copy is {copied[0]}, "
                             f"exceeding the limit {MAX_COPY_BYTES}", bad_request=True)
    return _insert(doc, path, orjson.loads(encoded), "copy")


def _test(doc: Any, op: dict[str, Any], path: str) -> Any:
    expected = op.get("value")
    actual = _get(doc, path, "test")
    if actual is _MISSING:
        if expected is None:
            return doc  # evanphx/json-patch: testing a missing value against null succeeds
        raise PatchError(f"testing value {path} failed: test failed")
    if not _json_equal(actual, expected):
        raise PatchError(f"testing value {path} failed: test failed")
    return doc


def _json_equal(a: Any, b: Any) -> bool:
    # JSON equality: 1 == 1.0, but True != 1 (Python would say equal).
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b if not _is_number(a) or not _is_number(b) else a == b


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


_OPERATIONS = {
    "add": _add,
    "remove": _remove,
    "replace": _replace,
    "move": _move,
    "copy": _copy,
    "test": _test,
}


# ------------------------------------------------------------------- server-side apply

FieldPath = tuple[str, ...]


def applied_fields(config: Any, path: FieldPath = ()) -> set[FieldPath]:
    """The leaf fields an apply configuration sets (lists are atomic; nulls set nothing).

    ``apiVersion``, ``kind``, ``metadata.name`` and ``metadata.namespace`` identify the object and
    are not owned.
    """
    out: set[FieldPath] = set()
    if not isinstance(config, dict):
        return out
    for key, value in config.items():
        here = path + (key,)
        if value is None or here in (("apiVersion",), ("kind",), ("status",), ("metadata", "name"),
                                     ("metadata", "namespace"), ("metadata", "managedFields"),
                                     ("metadata", "resourceVersion"), ("metadata", "uid"),
                                     ("metadata", "creationTimestamp"), ("metadata", "generation")):
            continue
        if isinstance(value, dict) and value:
            out |= applied_fields(value, here)
        else:
            out.add(here)
    return out


def fields_v1(fields: set[FieldPath]) -> dict[str, Any]:
    """Render a field set in the ``FieldsV1`` form of ``metadata.managedFields``."""
    root: dict[str, Any] = {}
    for path in sorted(fields):
        node = root
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return root


def parse_fields_v1(tree: Any, path: FieldPath = ()) -> set[FieldPath]:
    """The leaf fields of a ``FieldsV1`` tree (the inverse of :func:`fields_v1`)."""
    out: set[FieldPath] = set()
    if not isinstance(tree, dict):
        return out
    for key, child in tree.items():
        if not isinstance(key, str) or not key.startswith("f:"):
            continue  # ".", "k:{…}", "v:…" entries: list-item ownership we do not model
        here = path + (key[2:],)
        children = parse_fields_v1(child, here)
        out |= children if children else {here}
    return out


def apply_merge(live: Any, config: Any) -> Any:
    """Merge an apply configuration into the live object: maps merge, lists and scalars replace."""
    if not isinstance(config, dict):
        return clone(config)
    result = clone(live) if isinstance(live, dict) else {}
    for key, value in config.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = apply_merge(result[key], value)
        else:
            result[key] = clone(value)
    return result


def get_path(obj: Any, path: FieldPath) -> Any:
    """The value at ``path`` or :data:`MISSING_VALUE`."""
    node = obj
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return MISSING_VALUE
        node = node[key]
    return node


MISSING_VALUE = _MISSING


def remove_path(obj: dict[str, Any], path: FieldPath) -> None:
    """Delete the field at ``path`` and then any map left empty on the way up (top-level keys stay)."""
    chain: list[dict[str, Any]] = []
    node: Any = obj
    for key in path[:-1]:
        if not isinstance(node, dict) or not isinstance(node.get(key), dict):
            return
        chain.append(node)
        node = node[key]
    if isinstance(node, dict):
        node.pop(path[-1], None)
    for parent, key in zip(reversed(chain), reversed(path[:-1])):
        if parent is obj:
            break
        if parent.get(key) == {}:
            del parent[key]
        else:
            break
