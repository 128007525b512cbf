"""The rollout entry points behind ``Service.rollout`` and ``%kserve rollout``: pick the metric
source, start the optional test traffic, run the supervisor, or preview it all (dry run)."""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from kserve_nb import errors
from kserve_nb.durations import parse_duration
from kserve_nb.metrics.sample import MetricSource, RevisionSample
from kserve_nb.rollout.plan import DEFAULT_GATES, DEFAULT_STEPS, RolloutPlan
from kserve_nb.rollout.runner import RolloutResult, Supervisor

if TYPE_CHECKING:  # pragma: no cover
    from kserve_nb.plan import Plan
    from kserve_nb.service import Service

#: ``metrics=`` names.
SOURCES = ("prometheus", "client")


@dataclass(frozen=True)
class RolloutPreview:
    """A dry run: the plan as a picture, the first step's exact patch, and the resolved queries."""

    plan: RolloutPlan
    first_step: Plan
    source: str
    queries: Mapping[str, str]

    def __str__(self) -> str:
        patch = json.dumps(self.first_step.patch, sort_keys=True)
        lines = [self.plan.describe(), f"first step: {self.first_step}", f"  patch: {patch}", f"metrics: {self.source}"]
        lines += [f"  {k}: {v}" for k, v in self.queries.items()]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<RolloutPreview {self.plan.describe()}>"

    def _repr_html_(self) -> str:
        queries = "".join(
            f"<tr><td>{html.escape(k)}</td><td><code>{html.escape(v)}</code></td></tr>" for k, v in self.queries.items()
        )
        first = getattr(self.first_step, "_repr_html_", None)
        return (
            f"<div><b>dry run — nothing applied</b>{self.plan._repr_html_()}"
            f"<div>first step:</div>{first() if first else html.escape(str(self.first_step))}"
            f"<div>metrics from <code>{html.escape(self.source)}</code></div>"
            f'<table class="kserve-nb-table">{queries}</table></div>'
        )


class WithLabels:
    """Prometheus' counters with the test traffic's label counts: a Prometheus source knows
    requests, errors and latency of *all* traffic but not which answers were right; the rollout's
    own labelled test traffic does. Each number keeps its own source."""

    def __init__(self, counters: MetricSource, labels: MetricSource) -> None:
        self.counters = counters
        self.labels = labels
        self.name = f"{counters.name} + labels from {labels.name}"

    def snapshot(self, namespace: str, service: str, revisions: Sequence[str]) -> dict[str, RevisionSample]:
        """The counters' samples, with ``labelled``/``correct`` taken from the labelled traffic."""
        counts = self.counters.snapshot(namespace, service, revisions)
        labels = self.labels.snapshot(namespace, service, revisions)
        out = {}
        for rev in revisions:
            base = counts.get(rev) or RevisionSample(rev, source=self.counters.name)
            lab = labels.get(rev)
            out[rev] = replace(base, labelled=lab.labelled, correct=lab.correct) if lab is not None else base
        return out

    def for_sides(self, sides: Mapping[str, str]) -> WithLabels:
        """Both sources read per Standard-mode side (see ``PrometheusSource.for_sides``)."""
        return WithLabels(_for_sides(self.counters, sides), _for_sides(self.labels, sides))


def _for_sides(source: MetricSource, sides: Mapping[str, str]) -> MetricSource:
    for_sides = getattr(source, "for_sides", None)
    return for_sides(sides) if callable(for_sides) else source


def check_source_counts_errors(plan: RolloutPlan, source: MetricSource, standard: bool) -> None:
    """Refuse an error gate its source cannot judge: metrics without status codes (the KServe model
    server's ``request_predict_seconds``) count requests, not failures, and would always read 0."""
    counters = getattr(source, "counters", source)
    queries = getattr(counters, "standard_queries" if standard else "queries", None)
    if queries is None or getattr(queries, "counts_errors", True):
        return
    bad = [g.text for g in plan.gates if g.metric in ("error_rate", "success_rate")]
    if bad:
        raise errors.ValidationError(
            f"gate {bad[0]!r} needs status codes, which {queries.name}'s metrics do not carry; judge errors on "
            "the test traffic (metrics='client' with load=ROWS), use metrics with status codes "
            "(session.metrics().with_queries(…), e.g. ISTIO_STANDARD in Standard mode), or drop the gate"
        )


