"""The local controller's Standard-mode (RawDeployment) driver: KServe's ``spec.canary[]`` emulated.

The pure rules live in :mod:`kserve_nb.semantics_standard` (``docs/standard-mode-canary.md`` is the
spec); this module plays the cluster around them for one Standard-mode InferenceService:

- the Kubernetes side of :class:`~kserve_nb.semantics_standard.StandardState` — one model-server
  process per entry of :func:`~kserve_nb.semantics_standard.serving_processes` (a Deployment's
  current pod template, plus its older one while a rolling update has not finished), keyed like a
  ReplicaSet ``{deployment}-{pod-template-hash}``; the processes' readiness is reported back with
  the template hash each was started for (``mark_ready`` / ``mark_failed`` / ``mark_unavailable``);
- the objects a cluster shows: Deployments and Services (``apps/v1``, ``v1``), the two HTTPRoutes
  (``gateway.networking.k8s.io/v1``) and one Pod per process, owned by the isvc, deleted with it;
- the ingress view: :func:`~kserve_nb.semantics_standard.ingress_routes` with every Service
  backend replaced by the process that serves it now, so ``x-kserve-revision`` — which the ingress
  stamps with the target's name — is the ReplicaSet-like ``{deployment}-{pod-template-hash}`` of the
  pod that answered (strip the last ``-`` segment for the Deployment).

The controller (:mod:`kserve_nb.local.controller`) dispatches on the deployment mode, holds status
back until the ingress serves the routes it announces (as for Knative mode), and calls
:meth:`StandardDriver.accept_routes` once it does. The state survives a daemon restart in the
store's private table (``standard/{ns}/{name}``), as ``KsvcState`` does.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from kserve_nb import resources as r
from kserve_nb import semantics_standard as ss
from kserve_nb.local import standard_objects as objects
from kserve_nb.local import store as st
from kserve_nb.local.routing import RouteTable
from kserve_nb.local.runtime import RevisionSpec
from kserve_nb.semantics import model_format_of

log = logging.getLogger(__name__)

PRIVATE_PREFIX = "standard/"

_MISSING_URI = (
    "spec.predictor.model.storageUri is not set: point it at a model directory "
    "(gs://, s3://, https://, file:// or a local path)"
)


def process_key(deployment: str, template: str) -> str:
    """The runtime key (and ingress target) of ``deployment``'s pods running ``template``."""
    return ss.replica_set_name(deployment, template)


@dataclass
class Process:
    """One model-server process of a Deployment's pod template, and the Pod shown for it."""

    deployment: str
    template_hash: str
    storage_uri: str
    model_format: str
    protocol_version: str | None
    pod: str
    created: str

    def spec(self, namespace: str, isvc: str) -> RevisionSpec:
        """What the runtime runs (the model is served under the isvc name, as KServe does)."""
        return RevisionSpec(
            namespace=namespace,
            model_name=isvc,
            revision=process_key(self.deployment, self.template_hash),
            storage_uri=self.storage_uri,
            model_format=self.model_format,
            protocol_version=self.protocol_version,
        )


