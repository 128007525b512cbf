"""The local KServe controller: store events in, status + revisions + pods + routes out.

It plays three cluster roles at once, all driven by the pure :func:`semantics.reconcile`:

- KServe's InferenceService controller (status, traffic targets, revision bookkeeping);
- Knative Serving (revisions, route programming) — its state lives in :class:`KsvcState`,
  persisted in the store's private table so a ``kill -9`` and restart keep revision numbers;
- the kubelet: one model-server process per live revision (through :class:`Runtime`), shown as a
  read-only Pod, and the ingress programming (through :class:`Gateway`).

It shows the Knative Service and Revisions (read-only), and records the events KServe's controller
records (reconcile errors, Ready transitions) as core/v1 Events.

Standard-mode (RawDeployment) InferenceServices go to :class:`~kserve_nb.local.standard_driver.StandardDriver`
(KServe's ``spec.canary[]`` rules of :mod:`kserve_nb.semantics_standard`: Deployments, Services,
HTTPRoutes, one process per pod template); this module dispatches on the mode and shares the
ingress bookkeeping (status held until the ingress serves the routes it announces) with it.

Everything runs on the daemon's event loop thread; work is coalesced per InferenceService.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Mapping
from typing import Any, Protocol

from kserve_nb import resources as r
from kserve_nb import semantics_standard as ss
from kserve_nb.local import store as st
from kserve_nb.local.events import EventRecorder
from kserve_nb.local.routing import RouteTable
from kserve_nb.local.runtime import RevisionSpec
from kserve_nb.local.standard_driver import StandardDriver
from kserve_nb.semantics import (
    KsvcState,
    Revision,
    Settings,
    autoscaling_annotations,
    ksvc_status,
    live_revisions,
    model_format_of,
    readiness_events,
    reconcile,
    routes,
)

log = logging.getLogger(__name__)



class RevisionStateLike(Protocol):
    namespace: str
    revision: str
    phase: str
    message: str | None
    host: str
    port: int | None
    pid: int | None
    restarts: int
    started_at: str | None
    last_crash_at: str | None
    ever_ready: bool


class RuntimeLike(Protocol):
    def ensure_running(self, spec: Any) -> None: ...
    def stop(self, namespace: str, revision: str) -> None: ...
    def states(self) -> dict[tuple[str, str], Any]: ...


class GatewayLike(Protocol):
    def update(self, routes: Any, endpoints: Any) -> None: ...


_KNATIVE_REVISION = re.compile(r"-predictor-\d{5,}$")


def isvc_of_revision(revision: str) -> str:
    """``sklearn-iris-predictor-00002`` → ``sklearn-iris``."""
    return revision.rsplit("-predictor-", 1)[0]


def is_knative_revision(revision: str) -> bool:
    """Whether a runtime key names a Knative revision (``{isvc}-predictor-{00001}``), not a raw pod template."""
    return bool(_KNATIVE_REVISION.search(revision))


def new_pod(rev: Revision) -> dict[str, str]:
    """Name and creation time of a new pod for ``rev``: ``{revision}-deployment-{hash}-{suffix}``."""
    suffix = "".join(secrets.choice(r.K8S_NAME_ALPHABET) for _ in range(5))
    return {
        "name": f"{rev.name}-deployment-{r.pod_template_hash(rev.template_hash, 9)}-{suffix}",
        "created": r.now_rfc3339(),
    }


class Controller:
    """Reconciles every InferenceService in the store; see the module docstring."""

    def __init__(
        self,
        store: st.Store,
        runtime: RuntimeLike,
        gateway: GatewayLike,
        settings: Settings | None = None,
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.gateway = gateway
        self.settings = settings or Settings()
        self.events = EventRecorder(store)
        self.standard = StandardDriver(store, runtime, ss.StandardSettings(ingress_domain=self.settings.domain))
        self._states: dict[tuple[str, str], KsvcState] = {}
        self._routes: dict[tuple[str, str], RouteTable] = {}
        # An ingress that is programmed asynchronously (nginx) reports the table it serves; status
        # that would announce routes it does not serve yet is held back until it does, as Knative
        # holds a Route's readiness until its ingress is programmed.
        self._asynchronous_ingress = bool(getattr(gateway, "programs_asynchronously", False))
        self._programmed: Mapping[str, Any] = {}
        self._published: dict[tuple[str, str], RouteTable] = {}  # the routes the written status announces
        self._pending: dict[tuple[str, str], tuple[str, Any]] = {}  # held status: (uid, status)
        self._dirty: set[tuple[str, str]] = set()
        self._scheduled = False
        self._task: asyncio.Task[None] | None = None
        self._sub: Any = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Reconcile everything already stored (restart recovery), then follow store events."""
        self._sub = self.store.subscribe(st.INFERENCESERVICES)
        items, _ = self.store.list(st.INFERENCESERVICES)
        for isvc in items:
            self._dirty.add((isvc["metadata"]["namespace"], isvc["metadata"]["name"]))
        # Objects of isvcs deleted while we were down.
        for key in self.store.private_keys("ksvc/"):
            _, ns, name = key.split("/", 2)
            self._dirty.add((ns, name))
        self._dirty.update(self.standard.load())
        self._drain()
        self._task = asyncio.create_task(self._follow(), name="kserve-nb-controller")

    async def stop(self) -> None:
        """Stop following events (processes are stopped by the runtime's own close)."""
        if self._sub is not None:
            self.store.unsubscribe(self._sub)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _follow(self) -> None:
        while True:
            event = await self._sub.queue.get()
            meta = event.obj.get("metadata") or {}
            self._mark_dirty((meta.get("namespace", ""), meta.get("name", "")))

    def _mark_dirty(self, key: tuple[str, str]) -> None:
        self._dirty.add(key)
        if not self._scheduled:
            self._scheduled = True
            # Coalesce a burst of events (apply + our own status write) into one pass.
            asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        self._scheduled = False
        while self._dirty:
            key = self._dirty.pop()
            try:
                self._reconcile_one(*key)
            except Exception:  # one bad object must not stop the controller
                log.exception("reconcile of %s/%s failed", *key)
        self._sync_gateway()

    # ------------------------------------------------------------------ state

    def _state(self, ns: str, name: str, uid: str | None) -> KsvcState:
        key = (ns, name)
        ks = self._states.get(key)
        if ks is None:
            raw = self.store.get_private(f"ksvc/{ns}/{name}")
            ks = KsvcState.from_json(raw) if raw else None
        if ks is None or (uid is not None and ks.uid != uid):
            ks = KsvcState(uid=uid or "")
        self._states[key] = ks
        return ks

    def _save(self, ns: str, name: str, ks: KsvcState) -> None:
        self.store.put_private(f"ksvc/{ns}/{name}", ks.to_json())

    # ------------------------------------------------------------------ reconcile

    def _reconcile_one(self, ns: str, name: str) -> None:
        isvc = self.store.get(st.INFERENCESERVICES, ns, name)
        if isvc is None:
            self._teardown(ns, name)
            self.standard.teardown(ns, name)
            return
        if r.deployment_mode(isvc) == ss.STANDARD:
            if self.store.get_private(f"ksvc/{ns}/{name}") is not None:
                self._teardown(ns, name)  # a Knative-mode isvc of this name was deleted and created again
            self._reconcile_standard(ns, name, isvc)
            return
        if self.standard.has(ns, name):
            self.standard.teardown(ns, name)
            self._forget_routes(ns, name)
        uid = isvc["metadata"]["uid"]
        stored_status = isvc.get("status")
        pending = self._pending.get((ns, name))
        if pending is not None and pending[0] == uid:
            # Reconcile from the status computed last (KServe's controller would have written it; it
            # only waits for the ingress here): its rollout bookkeeping must not be lost.
            isvc = {**isvc, "status": pending[1]}
        ks = self._state(ns, name, uid)
        before = list(ks.revisions)
        stale = self._stale_revisions(ns, name, ks)
        result = reconcile(isvc, ks, r.now_rfc3339(), self.settings)
        if self._fail_unloadable(ks):
            result = reconcile({**isvc, "status": result.status}, ks, r.now_rfc3339(), self.settings)
        self._save(ns, name, ks)
        for event in result.events:
            self._record(isvc, event)
        # Revisions the ksvc no longer has (it was deleted: stop annotation) go with their pods.
        for rev in before:
            if ks.revision(rev.name) is None:
                self.runtime.stop(ns, rev.name)
                if rev.pod is not None:
                    self._delete_pod(ns, rev.pod["name"])
                self._delete(st.REVISIONS, ns, rev.name)
        new_routes = routes(result.status, name, ns, self.settings)
        held = self._ingress_lags(self._published.get((ns, name), {}), new_routes)
        self._routes[(ns, name)] = new_routes
        if held:
            self._pending[(ns, name)] = (uid, result.status)
        else:
            self._published[(ns, name)] = new_routes
            self._pending.pop((ns, name), None)
            if result.status != stored_status:
                self.store.update(
                    st.INFERENCESERVICES, {**isvc, "status": result.status}, subresource="status", check_rv=False
                )
                for event in readiness_events(stored_status, result.status, name):
                    self._record(isvc, event)
        self._sync_ksvc_object(ns, name, isvc, ks)
        self._sync_revision_objects(ns, name, ks, result.status)
        self._sync_processes(ns, name, ks, result.status, stale)

    def _reconcile_standard(self, ns: str, name: str, isvc: dict[str, Any]) -> None:
        """One Standard-mode pass: KServe's rules, then the status once the ingress serves its routes."""
        key = (ns, name)
        uid = isvc["metadata"]["uid"]
        stored_status = isvc.get("status")
        pending = self._pending.get(key)
        if pending is not None and pending[0] == uid:
            isvc = {**isvc, "status": pending[1]}
        status, table = self.standard.reconcile(isvc)
        published = self._published.get(key, {})
        held = self._ingress_lags(published, table)
        # The Gateway accepts routes the ingress serves, one pass after a status announced them
        # unaccepted (IngressReady False ParentStatusNotAvailable), as on a cluster.
        if not held and published == table and self.standard.accept_routes(ns, name):
            status, table = self.standard.reconcile({**isvc, "status": status})
            held = self._ingress_lags(published, table)
        self._routes[key] = table
        if held:
            self._pending[key] = (uid, status)
        else:
            self._published[key] = table
            self._pending.pop(key, None)
            if status != stored_status:
                self.store.update(
                    st.INFERENCESERVICES, {**isvc, "status": status}, subresource="status", check_rv=False
                )
                for event in readiness_events(stored_status, status, name):
                    self._record(isvc, event)
            self.standard.write_routes(isvc)
            if self.standard.awaits_acceptance(ns, name):
                self._mark_dirty(key)  # accepted on the next pass
        self.standard.sync(isvc, self._programmed if self._asynchronous_ingress else None)

    def _knative_key(self, ns: str, revision: str) -> bool:
        # A runtime key of a Knative revision, not a Standard-mode pod template that happens to
        # look like one (a pod-template-hash of digits only).
        return is_knative_revision(revision) and not self.standard.owns(ns, revision)

    def _forget_routes(self, ns: str, name: str) -> None:
        self._routes.pop((ns, name), None)
        self._published.pop((ns, name), None)
        self._pending.pop((ns, name), None)

    def _stale_revisions(self, ns: str, name: str, ks: KsvcState) -> list[str]:
        # Revisions of an earlier incarnation (deleted and recreated isvc) still running.
        known = {rev.name for rev in ks.revisions}
        return [
            rev
            for (rns, rev) in self.runtime.states()
            if rns == ns and self._knative_key(ns, rev) and isvc_of_revision(rev) == name and rev not in known
        ]

    @staticmethod
    def _fail_unloadable(ks: KsvcState) -> bool:
        # A revision without a storageUri can never load: fail it now with a message that says why.
        latest = ks.latest_created
        if latest is None or latest.ready or latest.failed or latest.storage_uri:
            return False
        return ks.mark_failed(
            latest.name,
            "spec.predictor.model.storageUri is not set: point it at a model directory "
            "(gs://, s3://, https://, file:// or a local path)",
        )

    def _teardown(self, ns: str, name: str) -> None:
        ks = self._states.pop((ns, name), None)
        raw = self.store.get_private(f"ksvc/{ns}/{name}")
        if ks is None and raw:
            ks = KsvcState.from_json(raw)
        for rev in ks.revisions if ks else []:
            self.runtime.stop(ns, rev.name)
        for rns, revision in list(self.runtime.states()):
            if rns == ns and self._knative_key(ns, revision) and isvc_of_revision(revision) == name:
                self.runtime.stop(ns, revision)
        for rt in (st.PODS, st.REVISIONS, st.KSERVICES):
            items, _ = self.store.list(rt, ns, {r.ISVC_LABEL: name})
            for obj in items:
                try:
                    self.store.delete(rt, ns, obj["metadata"]["name"])
                except st.StoreNotFound:
                    pass
        self.store.put_private(f"ksvc/{ns}/{name}", None)
        self._routes.pop((ns, name), None)
        self._published.pop((ns, name), None)
        self._pending.pop((ns, name), None)

    # ------------------------------------------------------------------ runtime

    def on_runtime_change(self, state: RevisionStateLike) -> None:
        """Runtime callback: a model-server process changed phase."""
        standard = self.standard.on_runtime_change(state)
        if standard is not None:
            self._sync_gateway()
            self._mark_dirty(standard)
            return
        ns, revision = state.namespace, state.revision
        if not is_knative_revision(revision):
            self._sync_gateway()  # a Standard-mode process already let go (its last "Stopped")
            return
        name = isvc_of_revision(revision)
        ks = self._states.get((ns, name))
        if ks is not None:
            changed = False
            if state.phase == "Ready":
                changed = ks.mark_ready(revision)
            elif state.phase == "Failed" and not state.ever_ready:
                changed = ks.mark_failed(revision, state.message or "the model server failed to start")
            if changed:
                self._save(ns, name, ks)
            rev = ks.revision(revision)
            if rev is not None and rev.pod is not None:
                self._write_pod(ns, name, rev, state)
        # Endpoints change now, not after the next reconcile: a dead process gets no more requests.
        self._sync_gateway()
        self._mark_dirty((ns, name))

    def _sync_processes(
        self, ns: str, name: str, ks: KsvcState, status: dict[str, Any], stale: list[str]
    ) -> None:
        live = {rev.name for rev in live_revisions(ks, status)}
        states = self.runtime.states()
        for rev in ks.revisions:
            if rev.name in live:
                self.runtime.ensure_running(self._revision_spec(ns, name, rev))
            elif (ns, rev.name) in states:
                self.runtime.stop(ns, rev.name)
            # A failed latest revision keeps showing its (crash-looping) pod, like on a cluster.
            shown = rev.name in live or (rev.failed and rev is ks.latest_created)
            if shown:
                if rev.pod is None:
                    rev.pod = new_pod(rev)
                    self._save(ns, name, ks)
                self._write_pod(ns, name, rev, states.get((ns, rev.name)))
            elif rev.pod is not None:
                self._delete_pod(ns, rev.pod["name"])
                rev.pod = None
                self._save(ns, name, ks)
        for revision in stale:
            self.runtime.stop(ns, revision)

    @staticmethod
    def _revision_spec(ns: str, name: str, rev: Revision) -> RevisionSpec:
        predictor = rev.template.get("predictor") or {}
        model = predictor.get("model") or {}
        return RevisionSpec(
            namespace=ns,
            model_name=name,
            revision=rev.name,
            storage_uri=rev.storage_uri or "",
            model_format=model_format_of(predictor) or "",
            protocol_version=model.get("protocolVersion"),
        )

    # ------------------------------------------------------------------ objects

    def _record(self, isvc: Mapping[str, Any], event: Mapping[str, str]) -> None:
        obj = {"apiVersion": r.API_VERSION, "kind": r.KIND, **isvc}
        try:
            self.events.record(obj, event["type"], event["reason"], event["message"])
        except st.StoreError:  # an event is best effort, as in client-go: never fail a reconcile
            log.warning("could not record event %s for %s", event["reason"], isvc["metadata"].get("name"))

    def _sync_ksvc_object(self, ns: str, name: str, isvc: Mapping[str, Any], ks: KsvcState) -> None:
        # KServe creates the ksvc once the predictor has a runtime, and deletes it to stop the isvc.
        if not ks.revisions:
            self._delete(st.KSERVICES, ns, r.predictor_name(name))
            return
        existing = self.store.get(st.KSERVICES, ns, r.predictor_name(name))
        old_conditions = ((existing or {}).get("status") or {}).get("conditions") or []
        status = ksvc_status(ks, name, ns, self.settings, old_conditions, r.now_rfc3339())
        self._upsert(st.KSERVICES, ns, ksvc_object(ns, name, isvc, ks, status))

    def _delete(self, rt: st.ResourceType, ns: str, obj_name: str) -> None:
        try:
            self.store.delete(rt, ns, obj_name)
        except st.StoreNotFound:
            pass

    def _sync_revision_objects(self, ns: str, name: str, ks: KsvcState, status: dict[str, Any]) -> None:
        states = self.runtime.states()
        live = {rev.name for rev in live_revisions(ks, status)}
        for rev in ks.revisions:
            obj = revision_object(ns, name, rev, states.get((ns, rev.name)), rev.name in live)
            self._upsert(st.REVISIONS, ns, obj)

    def _write_pod(self, ns: str, name: str, rev: Revision, state: Any) -> None:
        self._upsert(st.PODS, ns, pod_object(ns, name, rev, state))

    def _delete_pod(self, ns: str, pod: str) -> None:
        try:
            self.store.delete(st.PODS, ns, pod)
        except st.StoreNotFound:
            pass

    def _upsert(self, rt: st.ResourceType, ns: str, obj: dict[str, Any]) -> None:
        existing = self.store.get(rt, ns, obj["metadata"]["name"])
        if existing is None:
            created = self.store.create(rt, obj)
            if "status" in obj:
                self.store.update(rt, {**created, "status": obj["status"]}, subresource="status")
            return
        merged = {
            **existing,
            "metadata": {**existing["metadata"], **{k: v for k, v in obj["metadata"].items()}},
            "spec": obj.get("spec", existing.get("spec")),
        }
        self.store.update(rt, merged, check_rv=False)
        if obj.get("status") != existing.get("status"):
            latest = self.store.get(rt, ns, obj["metadata"]["name"]) or merged
            self.store.update(rt, {**latest, "status": obj.get("status")}, subresource="status")

    # ------------------------------------------------------------------ endpoints

    def service_endpoints(self, namespace: str, service: str) -> tuple[list[tuple[str, int]], int]:
        """The pods behind a Service, for the API server's service proxy: ``(host, port)`` of each
        ready one and how many are not ready. Only Standard-mode predictors have Services here."""
        return self.standard.service_endpoints(namespace, service)

    # ------------------------------------------------------------------ gateway

    def on_ingress_programmed(self, table: Mapping[str, Any]) -> None:
        """Ingress callback: it now serves ``table``; write the status held back for it."""
        self._programmed = table
        for key in list(self._pending):
            self._mark_dirty(key)
        for key in self.standard.draining():
            self._mark_dirty(key)

    def _ingress_lags(self, old: RouteTable, new: RouteTable) -> bool:
        """Whether the ingress does not serve ``new`` yet (hosts of ``old`` it drops included)."""
        if not self._asynchronous_ingress:
            return False
        programmed = self._programmed
        if any(programmed.get(host) != targets for host, targets in new.items()):
            return True
        return any(host in programmed for host in old if host not in new)

    def _sync_gateway(self) -> None:
        table: RouteTable = {}
        for per_isvc in self._routes.values():
            table.update(per_isvc)
        endpoints = {
            key: (state.host, state.port)
            for key, state in self.runtime.states().items()
            if state.phase == "Ready" and state.port
        }
        self.gateway.update(table, endpoints)


