"""Value objects for what an InferenceService says about its release: parsed once, shown richly."""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from kserve_nb import resources as r
from kserve_nb.semantics import model_format_of, storage_uri_of
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

    @classmethod
    def from_isvc(cls, isvc: Mapping[str, Any]) -> ServiceStatus:
        """Parse an InferenceService dict."""
        meta = isvc.get("metadata") or {}
        status = isvc.get("status") or {}
        predictor_status = (status.get("components") or {}).get("predictor") or {}
        predictor_spec = (isvc.get("spec") or {}).get("predictor") or {}
        cols = r.printer_columns(isvc)
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
            traffic=tuple(TrafficEntry.from_dict(e) for e in predictor_status.get("traffic") or []),
            conditions=conditions,
            latest_created_revision=predictor_status.get("latestCreatedRevision"),
            latest_ready_revision=predictor_status.get("latestReadyRevision"),
            latest_rolledout_revision=predictor_status.get("latestRolledoutRevision"),
            previous_rolledout_revision=predictor_status.get("previousRolledoutRevision"),
            storage_uri=storage_uri_of(predictor_spec),
            model_format=model_format_of(predictor_spec),
            canary_traffic_percent=predictor_spec.get("canaryTrafficPercent"),
            tag_routing=r.tag_routing_enabled(isvc),
            deployment_mode=r.deployment_mode(isvc),
            generation=int(meta.get("generation") or 0),
            observed_generation=status.get("observedGeneration"),
            resource_version=str(meta.get("resourceVersion") or ""),
            created=meta.get("creationTimestamp"),
            raw=isvc,
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
        """Whether traffic is split between a new revision and the rolled-out one."""
        return self.prev_revision is not None and (self.latest_percent or 0) > 0

    # ------------------------------------------------------------------ display

    @property
    def table(self) -> pd.DataFrame:
        """The ``kubectl get isvc`` row as a one-row DataFrame."""
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
                {"revision": e.revision, "percent": e.percent, "latestRevision": e.latest, "tag": e.tag or "", "url": e.url or ""}
                for e in self.traffic
            ],
            columns=["revision", "percent", "latestRevision", "tag", "url"],
        )

    def summary(self) -> str:
        """One line: READY, the split and the revisions."""
        parts = [f"{self.namespace}/{self.name}", f"READY {self.ready_status or '?'}"]
        if self.traffic:
            parts.append(
                " + ".join(
                    f"{e.percent}% {e.revision}{' [' + e.tag + ']' if e.tag else ''}" for e in self.traffic
                )
            )
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
        bar = split_bar_html(self.traffic, latest_percent=self.latest_percent)
        failure = (
            f'<div style="color:#cf222e">{html.escape(self.failure)}</div>' if self.failure else ""
        )
        return (
            f"{bar}{failure}{self.table.to_html(index=False, border=0, na_rep='')}"
            f"{self.traffic_table.to_html(index=False, border=0) if self.traffic else ''}"
        )
