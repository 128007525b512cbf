"""Calibration of canary gates under continuous monitoring, side by side on the same simulated streams.

Each simulated rollout sends 50–200 req/s (drawn per rollout) with 10 % to the canary, and every
gate is checked every 5 s on the counts since the canary started, for 15 minutes (180 checks).
Latencies are lognormal (median 20–80 ms, sigma 0.3–0.5) and reach every method only as the
Prometheus histogram over ``LATENCY_BUCKETS_MS`` (what a real gate sees); the baseline error rate
is 0.5–1 %; a quarter of the requests carry a label (accuracy 95 %).

Methods (all judge only once a side has at least 20 samples of the metric):

- sequential, zero margin: ``kserve_nb.analysis.sequential`` on ``error_rate<=prev``,
  ``p95<=1.0*prev``, ``accuracy>=prev``.
- sequential, margins: the same on ``error_rate<=prev+0.01``, ``p95<=1.2*prev``, ``accuracy>=prev-0.02``.
- per-arm CSs at alpha/2: zero-margin rate gates from two one-sample confidence sequences (what the
  direct two-sample sequence is measured against; latency is per-arm in both, so not repeated).
- Flagger-style threshold gate: point estimates at every check — success rate >= 99 %, p95 <= 1.2 x
  the baseline's p95 (PromQL's ``histogram_quantile``), accuracy >= baseline - 2 points.
- fixed-horizon tests, peeking: one-sided chi-square (two-proportion z) for errors and accuracy and
  one-sided Mann–Whitney U (tie-corrected, on the bucketed latencies) at alpha, at every check.
- fixed-horizon tests, once: the same tests only at 5 minutes (check 60).

Table 1: A/A false-alarm rate over 1,000 rollouts (candidate identical to baseline), per gate and
for the whole gate set. Table 2: for injected regressions (errors +2 points; latency x1.5; accuracy
95 % -> 85 %), on 1,000 rollouts each, the share detected by the regression's own gate within the
15 minutes and the canary requests served before detection (median, p90; "never" when fewer than
that share of rollouts detected it). Table 3: how soon the sequential gates confirm (pass) a healthy
candidate in the A/A rollouts — a zero-margin gate never can, and a margin narrower than the
histogram's buckets around the p95 rarely can.

Run: ``python benchmarks/bench_canary_judge.py [--rollouts N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import lognorm, norm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kserve_nb.analysis.sequential import (
    quantile_gate_decisions,
    rate_cs_bounds,
    rate_gate_decisions,
)
from kserve_nb.metrics.sample import Histogram

ALPHA = 0.05
INTERVAL_S = 5
CHECKS = 180
FIXED_CHECK = 60
CANARY_SHARE = 0.10
LABELLED_SHARE = 0.25
MIN_SAMPLES = 20
EDGES = np.array(Histogram.empty().bounds)

METHODS = [
    ("sequential, zero margin (ours)", "seq0"),
    ("sequential, margins (ours)", "seqm"),
    ("per-arm CSs at alpha/2, zero margin", "split"),
    ("Flagger-style threshold gate", "flagger"),
    ("fixed-horizon tests, peeking", "peek"),
    ("fixed-horizon tests, once at 5 min", "once"),
]
GATES = ("errors", "p95", "accuracy")
SCENARIOS = [
    ("A/A", None),
    ("errors +2 pts", "errors"),
    ("latency x1.5", "p95"),
    ("accuracy 95%->85%", "accuracy"),
]


@dataclass
class Arm:
    """Cumulative counts of one side in every simulated rollout."""

    rollouts: int
    requests: np.ndarray = field(init=False)
    errors: np.ndarray = field(init=False)
    labelled: np.ndarray = field(init=False)
    correct: np.ndarray = field(init=False)
    buckets: np.ndarray = field(init=False)  # per-bucket (not cumulative) latency counts

    def __post_init__(self) -> None:
        z = np.zeros(self.rollouts)
        self.requests, self.errors, self.labelled, self.correct = z.copy(), z.copy(), z.copy(), z.copy()
        self.buckets = np.zeros((self.rollouts, len(EDGES)))

    def add(self, rng: np.random.Generator, n: np.ndarray, err: np.ndarray, acc: np.ndarray, probs: np.ndarray) -> None:
        self.requests += n
        self.errors += rng.binomial(n, err)
        lab = rng.binomial(n, LABELLED_SHARE)
        self.labelled += lab
        self.correct += rng.binomial(lab, acc)
        self.buckets += rng.multinomial(n, probs)

    @property
    def cumulative(self) -> np.ndarray:
        return np.cumsum(self.buckets, axis=1)


def bucket_probs(median: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    cdf = lognorm.cdf(EDGES[None, :], s=sigma[:, None], scale=median[:, None])
    p = np.diff(np.concatenate([np.zeros((len(median), 1)), cdf], axis=1), axis=1)
    return p / p.sum(axis=1, keepdims=True)


def histogram_quantile(cum: np.ndarray, q: float) -> np.ndarray:
    """PromQL's histogram_quantile over rows of cumulative counts (what Flagger reads)."""
    total = cum[:, -1]
    rank = q * total
    idx = np.argmax(cum >= rank[:, None], axis=1)
    upper = EDGES[idx]
    lower = np.where(idx > 0, EDGES[np.maximum(idx - 1, 0)], 0.0)
    c_hi = cum[np.arange(len(cum)), idx]
    c_lo = np.where(idx > 0, cum[np.arange(len(cum)), np.maximum(idx - 1, 0)], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        est = lower + (upper - lower) * (rank - c_lo) / (c_hi - c_lo)
    est = np.where(np.isinf(upper), EDGES[-2], est)
    return np.where(total > 0, est, np.nan)


def z_worse(xc: np.ndarray, nc: np.ndarray, xb: np.ndarray, nb: np.ndarray, higher_is_worse: bool) -> np.ndarray:
    """One-sided two-proportion z-test (the signed chi-square test): p < alpha and the candidate worse."""
    with np.errstate(invalid="ignore", divide="ignore"):
        pool = (xc + xb) / (nc + nb)
        se = np.sqrt(pool * (1 - pool) * (1 / nc + 1 / nb))
        z = (xc / nc - xb / nb) / se
    z = np.where(se > 0, z, 0.0)
    return np.asarray(norm.sf(z if higher_is_worse else -z) < ALPHA)


def mann_whitney_slower(c: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One-sided Mann–Whitney U from per-bucket counts (ties within a bucket), normal approximation
    with tie correction: p < alpha that the candidate is slower."""
    nc, nb = c.sum(axis=1), b.sum(axis=1)
    below = np.cumsum(b, axis=1) - b
    u = (c * (below + 0.5 * b)).sum(axis=1)
    t = c + b
    n = nc + nb
    with np.errstate(invalid="ignore", divide="ignore"):
        var = nc * nb / 12.0 * ((n + 1) - (t**3 - t).sum(axis=1) / (n * (n - 1)))
        z = (u - nc * nb / 2.0) / np.sqrt(var)
    z = np.where(var > 0, z, 0.0)
    return np.asarray(norm.sf(z) < ALPHA)


def decisions(method: str, gate: str, c: Arm, b: Arm) -> np.ndarray:
    """This method's gate at this check, per rollout: -1 fail, +1 pass (sequential only), 0 neither
    (before the min-sample rule)."""
    if method in ("seq0", "seqm"):
        return sequential(method, gate, c, b)
    return np.where(fails(method, gate, c, b), -1, 0)


def sequential(method: str, gate: str, c: Arm, b: Arm) -> np.ndarray:
    """kserve_nb.analysis.sequential's decisions: exactly what judge_rate / judge_quantile decide."""
    zero = method == "seq0"
    if gate == "errors":
        return rate_gate_decisions(c.errors, c.requests, b.errors, b.requests, "<=", 1.0, 0.0 if zero else 0.01, ALPHA)
    if gate == "accuracy":
        return rate_gate_decisions(
            c.correct, c.labelled, b.correct, b.labelled, ">=", 1.0, 0.0 if zero else -0.02, ALPHA
        )
    return quantile_gate_decisions(c.cumulative, b.cumulative, EDGES, 0.95, "<=", 1.0 if zero else 1.2, 0.0, ALPHA)


def fails(method: str, gate: str, c: Arm, b: Arm) -> np.ndarray:
    """Which rollouts a comparison method's gate fails at this check."""
    if gate == "errors":
        xc, nc, xb, nb = c.errors, c.requests, b.errors, b.requests
        if method == "split":
            low_c, _ = rate_cs_bounds(xc, nc, ALPHA / 2)
            _, high_b = rate_cs_bounds(xb, nb, ALPHA / 2)
            return low_c > high_b
        if method == "flagger":
            return xc / np.maximum(nc, 1) > 0.01
        return z_worse(xc, nc, xb, nb, higher_is_worse=True)
    if gate == "accuracy":
        xc, nc, xb, nb = c.correct, c.labelled, b.correct, b.labelled
        if method == "split":
            _, high_c = rate_cs_bounds(xc, nc, ALPHA / 2)
            low_b, _ = rate_cs_bounds(xb, nb, ALPHA / 2)
            return high_c < low_b
        if method == "flagger":
            return xc / np.maximum(nc, 1) < xb / np.maximum(nb, 1) - 0.02
        return z_worse(xc, nc, xb, nb, higher_is_worse=False)
    # p95
    if method == "split":
        return np.zeros(c.rollouts, dtype=bool)
    if method == "flagger":
        return histogram_quantile(c.cumulative, 0.95) > 1.2 * histogram_quantile(b.cumulative, 0.95)
    return mann_whitney_slower(c.buckets, b.buckets)


def samples(gate: str, arm: Arm) -> np.ndarray:
    return arm.labelled if gate == "accuracy" else arm.requests


Firsts = dict[tuple[str, str], np.ndarray]


def simulate(rollouts: int, rng: np.random.Generator, regression: str | None) -> tuple[Firsts, Firsts]:
    """Canary requests served at the first failing and at the first passing check, per (method,
    gate); ``inf`` when never."""
    rate = rng.uniform(50, 200, rollouts)
    err = rng.uniform(0.005, 0.01, rollouts)
    acc = np.full(rollouts, 0.95)
    median, sigma = rng.uniform(20, 80, rollouts), rng.uniform(0.3, 0.5, rollouts)
    base_probs = bucket_probs(median, sigma)
    cand_err = err + (0.02 if regression == "errors" else 0.0)
    cand_acc = acc - (0.10 if regression == "accuracy" else 0.0)
    cand_probs = bucket_probs(median * (1.5 if regression == "p95" else 1.0), sigma)
    c, b = Arm(rollouts), Arm(rollouts)
    gates = GATES if regression is None else (regression,)
    first = {(m, g): np.full(rollouts, np.inf) for _, m in METHODS for g in gates}
    passed = {(m, g): np.full(rollouts, np.inf) for _, m in METHODS for g in gates}
    for check in range(1, CHECKS + 1):
        c.add(rng, rng.poisson(rate * CANARY_SHARE * INTERVAL_S), cand_err, cand_acc, cand_probs)
        b.add(rng, rng.poisson(rate * (1 - CANARY_SHARE) * INTERVAL_S), err, acc, base_probs)
        for _, m in METHODS:
            if m == "once" and check != FIXED_CHECK:
                continue
            for g in gates:
                if m == "split" and g == "p95":
                    continue
                todo = np.isinf(first[m, g]) & (samples(g, c) >= MIN_SAMPLES) & (samples(g, b) >= MIN_SAMPLES)
                if not todo.any():
                    continue
                d = decisions(m, g, c, b)
                first[m, g] = np.where(todo & (d == -1), c.requests, first[m, g])
                passed[m, g] = np.where(todo & (d == 1) & np.isinf(passed[m, g]), c.requests, passed[m, g])
    return first, passed


def pct(x: float) -> str:
    return f"{x:6.1%}"


def exposure(x: np.ndarray, q: float) -> str:
    # An order statistic, so rollouts that never detected (inf) count as the slowest ones.
    v = float(np.sort(x)[max(0, math.ceil(q / 100 * len(x)) - 1)])
    return "never" if math.isinf(v) else f"{v:,.0f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rollouts", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=20261202)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    runs = {name: simulate(args.rollouts, rng, reg) for name, reg in SCENARIOS}
    results = {name: r[0] for name, r in runs.items()}
    elapsed = time.perf_counter() - t0

    print(
        f"{args.rollouts:,} simulated rollouts per scenario: 50-200 req/s, {CANARY_SHARE:.0%} canary, "
        f"gates checked every {INTERVAL_S} s for {CHECKS * INTERVAL_S // 60} min ({CHECKS} checks), alpha={ALPHA}"
    )
    print(f"\nA/A false-alarm rate under continuous monitoring (target <= {ALPHA:.0%})")
    head = f"{'method':<38}" + "".join(f"{g:>10}" for g in (*GATES, "any gate"))
    print(head)
    print("-" * len(head))
    aa = results["A/A"]
    for label, m in METHODS:
        cells = []
        any_fail = np.zeros(args.rollouts, dtype=bool)
        for g in GATES:
            if m == "split" and g == "p95":
                cells.append(f"{'-':>10}")
                continue
            f = np.isfinite(aa[m, g])
            any_fail |= f
            cells.append(f"{pct(f.mean()):>10}")
        cells.append(f"{pct(any_fail.mean()):>10}")
        print(f"{label:<38}" + "".join(cells))

    print("\nInjected regressions: detected within 15 min; canary requests served before detection (median / p90)")
    head = f"{'method':<38}" + "".join(f"{name:>26}" for name, reg in SCENARIOS if reg)
    print(head)
    print("-" * len(head))
    for label, m in METHODS:
        cells = []
        for name, reg in SCENARIOS:
            if reg is None:
                continue
            if m == "split" and reg == "p95":
                cells.append(f"{'-':>26}")
                continue
            x = results[name][m, reg]
            cell = f"{pct(np.isfinite(x).mean())} {exposure(x, 50)} / {exposure(x, 90)}"
            cells.append(f"{cell:>26}")
        print(f"{label:<38}" + "".join(cells))

    print(
        "\nA/A: healthy candidate confirmed (the gate passes) within 15 min; canary requests before it (median / p90)"
    )
    head = f"{'method':<38}" + "".join(f"{g:>26}" for g in GATES)
    print(head)
    print("-" * len(head))
    for label, m in METHODS[:2]:
        cells = []
        for g in GATES:
            x = runs["A/A"][1][m, g]
            cell = f"{pct(np.isfinite(x).mean())} {exposure(x, 50)} / {exposure(x, 90)}"
            cells.append(f"{cell:>26}")
        print(f"{label:<38}" + "".join(cells))
    print(f"\n({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