# ---------------------------------------------------------------------- object shapes


def _labels(ns: str, name: str, rev: Revision) -> dict[str, str]:
    return {
        r.ISVC_LABEL: name,
        r.COMPONENT_LABEL: "predictor",
        r.REVISION_LABEL: rev.name,
        r.CONFIGURATION_LABEL: r.predictor_name(name),
        r.KNATIVE_SERVICE_LABEL: r.predictor_name(name),
        r.CONFIGURATION_GENERATION_LABEL: str(rev.number),
        "app": rev.name,
    }


def _container_args(name: str) -> list[str]:
    return [f"--model_name={name}", "--model_dir=/mnt/models", "--http_port=8080"]


def revision_object(
    ns: str, name: str, rev: Revision, state: Any, live: bool
) -> dict[str, Any]:
    """The Knative ``Revision`` object the local cluster shows for ``rev``."""
    template = rev.template
    annotations = {**(template.get("annotations") or {}), **autoscaling_annotations(template)}
    if rev.storage_uri:
        annotations[r.STORAGE_URI_ANNOTATION] = rev.storage_uri
    if rev.ready:
        ready = {"type": "Ready", "status": "True"}
    elif rev.failed:
        ready = {"type": "Ready", "status": "False", "reason": "RevisionFailed", "message": rev.message or ""}
    else:
        ready = {"type": "Ready", "status": "Unknown", "reason": "Deploying"}
    ready["lastTransitionTime"] = rev.created_at
    serving = state is not None and state.phase == "Ready"
    fmt = model_format_of(template.get("predictor") or {}) or "unknown"
    return {
        "apiVersion": r.KNATIVE_API_VERSION,
        "kind": "Revision",
        "metadata": {
            "name": rev.name,
            "namespace": ns,
            "labels": {**(template.get("labels") or {}), **_labels(ns, name, rev)},
            "annotations": annotations,
        },
        "spec": {
            "containerConcurrency": 0,
            "timeoutSeconds": 300,
            "containers": [
                {
                    "name": "kserve-container",
                    "image": f"kserve/{fmt}server:v0.21.0",
                    "args": _container_args(name),
                }
            ],
            "predictor": template.get("predictor") or {},
        },
        "status": {
            "conditions": [ready],
            "observedGeneration": 1,
            "actualReplicas": 1 if serving else 0,
            "desiredReplicas": 1 if live else 0,
            "modelStorageUri": rev.storage_uri,
        },
    }


