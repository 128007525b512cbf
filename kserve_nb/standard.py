"""Client side of Standard (RawDeployment) mode: what the façade reads and picks beyond the isvc.

KServe's Standard-mode status does not carry everything a release step needs (see
``docs/standard-mode-canary.md`` §5–§6, §9):

- the **route weights** live in the predictor HTTPRoute (``{isvc}-predictor``,
  ``gateway.networking.k8s.io/v1``), not in the isvc: :func:`read_route`;
- a canary that cannot become ready says so only in its **Deployment's** conditions
  (``canaryStatuses`` has nothing but ``ready``): :func:`deployment_failure`;
- each side answers on its own Service, which no KServe route exposes: :func:`side_host` names the
  host the local cluster's ingress routes for it (the Service's in-cluster name); on a real cluster
  an HTTPRoute rule of the user's own that sends a Host (and maybe exact headers) to that Service
  alone reaches it (:func:`side_route` over :func:`list_routes`), else the API server's service
  proxy does (:class:`ServiceProxyTransport`, with the session's credentials).

The pure rules stay in :mod:`kserve_nb.semantics_standard`.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import httpx

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
        raise translate(exc, what, cluster.ref.server) from exc
    except Exception as exc:
        raise translate(exc, what, cluster.ref.server) from exc
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


def list_routes(cluster: Any, namespace: str) -> list[dict[str, Any]]:
    """Every HTTPRoute in ``namespace`` as the API serves it (empty when none can be read)."""
    data = _api_call(
        cluster, "list httproutes", cluster.custom.list_namespaced_custom_object,
        std.GATEWAY_GROUP, std.GATEWAY_VERSION, namespace, std.HTTPROUTE_PLURAL,
    )
    return [item for item in (data or {}).get("items") or [] if isinstance(item, dict)]


@dataclass(frozen=True)
class SideRoute:
    """How to reach one side through the ingress: the ``Host`` and extra headers to send.

    ``route`` and ``rule`` name the HTTPRoute rule that sends exactly those requests to the side's
    Service alone (for the reader; nothing re-reads it).
    """

    host: str
    headers: tuple[tuple[str, str], ...]
    route: str
    rule: int


def _owned_by_isvc(route: Mapping[str, Any]) -> bool:
    owners = (route.get("metadata") or {}).get("ownerReferences") or []
    return any(isinstance(o, Mapping) and o.get("kind") == r.KIND for o in owners)


def _accepted(route: Mapping[str, Any]) -> bool:
    """False only when the route's status says no Gateway accepted it (no status yet: unknown, kept)."""
    parents = ((route.get("status") or {}).get("parents")) or []
    if not parents:
        return True
    return any(
        c.get("type") == "Accepted" and c.get("status") == "True"
        for p in parents if isinstance(p, Mapping)
        for c in p.get("conditions") or [] if isinstance(c, Mapping)
    )


def _weight(ref: Mapping[str, Any]) -> int:
    """A backendRef's weight: the CRD's default 1 when absent; an unreadable one takes no traffic."""
    weight = ref.get("weight")
    if weight is None:
        return 1
    return weight if isinstance(weight, int) and not isinstance(weight, bool) else 0


def _to_service_alone(refs: Any, service: str, namespace: str, port: int) -> bool:
    """Whether every backendRef that takes traffic (weight > 0, default 1) is ``service:port`` in
    ``namespace``, and at least one does."""
    if not isinstance(refs, list):
        return False
    live = [ref for ref in refs if isinstance(ref, Mapping) and _weight(ref) > 0]
    return bool(live) and all(
        (ref.get("group") or "") == ""
        and (ref.get("kind") or "Service") == "Service"
        and ref.get("name") == service
        and (ref.get("namespace") or namespace) == namespace
        and ref.get("port") == port  # required for a Service backend; absent, the Gateway resolves nothing
        for ref in live
    )


def _keeps_request(filters: Any) -> bool:
    """Whether a rule's filters forward the request with its path (a redirect or a path rewrite
    would not reach ``/v1/models/...`` on the model server)."""
    for f in filters or []:
        kind = f.get("type") if isinstance(f, Mapping) else None
        if kind == "RequestRedirect" or (kind == "URLRewrite" and (f.get("urlRewrite") or {}).get("path")):
            return False
    return True


#: Path regular expressions that match every path. KServe's own rules use the first; a rule of the
#: user's on the same host must use one too, or KServe's rule wins (below).
CATCH_ALL_PATHS = frozenset({std.FALLBACK_PATH, "^/.*", "/.*", "/.*$", ".*", "^.*$"})


def _path(match: Mapping[str, Any]) -> tuple[str, str]:
    spec = match.get("path") or {}
    return str(spec.get("type") or "PathPrefix"), str(spec.get("value") or "/")


