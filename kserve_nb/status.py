"""Value objects for what an InferenceService says about its release: parsed once, shown richly.

Both KServe modes parse into one :class:`ServiceStatus`. Knative mode reads revisions and the
traffic block (``kubectl get isvc``'s PREV/LATEST). Standard (RawDeployment) mode has neither: its
sides are the stable predictor and each ``spec.canary[]`` entry, one Deployment each
(:class:`Side`), and the split is what the HTTPRoute sends each Deployment's Service. The
Standard-mode ``traffic`` entries are synthesized from those sides (revision = Deployment name,
tag = side name) so summaries, bars and the release history read the same in both modes.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from kserve_nb import resources as r
from kserve_nb import semantics_standard as std
from kserve_nb.semantics import model_format_of, storage_uri_of
from kserve_nb.splits import split_text
from kserve_nb.style import split_bar_html


@dataclass(frozen=True)
class TrafficEntry:
    """One entry of ``status.components.predictor.traffic``."""

    revision: str
    percent: int
    latest: bool
    tag: str | None = None
    url: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrafficEntry:
        return cls(
            revision=str(d.get("revisionName") or ""),
            percent=int(d.get("percent") or 0),
            latest=bool(d.get("latestRevision")),
            tag=d.get("tag"),
            url=d.get("url"),
        )


@dataclass(frozen=True)
class Side:
    """One side of a Standard-mode release: the stable predictor, or one ``spec.canary[]`` entry.

    Attributes
    ----------
    name:
        ``"stable"``, or the canary's ``predictor.name`` (e.g. ``"v2"``).
    role:
        ``"stable"`` or ``"canary"``.
    deployment:
        Its Deployment (and Service): ``{isvc}[-{name}]-predictor``.
    storage_uri:
        The model its pods load (a canary: the stable spec overlaid with the canary's).
    ready:
        Stable: ``PredictorReady`` is True. Canary: ``status.canaryStatuses[name].ready``.
    percent:
        Configured share: a canary's ``trafficPercent``; the stable's is 100 minus all canaries'.
    routed:
        Percent of requests the route sends it now (None: no backend — e.g. a canary not ready yet,
        whose configured share stays with the stable).
    """

    name: str
    role: str
    deployment: str
    storage_uri: str | None
    ready: bool
    percent: int
    routed: int | None = None


STABLE = "stable"


@dataclass(frozen=True)
class Condition:
    """One status condition."""

    type: str
    status: str
    reason: str | None = None
    message: str | None = None
    last_transition: str | None = None


@dataclass(frozen=True)
class ServiceStatus:
    """The release state of one InferenceService, parsed from the object the API returned.

    ``prev_*``/``latest_*`` follow KServe's printer columns (the ``prev``-tagged entry and the first
    ``latestRevision: true`` entry), so they read exactly like ``kubectl get isvc``.

    ``ready`` is True only when the Ready condition is True (so ``while not st.ready:`` waits);
    ``ready_status`` keeps the condition's own word, ``"True"``, ``"False"`` or ``"Unknown"`` (None
    when the service reports no Ready condition yet), as the READY column shows it.

    In Standard mode (:attr:`standard`) the revision fields are None, :attr:`sides` holds the stable
    and each canary (:attr:`canaries`), and :attr:`route` the backends the predictor HTTPRoute
    actually has, when they could be read (else the split is KServe's rule applied to the
    reported canary readiness). KServe's ``Ready`` ignores canaries there: a failing canary never
    makes the service un-Ready, so look at each side's ``ready``.
    """

    name: str
    namespace: str
    ready: bool
    ready_status: str | None
    url: str | None
    prev_percent: int | None
    latest_percent: int | None
    prev_revision: str | None
    latest_revision: str | None
    traffic: tuple[TrafficEntry, ...]
    conditions: tuple[Condition, ...]
    latest_created_revision: str | None
    latest_ready_revision: str | None
    latest_rolledout_revision: str | None
    previous_rolledout_revision: str | None
    storage_uri: str | None
    model_format: str | None
    canary_traffic_percent: int | None
    tag_routing: bool
    deployment_mode: str
    generation: int
    observed_generation: int | None
    resource_version: str
    created: str | None
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)
    sides: tuple[Side, ...] = ()
    route: tuple[tuple[str, int | None], ...] | None = None

    @classmethod
    def from_isvc(cls, isvc: Mapping[str, Any], route: Sequence[tuple[str, int | None]] | None = None) -> ServiceStatus:
        """Parse an InferenceService dict.

        ``route``: in Standard mode, the live ``(Service, weight)`` backends of the predictor
        HTTPRoute (weight None = unweighted); None when unknown, then the split is derived from
        the reported canary readiness by KServe's rule (``applyCanaryWeights``).
        """
        meta = isvc.get("metadata") or {}
        status = isvc.get("status") or {}
        predictor_status = (status.get("components") or {}).get("predictor") or {}
        predictor_spec = (isvc.get("spec") or {}).get("predictor") or {}
        cols = r.printer_columns(isvc)
        mode = r.deployment_mode(isvc)
        sides: tuple[Side, ...] = ()
        traffic = tuple(TrafficEntry.from_dict(e) for e in predictor_status.get("traffic") or [])
        live_route = None if route is None else tuple((str(s), w) for s, w in route)
        if mode in r.RAW_MODES and (isvc.get("spec") or {}).get("predictor") is not None:
            sides = standard_sides(isvc, live_route)
            traffic = _standard_traffic(isvc, sides, live_route)
        conditions = tuple(
            Condition(
                str(c.get("type")), str(c.get("status")), c.get("reason"), c.get("message"),
                c.get("lastTransitionTime"),
            )
            for c in status.get("conditions") or []
        )
        return cls(
            name=str(meta.get("name")),
            namespace=str(meta.get("namespace") or "default"),
            ready=cols["READY"] == "True",
            ready_status=cols["READY"],
            url=cols["URL"],
            prev_percent=cols["PREV"],
            latest_percent=cols["LATEST"],
            prev_revision=cols["PREVROLLEDOUTREVISION"],
            latest_revision=cols["LATESTREADYREVISION"],
            traffic=traffic,
            conditions=conditions,
            latest_created_revision=predictor_status.get("latestCreatedRevision"),
            latest_ready_revision=predictor_status.get("latestReadyRevision"),
            latest_rolledout_revision=predictor_status.get("latestRolledoutRevision"),
            previous_rolledout_revision=predictor_status.get("previousRolledoutRevision"),
            storage_uri=storage_uri_of(predictor_spec),
            model_format=model_format_of(predictor_spec),
            canary_traffic_percent=predictor_spec.get("canaryTrafficPercent"),
            tag_routing=r.tag_routing_enabled(isvc),
            deployment_mode=mode,
            generation=int(meta.get("generation") or 0),
            observed_generation=status.get("observedGeneration"),
            resource_version=str(meta.get("resourceVersion") or ""),
            created=meta.get("creationTimestamp"),
            raw=isvc,
            sides=sides,
            route=live_route,
        )

    # ------------------------------------------------------------------ helpers

    def condition(self, ctype: str) -> Condition | None:
        """The condition of type ``ctype``."""
        for cond in self.conditions:
            if cond.type == ctype:
                return cond
        return None

    @property
    def failure(self) -> str | None:
        """Why the service is not Ready, when it is False (e.g. the RevisionFailed message)."""
        ready = self.condition("Ready")
        if ready is None or ready.status != "False":
            return None
        return ready.message or ready.reason or "Ready is False"

    @property
    def spec_failure(self) -> str | None:
        """Why KServe cannot serve the spec at all (``modelStatus.transitionStatus: InvalidSpec``,
        e.g. ``RuntimeNotRecognized``): no revision is made, and Ready never turns False."""
        model = (self.raw.get("status") or {}).get("modelStatus") or {}
        if model.get("transitionStatus") != "InvalidSpec":
            return None
        info = model.get("lastFailureInfo") or {}
        return ": ".join(str(x) for x in (info.get("reason"), info.get("message")) if x) or "InvalidSpec"

    def tag_url(self, tag: str) -> str | None:
        """URL of the traffic entry tagged ``tag``."""
        for entry in self.traffic:
            if entry.tag == tag and entry.url:
                return entry.url
        return None

    def tag_revision(self, tag: str) -> str | None:
        """Revision behind the traffic entry tagged ``tag``."""
        for entry in self.traffic:
            if entry.tag == tag:
                return entry.revision
        return None

    def split(self) -> dict[str, int]:
        """Configured percent per revision (entries on one revision summed)."""
        out: dict[str, int] = {}
        for entry in self.traffic:
            out[entry.revision] = out.get(entry.revision, 0) + entry.percent
        return out

    @property
    def in_canary(self) -> bool:
        """Whether traffic is split between a new revision and the rolled-out one (Standard mode:
        whether the service has a canary)."""
        if self.standard:
            return bool(self.canaries)
        return self.prev_revision is not None and (self.latest_percent or 0) > 0

    # ------------------------------------------------------------------ Standard mode

    @property
    def standard(self) -> bool:
        """Whether the service runs in Standard (RawDeployment) mode: sides, not revisions."""
        return self.deployment_mode in r.RAW_MODES

    @property
    def canaries(self) -> tuple[Side, ...]:
        """Standard mode: the ``spec.canary[]`` entries with their status, in spec order (oldest first)."""
        return tuple(s for s in self.sides if s.role != STABLE)

    @property
    def stable(self) -> Side | None:
        """Standard mode: the stable predictor's side (None in Knative mode)."""
        return next((s for s in self.sides if s.role == STABLE), None)

    @property
    def newest_canary(self) -> Side | None:
        """Standard mode: the canary added last (what ``latest`` and the panel's slider mean), or None."""
        canaries = self.canaries
        return canaries[-1] if canaries else None

    def side(self, name: str) -> Side | None:
        """Standard mode: the side called ``name`` (``stable`` or a canary name), or None."""
        return next((s for s in self.sides if s.name == name), None)

    @property
    def expected_route(self) -> tuple[tuple[str, int | None], ...]:
        """Standard mode: the backends KServe programs for the spec and the reported canary readiness."""
        ready = {s.name: s.ready for s in self.canaries}
        return tuple((b.service, b.weight) for b in std.route_backends(self.raw, ready))

    @property
    def route_settled(self) -> bool:
        """Standard mode: the live route sends each Service the share KServe's rule gives it now
        (True when the route could not be read: then the shares are derived anyway)."""
        if self.route is None:
            return True
        return _shares(self.route) == _shares(self.expected_route)

    @property
    def spec_observed(self) -> bool:
        """Standard mode: the status describes the current spec — ``canaryStatuses`` names the spec's
        canaries with their percents, and the predictor URL names the stable's Deployment.

        (``observedGeneration`` cannot tell: in Standard mode it is the stable Deployment's.)
        """
        status = self.raw.get("status") or {}
        reported = [
            (str(c.get("name")), int(c.get("trafficPercent") or 0))
            for c in status.get("canaryStatuses") or []
            if isinstance(c, Mapping)
        ]
        if reported != [(s.name, s.percent) for s in self.canaries]:
            return False
        url = (((status.get("components") or {}).get("predictor") or {}).get("url")) or ""
        stable = self.stable
        host = url.split("://", 1)[-1]
        return not host or stable is None or host.startswith(f"{stable.deployment}-{self.namespace}.")

    # ------------------------------------------------------------------ display

    @property
    def table(self) -> pd.DataFrame:
        """The ``kubectl get isvc`` row as a one-row DataFrame.

        Standard mode has no revisions (kubectl's PREV/LATEST columns are empty there), so its row
        names the mode, the stable Deployment and the canaries with their configured percents.
        """
        if self.standard:
            stable = self.stable
            return pd.DataFrame([{
                "NAME": self.name,
                "URL": self.url or "",
                "READY": self.ready_status or "",
                "MODE": self.deployment_mode,
                "STABLE": stable.deployment if stable else "",
                "CANARIES": ", ".join(f"{c.name} {c.percent}%" for c in self.canaries),
                "AGE": r.age(self.created),
            }])
        return self.kubectl_row

    @property
    def kubectl_row(self) -> pd.DataFrame:
        """Exactly ``kubectl get isvc``'s columns, in either mode (a Standard-mode row has empty
        PREV/LATEST/revision cells, as kubectl prints it): rows of several services line up."""
        row = {
            "NAME": self.name,
            "URL": self.url or "",
            "READY": self.ready_status or "",
            "PREV": self.prev_percent,
            "LATEST": self.latest_percent,
            "PREVROLLEDOUTREVISION": self.prev_revision or "",
            "LATESTREADYREVISION": self.latest_revision or "",
            "AGE": r.age(self.created),
        }
        frame = pd.DataFrame([row])
        for col in ("PREV", "LATEST"):
            frame[col] = frame[col].astype("Int64")
        return frame

    @property
    def traffic_table(self) -> pd.DataFrame:
        """The traffic entries as a DataFrame (revision, percent, latestRevision, tag, url)."""
        return pd.DataFrame(
            [
                {
                    "revision": e.revision, "percent": e.percent, "latestRevision": e.latest, "tag": e.tag or "",
                    "url": e.url or "",
                }
                for e in self.traffic
            ],
            columns=["revision", "percent", "latestRevision", "tag", "url"],
        )

    @property
    def sides_table(self) -> pd.DataFrame:
        """Standard mode: one row per side (side, deployment, storageUri, ready, percent configured,
        routed — the share the route sends it now)."""
        frame = pd.DataFrame(
            [
                {"side": s.name, "deployment": s.deployment, "storageUri": s.storage_uri or "", "ready": s.ready,
                 "percent": s.percent, "routed": s.routed}
                for s in self.sides
            ],
            columns=["side", "deployment", "storageUri", "ready", "percent", "routed"],
        )
        frame["routed"] = frame["routed"].astype("Int64")
        return frame

    def _standard_split_text(self) -> str:
        names = {s.deployment: s.name for s in self.sides}
        labels = [f"{names[e.revision]} ({e.revision})" if e.revision in names else e.revision for e in self.traffic]
        routed = split_text(zip(labels, (e.percent for e in self.traffic)), empty="")
        waiting = [f"{c.name} not ready ({c.percent}% configured)" for c in self.canaries if c.routed is None]
        return "; ".join(x for x in (routed or "no route yet", *waiting) if x)

    def summary(self) -> str:
        """One line: READY, the split and the revisions (Standard mode: the sides and their Deployments)."""
        parts = [f"{self.namespace}/{self.name}", f"READY {self.ready_status or '?'}"]
        if self.standard:
            parts.append(self._standard_split_text())
        elif self.traffic:
            labelled = ((f"{e.revision} [{e.tag}]" if e.tag else e.revision, e.percent) for e in self.traffic)
            parts.append(split_text(labelled))
        if self.failure:
            parts.append(f"({self.failure})")
        return "  ".join(parts)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return f"<ServiceStatus {self.summary()}>"

    def _repr_html_(self) -> str:
        ready = self.ready_status or "?"
        color = {"True": "#1a7f37", "False": "#cf222e"}.get(ready, "#9a6700")
        return (
            f'<div class="kserve-nb-status"><b>{html.escape(self.namespace)}/{html.escape(self.name)}</b> '
            f'<span style="color:{color}">READY {html.escape(ready)}</span> '
            f'<code>{html.escape(self.storage_uri or "")}</code>'
            f"{self.details_html()}</div>"
        )

    def details_html(self) -> str:
        """The split bar, the failure (if any) and the tables: the status below its headline."""
        failure = (
            f'<div style="color:#cf222e">{html.escape(self.failure)}</div>' if self.failure else ""
        )
        if self.standard:
            newest = self.newest_canary
            bar = split_bar_html(self.traffic, latest_percent=newest.routed if newest else None)
            waiting = "".join(
                f'<div style="color:#9a6700">canary {html.escape(c.name)} is not ready: its {c.percent}% '
                "stays with the stable</div>"
                for c in self.canaries
                if not c.ready
            )
            derived = (
                '<div style="opacity:0.7">shares derived from canaryStatuses by KServe\'s rule: the HTTPRoute '
                "could not be read (no Gateway API, or no permission)</div>"
                if self.route is None else ""
            )
            return (
                f"{bar}{failure}{waiting}{self.table.to_html(index=False, border=0, na_rep='')}"
                f"{self.sides_table.to_html(index=False, border=0, na_rep='')}{derived}"
            )
        bar = split_bar_html(self.traffic, latest_percent=self.latest_percent)
        return (
            f"{bar}{failure}{self.table.to_html(index=False, border=0, na_rep='')}"
            f"{self.traffic_table.to_html(index=False, border=0) if self.traffic else ''}"
        )