def ksvc_object(
    ns: str, name: str, isvc: Mapping[str, Any], ks: KsvcState, status: dict[str, Any]
) -> dict[str, Any]:
    """The Knative ``Service`` KServe creates for the predictor (``createKnativeService``)."""
    latest = ks.latest_created
    assert latest is not None
    template = latest.template
    meta = isvc.get("metadata") or {}
    labels = {**(template.get("labels") or {}), r.ISVC_LABEL: name, r.COMPONENT_LABEL: "predictor"}
    annotations = {**(template.get("annotations") or {}), **autoscaling_annotations(template)}
    if latest.storage_uri:
        annotations[r.STORAGE_URI_ANNOTATION] = latest.storage_uri
    predictor = template.get("predictor") or {}
    fmt = model_format_of(predictor) or "unknown"
    revision_spec: dict[str, Any] = {
        "containerConcurrency": predictor.get("containerConcurrency", 0),
        "timeoutSeconds": predictor.get("timeout", 300),
        "containers": [
            {"name": "kserve-container", "image": f"kserve/{fmt}server:v0.21.0", "args": _container_args(name)}
        ],
    }
    ksvc_annotations = {}
    if r.ROLLOUT_DURATION_ANNOTATION in (meta.get("annotations") or {}):
        ksvc_annotations[r.ROLLOUT_DURATION_ANNOTATION] = meta["annotations"][r.ROLLOUT_DURATION_ANNOTATION]
    return {
        "apiVersion": r.KNATIVE_API_VERSION,
        "kind": "Service",
        "metadata": {
            "name": r.predictor_name(name),
            "namespace": ns,
            "labels": labels,
            "annotations": ksvc_annotations,
            "ownerReferences": [{
                "apiVersion": r.API_VERSION, "kind": r.KIND, "name": name, "uid": meta.get("uid", ""),
                "controller": True, "blockOwnerDeletion": True,
            }],
        },
        "spec": {
            "template": {"metadata": {"labels": dict(template.get("labels") or {}), "annotations": annotations},
                         "spec": revision_spec},
            "traffic": [dict(t) for t in ks.spec_traffic],
        },
        "status": status,
    }


