"""Anytime-valid verdicts: confidence sequences a gate may check after every interval.

A rollout gate is evaluated again and again on cumulative counts while the canary runs. A
fixed-horizon test (a p-value below 0.05, or a point estimate against a threshold) checked that
way raises a false alarm with a probability that grows towards 1 the longer it is watched. The
intervals here are *confidence sequences*: ``P(the truth leaves the interval at ANY time) <= alpha``,
however often and however long they are looked at, with batches of any size arriving in any order.

The construction (derived here; the ideas are Robbins' mixture martingales, Ville's inequality,
Wald's likelihood ratios, and their modern treatment by Howard, Ramdas, McAuliffe & Sekhon,
"Time-uniform, nonparametric, nonasymptotic confidence sequences", 2021; Wasserman, Ramdas &
Balakrishnan, "Universal inference", 2020; Howard & Ramdas, "Sequential estimation of quantiles",
2022; Lindon, Sanden & Shirikian, Netflix, "Rapid regression detection in software deployments
through sequential testing", 2022):

* **Ville's inequality.** A non-negative (super)martingale ``M`` with ``M_0 = 1`` crosses ``1/alpha``
  at any time with probability at most ``alpha``. Everything below is such an ``M`` (an e-process),
  and a value is excluded from the interval once its ``M`` has crossed.
* **One rate** (:func:`rate_cs`): for Bernoulli outcomes with mean ``p``, the Beta-mixed likelihood
  ratio ``M_n(p) = ∫ L_n(θ) dBeta(θ) / L_n(p)`` is a martingale under ``p`` (Robbins). With ``S``
  successes in ``n`` trials it is ``B(a+S, b+n-S) / B(a, b) / (p^S (1-p)^(n-S))`` in closed form; the
  set ``{p : M_n(p) < 1/alpha}`` is an interval (the log-likelihood is concave) around ``S/n``.
* **A difference of two rates** (:func:`rate_diff_cs`, used by :func:`judge_rate`): for
  ``delta = p_c - f * p_b`` the numerator mixes *both* arms' likelihoods and the denominator is the
  likelihood *maximised* over the null slice ``{p_c - f p_b = delta}`` (universal inference). The
  maximum is at least the likelihood of the true pair, so the ratio is below a martingale and Ville
  applies; the profile likelihood is concave in ``delta``, so the set is again an interval. One
  two-sample sequence at full ``alpha`` is tighter than two one-sample sequences at ``alpha/2``
  combined (widths add in quadrature rather than linearly) — ``benchmarks/bench_canary_judge.py``
  shows both.
* **A quantile from a histogram** (:func:`quantile_cs`): bucket edge ``b`` has ``count(b) ~
  Binomial(n, F(b))`` and ``xi_q <= b  iff  F(b) >= q``. A one-sided mixture (prior truncated to one
  side of ``q``) tests ``F(b) >= q`` at each edge; its rejection region is ``{count(b) <= c_n}``, so a
  wrong claim at any edge above the true quantile implies a wrong claim at the one edge just above
  it. No union bound over edges is needed: each side of the interval costs one test at ``alpha/2``.
  The bounds are bucket edges: ``low < xi_q <= high``.

Pure: numpy and scipy only. The array functions (``*_bounds``, ``rate_gate_decisions``) take
numpy arrays so a benchmark can run thousands of rollouts at once through the same code as the
scalar API.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import betainc, betaln, xlog1py, xlogy

from kserve_nb.errors import ValidationError
from kserve_nb.metrics.sample import Histogram

#: Beta prior of the mixtures: Jeffreys' Beta(1/2, 1/2), which keeps mass near 0 and 1, where error
#: rates and accuracies live, so a healthy revision's interval tightens quickly.
PRIOR: tuple[float, float] = (0.5, 0.5)

#: Default minimum candidate sample before a gate may pass or fail (an interval is valid with less,
#: but a verdict on a handful of requests tells a user little).
MIN_SAMPLES = 20

_OPS = {"<=": "<=", "<": "<=", ">=": ">=", ">": ">="}
_FloatArray = NDArray[np.float64]


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """An anytime-valid confidence interval: the confidence sequence's value at this time.

    ``level = 1 - alpha`` is the probability that the true value stays inside the interval at every
    time at once. ``estimate`` is the point estimate (NaN without data).
    """

    low: float
    high: float
    estimate: float
    level: float

    def contains(self, x: float) -> bool:
        """True when ``x`` lies in ``[low, high]``."""
        return self.low <= x <= self.high

    @property
    def width(self) -> float:
        """``high - low`` (``inf`` when unbounded)."""
        return self.high - self.low

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly: non-finite numbers become None (unbounded side or no data)."""
        return {"low": _json(self.low), "high": _json(self.high), "estimate": _json(self.estimate), "level": self.level}