def _path_admits(match: Mapping[str, Any], path: str) -> bool:
    """Gateway API path matching; an absent path match is ``PathPrefix /``. A regular expression
    is implementation-specific: only the catch-all ones are trusted."""
    kind, value = _path(match)
    if kind == "Exact":
        return path == value
    if kind == "PathPrefix":  # element by element; a trailing "/" is ignored
        prefix = value.rstrip("/")
        return path == prefix or path.startswith(prefix + "/")
    return kind == "RegularExpression" and value in CATCH_ALL_PATHS


def _exact_headers(match: Mapping[str, Any]) -> tuple[tuple[str, str], ...] | None:
    """The headers a match requires, or None when one cannot be satisfied for sure (a regular
    expression, a query parameter, a method other than POST)."""
    if match.get("queryParams") or (match.get("method") or "POST") != "POST":
        return None
    out: list[tuple[str, str]] = []
    for h in match.get("headers") or []:
        if not isinstance(h, Mapping) or (h.get("type") or "Exact") != "Exact" or not h.get("name"):
            return None
        out.append((str(h["name"]), str(h.get("value") or "")))
    return tuple(out)


def _route_hosts(hostnames: Any, hosts: Sequence[str]) -> list[str]:
    """The Hosts a route answers that can be sent: its literal hostnames; with none, ``hosts``
    (every one when it lists no hostname: it takes every host of its listener; else those its
    wildcards admit, ``*.d`` admitting any name ending in ``.d``)."""
    names = [str(h) for h in hostnames or []]
    literal = [h for h in names if not h.startswith("*.")]
    if literal:
        return literal
    return [h for h in hosts if h and (not names or any(h.endswith(w[1:]) for w in names))]


def side_route(
    routes: Sequence[Mapping[str, Any]],
    service: str,
    namespace: str,
    *,
    paths: Sequence[str],
    hosts: Sequence[str],
    port: int = std.SERVICE_PORT,
) -> SideRoute | None:
    """The way through the ingress to Service ``service`` alone, from the namespace's HTTPRoutes.

    A rule qualifies when every backend that takes traffic is ``service:port`` in ``namespace``,
    its filters keep the request's path, and one of its matches admits every path in ``paths``
    (the V1 and V2 inference paths) with only ``Exact`` header matches (a regular expression
    cannot be satisfied for sure). KServe's own routes (owned by an InferenceService) split by
    weight between the sides, so they never qualify; but a host they list is theirs first: Envoy
    Gateway, Contour, NGINX and kgateway rank a ``RegularExpression`` path (KServe's ``^/.*$``)
    above any ``PathPrefix``, so a rule of the user's on such a host is used only when its path is
    a catch-all regular expression too (then its header matches make it the more specific).

    The Host is the route's first usable literal hostname; a route listing none (or only
    wildcards) is called on the first of ``hosts`` it admits — hosts no KServe route lists, such as
    the side's component host, since the more specific hostname of KServe's route would take the
    request. A rule needing no header wins over one that does; otherwise fewer headers, then route
    name, rule and match order decide. None when no route qualifies (then the API server's service
    proxy reaches the side, ``docs/standard-mode-canary.md`` §9).
    """
    kserve_hosts = {str(h) for route in routes if _owned_by_isvc(route)
                    for h in (route.get("spec") or {}).get("hostnames") or []}
    found: list[tuple[int, str, int, int, SideRoute]] = []
    for route in routes:
        if _owned_by_isvc(route) or not _accepted(route):
            continue
        name = str((route.get("metadata") or {}).get("name") or "")
        spec = route.get("spec") or {}
        candidates = _route_hosts(spec.get("hostnames"), [h for h in hosts if h not in kserve_hosts])
        for i, rule in enumerate(spec.get("rules") or []):
            if not isinstance(rule, Mapping) or not _keeps_request(rule.get("filters")):
                continue
            if not _to_service_alone(rule.get("backendRefs"), service, namespace, port):
                continue
            for j, match in enumerate(rule.get("matches") or [{}]):
                if not isinstance(match, Mapping) or not all(_path_admits(match, p) for p in paths):
                    continue
                headers = _exact_headers(match)
                catch_all = _path(match) in {("RegularExpression", v) for v in CATCH_ALL_PATHS}
                host = next((h for h in candidates if catch_all or h not in kserve_hosts), None)
                if headers is not None and host is not None:
                    found.append((len(headers), name, i, j, SideRoute(host, headers, name, i)))
    return min(found, key=lambda f: f[:4])[4] if found else None


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


