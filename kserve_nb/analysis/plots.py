"""Plotly figures of a :class:`~kserve_nb.analysis.compare.Comparison`. Figures only, no display.

Every figure colours a side the same way (``prev`` blue, ``latest`` orange, ``default`` green), so
a reader can move between figures without re-reading legends. When a target answered from several
revisions (the weighted route), its groups share the target's colour and differ by bar pattern or
line dash.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from kserve_nb.analysis.frames import group_label, ok_mask
from kserve_nb.style import SIDE_COLORS, plotly_template  # one palette and theme for figures, bars and tables

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from kserve_nb.analysis.compare import Comparison

_EXTRA_COLORS = ("#B279A2", "#E45756", "#72B7B2", "#EECA3B", "#9D755D", "#BAB0AC")
_PATTERNS = ("", "/", "x", ".", "\\", "+")
_DASHES = ("solid", "dash", "dot", "dashdot", "longdash")


def side_color(target: Any, order: list[Any] | None = None) -> str:
    """Colour of a target: fixed for prev/latest/default, a stable palette pick otherwise."""
    if target in SIDE_COLORS:
        return SIDE_COLORS[target]
    others = [t for t in (order or []) if t not in SIDE_COLORS]
    i = others.index(target) if target in others else abs(hash(str(target)))
    return _EXTRA_COLORS[i % len(_EXTRA_COLORS)]


def comparison_figures(cmp: Comparison) -> dict[str, go.Figure]:
    """All figures of a comparison: ``predictions``, ``latency``, ``agreement``, ``split``."""
    return {
        "predictions": predictions_figure(cmp),
        "latency": latency_figure(cmp),
        "agreement": agreement_figure(cmp),
        "split": split_figure(cmp),
    }


def _figure(title: str) -> go.Figure:
    import plotly.graph_objects as go

    fig = go.Figure()
    # The template follows the notebook's light/dark theme (kserve_nb.style.theme).
    fig.update_layout(title=title, template=plotly_template(), legend_title_text="target · revision")
    return fig


def _empty(title: str, why: str) -> go.Figure:
    fig = _figure(f"{title}: {why}")
    fig.update_layout(xaxis_visible=False, yaxis_visible=False)
    return fig


def _styles(groups: list[tuple[Any, Any]]) -> dict[tuple[Any, Any], tuple[str, int]]:
    """(colour, index within target) per group: colour by target, pattern/dash by revision."""
    targets = list(dict.fromkeys(t for t, _ in groups))
    seen: dict[Any, int] = {}
    out = {}
    for t, r in groups:
        k = seen.get(t, 0)
        seen[t] = k + 1
        out[(t, r)] = (side_color(t, targets), k)
    return out


def predictions_figure(cmp: Comparison) -> go.Figure:
    """Class shares per side as grouped bars, or overlaid histograms of numeric predictions."""
    import plotly.graph_objects as go

    title = "Predictions per side"
    if cmp.kind in ("class", "vector"):
        dist = cmp.distribution
        if dist.empty:
            return _empty(title, "no successful answers")
        groups = list(dict.fromkeys(zip(dist["target"], dist["revision"])))
        styles = _styles(groups)
        fig = _figure(f"{title}: share of each predicted class")
        for t, r in groups:
            d = dist[(dist["target"] == t) & (_eq(dist["revision"], r))]
            color, k = styles[(t, r)]
            fig.add_trace(
                go.Bar(
                    x=[str(v) for v in d["label"]],
                    y=d["share"],
                    name=group_label(t, r),
                    marker_color=color,
                    marker_pattern_shape=_PATTERNS[k % len(_PATTERNS)],
                    customdata=d["count"],
                    hovertemplate="class %{x}: %{y:.1%} (%{customdata} answers)<extra>%{fullData.name}</extra>",
                )
            )
        xaxis_title = "predicted class" + (" (argmax)" if cmp.kind == "vector" else "")
        fig.update_layout(barmode="group", xaxis_title=xaxis_title)
        fig.update_yaxes(title="share of answers", tickformat=".0%")
        return fig
    if cmp.kind == "numeric":
        good = _good(cmp)
        groups = list(dict.fromkeys(zip(good["target"], good["revision"])))
        styles = _styles(groups)
        fig = _figure(f"{title}: distribution of predicted values")
        for t, r in groups:
            g = good[(good["target"] == t) & _eq(good["revision"], r)]
            color, _ = styles[(t, r)]
            x = [v for v in (_num(p) for p in g["prediction"]) if v is not None]
            fig.add_trace(
                go.Histogram(x=x, name=group_label(t, r), marker_color=color, opacity=0.55, histnorm="probability")
            )
        fig.update_layout(barmode="overlay", xaxis_title="predicted value")
        fig.update_yaxes(title="share of answers", tickformat=".0%")
        return fig
    return _empty(title, "no successful answers")


def latency_figure(cmp: Comparison) -> go.Figure:
    """Empirical CDF of latency per side (successful requests), with p50/p95 visible as crossings."""
    import plotly.graph_objects as go

    title = "Latency per side"
    good = _good(cmp)
    if good.empty or good["latency_ms"].dropna().empty:
        return _empty(title, "no successful answers")
    groups = list(dict.fromkeys(zip(good["target"], good["revision"])))
    styles = _styles(groups)
    fig = _figure(f"{title}: share of requests answered within x ms")
    for t, r in groups:
        lat = np.sort(good.loc[(good["target"] == t) & _eq(good["revision"], r), "latency_ms"].dropna().to_numpy())
        if not len(lat):
            continue
        color, k = styles[(t, r)]
        y = np.arange(1, len(lat) + 1) / len(lat)
        p50, p95 = np.percentile(lat, [50, 95])
        fig.add_trace(
            go.Scatter(
                x=lat,
                y=y,
                mode="lines",
                line_shape="hv",
                line=dict(color=color, dash=_DASHES[k % len(_DASHES)]),
                name=f"{group_label(t, r)} (p50 {p50:.1f}, p95 {p95:.1f} ms)",
                hovertemplate="%{y:.1%} within %{x:.1f} ms<extra></extra>",
            )
        )
    for q in (0.5, 0.95):
        fig.add_hline(y=q, line=dict(color="#999", width=1, dash="dot"), annotation_text=f"p{int(q * 100)}")
    fig.update_xaxes(title="latency (ms)", type="log" if _wide(good["latency_ms"]) else "linear")
    fig.update_yaxes(title="share of requests", tickformat=".0%", range=[0, 1.02])
    return fig


def agreement_figure(cmp: Comparison) -> go.Figure:
    """Heatmap of baseline class (rows) × candidate class (columns) on identical inputs."""
    import plotly.graph_objects as go

    ag = cmp.agreement
    title = f"Agreement on identical inputs: {ag.baseline} (rows) vs {ag.candidate} (columns)"
    if ag.n_pairs == 0:
        return _empty("Agreement", f"no paired {ag.candidate}/{ag.baseline} answers")
    if ag.confusion is None:
        # Numbers: scatter of the paired predictions, the diagonal is agreement.
        fig = _figure(f"Paired predictions: {ag.candidate} vs {ag.baseline} on identical inputs ({ag.rate:.1%} equal)")
        x = [_num(v) for v in ag.pairs[ag.baseline]]
        y = [_num(v) for v in ag.pairs[ag.candidate]]
        marker = dict(color=SIDE_COLORS["latest"], opacity=0.6)
        fig.add_trace(go.Scatter(x=x, y=y, mode="markers", marker=marker, name="pairs"))
        finite = [v for v in x + y if v is not None]
        if finite:
            lo, hi = min(finite), max(finite)
            diagonal = dict(color="#999", dash="dot")
            fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", line=diagonal, name="equal"))
        fig.update_xaxes(title=f"{ag.baseline} prediction")
        fig.update_yaxes(title=f"{ag.candidate} prediction")
        return fig
    conf = ag.confusion
    labels_x = [str(c) for c in conf.columns]
    labels_y = [str(i) for i in conf.index]
    fig = _figure(f"{title}: {ag.rate:.1%} of {ag.n_pairs:,} agree")
    fig.add_trace(
        go.Heatmap(
            z=conf.to_numpy(),
            x=labels_x,
            y=labels_y,
            text=conf.to_numpy(),
            texttemplate="%{text}",
            colorscale=[[0, "rgba(245,133,24,0.06)"], [1, SIDE_COLORS["latest"]]],  # no white block in dark themes
            hovertemplate=f"{ag.baseline} %{{y}} → {ag.candidate} %{{x}}: %{{z}}<extra></extra>",
            showscale=False,
        )
    )
    fig.update_xaxes(title=f"{ag.candidate} predicted class", type="category")
    fig.update_yaxes(title=f"{ag.baseline} predicted class", type="category", autorange="reversed")
    return fig


def split_figure(cmp: Comparison) -> go.Figure:
    """Observed vs configured traffic share per revision on the weighted route."""
    import plotly.graph_objects as go

    sp = cmp.split
    title = "Traffic split"
    if sp.empty:
        return _empty(title, "no configured split given")
    if int(sp["observed_n"].sum()) == 0:
        return _empty(title, "no weighted-route answers name their revision")
    names = [
        str(k) + (f" · {r}" if r is not None and r != k else "") if k is not None else str(r)
        for k, r in zip(sp["key"], sp["revision"])
    ]
    colors = [SIDE_COLORS.get(str(k), _EXTRA_COLORS[i % len(_EXTRA_COLORS)]) for i, k in enumerate(sp["key"])]
    n = int(sp["observed_n"].sum())
    fig = _figure(f"{title}: observed share of {n:,} weighted-route requests vs configured")
    fig.add_trace(go.Bar(x=names, y=sp["configured_pct"] / 100, name="configured", marker_color="#cccccc"))
    fig.add_trace(
        go.Bar(
            x=names,
            y=sp["observed_pct"] / 100,
            name="observed",
            marker_color=colors,
            customdata=np.stack([sp["observed_n"], sp["p_value"]], axis=-1),
            hovertemplate="%{y:.1%} (%{customdata[0]} requests), binomial p=%{customdata[1]:.3g}<extra></extra>",
        )
    )
    fig.update_layout(barmode="group", legend_title_text="")
    fig.update_yaxes(title="share of requests", tickformat=".0%")
    return fig


# -- helpers ---------------------------------------------------------------------------------


def _good(cmp: Comparison) -> pd.DataFrame:
    df = cmp.results
    return df[ok_mask(df)]


def _eq(s: pd.Series, value: Any) -> pd.Series:
    return s.isna() if value is None else s == value


def _num(v: Any) -> float | None:
    while isinstance(v, list) and len(v) == 1:
        v = v[0]
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _wide(lat: pd.Series) -> bool:
    x = lat.dropna()
    return bool(len(x) and x.min() > 0 and x.max() / x.min() > 50)