@dataclass(frozen=True)
class Judgement:
    """One gate's verdict with everything it rests on.

    Attributes
    ----------
    metric:
        ``"error_rate"``, ``"p95"``, ``"accuracy"``…
    decision:
        ``"pass"`` when the interval shows the condition holds, ``"fail"`` when it shows it is
        violated, ``"inconclusive"`` otherwise (including "not enough data yet").
    candidate, baseline:
        Point estimates (NaN without data; baseline None for an absolute gate).
    limit:
        The threshold the condition resolves to at the baseline's point estimate
        (``factor * baseline + offset``, or ``offset``).
    interval:
        Anytime-valid interval of the compared quantity ``candidate - factor * baseline`` (or of the
        candidate alone for an absolute gate); the gate compares it with ``offset``.
    n_candidate, n_baseline:
        Sample sizes (trials, or histogram observations).
    method:
        How the interval was built.
    statement:
        One human line: values, interval, sample sizes, level and decision.
    op, factor, offset:
        The condition ``candidate OP factor * baseline + offset``.
    """

    metric: str
    decision: str
    candidate: float
    baseline: float | None
    limit: float | None
    interval: Interval
    n_candidate: int
    n_baseline: int | None
    method: str
    statement: str
    op: str = "<="
    factor: float = 1.0
    offset: float = 0.0

    @property
    def passed(self) -> bool | None:
        """True for pass, False for fail, None for inconclusive."""
        return {"pass": True, "fail": False}.get(self.decision)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view for evidence records (non-finite numbers become None)."""
        return {
            "metric": self.metric,
            "decision": self.decision,
            "candidate": _json(self.candidate),
            "baseline": None if self.baseline is None else _json(self.baseline),
            "limit": None if self.limit is None else _json(self.limit),
            "interval": self.interval.to_dict(),
            "n_candidate": self.n_candidate,
            "n_baseline": self.n_baseline,
            "op": self.op,
            "factor": self.factor,
            "offset": self.offset,
            "method": self.method,
            "statement": self.statement,
        }

    def __str__(self) -> str:
        return self.statement

    def _repr_html_(self) -> str:
        color = {"pass": "#2e7d32", "fail": "#c62828"}.get(self.decision, "#8d6e00")
        return (
            f"<div class='kserve-nb-evidence'><b style='color:{color}'>{html.escape(self.decision)}</b> "
            f"{html.escape(self.statement)}<br><small>{html.escape(self.method)}</small></div>"
        )


def _json(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


# --------------------------------------------------------------------------------------------
# One rate
# --------------------------------------------------------------------------------------------


def _log_mix(s: ArrayLike, n: ArrayLike, prior: tuple[float, float] = PRIOR) -> _FloatArray:
    """log of the Beta-mixed likelihood of a sequence with ``s`` successes in ``n`` trials."""
    a, b = prior
    s_, n_ = np.asarray(s, dtype=float), np.asarray(n, dtype=float)
    return np.asarray(betaln(a + s_, b + n_ - s_) - betaln(a, b), dtype=float)


def _loglik(s: ArrayLike, n: ArrayLike, p: ArrayLike) -> _FloatArray:
    """Bernoulli log-likelihood ``s log p + (n-s) log(1-p)`` (0·log 0 = 0; -inf off support)."""
    s_, n_, p_ = np.asarray(s, dtype=float), np.asarray(n, dtype=float), np.asarray(p, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(xlogy(s_, p_) + xlog1py(n_ - s_, -p_), dtype=float)


def _bisect(fn: Any, lo: _FloatArray, hi: _FloatArray, iters: int = 60) -> tuple[_FloatArray, _FloatArray]:
    """Vectorised bisection for ``fn`` true at ``lo`` and false at ``hi`` (monotone in between);
    returns the bracket ``(last true, first false)``."""
    lo, hi = lo.copy(), hi.copy()
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        ok = fn(mid)
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid)
    return lo, hi


def rate_cs_bounds(
    successes: ArrayLike, trials: ArrayLike, alpha: float, prior: tuple[float, float] = PRIOR
) -> tuple[_FloatArray, _FloatArray]:
    """Array form of :func:`rate_cs`: ``(low, high)`` for each pair of counts (``[0, 1]`` at 0 trials)."""
    s = np.atleast_1d(np.asarray(successes, dtype=float))
    n = np.atleast_1d(np.asarray(trials, dtype=float))
    s, n = np.broadcast_arrays(s, n)
    p_hat = np.where(n > 0, s / np.where(n > 0, n, 1.0), 0.5)
    # p is inside while log L_n(p) > log(mixture) - log(1/alpha); L is concave with its top at p_hat.
    floor = _log_mix(s, n, prior) - math.log(1.0 / alpha)

    def inside(p: _FloatArray) -> NDArray[np.bool_]:
        return np.asarray(_loglik(s, n, p) > floor)

    zeros, ones = np.zeros_like(p_hat), np.ones_like(p_hat)
    # low: the first inside point walking up from 0 (outside below, inside at p_hat)
    _, low = _bisect(lambda p: ~inside(p), zeros, p_hat)
    high, _ = _bisect(inside, p_hat, ones)
    low = np.where(inside(zeros), 0.0, low)
    high = np.where(inside(ones), 1.0, high)
    return low, high


def rate_cs(successes: int, trials: int, alpha: float, prior: tuple[float, float] = PRIOR) -> Interval:
    """Anytime-valid confidence interval for a Bernoulli mean after ``successes`` of ``trials``.

    Robbins' Beta-binomial mixture confidence sequence: ``P(∃ n: p ∉ interval_n) <= alpha``, so it
    may be recomputed after every batch of an unbounded stream. ``[0, 1]`` with no trials.
    """
    _check_counts("rate_cs", successes, trials)
    _check_alpha(alpha)
    low, high = rate_cs_bounds(successes, trials, alpha, prior)
    est = successes / trials if trials else math.nan
    return Interval(float(low[0]), float(high[0]), est, 1.0 - alpha)


# --------------------------------------------------------------------------------------------
# Difference of two rates
# --------------------------------------------------------------------------------------------


def _profile(
    d: _FloatArray, xc: _FloatArray, nc: _FloatArray, xb: _FloatArray, nb: _FloatArray, f: float
) -> _FloatArray:
    """max over ``p_c - f p_b = d`` of the two arms' joint log-likelihood (-inf when infeasible).

    The objective is concave in ``p_b`` on the feasible segment, so a Newton iteration safeguarded
    by bisection on its derivative finds the maximum; both segment ends are compared as well
    because the maximum sits on an end when a count is zero.
    """
    A, B, C, D = xc, nc - xc, xb, nb - xb
    lo = np.maximum(0.0, -d / f)
    hi = np.minimum(1.0, (1.0 - d) / f)
    feasible = lo <= hi
    lo, hi = np.where(feasible, lo, 0.0), np.where(feasible, np.maximum(lo, hi), 1.0)
    seg_lo, seg_hi = lo.copy(), hi.copy()

    def objective(pb: _FloatArray) -> _FloatArray:
        return _loglik(A, A + B, f * pb + d) + _loglik(C, C + D, pb)

    def term(k: _FloatArray, x: _FloatArray, power: int) -> _FloatArray:
        return np.where(k > 0, k / np.where(k > 0, x, 1.0) ** power, 0.0)

    x = 0.5 * (lo + hi)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for _ in range(40):
            pc = f * x + d
            grad = f * (term(A, pc, 1) - term(B, 1.0 - pc, 1)) + term(C, x, 1) - term(D, 1.0 - x, 1)
            curv = -(f * f) * (term(A, pc, 2) + term(B, 1.0 - pc, 2)) - term(C, x, 2) - term(D, 1.0 - x, 2)
            up = grad > 0
            lo = np.where(up, x, lo)
            hi = np.where(up, hi, x)
            step = x - grad / curv
            ok = (step >= lo) & (step <= hi)
            nxt = np.where(ok, step, 0.5 * (lo + hi))
            if np.all(np.abs(nxt - x) <= 1e-15):
                x = nxt
                break
            x = nxt
        best = np.maximum(objective(x), np.maximum(objective(seg_lo), objective(seg_hi)))
    return np.where(feasible, np.nan_to_num(best, nan=-np.inf), -np.inf)


def _diff_floor(xc: _FloatArray, nc: _FloatArray, xb: _FloatArray, nb: _FloatArray, alpha: float) -> _FloatArray:
    return _log_mix(xc, nc) + _log_mix(xb, nb) - math.log(1.0 / alpha)


def _as_counts(*arrays: ArrayLike) -> list[_FloatArray]:
    as_float = [np.atleast_1d(np.asarray(a, dtype=float)) for a in arrays]
    return [np.asarray(a, dtype=float) for a in np.broadcast_arrays(*as_float)]


def rate_diff_cs_bounds(
    xc: ArrayLike, nc: ArrayLike, xb: ArrayLike, nb: ArrayLike, factor: float, alpha: float
) -> tuple[_FloatArray, _FloatArray]:
    """Array form of :func:`rate_diff_cs`: ``(low, high)`` of ``p_c - factor * p_b``."""
    c_x, c_n, b_x, b_n = _as_counts(xc, nc, xb, nb)
    f = float(factor)
    d_hat = _rate_hat(c_x, c_n) - f * _rate_hat(b_x, b_n)
    floor = _diff_floor(c_x, c_n, b_x, b_n, alpha)

    def inside(d: _FloatArray) -> NDArray[np.bool_]:
        return np.asarray(_profile(d, c_x, c_n, b_x, b_n, f) > floor)

    dmin, dmax = np.full_like(d_hat, -f), np.ones_like(d_hat)
    _, low = _bisect(lambda d: ~inside(d), dmin, d_hat, iters=45)
    high, _ = _bisect(inside, d_hat, dmax, iters=45)
    low = np.where(inside(dmin), -f, low)
    high = np.where(inside(dmax), 1.0, high)
    return low, high


def _rate_hat(x: _FloatArray, n: _FloatArray) -> _FloatArray:
    # Without trials the estimate is arbitrary; 1/2 keeps the intervals' search centred.
    return np.where(n > 0, x / np.where(n > 0, n, 1.0), 0.5)


def rate_diff_cs(
    candidate: tuple[int, int], baseline: tuple[int, int], factor: float, alpha: float
) -> Interval:
    """Anytime-valid confidence interval for ``p_candidate - factor * p_baseline``.

    ``candidate`` and ``baseline`` are ``(events, trials)``. One two-sample sequence at level
    ``1 - alpha`` (Beta mixtures over both arms against the profile likelihood of each difference).
    """
    _check_counts("candidate", *candidate)
    _check_counts("baseline", *baseline)
    _check_alpha(alpha)
    if not (math.isfinite(factor) and factor > 0):
        raise ValidationError(f"factor must be a positive number, got {factor!r}")
    low, high = rate_diff_cs_bounds(candidate[0], candidate[1], baseline[0], baseline[1], factor, alpha)
    est = _ratio(*candidate) - factor * _ratio(*baseline)
    return Interval(float(low[0]), float(high[0]), est, 1.0 - alpha)


def rate_gate_decisions(
    xc: ArrayLike,
    nc: ArrayLike,
    xb: ArrayLike | None,
    nb: ArrayLike | None,
    op: str,
    factor: float,
    offset: float,
    alpha: float,
) -> NDArray[np.int8]:
    """Array form of :func:`judge_rate`'s decision: ``+1`` pass, ``-1`` fail, ``0`` inconclusive.

    Tests the single boundary value ``offset`` of the confidence sequence (outside the interval and
    on which side of the estimate), which is exactly "the interval lies above / below ``offset``"
    without computing the interval's ends. ``min_samples`` is the caller's business.
    """
    op = _check_op(op)
    if xb is None or nb is None or factor == 0:
        c_x, c_n = _as_counts(xc, nc)
        d_hat = _rate_hat(c_x, c_n)
        excluded = _loglik(c_x, c_n, np.clip(offset, 0.0, 1.0)) <= _log_mix(c_x, c_n) - math.log(1.0 / alpha)
        span = (0.0, 1.0)
    else:
        c_x, c_n, b_x, b_n = _as_counts(xc, nc, xb, nb)
        d_hat = _rate_hat(c_x, c_n) - factor * _rate_hat(b_x, b_n)
        prof = _profile(np.full_like(d_hat, offset), c_x, c_n, b_x, b_n, factor)
        excluded = prof <= _diff_floor(c_x, c_n, b_x, b_n, alpha)
        span = (-factor, 1.0)
    # An offset outside the attainable range is excluded by construction.
    if not span[0] <= offset <= span[1]:
        excluded = np.ones_like(d_hat, dtype=bool)
    above = excluded & (d_hat > offset)  # the whole interval is above offset
    below = excluded & (d_hat < offset)
    if offset > span[1]:
        below = np.ones_like(d_hat, dtype=bool)
    if offset < span[0]:
        above = np.ones_like(d_hat, dtype=bool)
    out = np.zeros(d_hat.shape, dtype=np.int8)
    if op == "<=":
        out[above] = -1
        out[below] = 1
    else:
        out[below] = -1
        out[above] = 1
    return out


# --------------------------------------------------------------------------------------------
# Quantiles from histograms
# --------------------------------------------------------------------------------------------


#: Strength ``m`` of the quantile tests' Beta(q m, (1-q) m) prior: centred on ``q`` so its mass sits
#: on the alternatives that matter (the CDF at an edge a little below or above ``q``).
QUANTILE_PRIOR_STRENGTH = 40.0


def _one_sided_claims(
    counts: _FloatArray, total: _FloatArray, q: float, alpha_side: float
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Per edge: (claim ``F(b) < q``, claim ``F(b) >= q``), each a one-sided mixture test at ``alpha_side``.

    The "below" statistic mixes ``θ`` over ``(0, q)`` only, so it is a supermartingale under every
    ``F(b) >= q`` and decreases in the count; the "above" one mixes over ``(q, 1)``.
    """
    a, b = q * QUANTILE_PRIOR_STRENGTH, (1.0 - q) * QUANTILE_PRIOR_STRENGTH
    s, n = counts, total
    base = betaln(a + s, b + n - s) - betaln(a, b) - _loglik(s, n, q)
    with np.errstate(divide="ignore"):
        below = base + np.log(betainc(a + s, b + n - s, q)) - math.log(float(betainc(a, b, q)))
        above = base + np.log(betainc(b + n - s, a + s, 1.0 - q)) - math.log(float(betainc(b, a, 1.0 - q)))
    threshold = math.log(1.0 / alpha_side)
    return below >= threshold, above >= threshold


