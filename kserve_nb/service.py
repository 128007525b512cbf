"""The public façade of one InferenceService: status, release steps, predictions, rollouts.

Each public method validates its input, picks the mode from the live object and delegates: a
release step is a :class:`~kserve_nb.release.Step` run by :class:`~kserve_nb.release.Engine` (plan
or send guarded by ``resourceVersion``, record, wait, explain a failure). Knative mode's steps are
built here (they patch ``canaryTrafficPercent`` and wait on revisions and the traffic block);
Standard (RawDeployment) mode's (``spec.canary[]``) and its prediction sides come from
:mod:`kserve_nb.release_standard`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload
from urllib.parse import urlparse

import pandas as pd

from kserve_nb import errors, standard
from kserve_nb import release_standard as rs
from kserve_nb import resources as r
from kserve_nb.history import APPLIED, DONE, FAILED, PENDING, History, new_entry
from kserve_nb.manifests import check_percent, isvc_manifest
from kserve_nb.plan import Plan, plan
from kserve_nb.release import Engine, Release, Step, split_of
from kserve_nb.status import ServiceStatus

if TYPE_CHECKING:  # pragma: no cover
    from kserve_nb.analysis.compare import Comparison
    from kserve_nb.predict.client import PredictionClient, PredictionResult, Target
    from kserve_nb.predict.load import LoadRun
    from kserve_nb.rollout.api import RolloutPreview
    from kserve_nb.rollout.runner import RolloutResult
    from kserve_nb.rollout.state import RolloutState
    from kserve_nb.session import Session

__all__ = ["TARGET_NAMES", "Release", "Service"]  # Release lives in kserve_nb.release; imported from here too

TARGET_NAMES = ("default", "latest", "prev")


class Service:
    """An InferenceService reached through a :class:`~kserve_nb.session.Session`."""

    def __init__(self, session: Session, name: str, namespace: str) -> None:
        self.session = session
        self.name = name
        self.namespace = namespace
        # Explains a failed Standard-mode wait; it remembers when it last read a canary's Deployment.
        self._side_failure = rs.SideFailure(session.cluster, name, namespace)
        # Side hosts (Standard mode, a real cluster) that no route reaches: sent via the API server.
        self._proxied: set[str] = set()

    def __repr__(self) -> str:
        return f"<Service {self.namespace}/{self.name} on {self.session.banner}>"

    # ------------------------------------------------------------------ reading

    def get(self) -> dict[str, Any]:
        """The live InferenceService object."""
        return self.session.cluster.get_isvc(self.name, self.namespace)

    def exists(self) -> bool:
        """Whether the InferenceService exists."""
        try:
            self.get()
            return True
        except errors.NotFound:
            return False

    def status(self) -> ServiceStatus:
        """The current release state (READY, split, revisions or sides, conditions)."""
        return self._status_of(self.get())

    def _status_of(self, isvc: Mapping[str, Any]) -> ServiceStatus:
        """Parse ``isvc``; in Standard mode with the predictor HTTPRoute's live backends."""
        if standard.is_standard(isvc):
            route = standard.read_route(self.session.cluster, self.name, self.namespace)
            return ServiceStatus.from_isvc(isvc, route=route)
        return ServiceStatus.from_isvc(isvc)

    def revisions(self) -> pd.DataFrame:
        """Every revision of the predictor with its model, readiness, traffic and role.

        Standard mode has no revisions: one row per side instead (:attr:`ServiceStatus.sides_table`:
        side, Deployment, model, ready, configured percent, routed share).
        """
        st = self.status()
        if st.standard:
            return st.sides_table
        objs = self.session.cluster.list_revisions(self.name, self.namespace)
        split = st.split()
        tags: dict[str, list[str]] = {}
        for e in st.traffic:
            if e.tag:
                tags.setdefault(e.revision, []).append(e.tag)
        rows = []
        names = [o["metadata"]["name"] for o in objs] or sorted(
            {n for n in (st.latest_created_revision, st.latest_ready_revision, st.latest_rolledout_revision,
                         st.previous_rolledout_revision, *split) if n},
            key=r.revision_number,
        )
        by_name = {o["metadata"]["name"]: o for o in objs}
        for rev in names:
            obj = by_name.get(rev, {})
            meta = obj.get("metadata") or {}
            conditions = (obj.get("status") or {}).get("conditions") or []
            ready = next((c.get("status") for c in conditions if c.get("type") == "Ready"), None)
            roles = [
                role
                for role, holder in (
                    ("latestCreated", st.latest_created_revision),
                    ("latestReady", st.latest_ready_revision),
                    ("latestRolledout", st.latest_rolledout_revision),
                    ("previousRolledout", st.previous_rolledout_revision),
                )
                if holder == rev
            ]
            rows.append(
                {
                    "revision": rev,
                    "number": r.revision_number(rev),
                    "storageUri": (meta.get("annotations") or {}).get(r.STORAGE_URI_ANNOTATION, ""),
                    "ready": ready or "",
                    "percent": split.get(rev, 0),
                    "tags": ",".join(tags.get(rev, [])),
                    "roles": ",".join(roles),
                    "created": meta.get("creationTimestamp", ""),
                    "age": r.age(meta.get("creationTimestamp")),
                }
            )
        return pd.DataFrame(
            rows, columns=["revision", "number", "storageUri", "ready", "percent", "tags", "roles", "created", "age"]
        )

    def history(self) -> pd.DataFrame:
        """Release operations recorded for this service (cluster-side), oldest first."""
        return History(self.session.cluster, self.name, self.namespace).frame()

    def pods(self) -> pd.DataFrame:
        """Pods of this service's revisions (``kubectl get pod`` columns plus REVISION)."""
        return self.session.pods(self.namespace, service=self.name)

    # ------------------------------------------------------------------ release operations

    def deploy(
        self,
        storage_uri: str,
        *,
        model_format: str | None = None,
        tag_routing: bool | None = None,
        dry_run: bool = False,
        wait: bool = True,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Release | Plan:
        """Create the service, or roll a new model out to 100% without a canary.

        ``model_format`` defaults to the service's current format (``sklearn`` for a new service).
        """
        uri = self._check_uri(storage_uri)
        if not self.exists():
            return self._create(uri, model_format or "sklearn", tag_routing, dry_run, wait, timeout, cancel)
        if standard.is_standard(self.get()):
            raise errors.ValidationError(
                f"{self.name} runs in Standard mode: roll a model out as a canary and promote it "
                f"(%kserve canary {self.name} --storage-uri URI --percent P, then %kserve promote {self.name}); "
                "promotion keeps the canary's pods, a direct rollout would restart the stable's"
            )

        def patch(isvc: Mapping[str, Any]) -> dict[str, Any]:
            return self._model_patch(isvc, uri, None, model_format, tag_routing, remove_canary=True)

        def settled(st: ServiceStatus, new: str | None) -> bool:
            return self._latest_is(st, new) and st.latest_percent == 100 and len(st.traffic) == 1

        return self._release(
            Step("deploy", patch, settled, ("spec",), {"storageUri": uri}), dry_run, wait, timeout, cancel
        )

    def canary(
        self,
        storage_uri: str,
        percent: int,
        *,
        tag_routing: bool | None = None,
        model_format: str | None = None,
        name: str | None = None,
        dry_run: bool = False,
        wait: bool = True,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Release | Plan:
        """Deploy ``storage_uri`` as a new revision and send it ``percent`` % of the traffic.

        In Standard mode it adds (or, for an existing ``name``, replaces) a ``spec.canary[]`` entry:
        its own Deployment, which gets ``percent`` % once its pods are available.

        Parameters
        ----------
        storage_uri:
            The new model (``gs://…``, ``s3://…``, ``https://…``, ``file://…`` or a path).
        percent:
            ``canaryTrafficPercent``, 0–100.
        tag_routing:
            True adds ``serving.kserve.io/enable-tag-routing: "true"`` (``latest-``/``prev-`` URLs),
            False removes it, None leaves it as it is.
        dry_run:
            Return the :class:`~kserve_nb.plan.Plan` (exact patch, resulting traffic) and apply nothing.
        wait:
            Wait until the new revision is ready and the split is in place (``timeout`` seconds).
        cancel:
            Setting this event stops the wait early (the change stays applied), e.g. from a panel.
        name:
            Standard mode: the canary's ``predictor.name`` (default: the next free ``vN``, e.g. ``v2``).
            Knative mode has no names (the new revision is numbered); giving one there is refused.
        """
        pct = check_percent(percent)
        uri = self._check_uri(storage_uri)
        isvc = self.get()
        if standard.is_standard(isvc):
            side_step = rs.canary_step(
                self.session.cluster, self.name, self.namespace, isvc, uri, pct, name, model_format, tag_routing
            )
            self._stable_ready(timeout, cancel)
            return self._release(side_step, dry_run, wait, timeout, cancel)
        if name is not None:
            raise errors.ValidationError(
                f"{self.name} runs in Knative mode, where a canary is the next revision and has no name; drop name="
            )

        def patch(isvc: Mapping[str, Any]) -> dict[str, Any]:
            return self._model_patch(isvc, uri, pct, model_format, tag_routing)

        def settled(st: ServiceStatus, new: str | None) -> bool:
            return self._latest_is(st, new) and st.latest_percent == pct and (
                pct == 100 or st.prev_percent == 100 - pct
            )

        step = Step("canary", patch, settled, ("spec",), {"storageUri": uri, "percent": pct})
        self._first_revision_ready(timeout, cancel)
        return self._release(step, dry_run, wait, timeout, cancel)

    def _first_revision_ready(self, timeout: float | None, cancel: threading.Event | None) -> None:
        """A canary splits with the rolled-out revision: a service created a moment ago (``%%kserve
        apply`` does not wait) has none yet, so wait for its first revision instead of planning or
        applying a split with nothing (dry runs too: their traffic table would be fiction)."""
        st = self.status()
        if st.latest_rolledout_revision:
            return
        if st.failure:
            raise errors.ValidationError(
                f"{self.name} has no working revision to split traffic with ({st.failure}); "
                "deploy a model that loads first (%kserve deploy)"
            )
        self._wait("first revision of", lambda s, _: bool(s.latest_rolledout_revision), None, timeout, cancel)

    def set_traffic(
        self,
        percent: int,
        *,
        canary: str | None = None,
        dry_run: bool = False,
        wait: bool = True,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Release | Plan:
        """Set ``canaryTrafficPercent`` of the revision in flight (no new revision).

        Standard mode: set ``trafficPercent`` of canary ``canary`` (default: the newest one). Moving
        a canary to 0 % keeps one pod (``minReplicas: 1``) so it stays ready, as a Knative revision
        at 0 % does; KServe would otherwise size it to ceil(min × 0 / 100) = 0 pods.
        """
        pct = check_percent(percent)
        isvc = self.get()
        if standard.is_standard(isvc):
            step = rs.traffic_step(self._status_of(isvc), self.name, pct, canary)
            return self._release(step, dry_run, wait, timeout, cancel)
        self._no_canary_name(canary)

        def patch(isvc: Mapping[str, Any]) -> dict[str, Any]:
            st = ServiceStatus.from_isvc(isvc)
            if not st.latest_rolledout_revision:
                raise errors.ValidationError(
                    f"{self.name} has no rolled-out revision yet, so there is nothing to split; "
                    "wait until its first revision is ready"
                )
            return {"spec": {"predictor": {"canaryTrafficPercent": pct}}}

        def settled(st: ServiceStatus, new: str | None) -> bool:
            return st.latest_percent == pct and (pct == 100 or st.prev_percent == 100 - pct)

        return self._release(
            Step("traffic", patch, settled, ("spec.predictor.canaryTrafficPercent",), {"percent": pct}),
            dry_run, wait, timeout, cancel,
        )

    def promote(
        self,
        *,
        canary: str | None = None,
        dry_run: bool = False,
        wait: bool = True,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Release | Plan:
        """Send 100% to the latest ready revision (removes ``canaryTrafficPercent``).

        Standard mode: canary ``canary`` (default: the newest) becomes the stable predictor — the
        stable takes its name and model, so its Deployment keeps serving with no pod restart, and
        KServe deletes the old stable's. Refused while that canary is not ready.
        """
        isvc = self.get()
        if standard.is_standard(isvc):
            step = rs.promote_step(self.session.cluster, self._status_of(isvc), self.name, self.namespace, canary)
            return self._release(step, dry_run, wait, timeout, cancel)
        self._no_canary_name(canary)

        def patch(isvc: Mapping[str, Any]) -> dict[str, Any]:
            st = ServiceStatus.from_isvc(isvc)
            if st.canary_traffic_percent is None and st.latest_percent == 100 and len(st.traffic) == 1:
                raise errors.ValidationError(
                    f"nothing to promote: {st.latest_revision} already serves 100% of {self.name}"
                )
            if st.failure and st.latest_created_revision != st.latest_ready_revision:
                raise errors.RolloutError(
                    f"refusing to promote: the latest revision {st.latest_created_revision} failed "
                    f"({st.failure}); deploy a fixed model, or roll back"
                )
            return {"spec": {"predictor": {"canaryTrafficPercent": None}}}

        def settled(st: ServiceStatus, new: str | None) -> bool:
            return (
                st.latest_percent == 100
                and len(st.traffic) == 1
                and st.latest_rolledout_revision == st.latest_ready_revision
            )

        return self._release(
            Step("promote", patch, settled, ("spec.predictor.canaryTrafficPercent",)), dry_run, wait, timeout, cancel
        )

    def rollback(
        self,
        *,
        canary: str | None = None,
        dry_run: bool = False,
        wait: bool = True,
        timeout: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Release | Plan:
        """Send 100% back to the previously rolled-out revision (``canaryTrafficPercent: 0``).

        Standard mode: remove canary ``canary`` (default: every canary); KServe deletes its
        Deployment and the stable serves 100% again. After a promotion there is nothing to roll back
        to: deploy the previous model as a new canary instead.
        """
        isvc = self.get()
        if standard.is_standard(isvc):
            return self._release(rs.rollback_step(self._status_of(isvc), self.name, canary), dry_run, wait, timeout,
                                 cancel)
        self._no_canary_name(canary)

        def patch(isvc: Mapping[str, Any]) -> dict[str, Any]:
            st = ServiceStatus.from_isvc(isvc)
            # Something to pin away from: a promoted-over revision, or a canary revision (ready,
            # starting or failed) beside the rolled-out one.
            has_target = st.previous_rolledout_revision or (
                st.latest_rolledout_revision
                and st.latest_created_revision != st.latest_rolledout_revision
            )
            if not has_target:
                raise errors.ValidationError(
                    f"nothing to roll back to: {self.name} has only ever rolled out "
                    f"{st.latest_rolledout_revision or 'no revision'}"
                )
            return {"spec": {"predictor": {"canaryTrafficPercent": 0}}}

        def settled(st: ServiceStatus, new: str | None) -> bool:
            return st.latest_percent == 0 and st.prev_percent == 100

        return self._release(
            Step("rollback", patch, settled, ("spec.predictor.canaryTrafficPercent",)), dry_run, wait, timeout, cancel
        )

    def delete(self) -> None:
        """Delete the InferenceService (its revisions and pods go with it)."""
        self.session.cluster.delete_isvc(self.name, self.namespace)
        self._record(new_entry("delete", self.session.context, outcome=DONE))

    # ------------------------------------------------------------------ predictions

    def target(self, to: str, status: ServiceStatus | None = None) -> Target:
        """The :class:`~kserve_nb.predict.client.Target` for ``default``, ``latest`` or ``prev``.

        Standard mode: ``default`` (the weighted route), ``stable``, or a canary's name; ``latest``
        means the newest canary and ``prev`` the stable, so code written for Knative mode runs as
        it is. Locally each side answers on its Service's in-cluster host through the ingress; on a
        real cluster through an HTTPRoute of the user's own (a Host and maybe headers,
        :func:`kserve_nb.standard.side_route`), else the API server's service proxy (see
        ``docs/standard-mode-canary.md`` §9). The Target's revision names the side's Deployment.
        """
        from kserve_nb.predict.client import Target

        st = status or self.status()
        if st.standard:
            target, proxied = rs.side_target(
                to, st, cluster=self.session.cluster, service=self.name, namespace=self.namespace,
                local=self.session.is_local,
            )
            if proxied:
                self._proxied.add(target.host)
            else:
                self._proxied.discard(target.host)
            return target
        if to not in TARGET_NAMES:
            raise errors.ValidationError(f"unknown target {to!r}; use one of {', '.join(TARGET_NAMES)}")
        if to == "default":
            if not st.url:
                raise errors.PredictionError(
                    f"{self.name} has no URL yet (READY {st.ready_status}); wait until it is ready"
                )
            return Target("default", urlparse(st.url).hostname or st.url, None)
        url = st.tag_url(to)
        if url is None:
            if to == "latest":
                hint = "enable tag routing: canary(..., tag_routing=True) or %kserve canary … --tag-routing"
            else:
                hint = "a prev- URL exists only while traffic is split (during a canary or after a rollback)"
            raise errors.PredictionError(f"{self.name} has no {to!r} URL right now; {hint}")
        return Target(to, urlparse(url).hostname or url, st.tag_revision(to))

    def predict(self, payload: Any, *, to: str = "default", protocol: str = "v1") -> PredictionResult:
        """Send one prediction request to ``to`` and return the parsed result."""
        target = self.target(to)
        with self._client_for([target]) as client:
            return client.predict(target, payload, protocol=protocol)

    def send(
        self,
        inputs: Any,
        *,
        to: Sequence[str] | str = ("latest", "prev"),
        repeat: int = 1,
        concurrency: int = 32,
        protocol: str = "v1",
        warmup: int = 3,
    ) -> pd.DataFrame:
        """Send every input to every target; one row per request (see ``PredictionClient.send``).

        ``warmup`` unrecorded requests go to each target first, and requests alternate between
        the targets row by row, so a latency comparison measures the revisions, not their first
        requests or the sending order; ``warmup=0`` sends none.
        """
        names = [to] if isinstance(to, str) else list(to)
        if isinstance(to, str) and "," in to:
            names = [t.strip() for t in to.split(",") if t.strip()]
        st = self.status()
        targets = [self.target(n, st) for n in names]
        with self._client_for(targets) as client:
            return client.send(
                targets, inputs, repeat=repeat, concurrency=concurrency, protocol=protocol, warmup=warmup
            )

    @contextlib.contextmanager
    def _client_for(self, targets: Sequence[Any]) -> Iterator[PredictionClient]:
        """The session's prediction client, or — when a target is a side that only the API server's
        service proxy reaches (a real cluster with no route of the user's own to it) — a client
        whose transport proxies those hosts (``standard.ServiceProxyTransport``), closed after use."""
        if not any(t.host in self._proxied for t in targets):
            yield self.session.prediction_client(self.name)
            return
        if any(t.host not in self._proxied for t in targets):
            self.session.prediction_client(self.name)  # the others need the ingress: one clear error if unknown
        client = self._proxy_client()
        try:
            yield client
        finally:
            client.close()

    def _proxy_client(self) -> PredictionClient:
        """A new client whose transport sends the proxied side hosts through the API server."""
        from kserve_nb.predict.client import PredictionClient

        configuration = self.session.cluster.api_client.configuration
        transport = standard.ServiceProxyTransport(configuration)
        return PredictionClient(
            self.session.ingress or configuration.host, model=self.name, timeout=self.session.config.request_timeout,
            verify=self.session.config.verify_tls, transport=transport,
        )

    def compare(
        self, inputs: Any, *, repeat: int = 1, protocol: str = "v1", warmup: int = 3, canary: str | None = None,
        **kwargs: Any,
    ) -> Comparison:
        """Send ``inputs`` to latest and prev (warmed up, interleaved) and compare them (a :class:`Comparison`).

        Standard mode: the sides are ``stable`` (baseline) and canary ``canary`` (default: the
        newest), named so in the results and figures.
        """
        from kserve_nb.analysis import compare

        st = self.status()
        if st.standard:
            if canary is None and st.newest_canary is None:
                raise errors.ValidationError(
                    f"{self.name} has no canary to compare with the stable; add one with canary() first"
                )
            cname = canary or (st.newest_canary.name if st.newest_canary else "")
            results = self.send(inputs, to=(cname, "stable"), repeat=repeat, protocol=protocol, warmup=warmup)
            kwargs.setdefault("baseline", "stable")
            kwargs.setdefault("candidate", cname)
            return compare(results, **kwargs)
        self._no_canary_name(canary)
        results = self.send(inputs, to=("latest", "prev"), repeat=repeat, protocol=protocol, warmup=warmup)
        return compare(results, **kwargs)

    def generate_load(
        self,
        rows: Any,
        *,
        y: Any = None,
        rate: float = 50,
        concurrency: int = 8,
        duration: float = 30,
        to: str = "default",
        max_requests: int | None = None,
        protocol: str = "v1",
        progress: bool | None = None,
    ) -> LoadRun:
        """Send ``rows`` to the service in the background at ``rate`` requests per second for
        ``duration`` seconds; returns the live :class:`~kserve_nb.predict.load.LoadRun` at once.

        The traffic goes to the default host (``to="default"``), so the traffic split decides which
        revision answers each request; ``latest``/``prev`` aim at one side. With ``y`` (one true
        label per row) the results say which predictions were correct. Stop it early with
        ``run.stop()``; read it with ``run.results``, ``run.summary()``, or
        ``kserve_nb.metrics.client.ClientSource(run)``. See :func:`kserve_nb.predict.load.generate_load`.
        """
        from kserve_nb.predict.load import generate_load

        target = self.target(to)
        # The same per-target choice as send(): a side only the service proxy reaches (a real
        # cluster, Standard mode, no route of the user's own) is sent through a client of its own,
        # which must outlive this call: it is closed once the run has ended.
        proxied = target.host in self._proxied
        client = self._proxy_client() if proxied else self.session.prediction_client(self.name)
        try:
            run = generate_load(
                client, target, rows, y=y, rate=rate, concurrency=concurrency, duration=duration,
                max_requests=max_requests, protocol=protocol, progress=progress,
                service=self.name, namespace=self.namespace,
            )
        except BaseException:
            if proxied:
                client.close()
            raise
        if proxied:
            threading.Thread(
                target=_close_when_done, args=(run, client), name=f"kserve-nb-load-{self.name}", daemon=True
            ).start()
        return run

    # ------------------------------------------------------------------ progressive rollout

    @overload
    def rollout(self, storage_uri: str, *, dry_run: Literal[True], **options: Any) -> RolloutPreview: ...
    @overload
    def rollout(self, storage_uri: str, *, dry_run: Literal[False] = ..., **options: Any) -> RolloutResult: ...
    @overload
    def rollout(self, storage_uri: str, *, dry_run: bool, **options: Any) -> RolloutResult | RolloutPreview: ...

    def rollout(self, storage_uri: str, *, dry_run: bool = False, **options: Any) -> RolloutResult | RolloutPreview:
        """Roll ``storage_uri`` out step by step, judging gates each interval, rolling back by itself.

        Options (all optional): ``steps`` (``"5,10,25,50,100"``; ``pause`` entries wait for
        :meth:`approve_rollout`), ``interval`` (``"30s"``), ``gates`` (``["error_rate<=prev+0.01",
        "p95<=1.2*prev"]``), ``alpha`` (false-rollback budget of the whole rollout), ``min_requests``
        (candidate requests a step needs), ``max_wait``, ``on_inconclusive`` (``"rollback"`` or
        ``"pause"``), ``require_pass``, ``metrics`` (``"prometheus"``, ``"client"`` or a
        MetricSource; default Prometheus), ``load`` (rows to send as test traffic while it runs, with
        ``y`` labels, ``rate`` req/s and ``concurrency``), ``dry_run`` (the plan, the first patch and
        the resolved queries; nothing applied), ``cancel`` (an Event that stops supervising).

        In Standard mode the candidate is a new ``spec.canary[]`` entry (the next free ``vN``): the
        steps set its ``trafficPercent``, the gates compare its side with the ``stable`` side (each
        side all the pods of its Deployment), a failed gate removes it, 100 promotes it.

        The plan and its progress live in the cluster (ConfigMap ``NAME-kserve-nb-rollout``): running
        the same rollout again resumes it; if this process dies the service holds at its step.
        Returns a :class:`~kserve_nb.rollout.RolloutResult` (or a preview for ``dry_run``).
        """
        from kserve_nb.rollout.api import rollout

        return rollout(self, storage_uri, dry_run=dry_run, **options)

    def rollout_state(self) -> RolloutState | None:
        """The saved state of this service's latest rollout (a ``RolloutState``), or None."""
        from kserve_nb.rollout.state import StateStore

        return StateStore(self.session.cluster, self.name, self.namespace).load()

    def approve_rollout(self) -> RolloutState:
        """Approve the ``pause`` step the rollout waits at."""
        from kserve_nb.rollout.runner import approve

        return approve(self)

    def abort_rollout(self) -> RolloutState:
        """Stop the rollout in progress and send all traffic back to the baseline."""
        from kserve_nb.rollout.runner import abort

        return abort(self)

    # ------------------------------------------------------------------ mode guards

    def _no_canary_name(self, canary: str | None) -> None:
        if canary is not None:
            raise errors.ValidationError(
                f"{self.name} runs in Knative mode, which has one canary (the latest revision) and no canary "
                "names; drop canary="
            )


    def _stable_ready(self, timeout: float | None, cancel: threading.Event | None) -> None:
        """A canary splits with the stable: wait for a stable created a moment ago to serve (as
        :meth:`_first_revision_ready` does for Knative), or refuse when it cannot."""
        st = self.status()
        if st.stable is not None and st.stable.ready and st.url:
            return
        predictor = st.condition("PredictorReady")
        if predictor is not None and predictor.status == "False" and predictor.reason == "ProgressDeadlineExceeded":
            raise errors.ValidationError(
                f"{self.name}'s stable Deployment cannot become ready ({predictor.message}); fix its model first"
            )
        self._wait(
            "stable predictor of", lambda s, _: bool(s.stable and s.stable.ready and s.url), None, timeout, cancel
        )


    # ------------------------------------------------------------------ internals

    def _check_uri(self, storage_uri: str) -> str:
        # The cluster's pre-flight includes the syntax check (and, locally, the mirror lookup).
        return self.session.check_storage_uri(storage_uri)

    @staticmethod
    def _latest_is(st: ServiceStatus, new: str | None) -> bool:
        if not st.ready:
            return False
        if new is None:
            return st.latest_revision == st.latest_ready_revision
        return st.latest_ready_revision == new and st.latest_revision == new

    def _model_patch(
        self,
        isvc: Mapping[str, Any],
        uri: str,
        pct: int | None,
        model_format: str | None,
        tag_routing: bool | None,
        remove_canary: bool = False,
    ) -> dict[str, Any]:
        st = ServiceStatus.from_isvc(isvc)
        self._check_mode(st)
        tag_on = st.tag_routing if tag_routing is None else tag_routing
        if tag_on and r.tag_label_too_long(self.name):
            raise errors.ValidationError(
                f"tag routing needs the DNS label latest-{r.predictor_name(self.name)} to fit in "
                f"{r.DNS_LABEL_MAX} characters; it has {len('latest-' + r.predictor_name(self.name))}: "
                "use a shorter service name or call the default URL"
            )
        predictor = (isvc.get("spec") or {}).get("predictor") or {}
        model: dict[str, Any] = {"storageUri": uri}
        fmt = model_format or st.model_format
        if fmt:
            model["modelFormat"] = {"name": fmt}
        legacy = [k for k, v in predictor.items() if k != "model" and isinstance(v, Mapping) and "storageUri" in v]
        spec_predictor: dict[str, Any] = {"model": model}
        for key in legacy:  # a legacy framework block would make two model specs
            spec_predictor[key] = None
        if pct is not None:
            spec_predictor["canaryTrafficPercent"] = pct
        elif remove_canary:
            spec_predictor["canaryTrafficPercent"] = None
        out: dict[str, Any] = {"spec": {"predictor": spec_predictor}}
        if tag_routing is not None:
            out["metadata"] = {"annotations": {r.TAG_ROUTING_ANNOTATION: "true" if tag_routing else None}}
        return out

    def _check_mode(self, st: ServiceStatus) -> None:
        if st.deployment_mode in r.RAW_MODES:
            raise errors.ValidationError(
                f"{self.name} runs in {st.deployment_mode} (RawDeployment) mode, where KServe silently "
                "ignores canaryTrafficPercent; canaries need Knative (Serverless) mode, or spec.canary on KServe ≥ 0.20"
            )

    def _create(
        self,
        uri: str,
        model_format: str,
        tag_routing: bool | None,
        dry_run: bool,
        wait: bool,
        timeout: float | None,
        cancel: threading.Event | None,
    ) -> Release | Plan:
        manifest = isvc_manifest(
            self.name, self.namespace, uri, model_format=model_format, tag_routing=bool(tag_routing)
        )
        if dry_run:
            empty = {"metadata": {"name": self.name, "namespace": self.namespace}, "spec": {}}
            return plan("create", empty, manifest)
        self.session.require_namespace(self.namespace)
        engine = self._engine()
        started = time.monotonic()
        intent = engine.record(new_entry("create", engine.context, storageUri=uri, outcome=PENDING))
        try:
            self.session.cluster.create_isvc(manifest, self.namespace)
            final = engine.wait(
                "create", lambda st, new: self._latest_is(st, None) and st.latest_percent == 100, None, timeout, cancel
            ) if wait else engine.status()
        except errors.KServeNbError as err:
            failed = new_entry("create", engine.context, storageUri=uri, outcome=FAILED, error=str(err))
            engine.settle(intent, failed)
            raise
        engine.settle(intent, new_entry(
            "create", engine.context, storageUri=uri, outcome=DONE if wait else APPLIED, split=split_of(final)
        ))
        return Release("create", self.name, self.namespace, manifest, final,
                       r.revision_name(self.name, 1), time.monotonic() - started, wait, engine.where)

    # ------------------------------------------------------------------ the release engine

    def _engine(self) -> Engine:
        """The engine for one operation, built from the session as it is now (``%config`` may have
        changed the wait timeout or the poll interval since the last one)."""
        return Engine(
            cluster=self.session.cluster, name=self.name, namespace=self.namespace,
            context=self.session.context, where=self.session.where,
            status_of=self._status_of, check_mode=self._check_mode, side_failure=self._side_failure,
            wait_timeout=self.session.config.wait_timeout, poll_interval=self.session.poll_interval,
        )

    def _release(
        self, step: Step, dry_run: bool, wait: bool, timeout: float | None, cancel: threading.Event | None = None
    ) -> Release | Plan:
        return self._engine().run(step, dry_run, wait, timeout, cancel)

    def _wait(
        self,
        action: str,
        settled: Callable[[ServiceStatus, str | None], bool],
        new_revision: str | None,
        timeout: float | None,
        cancel: threading.Event | None = None,
    ) -> ServiceStatus:
        return self._engine().wait(action, settled, new_revision, timeout, cancel)

    def _record(self, entry: Mapping[str, Any]) -> str | None:
        """Append ``entry`` to the history; its key, or None (with a warning) if it could not be."""
        return self._engine().record(entry)


def _close_when_done(run: LoadRun, client: PredictionClient) -> None:
    """Close ``client`` once ``run`` has ended, however it ended."""
    try:
        run.wait()
    except errors.KServeNbError:
        pass  # the run reports its own failure (run.state, run.wait())
    finally:
        client.close()
