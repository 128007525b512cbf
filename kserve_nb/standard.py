"""Client side of Standard (RawDeployment) mode: what the façade reads and picks beyond the isvc.

KServe's Standard-mode status does not carry everything a release step needs (see
``docs/standard-mode-canary.md`` §5–§6, §9):

- the **route weights** live in the predictor HTTPRoute (``{isvc}-predictor``,
  ``gateway.networking.k8s.io/v1``), not in the isvc: :func:`read_route`;
- a canary that cannot become ready says so only in its **Deployment's** conditions
  (``canaryStatuses`` has nothing but ``ready``): :func:`deployment_failure`;
- each side answers on its own Service, which no KServe route exposes: :func:`side_host` names the
  host the local cluster's ingress routes for it (the Service's in-cluster name), and on a real
  cluster only a route of the user's own for one of :func:`side_hosts` reaches it (:func:`routed_hosts`).

The pure rules stay in :mod:`kserve_nb.semantics_standard`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from kserve_nb import resources as r
from kserve_nb import semantics_standard as std
from kserve_nb.status import ServiceStatus, Side

# (connect, read) seconds: the same budget as the cluster's own calls.
REQUEST_TIMEOUT = (5.0, 30.0)
_VERSION_NAME = re.compile(r"^v(\d+)$")


def is_standard(isvc: Mapping[str, Any]) -> bool:
    """Whether ``isvc`` runs in Standard (RawDeployment) mode."""
    return r.deployment_mode(isvc) in r.RAW_MODES


def next_canary_name(isvc: Mapping[str, Any]) -> str:
    """The default name of a new canary: ``vN`` with N one above every ``vN`` in use, at least 2.

    The stable's own name counts (after promoting ``v2`` the next canary is ``v3``); a name freed by
    a rollback is used again.
    """
    names = [std.stable_predictor(isvc).get("name") or ""] + [std.canary_name(e) for e in std.canaries(isvc)]
    numbers = [int(m.group(1)) for m in (_VERSION_NAME.match(str(n)) for n in names) if m]
    return f"v{max([1, *numbers]) + 1}"


def _api_call(cluster: Any, what: str, fn: Any, *args: Any) -> dict[str, Any] | None:
    """One read through the cluster's ApiClient; None when the object (or its API) is not there
    or not readable, so a cluster without Gateway API or without RBAC on Deployments still works."""
    from kubernetes.client.exceptions import ApiException

    from kserve_nb.cluster import translate

    try:
        resp = fn(*args, _request_timeout=REQUEST_TIMEOUT, _preload_content=False)
    except ApiException as exc:
        if exc.status in (403, 404):
            return None
        raise translate(exc, what, cluster.target.server) from exc
    except Exception as exc:
        raise translate(exc, what, cluster.target.server) from exc
    data = json.loads(resp.data)
    return data if isinstance(data, dict) else None


def read_route(cluster: Any, isvc_name: str, namespace: str) -> list[tuple[str, int | None]] | None:
    """The ``(Service, weight)`` backends of the predictor HTTPRoute's first rule, or None when
    there is no such route to read (not created yet, no Gateway API, no permission)."""
    route = _api_call(
        cluster, f"read httproute {isvc_name}-predictor", cluster.custom.get_namespaced_custom_object,
        std.GATEWAY_GROUP, std.GATEWAY_VERSION, namespace, std.HTTPROUTE_PLURAL, std.predictor_service_name(isvc_name),
    )
    if route is None:
        return None
    rules = (route.get("spec") or {}).get("rules") or []
    refs = next((rule.get("backendRefs") for rule in rules if rule.get("backendRefs")), None) or []
    return [(str(ref.get("name")), ref.get("weight")) for ref in refs if isinstance(ref, Mapping)]


def routed_hosts(cluster: Any, namespace: str) -> set[str]:
    """Every hostname an HTTPRoute in ``namespace`` lists (empty when none can be read)."""
    data = _api_call(
        cluster, "list httproutes", cluster.custom.list_namespaced_custom_object,
        std.GATEWAY_GROUP, std.GATEWAY_VERSION, namespace, std.HTTPROUTE_PLURAL,
    )
    hosts: set[str] = set()
    for item in (data or {}).get("items") or []:
        hosts.update(str(h) for h in (item.get("spec") or {}).get("hostnames") or [])
    return hosts


def deployment_failure(cluster: Any, deployment: str, namespace: str) -> str | None:
    """Why Deployment ``deployment`` cannot become available, from its conditions, or None.

    Progressing False (``ProgressDeadlineExceeded``) or ReplicaFailure True: Kubernetes gave up on
    its new pods. None while it is still trying, or when the Deployment cannot be read.
    """
    from kubernetes import client

    apps = client.AppsV1Api(cluster.api_client)
    obj = _api_call(cluster, f"read deployment {deployment}", apps.read_namespaced_deployment, deployment, namespace)
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        bad = (cond.get("type") == "Progressing" and cond.get("status") == "False") or (
            cond.get("type") == "ReplicaFailure" and cond.get("status") == "True"
        )
        if bad:
            return ": ".join(str(x) for x in (cond.get("reason"), cond.get("message")) if x) or str(cond.get("type"))
    return None


def domain_of(st: ServiceStatus) -> str:
    """The ingress domain, read off ``status.url`` (``{isvc}-{ns}.{domain}``), else KServe's default."""
    host = urlparse(st.url or "").hostname or ""
    prefix = f"{st.name}-{st.namespace}."
    return host[len(prefix):] if host.startswith(prefix) and len(host) > len(prefix) else r.DEFAULT_DOMAIN


def side_host(st: ServiceStatus, side: Side) -> str:
    """The host a side is called on: its Service's in-cluster name ``{deployment}.{ns}.svc.cluster.local``.

    The local cluster's ingress routes that host to the side's Deployment alone (as the cluster's
    Service DNS would), and it never clashes with a weighted host — the component host of an
    unnamed stable, ``{isvc}-predictor-{ns}.{domain}``, *is* the predictor HTTPRoute's host. KServe
    itself routes no per-side host from outside (``docs/standard-mode-canary.md`` §9).
    """
    return std.service_host(side.deployment, st.namespace)


def side_hosts(st: ServiceStatus, side: Side) -> list[str]:
    """Hosts that reach ``side`` alone if a route of the user's own lists them: :func:`side_host`,
    then the component host ``{deployment}-{ns}.{domain}`` unless it is a weighted route's host."""
    hosts = [side_host(st, side)]
    component = f"{side.deployment}-{st.namespace}.{domain_of(st)}"
    weighted = {std.predictor_route_host(st.name, st.namespace, std.StandardSettings(ingress_domain=domain_of(st))),
                std.top_level_host(st.name, st.namespace, std.StandardSettings(ingress_domain=domain_of(st)))}
    if component not in weighted:
        hosts.append(component)
    return hosts