def quantile_cs_bounds(
    counts: ArrayLike, bounds: ArrayLike, q: float, alpha: float
) -> tuple[_FloatArray, _FloatArray]:
    """Array form of :func:`quantile_cs` over rows of cumulative ``counts`` (``(..., len(bounds))``).

    Returns ``(low, high)`` bucket edges with ``low < quantile <= high`` (``0`` and ``inf`` when a
    side is not yet bounded).
    """
    c = np.asarray(counts, dtype=float)
    edges = np.asarray(bounds, dtype=float)
    total = c[..., -1:]
    below, above = _one_sided_claims(c, total, q, alpha / 2.0)
    # Claims are monotone along the edges (cumulative counts only grow), so the last "below" edge
    # and the first "above" edge are the bounds.
    low = np.where(below, edges, 0.0).max(axis=-1)
    high = np.where(above, edges, np.inf).min(axis=-1)
    return low, high


def quantile_cs(hist: Histogram, q: float, alpha: float) -> Interval:
    """Anytime-valid confidence interval (ms) for the ``q`` quantile of the latencies in ``hist``.

    The bounds are bucket edges: the quantile is above ``low`` and at most ``high`` (``inf`` while
    the data cannot bound it from above), simultaneously for every time with probability
    ``1 - alpha``. ``estimate`` is PromQL's interpolated ``histogram_quantile``.
    """
    _check_q(q)
    _check_alpha(alpha)
    low, high = quantile_cs_bounds(np.asarray(hist.counts, dtype=float), hist.bounds, q, alpha)
    return Interval(float(low), float(high), hist.quantile(q), 1.0 - alpha)