def _shares(backends: Sequence[tuple[str, int | None]]) -> dict[str, int]:
    """Percent of requests per Service for HTTPRoute backends (Gateway API: weight / Σ weights)."""
    fractions = std.split([std.Backend(service, weight) for service, weight in backends])
    return {service: round(share * 100) for service, share in fractions.items()}


def _reported_ready(isvc: Mapping[str, Any]) -> dict[str, bool]:
    """Canary name → ready, as ``status.canaryStatuses`` reports it."""
    return {
        str(c.get("name")): bool(c.get("ready"))
        for c in (isvc.get("status") or {}).get("canaryStatuses") or []
        if isinstance(c, Mapping)
    }


def _backends(isvc: Mapping[str, Any], route: Sequence[tuple[str, int | None]] | None) -> list[tuple[str, int | None]]:
    """The live backends, else KServe's rule applied to the reported readiness — which writes no
    route before the stable's ``PredictorReady`` is True."""
    if route is not None:
        return list(route)
    if (r.condition(isvc, "PredictorReady") or {}).get("status") != "True":
        return []
    return [(b.service, b.weight) for b in std.route_backends(isvc, _reported_ready(isvc))]


def _standard_traffic(
    isvc: Mapping[str, Any], sides: Sequence[Side], route: Sequence[tuple[str, int | None]] | None
) -> tuple[TrafficEntry, ...]:
    # In route order, every backend (one the spec no longer names too, e.g. an old stable just
    # after a promotion): revision = the Service, tag = the side's name.
    by_deployment = {s.deployment: s for s in sides}
    backends = _backends(isvc, route)
    shares = _shares(backends) if backends else {}
    out = []
    for service, _ in backends:
        side = by_deployment.get(service)
        out.append(TrafficEntry(service, shares.get(service, 0), side is not None and side.role != STABLE,
                                side.name if side else None))
    return tuple(out)


