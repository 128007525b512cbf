"""The Kubernetes API discovery documents of the local API server.

:func:`resource_list` and :func:`api_group` are the legacy ``APIResourceList`` / ``APIGroup``
bodies; :func:`aggregated_discovery` is the aggregated ``apidiscovery.k8s.io/v2`` list kubectl 1.32
asks for first. :data:`BY_GROUP_VERSION` maps a URL's group and version to its resources.
(Finding Prometheus is another discovery: :mod:`kserve_nb.metrics.discovery`.)
"""

from __future__ import annotations

from typing import Any

from kserve_nb.local.store import RESOURCE_TYPES, ResourceType

BY_GROUP_VERSION: dict[tuple[str, str], dict[str, ResourceType]] = {}
for _rt in RESOURCE_TYPES:
    BY_GROUP_VERSION.setdefault((_rt.group, _rt.version), {})[_rt.plural] = _rt
GROUPS: dict[str, list[str]] = {}
for (_group, _version) in BY_GROUP_VERSION:
    if _group:
        GROUPS.setdefault(_group, []).append(_version)


def _verbs(rt: ResourceType) -> list[str]:
    return sorted(rt.verbs) if rt.user_writable else sorted(set(rt.verbs) & {"get", "list", "watch"})


def _api_resources(group: str, version: str) -> list[dict[str, Any]]:
    out = []
    for rt in BY_GROUP_VERSION[(group, version)].values():
        entry: dict[str, Any] = {
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": _verbs(rt),
        }
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        out.append(entry)
        if rt.has_status and rt.user_writable:
            out.append({"name": f"{rt.plural}/status", "singularName": "", "namespaced": rt.namespaced,
                        "kind": rt.kind, "verbs": ["get", "patch", "update"]})
        for sub, kind, verbs in rt.connect:
            out.append({"name": f"{rt.plural}/{sub}", "singularName": "", "namespaced": rt.namespaced,
                        "kind": kind, "verbs": list(verbs)})
    return out


def resource_list(group: str, version: str) -> dict[str, Any]:
    """The legacy ``APIResourceList`` of a group-version."""
    body: dict[str, Any] = {"kind": "APIResourceList"}
    if group:
        body["apiVersion"] = "v1"
    body["groupVersion"] = f"{group}/{version}" if group else version
    body["resources"] = _api_resources(group, version)
    return body


def api_group(group: str) -> dict[str, Any]:
    """The ``APIGroup`` body of a group (its versions and preferred version)."""
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in GROUPS[group]]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def _discovery_group(group: str) -> dict[str, Any]:
    versions = []
    for version in (["v1"] if not group else GROUPS[group]):
        resources = []
        for rt in BY_GROUP_VERSION[(group, version)].values():
            entry: dict[str, Any] = {
                "resource": rt.plural,
                "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
                "scope": "Namespaced" if rt.namespaced else "Cluster",
                "singularResource": rt.singular,
                "verbs": _verbs(rt),
            }
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            subresources = []
            if rt.has_status and rt.user_writable:
                subresources.append({
                    "subresource": "status",
                    "responseKind": {"group": rt.group, "version": rt.version, "kind": rt.kind},
                    "verbs": ["get", "patch", "update"],
                })
            for sub, kind, verbs in rt.connect:
                subresources.append({
                    "subresource": sub,
                    "responseKind": {"group": "", "version": "", "kind": kind},
                    "verbs": list(verbs),
                })
            if subresources:
                entry["subresources"] = subresources
            resources.append(entry)
        versions.append({"version": version, "resources": resources, "freshness": "Current"})
    return {"metadata": {"name": group, "creationTimestamp": None}, "versions": versions}


def aggregated_discovery(core: bool, version: str) -> dict[str, Any]:
    """``APIGroupDiscoveryList`` for ``/api`` (core) or ``/apis``."""
    items = [_discovery_group("")] if core else [_discovery_group(g) for g in GROUPS]
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {}, "items": items}
