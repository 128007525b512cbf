"""Live per-revision charts of one InferenceService: ``LiveMetrics(service)`` or ``%kserve watch NAME``.

One plotly ``FigureWidget`` with a shared time axis and four rows: request rate, error rate and
p50/p95 latency per revision (from a Prometheus range query over the last ``window`` seconds), and
beneath them the configured traffic weight of each revision (``status…traffic``, sampled at every
refresh, since Prometheus knows nothing of the split). A one-line status sits above the chart.
A Standard-mode service (``spec.canary[]``) has sides instead of revisions: the series are per side
(``stable`` and each canary's name; a source with ``for_sides``, such as ``PrometheusSource``, is
read per side's Deployment) and the weights are each side's configured percent.

Why a background thread and not the kernel's event loop: the loop is blocked while a cell runs,
and the moment worth watching is exactly when a cell is sending traffic or moving the split. The
thread only reads (Prometheus, the isvc status) and then updates the existing traces' data inside
``batch_update``: one message per refresh, no trace re-created, so the chart does not flicker.
It is bounded: it ends at ``max_duration``, on :meth:`LiveMetrics.stop`, on :meth:`close` and on
``%unload_ext kserve_nb`` (the magic registers the widget like a panel).
"""

from __future__ import annotations

import html
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import ipywidgets as w

from kserve_nb import style
from kserve_nb.analysis.plots import _EXTRA_COLORS  # the figures' palette beyond prev/latest/default
from kserve_nb.errors import KServeNbError, ValidationError
from kserve_nb.style import ERROR, MUTED, OK, SIDE_COLORS, WARN
from kserve_nb.widgets.theme import theme_probe

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import plotly.graph_objects as go

    from kserve_nb.service import Service
    from kserve_nb.status import ServiceStatus

log = logging.getLogger(__name__)

#: The metric series of the chart: frame column → row (p50 and p95 share the latency row).
METRICS: dict[str, int] = {"rps": 1, "error_rate": 2, "p50_ms": 3, "p95_ms": 3}
WEIGHT_ROW = 4
#: Most points per series a range query asks for: enough for a smooth line, small per refresh.
MAX_POINTS = 300
#: Longest status line; an error message is cut to it rather than wrapping under the chart.
MAX_LINE = 240
DEFAULT_MAX_DURATION = 600.0
#: Shortest refresh interval: faster would only load Prometheus and the widget channel.
MIN_INTERVAL = 0.25


class RangeSource(Protocol):
    """What the chart reads: per-revision time series of one service (``PrometheusSource``)."""

    def range_frame(self, namespace: str, service: str, start: float, end: float, step: float) -> pd.DataFrame:
        """Rows ``time, revision, rps, error_rate, p50_ms, p95_ms`` between ``start`` and ``end``
        (Unix seconds), one per ``step`` seconds and revision."""
        ...


@dataclass(frozen=True)
class WeightSample:
    """The configured split at one refresh: revision → percent."""

    time: float
    percent: Mapping[str, int]


def one_line(err: BaseException) -> str:
    """An exception as one short line (ours carry their own message; others get their type)."""
    text = str(err) if isinstance(err, KServeNbError) else f"{type(err).__name__}: {err}"
    text = " ".join(text.split())
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 1] + "…"


def duration_text(seconds: float) -> str:
    """``90`` → ``1m30s``, ``2.5`` → ``2.5s``: how the status line and errors name a duration."""
    if seconds < 60:
        return f"{seconds:g}s"
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v) or "0s"


class RevisionColors:
    """One colour per revision for the widget's lifetime, from the figures' palette.

    A revision takes the colour of the side it plays when first seen (a canary orange, the
    revision serving alone or the baseline blue, as in every other figure and the split bar) if
    no other revision has it yet, else the next free palette colour. It never changes afterwards,
    so after a promotion the promoted revision keeps the colour it had as a canary.
    """

    PALETTE = (SIDE_COLORS["prev"], SIDE_COLORS["latest"], SIDE_COLORS["default"], *_EXTRA_COLORS)

    def __init__(self) -> None:
        self._colors: dict[str, str] = {}

    def __getitem__(self, revision: str) -> str:
        return self._colors[revision]

    def assign(self, revision: str, side: str | None) -> str:
        """The colour of ``revision``, choosing it now if it has none (``side``: latest/prev/None)."""
        if revision in self._colors:
            return self._colors[revision]
        used = set(self._colors.values())
        preferred = SIDE_COLORS.get(side or "prev", SIDE_COLORS["prev"])
        free = [c for c in self.PALETTE if c not in used]
        if preferred in used:
            preferred = free[0] if free else self.PALETTE[len(used) % len(self.PALETTE)]
        color = preferred
        self._colors[revision] = color
        return color