def quantile_gate_decisions(
    candidate_counts: ArrayLike,
    baseline_counts: ArrayLike | None,
    bounds: ArrayLike,
    q: float,
    op: str,
    factor: float,
    offset: float,
    alpha: float,
) -> NDArray[np.int8]:
    """Array form of :func:`judge_quantile`'s decision over rows of cumulative bucket counts:
    ``+1`` pass, ``-1`` fail, ``0`` inconclusive (``min_samples`` is the caller's business)."""
    op = _check_op(op)
    two = baseline_counts is not None and factor > 0
    arm_alpha = alpha / 2.0 if two else alpha
    c_low, c_high = quantile_cs_bounds(candidate_counts, bounds, q, arm_alpha)
    if baseline_counts is not None and two:
        b_low, b_high = quantile_cs_bounds(baseline_counts, bounds, q, arm_alpha)
        with np.errstate(invalid="ignore"):
            low, high = c_low - factor * b_high, c_high - factor * b_low
    else:
        low, high = c_low, c_high
    return _quantile_decision(np.asarray(low), np.asarray(high), op, offset)


def _quantile_decision(low: _FloatArray, high: _FloatArray, op: str, offset: float) -> NDArray[np.int8]:
    # The quantity lies in (low, high]: strictly above low, so ``low >= offset`` already shows
    # "above offset"; at most high, so ``high <= offset`` shows "not above".
    out = np.zeros(np.shape(low), dtype=np.int8)
    if op == "<=":
        out[low >= offset] = -1
        out[high <= offset] = 1
    else:
        out[high < offset] = -1
        out[low >= offset] = 1
    return out


