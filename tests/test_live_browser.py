"""``%kserve watch`` in a real browser: JupyterLab + headless Debian chromium, the live chart updating.

Same harness as the panel's browser test (tests/test_panel_browser.py): a loopback JupyterLab with a
random token and throwaway dirs, Playwright on the system chromium. The notebook opens the live
chart of a 50% canary; the test then sends real predictions through the ingress and waits until
the chart *in the page* plots request rates for both revisions — on the same plot element, with
the same traces (updated in place, not redrawn). The page is saved as ``test-artifacts/live.png``.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from kserve_nb.errors import NotFound
from kserve_nb.session import Session, connect
from kserve_nb.widgets.samples import iris_rows
from tests.test_panel_browser import (  # noqa: F401  (page is a fixture)
    PANEL_TIMEOUT_MS,
    SERVER_START_TIMEOUT,
    _answers,
    _stop_lab,
    expect_text,
    free_port,
    page,
    wait_for,
    write_settings,
)

pytestmark = pytest.mark.browser

MODEL_1 = "gs://kfserving-examples/models/sklearn/1.0/model"
MODEL_2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
NAME = "pb-live"
#: Scrapes and rate() windows between the first request and a plotted rate.
CHART_TIMEOUT_MS = 120_000

#: Per revision, the number of request-rate points above zero that the page's plot holds.
RATE_POINTS_JS = """() => {
  const gd = document.querySelector('.kserve-nb-live .js-plotly-plot');
  if (!gd || !gd.data) return null;
  const out = {};
  for (const t of gd.data) {
    if (t.meta && t.meta.series === 'rps') out[t.meta.revision] = (t.y || []).filter(v => v > 0).length;
  }
  return out;
}"""


@pytest.fixture()
def service(local_cluster: Any) -> Iterator[Session]:
    """pb-live on model 1 with model 2 as a 50% canary; deleted afterwards. Yields its Session."""
    session: Session = connect(local=True, state_dir=local_cluster.state_dir)
    svc = session.service(NAME)
    try:
        svc.delete()
    except NotFound:
        pass
    try:
        svc.deploy(MODEL_1)
        svc.canary(MODEL_2, 50)
        yield session
    finally:
        try:
            svc.delete()
        except NotFound:
            pass
        session.close()


def write_notebook(root: Path, state_dir: Path) -> Path:
    cells = [
        "%load_ext kserve_nb",
        f"%kserve connect local --state-dir {state_dir}",
        f"live = %kserve watch {NAME} --interval 1s --window 45s --duration 5m\nlive",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    path = root / "live.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture()
def lab(tmp_path: Path, local_cluster: Any) -> Iterator[str]:
    """A JupyterLab server on 127.0.0.1 serving live.ipynb; yields the notebook URL (with its token)."""
    root = tmp_path / "root"
    root.mkdir()
    write_notebook(root, local_cluster.state_dir)
    write_settings(tmp_path / "settings")
    port, token = free_port(), secrets.token_hex(16)
    dirs = {k: tmp_path / k.lower() for k in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR")}
    for d in dirs.values():
        d.mkdir()
    log = open(tmp_path / "jupyterlab.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",
            f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
            f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
            "--LabApp.news_url=",
            "--LabApp.extension_manager=readonly",
            "--ServerApp.terminals_enabled=False",
            "--ServerApp.allow_root=True",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        env={**os.environ, **{k: str(v) for k, v in dirs.items()}, "JUPYTER_PLATFORM_DIRS": "1"},
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for("JupyterLab to answer", lambda: _answers(base, token, proc), SERVER_START_TIMEOUT)
        yield f"{base}/lab/tree/live.ipynb?token={token}"
    finally:
        _stop_lab(proc, base, token)
        log.close()


def test_live_chart_updates_in_jupyterlab(service: Session, lab: str, page: Any, artifacts: Path) -> None:  # noqa: F811 - fixture
    try:
        _drive(page, lab, service, artifacts)
    finally:
        page.screenshot(path=str(artifacts / "live.png"), full_page=True)


def _drive(page: Any, url: str, session: Session, artifacts: Path) -> None:  # noqa: F811 - the page fixture's value
    svc = session.service(NAME)
    revisions = sorted(e.revision for e in svc.status().traffic)
    assert len(revisions) == 2
    page.goto(url)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget", timeout=PANEL_TIMEOUT_MS)
    page.locator(".jp-Notebook").first.wait_for(timeout=PANEL_TIMEOUT_MS)
    page.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
        " return k && k.status === 'idle'; }",
        timeout=PANEL_TIMEOUT_MS,
    )
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); return true; }")
    chart = page.locator(".kserve-nb-live .js-plotly-plot")
    chart.wait_for(timeout=PANEL_TIMEOUT_MS)
    chart.scroll_into_view_if_needed()
    expect_text(page, ".kserve-nb-live-status", "refreshed", timeout_ms=PANEL_TIMEOUT_MS)
    # The traces of both revisions are there from the split alone, before any traffic.
    page.wait_for_function(
        f"() => {{ const p = ({RATE_POINTS_JS})(); return p && Object.keys(p).length === {len(revisions)}; }}",
        timeout=CHART_TIMEOUT_MS,
    )
    before = page.evaluate(RATE_POINTS_JS)
    assert sorted(before) == revisions and all(v == 0 for v in before.values()), before
    # Mark the plot element: a chart redrawn from scratch would lose the mark (and flicker).
    page.evaluate("() => { document.querySelector('.kserve-nb-live .js-plotly-plot').__kserveMark = 1; }")

    # Real predictions through the ingress's weighted route until the page plots both sides.
    done = threading.Event()

    def traffic() -> None:
        rows = iris_rows(30)
        while not done.is_set():
            svc.send(rows, to="default", concurrency=4)
            done.wait(0.5)

    sender = threading.Thread(target=traffic, name="live-browser-traffic", daemon=True)
    sender.start()
    try:
        page.wait_for_function(
            f"() => {{ const p = ({RATE_POINTS_JS})(); return p && Object.keys(p).length === {len(revisions)}"
            " && Object.values(p).every(n => n > 0); }",
            timeout=CHART_TIMEOUT_MS,
        )
        first = page.evaluate(RATE_POINTS_JS)
        # And it keeps updating while the traffic flows: more points on the same plot.
        page.wait_for_function(
            f"() => {{ const p = ({RATE_POINTS_JS})(); return p && Object.values(p).reduce((a, b) => a + b, 0)"
            f" >= {sum(first.values()) + 2 * len(revisions)}; }}",
            timeout=CHART_TIMEOUT_MS,
        )
    finally:
        done.set()
        sender.join(30)
    after = page.evaluate(RATE_POINTS_JS)
    assert all(after[r] > 0 for r in revisions), after
    same = page.evaluate(
        "() => { const gd = document.querySelector('.kserve-nb-live .js-plotly-plot');"
        " return [gd.__kserveMark === 1, gd.data.length]; }"
    )
    assert same == [True, 5 * len(revisions)], same
    expect_text(page, ".kserve-nb-live-status", NAME)

    # JupyterLab's dark theme: the chart is redrawn in the dark template, on the same element.
    font_js = "() => document.querySelector('.kserve-nb-live .js-plotly-plot')._fullLayout.font.color"
    light_font = page.evaluate(font_js)
    page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme', {theme: 'JupyterLab Dark'})")
    page.wait_for_function(f"() => ({font_js})() !== {light_font!r}", timeout=CHART_TIMEOUT_MS)
    assert page.evaluate("() => document.querySelector('.kserve-nb-live .js-plotly-plot').__kserveMark") == 1
    page.screenshot(path=str(artifacts / "live-dark.png"), full_page=True)