def roles(st: ServiceStatus) -> dict[str, str]:
    """Revision → ``latest`` / ``prev`` as ``kubectl get isvc`` names them (LATEST and PREV columns);
    Standard mode: canary name → ``canary`` (the stable's name says its role)."""
    if st.standard:
        return {c.name: "canary" for c in st.canaries}
    out: dict[str, str] = {}
    if st.latest_revision:
        out[st.latest_revision] = "latest"
    if st.prev_revision and st.prev_revision != st.latest_revision:
        out[st.prev_revision] = "prev"
    return out


def colour_side(st: ServiceStatus | None, revision: str) -> str:
    """The side whose colour ``revision`` prefers: ``latest`` (orange) for a canary next to a
    serving baseline, ``prev`` (blue) for the baseline or a revision serving alone (Standard mode:
    the newest canary next to a stable with traffic is orange)."""
    if st is not None and st.standard:
        newest, stable = st.newest_canary, st.stable
        return "latest" if newest is not None and newest.name == revision and stable and stable.percent else "prev"
    if st is None or revision != (st.latest_revision or st.latest_ready_revision):
        return "prev"
    others = {e.revision for e in st.traffic if e.percent > 0} - {revision}
    return "latest" if others else "prev"


def split_of(st: ServiceStatus) -> dict[str, int]:
    """Revision → configured percent (entries for one revision, e.g. a tag entry, added up);
    Standard mode: side → its configured percent."""
    if st.standard:
        return {s.name: int(s.percent) for s in st.sides}
    out: dict[str, int] = {}
    for e in st.traffic:
        if e.revision:
            out[e.revision] = out.get(e.revision, 0) + int(e.percent)
    return out


def _local_times(values: Any) -> list[str]:
    """Times (Unix seconds, or pandas timestamps) as local wall-clock strings plotly reads as dates.

    Local, because the reader compares them with the clock on their screen; strings, because
    they serialise the same through every widget transport.
    """
    import pandas as pd

    series = pd.Series(values)
    if pd.api.types.is_datetime64_any_dtype(series):
        stamps = series.dt.tz_localize("UTC") if series.dt.tz is None else series
        seconds = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().tolist()
    else:
        seconds = [float(v) for v in series]
    return [datetime.fromtimestamp(s).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] for s in seconds]


def _translucent(hex_color: str, alpha: float = 0.35) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _floats(values: Any) -> list[float | None]:
    """Numbers with NaN (no requests in that step) as gaps."""
    out: list[float | None] = []
    for v in values:
        try:
            f = float(v)
        except (TypeError, ValueError):
            f = math.nan
        out.append(None if math.isnan(f) or math.isinf(f) else f)
    return out


def _figure(window: float) -> go.FigureWidget:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    base = make_subplots(
        rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.045, row_heights=[0.28, 0.22, 0.28, 0.22],
    )
    fig = go.FigureWidget(base)
    fig.update_layout(
        template=style.plotly_template(),  # the notebook's light/dark theme, as every kserve-nb figure
        height=620,
        margin=dict(l=60, r=20, t=30, b=40),
        legend=dict(orientation="h", yanchor="bottom", y=1.01, xanchor="left", x=0, title_text=""),
        hovermode="x unified",
    )
    titles = {1: "requests/s", 2: "error rate", 3: "ms: p50 ─ p95 ╌", WEIGHT_ROW: "traffic weight"}
    for row, title in titles.items():
        fig.update_yaxes(title_text=title, row=row, col=1, rangemode="tozero")
    fig.update_yaxes(tickformat=".1%", row=2, col=1)
    fig.update_yaxes(range=[0, 105], ticksuffix="%", row=WEIGHT_ROW, col=1)
    fig.update_xaxes(type="date", row=WEIGHT_ROW, col=1)
    now = time.time()
    fig.update_xaxes(range=_local_times([now - window, now]))
    return fig