# --------------------------------------------------------------------------------------------
# Gates
# --------------------------------------------------------------------------------------------


def judge_rate(
    metric: str,
    candidate: tuple[int, int],
    baseline: tuple[int, int] | None,
    op: str,
    factor: float,
    offset: float,
    alpha: float,
    min_samples: int = MIN_SAMPLES,
) -> Judgement:
    """Judge ``candidate_rate OP factor * baseline_rate + offset`` (``OP`` is ``<=`` or ``>=``).

    ``candidate``/``baseline`` are ``(events, trials)`` — ``(errors, requests)`` or ``(correct,
    labelled)``; with ``baseline`` None the condition is ``candidate_rate OP offset``. The decision
    is ``fail`` only when the anytime-valid interval of ``candidate - factor * baseline`` shows the
    condition violated, ``pass`` only when it shows it holds, else ``inconclusive`` (always below
    ``min_samples`` candidate trials, or baseline trials). Valid under continuous monitoring: on
    identical revisions a zero-margin gate fails at any time with probability at most ``alpha``.
    """
    op = _check_op(op)
    _check_counts(f"{metric} candidate", *candidate)
    if baseline is not None:
        _check_counts(f"{metric} baseline", *baseline)
    _check_alpha(alpha)
    _check_number("offset", offset)
    _check_number("factor", factor)
    if factor < 0:
        raise ValidationError(f"factor must not be negative, got {factor!r}")
    x, n = candidate
    two_sample = baseline is not None and factor > 0
    cand_est = _ratio(x, n)
    base_est = None if baseline is None else _ratio(*baseline)
    if baseline is not None and two_sample:
        interval = rate_diff_cs(candidate, baseline, factor, alpha)
        method = "beta-binomial mixture over both arms vs profile likelihood (universal inference)"
    else:
        interval = rate_cs(x, n, alpha)
        method = "beta-binomial mixture confidence sequence (Robbins)"
    method += f", Jeffreys prior, level {1 - alpha:.0%}, valid at every check"
    limit = offset if baseline is None else (factor * base_est + offset if base_est is not None else math.nan)
    enough = n >= min_samples and (baseline is None or baseline[1] >= min_samples)
    if not enough:
        decision = "inconclusive"
    else:
        xb, nb = baseline if (baseline is not None and two_sample) else (None, None)
        code = int(rate_gate_decisions(x, n, xb, nb, op, factor, offset, alpha)[0])
        decision = {1: "pass", -1: "fail", 0: "inconclusive"}[code]
    ev = Judgement(
        metric, decision, cand_est, base_est, limit, interval, n, None if baseline is None else baseline[1],
        method, "", op, factor, offset,
    )
    return _with_statement(ev, unit="rate", min_samples=min_samples)


