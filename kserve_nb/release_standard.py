"""Standard (RawDeployment) mode's release steps and prediction sides: ``spec.canary[]``.

Each builder validates against the live object and returns a :class:`~kserve_nb.release.Step`
for :class:`~kserve_nb.release.Engine` to run: the patch comes from
:mod:`kserve_nb.semantics_standard`'s builders, and the step settles on ``canaryStatuses[name].ready``
and the HTTPRoute's weights — not on ``Ready``, which ignores canaries there, nor on
``observedGeneration``, which is the stable Deployment's. :func:`side_target` says how a
prediction reaches one side (``stable`` or a canary).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from kserve_nb import errors, standard
from kserve_nb import semantics_standard as std
from kserve_nb.release import Settled, Step
from kserve_nb.status import ServiceStatus

if TYPE_CHECKING:  # pragma: no cover
    from kserve_nb.cluster import Cluster
    from kserve_nb.predict.client import Target

#: Seconds between reads of a not-ready canary's Deployment while a Standard-mode step waits.
FAILURE_CHECK_SECONDS = 0.5
#: Standard mode's own target names besides each canary's name (``latest``/``prev`` are aliases of
#: the newest canary and the stable, so a runbook reads the same in both modes).
STANDARD_TARGETS = ("default", "stable", "latest", "prev")


def canary_step(
    cluster: Cluster,
    service: str,
    namespace: str,
    isvc: Mapping[str, Any],
    uri: str,
    pct: int,
    name: str | None,
    model_format: str | None,
    tag_routing: bool | None,
) -> Step:
    """Add (or, for an existing ``name``, replace) canary ``name`` serving ``uri`` at ``pct`` %."""
    if tag_routing:
        raise errors.ValidationError(
            "tag routing (latest-/prev- URLs) exists only in Knative mode; in Standard mode each side answers "
            f"on its own host: svc.send(rows, to=('stable', 'v2')) or %kserve predict {service} --to v2"
        )
    cname = canary_name(isvc, name)

    def patch(live: Mapping[str, Any]) -> dict[str, Any]:
        return std.add_canary_patch(live, cname, uri, pct, model_format=model_format)

    routed = settled(cname)
    deployment = std.predictor_service_name(service, cname)

    def rolled_out(st: ServiceStatus, new: str | None) -> bool:
        # A canary given a new model under its old name stays ready (and routed) on its old pods:
        # it is done only once its Deployment has rolled out the new model.
        return routed(st, new) and standard.deployment_serves(cluster, deployment, namespace, uri) is not False

    return Step("canary", patch, rolled_out, ("spec",),
                {"storageUri": uri, "percent": pct, "canary": cname}, canary=cname, standard=True)


def canary_name(isvc: Mapping[str, Any], name: str | None) -> str:
    """``name``, or the next free ``vN``; refused when it is a prediction target's name."""
    cname = name or standard.next_canary_name(isvc)
    if cname in STANDARD_TARGETS:
        raise errors.ValidationError(
            f"canary name {cname!r} is a prediction target's name ({', '.join(STANDARD_TARGETS)}); "
            "choose another, e.g. v2"
        )
    return cname


def traffic_step(st: ServiceStatus, service: str, pct: int, canary: str | None) -> Step:
    """Move canary ``canary`` (default: the newest) to ``pct`` %."""
    cname = pick_canary(st, service, canary, "move")

    def patch(live: Mapping[str, Any]) -> dict[str, Any]:
        body = std.set_percent_patch(live, pct, cname)
        if pct == 0:
            for entry in body["spec"]["canary"]:
                if std.canary_name(entry) == cname and entry["predictor"].get("minReplicas") is None:
                    entry["predictor"]["minReplicas"] = 1  # stay ready at 0 %, as a Knative revision does
        return body

    return Step("traffic", patch, settled(cname), ("spec.canary",),
                {"percent": pct, "canary": cname}, canary=cname, standard=True)


def promote_step(cluster: Cluster, st: ServiceStatus, service: str, namespace: str, canary: str | None) -> Step:
    """Make canary ``canary`` (default: the newest) the stable; refused while it is not ready."""
    cname = pick_canary(st, service, canary, "promote")
    side = st.side(cname)
    if side is not None and not side.ready:
        why = standard.deployment_failure(cluster, side.deployment, namespace)
        raise errors.RolloutError(
            f"refusing to promote: canary {cname} (Deployment {side.deployment}) is not ready"
            f"{' (' + why + ')' if why else ''}; wait until it is, or roll back"
        )

    def patch(live: Mapping[str, Any]) -> dict[str, Any]:
        return std.promote_patch(live, cname)

    return Step("promote", patch, settled(None), ("spec",),
                {"storageUri": side.storage_uri if side else None, "canary": cname}, canary=cname, standard=True)