class LiveMetrics(w.VBox):  # type: ignore[misc]  # ipywidgets ships no type information
    """Live per-revision request rate, error rate, p50/p95 latency and traffic weights of a service.

    Parameters
    ----------
    service:
        The InferenceService (``session.service("sklearn-iris")``).
    source:
        Where the metrics come from: anything with ``range_frame(namespace, service, start, end,
        step)`` (:class:`kserve_nb.metrics.prometheus.PrometheusSource`). Default: the session's,
        ``service.session.metrics()``, resolved on the first refresh (so opening the widget never
        waits for a Prometheus to start); when there is none the status line says why and the
        traffic weights are still charted.
    interval:
        Seconds between refreshes.
    window:
        Seconds of history shown.
    max_duration:
        Seconds after which the refreshes stop by themselves (:meth:`start` resumes them).
    autostart:
        Start refreshing in the background right away (default); with False call :meth:`refresh`
        or :meth:`start` yourself.

    Examples
    --------
    >>> live = LiveMetrics(session.service("sklearn-iris"), interval=2, window=300)   # doctest: +SKIP
    >>> live.stop()                                                                    # doctest: +SKIP
    """

    #: True once closed; also until __init__ has built the widget (ipywidgets' __del__ calls close()).
    closed = True

    def __init__(
        self,
        service: Service,
        source: RangeSource | None = None,
        interval: float = 2.0,
        window: float = 300.0,
        max_duration: float = DEFAULT_MAX_DURATION,
        *,
        autostart: bool = True,
    ) -> None:
        if not interval >= MIN_INTERVAL or not window >= interval or not max_duration > 0:
            raise ValidationError(
                f"interval must be at least {MIN_INTERVAL:g}s, window at least the interval and max_duration "
                f"positive (got interval {interval!r}, window {window!r}, max_duration {max_duration!r}); "
                "e.g. %kserve watch NAME --interval 2s --window 5m --duration 10m"
            )
        self.service = service
        self.source: RangeSource | None = source
        self.interval = float(interval)
        self.window = float(window)
        self.max_duration = float(max_duration)
        #: The last metrics frame read (``time, revision, rps, error_rate, p50_ms, p95_ms``).
        self.frame: pd.DataFrame | None = None
        #: The configured split at each refresh within the window.
        self.weights: list[WeightSample] = []
        #: The last problem (one line), or None when the last refresh read everything.
        self.error: str | None = None
        self.last_refresh: float | None = None
        self.refreshes = 0
        self.colors = RevisionColors()
        self._traces: dict[str, dict[str, Any]] = {}
        self._status: ServiceStatus | None = None
        self._roles: dict[str, str] = {}
        self._source_error: str | None = None
        #: Whether the time axis scrolls with the clock (False while the reader has zoomed in).
        self.following = True
        self._set_range: tuple[str, ...] | None = None
        self._refresh_lock = threading.Lock()  # one refresh at a time (the thread's or a caller's)
        # Held only while the figure changes (not while reading), so the kernel thread changing
        # the theme never waits for a slow Prometheus.
        self._figure_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._deadline: float | None = None
        self._stopped_because: str | None = None

        self.figure = _figure(self.window)
        self.figure.add_class("kserve-nb-live-chart")
        self.status_line = w.HTML()
        self.status_line.add_class("kserve-nb-live-status")
        # Reports JupyterLab's theme (and every switch) so the figure is redrawn in its colours.
        self.probe = theme_probe(self._on_theme)
        parts = [self.status_line, self.figure] + ([self.probe] if self.probe is not None else [])
        super().__init__(children=parts)
        self.closed = False
        self.add_class("kserve-nb-live")
        self._render_status("⏳ starting…", WARN)
        if autostart:
            self.start()

    # ------------------------------------------------------------------ reading

    @property
    def step(self) -> float:
        """Seconds between points of the range query: the refresh interval, coarser for long windows."""
        return max(self.interval, self.window / MAX_POINTS)

    @property
    def source_name(self) -> str:
        src = self.source
        return str(getattr(src, "name", None) or type(src).__name__) if src is not None else "no source"

    def _resolve_source(self) -> RangeSource | None:
        if self.source is not None:
            return self.source
        try:
            self.source = self.service.session.metrics()
            self._source_error = None
        except Exception as err:  # noqa: BLE001 - shown on the status line, retried at the next refresh
            self._source_error = f"no Prometheus: {one_line(err)}"
        return self.source

    def refresh(self) -> bool:
        """Read the metrics and the split once and update the chart in place.

        Never raises: a failure is one line on the status line (and in :attr:`error`). Returns
        True when both the metrics and the split were read.
        """
        with self._refresh_lock:
            if self.closed:
                return False
            now = time.time()
            problems: list[str] = []
            status = None
            try:
                status = self.service.status()
            except Exception as err:  # noqa: BLE001 - the API blinked or the service is gone: say so, keep going
                problems.append(f"status: {one_line(err)}")
            frame = None
            source = self._resolve_source()
            if source is None:
                problems.append(self._source_error or "no Prometheus")
            else:
                sides = sides_of(status)
                for_sides = getattr(source, "for_sides", None)
                if sides and callable(for_sides):
                    source = for_sides(sides)  # per side: the Deployments the status names now
                try:
                    frame = source.range_frame(
                        self.service.namespace, self.service.name, now - self.window, now, self.step
                    )
                except Exception as err:  # noqa: BLE001 - Prometheus down or a bad query: one line, next refresh retries
                    problems.append(f"Prometheus query failed: {one_line(err)}")
            with self._figure_lock:
                if self.closed:  # closed while reading
                    return False
                self._apply(now, status, frame)
            self.error = "; ".join(problems) or None
            self.last_refresh = now
            self.refreshes += 1
            self._render_status()
            return not problems

    def _apply(self, now: float, status: ServiceStatus | None, frame: pd.DataFrame | None) -> None:
        if status is not None and (not self.weights or now >= self.weights[-1].time):
            self._status = status
            self._roles = roles(status)
            self.weights.append(WeightSample(now, split_of(status)))
        start = now - self.window
        # Keep one sample from before the window so the step line reaches its left edge.
        while len(self.weights) > 1 and self.weights[1].time < start:
            self.weights.pop(0)
        if frame is not None:
            self.frame = frame
        revisions = list(self._traces)
        for rev in self._revisions_in(self.frame) + [r for s in self.weights for r in s.percent]:
            if rev not in revisions:
                revisions.append(rev)
        for rev in sorted(r for r in revisions if r not in self._traces):  # -00001 before -00002 in the legend
            self._add_revision(rev)
        self._update(revisions, start, now)

    @staticmethod
    def _revisions_in(frame: pd.DataFrame | None) -> list[str]:
        if frame is None or frame.empty or "revision" not in frame:
            return []
        return [str(r) for r in dict.fromkeys(frame["revision"]) if r is not None and str(r)]

    # ------------------------------------------------------------------ the chart

    def _label(self, revision: str) -> str:
        role = self._roles.get(revision)
        return f"{revision} ({role})" if role else revision

    def _add_revision(self, revision: str) -> None:
        """Add the revision's traces (all at once: the only time the trace list changes)."""
        import plotly.graph_objects as go

        color = self.colors.assign(revision, colour_side(self._status, revision))
        label = self._label(revision)
        traces: list[tuple[str, Any, int]] = []
        for key, row in METRICS.items():
            dash = "dash" if key == "p95_ms" else "solid"
            hover = {"rps": "%{y:.2f} req/s", "error_rate": "%{y:.2%} errors",
                     "p50_ms": "p50 %{y:.1f} ms", "p95_ms": "p95 %{y:.1f} ms"}[key]
            traces.append((key, go.Scatter(
                x=[], y=[], mode="lines+markers", marker=dict(size=4), line=dict(color=color, dash=dash, width=2),
                name=label, legendgroup=revision, showlegend=key == "rps", meta={"revision": revision, "series": key},
                hovertemplate=f"{hover}<extra>{html.escape(revision)}</extra>", connectgaps=False,
            ), row))
        # Stacked: the split always adds up to 100%, and two revisions at 50% stay both visible.
        traces.append(("weight", go.Scatter(
            x=[], y=[], mode="lines", line=dict(color=color, shape="hv", width=1), stackgroup="weight",
            fillcolor=_translucent(color), name=label, legendgroup=revision, showlegend=False,
            meta={"revision": revision, "series": "weight"},
            hovertemplate=f"%{{y}}% configured<extra>{html.escape(revision)}</extra>",
        ), WEIGHT_ROW))
        start = len(self.figure.data)
        self.figure.add_traces([t for _, t, _ in traces], rows=[r for *_, r in traces], cols=[1] * len(traces))
        self._traces[revision] = {key: self.figure.data[start + i] for i, (key, _, _) in enumerate(traces)}

    def _update(self, revisions: Sequence[str], start: float, now: float) -> None:
        frame = self.frame
        groups: dict[str, Any] = {}
        if frame is not None and not frame.empty and "revision" in frame:
            for rev, g in frame.sort_values("time").groupby("revision", sort=False):
                groups[str(rev)] = g
        # One point per status read: when a read fails the line stops at the last split known,
        # rather than claiming the split held until now.
        weight_times = _local_times([s.time for s in self.weights])
        with self.figure.batch_update():
            for rev in revisions:
                traces = self._traces[rev]
                label = self._label(rev)
                g = groups.get(rev)
                x = _local_times(g["time"]) if g is not None else []
                for key in METRICS:
                    trace = traces[key]
                    trace.x = x
                    trace.y = _floats(g[key]) if g is not None and key in g else []
                    if trace.name != label:
                        trace.name = label
                traces["weight"].x = weight_times
                traces["weight"].y = [s.percent.get(rev, 0) for s in self.weights]
                traces["weight"].name = label
            # 0–5% unless errors go higher: an all-zero series would otherwise autoscale to 0–100%.
            top = max([y for rev in revisions for y in self._traces[rev]["error_rate"].y if y is not None], default=0.0)
            error_range = (0.0, max(0.05, top * 1.15))
            if tuple(self.figure.layout.yaxis2.range or ()) != error_range:
                self.figure.layout.yaxis2.range = error_range
            self._follow(start, now)

    def _follow(self, start: float, now: float) -> None:
        """Scroll the shared time axis to the window ending now, unless the reader zoomed or panned.

        A zoom (in the browser) changes the axis range on this side too, so a range other than the
        one set last means the reader is looking at something: leave it. A double-click resets the
        axis (autorange) and the chart follows the clock again.
        """
        axes = [self.figure.layout[f"xaxis{'' if row == 1 else row}"] for row in range(1, WEIGHT_ROW + 1)]
        if any(a.autorange is True for a in axes):
            self.following = True
        elif self._set_range is not None and any(tuple(a.range or ()) != self._set_range for a in axes):
            self.following = False
        if self.following:
            rng = tuple(_local_times([start, now]))
            self.figure.update_xaxes(range=rng, autorange=False)
            self._set_range = rng

    def traces(self, revision: str) -> dict[str, Any]:
        """The live trace objects of ``revision`` by series (``rps``, ``error_rate``, ``p50_ms``,
        ``p95_ms``, ``weight``); the same objects for the widget's lifetime."""
        return dict(self._traces[revision])

    @property
    def revisions(self) -> list[str]:
        """Revisions charted so far, in order of appearance."""
        return list(self._traces)

    # ------------------------------------------------------------------ status line

    def _render_status(self, text: str | None = None, color: str | None = None) -> None:
        if text is None:
            text, color = self._status_text()
        self.status_line.value = (
            f'<div style="font-size:12px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;'
            f'color:{color}" title="{html.escape(text)}">{html.escape(text)}</div>'
        )

    def _status_text(self) -> tuple[str, str]:
        when = time.strftime("%H:%M:%S", time.localtime(self.last_refresh)) if self.last_refresh else "never"
        where = f"{self.service.namespace}/{self.service.name}"
        if self.error:
            return f"⚠ {where} · {self.error} · last refresh {when}", ERROR
        if self._stopped_because:
            return f"■ {where} · {self._stopped_because} · last refresh {when} · {self.source_name}", MUTED
        every = f"every {duration_text(self.interval)}" if self.running else "not refreshing"
        if self.running and self._deadline is not None:
            ends = time.time() + self._deadline - time.monotonic()
            every += " until " + time.strftime("%H:%M:%S", time.localtime(ends))
        window = duration_text(self.window)
        return f"● {where} · {self.source_name} · refreshed {when} · {every} · window {window}", OK

    # ------------------------------------------------------------------ background refreshes

    @property
    def running(self) -> bool:
        """Whether the background refreshes are going on."""
        t = self._thread
        return t is not None and t.is_alive() and not self._stop.is_set()

    def start(self, max_duration: float | None = None) -> None:
        """Refresh every :attr:`interval` seconds on a daemon thread, for at most ``max_duration``
        seconds (default :attr:`max_duration`) or until :meth:`stop`."""
        if self.closed:
            raise KServeNbError("this live chart is closed; open a new one with %kserve watch NAME")
        with self._state_lock:
            if self.running:
                return
            self._stop = threading.Event()
            self._deadline = time.monotonic() + (max_duration if max_duration is not None else self.max_duration)
            self._stopped_because = None
            self._thread = threading.Thread(
                target=self._loop, args=(self._stop, self._deadline), name="kserve-nb-live", daemon=True
            )
            self._thread.start()

    def _loop(self, stop: threading.Event, deadline: float) -> None:
        while not stop.is_set():
            began = time.monotonic()
            if began >= deadline:
                self._stopped_because = (
                    f"stopped after {duration_text(self.max_duration)} (the maximum duration; .start() resumes)"
                )
                stop.set()
                self._render_status()
                return
            try:
                self.refresh()
            except Exception:  # refresh() reports its own failures; this is a bug, keep it out of the kernel
                log.exception("live chart refresh failed")
            stop.wait(max(0.0, min(self.interval - (time.monotonic() - began), deadline - time.monotonic())))

    def stop(self, timeout: float = 10.0, reason: str = "stopped (.start() resumes)") -> bool:
        """Stop the background refreshes; waits at most ``timeout`` s for a refresh in flight.

        ``reason`` is what the status line says. Returns False if the thread is still finishing a
        read (it is a daemon and exits right after it, without touching the chart once closed).
        """
        with self._state_lock:
            thread = self._thread
            self._stop.set()
            if self._stopped_because is None and thread is not None:
                self._stopped_because = reason
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        done = thread is None or not thread.is_alive()
        if not self.closed:
            self._render_status()
        return done

    def _on_theme(self, theme: str) -> None:
        style.set_theme("dark" if theme == "dark" else "light")
        with self._figure_lock:
            if not self.closed:
                self.figure.layout.template = style.plotly_template()

    def close(self) -> None:
        """Stop refreshing and close the widgets (also what ``%unload_ext kserve_nb`` does)."""
        if self.closed:
            return
        # A short wait: a refresh still reading after it finishes on its own and, seeing the chart
        # closed, changes nothing; closing (or %unload_ext) must not hold the kernel for a slow read.
        self.stop(timeout=2.0, reason="closed")
        with self._figure_lock:
            self.closed = True
            for child in (self.status_line, self.figure, self.probe):
                if child is not None:
                    child.close()
        super().close()

    def __repr__(self) -> str:
        state = "running" if self.running else ("closed" if self.closed else "stopped")
        return f"<LiveMetrics {self.service.namespace}/{self.service.name} {state}, {len(self._traces)} revisions>"


def sides_of(st: ServiceStatus | None) -> dict[str, str]:
    """Standard mode: side name → Deployment (empty in Knative mode or without a status)."""
    if st is None or not st.standard:
        return {}
    return {s.name: s.deployment for s in st.sides}


def live_tab(panel: Any) -> tuple[str, LiveMetrics]:
    """A "Live" tab for the release panel: ``register_tab(live_tab)`` or ``panel.add_tab(*live_tab(panel))``.

    It refreshes only while the tab is shown (so a panel opened for a promotion does not start a
    Prometheus or poll it), and closes with the panel.
    """
    live = LiveMetrics(panel.controller.service, autostart=False)

    def selected(change: Mapping[str, Any]) -> None:
        index, tabs = change["new"], panel.tabs.children
        if index is not None and 0 <= index < len(tabs) and tabs[index] is live:
            if not live.closed:
                live.start()
        elif live.running:
            live.stop(timeout=0, reason="paused while the tab is hidden")

    panel.tabs.observe(selected, names="selected_index")
    return "Live", live


__all__ = ["LiveMetrics", "RangeSource", "RevisionColors", "WeightSample", "live_tab"]