def judge_quantile(
    metric: str,
    q: float,
    candidate: Histogram,
    baseline: Histogram | None,
    op: str,
    factor: float,
    offset: float,
    alpha: float,
    min_samples: int = MIN_SAMPLES,
) -> Judgement:
    """Judge ``candidate_quantile OP factor * baseline_quantile + offset`` (ms) from histograms.

    Each revision's quantile gets an anytime-valid interval at ``alpha/2`` (``alpha`` without a
    baseline); the compared quantity ``candidate - factor * baseline`` lies in
    ``(c.low - factor * b.high, c.high - factor * b.low]``. ``fail`` only when that interval is
    entirely on the wrong side of ``offset``, ``pass`` only when entirely on the right side.
    Bucket edges limit the resolution: a margin narrower than the buckets around the quantile may
    stay inconclusive however much data arrives.
    """
    op = _check_op(op)
    _check_q(q)
    _check_alpha(alpha)
    _check_number("offset", offset)
    _check_number("factor", factor)
    if factor < 0:
        raise ValidationError(f"factor must not be negative, got {factor!r}")
    if baseline is not None and baseline.bounds != candidate.bounds:
        raise ValidationError(f"{metric}: candidate and baseline histograms use different buckets; "
                              "read both from the same metric source")
    arms = 1 if baseline is None or factor == 0 else 2
    c_int = quantile_cs(candidate, q, alpha / arms)
    cand_est = c_int.estimate
    if baseline is None:
        interval = Interval(c_int.low, c_int.high, cand_est, 1.0 - alpha)
        base_est: float | None = None
        limit: float | None = offset
    else:
        b_int = quantile_cs(baseline, q, alpha / arms) if arms == 2 else Interval(0.0, 0.0, baseline.quantile(q), 1.0)
        base_est = baseline.quantile(q)
        limit = factor * base_est + offset
        with np.errstate(invalid="ignore"):
            low = c_int.low - factor * b_int.high if factor else c_int.low
            high = c_int.high - factor * b_int.low if factor else c_int.high
        interval = Interval(float(low), float(high), cand_est - factor * base_est if factor else cand_est, 1.0 - alpha)
    n_c = candidate.total
    n_b = None if baseline is None else baseline.total
    enough = n_c >= min_samples and (n_b is None or n_b >= min_samples)
    decision = "inconclusive"
    if enough:
        code = int(_quantile_decision(np.array([interval.low]), np.array([interval.high]), op, offset)[0])
        decision = {1: "pass", -1: "fail", 0: "inconclusive"}[code]
    method = (
        "binomial mixture confidence sequences at the histogram's bucket edges"
        + (", alpha split over 2 arms" if arms == 2 else "")
        + f", level {1 - alpha:.0%}, valid at every check"
    )
    ev = Judgement(metric, decision, cand_est, base_est, limit, interval, n_c, n_b, method, "", op, factor, offset)
    return _with_statement(ev, unit="ms", min_samples=min_samples)