def rollback_step(st: ServiceStatus, service: str, canary: str | None) -> Step:
    """Remove canary ``canary`` (default: every canary)."""
    if canary is not None or not st.canaries:
        pick_canary(st, service, canary, "roll back")

    def patch(live: Mapping[str, Any]) -> dict[str, Any]:
        return std.rollback_patch(live, canary)

    fields = {"canary": canary} if canary else {"canary": ",".join(c.name for c in st.canaries)}
    return Step("rollback", patch, settled(None), ("spec.canary",), fields, canary=canary, standard=True)


def pick_canary(st: ServiceStatus, service: str, canary: str | None, action: str) -> str:
    """The canary a step acts on: ``canary``, or the newest; a clear error when there is none."""
    if not st.canaries:
        hint = (
            " (a promotion leaves none: deploy the previous model as a new canary to go back)"
            if action == "roll back" else f"; add one with %kserve canary {service} --storage-uri URI --percent P"
        )
        raise errors.ValidationError(f"nothing to {action}: {service} has no canary{hint}")
    if canary is None:
        newest = st.newest_canary
        assert newest is not None  # st.canaries is not empty
        return newest.name
    if st.side(canary) is None or canary == "stable":
        names = ", ".join(c.name for c in st.canaries)
        raise errors.ValidationError(f"{service} has no canary named {canary!r}; its canaries: {names}")
    return canary


def settled(canary: str | None) -> Settled:
    """Settled in Standard mode: the status describes the spec, the stable serves, ``canary``
    (if any) is ready, and the HTTPRoute's weights are the ones KServe's rule gives."""

    def check(st: ServiceStatus, _: str | None) -> bool:
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

    return check


class SideFailure:
    """Why a Standard-mode step cannot settle: the stable gave up, or the canary's Deployment did.

    It keeps, across the waits of one service, when it last read the canary's Deployment, so a
    fast poll does not read it on every status.
    """

    def __init__(self, cluster: Cluster, service: str, namespace: str) -> None:
        self.cluster = cluster
        self.service = service
        self.namespace = namespace
        self._checked = 0.0

    def __call__(self, st: ServiceStatus, canary: str | None) -> str | None:
        predictor = st.condition("PredictorReady")
        stable = st.stable
        if (
            predictor is not None and predictor.status == "False"
            and predictor.reason in ("ProgressDeadlineExceeded", "ReplicaFailure") and stable is not None
        ):
            return (
                f"the stable Deployment {stable.deployment} of {self.service} cannot become ready "
                f"({predictor.message or predictor.reason}); the route keeps its last weights"
            )
        side = st.side(canary) if canary else None
        if side is None or side.ready or not st.spec_observed:
            return None
        now = time.monotonic()
        if now - self._checked < FAILURE_CHECK_SECONDS:
            return None
        self._checked = now
        why = standard.deployment_failure(self.cluster, side.deployment, self.namespace)
        if why is None:
            return None
        return (
            f"canary {canary} (Deployment {side.deployment}, {side.storage_uri}) cannot become ready: {why} — "
            f"it serves nothing; traffic stays on {st._standard_split_text()}; fix the model and run the canary "
            "again, or roll back"
        )


def side_target(
    to: str, st: ServiceStatus, *, cluster: Cluster, service: str, namespace: str, local: bool
) -> tuple[Target, bool]:
    """The Target for ``default``, ``stable``, ``latest``, ``prev`` or a canary's name, and whether
    only the API server's service proxy reaches it (a real cluster with no route of the user's own)."""
    from kserve_nb.predict.client import Target

    if to == "default":
        if not st.url:
            raise errors.PredictionError(
                f"{service} has no URL yet (READY {st.ready_status}); wait until it is ready"
            )
        return Target("default", urlparse(st.url).hostname or st.url, None), False
    if to in ("latest", "prev", "stable"):
        side = st.stable if to in ("prev", "stable") else st.newest_canary
    else:
        side = st.side(to)
    if side is None:
        if to == "latest":
            raise errors.PredictionError(
                f"{service} has no canary, so there is no 'latest' side (in Standard mode latest is the "
                "newest canary); add one with canary(), or send to 'stable' or 'default'"
            )
        names = ", ".join([*STANDARD_TARGETS, *(c.name for c in st.canaries)])
        raise errors.ValidationError(f"unknown target {to!r}; {service} has: {names}")
    host = standard.side_host(st, side)
    if local:
        return Target(to, host, side.deployment), False
    from kserve_nb.predict import protocol as proto

    # KServe routes no per-side host: an HTTPRoute rule of the user's own that sends a Host (and
    # maybe exact headers) to the side's Service alone reaches it through the ingress; without
    # one the API server's service proxy does (RBAC services/proxy).
    route = standard.side_route(
        standard.list_routes(cluster, namespace), side.deployment, namespace,
        paths=[proto.model_path(service, p) for p in proto.PROTOCOLS],
        hosts=standard.side_hosts(st, side),
    )
    if route is None:
        return Target(to, host, side.deployment), True
    return Target(to, route.host, side.deployment, headers=dict(route.headers)), False
