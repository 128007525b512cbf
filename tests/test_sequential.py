"""Anytime-valid intervals and gates (kserve_nb.analysis.sequential): pure, seeded simulations.

Coverage is checked at *every* step of each simulated stream (the property continuous monitoring
needs), not only at the end.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from kserve_nb.analysis.sequential import (
    Interval,
    Judgement,
    judge_quantile,
    judge_rate,
    quantile_cs,
    quantile_cs_bounds,
    rate_cs,
    rate_cs_bounds,
    rate_diff_cs,
    rate_diff_cs_bounds,
    rate_gate_decisions,
)
from kserve_nb.errors import ValidationError
from kserve_nb.metrics.sample import LATENCY_BUCKETS_MS, Histogram

ALPHA = 0.05
EDGES = np.array(Histogram.empty().bounds)


def _lognormal_bucket_probs(median: float, sigma: float) -> np.ndarray:
    from scipy.stats import lognorm

    cdf = lognorm.cdf(EDGES, s=sigma, scale=median)
    return np.diff(np.concatenate([[0.0], cdf]))


# -- rate_cs ---------------------------------------------------------------------------------


def test_rate_cs_covers_the_truth_at_every_step() -> None:
    rng = np.random.default_rng(11)
    runs, steps = 300, 400
    for p in (0.01, 0.3, 0.95):
        outcomes = rng.random((runs, steps)) < p
        s = np.cumsum(outcomes, axis=1)
        n = np.broadcast_to(np.arange(1, steps + 1), s.shape)
        low, high = rate_cs_bounds(s.ravel(), n.ravel(), ALPHA)
        miss = ((low > p) | (high < p)).reshape(runs, steps)
        ever = miss.any(axis=1).mean()
        assert ever <= ALPHA + 0.02, (p, ever)


def test_rate_cs_shape_and_edges() -> None:
    empty = rate_cs(0, 0, ALPHA)
    assert (empty.low, empty.high) == (0.0, 1.0) and math.isnan(empty.estimate) and empty.level == 0.95
    none = rate_cs(0, 1000, ALPHA)
    assert none.low == 0.0 and 0 < none.high < 0.02 and none.estimate == 0
    every = rate_cs(1000, 1000, ALPHA)
    assert every.high == 1.0 and 0.98 < every.low < 1 and every.estimate == 1
    mid = rate_cs(50, 1000, ALPHA)
    assert mid.low < 0.05 < mid.high and mid.contains(0.05)


def test_rate_cs_is_monotone_in_successes_and_narrows_with_trials() -> None:
    lows, highs = rate_cs_bounds(np.arange(0, 101), np.full(101, 100), ALPHA)
    assert np.all(np.diff(lows) >= 0) and np.all(np.diff(highs) >= 0)
    widths = [rate_cs(n // 10, n, ALPHA).width for n in (10, 100, 1000, 10000)]
    assert widths == sorted(widths, reverse=True)
    # wider at a stricter level
    assert rate_cs(10, 100, 0.01).width > rate_cs(10, 100, 0.1).width


def test_rate_cs_is_wider_than_a_fixed_horizon_interval() -> None:
    # The price of validity at every time: wider than Wilson's interval at one fixed n.
    from scipy.stats import binomtest

    ci = binomtest(30, 1000).proportion_ci(confidence_level=1 - ALPHA, method="wilson")
    lo, hi = ci.low, ci.high
    cs = rate_cs(30, 1000, ALPHA)
    assert cs.low < lo and cs.high > hi


# -- rate differences ------------------------------------------------------------------------


def test_rate_diff_cs_covers_the_truth_at_every_step() -> None:
    rng = np.random.default_rng(12)
    runs, steps = 200, 60
    pc, pb, f = 0.04, 0.02, 1.5
    nc = rng.poisson(20, (runs, steps)).cumsum(axis=1)
    nb = rng.poisson(180, (runs, steps)).cumsum(axis=1)
    xc = rng.binomial(np.diff(nc, prepend=0, axis=1), pc).cumsum(axis=1)
    xb = rng.binomial(np.diff(nb, prepend=0, axis=1), pb).cumsum(axis=1)
    low, high = rate_diff_cs_bounds(xc.ravel(), nc.ravel(), xb.ravel(), nb.ravel(), f, ALPHA)
    truth = pc - f * pb
    miss = ((low > truth) | (high < truth)).reshape(runs, steps).any(axis=1)
    assert miss.mean() <= ALPHA + 0.02
    assert np.all(low <= high)


def test_rate_diff_cs_edges() -> None:
    nothing = rate_diff_cs((0, 0), (0, 0), 1.0, ALPHA)
    assert (nothing.low, nothing.high) == (-1.0, 1.0) and math.isnan(nothing.estimate)
    extreme = rate_diff_cs((10, 10), (0, 10), 1.0, ALPHA)
    assert extreme.high == 1.0 and extreme.low > 0 and extreme.estimate == 1.0
    with pytest.raises(ValidationError, match="factor"):
        rate_diff_cs((1, 10), (1, 10), 0.0, ALPHA)


def test_direct_two_sample_sequence_detects_a_regression_sooner_than_two_one_sample_ones() -> None:
    # Both are valid; the two-sample one spends all of alpha on the difference itself.
    rng = np.random.default_rng(21)
    runs, checks = 200, 120
    p = rng.uniform(0.005, 0.01, runs)
    xc = nc = xb = nb = np.zeros(runs)
    direct = split = np.full(runs, np.inf)
    for _ in range(checks):
        a, b = rng.poisson(40, runs), rng.poisson(360, runs)
        nc, nb = nc + a, nb + b
        xc, xb = xc + rng.binomial(a, p + 0.02), xb + rng.binomial(b, p)
        fail = rate_gate_decisions(xc, nc, xb, nb, "<=", 1.0, 0.0, ALPHA) == -1
        direct = np.where(np.isinf(direct) & fail, nc, direct)
        low_c, _ = rate_cs_bounds(xc, nc, ALPHA / 2)
        _, high_b = rate_cs_bounds(xb, nb, ALPHA / 2)
        split = np.where(np.isinf(split) & (low_c > high_b), nc, split)
    assert np.isfinite(direct).all()
    assert np.median(direct) < np.median(split)


# -- A/A under continuous monitoring ---------------------------------------------------------


def test_aa_rate_gate_checked_every_interval_rarely_fails() -> None:
    rng = np.random.default_rng(13)
    runs, checks = 400, 150
    p = rng.uniform(0.005, 0.01, runs)
    xc = nc = xb = nb = np.zeros(runs)
    failed = np.zeros(runs, dtype=bool)
    for _ in range(checks):
        a, b = rng.poisson(40, runs), rng.poisson(360, runs)
        nc, nb = nc + a, nb + b
        xc, xb = xc + rng.binomial(a, p), xb + rng.binomial(b, p)
        failed |= rate_gate_decisions(xc, nc, xb, nb, "<=", 1.0, 0.0, ALPHA) == -1
    assert failed.mean() <= ALPHA + 0.02


def test_aa_quantile_gate_checked_every_interval_rarely_fails() -> None:
    rng = np.random.default_rng(14)
    runs, checks = 300, 100
    probs = _lognormal_bucket_probs(40.0, 0.4)
    cc = np.zeros((runs, len(EDGES)))
    cb = np.zeros((runs, len(EDGES)))
    failed = np.zeros(runs, dtype=bool)
    for _ in range(checks):
        cc += rng.multinomial(rng.poisson(40, runs), probs).cumsum(axis=1)
        cb += rng.multinomial(rng.poisson(360, runs), probs).cumsum(axis=1)
        lc, _ = quantile_cs_bounds(cc, EDGES, 0.95, ALPHA / 2)
        _, hb = quantile_cs_bounds(cb, EDGES, 0.95, ALPHA / 2)
        failed |= lc - 1.0 * hb >= 0  # judge_quantile's fail rule for p95 <= 1.0*prev
    assert failed.mean() <= ALPHA + 0.02


def test_quantile_cs_covers_the_true_quantile_at_every_step() -> None:
    from scipy.stats import lognorm

    rng = np.random.default_rng(15)
    runs, steps = 300, 80
    median, sigma = 40.0, 0.5
    probs = _lognormal_bucket_probs(median, sigma)
    for q in (0.5, 0.95, 0.99):
        truth = float(lognorm.ppf(q, s=sigma, scale=median))
        counts = np.zeros((runs, len(EDGES)))
        miss = np.zeros(runs, dtype=bool)
        for _ in range(steps):
            counts += rng.multinomial(rng.poisson(30, runs), probs).cumsum(axis=1)
            low, high = quantile_cs_bounds(counts, EDGES, q, ALPHA)
            miss |= (low >= truth) | (high < truth)
        assert miss.mean() <= ALPHA + 0.02, (q, miss.mean())


def test_quantile_cs_bounds_are_bucket_edges_around_the_estimate() -> None:
    rng = np.random.default_rng(16)
    hist = Histogram.from_samples(list(rng.lognormal(math.log(40), 0.35, 5000)))
    cs = quantile_cs(hist, 0.95, ALPHA)
    assert cs.low in LATENCY_BUCKETS_MS and cs.high in LATENCY_BUCKETS_MS
    assert cs.low < cs.estimate <= cs.high
    assert cs.low < 40 * math.exp(1.645 * 0.35) <= cs.high
    empty = quantile_cs(Histogram.empty(), 0.95, ALPHA)
    assert (empty.low, empty.high) == (0.0, math.inf) and math.isnan(empty.estimate)


# -- judge_rate ------------------------------------------------------------------------------


def test_judge_rate_fails_a_clear_error_regression_with_its_evidence() -> None:
    ev = judge_rate("error_rate", (33, 812), (66, 7301), "<=", 1.0, 0.0, ALPHA)
    assert ev.decision == "fail" and ev.passed is False
    assert ev.interval.low > 0 and ev.interval.contains(33 / 812 - 66 / 7301)
    assert ev.limit == pytest.approx(66 / 7301)
    assert (ev.n_candidate, ev.n_baseline) == (812, 7301)
    s = ev.statement
    for part in (
        "error_rate 4.1% (n=812)",
        "prev 0.9% (n=7,301)",
        "difference +3.2 pts",
        "95% anytime-valid CI",
        "→ fail",
    ):
        assert part in s, (part, s)
    assert str(ev) == s and "fail" in ev._repr_html_()


def test_judge_rate_passes_a_healthy_candidate_and_stays_inconclusive_on_a_tight_margin() -> None:
    ok = judge_rate("error_rate", (5, 5000), (400, 45000), "<=", 1.0, 0.01, ALPHA)
    assert ok.decision == "pass" and ok.interval.high <= 0.01 and "→ pass" in ok.statement
    tight = judge_rate("error_rate", (45, 5000), (400, 45000), "<=", 1.0, 0.0, ALPHA)
    assert tight.decision == "inconclusive" and "not enough data yet" in tight.statement


def test_judge_rate_accuracy_drop_and_absolute_gates() -> None:
    drop = judge_rate("accuracy", (850, 1000), (8550, 9000), ">=", 1.0, -0.02, ALPHA)
    assert drop.decision == "fail" and "required −2.0 pts" in drop.statement and "→ fail" in drop.statement
    same = judge_rate("accuracy", (2850, 3000), (8550, 9000), ">=", 1.0, -0.03, ALPHA)
    assert same.decision == "pass"
    absolute = judge_rate("error_rate", (100, 1000), None, "<=", 1.0, 0.05, ALPHA)
    assert absolute.decision == "fail" and absolute.baseline is None and absolute.limit == 0.05
    assert "allowed 5.0%" in absolute.statement and "prev" not in absolute.statement


def test_judge_rate_is_inconclusive_below_min_samples_and_without_data() -> None:
    few = judge_rate("error_rate", (5, 10), (0, 1000), "<=", 1.0, 0.0, ALPHA, min_samples=20)
    assert few.decision == "inconclusive" and "not enough data yet (need n ≥ 20" in few.statement
    none = judge_rate("error_rate", (0, 0), (0, 0), "<=", 1.0, 0.0, ALPHA)
    assert none.decision == "inconclusive" and math.isnan(none.candidate) and "no data yet" in none.statement
    assert (none.interval.low, none.interval.high) == (-1.0, 1.0)
    all_errors = judge_rate("error_rate", (50, 50), (1, 1000), "<=", 1.0, 0.01, ALPHA)
    assert all_errors.decision == "fail" and all_errors.interval.high > 0.99


def test_judge_rate_decision_is_monotone_in_candidate_errors() -> None:
    order = {"pass": 0, "inconclusive": 1, "fail": 2}
    ranks = [
        order[judge_rate("error_rate", (k, 2000), (90, 18000), "<=", 1.0, 0.005, ALPHA).decision]
        for k in range(0, 80, 4)
    ]
    assert ranks == sorted(ranks) and ranks[0] == 0 and ranks[-1] == 2


def test_gate_decisions_match_the_intervals() -> None:
    rng = np.random.default_rng(17)
    nc, nb = rng.integers(1, 400, 200), rng.integers(1, 3000, 200)
    xc, xb = rng.binomial(nc, 0.05), rng.binomial(nb, 0.03)
    low, high = rate_diff_cs_bounds(xc, nc, xb, nb, 1.0, ALPHA)
    for op, offset in (("<=", 0.0), ("<=", 0.02), (">=", -0.01)):
        d = rate_gate_decisions(xc, nc, xb, nb, op, 1.0, offset, ALPHA)
        bad, good = (low > offset, high < offset) if op == "<=" else (high < offset, low > offset)
        assert np.array_equal(d == -1, bad) and np.array_equal(d == 1, good)


def test_to_dict_is_json_friendly() -> None:
    ev = judge_rate("error_rate", (0, 0), None, "<=", 1.0, 0.05, ALPHA)
    doc = json.loads(json.dumps(ev.to_dict(), allow_nan=False))
    assert doc["candidate"] is None and doc["decision"] == "inconclusive" and doc["interval"]["level"] == 0.95
    q = judge_quantile("p95", 0.95, Histogram.empty(), Histogram.empty(), "<=", 1.2, 0.0, ALPHA)
    assert json.loads(json.dumps(q.to_dict(), allow_nan=False))["interval"]["high"] is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"candidate": (5, 3)}, "events <= trials"),
        ({"candidate": (-1, 3)}, "events <= trials"),
        ({"candidate": (math.nan, 3)}, "whole numbers"),
        ({"op": "=="}, "'<=' or '>='"),
        ({"alpha": 0.0}, "alpha"),
        ({"offset": math.nan}, "offset"),
        ({"factor": -1.0}, "factor"),
    ],
)
def test_judge_rate_rejects_bad_input(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {
        "metric": "error_rate", "candidate": (1, 10), "baseline": (1, 10), "op": "<=",
        "factor": 1.0, "offset": 0.0, "alpha": ALPHA,
    }
    args.update(kwargs)
    with pytest.raises(ValidationError, match=match):
        judge_rate(**args)  # type: ignore[arg-type]


# -- judge_quantile --------------------------------------------------------------------------


def _hist(rng: np.random.Generator, median: float, n: int, sigma: float = 0.35) -> Histogram:
    return Histogram.from_samples(list(rng.lognormal(math.log(median), sigma, n)))


def test_judge_quantile_fails_a_clear_latency_regression() -> None:
    rng = np.random.default_rng(18)
    base, slow = _hist(rng, 40, 20000), _hist(rng, 80, 3000)
    ev = judge_quantile("p95", 0.95, slow, base, "<=", 1.2, 0.0, ALPHA)
    assert ev.decision == "fail" and ev.interval.low >= 0
    assert ev.limit == pytest.approx(1.2 * base.quantile(0.95))
    assert "p95 " in ev.statement and "p95 − 1.2×prev" in ev.statement and " ms" in ev.statement
    assert "alpha split over 2 arms" in ev.method


def test_judge_quantile_passes_same_latency_with_margin_and_absolute_limit() -> None:
    rng = np.random.default_rng(19)
    base, same = _hist(rng, 40, 20000), _hist(rng, 40, 5000)
    assert judge_quantile("p95", 0.95, same, base, "<=", 2.0, 0.0, ALPHA).decision == "pass"
    assert judge_quantile("p50", 0.5, same, None, "<=", 1.0, 100.0, ALPHA).decision == "pass"
    assert judge_quantile("p50", 0.5, same, None, "<=", 1.0, 10.0, ALPHA).decision == "fail"


def test_judge_quantile_inconclusive_with_little_data_or_empty_histograms() -> None:
    rng = np.random.default_rng(20)
    few = judge_quantile("p95", 0.95, _hist(rng, 80, 10), _hist(rng, 40, 10000), "<=", 1.0, 0.0, ALPHA)
    assert few.decision == "inconclusive" and "not enough data yet" in few.statement
    empty = judge_quantile("p99", 0.99, Histogram.empty(), Histogram.empty(), "<=", 1.0, 0.0, ALPHA)
    assert empty.decision == "inconclusive" and math.isnan(empty.candidate) and "no data yet" in empty.statement
    assert isinstance(empty, Judgement) and isinstance(empty.interval, Interval)


def test_judge_quantile_rejects_mismatched_buckets_and_bad_quantiles() -> None:
    with pytest.raises(ValidationError, match="different buckets"):
        judge_quantile("p95", 0.95, Histogram.empty(), Histogram.empty((1, 2)), "<=", 1.0, 0.0, ALPHA)
    with pytest.raises(ValidationError, match="quantile"):
        judge_quantile("p95", 95, Histogram.empty(), None, "<=", 1.0, 0.0, ALPHA)


# -- Comparison.verdict states its evidence --------------------------------------------------


def _results(target: str, n: int, *, latency: list[float], errors: int = 0, start: int = 0) -> list[dict[str, object]]:
    return [
        {
            "target": target, "revision": None, "row": start + i, "repeat": 0, "input": [float(i)],
            "prediction": None if i < errors else 0, "status_code": 500 if i < errors else 200,
            "latency_ms": latency[i], "error": "HTTP 500: boom" if i < errors else None,
        }
        for i in range(n)
    ]


def test_verdict_states_intervals_sample_sizes_and_not_enough_data() -> None:
    from kserve_nb.analysis.compare import compare
    from kserve_nb.analysis.frames import results_frame

    rng = np.random.default_rng(22)
    lat = list(rng.lognormal(3, 0.3, 400))
    big = results_frame(_results("latest", 400, latency=lat, errors=40) + _results("prev", 400, latency=lat))
    v = compare(big).verdict(max_error_rate=0.01, max_p95_latency_ms=100)
    err = next(c for c in v.checks if c.name == "error rate")
    assert err.passed is False and err.evidence is not None and err.evidence.decision == "fail"
    assert "95% anytime-valid CI [" in err.detail and "n=400" in err.detail and "beyond the limit" in err.detail
    p95 = next(c for c in v.checks if c.name == "p95 latency")
    assert p95.passed is True and p95.evidence is not None and "ms, n=360" in p95.detail
    assert [e.metric for e in v.evidence] == ["error_rate", "p95"]
    assert v.evidence[0].decision == "fail" and "difference +10.0 pts" in v.evidence[0].statement
    assert "vs baseline: error_rate 10.0% (n=400)" in repr(v) and "Candidate vs baseline" in v._repr_html_()

    small = results_frame(_results("latest", 8, latency=lat) + _results("prev", 8, latency=lat))
    w = compare(small).verdict(max_error_rate=0.05, max_p95_latency_ms=100)
    assert w.promote and set(w.unsure) == {"error rate", "p95 latency"}
    assert "not enough data yet to be sure of: error rate, p95 latency" in repr(w)
    assert all("not enough data yet" in e.statement for e in w.evidence)
