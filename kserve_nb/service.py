"""One InferenceService and its release operations: canary, traffic, promote, rollback.

Every mutating operation follows the same path (:meth:`Service._release`): read the live object,
validate, build a JSON merge patch, either return a dry-run :class:`~kserve_nb.plan.Plan` or send the
patch guarded by the object's ``resourceVersion``, record it in the release history, and wait until
the cluster reports the intended state.

The same verbs work in both KServe modes, chosen from the live object. Knative mode patches
``canaryTrafficPercent`` and waits on revisions and the traffic block. Standard (RawDeployment)
mode patches ``spec.canary[]`` (:mod:`kserve_nb.semantics_standard`'s patch builders) and waits on
``canaryStatuses[name].ready`` and the HTTPRoute's weights — not on ``Ready``, which ignores
canaries there, nor on ``observedGeneration``, which is the stable Deployment's.
"""

from __future__ import annotations

import contextlib
import html
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, overload
from urllib.parse import urlparse

import pandas as pd

from kserve_nb import errors, standard
from kserve_nb import resources as r
from kserve_nb import semantics_standard as std
from kserve_nb.history import APPLIED, DONE, FAILED, PENDING, History, HistoryWarning, new_entry
from kserve_nb.manifests import check_percent, isvc_manifest
from kserve_nb.plan import Plan, plan
from kserve_nb.progress import Progress
from kserve_nb.splits import split_text
from kserve_nb.status import ServiceStatus

if TYPE_CHECKING:  # pragma: no cover
    from kserve_nb.analysis.compare import Comparison
    from kserve_nb.predict.client import PredictionClient, PredictionResult, Target
    from kserve_nb.predict.load import LoadRun
    from kserve_nb.rollout.api import RolloutPreview
    from kserve_nb.rollout.runner import RolloutResult
    from kserve_nb.rollout.state import RolloutState
    from kserve_nb.session import Session

CONFLICT_RETRIES = 3
#: Seconds an InvalidSpec model status must persist before a wait gives up on it.
SPEC_FAILURE_GRACE_SECONDS = 2.0
#: Seconds between reads of a not-ready canary's Deployment while a Standard-mode step waits.
FAILURE_CHECK_SECONDS = 0.5
TARGET_NAMES = ("default", "latest", "prev")
#: Standard mode's own target names besides each canary's name (``latest``/``prev`` are aliases of
#: the newest canary and the stable, so a runbook reads the same in both modes).
STANDARD_TARGETS = ("default", "stable", "latest", "prev")


@dataclass(frozen=True)
class Release:
    """The outcome of a release operation: what was sent and the status it settled into."""

    action: str
    service: str
    namespace: str
    patch: dict[str, Any]
    status: ServiceStatus
    new_revision: str | None = None
    seconds: float = 0.0
    waited: bool = True
    #: Where it happened, e.g. ``local cluster · context kserve-nb-local`` (see ``Session.where``).
    where: str = ""
    #: Standard mode: the canary the step acted on (None: every canary, e.g. a rollback, or Knative mode).
    canary: str | None = None

    def summary(self) -> str:
        """One line describing the outcome."""
        rev = f" (new revision {self.new_revision})" if self.new_revision else ""
        if self.canary:
            rev = f" (canary {self.canary}: Deployment {std.predictor_service_name(self.service, self.canary)})"
        state = "applied" if not self.waited else f"done in {self.seconds:.1f}s"
        return f"{self.action} {self.namespace}/{self.service}{rev} {state}: {self.status.summary()}"

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return f"<Release {self.summary()}>"

    def _repr_html_(self) -> str:
        # One headline (what, where, how long), then the settled state as the status shows it below
        # its own headline: the split is told once, by the bar and the tables.
        rev = f" → new revision <code>{html.escape(self.new_revision)}</code>" if self.new_revision else ""
        if self.canary:
            deployment = std.predictor_service_name(self.service, self.canary)
            rev = (
                f" → canary <code>{html.escape(self.canary)}</code> "
                f"(Deployment <code>{html.escape(deployment)}</code>)"
            )
        state = "applied, not waited for" if not self.waited else f"done in {self.seconds:.1f}s"
        where = f' <span style="opacity:0.7">· {html.escape(self.where)}</span>' if self.where else ""
        return (
            f'<div class="kserve-nb-release"><b>{html.escape(self.action)} '
            f"{html.escape(self.namespace)}/{html.escape(self.service)}</b>{rev}: {state}{where}"
            f"{self.status.details_html()}</div>"
        )


