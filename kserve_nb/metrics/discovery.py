"""Find the Prometheus of a session's cluster: the local one, or a well-known Service on a real one.

On a real cluster Prometheus is reached through the Kubernetes API server's service proxy
(``/api/v1/namespaces/NS/services/http:NAME:PORT/proxy``) with the session's own credentials and
TLS settings, so it needs no port-forward and no extra address — only RBAC for ``services/proxy``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from kserve_nb import errors

if TYPE_CHECKING:
    import httpx

    from kserve_nb.cluster import Cluster
    from kserve_nb.metrics.prometheus import PrometheusSource

#: Where Prometheus usually runs (Prometheus Operator / kube-prometheus, the Helm chart, Knative's
#: and Istio's monitoring add-ons), looked for in this order.
PROMETHEUS_NAMESPACES = ("monitoring", "prometheus", "knative-monitoring", "istio-system", "kube-system")
PROMETHEUS_SERVICES = (
    "prometheus-operated", "prometheus-k8s", "prometheus-server", "prometheus", "kube-prometheus-stack-prometheus",
)
#: ``rate()`` window on a local cluster, whose Prometheus scrapes every second.
LOCAL_RATE_WINDOW = 5.0

HOW_TO = (
    "pass connect(prometheus='http://HOST:9090'), set %config KServeNb.prometheus = 'http://…' "
    "or $PROMETHEUS_URL"
)


def local_source(state_dir: Any) -> PrometheusSource:
    """The local cluster's Prometheus (started now if it is not running)."""
    from kserve_nb.local import manager
    from kserve_nb.metrics.prometheus import STANDARD_LOCAL, PrometheusSource

    running = manager.ensure_prometheus(state_dir)
    # Standard-mode sides are read from the ingress's per-target counters (no model-server scrape).
    source = PrometheusSource(
        running.url, auth=running.auth, rate_window=LOCAL_RATE_WINDOW, standard_queries=STANDARD_LOCAL
    )
    source.name = f"prometheus {running.url} (local)"
    return source


def cluster_source(cluster: Cluster) -> PrometheusSource:
    """A well-known Prometheus Service of ``cluster``, through its API server's service proxy.

    Raises :class:`~kserve_nb.errors.ConfigError` (saying how to configure one) when none is found.
    """
    from kserve_nb.metrics.prometheus import PrometheusSource

    configuration = cluster.api_client.configuration
    found = _find_service(cluster, PROMETHEUS_NAMESPACES, PROMETHEUS_SERVICES)
    if found is None:
        raise errors.ConfigError(
            f"no Prometheus found on this cluster (looked for services {', '.join(PROMETHEUS_SERVICES)} in namespaces "
            f"{', '.join(PROMETHEUS_NAMESPACES)}): {HOW_TO}"
        )
    namespace, name, port = found
    url = f"{configuration.host.rstrip('/')}/api/v1/namespaces/{namespace}/services/{port}/proxy"
    cert = (configuration.cert_file, configuration.key_file) if configuration.cert_file else None
    verify: Any = configuration.ssl_ca_cert or True
    if not configuration.verify_ssl:  # the kubeconfig's own insecure-skip-tls-verify, as kubectl honours it
        verify = False
    source = PrometheusSource(url, auth=_KubeAuth(configuration), verify=verify, cert=cert)
    source.name = f"prometheus {namespace}/{name} (via the API server)"
    return source


def _find_service(cluster: Cluster, namespaces: Iterable[str], names: Iterable[str]) -> tuple[str, str, str] | None:
    """``(namespace, name, "scheme:name:port")`` of the first well-known Service found."""
    from kubernetes.client.exceptions import ApiException

    wanted = list(names)
    for namespace in namespaces:
        try:
            items = cluster.core.list_namespaced_service(namespace, _request_timeout=5).items
        except ApiException:  # no such namespace, or not ours to list
            continue
        except Exception as exc:  # the API server itself is unreachable
            raise errors.ConnectionFailed(f"cannot look for Prometheus on the cluster: {exc}") from exc
        by_name = {svc.metadata.name: svc for svc in items}
        for name in wanted:
            svc = by_name.get(name)
            if svc is not None:
                return namespace, name, _proxy_port(name, svc)
    return None


def _proxy_port(name: str, svc: Any) -> str:
    """The service-proxy path element ``scheme:name:port`` of Prometheus' web port."""
    ports = list(getattr(svc.spec, "ports", None) or [])
    port = next((p for p in ports if p.name in ("web", "http", "http-web")), None)
    port = port or next((p for p in ports if p.port == 9090), None) or (ports[0] if ports else None)
    if port is None:
        return f"http:{name}:9090"
    scheme = "https" if "https" in (port.name or "") else "http"
    return f"{scheme}:{name}:{port.name or port.port}"


class _KubeAuth:
    """httpx auth (a callable) that sends the session's current API credential on each request,
    so a refreshed token (in-cluster rotation, exec plugins) is used once the client refreshes it."""

    def __init__(self, configuration: Any) -> None:
        self._configuration = configuration

    def __repr__(self) -> str:  # never shows the token
        return "_KubeAuth()"

    def __call__(self, request: httpx.Request) -> httpx.Request:
        c = self._configuration
        value = c.get_api_key_with_prefix("authorization") or c.get_api_key_with_prefix("BearerToken")
        if value:
            request.headers["Authorization"] = value
        return request