@dataclass
class _Isvc:
    """What the driver keeps per Standard-mode isvc (persisted as one private value)."""

    state: ss.StandardState
    processes: dict[str, Process]  # process key → process

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state.to_json(), "processes": {k: asdict(p) for k, p in self.processes.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> _Isvc:
        return cls(
            ss.StandardState.from_json(data.get("state") or {"uid": ""}),
            {k: Process(**v) for k, v in (data.get("processes") or {}).items()},
        )

    @classmethod
    def read(cls, raw: Any) -> _Isvc | None:
        """The persisted value, or None when there is none or it no longer fits these classes (a
        state dir of another kserve-nb version): the isvc is then rebuilt from its spec, and its
        processes, whose keys depend only on the pod templates, are found running again."""
        if not raw:
            return None
        try:
            return cls.from_json(raw)
        except (TypeError, KeyError, AttributeError, ValueError):
            log.warning("dropping unreadable Standard-mode state %r", str(raw)[:200])
            return None


class StandardDriver:
    """Runs Standard-mode InferenceServices; see the module docstring."""

    def __init__(
        self,
        store: st.Store,
        runtime: Any,
        settings: ss.StandardSettings,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.settings = settings
        self._isvcs: dict[tuple[str, str], _Isvc] = {}
        self._owner: dict[tuple[str, str], tuple[str, str]] = {}  # (ns, process key) → (ns, isvc)
        self._draining: set[tuple[str, str]] = set()  # isvcs with a process kept for the ingress

    # ------------------------------------------------------------------ state

    def load(self) -> list[tuple[str, str]]:
        """Read every persisted isvc (restart recovery); return their keys to reconcile.

        A Deployment recorded as available whose process did not survive (it was not adopted)
        is unavailable until its new process is ready.
        """
        running = {key for key, state in self.runtime.states().items() if state.phase == "Ready"}
        keys = []
        for private in self.store.private_keys(PRIVATE_PREFIX):
            _, ns, name = private.split("/", 2)
            keys.append((ns, name))
            entry = _Isvc.read(self.store.get_private(private))
            if entry is None:
                continue
            for rec in list(entry.state.deployments.values()):
                if rec.serving_hash is not None and (ns, process_key(rec.name, rec.serving_hash)) not in running:
                    entry.state.mark_unavailable(rec.name)
            self._isvcs[(ns, name)] = entry
            for pkey in entry.processes:
                self._owner[(ns, pkey)] = (ns, name)
            self._save(ns, name, entry)
        return keys

    def has(self, ns: str, name: str) -> bool:
        """Whether ``ns/name`` has Standard-mode state (objects or processes) here."""
        return (ns, name) in self._isvcs or self.store.get_private(f"{PRIVATE_PREFIX}{ns}/{name}") is not None

    def owns(self, ns: str, revision: str) -> bool:
        """Whether runtime key ``revision`` is one of this driver's processes."""
        return (ns, revision) in self._owner

    def service_endpoints(self, namespace: str, service: str) -> tuple[list[tuple[str, int]], int]:
        """The pods behind Service ``namespace/service`` as its Endpoints object would list them:
        ``(host, port)`` of each ready process of its Deployment, and how many are not ready.

        The Service selects the pods of its Deployment's current template and, during a rolling
        update, of the older one still serving; a process kept only until the ingress stops
        routing to it is a terminating pod, no longer an endpoint.
        """
        states = self.runtime.states()
        for (ns, _), entry in self._isvcs.items():
            rec = entry.state.deployments.get(service) if ns == namespace else None
            if rec is None:
                continue
            templates = {rec.template_hash, rec.serving_hash}
            ready: list[tuple[str, int]] = []
            not_ready = 0
            for key, proc in entry.processes.items():
                if proc.deployment != service or proc.template_hash not in templates:
                    continue
                state = states.get((namespace, key))
                if state is not None and state.phase == "Ready" and state.port:
                    ready.append((state.host, int(state.port)))
                else:
                    not_ready += 1
            return ready, not_ready
        return [], 0

    def draining(self) -> list[tuple[str, str]]:
        """Isvcs that keep a process only until the ingress stops routing to it."""
        return sorted(self._draining)

    def _entry(self, ns: str, name: str, uid: str) -> _Isvc:
        key = (ns, name)
        entry = self._isvcs.get(key)
        if entry is None:
            raw = self.store.get_private(f"{PRIVATE_PREFIX}{ns}/{name}")
            entry = _Isvc.read(raw)
        if entry is not None and entry.state.uid != uid:
            # an earlier isvc of this name (deleted and created again): its world goes first
            self.teardown(ns, name)
            entry = None
        if entry is None:
            entry = _Isvc(ss.StandardState(uid=uid), {})
        self._isvcs[key] = entry
        return entry

    def _save(self, ns: str, name: str, entry: _Isvc) -> None:
        self.store.put_private(f"{PRIVATE_PREFIX}{ns}/{name}", entry.to_json())

    # ------------------------------------------------------------------ reconcile

    def reconcile(self, isvc: Mapping[str, Any]) -> tuple[dict[str, Any], RouteTable]:
        """One KServe pass over ``isvc`` (status as given): the status to write and the ingress routes."""
        meta = isvc["metadata"]
        ns, name = meta["namespace"], meta["name"]
        entry = self._entry(ns, name, meta["uid"])
        result = ss.reconcile(isvc, entry.state, r.now_rfc3339(), self.settings)
        if self._fail_unloadable(entry.state):
            result = ss.reconcile({**isvc, "status": result.status}, entry.state, r.now_rfc3339(), self.settings)
        self._save(ns, name, entry)
        return result.status, self.routes(isvc, entry.state)

    @staticmethod
    def _fail_unloadable(state: ss.StandardState) -> bool:
        # A template without a storageUri can never load: fail it now with a message that says why.
        changed = False
        for rec in state.deployments.values():
            unloadable = rec.replicas > 0 and rec.failed is None and not rec.storage_uri
            if unloadable and rec.serving_hash != rec.template_hash:
                changed |= state.mark_failed(rec.name, _MISSING_URI, rec.template_hash)
        return changed

    def accept_routes(self, ns: str, name: str) -> bool:
        """The ingress serves the HTTPRoutes: the Gateway accepts them (True when that is news)."""
        entry = self._isvcs.get((ns, name))
        if entry is None or not entry.state.accept_routes():
            return False
        self._save(ns, name, entry)
        return True

    def awaits_acceptance(self, ns: str, name: str) -> bool:
        """Whether ``ns/name`` has HTTPRoutes the Gateway has not accepted yet."""
        entry = self._isvcs.get((ns, name))
        return entry is not None and entry.state.routes is not None and not entry.state.routes_accepted

    def routes(self, isvc: Mapping[str, Any], state: ss.StandardState) -> RouteTable:
        """:func:`~kserve_nb.semantics_standard.ingress_routes` with each Service replaced by its serving process.

        A Deployment's Service reaches the pods that are available: the older template's during a
        rolling update, until the new one is ready; a Service without available pods keeps its
        current template's name (no endpoint: the ingress answers that nothing is ready).
        """
        table: RouteTable = {}
        for host, targets in ss.ingress_routes(isvc, state, self.settings).items():
            table[host] = [(ns, self._target(state, service), weight) for ns, service, weight in targets]
        return table

    @staticmethod
    def _target(state: ss.StandardState, service: str) -> str:
        rec = state.deployments.get(service)
        if rec is None:
            return service
        return process_key(rec.name, rec.serving_hash or rec.template_hash)

    # ------------------------------------------------------------------ processes

    def sync(self, isvc: Mapping[str, Any], programmed: Mapping[str, Any] | None) -> None:
        """Start/stop processes for ``isvc``'s state; write its Deployments, Services and Pods.

        ``programmed`` is the route table the ingress serves (None for an ingress programmed in
        step with the controller): a process it still routes to is stopped only once it no longer
        does, so no request meets a process that is going away.
        """
        meta = isvc["metadata"]
        ns, name = meta["namespace"], meta["name"]
        entry = self._isvcs[(ns, name)]
        wanted: dict[str, Process] = {}
        for rec in ss.workloads(entry.state):
            if rec.replicas <= 0:
                continue
            # The current template runs to become ready (a failed one keeps its failed pod shown);
            # an older one keeps serving until the current one is ready (a rolling update).
            templates = [rec.template_hash] if rec.storage_uri else []
            if rec.serving_hash is not None and rec.serving_hash != rec.template_hash:
                templates.append(rec.serving_hash)
            for template in templates:
                key = process_key(rec.name, template)
                proc = entry.processes.get(key)
                if proc is None and template == rec.template_hash:
                    proc = self._new_process(rec)
                if proc is not None:
                    wanted[key] = proc
        routed = _targets(programmed) if programmed is not None else set()
        self._draining.discard((ns, name))
        for key, proc in entry.processes.items():
            if key in wanted:
                continue
            if (ns, key) in routed:
                wanted[key] = proc  # the ingress still routes to it: stopped once it does not
                self._draining.add((ns, name))
                continue
            self.runtime.stop(ns, key)
            self._delete(st.PODS, ns, proc.pod)
            self._owner.pop((ns, key), None)
        changed = set(wanted) != set(entry.processes)
        entry.processes = wanted
        for key, proc in wanted.items():
            self._owner[(ns, key)] = (ns, name)
            self.runtime.ensure_running(proc.spec(ns, name))  # idempotent: a running one is left alone
        if changed:
            self._save(ns, name, entry)
        states = self.runtime.states()
        for key, proc in wanted.items():
            self._write_pod(isvc, entry, proc, states.get((ns, key)))
        self._sync_workload_objects(isvc, entry.state)

    def _new_process(self, rec: ss.DeploymentRecord) -> Process:
        model = rec.predictor.get("model") if isinstance(rec.predictor.get("model"), Mapping) else {}
        suffix = "".join(secrets.choice(r.K8S_NAME_ALPHABET) for _ in range(5))
        return Process(
            deployment=rec.name,
            template_hash=rec.template_hash,
            storage_uri=rec.storage_uri or "",
            model_format=model_format_of(rec.predictor) or _legacy_format(rec.predictor),
            protocol_version=(model or {}).get("protocolVersion"),
            pod=f"{process_key(rec.name, rec.template_hash)}-{suffix}",
            created=r.now_rfc3339(),
        )

    def on_runtime_change(self, state: Any) -> tuple[str, str] | None:
        """Runtime callback for one of our processes; returns its isvc key (None: not ours)."""
        owner = self._owner.get((state.namespace, state.revision))
        if owner is None:
            return None
        ns, name = owner
        entry = self._isvcs.get(owner)
        proc = entry.processes.get(state.revision) if entry is not None else None
        if entry is None or proc is None:
            return owner
        dep, template = proc.deployment, proc.template_hash
        changed = False
        if state.phase == "Ready":
            changed = entry.state.mark_ready(dep, template)
        elif state.phase == "Failed" and not state.ever_ready:
            changed = entry.state.mark_failed(dep, state.message or "the model server failed to start", template)
        elif state.phase in ("Restarting", "Failed"):
            rec = entry.state.deployments.get(dep)
            if rec is not None and rec.serving_hash == template:
                changed = entry.state.mark_unavailable(dep)  # its only pod is gone
        if changed:
            self._save(ns, name, entry)
        isvc = self.store.get(st.INFERENCESERVICES, ns, name)
        if isvc is not None and state.phase != "Stopped":
            self._write_pod(isvc, entry, proc, state)
        return owner

    # ------------------------------------------------------------------ teardown

    def teardown(self, ns: str, name: str) -> None:
        """Stop every process of ``ns/name`` and delete its objects and state."""
        entry = self._isvcs.pop((ns, name), None)
        if entry is None:
            raw = self.store.get_private(f"{PRIVATE_PREFIX}{ns}/{name}")
            entry = _Isvc.read(raw)
        for key in list(entry.processes) if entry is not None else []:
            self.runtime.stop(ns, key)
        for proc_key, owner in list(self._owner.items()):
            if owner == (ns, name):
                self.runtime.stop(*proc_key)
                del self._owner[proc_key]
        self._delete_routes(ns, name, keep=set())
        for rt in (st.SERVICES, st.DEPLOYMENTS, st.PODS):
            items, _ = self.store.list(rt, ns, {r.ISVC_LABEL: name})
            for obj in items:
                if rt is st.PODS and not _is_raw_pod(obj):
                    continue  # a Knative revision's pod (an earlier isvc of this name): not ours
                self._delete(rt, ns, obj["metadata"]["name"])
        self._draining.discard((ns, name))
        self.store.put_private(f"{PRIVATE_PREFIX}{ns}/{name}", None)

    # ------------------------------------------------------------------ objects

    def _sync_workload_objects(self, isvc: Mapping[str, Any], state: ss.StandardState) -> None:
        # Deployments and Services show the emulated cluster as it is now; those of Deployments
        # the state no longer has (a rolled-back canary, the stable before a promotion) go.
        ns, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
        recs = ss.workloads(state)
        for rec in recs:
            self.upsert(st.DEPLOYMENTS, objects.deployment_object(isvc, rec))
            self.upsert(st.SERVICES, objects.service_object(isvc, rec))
        keep = {rec.name for rec in recs}
        for rt in (st.SERVICES, st.DEPLOYMENTS):
            items, _ = self.store.list(rt, ns, {r.ISVC_LABEL: name})
            for obj in items:
                if obj["metadata"]["name"] not in keep:
                    self._delete(rt, ns, obj["metadata"]["name"])

    def write_routes(self, isvc: Mapping[str, Any]) -> None:
        """Write the HTTPRoutes as the ingress now serves them (and delete them when there are none)."""
        ns, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
        entry = self._isvcs.get((ns, name))
        routes = objects.httproute_objects(isvc, entry.state, self.settings) if entry is not None else []
        for route in routes:
            self.upsert(st.HTTPROUTES, route)
        self._delete_routes(ns, name, keep={route["metadata"]["name"] for route in routes})

    def _delete_routes(self, ns: str, name: str, keep: set[str]) -> None:
        # KServe's HTTPRoutes carry only the isvc's own labels: they are found by name and owner.
        for route in (ss.predictor_service_name(name), name):
            obj = self.store.get(st.HTTPROUTES, ns, route)
            if obj is None or route in keep:
                continue
            owners = obj["metadata"].get("ownerReferences") or []
            if any(o.get("kind") == r.KIND and o.get("name") == name for o in owners):
                self._delete(st.HTTPROUTES, ns, route)

    def _write_pod(self, isvc: Mapping[str, Any], entry: _Isvc, proc: Process, state: Any) -> None:
        rec = entry.state.deployments.get(proc.deployment)
        labels = objects.component_labels(isvc, rec) if rec is not None else {}
        self.upsert(st.PODS, pod_object(isvc, proc, state, labels))

    def upsert(self, rt: st.ResourceType, obj: dict[str, Any]) -> None:
        """Create ``obj``, or update it (metadata and spec, then status) where it differs.

        A Deployment's ``status.observedGeneration`` is the stored generation: the emulated
        Deployment controller observes every change at once.
        """
        ns = obj["metadata"].get("namespace", "")
        existing = self.store.get(rt, ns, obj["metadata"]["name"])
        if existing is None:
            stored = self.store.create(rt, obj)
        else:
            merged = {**existing, **{k: v for k, v in obj.items() if k not in ("metadata", "status")},
                      "metadata": {**existing["metadata"], **obj["metadata"]}}
            stored = self.store.update(rt, merged, check_rv=False)
        if "status" not in obj or not rt.has_status:
            return
        status = obj["status"]
        if rt is st.DEPLOYMENTS and "observedGeneration" in status:
            status = {**status, "observedGeneration": int(stored["metadata"].get("generation", 1))}
        if stored.get("status") != status:
            self.store.update(rt, {**stored, "status": status}, subresource="status")

    def _delete(self, rt: st.ResourceType, ns: str, name: str) -> None:
        try:
            self.store.delete(rt, ns, name)
        except st.StoreNotFound:
            pass


def _is_raw_pod(pod: Mapping[str, Any]) -> bool:
    # A raw predictor pod's app label is its Deployment's ``isvc.{name}``; a Knative one's is its revision.
    return str(((pod.get("metadata") or {}).get("labels") or {}).get("app", "")).startswith("isvc.")


def _targets(table: Mapping[str, Any]) -> set[tuple[str, str]]:
    return {(target[0], target[1]) for targets in table.values() for target in targets}


def _legacy_format(predictor: Mapping[str, Any]) -> str:
    for key in ("sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx", "huggingface", "pmml",
                "lightgbm", "paddle"):
        if isinstance(predictor.get(key), Mapping):
            return key
    return ""


def pod_object(isvc: Mapping[str, Any], proc: Process, state: Any, labels: Mapping[str, str]) -> dict[str, Any]:
    """The read-only Pod shown for one process, as ``kubectl get pod`` shows a raw predictor pod.

    ``labels`` are its Deployment's template labels (what the Deployment's selector and the
    Service select); the pod adds its ``pod-template-hash``.
    """
    meta = isvc["metadata"]
    ns, name = meta["namespace"], meta["name"]
    rs = process_key(proc.deployment, proc.template_hash)
    phase = getattr(state, "phase", None) or "Starting"
    ready = phase == "Ready"
    restarts = getattr(state, "restarts", 0) or 0
    started = getattr(state, "started_at", None) or proc.created
    container: dict[str, Any] = {
        "name": "kserve-container",
        "image": f"kserve/{proc.model_format or 'unknown'}server:v0.21.0",
        "imageID": "",
        "ready": ready,
        "restartCount": restarts,
        "started": ready,
    }
    init: dict[str, Any] = {
        "name": "storage-initializer",
        "image": "kserve/storage-initializer:v0.21.0",
        "imageID": "",
        "ready": True,
        "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
    }
    if getattr(state, "last_crash_at", None):
        container["lastState"] = {"terminated": {"exitCode": 137, "reason": "Error", "finishedAt": state.last_crash_at}}
    pod_phase = "Running"
    failed = phase == "Failed"
    if failed:
        init["ready"] = False
        init["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": getattr(state, "message", None) or ""}}
        container["state"] = {"waiting": {"reason": "PodInitializing"}}
        pod_phase = "Pending"
    elif ready:
        container["state"] = {"running": {"startedAt": started}}
    elif phase == "Restarting":
        message = getattr(state, "message", None) or ""
        container["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
    else:
        container["state"] = {"waiting": {"reason": "ContainerCreating"}}
        pod_phase = "Pending"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": proc.pod,
            "namespace": ns,
            "labels": {
                **labels,
                r.ISVC_LABEL: name,
                r.COMPONENT_LABEL: "predictor",
                "app": objects.raw_service_label(proc.deployment),
                "pod-template-hash": r.pod_template_hash(proc.template_hash),
            },
            "annotations": {r.STORAGE_URI_ANNOTATION: proc.storage_uri},
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{meta.get('uid', '')}/{rs}")),
                "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "spec": {
            "nodeName": r.LOCAL_CONTEXT,
            "initContainers": [{"name": "storage-initializer", "image": init["image"],
                                "args": [proc.storage_uri, "/mnt/models"]}],
            "containers": [{
                "name": "kserve-container",
                "image": container["image"],
                "args": [f"--model_name={name}", "--model_dir=/mnt/models", f"--http_port={ss.CONTAINER_PORT}"],
                "ports": [{"containerPort": ss.CONTAINER_PORT, "name": "http", "protocol": "TCP"}],
            }],
        },
        "status": {
            "phase": pod_phase,
            "conditions": [
                {"type": "Initialized", "status": "False" if failed else "True"},
                {"type": "Ready", "status": "True" if ready else "False"},
                {"type": "ContainersReady", "status": "True" if ready else "False"},
                {"type": "PodScheduled", "status": "True"},
            ],
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "startTime": proc.created,
            "initContainerStatuses": [init],
            "containerStatuses": [container],
        },
    }
