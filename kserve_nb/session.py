"""The one façade that magics, widgets and plain Python call: :func:`connect` → :class:`Session`."""

from __future__ import annotations

import html
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from kserve_nb import errors
from kserve_nb import resources as r
from kserve_nb.cluster import IN_CLUSTER_TOKEN, Cluster
from kserve_nb.config import KServeNb
from kserve_nb.manifests import Manifest, parse_manifest, validate_document
from kserve_nb.patches import three_way_merge_patch
from kserve_nb.pods import POD_COLUMNS, pod_row
from kserve_nb.service import Service
from kserve_nb.status import ServiceStatus

if TYPE_CHECKING:  # only in annotations: each is imported where it is first used
    from kserve_nb.local.manager import LocalCluster
    from kserve_nb.metrics.prometheus import PrometheusSource
    from kserve_nb.predict.client import PredictionClient


@dataclass(frozen=True)
class ApplyResult:
    """One object of an apply: what happened to it, in kubectl's words."""

    kind: str
    name: str
    namespace: str | None
    action: str  # created | configured | unchanged

    def __str__(self) -> str:
        group = r.KUBECTL_RESOURCE if self.kind == r.KIND else self.kind.lower()
        return f"{group}/{self.name} {self.action}"


class ApplyResults(list[ApplyResult]):
    """The results of :meth:`Session.apply`, shown like ``kubectl apply`` output."""

    def __str__(self) -> str:
        return "\n".join(str(x) for x in self)

    def _repr_html_(self) -> str:
        return "<pre>" + html.escape(str(self)) + "</pre>"