def standard_sides(isvc: Mapping[str, Any], route: Sequence[tuple[str, int | None]] | None) -> tuple[Side, ...]:
    """The stable and each canary of a Standard-mode isvc, with what the route sends each.

    ``route`` holds the live backends; None derives them from the reported canary readiness with
    KServe's rule. A canary is ready when ``canaryStatuses`` says so; the stable when
    ``PredictorReady`` is True.
    """
    name = str((isvc.get("metadata") or {}).get("name"))
    reported = _reported_ready(isvc)
    backends = _backends(isvc, route)
    shares = _shares(backends) if backends else {}
    stable_spec = std.stable_predictor(isvc)
    entries = std.canaries(isvc)
    configured = sum(int(e.get("trafficPercent") or 0) for e in entries)
    predictor_ready = (r.condition(isvc, "PredictorReady") or {}).get("status") == "True"
    stable = std.predictor_service_name(name, std.stable_variant(isvc))
    sides = [Side(STABLE, STABLE, stable, storage_uri_of(stable_spec), predictor_ready,
                  max(0, 100 - configured), shares.get(stable))]
    for entry in entries:
        cname = std.canary_name(entry)
        deployment = std.predictor_service_name(name, cname)
        sides.append(Side(
            cname, "canary", deployment, storage_uri_of(std.overlay(stable_spec, entry.get("predictor") or {})),
            reported.get(cname, False), int(entry.get("trafficPercent") or 0), shares.get(deployment),
        ))
    return tuple(sides)
