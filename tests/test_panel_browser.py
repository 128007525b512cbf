"""The release panel end to end in a real browser: JupyterLab + headless Debian chromium.

A JupyterLab server (127.0.0.1, free port, random token passed in the URL, throwaway config,
data, runtime, settings and workspace dirs) serves a notebook that loads the extension, connects
to the test cluster and shows ``%kserve panel``. Playwright drives the system chromium (never a
downloaded browser): arrow keys on the focused slider handle, then Promote and Roll back with their
confirmations. After each step the cluster's own object must follow (``canaryTrafficPercent`` and
``status…traffic``). Everything started here is stopped in ``finally`` blocks, and every wait is
bounded. The final page is saved as ``test-artifacts/panel.png``.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import nbformat
import pytest

from kserve_nb.errors import NotFound
from kserve_nb.session import Session, connect

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
MODEL_1 = "gs://kfserving-examples/models/sklearn/1.0/model"
MODEL_2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
NAME = "pb-panel"
SERVER_START_TIMEOUT = 60.0
PANEL_TIMEOUT_MS = 120_000
CLUSTER_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float = CLUSTER_TIMEOUT) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def state(kubectl: Any) -> tuple[Any, dict[str, int]]:
    """(canaryTrafficPercent, {revision suffix: percent}) of the live object."""
    obj = kubectl.isvc(NAME)
    traffic = obj["status"]["components"]["predictor"]["traffic"]
    return obj["spec"]["predictor"].get("canaryTrafficPercent"), {
        e["revisionName"].rsplit("-", 1)[1]: e["percent"] for e in traffic
    }


# ---------------------------------------------------------------------- fixtures


@pytest.fixture()
def service(local_cluster: Any) -> Iterator[str]:
    """pb-panel on model 1 with model 2 as a 10% canary and tag routing; deleted afterwards."""
    session: Session = connect(local=True, state_dir=local_cluster.state_dir)
    svc = session.service(NAME)
    try:
        svc.delete()
    except NotFound:
        pass
    try:
        svc.deploy(MODEL_1, tag_routing=True)
        svc.canary(MODEL_2, 10)
        yield NAME
    finally:
        try:
            svc.delete()
        except NotFound:
            pass
        session.close()


#: JupyterLab user settings: start the notebook's kernel without asking, and no news/update toasts
#: (they would also make requests to the internet).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"autoStartDefaultKernel": True},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True,
    },
}


def write_settings(settings_dir: Path) -> None:
    for rel, values in LAB_SETTINGS.items():
        path = settings_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def write_notebook(root: Path, state_dir: Path) -> Path:
    cells = [
        "%load_ext kserve_nb",
        f"%kserve connect local --state-dir {state_dir}",
        "%config KServeNb.max_step = 30\n%config KServeNb.confirm_above = 50",
        f"%kserve panel {NAME}",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    path = root / "panel.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture()
def lab(tmp_path: Path, local_cluster: Any) -> Iterator[str]:
    """A JupyterLab server on 127.0.0.1; yields the notebook URL (with its token)."""
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
            # Token auth stays on: the token is random, per test, and passed in the URL.
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",  # lets the test run all cells through the command registry
            f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
            f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
            "--LabApp.news_url=",
            "--LabApp.extension_manager=readonly",  # no PyPI look-ups from the extension manager
            "--ServerApp.terminals_enabled=False",
            "--ServerApp.allow_root=True",  # CI containers run as root; the server is loopback-only
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        env={**os.environ, **{k: str(v) for k, v in dirs.items()}, "JUPYTER_PLATFORM_DIRS": "1"},
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kernel goes down with it
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for("JupyterLab to answer", lambda: _answers(base, token, proc), SERVER_START_TIMEOUT)
        yield f"{base}/lab/tree/panel.ipynb?token={token}"
    finally:
        _stop_lab(proc, base, token)
        log.close()


def _answers(base: str, token: str, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        pytest.fail(f"JupyterLab exited with {proc.returncode}; see jupyterlab.log in the test's tmp dir")
    try:
        return httpx.get(f"{base}/api/status", params={"token": token}, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _stop_lab(proc: subprocess.Popen[bytes], base: str, token: str) -> None:
    """Shut the kernels down through the API, then the server; kill its group if it lingers."""
    try:
        for kernel in httpx.get(f"{base}/api/kernels", params={"token": token}, timeout=5).json():
            httpx.delete(f"{base}/api/kernels/{kernel['id']}", params={"token": token}, timeout=10)
    except (httpx.HTTPError, ValueError):
        pass
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    try:  # anything left in the group (a kernel that ignored SIGTERM)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture()
def page(tmp_path: Path) -> Iterator[Any]:
    """A page of headless Debian chromium with a fresh user-data dir."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make test does); never download one")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1100},
        )
        try:
            context.set_default_timeout(30_000)
            yield context.new_page()
        finally:
            context.close()