def pod_object(ns: str, name: str, rev: Revision, state: Any) -> dict[str, Any]:
    """The read-only ``Pod`` the local cluster shows for a live revision's model-server process."""
    assert rev.pod is not None
    phase = getattr(state, "phase", None) or ("Failed" if rev.failed else "Starting")
    restarts = getattr(state, "restarts", 0) or 0
    started = getattr(state, "started_at", None) or rev.pod["created"]
    ready = phase == "Ready"
    # imageID is required by typed clients; empty as a kubelet reports it for an image it has not
    # resolved (these "containers" are local processes, there is no registry digest to show).
    kserve: dict[str, Any] = {
        "name": "kserve-container",
        "image": "kserve/sklearnserver:v0.21.0",
        "imageID": "",
        "ready": ready,
        "restartCount": restarts,
        "started": ready,
    }
    proxy: dict[str, Any] = {
        "name": "queue-proxy",
        "image": "knative/queue",
        "imageID": "",
        "ready": True,
        "restartCount": 0,
        "started": True,
        "state": {"running": {"startedAt": rev.pod["created"]}},
    }
    init: list[dict[str, Any]] = [
        {
            "name": "storage-initializer",
            "image": "kserve/storage-initializer",
            "imageID": "",
            "ready": not rev.failed,
            "restartCount": 0,
            "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
        }
    ]
    if getattr(state, "last_crash_at", None):
        kserve["lastState"] = {
            "terminated": {"exitCode": 137, "reason": "Error", "finishedAt": state.last_crash_at}
        }
    pod_phase = "Running"
    if rev.failed:
        init[0]["state"] = {
            "waiting": {"reason": "CrashLoopBackOff", "message": rev.message or ""}
        }
        init[0]["ready"] = False
        kserve["state"] = {"waiting": {"reason": "PodInitializing"}}
        proxy["ready"] = False
        proxy["state"] = {"waiting": {"reason": "PodInitializing"}}
        pod_phase = "Pending"
    elif phase == "Ready":
        kserve["state"] = {"running": {"startedAt": started}}
    elif phase == "Restarting":
        kserve["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": getattr(state, "message", None) or ""}}
    else:  # Starting, Stopped or not yet reported
        kserve["state"] = {"waiting": {"reason": "ContainerCreating"}}
        proxy["ready"] = False
        proxy["state"] = {"waiting": {"reason": "ContainerCreating"}}
        pod_phase = "Pending"
    conditions = [
        {"type": "Initialized", "status": "False" if rev.failed else "True"},
        {"type": "Ready", "status": "True" if ready else "False"},
        {"type": "ContainersReady", "status": "True" if ready else "False"},
        {"type": "PodScheduled", "status": "True"},
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": rev.pod["name"],
            "namespace": ns,
            "labels": {**_labels(ns, name, rev), "pod-template-hash": r.pod_template_hash(rev.template_hash, 9)},
            "annotations": {r.STORAGE_URI_ANNOTATION: rev.storage_uri or ""},
        },
        "spec": {
            "nodeName": r.LOCAL_CONTEXT,
            "initContainers": [{"name": "storage-initializer", "image": "kserve/storage-initializer"}],
            "containers": [
                {"name": "kserve-container", "image": kserve["image"], "args": _container_args(name)},
                {"name": "queue-proxy", "image": proxy["image"]},
            ],
        },
        "status": {
            "phase": pod_phase,
            "conditions": conditions,
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "startTime": rev.pod["created"],
            "initContainerStatuses": init,
            "containerStatuses": [kserve, proxy],
        },
    }