def deployment_serves(cluster: Any, deployment: str, namespace: str, storage_uri: str) -> bool | None:
    """Whether Deployment ``deployment`` has rolled out a pod template loading ``storage_uri``.

    The template names its model in the storage initializer's annotation; rolled out is what
    ``kubectl rollout status`` checks (the controller saw the latest spec, every replica is updated
    and none of an older template is left). None when the Deployment cannot be read. A canary given
    a new model under the same name stays ready on its old pods meanwhile, so ``canaryStatuses``
    alone cannot tell.
    """
    from kubernetes import client

    apps = client.AppsV1Api(cluster.api_client)
    obj = _api_call(cluster, f"read deployment {deployment}", apps.read_namespaced_deployment, deployment, namespace)
    if obj is None:
        return None
    template = ((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}
    named = (template.get("annotations") or {}).get(r.STORAGE_URI_ANNOTATION)
    if named is not None and named != storage_uri:
        return False  # the controller has not rewritten the template yet (absent: judge the rollout alone)
    status = obj.get("status") or {}
    wanted = int((obj.get("spec") or {}).get("replicas") or 0)
    updated = int(status.get("updatedReplicas") or 0)
    return (
        int(status.get("observedGeneration") or 0) >= int((obj.get("metadata") or {}).get("generation") or 0)
        and updated >= wanted
        and int(status.get("replicas") or 0) == updated
        and int(status.get("availableReplicas") or 0) >= updated
    )


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
    return r.cluster_local_host(side.deployment, st.namespace)


def side_hosts(st: ServiceStatus, side: Side) -> list[str]:
    """Hosts a route listing no hostname (or a wildcard) is called on for ``side``: its component
    host ``{deployment}-{ns}.{domain}`` unless that is a weighted route's host (an unnamed
    stable's), then its Service's in-cluster name (:func:`side_host`). KServe's own routes list
    neither, so its more specific hostnames cannot take the request."""
    settings = std.StandardSettings(ingress_domain=domain_of(st))
    weighted = {std.predictor_route_host(st.name, st.namespace, settings),
                std.top_level_host(st.name, st.namespace, settings)}
    component = f"{side.deployment}-{st.namespace}.{domain_of(st)}"
    return [h for h in (component, side_host(st, side)) if h not in weighted]


#: A Service's in-cluster host, ``{service}.{namespace}.svc.cluster.local``.
_SERVICE_HOST = re.compile(r"^(?P<service>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.(?P<ns>[a-z0-9]([-a-z0-9]*[a-z0-9])?)"
                           r"\.svc\.cluster\.local$")


class ServiceProxyTransport(httpx.BaseTransport):
    """An httpx transport that sends requests for a Service's in-cluster host through the Kubernetes
    API server's service proxy, with the session's own credentials and TLS settings.

    ``POST /v1/models/m:predict`` with ``Host: my-model-v2-predictor.ns.svc.cluster.local`` becomes
    ``POST {server}/api/v1/namespaces/ns/services/my-model-v2-predictor:80/proxy/v1/models/m:predict``
    (RBAC ``services/proxy`` in the namespace). Requests for any other host go to the network as
    they are (the ingress). How a real cluster reaches one side when no route of the user's own
    does (``docs/standard-mode-canary.md`` §9).
    """

    def __init__(self, configuration: Any, *, server: str | None = None) -> None:
        self._configuration = configuration
        self._server = (server or configuration.host).rstrip("/")
        context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
        if not configuration.verify_ssl:  # the kubeconfig's own insecure-skip-tls-verify, as kubectl honours it
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file)
        self._api = httpx.HTTPTransport(verify=context)
        self._network = httpx.HTTPTransport()

    def __repr__(self) -> str:  # never shows credentials
        return f"<ServiceProxyTransport via {self._server}>"

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Rewrite a request for an in-cluster Service host to the API server's proxy; pass others on."""
        match = _SERVICE_HOST.match(request.headers.get("host", ""))
        if match is None:
            return self._network.handle_request(request)
        path = request.url.raw_path.decode("ascii")
        url = (f"{self._server}/api/v1/namespaces/{match['ns']}/services/{match['service']}:"
               f"{std.SERVICE_PORT}/proxy{path}")
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in ("host", "authorization")]
        c = self._configuration
        credential = c.get_api_key_with_prefix("authorization") or c.get_api_key_with_prefix("BearerToken")
        if credential:
            headers.append(("Authorization", credential))
        proxied = httpx.Request(request.method, url, headers=headers, content=request.read(),
                                extensions=request.extensions)
        return self._api.handle_request(proxied)

    def close(self) -> None:
        """Close both connection pools."""
        self._api.close()
        self._network.close()


def is_service_host(host: str) -> bool:
    """Whether ``host`` is a Service's in-cluster name (what :class:`ServiceProxyTransport` proxies)."""
    return _SERVICE_HOST.match(host) is not None