def resolve_source(service: Service, metrics: Any, load_run: Any = None, labelled: bool = False) -> MetricSource:
    """The metric source for ``metrics``: a MetricSource as it is, ``"prometheus"`` (the session's;
    on the local cluster started on demand), ``"client"`` (the rollout's own test traffic), or
    None: Prometheus when there is one, else the test traffic. With ``labelled`` test traffic,
    Prometheus' numbers are joined by the traffic's label counts (:class:`WithLabels`)."""
    if metrics is not None and not isinstance(metrics, str):
        if not callable(getattr(metrics, "snapshot", None)):
            raise errors.ValidationError("metrics must be 'prometheus', 'client' or a MetricSource")
        return metrics  # type: ignore[no-any-return]
    if metrics not in (None, *SOURCES):
        raise errors.ValidationError(f"metrics must be one of {', '.join(SOURCES)}, got {metrics!r}")
    if metrics == "client" or (metrics is None and load_run is not None and not _has_prometheus(service)):
        if load_run is None:
            raise errors.ValidationError(
                "metrics='client' judges the rollout on its own test traffic: pass load=ROWS (and rate=)"
            )
        from kserve_nb.metrics.client import ClientSource

        return ClientSource(load_run)
    source: MetricSource = service.session.metrics()
    if load_run is not None and labelled:
        from kserve_nb.metrics.client import ClientSource

        source = WithLabels(source, ClientSource(load_run))
    return source


def check_gates_have_data(plan: RolloutPlan, labelled: bool) -> None:
    """Refuse, before anything changes, a gate its data can never reach (it would wait forever)."""
    if any(g.metric == "accuracy" for g in plan.gates) and not labelled:
        raise errors.ValidationError(
            "an accuracy gate needs labelled test traffic: pass load=ROWS and y=LABELS "
            "(%kserve rollout … --load ROWS --labels Y), or drop the gate"
        )


def _has_prometheus(service: Service) -> bool:
    try:
        service.session.metrics()
        return True
    except errors.KServeNbError:
        return False


def rollout(
    service: Service,
    storage_uri: str,
    *,
    steps: Any = DEFAULT_STEPS,
    interval: Any = 30.0,
    gates: Any = DEFAULT_GATES,
    alpha: float = 0.05,
    min_requests: int = 50,
    max_wait: Any = 300.0,
    on_inconclusive: str = "rollback",
    require_pass: bool = False,
    tag_routing: bool | None = None,
    metrics: Any = None,
    load: Any = None,
    y: Any = None,
    rate: float = 20.0,
    concurrency: int = 4,
    dry_run: bool = False,
    cancel: threading.Event | None = None,
    display: bool | None = None,
    lease: Any = None,
    on_update: Any = None,
) -> RolloutResult | RolloutPreview:
    """Run (or resume) a progressive rollout of ``storage_uri``; see :meth:`Service.rollout`."""
    from kserve_nb.manifests import check_storage_uri

    uri = check_storage_uri(storage_uri)
    plan = RolloutPlan.build(
        uri, steps=steps, interval=interval, gates=gates, alpha=alpha, min_requests=min_requests,
        max_wait=max_wait, on_inconclusive=on_inconclusive, require_pass=require_pass, tag_routing=tag_routing,
    )
    service.session.check_storage_uri(uri)
    check_gates_have_data(plan, labelled=load is not None and y is not None)
    if dry_run:
        return _preview(service, plan, metrics, load)
    load_run = None
    if load is not None:
        # Test traffic for the whole rollout, bounded: at most every step's bake plus its wait.
        bound = sum(plan.interval + plan.max_wait for s in plan.steps) + 60.0
        load_run = service.generate_load(load, y=y, rate=rate, concurrency=concurrency, duration=bound)
    try:
        source = resolve_source(service, metrics, load_run, labelled=y is not None)
        check_source_counts_errors(plan, source, standard=service.status().standard)
        return Supervisor(
            service, plan, source, cancel=cancel, display=display, on_update=on_update,
            lease=None if lease is None else parse_duration(lease, "lease"),
        ).run()
    finally:
        if load_run is not None:
            load_run.stop()


def _preview(service: Service, plan: RolloutPlan, metrics: Any, load: Any) -> RolloutPreview:
    from kserve_nb import semantics_standard as std
    from kserve_nb import standard

    first = plan.steps[0]
    st = service.status()
    sides: dict[str, str] = {}
    if st.standard:
        # The canary the rollout will add, and the sides its gates will compare.
        cname = standard.next_canary_name(st.raw)
        step = service.canary(plan.storage_uri, int(first), name=cname, tag_routing=plan.tag_routing, dry_run=True)
        if st.stable is not None:
            sides = {"stable": st.stable.deployment, cname: std.predictor_service_name(service.name, cname)}
    else:
        step = service.canary(plan.storage_uri, int(first), tag_routing=plan.tag_routing, dry_run=True)
    queries: dict[str, str] = {}
    source_name = "client (the rollout's own test traffic)"
    if metrics != "client" and not (metrics is None and load is not None and not _has_prometheus(service)):
        source = resolve_source(service, metrics)
        check_source_counts_errors(plan, source, standard=st.standard)
        source_name = source.name
        if sides:
            source = _for_sides(source, sides)
            source_name += " per side: " + ", ".join(f"{k} = Deployment {v}" for k, v in sides.items())
            revisions = list(sides)
        else:
            revisions = [r for r in (getattr(step, "new_revision", None), st.latest_rolledout_revision) if r]
        for sample in source.snapshot(service.namespace, service.name, revisions).values():
            queries.update(sample.queries)
            break
    return RolloutPreview(plan, step, source_name, queries)  # type: ignore[arg-type]
