"""Label and field selectors, parsed and matched as the API server does."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kserve_nb.local.apiserver.failures import bad_request
from kserve_nb.local.store import EVENTS, NAMESPACES, PODS, ResourceType


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
    EVENTS.key: ("metadata.name", "metadata.namespace", "involvedObject.kind", "involvedObject.namespace",
                 "involvedObject.name", "involvedObject.uid", "involvedObject.apiVersion",
                 "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason", "reportingComponent",
                 "source", "type"),
}
# Field labels that name a different path in the object (an event's ``source`` is its component).
_FIELD_PATHS = {"source": "source.component"}


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
    for part in _FIELD_PATHS.get(path, path).split("."):
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
