"""``%kserve watch`` and the panel's Live tab on a Standard-mode (``spec.canary[]``) service, against
the real local cluster.

The series are per side — ``stable`` and the canary's name — read from the local Prometheus (which
scrapes the ingress's per-target counters) summed by each side's Deployment; the weights are each
side's configured percent from the isvc. Traffic is real predictions through the ingress.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing.tools import default_config

from kserve_nb.analysis.frames import ok_mask
from kserve_nb.errors import NotFound
from kserve_nb.service import Service
from kserve_nb.session import connect
from kserve_nb.style import SIDE_COLORS
from kserve_nb.widgets.live import LiveMetrics
from kserve_nb.widgets.samples import iris_rows
from tests import waiting

NS = "live-standard"
NAME = "lvs-canary"
M1 = "gs://kfserving-examples/models/sklearn/1.0/model"
M2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
MODE = {"serving.kserve.io/deploymentMode": "Standard", "serving.kserve.io/autoscalerClass": "none"}


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    return waiting.wait_for(what, check, timeout, interval=0.5)


@pytest.fixture(scope="module")
def canary(local_cluster: Any) -> Iterator[Service]:
    """A Standard-mode service on model 1 with canary v2 (model 2) at 40%; deleted afterwards."""
    session = connect(local=True, state_dir=local_cluster.state_dir, namespace=NS)
    session.create_namespace(NS)
    svc = session.service(NAME)
    try:
        svc.delete()
    except NotFound:
        pass
    try:
        session.apply({
            "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": NAME, "namespace": NS, "annotations": dict(MODE)},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": M1}}},
        }, namespace=NS)
        svc.canary(M2, 40)
        yield svc
    finally:
        try:
            svc.delete()
        except NotFound:
            pass
        session.close()


def send_until(done: threading.Event, svc: Service, failures: list[Any]) -> None:
    """Steady predictions on the weighted host (rate() needs a series to exist before it grows)."""
    rows = iris_rows(20)
    while not done.is_set():
        frame = svc.send(rows, to="default", concurrency=4)
        if not ok_mask(frame).all():
            failures.append(frame[~ok_mask(frame)].head(3))
        done.wait(0.5)


def both_sides_have_rates(chart: LiveMetrics) -> dict[str, int] | None:
    chart.refresh()
    points = {side: sum(1 for y in chart.traces(side)["rps"].y if y) for side in chart.revisions}
    return points if {"stable", "v2"} <= set(points) and points["stable"] and points["v2"] else None


def test_the_live_chart_plots_per_side_series_and_weights(canary: Service) -> None:
    chart = LiveMetrics(canary, interval=1.0, window=120.0, autostart=False)
    done, failures = threading.Event(), []
    sender = threading.Thread(target=send_until, args=(done, canary, failures), daemon=True)
    try:
        chart.refresh()
        assert chart.revisions == ["stable", "v2"]  # the sides, from the status, before any traffic
        assert chart.weights[-1].percent == {"stable": 60, "v2": 40}
        assert chart.traces("v2")["rps"].name == "v2 (canary)" and chart.traces("stable")["rps"].name == "stable"
        assert chart.traces("v2")["rps"].line.color == SIDE_COLORS["latest"]
        assert chart.traces("stable")["rps"].line.color == SIDE_COLORS["prev"]
        sender.start()
        wait_for("request rates of both sides", lambda: both_sides_have_rates(chart))
    finally:
        done.set()
        if sender.is_alive():
            sender.join(30)
        chart.close()
    assert not failures, failures
    assert chart.error is None, chart.error
    frame = chart.frame
    assert frame is not None and set(frame["revision"]) == {"stable", "v2"}  # no Deployment or target names
    assert any(y is not None for y in chart.traces("v2")["p95_ms"].y)
    assert list(chart.traces("v2")["weight"].y)[-1] == 40


@pytest.fixture(scope="module")
def shell(local_cluster: Any) -> Iterator[InteractiveShell]:
    sh = InteractiveShell.instance(config=default_config())
    sh.run_line_magic("load_ext", "kserve_nb")
    result = sh.run_cell(f"%kserve connect local --state-dir {local_cluster.state_dir} -n {NS}")
    assert result.success, result.error_in_exec
    yield sh
    if "kserve_nb" in sh.extension_manager.loaded:
        sh.run_line_magic("unload_ext", "kserve_nb")


def test_watch_magic_charts_the_sides(shell: InteractiveShell, canary: Service) -> None:
    result = shell.run_cell(f"%kserve watch {NAME} --interval 500ms --window 2m --duration 1m")
    assert result.success, result.error_in_exec
    chart = result.result
    try:
        assert isinstance(chart, LiveMetrics)
        wait_for("a first refresh", lambda: chart.refreshes > 0, timeout=30)
        assert chart.revisions == ["stable", "v2"]
    finally:
        assert chart.stop(timeout=15)


def test_live_tab_of_the_panel_charts_the_sides(canary: Service) -> None:
    from kserve_nb.widgets import Panel
    from kserve_nb.widgets.live import live_tab

    panel = Panel(canary, poll_interval=0, user_ns={})
    try:
        index = panel.add_tab(*live_tab(panel))
        chart = panel.tabs.children[index]
        panel.tabs.selected_index = index
        wait_for("a refresh of the shown tab", lambda: chart.refreshes > 0, timeout=30)
        assert chart.revisions == ["stable", "v2"] and chart.weights[-1].percent["v2"] == 40
    finally:
        panel.close()
