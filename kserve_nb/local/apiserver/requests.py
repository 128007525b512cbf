"""Resource URLs, query parameters and the write helpers shared by create, update and patch."""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kserve_nb.local import api_discovery as discovery
from kserve_nb.local.apiserver.failures import bad_request
from kserve_nb.local.store import ResourceType


@dataclass(frozen=True)
class ResourcePath:
    """A resource URL: the type, namespace, object name and subresource it names."""

    rt: ResourceType
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    watch: bool = False  # the deprecated /watch/ path prefix


def parse_resource_path(segments: list[str]) -> ResourcePath | None:
    """Map path segments (after ``/api/v1`` or ``/apis/<g>/<v>``) to a :class:`ResourcePath`."""
    if not segments:
        return None
    if segments[0] == "api":
        group, version, rest = "", segments[1] if len(segments) > 1 else "", segments[2:]
    elif segments[0] == "apis" and len(segments) >= 3:
        group, version, rest = segments[1], segments[2], segments[3:]
    else:
        return None
    kinds = discovery.BY_GROUP_VERSION.get((group, version))
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
    namespace_subresource = group == "" and len(rest) == 3 and rest[2] in ("status", "finalize")
    if rest[0] == "namespaces" and len(rest) >= 3 and not namespace_subresource:
        namespace, rest = rest[1], rest[2:]
    rt = kinds.get(rest[0])
    if rt is None or len(rest) > 3:
        return None
    if namespace is not None and not rt.namespaced:
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    return ResourcePath(rt, namespace, name, sub, watch)


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


def query_flag(params: Mapping[str, str], name: str) -> bool:
    return params.get(name, "").lower() in ("true", "1")


_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # apiserver's SimpleNameGenerator alphabet


def generate_name(prefix: str) -> str:
    return prefix[: 63 - 5] + "".join(random.choice(_NAME_CHARS) for _ in range(5))  # noqa: S311


def strip_server_fields(meta: dict[str, Any]) -> None:
    for key in ("managedFields", "selfLink"):
        meta.pop(key, None)


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
            raise bad_request(
                f'fieldValidation: Unsupported value: "{mode}": supported values: "Ignore", "Strict", "Warn"'
            )
        return cls(bool(dry), canonical)