class Session:
    """A connection to one cluster, context and namespace.

    Create it with :func:`connect`. Its repr is a banner naming the cluster, context and namespace so
    nobody releases to the wrong place.
    """

    def __init__(
        self,
        cluster: Cluster,
        *,
        config: KServeNb | None = None,
        local: LocalCluster | None = None,
        ingress: str | None = None,
        prometheus: str | None = None,
    ) -> None:
        self.cluster = cluster
        self.config = config or KServeNb()
        self.local = local
        self.ingress = ingress
        #: The Prometheus base URL given to :func:`connect` (else found by :meth:`metrics`).
        self.prometheus = prometheus
        self._clients: dict[str, PredictionClient] = {}
        self._metrics: PrometheusSource | None = None

    # ------------------------------------------------------------------ identity

    @property
    def namespace(self) -> str:
        """The default namespace of this session."""
        return self.config.namespace or self.cluster.ref.namespace

    @property
    def context(self) -> str | None:
        return self.cluster.ref.context

    @property
    def is_local(self) -> bool:
        return self.local is not None

    @property
    def poll_interval(self) -> float:
        if self.config.poll_interval > 0:
            return self.config.poll_interval
        return 0.05 if self.is_local else 1.0

    @property
    def banner(self) -> str:
        """``local cluster http://127.0.0.1:PORT · context kserve-nb-local · namespace default``."""
        kind = "local cluster" if self.is_local else f"{self.cluster.ref.kind} cluster"
        ctx = self.context or "(in-cluster)"
        return f"{kind} {self.cluster.ref.server} · context {ctx} · namespace {self.namespace}"

    @property
    def where(self) -> str:
        """``local cluster · context kserve-nb-local``: where a change made through this session lands."""
        kind = "local cluster" if self.is_local else "cluster"
        return f"{kind} · context {self.context or '(in-cluster)'}"

    def __repr__(self) -> str:
        return f"<Session {self.banner}>"

    def _repr_html_(self) -> str:
        color = "#1a7f37" if self.is_local else "#9a6700"
        return (
            f'<div class="kserve-nb-banner" style="border-left:4px solid {color};padding:2px 8px">'
            f"kserve-nb → <b>{html.escape(self.banner)}</b></div>"
        )

    # ------------------------------------------------------------------ objects

    def service(self, name: str, namespace: str | None = None) -> Service:
        """The InferenceService ``name`` (it need not exist yet: see :meth:`Service.deploy`)."""
        if not isinstance(name, str) or not name:
            raise errors.ValidationError("a service name is required, e.g. session.service('sklearn-iris')")
        return Service(self, name, namespace or self.namespace)

    def services(self, namespace: str | None = None, all_namespaces: bool = False) -> pd.DataFrame:
        """``kubectl get isvc`` as a DataFrame."""
        items = self.cluster.list_isvc(None if all_namespaces else (namespace or self.namespace))
        frames = [ServiceStatus.from_isvc(i).kubectl_row for i in items]
        if not frames:
            return pd.DataFrame(columns=list(r.ISVC_TABLE_COLUMNS))
        out = pd.concat(frames, ignore_index=True)
        if all_namespaces:
            out.insert(0, "NAMESPACE", [i["metadata"]["namespace"] for i in items])
        return out

    def pods(self, namespace: str | None = None, service: str | None = None) -> pd.DataFrame:
        """``kubectl get pod`` columns (NAME, READY, STATUS, RESTARTS, AGE) plus REVISION."""
        selector = f"{r.ISVC_LABEL}={service}" if service else None
        rows = [pod_row(p) for p in self.cluster.list_pods(namespace or self.namespace, selector)]
        return pd.DataFrame(rows, columns=list(POD_COLUMNS))

    def require_namespace(self, namespace: str) -> None:
        """Raise NotFound with a fix when ``namespace`` does not exist."""
        if not self.cluster.namespace_exists(namespace):
            raise errors.NotFound(
                f'namespace "{namespace}" does not exist; create it with '
                f"session.create_namespace({namespace!r}) or `%kserve namespace create {namespace}`"
            )

    def create_namespace(self, namespace: str) -> bool:
        """Create ``namespace`` if it does not exist. Returns True when created."""
        return self.cluster.ensure_namespace(namespace)

    # ------------------------------------------------------------------ apply

    def apply(self, manifest: Manifest, namespace: str | None = None) -> ApplyResults:
        """Create or update objects like ``kubectl apply`` (InferenceService, Namespace, ConfigMap).

        Every document is parsed and validated before the first is sent, so a bad document in a
        multi-document manifest applies nothing.
        """
        docs = parse_manifest(manifest)
        ns_default = namespace or self.namespace
        for doc in docs:
            validate_document(doc)
        results = ApplyResults()
        for doc in docs:
            results.append(self._apply_one(doc, ns_default))
        return results

    def _apply_one(self, doc: dict[str, Any], ns_default: str) -> ApplyResult:
        kind = doc["kind"]
        meta = doc.setdefault("metadata", {})
        name = meta["name"]
        if kind == "Namespace":
            created = self.cluster.ensure_namespace(name)
            return ApplyResult(kind, name, None, "created" if created else "unchanged")
        ns = meta.get("namespace") or ns_default
        meta["namespace"] = ns
        last_applied = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        annotated = json.loads(last_applied)
        annotated["metadata"].setdefault("annotations", {})[r.LAST_APPLIED_ANNOTATION] = last_applied
        if kind == "ConfigMap":
            current = self.cluster.get_configmap(name, ns)
            if current is None:
                self.cluster.create_configmap(annotated, ns)
                return ApplyResult(kind, name, ns, "created")
            metadata = {**current["metadata"], "annotations": annotated["metadata"]["annotations"]}
            merged = {**current, "data": annotated.get("data", {}), "metadata": metadata}
            self.cluster.replace_configmap(merged, ns)
            return ApplyResult(kind, name, ns, "configured")
        # InferenceService
        try:
            current = self.cluster.get_isvc(name, ns)
        except errors.NotFound:
            self.require_namespace(ns)
            self.cluster.create_isvc(annotated, ns)
            self._record_apply("create", name, ns, annotated)
            return ApplyResult(kind, name, ns, "created")
        previous_raw = ((current.get("metadata") or {}).get("annotations") or {}).get(r.LAST_APPLIED_ANNOTATION)
        try:
            original = json.loads(previous_raw) if previous_raw else {}
        except ValueError:
            original = {}
        patch = three_way_merge_patch(original, annotated, current)
        patch.pop("status", None)
        if not patch:
            return ApplyResult(kind, name, ns, "unchanged")
        patch.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
        self.cluster.patch_isvc(name, ns, patch)
        self._record_apply("apply", name, ns, annotated)
        return ApplyResult(kind, name, ns, "configured")

    def _record_apply(self, action: str, name: str, namespace: str, isvc: Mapping[str, Any]) -> None:
        # An applied manifest is a release step like any other: the history must show it.
        from kserve_nb.history import APPLIED, new_entry
        from kserve_nb.semantics import storage_uri_of

        predictor = (isvc.get("spec") or {}).get("predictor") or {}
        pct = predictor.get("canaryTrafficPercent")
        entry = new_entry(action, self.context, storageUri=storage_uri_of(predictor), percent=pct, outcome=APPLIED)
        self.service(name, namespace)._record(entry)

    # ------------------------------------------------------------------ predictions

    def prediction_client(self, model: str) -> PredictionClient:
        """A :class:`~kserve_nb.predict.client.PredictionClient` for model ``model`` (cached)."""
        client = self._clients.get(model)
        if client is None:
            from kserve_nb.predict.client import PredictionClient

            if not self.ingress:
                raise errors.ConfigError(
                    "no ingress address known for predictions: set INGRESS_HOST and INGRESS_PORT "
                    "(e.g. from `kubectl -n istio-system get svc istio-ingressgateway`), or pass "
                    "connect(ingress='http://HOST:PORT')"
                )

            client = PredictionClient(
                self.ingress,
                model=model,
                timeout=self.config.request_timeout,
                verify=self.config.verify_tls,
            )
            self._clients[model] = client
        return client

    def metrics(self) -> PrometheusSource:
        """The :class:`~kserve_nb.metrics.prometheus.PrometheusSource` of this cluster (cached).

        From ``connect(prometheus=…)``, ``%config KServeNb.prometheus`` or ``$PROMETHEUS_URL``; else
        on the local cluster its own Prometheus, started now if needed; else a well-known Prometheus
        Service (``prometheus-operated``, ``prometheus-k8s``, ``prometheus-server``… in
        ``monitoring``, ``knative-monitoring``, ``istio-system``…) through the API server's service
        proxy with this session's credentials. Raises a one-line error saying how to configure one.
        """
        if self._metrics is None:
            from kserve_nb.metrics import discovery

            url = self.prometheus or self.config.prometheus or os.environ.get("PROMETHEUS_URL")
            if url:
                from kserve_nb.metrics.prometheus import PrometheusSource

                self._metrics = PrometheusSource(url, verify=self.config.verify_tls)
            elif self.local is not None:
                self._metrics = discovery.local_source(self.local.state_dir)
            else:
                self._metrics = discovery.cluster_source(self.cluster)
        return self._metrics

    def check_storage_uri(self, uri: str) -> str:
        """Pre-flight of a storageUri before a release step sends it: its syntax, and whatever the
        cluster can tell in advance (the local cluster: the model is in its storage mirror). Returns
        the URI, stripped; raises ValidationError saying what to fix."""
        return self.cluster.preflight_storage_uri(uri)

    def close(self) -> None:
        """Close HTTP clients (the local cluster keeps running; stop it with ``kserve-nb local down``)."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
        self.cluster.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------- connect


def _env_ingress() -> str | None:
    host, port = os.environ.get("INGRESS_HOST"), os.environ.get("INGRESS_PORT")
    if host:
        return f"http://{host}:{port}" if port else f"http://{host}"
    return None


def _default_kubeconfig() -> str | None:
    env = os.environ.get("KUBECONFIG")
    if env:
        first = env.split(os.pathsep)[0]
        return first if Path(first).expanduser().exists() else None
    home = Path("~/.kube/config").expanduser()
    return str(home) if home.exists() else None


def _local_for_kubeconfig(path: str | None) -> LocalCluster | None:
    # A kubeconfig written by a local cluster lives in its state dir: find the cluster behind it.
    if not path:
        return None
    from kserve_nb.local import manager

    state_dir = Path(path).expanduser().resolve().parent
    if not (state_dir / "token").exists():
        return None
    return manager.status(state_dir)


def connect(
    *,
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    namespace: str | None = None,
    local: bool | None = None,
    ingress: str | None = None,
    state_dir: str | os.PathLike[str] | None = None,
    config: KServeNb | None = None,
    prometheus: str | None = None,
) -> Session:
    """Connect to a cluster and return a :class:`Session`.

    Resolution, first match wins: ``local=True`` → the embedded local cluster; an explicit
    ``kubeconfig``/``context``; in-cluster config (a notebook server running in Kubernetes);
    ``$KUBECONFIG`` or ``~/.kube/config``; otherwise the embedded local cluster, started on demand
    and reused when already running. ``local=False`` forbids that fallback.

    Predictions go through ``ingress`` (a base URL), else ``$INGRESS_HOST:$INGRESS_PORT``, else the
    local cluster's gateway, else straight to the service URLs.

    Metrics (:meth:`Session.metrics`) come from ``prometheus`` (a base URL), else
    ``%config KServeNb.prometheus``, else ``$PROMETHEUS_URL``, else are discovered when first asked for.
    """
    session = _connect(kubeconfig, context, namespace, local, ingress, state_dir, config)
    session.prometheus = prometheus or session.config.prometheus or os.environ.get("PROMETHEUS_URL") or None
    return session


def _connect(
    kubeconfig: str | os.PathLike[str] | None,
    context: str | None,
    namespace: str | None,
    local: bool | None,
    ingress: str | None,
    state_dir: str | os.PathLike[str] | None,
    config: KServeNb | None,
) -> Session:
    cfg = config or KServeNb()
    kubeconfig = kubeconfig or cfg.kubeconfig
    context = context or cfg.context
    namespace = namespace or cfg.namespace
    ingress = ingress or cfg.ingress
    if local is True:
        return _connect_local(cfg, namespace, ingress, state_dir)
    if kubeconfig or context:
        cluster = Cluster.from_kubeconfig(kubeconfig, context, namespace)
        lc = _local_for_kubeconfig(str(kubeconfig) if kubeconfig else _default_kubeconfig())
        if lc is not None and cluster.ref.context == r.LOCAL_CONTEXT:
            from kserve_nb.local.adapter import LocalApiCluster

            cluster.close()
            local_api = LocalApiCluster.attach(lc, kubeconfig=kubeconfig, context=context, namespace=namespace)
            return Session(local_api, config=cfg, local=lc, ingress=ingress or lc.ingress)
        return Session(cluster, config=cfg, ingress=ingress or _env_ingress())
    if os.environ.get("KUBERNETES_SERVICE_HOST") and IN_CLUSTER_TOKEN.exists():
        return Session(Cluster.in_cluster(namespace), config=cfg, ingress=ingress or _env_ingress())
    default = _default_kubeconfig()
    if default:
        return connect(kubeconfig=default, context=None, namespace=namespace, ingress=ingress, config=cfg)
    if local is False:
        raise errors.ConfigError(
            "no cluster configured: pass kubeconfig=/context=, set $KUBECONFIG, or use local=True"
        )
    return _connect_local(cfg, namespace, ingress, state_dir)


def _connect_local(
    cfg: KServeNb, namespace: str | None, ingress: str | None, state_dir: str | os.PathLike[str] | None
) -> Session:
    from kserve_nb.local import manager
    from kserve_nb.local.adapter import LocalApiCluster

    where = state_dir or cfg.local_state_dir
    lc = manager.up(os.fspath(where) if where else None)
    cluster = LocalApiCluster.attach(lc, context=r.LOCAL_CONTEXT, namespace=namespace)
    return Session(cluster, config=cfg, local=lc, ingress=ingress or lc.ingress)