# ---------------------------------------------------------------------- the test


def test_panel_in_jupyterlab_moves_traffic_promotes_and_rolls_back(
    service: str, lab: str, page: Any, kubectl: Any, artifacts: Path
) -> None:
    try:
        _drive(page, lab, kubectl, artifacts)
    finally:
        page.screenshot(path=str(artifacts / "panel.png"), full_page=True)


def _drive(page: Any, url: str, kubectl: Any, artifacts: Path) -> None:
    assert state(kubectl) == (10, {"00002": 10, "00001": 90})
    page.goto(url)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget", timeout=PANEL_TIMEOUT_MS)
    page.locator(".jp-Notebook").first.wait_for(timeout=PANEL_TIMEOUT_MS)
    # The kernel auto-starts (settings above); wait until it is idle, then run every cell.
    page.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
        " return k && k.status === 'idle'; }",
        timeout=PANEL_TIMEOUT_MS,
    )
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); return true; }")
    panel = page.locator(".kserve-nb-panel")
    panel.wait_for(timeout=PANEL_TIMEOUT_MS)
    panel.scroll_into_view_if_needed()
    expect_text(page, ".kserve-nb-header", "READY True")

    # Ten arrow presses on the focused slider handle: 10% → 20%. continuous_update=False sends
    # one value per key press; the panel coalesces them and the cluster must end at 20.
    handle = page.locator(".kserve-nb-slider .noUi-handle")
    handle.focus()
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    wait_for("canaryTrafficPercent 20 after the slider move",
             lambda: state(kubectl) == (20, {"00002": 20, "00001": 80}))
    expect_text(page, ".kserve-nb-header", "20%")
    page.screenshot(path=str(artifacts / "panel-canary.png"), full_page=True)

    # Test traffic: Send puts per-revision plotly figures and the comparison into the panel.
    page.locator(".kserve-nb-send").click()
    page.locator(".kserve-nb-panel .js-plotly-plot").first.wait_for(timeout=PANEL_TIMEOUT_MS)
    expect_text(page, ".kserve-nb-log", "send")
    page.screenshot(path=str(artifacts / "panel-test.png"), full_page=True)

    page.locator(".kserve-nb-promote").click()
    confirm_then(page)
    wait_for("promotion (100% on revision 2)", lambda: state(kubectl) == (None, {"00002": 100}))

    page.locator(".kserve-nb-rollback").click()
    confirm_then(page)
    wait_for("rollback (100% on revision 1)", lambda: state(kubectl) == (0, {"00002": 0, "00001": 100}))
    expect_text(page, ".kserve-nb-log", "rollback")
    expect_text(page, ".kserve-nb-status", "ready")


def confirm_then(page: Any) -> None:
    """Click Confirm once the confirmation row shows up."""
    button = page.locator(".kserve-nb-confirm")
    button.wait_for(state="visible")
    button.click()
    button.wait_for(state="hidden")


def expect_text(page: Any, selector: str, text: str, timeout_ms: int = 30_000) -> None:
    page.wait_for_function(
        "([sel, text]) => Array.from(document.querySelectorAll(sel)).some(e => e.innerText.includes(text))",
        arg=[selector, text], timeout=timeout_ms,
    )
