"""The common currency of release judgement: cumulative per-revision counts and latency histograms.

Every metric source (Prometheus on a real or the local cluster, the traffic generator's own
responses) produces :class:`RevisionSample` snapshots of *cumulative* counters. The difference of
two snapshots (``later - earlier``) is what a gate judges, so every source is read the same way and
a gate never depends on how often it is evaluated.

Latencies are kept as Prometheus-style cumulative histograms in milliseconds over
:data:`LATENCY_BUCKETS_MS`. The local ingress exports exactly these buckets; Knative's queue-proxy
exports a coarser subset of them (every Knative bound is one of ours), so a histogram read from a
real cluster is simply sparser.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Upper bounds (ms) of the latency histogram buckets, ascending; ``+Inf`` is implied last.
#: Knative's queue-proxy bounds (5, 10, 20, 40, 60, 80, 100, 150, 200, 250, 300, 350, 400, 450,
#: 500, 600, 700, 800, 900, 1000, 2000, 5000, 10000, 20000, 50000, 100000) plus finer ones below
#: 20 ms, where a small sklearn model on a laptop answers.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 150, 200, 250, 300,
    350, 400, 450, 500, 600, 700, 800, 900, 1000, 2000, 5000, 10000, 20000, 50000, 100000,
)


@dataclass(frozen=True)
class Histogram:
    """A cumulative latency histogram: ``counts[i]`` requests took at most ``bounds[i]`` ms.

    ``bounds`` ends with ``math.inf`` so ``counts[-1]`` is the total, as in Prometheus' ``le``.
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.bounds) != len(self.counts):
            raise ValueError("a histogram needs one count per bound")
        if not self.bounds or self.bounds[-1] != math.inf:
            raise ValueError("a histogram's last bound must be +Inf")

    @classmethod
    def empty(cls, bounds: Sequence[float] = LATENCY_BUCKETS_MS) -> Histogram:
        """A histogram with no observations over ``bounds`` (+Inf appended)."""
        full = tuple(float(b) for b in bounds) + ((math.inf,) if not bounds or bounds[-1] != math.inf else ())
        return cls(full, (0,) * len(full))

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], bounds: Sequence[float] = LATENCY_BUCKETS_MS) -> Histogram:
        """Bucket raw latencies (ms) as Prometheus would."""
        import bisect

        full = cls.empty(bounds).bounds
        per_bucket = [0] * len(full)
        for x in samples_ms:
            per_bucket[bisect.bisect_left(full, x)] += 1
        running, cumulative = 0, []
        for c in per_bucket:
            running += c
            cumulative.append(running)
        return cls(full, tuple(cumulative))

    @property
    def total(self) -> int:
        """Number of observations."""
        return self.counts[-1]

    def count_at_most(self, bound_ms: float) -> int:
        """Observations at most ``bound_ms`` (``bound_ms`` must be one of the bounds)."""
        return self.counts[self.bounds.index(bound_ms)]

    def quantile(self, q: float) -> float:
        """Point estimate of the ``q`` quantile, interpolated inside its bucket as PromQL's
        ``histogram_quantile`` does; NaN without observations."""
        total = self.total
        if total <= 0:
            return math.nan
        rank = q * total
        lower_bound, lower_count = 0.0, 0
        for bound, count in zip(self.bounds, self.counts):
            if count >= rank and count > lower_count:
                if bound == math.inf:
                    return lower_bound  # as histogram_quantile: the highest finite bound
                return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
            lower_bound, lower_count = bound, count
        return lower_bound

    def _aligned(self, other: Histogram) -> None:
        if self.bounds != other.bounds:
            raise ValueError("histograms over different buckets cannot be combined")

    def __add__(self, other: Histogram) -> Histogram:
        if not other.total or not self.total:  # nothing to add: the buckets need not match
            return self if not other.total else other
        self._aligned(other)
        return Histogram(self.bounds, tuple(a + b for a, b in zip(self.counts, other.counts)))

    def __sub__(self, other: Histogram) -> Histogram:
        # Counters only grow; a reset (the exporter restarted) shows as a negative delta, which
        # counts as "everything since the reset" rather than as negative observations.
        if not other.total:  # a snapshot before any observation, whatever its buckets
            return self
        self._aligned(other)
        if any(a < b for a, b in zip(self.counts, other.counts)):
            return self
        return Histogram(self.bounds, tuple(a - b for a, b in zip(self.counts, other.counts)))


