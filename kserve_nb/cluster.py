"""Kubernetes API access for InferenceServices through the official ``kubernetes`` client.

No global configuration: each :class:`Cluster` owns its own ``ApiClient`` built from an explicit
kubeconfig/context or the in-cluster service account. Every ``ApiException`` and connection error is
translated here, once, into the kserve-nb error tree with a message that says what to do.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kserve_nb import errors
from kserve_nb import resources as r
from kserve_nb.manifests import check_storage_uri

log = logging.getLogger(__name__)

# (connect, read) seconds for one API call; waits are built from many short calls.
REQUEST_TIMEOUT = (5.0, 30.0)
IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


@dataclass(frozen=True)
class ClusterRef:
    """Which cluster a :class:`Cluster` talks to (no credentials in here)."""

    server: str
    context: str | None
    namespace: str
    kind: str  # "kubeconfig", "in-cluster" or "local"
    kubeconfig: str | None = None


def _status_message(exc: Any) -> tuple[str, str]:
    """``(reason, message)`` from an ApiException's Kubernetes Status body."""
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        return "", str(exc.body or exc.reason or "")
    return str(body.get("reason") or ""), str(body.get("message") or exc.reason or "")


def translate(exc: BaseException, what: str, server: str = "") -> errors.KServeNbError:
    """Map a kubernetes-client or urllib3 exception to the kserve-nb error tree."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        reason, message = _status_message(exc)
        status, body = exc.status, exc.body
        if status == 404:
            return errors.NotFound(f"{message or what + ' not found'}", status=status, body=body)
        if status == 409:
            hint = (
                "; someone else changed it first: look at the current status and try again"
                if reason == "Conflict"
                else ""
            )
            return errors.Conflict(f"{message}{hint}", status=status, body=body)
        if status == 403 and "admission webhook" in message:
            # KServe's webhook refuses invalid specs with 403, not an RBAC problem.
            return errors.ValidationError(f"{what} rejected: {message}", status=status, body=body)
        if status in (401, 403):
            return errors.AccessDenied(
                f"{what}: {message or 'access denied'} (check the kubeconfig user and its RBAC)",
                status=status,
                body=body,
            )
        if status in (400, 415, 422):
            return errors.ValidationError(f"{what} rejected: {message}", status=status, body=body)
        return errors.ClusterError(f"{what} failed ({status}): {message}", status=status, body=body)
    return errors.ConnectionFailed(
        f"cannot reach the Kubernetes API{' at ' + server if server else ''} ({type(exc).__name__}); "
        "is the cluster up? For the local cluster run `kserve-nb local up` or `%kserve connect local`"
    )


class Cluster:
    """InferenceServices, pods, revisions, namespaces and configmaps of one cluster.

    Parameters
    ----------
    api_client:
        A ``kubernetes.client.ApiClient`` configured for exactly this cluster.
    ref:
        Where it points (shown in banners; never contains credentials).
    """

    def __init__(self, api_client: Any, ref: ClusterRef) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.ref = ref
        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)

    def __repr__(self) -> str:
        t = self.ref
        return f"<Cluster {t.kind} context={t.context!r} server={t.server!r} namespace={t.namespace!r}>"

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_kubeconfig(
        cls,
        kubeconfig: str | os.PathLike[str] | None = None,
        context: str | None = None,
        namespace: str | None = None,
        kind: str = "kubeconfig",
    ) -> Cluster:
        """Build from a kubeconfig file (default: ``$KUBECONFIG`` or ``~/.kube/config``)."""
        return cls(*kubeconfig_client(kubeconfig, context, namespace, kind))

    @classmethod
    def in_cluster(cls, namespace: str | None = None) -> Cluster:
        """Build from the pod's service account (notebook servers running in Kubernetes)."""
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        configuration.retries = 1
        ns = namespace
        if ns is None:
            ns_file = IN_CLUSTER_TOKEN.parent / "namespace"
            ns = ns_file.read_text().strip() if ns_file.exists() else "default"
        return cls(client.ApiClient(configuration), ClusterRef(configuration.host, None, ns, "in-cluster"))

    def close(self) -> None:
        """Close the HTTP pool."""
        try:
            self.api_client.close()
        except Exception:  # noqa: BLE001, S110 - closing must never raise  # pragma: no cover
            pass

    # ------------------------------------------------------------------ pre-flight

    def preflight_storage_uri(self, uri: str) -> str:
        """What this cluster can tell about a storageUri before anything is sent; the URI, stripped.

        A real cluster only learns whether the model can be fetched when a pod's storage
        initializer runs, so here it is the syntax check alone. The local cluster's client
        (:class:`kserve_nb.local.adapter.LocalApiCluster`) also looks the model up in its mirror.
        """
        return check_storage_uri(uri)

    # ------------------------------------------------------------------ calls

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
        try:
            return fn(*args, **kwargs)
        except errors.KServeNbError:
            raise
        except Exception as exc:  # ApiException, urllib3 errors, socket errors
            from kubernetes.client.exceptions import ApiException

            if not isinstance(exc, ApiException) and not _is_connection_error(exc):
                raise
            raise translate(exc, what, self.ref.server) from exc

    def _call_object(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """:meth:`_call` of a kubernetes client method that answers one object, as a JSON dict."""
        obj: dict[str, Any] = self._call(what, fn, *args, **kwargs)
        return obj

    # InferenceServices
    def get_isvc(self, name: str, namespace: str) -> dict[str, Any]:
        """The InferenceService as a dict. Raises NotFound with a helpful message."""
        try:
            return self._call_object(
                f'inferenceservice "{name}"',
                self.custom.get_namespaced_custom_object,
                r.GROUP, r.VERSION, namespace, r.PLURAL, name,
            )
        except errors.NotFound as err:
            raise errors.NotFound(
                f'InferenceService "{name}" not found in namespace "{namespace}"; '
                "check the name (%kserve status lists them) or create it with %%kserve apply",
                status=404,
                body=err.body,
            ) from err

    def list_isvc(self, namespace: str | None) -> list[dict[str, Any]]:
        """InferenceServices in ``namespace`` (all namespaces when None)."""
        if namespace:
            out = self._call(
                "list inferenceservices", self.custom.list_namespaced_custom_object,
                r.GROUP, r.VERSION, namespace, r.PLURAL,
            )
        else:
            out = self._call(
                "list inferenceservices", self.custom.list_cluster_custom_object, r.GROUP, r.VERSION, r.PLURAL
            )
        return list(out.get("items") or [])

    def create_isvc(self, body: Mapping[str, Any], namespace: str, dry_run: bool = False) -> dict[str, Any]:
        """Create an InferenceService."""
        kwargs = {"dry_run": "All"} if dry_run else {}
        return self._call_object(
            f'create inferenceservice "{body["metadata"]["name"]}"',
            self.custom.create_namespaced_custom_object,
            r.GROUP, r.VERSION, namespace, r.PLURAL, dict(body), **kwargs,
        )

    def patch_isvc(
        self, name: str, namespace: str, patch: Mapping[str, Any], dry_run: bool = False
    ) -> dict[str, Any]:
        """JSON merge patch (RFC 7386); include ``metadata.resourceVersion`` for optimistic concurrency."""
        kwargs = {"dry_run": "All"} if dry_run else {}
        # The client picks the content type from the body: a dict is sent as a merge patch for
        # custom objects (application/merge-patch+json).
        return self._call_object(
            f'patch inferenceservice "{name}"',
            self.custom.patch_namespaced_custom_object,
            r.GROUP, r.VERSION, namespace, r.PLURAL, name, dict(patch), **kwargs,
        )

    def delete_isvc(self, name: str, namespace: str) -> None:
        """Delete an InferenceService."""
        self._call(
            f'delete inferenceservice "{name}"',
            self.custom.delete_namespaced_custom_object,
            r.GROUP, r.VERSION, namespace, r.PLURAL, name,
        )

    # Knative revisions (read-only)
    def list_revisions(self, name: str, namespace: str) -> list[dict[str, Any]]:
        """Knative revisions of the isvc's predictor (empty if the API or permission is missing)."""
        try:
            out = self._call(
                "list revisions", self.custom.list_namespaced_custom_object,
                r.KNATIVE_GROUP, r.KNATIVE_VERSION, namespace, "revisions",
                label_selector=f"{r.ISVC_LABEL}={name},{r.COMPONENT_LABEL}=predictor",
            )
        except (errors.NotFound, errors.AccessDenied):
            return []
        return sorted(out.get("items") or [], key=lambda o: r.revision_number(o["metadata"]["name"]))

    # Pods
    def list_pods(self, namespace: str, label_selector: str | None = None) -> list[dict[str, Any]]:
        """Pods as plain dicts (camelCase, as the API serves them)."""
        kwargs: dict[str, Any] = {"_preload_content": False}
        if label_selector:
            kwargs["label_selector"] = label_selector
        resp = self._call("list pods", self.core.list_namespaced_pod, namespace, **kwargs)
        return list(json.loads(resp.data).get("items") or [])

    # Namespaces
    def ensure_namespace(self, namespace: str) -> bool:
        """Create ``namespace`` if missing. Returns True when it was created."""
        from kubernetes import client

        try:
            self._call(f'namespace "{namespace}"', self.core.read_namespace, namespace)
            return False
        except errors.NotFound:
            body = client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
            try:
                self._call(f'create namespace "{namespace}"', self.core.create_namespace, body)
            except errors.Conflict:
                return False
            return True

    def namespace_exists(self, namespace: str) -> bool:
        """Whether ``namespace`` exists."""
        try:
            self._call(f'namespace "{namespace}"', self.core.read_namespace, namespace)
            return True
        except errors.NotFound:
            return False

    # ConfigMaps (release history)
    def get_configmap(self, name: str, namespace: str) -> dict[str, Any] | None:
        """A ConfigMap as a dict, or None."""
        try:
            resp = self._call(
                f'configmap "{name}"', self.core.read_namespaced_config_map, name, namespace,
                _preload_content=False,
            )
        except errors.NotFound:
            return None
        return dict(json.loads(resp.data))

    def create_configmap(self, body: Mapping[str, Any], namespace: str) -> dict[str, Any]:
        """Create a ConfigMap."""
        resp = self._call(
            "create configmap", self.core.create_namespaced_config_map, namespace, dict(body),
            _preload_content=False,
        )
        return dict(json.loads(resp.data))

    def replace_configmap(self, body: Mapping[str, Any], namespace: str) -> dict[str, Any]:
        """Replace a ConfigMap (its resourceVersion guards against lost updates)."""
        resp = self._call(
            "update configmap", self.core.replace_namespaced_config_map,
            body["metadata"]["name"], namespace, dict(body), _preload_content=False,
        )
        return dict(json.loads(resp.data))


def kubeconfig_client(
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    namespace: str | None = None,
    kind: str = "kubeconfig",
) -> tuple[Any, ClusterRef]:
    """An ``ApiClient`` for one kubeconfig context and the :class:`ClusterRef` it points at."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    path = str(kubeconfig) if kubeconfig else None
    try:
        contexts, current = config.list_kube_config_contexts(config_file=path)
        chosen = current
        if context:
            matches = [c for c in contexts if c["name"] == context]
            if not matches:
                names = ", ".join(c["name"] for c in contexts) or "none"
                raise errors.ConfigError(f"context {context!r} is not in the kubeconfig (contexts: {names})")
            chosen = matches[0]
        configuration = client.Configuration()
        config.load_kube_config(
            config_file=path,
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    except ConfigException as exc:
        raise errors.ConfigError(f"cannot use the kubeconfig{' ' + path if path else ''}: {exc}") from exc
    configuration.retries = 1  # fail fast on a dead server; waits do their own retrying
    ns = namespace or (chosen.get("context") or {}).get("namespace") or "default"
    return client.ApiClient(configuration), ClusterRef(configuration.host, chosen["name"], ns, kind, path)


def _is_connection_error(exc: BaseException) -> bool:
    import urllib3

    return isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, OSError))

