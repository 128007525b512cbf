"""Compare the sides of a canary release from a results frame: summary, agreement, tests, verdict.

Pure: a DataFrame from :meth:`PredictionClient.send` in, DataFrames and small result objects out.
scipy and plotly are imported only when a test or a figure needs them.

Vocabulary: the *baseline* is the ``prev`` target (the previously rolled-out revision), the
*candidate* the ``latest`` target (the canary), and any other target (normally ``default``, the
weighted route) is *split* traffic, attributed to revisions by the ``revision`` column.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kserve_nb.analysis.frames import (
    check_results,
    group_label,
    normalize_predictions,
    ok_mask,
    to_vector,
)
from kserve_nb.errors import ValidationError
from kserve_nb.resources import revision_number

if TYPE_CHECKING:
    from kserve_nb.analysis.sequential import Judgement

_PCTS = (50, 95, 99)


# --------------------------------------------------------------------------------------------
# Result objects
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Agreement:
    """Paired comparison of candidate vs baseline on identical inputs (same ``row`` and ``repeat``).

    Attributes
    ----------
    baseline, candidate:
        Target names compared (``prev`` and ``latest`` by default).
    kind:
        ``class``, ``numeric``, ``vector`` or ``empty``.
    n_pairs:
        Inputs answered successfully by both sides.
    rate:
        Share of pairs whose predictions agree (same class; for numbers, equal within tolerance);
        None without pairs.
    mean_abs_delta:
        Mean absolute difference for numeric/vector predictions (vectors: mean over elements).
    pairs:
        One row per pair: ``row, repeat, input, <baseline>, <candidate>, agree, abs_delta``.
    rows:
        One row per input row over its repeats: ``row, input, n, agreement, mean_abs_delta``,
        disagreements first.
    confusion:
        Counts of baseline class (index) × candidate class (columns); None for numeric outputs.
    """

    baseline: str
    candidate: str
    kind: str
    n_pairs: int
    rate: float | None
    mean_abs_delta: float | None
    pairs: pd.DataFrame
    rows: pd.DataFrame
    confusion: pd.DataFrame | None

    def __repr__(self) -> str:
        rate = "n/a" if self.rate is None else f"{self.rate:.1%}"
        return f"<Agreement {self.candidate} vs {self.baseline}: {rate} of {self.n_pairs} pairs>"


@dataclass(frozen=True)
class Check:
    """One verdict check. ``passed`` is None when it could not be evaluated (no data, no threshold).

    ``passed`` compares the point estimate with the threshold; ``evidence`` is the anytime-valid
    interval behind it (:mod:`kserve_nb.analysis.sequential`), whose ``decision`` is
    ``inconclusive`` while the data cannot yet tell (None for checks without a statistic).
    """

    name: str
    passed: bool | None
    observed: float | None
    threshold: float | None
    detail: str
    evidence: Judgement | None = None


@dataclass(frozen=True)
class Verdict:
    """Outcome of :meth:`Comparison.verdict`: a recommendation with its reasons.

    Attributes
    ----------
    recommendation:
        ``"promote"`` when every evaluated check passed, else ``"rollback"``.
    checks:
        Every check, including those not evaluated.
    reasons:
        Why: the failed checks for a rollback, the passed ones for a promotion.
    """

    recommendation: str
    checks: tuple[Check, ...]
    reasons: tuple[str, ...]
    #: Candidate vs baseline (error-rate difference, p95 difference) with anytime-valid intervals.
    evidence: tuple[Judgement, ...] = ()

    @property
    def promote(self) -> bool:
        """True when the recommendation is to promote."""
        return self.recommendation == "promote"

    @property
    def unsure(self) -> tuple[str, ...]:
        """Evaluated checks whose interval cannot yet confirm their outcome ("not enough data yet")."""
        return tuple(
            c.name for c in self.checks
            if c.passed is not None and c.evidence is not None and c.evidence.decision == "inconclusive"
        )

    def table(self) -> pd.DataFrame:
        """The checks as a DataFrame (``check, passed, observed, threshold, detail``)."""
        return pd.DataFrame(
            [(c.name, c.passed, c.observed, c.threshold, c.detail) for c in self.checks],
            columns=["check", "passed", "observed", "threshold", "detail"],
        )

    def __repr__(self) -> str:
        lines = [f"Verdict: {self.recommendation.upper()}{self._unsure_note()}"]
        for c in self.checks:
            mark = {True: "pass", False: "FAIL", None: "skip"}[c.passed]
            lines.append(f"  [{mark}] {c.name}: {c.detail}")
        lines += [f"  vs baseline: {e.statement}" for e in self.evidence]
        return "\n".join(lines)

    def _unsure_note(self) -> str:
        return f" (not enough data yet to be sure of: {', '.join(self.unsure)})" if self.unsure else ""

    def _repr_html_(self) -> str:
        color = "#2e7d32" if self.promote else "#c62828"
        rows = "".join(
            f"<tr><td>{ {True: '✅', False: '❌', None: '–'}[c.passed] }</td><td>{html.escape(c.name)}</td>"
            f"<td>{html.escape(c.detail)}</td></tr>"
            for c in self.checks
        )
        versus = "".join(f"<li>{html.escape(e.statement)}</li>" for e in self.evidence)
        return (
            f"<div><b style='color:{color}'>Recommendation: {self.recommendation}</b>"
            f"{html.escape(self._unsure_note())}"
            f"<table><tr><th></th><th>check</th><th>detail</th></tr>{rows}</table>"
            + (f"<b>Candidate vs baseline</b><ul>{versus}</ul>" if versus else "")
            + "</div>"
        )


class Comparison:
    """Everything :func:`compare` works out. Build it with :func:`compare`.

    Attributes
    ----------
    results:
        The normalised results frame.
    revision_sides:
        ``(older, newer)`` revision when no ``prev``/``latest`` rows exist but exactly two revisions
        answered on the weighted route; the tests and the verdict then compare those (unpaired).
    baseline, candidate:
        Target names of the two sides (``prev``, ``latest``).
    kind:
        Prediction kind (``class``, ``numeric``, ``vector``, ``empty``).
    summary:
        One row per (target, revision): ``n, ok, errors, error_rate``, latency ``p50_ms, p95_ms,
        p99_ms, mean_ms`` over successful requests, and the prediction distribution (``share <class>``
        columns, or ``pred_mean``/``pred_std``).
    distribution:
        Long form class counts (``group, target, revision, label, count, share``) or, for numbers,
        per-group ``count, mean, std, min, p50, max``.
    agreement:
        :class:`Agreement` of candidate vs baseline.
    tests:
        Statistical tests: ``test, groups, n, statistic, p_value, effect, ci_low, ci_high, detail``.
    split:
        Observed vs configured split on the weighted route (empty without ``configured_split``).
    """

    def __init__(
        self,
        results: pd.DataFrame,
        *,
        baseline: str,
        candidate: str,
        kind: str,
        summary: pd.DataFrame,
        distribution: pd.DataFrame,
        agreement: Agreement,
        tests: pd.DataFrame,
        split: pd.DataFrame,
        revision_sides: tuple[str, str] | None = None,
    ) -> None:
        self.results = results
        self.baseline = baseline
        self.candidate = candidate
        self.kind = kind
        self.summary = summary
        self.distribution = distribution
        self.agreement = agreement
        self.tests = tests
        self.split = split
        self.revision_sides = revision_sides

    # -- decisions -------------------------------------------------------------------------

    def verdict(
        self,
        *,
        max_error_rate: float = 0.01,
        max_p95_latency_ms: float | None = None,
        min_agreement: float | None = None,
        alpha: float = 0.05,
    ) -> Verdict:
        """Recommend ``promote`` or ``rollback`` for the candidate.

        Each threshold is compared with the point estimate of this sample; every check also states
        its anytime-valid ``1 - alpha`` interval and sample size, and says "not enough data yet"
        when the interval still straddles the threshold (:attr:`Verdict.unsure`). The verdict's
        ``evidence`` compares the candidate with the baseline (differences with intervals).

        Parameters
        ----------
        max_error_rate:
            Highest acceptable share of failed candidate requests.
        max_p95_latency_ms:
            Highest acceptable candidate p95 latency; not checked when None.
        min_agreement:
            Lowest acceptable candidate-vs-baseline agreement on paired inputs; not checked when None.
        alpha:
            1 - confidence level of the intervals (valid however often the verdict is recomputed).

        Returns
        -------
        Verdict
            ``promote`` only if the candidate answered and every evaluated check passed.
        """
        from kserve_nb.analysis import sequential as seq
        from kserve_nb.metrics.sample import Histogram

        rows, scope = self._candidate_rows()
        checks: list[Check] = []
        n = len(rows)
        ok = int(ok_mask(rows).sum()) if n else 0
        checks.append(
            Check(
                "candidate answered",
                ok > 0,
                float(ok),
                1.0,
                f"{ok} of {n} {scope} requests succeeded" if n else f"no requests to {scope}",
            )
        )
        if n:
            rate = (n - ok) / n
            ev = seq.judge_rate("error rate", (n - ok, n), None, "<=", 1.0, max_error_rate, alpha)
            checks.append(
                Check(
                    "error rate",
                    rate <= max_error_rate,
                    rate,
                    max_error_rate,
                    f"{scope}: {rate:.2%} of {n} requests failed (max {max_error_rate:.2%}); {_interval_note(ev)}",
                    ev,
                )
            )
        else:
            checks.append(Check("error rate", None, None, max_error_rate, "no requests"))
        lat = rows.loc[ok_mask(rows), "latency_ms"].dropna() if n else pd.Series(dtype=float)
        if max_p95_latency_ms is None:
            checks.append(Check("p95 latency", None, _pct(lat, 95), None, "no threshold set"))
        elif lat.empty:
            checks.append(Check("p95 latency", None, None, max_p95_latency_ms, "no successful requests"))
        else:
            p95 = float(np.percentile(lat, 95))
            ev = seq.judge_quantile(
                "p95 latency", 0.95, Histogram.from_samples(lat.tolist()), None, "<=", 1.0,
                float(max_p95_latency_ms), alpha,
            )
            checks.append(
                Check(
                    "p95 latency",
                    p95 <= max_p95_latency_ms,
                    p95,
                    max_p95_latency_ms,
                    f"{scope}: p95 {p95:.1f} ms (max {max_p95_latency_ms:g} ms); {_interval_note(ev)}",
                    ev,
                )
            )
        ag = self.agreement
        if min_agreement is None:
            checks.append(Check("agreement", None, ag.rate, None, "no threshold set"))
        elif ag.rate is None:
            checks.append(
                Check(
                    "agreement",
                    None,
                    None,
                    min_agreement,
                    f"no paired {self.candidate}/{self.baseline} answers to compare",
                )
            )
        else:
            agree = int(round(ag.rate * ag.n_pairs))
            ev = seq.judge_rate("agreement", (agree, ag.n_pairs), None, ">=", 1.0, min_agreement, alpha)
            checks.append(
                Check(
                    "agreement",
                    ag.rate >= min_agreement,
                    ag.rate,
                    min_agreement,
                    f"{ag.rate:.1%} of {ag.n_pairs} paired inputs agree (min {min_agreement:.1%}); "
                    f"{_interval_note(ev)}",
                    ev,
                )
            )
        versus = self._versus_baseline(rows, lat, alpha)
        failed = [c for c in checks if c.passed is False]
        passed = [c for c in checks if c.passed is True]
        if failed:
            return Verdict("rollback", tuple(checks), tuple(c.detail for c in failed), versus)
        return Verdict("promote", tuple(checks), tuple(c.detail for c in passed), versus)

    def _versus_baseline(self, rows: pd.DataFrame, lat: pd.Series, alpha: float) -> tuple[Judgement, ...]:
        """Error-rate and p95 differences of the candidate from the baseline, with intervals."""
        from kserve_nb.analysis import sequential as seq
        from kserve_nb.metrics.sample import Histogram

        df = self.results
        base = df[df["target"] == self.baseline]
        if base.empty and self.revision_sides is not None and not (df["target"] == self.candidate).any():
            base = df[df["revision"] == self.revision_sides[0]]
        if rows.empty or base.empty:
            return ()
        n, nb = len(rows), len(base)
        ok, okb = int(ok_mask(rows).sum()), int(ok_mask(base).sum())
        out = [seq.judge_rate("error_rate", (n - ok, n), (nb - okb, nb), "<=", 1.0, 0.0, alpha)]
        lat_b = base.loc[ok_mask(base), "latency_ms"].dropna()
        if len(lat) and len(lat_b):
            out.append(
                seq.judge_quantile(
                    "p95", 0.95, Histogram.from_samples(lat.tolist()), Histogram.from_samples(lat_b.tolist()),
                    "<=", 1.0, 0.0, alpha,
                )
            )
        return tuple(out)

    def _candidate_rows(self) -> tuple[pd.DataFrame, str]:
        df = self.results
        rows = df[df["target"] == self.candidate]
        if len(rows) or not len(df):
            return rows, self.candidate
        if (df["target"] == self.baseline).any():
            return rows, self.candidate  # the candidate is missing: that is the finding
        if self.revision_sides is not None:  # only the weighted route: judge the newer revision
            newer = self.revision_sides[1]
            return df[df["revision"] == newer], f"revision {newer}"
        return df, "all"  # only split traffic without attribution: judge what answered

    # -- display ---------------------------------------------------------------------------

    def figures(self) -> dict[str, Any]:
        """Plotly figures: ``predictions``, ``latency``, ``agreement``, ``split``.

        Always all four keys; a figure without data says so in its title. No display side effects.
        """
        from kserve_nb.analysis.plots import comparison_figures

        return comparison_figures(self)

    def __repr__(self) -> str:
        n = len(self.results)
        sides = ", ".join(str(t) for t in self.results["target"].dropna().unique())
        rate = self.agreement.rate
        agreement = "n/a" if rate is None or math.isnan(rate) else f"{rate:.1%} of {self.agreement.n_pairs:,} pairs"
        return f"<Comparison of {n:,} requests ({sides or 'no targets'}); agreement {agreement}>"

    def _repr_html_(self) -> str:
        n = len(self.results)
        sides = ", ".join(html.escape(str(t)) for t in self.results["target"].dropna().unique())
        parts = [f"<div class='kserve-nb-comparison'><h4>{n:,} requests across {sides or 'no targets'}</h4>"]
        if len(self.summary):
            parts.append("<b>Per target and revision</b> (latency over successful requests)")
            pct = {c: _pct_fmt for c in self.summary.columns if c == "error_rate" or str(c).startswith("share ")}
            parts.append(self.summary.to_html(index=False, border=0, float_format=_fmt, formatters=pct, na_rep="–"))
        ag = self.agreement
        if ag.rate is not None:
            line = (
                f"{html.escape(ag.candidate)} agrees with {html.escape(ag.baseline)} "
                f"on {ag.rate:.1%} of {ag.n_pairs:,} paired inputs"
            )
            if ag.mean_abs_delta is not None:
                line += f"; mean |Δ| {ag.mean_abs_delta:.4g}"
            parts.append(f"<p><b>Agreement:</b> {line}.</p>")
        else:
            sides = f"{html.escape(ag.candidate)}/{html.escape(ag.baseline)}"
            parts.append(f"<p><b>Agreement:</b> no paired {sides} answers.</p>")
        if len(self.tests):
            parts.append("<b>Tests</b>")
            parts.append(self.tests.to_html(index=False, border=0, float_format=_fmt, na_rep="–"))
        if len(self.split):
            parts.append("<b>Observed vs configured split</b> (weighted route)")
            parts.append(self.split.to_html(index=False, border=0, float_format=_fmt, na_rep="–"))
        parts.append("</div>")
        return "".join(parts)


def _interval_note(ev: Judgement) -> str:
    """``95% anytime-valid CI [0.0%, 1.2%], n=812: not enough data yet to be sure``."""
    lo, hi = ev.interval.low, ev.interval.high
    if ev.metric.endswith("latency"):
        span = f"({lo:g}, {'∞' if math.isinf(hi) else format(hi, 'g')}] ms"
    else:
        span = f"[{lo:.1%}, {hi:.1%}]"
    outcome = {
        "pass": "within the limit at that level",
        "fail": "beyond the limit at that level",
    }.get(ev.decision, "not enough data yet to be sure")
    return f"{ev.interval.level:.0%} anytime-valid CI {span}, n={ev.n_candidate:,}: {outcome}"


def _pct_fmt(x: Any) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1%}"


def _fmt(x: float) -> str:
    if x == 0 or (abs(x) >= 0.01 and abs(x) < 1e6):
        return f"{x:,.3f}".rstrip("0").rstrip(".")
    return f"{x:.3g}"


# --------------------------------------------------------------------------------------------
# compare()
# --------------------------------------------------------------------------------------------


def compare(
    results: pd.DataFrame,
    *,
    configured_split: Mapping[str, int] | None = None,
    baseline: str = "prev",
    candidate: str = "latest",
    kind: str | None = None,
    rtol: float = 1e-6,
    n_boot: int = 1000,
    seed: int = 0,
) -> Comparison:
    """Compare the sides of a release from a :meth:`PredictionClient.send` frame.

    Parameters
    ----------
    results:
        The results frame (columns ``target, revision, row, repeat, input, prediction,
        status_code, latency_ms, error``).
    configured_split:
        Configured traffic percentages, keyed by revision name or by target name (``latest``,
        ``prev``), e.g. ``{"latest": 10, "prev": 90}``. Enables the split test on rows of the
        weighted route (targets other than ``baseline``/``candidate``) that name their revision.
    baseline, candidate:
        Target names of the two sides.
    kind:
        Force ``class``, ``numeric`` or ``vector`` predictions; inferred when None (ints/strings
        are classes, floats are numbers, lists of numbers are vectors whose class is the argmax).
    rtol:
        Relative tolerance under which two numeric predictions agree.
    n_boot:
        Bootstrap resamples for the p50 latency difference interval.
    seed:
        Seed of the bootstrap, so a re-run notebook shows the same numbers.

    Returns
    -------
    Comparison
    """
    df = check_results(results)
    ok = ok_mask(df)
    good = df[ok]
    kind, labels, numbers = normalize_predictions(good["prediction"], kind)
    good = good.assign(_label=labels, _num=numbers)
    summary, distribution = _summary(df, ok, good, kind)
    agreement = _agreement(good, baseline, candidate, kind, rtol)
    split = _split(df, configured_split, baseline, candidate)
    sides = _revision_sides(df, baseline, candidate)
    tests = _tests(good, baseline, candidate, kind, split, sides, n_boot=n_boot, seed=seed)
    return Comparison(
        df,
        baseline=baseline,
        candidate=candidate,
        kind=kind,
        summary=summary,
        distribution=distribution,
        agreement=agreement,
        tests=tests,
        split=split,
        revision_sides=sides,
    )


def _revision_sides(df: pd.DataFrame, baseline: str, candidate: str) -> tuple[str, str] | None:
    """(older, newer) revision when only the weighted route was sampled and two revisions answered.

    Knative numbers revisions ``…-0000N``, so the higher number is the newer one (the canary).
    """
    if df["target"].isin([baseline, candidate]).any():
        return None
    revs = [str(r) for r in pd.unique(df["revision"].dropna())]
    if len(revs) != 2:
        return None
    older, newer = sorted(revs, key=revision_number)
    if revision_number(older) == revision_number(newer):
        return None  # cannot tell which one is newer
    return older, newer


def _groups(df: pd.DataFrame) -> list[tuple[Any, Any]]:
    """(target, revision) pairs in order of first appearance (targets keep the caller's order)."""
    seen: dict[tuple[Any, Any], None] = {}
    for t, r in zip(df["target"].tolist(), df["revision"].tolist()):
        seen.setdefault((t, r), None)
    return list(seen)


def _in_group(df: pd.DataFrame, target: Any, revision: Any) -> pd.Series:
    t = df["target"].isna() if target is None else df["target"] == target
    r = df["revision"].isna() if revision is None else df["revision"] == revision
    return t & r


def _pct(values: pd.Series, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def _label_order(labels: pd.Series) -> list[Any]:
    uniq = list(pd.unique(labels.dropna()))
    try:
        return sorted(uniq)
    except TypeError:
        return sorted(uniq, key=str)


def _summary(df: pd.DataFrame, ok: pd.Series, good: pd.DataFrame, kind: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    classes = _label_order(good["_label"]) if kind in ("class", "vector") else []
    show_shares = 0 < len(classes) <= 10
    rows: list[dict[str, Any]] = []
    dist: list[tuple[Any, ...]] = []
    for target, revision in _groups(df):
        mask = _in_group(df, target, revision)
        n = int(mask.sum())
        n_ok = int((mask & ok).sum())
        g = good[_in_group(good, target, revision)]
        lat = g["latency_ms"].dropna()
        row: dict[str, Any] = {
            "target": target,
            "revision": revision,
            "n": n,
            "ok": n_ok,
            "errors": n - n_ok,
            "error_rate": (n - n_ok) / n if n else math.nan,
            "p50_ms": _pct(lat, 50),
            "p95_ms": _pct(lat, 95),
            "p99_ms": _pct(lat, 99),
            "mean_ms": float(lat.mean()) if len(lat) else None,
        }
        label = group_label(target, revision)
        if kind in ("class", "vector"):
            counts = g["_label"].value_counts()
            total = int(counts.sum())
            if show_shares:
                for c in classes:
                    row[f"share {c}"] = counts.get(c, 0) / total if total else math.nan
            else:
                row["top class"] = counts.index[0] if total else None
                row["classes"] = int(len(counts))
            for c in classes:
                cnt = int(counts.get(c, 0))
                dist.append((label, target, revision, c, cnt, cnt / total if total else math.nan))
        elif kind == "numeric":
            x = g["_num"].dropna()
            row["pred_mean"] = float(x.mean()) if len(x) else None
            row["pred_std"] = float(x.std(ddof=1)) if len(x) > 1 else None
            dist.append(
                (
                    label,
                    target,
                    revision,
                    len(x),
                    row["pred_mean"],
                    row["pred_std"],
                    float(x.min()) if len(x) else None,
                    float(x.median()) if len(x) else None,
                    float(x.max()) if len(x) else None,
                )
            )
        rows.append(row)
    base_cols = ["target", "revision", "n", "ok", "errors", "error_rate", "p50_ms", "p95_ms", "p99_ms", "mean_ms"]
    summary = pd.DataFrame(rows, columns=None if rows else base_cols)
    if kind == "numeric":
        distribution = pd.DataFrame(
            dist, columns=["group", "target", "revision", "count", "mean", "std", "min", "p50", "max"]
        )
    else:
        distribution = pd.DataFrame(dist, columns=["group", "target", "revision", "label", "count", "share"])
    return summary, distribution


def _agreement(good: pd.DataFrame, baseline: str, candidate: str, kind: str, rtol: float) -> Agreement:
    keys = ["row", "repeat"]
    cols = ["row", "repeat", "input", baseline, candidate, "agree", "abs_delta"]
    b = good[good["target"] == baseline].drop_duplicates(keys)
    c = good[good["target"] == candidate].drop_duplicates(keys)
    pairs = b[keys + ["input", "prediction", "_label", "_num"]].merge(
        c[keys + ["prediction", "_label", "_num"]], on=keys, suffixes=("_b", "_c")
    )
    if pairs.empty:
        empty = pd.DataFrame(columns=cols)
        rows = pd.DataFrame(columns=["row", "input", "n", "agreement", "mean_abs_delta"])
        return Agreement(baseline, candidate, kind, 0, None, None, empty, rows, None)
    if kind == "numeric":
        delta = (pairs["_num_c"] - pairs["_num_b"]).abs()
        agree = delta <= rtol * np.maximum(pairs["_num_b"].abs(), pairs["_num_c"].abs()) + 1e-12
    else:
        agree = pd.Series(
            [lb == lc for lb, lc in zip(pairs["_label_b"], pairs["_label_c"])], index=pairs.index, dtype=bool
        )
        if kind == "vector":
            delta = pd.Series(
                [_vec_delta(x, y) for x, y in zip(pairs["prediction_b"], pairs["prediction_c"])],
                index=pairs.index,
                dtype=float,
            )
        else:
            delta = pd.Series(np.nan, index=pairs.index)
    out = pd.DataFrame(
        {
            "row": pairs["row"],
            "repeat": pairs["repeat"],
            "input": pairs["input"],
            baseline: pairs["prediction_b"],
            candidate: pairs["prediction_c"],
            "agree": agree.astype(bool),
            "abs_delta": delta.astype(float),
        }
    ).sort_values(keys, kind="stable", ignore_index=True)
    by_row = (
        out.groupby("row", sort=True)
        .agg(
            input=("input", "first"),
            n=("agree", "size"),
            agreement=("agree", "mean"),
            mean_abs_delta=("abs_delta", "mean"),
        )
        .reset_index()
        .sort_values(["agreement", "row"], kind="stable", ignore_index=True)
    )
    confusion = None
    if kind in ("class", "vector"):
        lb = pd.Series(pairs["_label_b"].tolist(), name=baseline)
        lc = pd.Series(pairs["_label_c"].tolist(), name=candidate)
        order = _label_order(pd.concat([lb, lc], ignore_index=True))
        confusion = pd.crosstab(lb, lc).reindex(index=order, columns=order, fill_value=0)
        confusion.index.name, confusion.columns.name = baseline, candidate
    finite = out["abs_delta"].dropna()
    mad = float(finite.mean()) if kind in ("numeric", "vector") and len(finite) else None
    return Agreement(baseline, candidate, kind, len(out), float(out["agree"].mean()), mad, out, by_row, confusion)


def _vec_delta(x: Any, y: Any) -> float:
    a, b = to_vector(x), to_vector(y)
    if a is None or b is None or len(a) != len(b):
        return math.nan
    return float(np.mean(np.abs(np.asarray(a) - np.asarray(b))))


# --------------------------------------------------------------------------------------------
# Split
# --------------------------------------------------------------------------------------------


def _split(
    df: pd.DataFrame, configured: Mapping[str, int] | None, baseline: str, candidate: str
) -> pd.DataFrame:
    cols = ["key", "revision", "configured_pct", "observed_n", "observed_pct", "p_value"]
    if not configured:
        return pd.DataFrame(columns=cols)
    total_pct = float(sum(configured.values()))
    if total_pct <= 0 or any(v < 0 for v in configured.values()):
        raise ValidationError(
            f"configured_split must hold non-negative percentages summing to 100, got {dict(configured)}"
        )
    routed = df[~df["target"].isin([baseline, candidate]) & df["revision"].notna()]
    n = len(routed)
    counts = routed["revision"].value_counts()
    side_rev = {
        side: _main_revision(df[df["target"] == side]) for side in (baseline, candidate)
    }
    rows = []
    named: set[Any] = set()
    for key, pct in configured.items():
        rev = side_rev.get(key) if key in side_rev else key
        named.add(rev)
        k = int(counts.get(rev, 0)) if rev is not None else 0
        observed_pct = 100.0 * k / n if n else math.nan
        rows.append([key, rev, 100.0 * pct / total_pct, k, observed_pct, _binom_p(k, n, pct / total_pct)])
    for rev, k in counts.items():
        if rev not in named:  # answered although not configured: that is a finding too
            rows.append([None, rev, 0.0, int(k), 100.0 * k / n, _binom_p(int(k), n, 0.0)])
    return pd.DataFrame(rows, columns=cols)


def _main_revision(rows: pd.DataFrame) -> Any:
    revs = rows["revision"].dropna()
    return revs.mode().iloc[0] if len(revs) else None


def _binom_p(k: int, n: int, p: float) -> float:
    if n == 0:
        return math.nan
    from scipy.stats import binomtest

    return float(binomtest(k, n, min(max(p, 0.0), 1.0)).pvalue)


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------

_TEST_COLS = ["test", "groups", "n", "statistic", "p_value", "effect", "ci_low", "ci_high", "detail"]


def _tests(
    good: pd.DataFrame,
    baseline: str,
    candidate: str,
    kind: str,
    split: pd.DataFrame,
    sides: tuple[str, str] | None,
    *,
    n_boot: int,
    seed: int,
) -> pd.DataFrame:
    if sides is not None:
        # Unpaired fallback: the two revisions seen on the weighted route.
        baseline, candidate = sides
        b, c = good[good["revision"] == baseline], good[good["revision"] == candidate]
    else:
        b, c = good[good["target"] == baseline], good[good["target"] == candidate]
    rows = [
        _shift_test(b, c, kind, baseline, candidate),
        _latency_test(b, c, baseline, candidate, n_boot=n_boot, seed=seed),
    ]
    if len(split):
        rows.append(_split_test(split))
    return pd.DataFrame(rows, columns=_TEST_COLS)


def _missing_row(test: str, groups: str, detail: str) -> list[Any]:
    return [test, groups, 0, math.nan, math.nan, math.nan, math.nan, math.nan, detail]


def _shift_test(b: pd.DataFrame, c: pd.DataFrame, kind: str, baseline: str, candidate: str) -> list[Any]:
    groups = f"{candidate} vs {baseline}"
    if kind == "numeric":
        name = "prediction shift (KS)"
        x, y = b["_num"].dropna(), c["_num"].dropna()
        if len(x) < 1 or len(y) < 1:
            return _missing_row(name, groups, "needs successful answers from both sides")
        from scipy.stats import ks_2samp

        res = ks_2samp(y, x)
        delta = float(y.mean() - x.mean())
        return [
            name, groups, len(x) + len(y), float(res.statistic), float(res.pvalue), delta, math.nan, math.nan,
            f"mean prediction {delta:+.4g} ({candidate} − {baseline})",
        ]
    name = "prediction shift (chi-square)"
    if len(b) < 1 or len(c) < 1 or kind == "empty":
        return _missing_row(name, groups, "needs successful answers from both sides")
    order = _label_order(pd.concat([b["_label"], c["_label"]], ignore_index=True))
    cb = b["_label"].value_counts().reindex(order, fill_value=0)
    cc = c["_label"].value_counts().reindex(order, fill_value=0)
    table = np.vstack([cb.to_numpy(), cc.to_numpy()])
    shares_b, shares_c = cb / cb.sum(), cc / cc.sum()
    tvd = float(0.5 * np.abs(shares_c.to_numpy() - shares_b.to_numpy()).sum())
    if table.shape[1] < 2:
        return [
            name, groups, int(table.sum()), 0.0, 1.0, tvd, math.nan, math.nan,
            f"both sides answer only class {_plain(order[0])!r}",
        ]
    from scipy.stats import chi2_contingency

    res = chi2_contingency(table)
    biggest = max(order, key=lambda k: abs(shares_c[k] - shares_b[k]))
    detail = f"class shares differ by {tvd:.1%} (total variation)"
    if tvd > 0:
        detail += f"; largest change: class {_plain(biggest)!r} {shares_b[biggest]:.1%} → {shares_c[biggest]:.1%}"
    return [name, groups, int(table.sum()), float(res.statistic), float(res.pvalue), tvd, math.nan, math.nan, detail]


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _latency_test(
    b: pd.DataFrame, c: pd.DataFrame, baseline: str, candidate: str, *, n_boot: int, seed: int
) -> list[Any]:
    groups = f"{candidate} vs {baseline}"
    name = "latency difference (Mann-Whitney U)"
    x = b["latency_ms"].dropna().to_numpy(dtype=float)
    y = c["latency_ms"].dropna().to_numpy(dtype=float)
    if len(x) < 1 or len(y) < 1:
        return _missing_row(name, groups, "needs successful answers from both sides")
    from scipy.stats import mannwhitneyu

    res = mannwhitneyu(y, x, alternative="two-sided")
    delta = float(np.median(y) - np.median(x))
    lo, hi = bootstrap_median_diff(y, x, n_boot=n_boot, seed=seed)
    return [
        name, groups, len(x) + len(y), float(res.statistic), float(res.pvalue), delta, lo, hi,
        f"p50 {delta:+.2f} ms ({candidate} − {baseline}), 95% CI [{lo:+.2f}, {hi:+.2f}]",
    ]


def bootstrap_median_diff(a: np.ndarray, b: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of ``median(a) - median(b)`` (independent resamples).

    Resamples in chunks so memory stays bounded (~2M values at a time) for large samples.
    """
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0 or n_boot < 1:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    chunk = max(1, 2_000_000 // max(len(a), len(b)))
    diffs = []
    for start in range(0, n_boot, chunk):
        k = min(chunk, n_boot - start)
        ma = np.median(a[rng.integers(0, len(a), (k, len(a)))], axis=1)
        mb = np.median(b[rng.integers(0, len(b), (k, len(b)))], axis=1)
        diffs.append(ma - mb)
    d = np.concatenate(diffs)
    return float(np.percentile(d, 2.5)), float(np.percentile(d, 97.5))


def _split_test(split: pd.DataFrame) -> list[Any]:
    name = "observed vs configured split"
    n = int(split["observed_n"].sum())
    groups = " / ".join(str(k if k is not None else r) for k, r in zip(split["key"], split["revision"]))
    if n == 0:
        return _missing_row(
            name,
            groups,
            "no weighted-route rows name their revision (the gateway sent no x-kserve-revision header); "
            "sample the default target through a gateway that attributes revisions",
        )
    configured = split["configured_pct"].to_numpy(dtype=float)
    observed = split["observed_n"].to_numpy(dtype=float)
    if len(split) == 2 and (configured > 0).all():
        # Two sides: an exact binomial test on the first one's share.
        first = split.iloc[0]
        return [
            name, groups, n, float(first["observed_n"]), float(first["p_value"]),
            float(first["observed_pct"] - first["configured_pct"]), math.nan, math.nan,
            f"{first['key']}: observed {first['observed_pct']:.1f}% vs configured {first['configured_pct']:.1f}% "
            f"of {n} requests (binomial)",
        ]
    expected = configured / 100.0 * n
    if (expected[observed > 0] == 0).any():
        stray = split[(split["configured_pct"] == 0) & (split["observed_n"] > 0)]["revision"].tolist()
        return [
            name, groups, n, math.inf, 0.0, math.nan, math.nan, math.nan,
            f"revision(s) {stray} answered although configured at 0%",
        ]
    from scipy.stats import chisquare

    keep = expected > 0
    if keep.sum() < 2:  # everything was configured to one revision and only it answered
        return [name, groups, n, 0.0, 1.0, 0.0, math.nan, math.nan, "all requests went where configured"]
    res = chisquare(observed[keep], expected[keep])
    worst = int(np.argmax(np.abs(observed - expected)))
    w = split.iloc[worst]
    return [
        name, groups, n, float(res.statistic), float(res.pvalue), float(w["observed_pct"] - w["configured_pct"]),
        math.nan, math.nan,
        f"largest gap: {w['key'] or w['revision']} observed {w['observed_pct']:.1f}% "
        f"vs configured {w['configured_pct']:.1f}% (chi-square)",
    ]