@dataclass(frozen=True)
class RevisionSample:
    """Cumulative counters of one revision, as one metric source saw them at one time.

    Attributes
    ----------
    revision:
        The revision name (``sklearn-iris-predictor-00002``).
    requests:
        Requests answered (any status) or failed at the connection.
    errors:
        Of those, server errors: 5xx responses and connection failures.
    latency:
        Latencies in ms of all requests.
    labelled, correct:
        Requests whose true label was known, and of those the ones predicted right (only a source
        that sends its own labelled traffic fills these).
    codes:
        Request count by HTTP status code (``"200"``, ``"500"``…; ``"error"`` for no response).
    source:
        ``"prometheus"`` or ``"client"``.
    queries:
        What was asked to get these numbers (PromQL text by quantity), shown with every verdict.
    """

    revision: str
    requests: int = 0
    errors: int = 0
    latency: Histogram = field(default_factory=Histogram.empty)
    labelled: int = 0
    correct: int = 0
    codes: Mapping[str, int] = field(default_factory=dict)
    source: str = "client"
    queries: Mapping[str, str] = field(default_factory=dict)

    @property
    def error_rate(self) -> float:
        """Share of requests that failed with a server error (NaN without requests)."""
        return self.errors / self.requests if self.requests else math.nan

    @property
    def accuracy(self) -> float:
        """Share of labelled requests predicted right (NaN without labels)."""
        return self.correct / self.labelled if self.labelled else math.nan

    def __sub__(self, earlier: RevisionSample) -> RevisionSample:
        """Counts between an ``earlier`` snapshot and this one (a counter reset counts from zero)."""
        reset = self.requests < earlier.requests
        if reset:
            return self

        def delta(a: int, b: int) -> int:
            return max(0, a - b)

        codes = {k: delta(v, int(earlier.codes.get(k, 0))) for k, v in self.codes.items()}
        return RevisionSample(
            self.revision,
            delta(self.requests, earlier.requests),
            delta(self.errors, earlier.errors),
            self.latency - earlier.latency,
            delta(self.labelled, earlier.labelled),
            delta(self.correct, earlier.correct),
            {k: v for k, v in codes.items() if v},
            self.source,
            self.queries,
        )


class MetricSource(Protocol):
    """Where per-revision counters come from (Prometheus, or the traffic generator's responses).

    A source that can also answer per Standard-mode side has ``for_sides({side: Deployment})``,
    returning a source whose names are side names (``stable``, ``v2``…); the rollout and the live
    chart use it when there is one.
    """

    #: Short name shown with every verdict (``prometheus http://…``, ``client``).
    name: str

    def snapshot(self, namespace: str, service: str, revisions: Sequence[str]) -> dict[str, RevisionSample]:
        """Cumulative counters of each of ``revisions`` of ``service`` now (a revision never seen
        has an all-zero sample)."""
        ...


def describe(sample: RevisionSample) -> dict[str, Any]:
    """A flat, JSON-friendly view of a sample (for evidence records and tables)."""
    return {
        "revision": sample.revision,
        "requests": sample.requests,
        "errors": sample.errors,
        "error_rate": None if math.isnan(sample.error_rate) else round(sample.error_rate, 6),
        "p50_ms": _finite(sample.latency.quantile(0.5)),
        "p95_ms": _finite(sample.latency.quantile(0.95)),
        "labelled": sample.labelled,
        "accuracy": _finite(sample.accuracy),
        "source": sample.source,
    }


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 3)