# --------------------------------------------------------------------------------------------
# Statements
# --------------------------------------------------------------------------------------------


def _with_statement(ev: Judgement, *, unit: str, min_samples: int) -> Judgement:
    from dataclasses import replace

    return replace(ev, statement=_statement(ev, unit, min_samples))


def _statement(ev: Judgement, unit: str, min_samples: int) -> str:
    rate = unit == "rate"

    def value(x: float) -> str:
        if math.isnan(x):
            return "n/a"
        return f"{x:.1%}" if rate else f"{x:,.1f} ms"

    def signed(x: float) -> str:
        if math.isinf(x):
            return "+∞" if x > 0 else "−∞"
        s = f"{x * 100:+.1f}" if rate else f"{x:+,.1f}"
        return s.replace("-", "−")

    def bound(x: float) -> str:
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        return f"{x:.1%}" if rate else f"{x:,.1f}"

    level = f"{ev.interval.level:.0%} anytime-valid CI"
    head = f"{ev.metric} {value(ev.candidate)} (n={ev.n_candidate:,})"
    if ev.baseline is not None:
        times = "" if ev.factor == 1 else f"{ev.factor:g}×"
        head += f" vs prev {value(ev.baseline)} (n={ev.n_baseline or 0:,})"
        pts = " pts" if rate else " ms"
        what = "difference" if ev.factor == 1 else f"{ev.metric} − {times}prev"
        body = f"{what} {signed(ev.interval.estimate)}{pts if math.isfinite(ev.interval.estimate) else ''}, " \
               f"{level} [{signed(ev.interval.low)}, {signed(ev.interval.high)}]"
        allowed = f"allowed {signed(ev.offset)}{pts}"
    else:
        body = f"{level} [{bound(ev.interval.low)}, {bound(ev.interval.high)}]"
        allowed = f"allowed {value(ev.offset)}"
    if ev.op == ">=":
        allowed = allowed.replace("allowed", "required")
    if ev.decision == "fail":
        rel = ">" if ev.op == "<=" else "<"
        return f"{head}: {body} {rel} {allowed} → fail"
    if ev.decision == "pass":
        rel = "≤" if ev.op == "<=" else "≥"
        return f"{head}: {body} {rel} {allowed} → pass"
    short = ev.n_candidate < min_samples or (ev.n_baseline is not None and ev.n_baseline < min_samples)
    if ev.n_candidate == 0:
        why = "no data yet"
    elif short:
        why = f"not enough data yet (need n ≥ {min_samples:,} on each side)"
    else:
        why = "not enough data yet"
    return f"{head}: {body} includes {allowed} → inconclusive: {why}"


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _ratio(x: int, n: int) -> float:
    return x / n if n else math.nan


def _check_counts(what: str, events: int, trials: int) -> None:
    for v in (events, trials):
        whole = isinstance(v, (int, np.integer)) or (isinstance(v, float) and v.is_integer())
        if not whole or isinstance(v, bool):
            raise ValidationError(f"{what}: counts must be whole numbers, got {events!r} of {trials!r}")
    if not 0 <= events <= trials:
        raise ValidationError(f"{what}: need 0 <= events <= trials, got {events!r} of {trials!r}")


def _check_alpha(alpha: float) -> None:
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ValidationError(f"alpha must be between 0 and 1 (e.g. 0.05), got {alpha!r}")


def _check_q(q: float) -> None:
    if not (isinstance(q, (int, float)) and 0 < q < 1):
        raise ValidationError(f"quantile must be between 0 and 1 (e.g. 0.95), got {q!r}")


def _check_number(name: str, x: float) -> None:
    if not (isinstance(x, (int, float)) and math.isfinite(x)):
        raise ValidationError(f"{name} must be a finite number, got {x!r}")


def _check_op(op: str) -> str:
    try:
        return _OPS[op]
    except (KeyError, TypeError):
        raise ValidationError(f"a gate compares with '<=' or '>=', got {op!r}") from None
