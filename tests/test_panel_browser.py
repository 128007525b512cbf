"""The release panel end to end in a real browser: JupyterLab + headless Debian chromium.

A JupyterLab server (127.0.0.1, free port, random token passed in the URL, throwaway config,
data, runtime, settings and workspace dirs) serves notebooks that load the extension, connect to
the test cluster and show ``%kserve panel``. Playwright drives the system chromium (never a
downloaded browser) the way a person would — keys on the slider handle, clicks on tabs, buttons and
Confirm — in JupyterLab's light and dark themes at 1400 px and 900 px wide (900 px tall). After each
step the cluster's own object must follow, and the test asserts on what a person sees: the feedback
of an action is on screen (not covered, not scrolled away) next to the control that caused it, no
text is clipped or runs out of the panel, text contrasts with its background in both themes, no
stale plan survives a promote, and the header names the model serving after a rollback. Every state
is saved as a screenshot in ``test-artifacts/panel-THEME-WIDTH-NN-STEP.png``.

Everything started here is stopped in ``finally`` blocks, and every wait is bounded.

``python tests/test_panel_browser.py --store-image`` stores ``notebooks/images/panel.png``: the panel
of notebook 02's service during a 20% canary, on a fresh local cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

from kserve_nb.errors import NotFound
from kserve_nb.session import Session, connect
from tests import waiting

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
MODEL_1 = "gs://kfserving-examples/models/sklearn/1.0/model"
MODEL_2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
SERVER_START_TIMEOUT = 60.0
PANEL_TIMEOUT_MS = 120_000
CLUSTER_TIMEOUT = 30.0
THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}
HEIGHT = 900
#: Lowest contrast ratio allowed between panel text and what is behind it (WCAG's bar for UI text).
MIN_CONTRAST = 3.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], Any], timeout: float = CLUSTER_TIMEOUT) -> Any:
    return waiting.wait_for(what, check, timeout)


def state(kubectl: Any, name: str) -> tuple[Any, dict[str, int]]:
    """(canaryTrafficPercent, {revision suffix: percent summed per revision}) of the live object."""
    obj = kubectl.isvc(name)
    split: dict[str, int] = {}
    for e in obj["status"]["components"]["predictor"]["traffic"]:
        rev = e["revisionName"].rsplit("-", 1)[1]
        split[rev] = split.get(rev, 0) + e["percent"]
    return obj["spec"]["predictor"].get("canaryTrafficPercent"), split


# ---------------------------------------------------------------------- JupyterLab

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


def write_notebook(path: Path, state_dir: Path, name: str, namespace: str = "default") -> Path:
    cells = [
        "%load_ext kserve_nb",
        f"%kserve connect local --state-dir {state_dir} -n {namespace}",
        "%config KServeNb.max_step = 30\n%config KServeNb.confirm_above = 50",
        f"%kserve panel {name}",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nbformat.write(nb, path)
    return path


@contextlib.contextmanager
def running_lab(workdir: Path, root: Path) -> Iterator[tuple[str, str]]:
    """A JupyterLab server on 127.0.0.1 serving ``root``; yields (base URL, token).

    The free port is free when picked, not necessarily when the server binds it (the machine is
    shared): a server that lost its port to someone else is started again on another, at most 3 times.
    """
    for attempt in range(3):
        with _lab_process(workdir, root, attempt) as (proc, base, token):
            if _started(proc, base, token, workdir / f"jupyterlab-{attempt}.log"):
                yield base, token
                return
    pytest.fail("JupyterLab lost its port three times; see jupyterlab-*.log in the test's tmp dir")


def _started(proc: subprocess.Popen[bytes], base: str, token: str, log: Path) -> bool:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            if b"is not available" in log.read_bytes():
                return False
            pytest.fail(f"JupyterLab exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(f"{base}/api/status", params={"token": token}, timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"JupyterLab did not answer within {SERVER_START_TIMEOUT:.0f}s; see {log}")


@contextlib.contextmanager
def _lab_process(workdir: Path, root: Path, attempt: int) -> Iterator[tuple[subprocess.Popen[bytes], str, str]]:
    write_settings(workdir / "settings")
    port, token = free_port(), secrets.token_hex(16)
    dirs = {k: workdir / k.lower() for k in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR")}
    for d in dirs.values():
        d.mkdir(exist_ok=True)
    log = open(workdir / f"jupyterlab-{attempt}.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            # Token auth stays on: the token is random, per server, and passed in the URL.
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",  # lets the test run all cells through the command registry
            f"--LabApp.workspaces_dir={workdir / 'workspaces'}",
            "--LabApp.news_url=",
            "--LabApp.extension_manager=readonly",  # no PyPI look-ups from the extension manager
            "--ServerApp.terminals_enabled=False",
            "--ServerApp.allow_root=True",  # CI containers run as root; the server is loopback-only
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ],
        # The settings dir by environment (not --LabApp.user_settings_dir), so that kernels see it too.
        env={**os.environ, **{k: str(v) for k, v in dirs.items()}, "JUPYTER_PLATFORM_DIRS": "1",
             "JUPYTERLAB_SETTINGS_DIR": str(workdir / "settings")},
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kernels go down with it
    )
    base = f"http://127.0.0.1:{port}"
    try:
        yield proc, base, token
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


def _shutdown_kernels(base: str, token: str) -> None:
    try:
        for kernel in httpx.get(f"{base}/api/kernels", params={"token": token}, timeout=5).json():
            httpx.delete(f"{base}/api/kernels/{kernel['id']}", params={"token": token}, timeout=10)
    except (httpx.HTTPError, ValueError):
        pass


def _stop_lab(proc: subprocess.Popen[bytes], base: str, token: str) -> None:
    """Shut the kernels down through the API, then the server; kill its group if it lingers."""
    _shutdown_kernels(base, token)
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


@contextlib.contextmanager
def chromium_page(profile: Path, width: int = 1280, height: int = 1100) -> Iterator[Any]:
    """A page of headless Debian chromium with a fresh user-data dir."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (make test does); never download one")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height},
        )
        try:
            context.set_default_timeout(30_000)
            yield context.new_page()
        finally:
            context.close()