@dataclass
class _Step:
    """How one release operation patches and what state it waits for."""

    action: str
    patch: Callable[[Mapping[str, Any]], dict[str, Any]]
    settled: Callable[[ServiceStatus, str | None], bool]
    touches: tuple[str, ...] = ()
    fields: dict[str, Any] = field(default_factory=dict)
    #: Standard mode: the canary this step adds or moves (its failure fails the wait), if any.
    canary: str | None = None
    #: A Standard-mode step (``spec.canary[]``); every other step writes ``canaryTrafficPercent``.
    standard: bool = False


class Service:
    """An InferenceService reached through a :class:`~kserve_nb.session.Session`."""

    def __init__(self, session: Session, name: str, namespace: str) -> None:
        self.session = session
        self.name = name
        self.namespace = namespace
        # When a wait last read a not-ready canary's Deployment for a failure (see _standard_failure).
        self._failure_checked = 0.0
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
            _Step("deploy", patch, settled, ("spec",), {"storageUri": uri}), dry_run, wait, timeout, cancel
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
            return self._standard_canary(
                isvc, uri, pct, name, model_format, tag_routing, dry_run, wait, timeout, cancel
            )
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

        step = _Step("canary", patch, settled, ("spec",), {"storageUri": uri, "percent": pct})
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
            return self._standard_traffic(isvc, pct, canary, dry_run, wait, timeout, cancel)
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
            _Step("traffic", patch, settled, ("spec.predictor.canaryTrafficPercent",), {"percent": pct}),
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
            return self._standard_promote(isvc, canary, dry_run, wait, timeout, cancel)
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
            _Step("promote", patch, settled, ("spec.predictor.canaryTrafficPercent",)), dry_run, wait, timeout, cancel
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
            return self._standard_rollback(isvc, canary, dry_run, wait, timeout, cancel)
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
            _Step("rollback", patch, settled, ("spec.predictor.canaryTrafficPercent",)), dry_run, wait, timeout, cancel
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
            return self._standard_target(to, st)
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

    def _standard_target(self, to: str, st: ServiceStatus) -> Target:
        from kserve_nb.predict.client import Target

        if to == "default":
            if not st.url:
                raise errors.PredictionError(
                    f"{self.name} has no URL yet (READY {st.ready_status}); wait until it is ready"
                )
            return Target("default", urlparse(st.url).hostname or st.url, None)
        if to in ("latest", "prev", "stable"):
            side = st.stable if to in ("prev", "stable") else st.newest_canary
        else:
            side = st.side(to)
        if side is None:
            if to == "latest":
                raise errors.PredictionError(
                    f"{self.name} has no canary, so there is no 'latest' side (in Standard mode latest is the "
                    "newest canary); add one with canary(), or send to 'stable' or 'default'"
                )
            names = ", ".join([*STANDARD_TARGETS, *(c.name for c in st.canaries)])
            raise errors.ValidationError(f"unknown target {to!r}; {self.name} has: {names}")
        host = standard.side_host(st, side)
        if self.session.is_local:
            return Target(to, host, side.deployment)
        from kserve_nb.predict import protocol as proto

        # KServe routes no per-side host: an HTTPRoute rule of the user's own that sends a Host (and
        # maybe exact headers) to the side's Service alone reaches it through the ingress; without
        # one the API server's service proxy does (RBAC services/proxy).
        route = standard.side_route(
            standard.list_routes(self.session.cluster, self.namespace), side.deployment, self.namespace,
            paths=[proto.model_path(self.name, p) for p in proto.PROTOCOLS],
            hosts=standard.side_hosts(st, side),
        )
        if route is None:
            self._proxied.add(host)
            return Target(to, host, side.deployment)
        self._proxied.discard(route.host)
        return Target(to, route.host, side.deployment, headers=dict(route.headers))

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
        from kserve_nb.predict.client import PredictionClient

        if any(t.host not in self._proxied for t in targets):
            self.session.prediction_client(self.name)  # the others need the ingress: one clear error if unknown
        configuration = self.session.cluster.api_client.configuration
        transport = standard.ServiceProxyTransport(configuration)
        client = PredictionClient(
            self.session.ingress or configuration.host, model=self.name, timeout=self.session.config.request_timeout,
            verify=self.session.config.verify_tls, transport=transport,
        )
        try:
            yield client
        finally:
            client.close()

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
        client = self.session.prediction_client(self.name)
        return generate_load(
            client, target, rows, y=y, rate=rate, concurrency=concurrency, duration=duration,
            max_requests=max_requests, protocol=protocol, progress=progress,
            service=self.name, namespace=self.namespace,
        )

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

    # ------------------------------------------------------------------ Standard mode (spec.canary[])

    def _no_canary_name(self, canary: str | None) -> None:
        if canary is not None:
            raise errors.ValidationError(
                f"{self.name} runs in Knative mode, which has one canary (the latest revision) and no canary "
                "names; drop canary="
            )

    def _standard_canary(
        self,
        isvc: Mapping[str, Any],
        uri: str,
        pct: int,
        name: str | None,
        model_format: str | None,
        tag_routing: bool | None,
        dry_run: bool,
        wait: bool,
        timeout: float | None,
        cancel: threading.Event | None,
    ) -> Release | Plan:
        if tag_routing:
            raise errors.ValidationError(
                "tag routing (latest-/prev- URLs) exists only in Knative mode; in Standard mode each side answers "
                f"on its own host: svc.send(rows, to=('stable', 'v2')) or %kserve predict {self.name} --to v2"
            )
        cname = name or standard.next_canary_name(isvc)
        if cname in STANDARD_TARGETS:
            raise errors.ValidationError(
                f"canary name {cname!r} is a prediction target's name ({', '.join(STANDARD_TARGETS)}); "
                "choose another, e.g. v2"
            )
        self._stable_ready(timeout, cancel)

        def patch(live: Mapping[str, Any]) -> dict[str, Any]:
            return std.add_canary_patch(live, cname, uri, pct, model_format=model_format)

        routed = self._settled_standard(cname)
        deployment = std.predictor_service_name(self.name, cname)

        def settled(st: ServiceStatus, new: str | None) -> bool:
            # A canary given a new model under its old name stays ready (and routed) on its old pods:
            # it is done only once its Deployment has rolled out the new model.
            return routed(st, new) and standard.deployment_serves(
                self.session.cluster, deployment, self.namespace, uri
            ) is not False

        step = _Step("canary", patch, settled, ("spec",),
                     {"storageUri": uri, "percent": pct, "canary": cname}, canary=cname, standard=True)
        return self._release(step, dry_run, wait, timeout, cancel)

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

    def _pick_canary(self, st: ServiceStatus, canary: str | None, action: str) -> str:
        if not st.canaries:
            hint = (
                " (a promotion leaves none: deploy the previous model as a new canary to go back)"
                if action == "roll back" else f"; add one with %kserve canary {self.name} --storage-uri URI --percent P"
            )
            raise errors.ValidationError(f"nothing to {action}: {self.name} has no canary{hint}")
        if canary is None:
            newest = st.newest_canary
            assert newest is not None  # st.canaries is not empty
            return newest.name
        if st.side(canary) is None or canary == "stable":
            names = ", ".join(c.name for c in st.canaries)
            raise errors.ValidationError(f"{self.name} has no canary named {canary!r}; its canaries: {names}")
        return canary

    def _standard_traffic(
        self, isvc: Mapping[str, Any], pct: int, canary: str | None, dry_run: bool, wait: bool,
        timeout: float | None, cancel: threading.Event | None,
    ) -> Release | Plan:
        cname = self._pick_canary(self._status_of(isvc), canary, "move")

        def patch(live: Mapping[str, Any]) -> dict[str, Any]:
            body = std.set_percent_patch(live, pct, cname)
            if pct == 0:
                for entry in body["spec"]["canary"]:
                    if std.canary_name(entry) == cname and entry["predictor"].get("minReplicas") is None:
                        entry["predictor"]["minReplicas"] = 1  # stay ready at 0 %, as a Knative revision does
            return body

        step = _Step("traffic", patch, self._settled_standard(cname), ("spec.canary",),
                     {"percent": pct, "canary": cname}, canary=cname, standard=True)
        return self._release(step, dry_run, wait, timeout, cancel)

    def _standard_promote(
        self, isvc: Mapping[str, Any], canary: str | None, dry_run: bool, wait: bool,
        timeout: float | None, cancel: threading.Event | None,
    ) -> Release | Plan:
        st = self._status_of(isvc)
        cname = self._pick_canary(st, canary, "promote")
        side = st.side(cname)
        if side is not None and not side.ready:
            why = standard.deployment_failure(self.session.cluster, side.deployment, self.namespace)
            raise errors.RolloutError(
                f"refusing to promote: canary {cname} (Deployment {side.deployment}) is not ready"
                f"{' (' + why + ')' if why else ''}; wait until it is, or roll back"
            )

        def patch(live: Mapping[str, Any]) -> dict[str, Any]:
            return std.promote_patch(live, cname)

        step = _Step("promote", patch, self._settled_standard(None), ("spec",),
                     {"storageUri": side.storage_uri if side else None, "canary": cname}, canary=cname, standard=True)
        return self._release(step, dry_run, wait, timeout, cancel)

    def _standard_rollback(
        self, isvc: Mapping[str, Any], canary: str | None, dry_run: bool, wait: bool,
        timeout: float | None, cancel: threading.Event | None,
    ) -> Release | Plan:
        st = self._status_of(isvc)
        if canary is not None or not st.canaries:
            self._pick_canary(st, canary, "roll back")

        def patch(live: Mapping[str, Any]) -> dict[str, Any]:
            return std.rollback_patch(live, canary)

        fields = {"canary": canary} if canary else {"canary": ",".join(c.name for c in st.canaries)}
        step = _Step("rollback", patch, self._settled_standard(None), ("spec.canary",), fields,
                     canary=canary, standard=True)
        return self._release(step, dry_run, wait, timeout, cancel)

    @staticmethod
    def _settled_standard(canary: str | None) -> Callable[[ServiceStatus, str | None], bool]:
        """Settled in Standard mode: the status describes the spec, the stable serves, ``canary``
        (if any) is ready, and the HTTPRoute's weights are the ones KServe's rule gives."""

        def settled(st: ServiceStatus, _: str | None) -> bool:
            if not (st.spec_observed and st.route_settled and st.stable is not None and st.stable.ready):
                return False
            if canary is None:
                return True
            side = st.side(canary)
            if side is None:
                return False
            entry = next((e for e in std.canaries(st.raw) if std.canary_name(e) == canary), None)
            if entry is not None and std.canary_replicas(st.raw, entry) == 0:
                return not side.ready  # a canary sized to no pods is never ready, never routed
            return side.ready and side.routed is not None

        return settled

    def _standard_failure(self, st: ServiceStatus, canary: str | None) -> str | None:
        predictor = st.condition("PredictorReady")
        stable = st.stable
        if (
            predictor is not None and predictor.status == "False"
            and predictor.reason in ("ProgressDeadlineExceeded", "ReplicaFailure") and stable is not None
        ):
            return (
                f"the stable Deployment {stable.deployment} of {self.name} cannot become ready "
                f"({predictor.message or predictor.reason}); the route keeps its last weights"
            )
        side = st.side(canary) if canary else None
        if side is None or side.ready or not st.spec_observed:
            return None
        now = time.monotonic()
        if now - self._failure_checked < FAILURE_CHECK_SECONDS:
            return None
        self._failure_checked = now
        why = standard.deployment_failure(self.session.cluster, side.deployment, self.namespace)
        if why is None:
            return None
        return (
            f"canary {canary} (Deployment {side.deployment}, {side.storage_uri}) cannot become ready: {why} — "
            f"it serves nothing; traffic stays on {st._standard_split_text()}; fix the model and run the canary "
            "again, or roll back"
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
        started = time.monotonic()
        intent = self._record(new_entry("create", self.session.context, storageUri=uri, outcome=PENDING))
        try:
            self.session.cluster.create_isvc(manifest, self.namespace)
            final = self._wait(
                "create", lambda st, new: self._latest_is(st, None) and st.latest_percent == 100, None, timeout, cancel
            ) if wait else self.status()
        except errors.KServeNbError as err:
            failed = new_entry("create", self.session.context, storageUri=uri, outcome=FAILED, error=str(err))
            self._settle(intent, failed)
            raise
        self._settle(intent, new_entry(
            "create", self.session.context, storageUri=uri, outcome=DONE if wait else APPLIED, split=_split_text(final)
        ))
        return Release("create", self.name, self.namespace, manifest, final,
                       r.revision_name(self.name, 1), time.monotonic() - started, wait, self.session.where)

    def _release(
        self, step: _Step, dry_run: bool, wait: bool, timeout: float | None, cancel: threading.Event | None = None
    ) -> Release | Plan:
        started = time.monotonic()
        isvc = self.get()
        if not step.standard:
            self._check_mode(ServiceStatus.from_isvc(isvc))
        # The intent is recorded before the patch and settled after it: a step cut short (kernel or
        # control plane gone) still shows in the history as sent, with its outcome ``pending``.
        intent: str | None = None
        recorded = False
        try:
            for attempt in range(CONFLICT_RETRIES):
                body = step.patch(isvc)
                preview = plan(step.action, isvc, body, before=self._status_of(isvc))
                if dry_run:
                    return preview
                if not recorded:
                    before_text = preview.before.summary()
                    intent = self._record(new_entry(step.action, self.session.context, outcome=PENDING,
                                                    **step.fields, before=before_text))
                    recorded = True
                guard = {"resourceVersion": isvc["metadata"]["resourceVersion"]}
                guarded = {**body, "metadata": {**body.get("metadata", {}), **guard}}
                try:
                    self.session.cluster.patch_isvc(self.name, self.namespace, guarded)
                    break
                except errors.Conflict as err:
                    fresh = self.get()
                    if not self._safe_to_retry(isvc, fresh, step) or attempt == CONFLICT_RETRIES - 1:
                        raise errors.Conflict(
                            f"{self.name} was changed by someone else while you were releasing "
                            f"(now: {ServiceStatus.from_isvc(fresh).summary()}); nothing was applied — "
                            "look at the new status and run the step again",
                            status=409,
                        ) from err
                    isvc = fresh
        except errors.KServeNbError as err:
            if recorded:
                self._settle(intent, new_entry(step.action, self.session.context, outcome=FAILED, error=str(err),
                                               **step.fields))
            raise
        before = preview.before
        entry_fields = {**step.fields, "before": before.summary()}
        try:
            final = (
                self._wait(step.action, step.settled, preview.new_revision, timeout, cancel, before, canary=step.canary)
                if wait
                else self.status()
            )
        except errors.KServeNbError as err:
            failed = new_entry(step.action, self.session.context, outcome=FAILED, error=str(err), **entry_fields)
            self._settle(intent, failed)
            raise
        self._settle(
            intent,
            new_entry(
                step.action, self.session.context,
                outcome=DONE if wait else APPLIED,
                split=_split_text(final),
                **entry_fields,
            ),
        )
        return Release(step.action, self.name, self.namespace, body, final, preview.new_revision,
                       time.monotonic() - started, wait, self.session.where, canary=step.canary)

    @staticmethod
    def _safe_to_retry(old: Mapping[str, Any], new: Mapping[str, Any], step: _Step) -> bool:
        # Retrying is safe only if the concurrent change left what this step reads and writes alone;
        # otherwise we would silently overwrite someone else's release decision.
        def pick(obj: Mapping[str, Any], path: str) -> Any:
            cur: Any = obj
            for part in path.split("."):
                cur = cur.get(part) if isinstance(cur, Mapping) else None
            return cur

        watched = step.touches + ("metadata.annotations",)
        return all(pick(old, p) == pick(new, p) for p in watched)

    def _wait(
        self,
        action: str,
        settled: Callable[[ServiceStatus, str | None], bool],
        new_revision: str | None,
        timeout: float | None,
        cancel: threading.Event | None = None,
        before: ServiceStatus | None = None,
        *,
        canary: str | None = None,
    ) -> ServiceStatus:
        cfg = self.session.config
        cancel = cancel or threading.Event()
        deadline = time.monotonic() + (timeout if timeout is not None else cfg.wait_timeout)
        progress = Progress(f"{action} {self.namespace}/{self.name}")
        st = self.status()
        invalid_since: float | None = None
        while True:
            if settled(st, new_revision):
                # The outcome's headline is the returned Release; this line only closes the wait.
                progress.done(f"settled on {_split_text(st)}")
                return st
            failure = self._failure(st, new_revision, before, canary=canary)
            # KServe reports a spec it cannot serve (no such runtime) only in modelStatus, and Ready
            # never turns False: without this the wait would run to its deadline. It must persist
            # for a moment, since the status read right after a patch may still be the old one's.
            invalid_since = (invalid_since or time.monotonic()) if st.spec_failure else None
            persisted = invalid_since is not None and time.monotonic() - invalid_since >= SPEC_FAILURE_GRACE_SECONDS
            if not failure and persisted:
                failure = (
                    f"KServe cannot serve {self.name} as specified ({st.spec_failure}); "
                    "fix the runtime or the model format"
                )
            if failure:
                progress.done(failure, ok=False)
                raise errors.RolloutError(failure)
            if time.monotonic() > deadline:
                msg = (
                    f"{action} of {self.name} did not settle within "
                    f"{timeout if timeout is not None else cfg.wait_timeout:.0f}s; now: {st.summary()}. "
                    f"The cluster keeps trying: check `%kserve status {self.name}` and `%kserve pods`"
                )
                progress.done(msg, ok=False)
                raise errors.RolloutError(msg)
            progress.update(_waiting_text(st, new_revision, canary))
            if cancel.wait(self.session.poll_interval):
                msg = (
                    f"stopped waiting for {action} of {self.name}; the change is applied and the cluster "
                    f"keeps converging (now: {st.summary()})"
                )
                progress.done(msg, ok=None)
                raise errors.RolloutError(msg)
            st = self.status()

    def _failure(
        self,
        st: ServiceStatus,
        new_revision: str | None,
        before: ServiceStatus | None = None,
        *,
        canary: str | None = None,
    ) -> str | None:
        predictor_ready = st.condition("PredictorReady")
        if predictor_ready is not None and predictor_ready.reason == "ReconcileFailed":
            return f"the cluster rejected the change to {self.name}: {predictor_ready.message}"
        if st.standard:
            return self._standard_failure(st, canary)
        # Only the revision this step created can fail it: a rollback or a traffic change must
        # still go through while an older canary revision is failed.
        if st.failure and new_revision is not None and st.latest_created_revision == new_revision:
            # Say where traffic settled, not where we hoped: the canary percent applies to the
            # latest *ready* revision, so a failed canary can still move traffic (e.g. 0% → 10%).
            def split(s: ServiceStatus) -> str:  # per revision: two tags on one revision are one share
                return split_text(s.split(), empty="nothing")

            moved = before is not None and before.split() != st.split()
            where = f"traffic moved from {split(before)} to {split(st)}" if moved and before else ""
            where = where or f"traffic stays on {split(st)}"
            return (
                f"{st.latest_created_revision} failed: {st.failure} — it serves nothing; {where}; "
                f"fix the model and run the canary again, or roll back"
            )
        return None

    def _record(self, entry: Mapping[str, Any]) -> str | None:
        """Append ``entry`` to the history; its key, or None (with a warning) if it could not be."""
        try:
            return History(self.session.cluster, self.name, self.namespace).append(entry)
        except errors.KServeNbError as err:
            self._history_failed(entry, err)
            return None

    def _settle(self, intent: str | None, outcome: Mapping[str, Any]) -> None:
        """Complete the intent entry ``intent`` with how the step ended (it keeps its start time)."""
        if intent is None:  # the intent could not be written (and said so): record the outcome alone
            self._record(outcome)
            return
        try:
            History(self.session.cluster, self.name, self.namespace).update(
                intent, {k: v for k, v in outcome.items() if k != "time"})
        except errors.KServeNbError as err:
            self._history_failed(outcome, err)

    def _history_failed(self, entry: Mapping[str, Any], err: errors.KServeNbError) -> None:
        # History is evidence, not the release itself: the release goes on, but the user is told
        # (a warning shows in the notebook; the log keeps it too).
        import logging
        import warnings

        message = f"{entry.get('action', 'the step')} of {self.name} is missing from its release history: {err}"
        logging.getLogger(__name__).warning("%s", message)
        warnings.warn(message, HistoryWarning, stacklevel=4)


def _split_text(st: ServiceStatus) -> str:
    return split_text(((e.revision, e.percent) for e in st.traffic), empty="no traffic yet")


def _waiting_text(st: ServiceStatus, new_revision: str | None, canary: str | None = None) -> str:
    if st.standard:
        side = st.side(canary) if canary else None
        wait = f"waiting for canary {canary} to be ready; " if side is not None and not side.ready else ""
        return f"{wait}READY {st.ready_status}; traffic {st._standard_split_text()}"
    rev = f"waiting for {new_revision} " if new_revision and st.latest_ready_revision != new_revision else ""
    return f"{rev}READY {st.ready_status}; traffic {_split_text(st)}"
