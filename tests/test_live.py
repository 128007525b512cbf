"""``%kserve watch`` and :class:`LiveMetrics` in a real IPython shell against the real local cluster.

The metrics come from the local cluster's real Prometheus (scraping the ingress), the split from the
real isvc status, and traffic is real predictions through the ingress. Waits poll with deadlines;
nothing here measures time.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing.tools import default_config

from kserve_nb.analysis.frames import ok_mask
from kserve_nb.errors import KServeNbError, NotFound, ValidationError
from kserve_nb.service import Service
from kserve_nb.session import connect
from kserve_nb.widgets.live import LiveMetrics
from kserve_nb.widgets.samples import iris_rows
from tests import waiting

MODEL_1 = "gs://kfserving-examples/models/sklearn/1.0/model"
MODEL_2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
NAME = "lv-canary"
#: Prometheus needs a few scrapes after the traffic before rate() shows it.
METRICS_TIMEOUT = 90.0


def wait_for(what: str, check: Callable[[], Any], timeout: float = METRICS_TIMEOUT) -> Any:
    return waiting.wait_for(what, check, timeout, interval=0.5)


@pytest.fixture(scope="module")
def shell(local_cluster: Any) -> Iterator[InteractiveShell]:
    """A real InteractiveShell with the extension loaded and connected to the test cluster."""
    sh = InteractiveShell.instance(config=default_config())
    sh.run_line_magic("load_ext", "kserve_nb")
    ok(sh, f"%kserve connect local --state-dir {local_cluster.state_dir}")
    yield sh
    if "kserve_nb" in sh.extension_manager.loaded:
        sh.run_line_magic("unload_ext", "kserve_nb")


def ok(sh: InteractiveShell, cell: str) -> Any:
    result = sh.run_cell(cell)
    assert result.success, f"{cell!r} failed: {result.error_in_exec or result.error_before_exec!r}"
    return result.result


def magics(sh: InteractiveShell) -> Any:
    return sh.magics_manager.registry["KServeMagics"]


@pytest.fixture(scope="module")
def canary(local_cluster: Any) -> Iterator[Service]:
    """lv-canary on model 1 with model 2 as a 50% canary (both sides take traffic); deleted after.

    Its own Session, so unloading the extension in a test does not close it.
    """
    session = connect(local=True, state_dir=local_cluster.state_dir)
    svc = session.service(NAME)
    try:
        svc.delete()
    except NotFound:
        pass
    try:
        svc.deploy(MODEL_1)
        svc.canary(MODEL_2, 50)
        yield svc
    finally:
        try:
            svc.delete()
        except NotFound:
            pass
        session.close()


@pytest.fixture()
def live(canary: Service) -> Iterator[LiveMetrics]:
    """A LiveMetrics driven by explicit refresh() calls (no background thread)."""
    chart = LiveMetrics(canary, interval=1.0, window=120.0, autostart=False)
    yield chart
    chart.close()


@contextmanager
def traffic(svc: Service) -> Iterator[list[int]]:
    """Real predictions on the weighted route, a batch every half second, until the block ends.

    Steady traffic rather than one burst: a counter series is born with its first request, and
    Prometheus' rate() only sees increases after a series exists, so a lone first burst is invisible.
    Yields the list of batch sizes sent so far.
    """
    done, sent, failures = threading.Event(), [], []

    def run() -> None:
        rows = iris_rows(20)
        while not done.is_set():
            frame = svc.send(rows, to="default", concurrency=4)
            if not ok_mask(frame).all():
                failures.append(frame[~ok_mask(frame)].head(3))
            sent.append(len(frame))
            done.wait(0.5)

    sender = threading.Thread(target=run, name="test-live-traffic", daemon=True)
    sender.start()
    try:
        yield sent
    finally:
        done.set()
        sender.join(30)
    assert not sender.is_alive() and not failures, failures


def rps_points(chart: LiveMetrics) -> dict[str, int]:
    """Revision → number of plotted request-rate points above zero (read from the widget's traces)."""
    return {rev: sum(1 for y in chart.traces(rev)["rps"].y if y) for rev in chart.revisions}


def both_sides_have_rates(chart: LiveMetrics, svc: Service) -> dict[str, int] | None:
    chart.refresh()
    points = rps_points(chart)
    revisions = {e.revision for e in svc.status().traffic}
    return points if revisions <= set(points) and all(points[r] for r in revisions) else None


# ---------------------------------------------------------------------- tests


def test_watch_magic_returns_a_running_widget_tracked_for_unload(shell: InteractiveShell, canary: Service) -> None:
    chart = ok(shell, f"%kserve watch {NAME} --interval 500ms --window 2m --duration 1m")
    try:
        assert isinstance(chart, LiveMetrics)
        assert chart.running
        assert (chart.interval, chart.window, chart.max_duration) == (0.5, 120.0, 60.0)
        assert chart in magics(shell)._panels  # so %unload_ext stops it
        wait_for("a first refresh", lambda: chart.refreshes > 0, timeout=30)
        assert "kserve-nb-live-status" in chart.status_line._dom_classes
    finally:
        assert chart.stop(timeout=15)


def test_refresh_after_traffic_charts_both_revisions_in_place(live: LiveMetrics, canary: Service) -> None:
    live.refresh()
    assert live.error is None, live.error
    revisions = sorted(e.revision for e in canary.status().traffic)
    assert live.revisions == revisions  # traces exist for both sides before any traffic (from the split)
    traces = list(live.figure.data)
    assert len(traces) == 5 * len(revisions)
    colors = {rev: live.traces(rev)["rps"].line.color for rev in revisions}
    assert len(set(colors.values())) == len(revisions)

    with traffic(canary):
        first = wait_for("request rates of both revisions", lambda: both_sides_have_rates(live, canary))
        wait_for("more rate points", lambda: live.refresh() and sum(rps_points(live).values()) > sum(first.values()))

    # In place: the very same trace objects, none added, the data changed; each revision one colour.
    assert len(live.figure.data) == len(traces) and all(a is b for a, b in zip(live.figure.data, traces))
    for rev in revisions:
        assert {t.line.color for t in live.traces(rev).values()} == {colors[rev]}
        assert any(y is not None for y in live.traces(rev)["p95_ms"].y)
    frame = live.frame
    assert frame is not None and set(frame["revision"]) >= set(revisions)
    assert list(frame.columns[:6]) == ["time", "revision", "rps", "error_rate", "p50_ms", "p95_ms"]
    assert (frame["error_rate"].dropna() == 0).all()
    # The chart shows exactly what Prometheus answered (a step without requests is a gap).
    for rev in revisions:
        rows = frame[frame["revision"] == rev].sort_values("time")
        for key in ("rps", "p50_ms"):
            expected = [None if math.isnan(v) else v for v in rows[key]]
            assert list(live.traces(rev)[key].y) == pytest.approx(expected, nan_ok=True), (rev, key)
    assert "refreshed" in live.status_line.value


def test_weights_follow_the_split(live: LiveMetrics, canary: Service) -> None:
    live.refresh()
    latest = canary.status().latest_revision
    assert latest is not None
    try:
        canary.set_traffic(20)
        live.refresh()
        weights = list(live.traces(latest)["weight"].y)
        assert weights[-1] == 20
        assert sum(live.traces(r)["weight"].y[-1] for r in live.revisions) == 100
    finally:
        canary.set_traffic(50)
    live.refresh()
    weights = list(live.traces(latest)["weight"].y)
    assert 50 in weights and 20 in weights and weights[-1] == 50
    assert live.weights[-1].percent[latest] == 50


def test_max_duration_ends_the_refreshes_and_stop_is_bounded(canary: Service) -> None:
    chart = LiveMetrics(canary, interval=0.25, window=60, max_duration=1.0)
    try:
        wait_for("the maximum duration to end the refreshes", lambda: not chart.running, timeout=30)
        assert "maximum duration" in chart.status_line.value
        before = chart.refreshes
        assert before >= 1
        chart.start(max_duration=60)
        assert chart.running
        assert chart.stop(timeout=15)
        assert not chart.running and chart._thread is not None and not chart._thread.is_alive()
        after = chart.refreshes
        time.sleep(0.6)  # two intervals: a stopped chart does not refresh
        assert chart.refreshes == after
    finally:
        chart.close()
    assert chart.closed and not chart.running
    with pytest.raises(KServeNbError, match="closed"):
        chart.start()


def test_unreachable_prometheus_is_one_line_and_weights_still_chart(canary: Service) -> None:
    from kserve_nb.metrics.prometheus import PrometheusSource
    from tests.test_panel_browser import free_port

    chart = LiveMetrics(canary, source=PrometheusSource(f"http://127.0.0.1:{free_port()}"), autostart=False)
    try:
        assert chart.refresh() is False
        assert chart.error is not None and "\n" not in chart.error
        assert "Prometheus" in chart.error
        shown = chart.status_line.value
        assert "Traceback" not in shown and "⚠" in shown
        assert all(chart.traces(r)["weight"].y for r in chart.revisions)  # the split is still charted
    finally:
        chart.close()


def test_bad_watch_lines_are_one_line_errors(shell: InteractiveShell, canary: Service, capsys: Any) -> None:
    for cell, kind, words in [
        ("%kserve watch lv-nope", NotFound, "lv-nope"),
        (f"%kserve watch {NAME} --interval soon", ValidationError, "'soon' is not a duration"),
        (f"%kserve watch {NAME} --interval 10ms", ValidationError, "at least 0.25s"),
        (f"%kserve watch {NAME} --window 1s --interval 2s", ValidationError, "window"),
    ]:
        capsys.readouterr()
        result = shell.run_cell(cell)
        err = result.error_in_exec
        assert isinstance(err, kind), f"{cell!r}: {err!r}"
        assert words in str(err)
        shown = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
        assert len(shown) == 1 and "Traceback" not in shown[0], shown
    assert all(not getattr(p, "running", False) for p in magics(shell)._panels)


def test_unload_ext_stops_every_live_chart(shell: InteractiveShell, canary: Service, local_cluster: Any) -> None:
    chart = ok(shell, f"%kserve watch {NAME} --interval 1s")
    assert chart.running
    shell.run_line_magic("unload_ext", "kserve_nb")
    try:
        assert chart.closed and not chart.running
    finally:
        shell.run_line_magic("load_ext", "kserve_nb")
        ok(shell, f"%kserve connect local --state-dir {local_cluster.state_dir}")


def test_live_tab_refreshes_only_while_shown_and_closes_with_the_panel(canary: Service) -> None:
    from kserve_nb.widgets import Panel
    from kserve_nb.widgets.live import live_tab

    panel = Panel(canary, poll_interval=0, user_ns={})
    try:
        index = panel.add_tab(*live_tab(panel))
        chart = panel.tabs.children[index]
        assert isinstance(chart, LiveMetrics) and panel.tabs.titles[index] == "Live"
        assert not chart.running  # a panel opened for something else reads no metrics
        panel.tabs.selected_index = index
        assert chart.running
        wait_for("a refresh of the shown tab", lambda: chart.refreshes > 0, timeout=30)
        panel.tabs.selected_index = 0
        assert not chart.running and "paused" in chart.status_line.value
        panel.tabs.selected_index = index
        assert chart.running
    finally:
        panel.close()
    assert chart.closed and not chart.running


def test_a_stuck_prometheus_never_holds_stop_or_close(canary: Service) -> None:
    """A Prometheus that accepts the connection and never answers: stop() and close() return
    anyway, and the refresh that was stuck changes nothing once the chart is closed."""
    import socket

    from kserve_nb.metrics.prometheus import PrometheusSource

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # never accept(): the request sits in the backlog, unanswered
    port = listener.getsockname()[1]
    chart = LiveMetrics(canary, source=PrometheusSource(f"http://127.0.0.1:{port}", timeout=60), interval=0.25)
    try:
        thread = chart._thread
        assert thread is not None
        wait_for("the first refresh to be stuck reading", lambda: chart._refresh_lock.locked(), timeout=30)
        assert chart.stop(timeout=0.5) is False  # still reading: reported, not waited for
        assert not chart.running
        chart.close()
        assert chart.closed
        refreshes = chart.refreshes
    finally:
        listener.close()  # the stuck read fails now
    thread.join(30)
    assert not thread.is_alive()
    assert chart.refreshes == refreshes  # the late refresh found the chart closed
