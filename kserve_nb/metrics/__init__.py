"""Per-revision metrics for judging a release: samples, sources and queries."""

from kserve_nb.metrics.sample import LATENCY_BUCKETS_MS, Histogram, MetricSource, RevisionSample

__all__ = ["LATENCY_BUCKETS_MS", "Histogram", "MetricSource", "RevisionSample"]
