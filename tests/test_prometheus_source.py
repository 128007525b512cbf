"""PrometheusSource's query templates and result handling (no server needed; the end-to-end tests
against the local cluster's real Prometheus are in tests/local/test_metrics.py)."""

from __future__ import annotations

import math

import pytest

from kserve_nb import errors
from kserve_nb.local.exporter import LE_LABELS, RequestMetrics, series_labels
from kserve_nb.metrics.prometheus import (
    KNATIVE,
    KSERVE_MODEL_SERVER,
    PrometheusSource,
    PromQueries,
    _alternation,
    _histogram,
)
from kserve_nb.metrics.sample import LATENCY_BUCKETS_MS, Histogram


def test_templates_resolve_only_their_placeholders() -> None:
    q = KNATIVE.resolve(
        "requests", namespace="kserve-test", service="sklearn-iris", revisions=_alternation(["a-00001"])
    )
    assert q == (
        'sum by (revision_name, response_code) (revision_app_request_count{namespace_name="kserve-test",'
        'configuration_name="sklearn-iris-predictor",revision_name=~"a-00001"})'
    )
    rate = KNATIVE.resolve("quantile", namespace="n", service="s", revisions=".+", window="5s", q="0.95")
    assert rate.startswith("histogram_quantile(0.95, ") and "[5s]" in rate and "{" in rate
    assert "{namespace}" not in KSERVE_MODEL_SERVER.resolve(
        "rps", namespace="n", service="s", revisions=".+", window="1m"
    )


def test_revision_names_are_matched_exactly_and_cannot_break_the_query() -> None:
    assert _alternation(["a-predictor-00001", "a-predictor-00002"]) == "a-predictor-00001|a-predictor-00002"
    assert _alternation(None) == ".+"
    # the quote is escaped for the PromQL string, every regex metacharacter for RE2
    assert _alternation(['x.y"})or vector(1)#']) == r'x\\.y\"\\}\\)or vector\\(1\\)#'


def test_own_templates_are_a_small_dataclass() -> None:
    mine = PromQueries(
        name="mine", requests="sum by (rev) (reqs{ns=\"{namespace}\"})", latency_buckets="x", rps="y",
        error_rate="z", quantile="w", revision_label="rev", code_label=None,
    )
    assert mine.resolve("requests", namespace="prod") == 'sum by (rev) (reqs{ns="prod"})'
    source = PrometheusSource("http://127.0.0.1:9090", queries=mine)
    assert source.with_queries(KNATIVE).queries is KNATIVE and "mine" in repr(source)


def test_bad_urls_and_credentials_never_show() -> None:
    with pytest.raises(errors.ConfigError, match="must start with http"):
        PrometheusSource("prometheus:9090")
    source = PrometheusSource(
        "https://user:secret@prom.example.com/api?token=abc", headers={"Authorization": "Bearer t0k"}
    )
    shown = repr(source) + source.name
    assert "secret" not in shown and "abc" not in shown and "t0k" not in shown


def test_histograms_from_buckets_stay_monotone_and_line_up_with_empty_ones() -> None:
    h = _histogram({5.0: 3, 10.0: 2, math.inf: 4})  # two exporters scraped a moment apart
    assert h.counts == (3, 3, 4) and h.bounds == (5.0, 10.0, math.inf)
    # a Knative-sparse histogram minus a snapshot taken before any request
    assert (h - Histogram.empty()) == h and (Histogram.empty() + h) == h


def test_the_gateway_exporter_renders_knative_series() -> None:
    m = RequestMetrics()
    s = series_labels("kserve-test", "sklearn-iris-predictor-00002")
    for ms in (0.4, 1.2, 7.0):
        m.observe(s, 200, ms)
    m.observe(s, 503, 0.1)
    text = m.render()
    assert ('revision_app_request_count{namespace_name="kserve-test",configuration_name="sklearn-iris-predictor",'
            'service_name="sklearn-iris-predictor",revision_name="sklearn-iris-predictor-00002",response_code="200",'
            'response_code_class="2xx"} 3') in text
    assert 'response_code="503",response_code_class="5xx"} 1' in text
    lines = [
        line
        for line in text.splitlines()
        if line.startswith("revision_app_request_latencies_bucket") and 'response_code="200"' in line
    ]
    assert len(lines) == len(LATENCY_BUCKETS_MS) + 1
    by_le = {line.split('le="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1]) for line in lines}
    assert by_le["0.5"] == 1 and by_le["1.5"] == 2 and by_le["8"] == 3 and by_le["+Inf"] == 3
    assert list(by_le)[:-1] == list(LE_LABELS)
    assert "# TYPE revision_app_request_latencies histogram" in text