@pytest.fixture()
def page(tmp_path: Path) -> Iterator[Any]:
    """A page of headless Debian chromium (1280×1100) with a fresh user-data dir."""
    with chromium_page(tmp_path / "chromium-profile") as p:
        yield p


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("panel-lab-root")
    return root


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, lab_root: Path) -> Iterator[tuple[str, str]]:
    """One JupyterLab server for the module (each test opens its own notebook and kernel)."""
    with running_lab(tmp_path_factory.mktemp("panel-lab"), lab_root) as server:
        yield server


@pytest.fixture()
def session(local_cluster: Any) -> Iterator[Session]:
    s = connect(local=True, state_dir=local_cluster.state_dir)
    yield s
    s.close()


@pytest.fixture(scope="module")
def corrupt_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A model file that exists (so the pre-flight passes) but cannot be loaded: its revision fails."""
    directory = tmp_path_factory.mktemp("browser-corrupt-model")
    (directory / "model.joblib").write_bytes(b"this is not a joblib pickle\n")
    return directory.as_uri()


def fresh_canary(session: Session, name: str, percent: int = 10, namespace: str | None = None) -> None:
    """``name`` on model 1 with model 2 as a ``percent`` canary and tag routing."""
    svc = session.service(name, namespace)
    try:
        svc.delete()
    except NotFound:
        pass
    svc.deploy(MODEL_1, tag_routing=True)
    svc.canary(MODEL_2, percent)


# ---------------------------------------------------------------------- what a person sees

_JS_COLOUR = """
const rgba = (s) => { const m = (s || '').match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
  const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
  return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
const lum = (c) => {
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
const over = (top, under) => ({r: top.r * top.a + under.r * (1 - top.a), g: top.g * top.a + under.g * (1 - top.a),
  b: top.b * top.a + under.b * (1 - top.a), a: 1});
const background = (el) => { const layers = [];
  for (let e = el; e; e = e.parentElement) { const c = rgba(getComputedStyle(e).backgroundColor);
    if (c && c.a > 0) { layers.push(c); if (c.a >= 0.99) break; } }
  let acc = {r: 255, g: 255, b: 255, a: 1};
  for (const c of layers.reverse()) acc = over(c, acc);
  return acc; };
const contrast = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
"""

#: Text in the panel a person cannot read: too little contrast, clipped by its box, or outside the panel.
UNREADABLE_JS = "() => {" + _JS_COLOUR + """
  const panel = document.querySelector('.kserve-nb-panel');
  const box = panel.getBoundingClientRect();
  const out = [];
  const skip = (e) => e.closest('.kserve-nb-split, .js-plotly-plot, .kserve-nb-stale-body, details:not([open]), '
    + '.kserve-nb-scroll, select, option, .noUi-target') || e.closest('button:disabled, .mod-disabled');
  for (const e of panel.querySelectorAll('*')) {
    const text = Array.from(e.childNodes).filter(n => n.nodeType === 3).map(n => n.textContent.trim()).join('');
    if (!text || skip(e)) continue;
    const r = e.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || getComputedStyle(e).visibility === 'hidden') continue;
    const style = getComputedStyle(e);
    const bg = background(e);
    const fg = over(rgba(style.color), bg);
    const c = contrast(fg, bg);
    if (c < %(min)s)
      out.push(`contrast ${c.toFixed(2)} of ${JSON.stringify(text.slice(0, 40))} `
               + `(${style.color} on rgb(${bg.r|0},${bg.g|0},${bg.b|0}))`);
    if (style.overflowX !== 'visible' && e.scrollWidth > e.clientWidth + 1)
      out.push(`clipped: ${JSON.stringify(text.slice(0, 40))} (${e.scrollWidth} > ${e.clientWidth} px)`);
    if (r.right > box.right + 1 || r.left < box.left - 1)
      out.push(`outside the panel: ${JSON.stringify(text.slice(0, 40))} `
               + `(${r.left|0}–${r.right|0} vs ${box.left|0}–${box.right|0})`);
  }
  if (box.right > window.innerWidth + 1)
    out.push(`the panel ends at ${box.right|0} px in a ${window.innerWidth} px window`);
  return out;
}""" % {"min": MIN_CONTRAST}  # noqa: UP031 - JavaScript is all braces: % keeps them literal

#: Contrast of plotly's title and axis text with the panel's background.
FIGURE_CONTRAST_JS = "() => {" + _JS_COLOUR + """
  const texts = Array.from(document.querySelectorAll('.kserve-nb-panel .js-plotly-plot .main-svg text.gtitle, '
    + '.kserve-nb-panel .js-plotly-plot .main-svg .xtick text'));
  if (!texts.length) return null;
  const bg = background(document.querySelector('.kserve-nb-panel .kserve-nb-figures'));
  return Math.min(...texts.map(t => contrast(over(rgba(getComputedStyle(t).fill), bg), bg)));
}"""

#: Whether the element is on screen where a person looks: inside the window and not covered.
ON_SCREEN_JS = """(sel) => {
  const el = document.querySelector(sel);
  if (!el) return false;
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0) return false;
  const x = r.left + Math.min(10, r.width / 2), y = r.top + Math.min(r.height / 2, 10);
  if (x < 0 || y < 0 || x >= window.innerWidth || y >= window.innerHeight) return false;
  const hit = document.elementFromPoint(x, y);
  return !!hit && el.contains(hit);
}"""


def expect_text(page: Any, selector: str, text: str, timeout_ms: int = 30_000) -> None:
    page.wait_for_function(
        "([sel, text]) => Array.from(document.querySelectorAll(sel)).some(e => e.innerText.includes(text))",
        arg=[selector, text], timeout=timeout_ms,
    )


def confirm_then(page: Any, area: str = "release") -> None:
    """Click the Confirm that shows up beside the control of ``area``."""
    button = page.locator(f".kserve-nb-area-{area} .kserve-nb-confirm")
    button.wait_for(state="visible")
    button.click()
    button.wait_for(state="hidden")


def look_at(page: Any, selector: str) -> None:
    """Scroll so that ``selector`` sits in the middle of the screen, as a person would to use it."""
    page.locator(selector).first.evaluate("e => e.scrollIntoView({block: 'center'})")


def preview(page: Any, uri: str, percent: str) -> None:
    """Type a model and a percent into the deploy box and preview until the plan shows them.

    A typed value reaches the kernel as a widget state update, which ipywidgets may hold back while
    an earlier update of the same widget is unacknowledged, so a click right after typing can act on
    the previous value; the plan names what it planned, so a person (and this test) checks it there.
    """
    page.locator(".kserve-nb-uri input").fill(uri)
    page.locator(".kserve-nb-percent input").fill(percent)
    for _ in range(3):
        page.locator(".kserve-nb-preview").click()
        expect_text(page, ".kserve-nb-feedback-deploy", "plan ready below")
        plan = page.locator(".kserve-nb-plan").inner_text()
        if uri in plan and f"with {percent}%" in plan:
            return
        time.sleep(0.5)
    pytest.fail(f"the plan never showed {uri} with {percent}%: {plan}")


def on_screen(page: Any, selector: str, timeout_ms: int = 10_000) -> bool:
    """Whether ``selector`` is (or, once the layout settles, becomes) visible on screen."""
    try:
        page.wait_for_function(ON_SCREEN_JS, arg=selector, timeout=timeout_ms)
    except Exception:  # noqa: BLE001 - playwright's TimeoutError: the caller's assert says what is missing
        return False
    return True


def open_panel(page: Any, url: str, theme: str) -> Any:
    """Open the notebook, switch JupyterLab to ``theme``, run every cell; returns the panel locator."""
    page.goto(url)
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget", timeout=PANEL_TIMEOUT_MS)
    page.locator(".jp-Notebook").first.wait_for(timeout=PANEL_TIMEOUT_MS)
    page.evaluate("(t) => window.jupyterapp.commands.execute('apputils:change-theme', {theme: t})", THEMES[theme])
    page.wait_for_function("(light) => document.body.dataset.jpThemeLight === light",
                           arg="true" if theme == "light" else "false", timeout=PANEL_TIMEOUT_MS)
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
    expect_text(page, ".kserve-nb-header", "READY True", timeout_ms=PANEL_TIMEOUT_MS)
    return panel


# ---------------------------------------------------------------------- the test


@pytest.mark.timeout(600)
@pytest.mark.parametrize("width", [1400, 900])
@pytest.mark.parametrize("theme", ["light", "dark"])
def test_panel_in_jupyterlab_shows_what_happened_where_the_user_looks(
    theme: str, width: int, lab: tuple[str, str], lab_root: Path, local_cluster: Any, session: Session,
    kubectl: Any, corrupt_model: str, tmp_path: Path, artifacts: Path,
) -> None:
    name = f"pb-{theme}-{width}"
    fresh_canary(session, name)
    base, token = lab
    write_notebook(lab_root / f"{name}.ipynb", local_cluster.state_dir, name)
    shots = Screenshots(artifacts, f"panel-{theme}-{width}")
    try:
        with chromium_page(tmp_path / "chromium-profile", width, HEIGHT) as page:
            shots.page = page
            # A workspace of its own: the notebooks of earlier tests stay closed (and out of the DOM).
            url = f"{base}/lab/workspaces/{name}/tree/{name}.ipynb?token={token}"
            try:
                _drive(page, url, theme, name, kubectl, corrupt_model, shots)
            except BaseException:
                shots("FAILED")
                raise
    finally:
        _shutdown_kernels(base, token)
        try:
            session.service(name).delete()
        except NotFound:
            pass


class Screenshots:
    """Numbered screenshots of what the window shows, one per state."""

    def __init__(self, directory: Path, prefix: str) -> None:
        self.directory, self.prefix, self.n, self.page = directory, prefix, 0, None

    def __call__(self, step: str) -> None:
        self.n += 1
        if self.page is not None:
            self.page.screenshot(path=str(self.directory / f"{self.prefix}-{self.n:02d}-{step}.png"))


def _readable(page: Any, when: str) -> None:
    problems = page.evaluate(UNREADABLE_JS)
    assert not problems, f"{when}: text a person cannot read in the panel:\n" + "\n".join(problems)


def _drive(page: Any, url: str, theme: str, name: str, kubectl: Any, corrupt: str, shot: Screenshots) -> None:
    rev1, rev2 = f"{name}-predictor-00001", f"{name}-predictor-00002"
    assert state(kubectl, name) == (10, {"00002": 10, "00001": 90})
    open_panel(page, url, theme)
    look_at(page, ".kserve-nb-panel")
    header = page.locator(".kserve-nb-header")
    for text in (rev1, rev2, MODEL_1, MODEL_2, "10%", "90%"):
        assert text in header.inner_text(), text
    assert page.locator(".kserve-nb-uri input").input_value() == ""  # never the serving model
    _readable(page, "opened")
    shot("open")

    # Ten arrow presses on the focused slider handle: 10% → 20%, one value per key press, coalesced.
    look_at(page, ".kserve-nb-release")
    handle = page.locator(".kserve-nb-slider .noUi-handle")
    handle.focus()
    for _ in range(10):
        page.keyboard.press("ArrowRight")
    wait_for("canaryTrafficPercent 20 after the slider move",
             lambda: state(kubectl, name) == (20, {"00002": 20, "00001": 80}))
    expect_text(page, ".kserve-nb-feedback-release", "settled at 80%")
    shot("canary-20")

    # End jumps to 100%: a move of 80 points is refused, said right under the slider, which snaps back.
    handle.focus()
    page.keyboard.press("End")
    expect_text(page, ".kserve-nb-feedback-release", "refused")
    expect_text(page, ".kserve-nb-feedback-release", "move to 50% first")
    assert on_screen(page, ".kserve-nb-feedback-release"), "the refusal is not on screen beside the slider"
    page.wait_for_function(
        "() => document.querySelector('.kserve-nb-slider .widget-readout').innerText.trim() === '20'"
    )
    assert state(kubectl, name) == (20, {"00002": 20, "00001": 80})
    _readable(page, "after a refused move")
    shot("refused-move")

    # Test traffic: the comparison and its figures, in the Test tab, drawn in the theme's colours.
    page.locator(".kserve-nb-tabs .lm-TabBar-tab", has_text="Test").click()
    look_at(page, ".kserve-nb-send")
    page.locator(".kserve-nb-send").click()
    page.locator(".kserve-nb-panel .js-plotly-plot .main-svg").first.wait_for(timeout=PANEL_TIMEOUT_MS)
    expect_text(page, ".kserve-nb-feedback-test", "agreement")
    assert on_screen(page, ".kserve-nb-feedback-test")
    assert page.locator(".kserve-nb-figure-split").count() == 0  # paired sides: no split to draw
    wait_for("figures drawn in the theme's colours",
             lambda: (page.evaluate(FIGURE_CONTRAST_JS) or 0) >= MIN_CONTRAST, timeout=20)
    # The kernel drew them with the theme's plotly template (plotly_dark's font is #f2f5fa).
    font = page.evaluate("() => document.querySelector('.kserve-nb-panel .js-plotly-plot')"
                         ".layout.template.layout.font.color")
    assert font == ("#f2f5fa" if theme == "dark" else "#2a3f5f"), font
    _readable(page, "after test traffic")
    shot("test-traffic")

    # A dry run in the Deploy tab, then Promote: the plan was for the split before, so it goes.
    page.locator(".kserve-nb-tabs .lm-TabBar-tab", has_text="Deploy").click()
    look_at(page, ".kserve-nb-uri")
    preview(page, MODEL_2, "30")
    _readable(page, "with a plan")
    shot("plan")
    look_at(page, ".kserve-nb-release")
    page.locator(".kserve-nb-promote").click()
    expect_text(page, ".kserve-nb-area-release .kserve-nb-confirm-text", MODEL_2)
    assert on_screen(page, ".kserve-nb-area-release .kserve-nb-confirm")
    confirm_then(page)
    wait_for("promotion (100% on revision 2)", lambda: state(kubectl, name) == (None, {"00002": 100}))
    expect_text(page, ".kserve-nb-feedback-release", "promote done")
    page.wait_for_function("() => document.querySelector('.kserve-nb-plan').innerText.trim() === ''")
    assert page.locator(".kserve-nb-plan-body").count() == 0, "the dry-run plan outlived the promote"
    assert page.locator(".kserve-nb-promote").is_disabled()
    assert "nothing to promote" in (page.locator(".kserve-nb-promote").get_attribute("title") or "")
    page.locator(".kserve-nb-tabs .lm-TabBar-tab", has_text="Test").click()
    expect_text(page, ".kserve-nb-summary", "earlier split")
    shot("promoted")

    # Roll back: the header names the model that serves now.
    look_at(page, ".kserve-nb-release")
    page.locator(".kserve-nb-rollback").click()
    confirm_then(page)
    wait_for("rollback (100% on revision 1)", lambda: state(kubectl, name) == (0, {"00002": 0, "00001": 100}))
    page.wait_for_function(
        "(uri) => Array.from(document.querySelectorAll('.kserve-nb-header .kserve-nb-side-prev'))"
        ".some(r => r.dataset.serving === 'true' && r.querySelector('.kserve-nb-model').innerText.trim() === uri"
        " && r.innerText.includes('100%'))",
        arg=MODEL_1,
    )
    assert on_screen(page, ".kserve-nb-header .kserve-nb-side-prev")
    shot("rolled-back")

    # A canary whose model cannot load: the failure, beside the Deploy button, says where traffic
    # actually went (KServe gives the percent to the last ready revision: 00002 moved 0% → 10%).
    page.locator(".kserve-nb-tabs .lm-TabBar-tab", has_text="Deploy").click()
    look_at(page, ".kserve-nb-uri")
    preview(page, corrupt, "10")
    page.locator(".kserve-nb-deploy").click()
    expect_text(page, ".kserve-nb-feedback-deploy", "deploy failed", timeout_ms=PANEL_TIMEOUT_MS)
    feedback = page.locator(".kserve-nb-feedback-deploy").inner_text()
    assert state(kubectl, name) == (10, {"00002": 10, "00001": 90})
    assert f"traffic moved from 0% {rev2} + 100% {rev1} to 10% {rev2} + 90% {rev1}" in feedback, feedback
    assert "✔" not in feedback and "stays on" not in feedback
    assert on_screen(page, ".kserve-nb-feedback-deploy"), "the failure is not on screen beside the Deploy button"
    expect_text(page, ".kserve-nb-header .kserve-nb-failed-reason", "RevisionFailed")
    _readable(page, "after a failed deploy")
    shot("failed-deploy")


# ---------------------------------------------------------------------- notebooks/images/panel.png


def store_panel_image(dest: Path = ROOT / "notebooks" / "images" / "panel.png") -> None:
    """Photograph notebook 02's panel (``kserve-test/sklearn-iris-panel``) during a 20% canary."""
    import tempfile

    from kserve_nb.local import manager

    with tempfile.TemporaryDirectory(prefix="kserve-nb-panel-image-") as tmp:
        work = Path(tmp)
        cluster = manager.up(work / "cluster")
        try:
            s = connect(local=True, state_dir=cluster.state_dir, namespace="kserve-test")
            s.create_namespace("kserve-test")
            fresh_canary(s, "sklearn-iris-panel", 20)
            (work / "root").mkdir()
            write_notebook(work / "root" / "panel.ipynb", cluster.state_dir, "sklearn-iris-panel", "kserve-test")
            with running_lab(work, work / "root") as (base, token), \
                    chromium_page(work / "profile", 1240, 2000) as page:
                open_panel(page, f"{base}/lab/tree/panel.ipynb?token={token}", "light")
                page.evaluate("() => window.jupyterapp.shell.collapseLeft()")  # the panel gets the width
                page.locator(".kserve-nb-tabs .lm-TabBar-tab", has_text="Test").click()
                page.locator(".kserve-nb-n input").fill("150")
                page.locator(".kserve-nb-send").click()
                page.locator(".kserve-nb-figure-latency .js-plotly-plot .main-svg").first.wait_for(
                    timeout=PANEL_TIMEOUT_MS
                )
                expect_text(page, ".kserve-nb-feedback-test", "agreement")
                time.sleep(1.0)  # plotly's transitions
                look_at(page, ".kserve-nb-panel")
                page.locator(".kserve-nb-panel").screenshot(path=str(dest))
            s.close()
        finally:
            manager.down(work / "cluster")
    print(f"stored {dest.relative_to(ROOT)}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--store-image"]:
        sys.exit("usage: python tests/test_panel_browser.py --store-image")
    store_panel_image()
