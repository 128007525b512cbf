"""JSON merge patches (RFC 7386): apply one, and compute ``kubectl apply``'s three-way patch.

Pure functions on plain JSON values, shared by the client (apply, dry runs) and the local API server.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, overload

import orjson

T = TypeVar("T")
_MISSING = object()


@overload
def clone(value: Mapping[str, Any]) -> dict[str, Any]: ...
@overload
def clone(value: T) -> T: ...
def clone(value: Any) -> Any:
    """A deep copy of a JSON value (an orjson round trip: several times faster than deepcopy).

    The copy of a mapping is a plain dict, whatever mapping type went in.
    """
    return orjson.loads(orjson.dumps(value))


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch to ``target`` and return the result (inputs are not modified).

    A ``None`` value removes the key; objects merge recursively; anything else (arrays included)
    replaces the target value wholesale.
    """
    if not isinstance(patch, Mapping):
        return clone(patch)
    result = clone(dict(target)) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping):
            result[key] = merge_patch(result.get(key), value)
        else:
            result[key] = clone(value)
    return result


def three_way_merge_patch(
    original: Mapping[str, Any] | None, modified: Mapping[str, Any], current: Mapping[str, Any]
) -> dict[str, Any]:
    """The merge patch ``kubectl apply`` sends for a custom resource.

    ``original`` is the last-applied configuration, ``modified`` the new manifest, ``current`` the
    live object. Keys in ``modified`` that differ from ``current`` are set; keys that were in
    ``original`` but are gone from ``modified`` are deleted (``None``); everything else — fields
    other writers own, like ``status`` or defaults — is left alone.
    """
    patch: dict[str, Any] = {}
    original = original or {}
    for key, value in modified.items():
        live = current.get(key, _MISSING)
        if isinstance(value, Mapping) and isinstance(live, Mapping):
            orig_child = original.get(key)
            sub = three_way_merge_patch(
                orig_child if isinstance(orig_child, Mapping) else {}, value, live
            )
            if sub:
                patch[key] = sub
        elif live is _MISSING or live != value:
            patch[key] = clone(value)
    for key in original:
        if key not in modified and key in current:
            patch[key] = None
    return patch
