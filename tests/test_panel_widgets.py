"""The release panel's real ipywidgets, driven like a user would (``.click()``, setting ``.value``).

Button and slider callbacks hand work to the panel's worker thread; each test waits for it
(``controller.wait_idle``) and then checks the cluster (real kubectl) and what the widgets show.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest

from kserve_nb.config import KServeNb
from kserve_nb.errors import NotFound
from kserve_nb.session import Session, connect
from kserve_nb.widgets import Panel
from kserve_nb.widgets.samples import IRIS_SOURCE, iris_rows

MODEL_1 = "gs://kfserving-examples/models/sklearn/1.0/model"
MODEL_2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
PLOTLY_MIME = "application/vnd.plotly.v1+json"


@pytest.fixture(scope="module")
def session(local_cluster: Any) -> Iterator[Session]:
    import plotly.io as pio

    pio.renderers.default = "plotly_mimetype"  # figures go into an Output: never a browser
    s = connect(local=True, state_dir=local_cluster.state_dir)
    yield s
    s.close()


@pytest.fixture()
def name(session: Session, request: pytest.FixtureRequest) -> Iterator[str]:
    """A service on model 1 with model 2 as a 10% canary (tag routing on), deleted afterwards."""
    base = "pw-" + request.node.name.removeprefix("test_").replace("_", "-")[:28].rstrip("-")
    svc = session.service(base)
    svc.deploy(MODEL_1, tag_routing=True)
    svc.canary(MODEL_2, 10)
    yield base
    try:
        svc.delete()
    except NotFound:
        pass


@pytest.fixture()
def make_panel(session: Session) -> Iterator[Callable[..., Panel]]:
    panels: list[Panel] = []

    def make(name: str, max_step: int = 30, confirm_above: int = 50, **kwargs: Any) -> Panel:
        config = KServeNb(max_step=max_step, confirm_above=confirm_above)
        kwargs.setdefault("poll_interval", 0)
        panel = Panel(session.service(name), config=config, user_ns=kwargs.pop("user_ns", {}), **kwargs)
        panels.append(panel)
        return panel

    yield make
    for panel in panels:
        panel.close()


def settle(panel: Panel) -> None:
    assert panel.controller.wait_idle(60), "the panel's worker did not finish in time"


def visible(widget: Any) -> bool:
    return widget.layout.display != "none"


def release_line(panel: Panel) -> str:
    """The feedback line under the slider and the Promote/Roll back buttons."""
    return str(panel.feedback["release"].line.value)


def figure_names(panel: Panel) -> list[str]:
    return [c.removeprefix("kserve-nb-figure-") for out in panel.figures.children for c in out._dom_classes
            if c.startswith("kserve-nb-figure-")]


# ---------------------------------------------------------------------- header


def test_header_shows_readiness_url_both_revisions_with_models_and_the_split(
    name: str, make_panel: Callable[..., Panel]
) -> None:
    panel = make_panel(name)
    header = panel.header.value
    assert "READY True" in header and f"http://{name}.default.example.com" in header
    assert f"{name}-predictor-00002" in header and MODEL_2 in header
    assert f"{name}-predictor-00001" in header and MODEL_1 in header
    assert 'data-latest="10"' in header and "context kserve-nb-local" in header
    assert panel.slider.value == 10 and not panel.slider.disabled
    assert panel.slider.continuous_update is False
    # The deploy box never pre-fills the serving model: deploying it could send traffic back.
    assert panel.tag_routing.value is True and panel.uri.value == ""
    for css in ("kserve-nb-slider", "kserve-nb-promote", "kserve-nb-rollback", "kserve-nb-confirm",
                "kserve-nb-feedback-release", "kserve-nb-feedback-deploy", "kserve-nb-feedback-test", "kserve-nb-tabs"):
        assert any(css in getattr(w, "_dom_classes", ()) for w in _all(panel)), css
    assert list(panel.tabs.titles) == ["Deploy", "Test", "Log", "Rollout", "Live"]  # the last two registered


def _all(widget: Any) -> list[Any]:
    out = [widget]
    for child in getattr(widget, "children", ()):
        out += _all(child)
    return out


# ---------------------------------------------------------------------- slider


def test_releasing_the_slider_applies_the_split(name: str, make_panel: Callable[..., Panel], kubectl: Any) -> None:
    panel = make_panel(name)
    panel.slider.value = 25
    settle(panel)
    assert kubectl.canary_percent(name) == 25 and kubectl.split(name) == {"00002": 25, "00001": 75}
    assert 'data-latest="25"' in panel.header.value
    assert "✔" in release_line(panel) and "settled at 75%" in release_line(panel)
    assert "traffic" in panel.log_html.value and "25%" in panel.log_html.value


def test_a_jump_beyond_max_step_is_refused_and_the_slider_snaps_back(
    name: str, make_panel: Callable[..., Panel], kubectl: Any
) -> None:
    panel = make_panel(name, max_step=20)
    panel.slider.value = 80
    settle(panel)
    assert kubectl.canary_percent(name) == 10
    assert panel.slider.value == 10
    assert "refused" in release_line(panel) and "move to 30% first" in release_line(panel)
    assert panel.feedback["deploy"].line.value == ""  # said beside the slider, nowhere else


def test_above_the_threshold_the_slider_waits_for_confirm(
    name: str, make_panel: Callable[..., Panel], kubectl: Any
) -> None:
    panel = make_panel(name, max_step=60, confirm_above=50)
    panel.slider.value = 60
    settle(panel)
    release = panel.feedback["release"]
    assert visible(release.confirm_row) and "60%" in release.confirm_text.value
    assert panel.slider.value == 60 and kubectl.canary_percent(name) == 10  # held, not applied
    panel.confirm_button.click()
    settle(panel)
    assert kubectl.canary_percent(name) == 60 and not visible(release.confirm_row)

    panel.slider.value = 70
    settle(panel)
    panel.cancel_button.click()
    settle(panel)
    assert kubectl.canary_percent(name) == 60 and panel.slider.value == 60 and not visible(release.confirm_row)


# ---------------------------------------------------------------------- promote / rollback


def test_promote_and_roll_back_buttons_act_after_confirmation(
    name: str, make_panel: Callable[..., Panel], kubectl: Any
) -> None:
    panel = make_panel(name)
    panel.promote_button.click()
    settle(panel)
    release = panel.feedback["release"]
    assert (
        visible(release.confirm_row)
        and "promote" in release.confirm_text.value
        and MODEL_2 in release.confirm_text.value
    )
    assert kubectl.canary_percent(name) == 10
    panel.confirm_button.click()
    settle(panel)
    assert kubectl.canary_percent(name) is None and kubectl.split(name) == {"00002": 100}
    assert panel.slider.value == 100
    assert panel.promote_button.disabled and "nothing to promote" in panel.promote_button.tooltip

    panel.rollback_button.click()
    settle(panel)
    assert "roll back" in release.confirm_text.value and MODEL_1 in release.confirm_text.value
    panel.confirm_button.click()
    settle(panel)
    assert kubectl.canary_percent(name) == 0 and kubectl.split(name) == {"00002": 0, "00001": 100}
    assert panel.slider.value == 0 and "rollback" in panel.log_html.value
    assert panel.rollback_button.disabled and "already rolled back" in panel.rollback_button.tooltip
    # The header says which model serves each side now: model 1 on prev, with all the traffic.
    prev_row = panel.header.value.split('kserve-nb-side-prev"')[1].split("</tr>")[0]
    assert MODEL_1 in prev_row and "100%" in prev_row


# ---------------------------------------------------------------------- deploy and test traffic


def test_preview_then_deploy_from_the_deploy_box(name: str, make_panel: Callable[..., Panel], kubectl: Any) -> None:
    panel = make_panel(name)
    panel.promote_button.click()
    panel.confirm_button.click()
    settle(panel)
    panel.uri.value = MODEL_1
    panel.percent.value = 20
    panel.preview_button.click()
    settle(panel)
    assert "Dry run of canary" in panel.plan_html.value and f"{name}-predictor-00003" in panel.plan_html.value
    assert "older model" in panel.feedback["deploy"].line.value  # the preview warns already
    assert kubectl.isvc(name)["spec"]["predictor"]["model"]["storageUri"] == MODEL_2
    panel.deploy_button.click()
    settle(panel)
    deploy = panel.feedback["deploy"]
    assert visible(deploy.confirm_row) and f"{MODEL_1} is an older model" in deploy.confirm_text.value
    assert not visible(panel.feedback["release"].confirm_row)  # asked beside the deploy box
    panel.confirm_button.click()
    settle(panel)
    assert panel.plan_html.value == ""  # the plan was for the split before the deploy
    assert kubectl.isvc(name)["spec"]["predictor"]["model"]["storageUri"] == MODEL_1
    assert kubectl.canary_percent(name) == 20 and kubectl.split(name) == {"00003": 20, "00002": 80}
    assert panel.slider.value == 20


def test_send_shows_the_comparison_and_per_revision_figures(name: str, make_panel: Callable[..., Panel]) -> None:
    frame = pd.DataFrame(iris_rows(5))
    panel = make_panel(name, user_ns={"holdout": frame})
    assert list(panel.source.options) == [IRIS_SOURCE, "holdout"]
    panel.n_rows.value = 12
    panel.send_button.click()
    settle(panel)
    assert "24 requests to latest, prev at 90%" in panel.summary_html.value
    assert panel.tabs.selected_index == 1 and "✔" in panel.feedback["test"].line.value
    # Paired latest/prev traffic has no weighted split to compare: no "Traffic split" figure.
    assert figure_names(panel) == ["predictions", "latency", "agreement"]
    assert all(PLOTLY_MIME in out.outputs[0]["data"] for out in panel.figures.children)
    panel.source.value = "holdout"
    panel.send_button.click()
    settle(panel)
    assert "10 requests to latest, prev" in panel.summary_html.value
    assert "border=" not in panel.summary_html.value.split("<details>")[0]  # JupyterLab-like tables
    panel.slider.value = 20
    settle(panel)
    assert "kserve-nb-stale-note" in panel.summary_html.value and "earlier split" in panel.summary_html.value


def test_a_failure_shows_on_the_status_line_and_in_the_log(
    name: str, make_panel: Callable[..., Panel], kubectl: Any
) -> None:
    panel = make_panel(name)
    panel.uri.value = "gs://no-such-bucket/model"
    panel.deploy_button.click()
    settle(panel)
    assert "✘" in panel.feedback["deploy"].line.value
    assert "deploy failed: storageUri gs://no-such-bucket/model" in panel.feedback["deploy"].line.value
    assert panel.feedback["release"].line.value == "" and panel.tabs.selected_index == 0
    assert "--jp-error-color1" in panel.log_html.value  # the failed entry is shown in the theme's red
    assert kubectl.isvc(name)["spec"]["predictor"]["model"]["storageUri"] == MODEL_2


# ---------------------------------------------------------------------- live updates and closing


def test_the_panel_follows_changes_made_elsewhere_and_close_stops_its_threads(
    name: str, make_panel: Callable[..., Panel], session: Session
) -> None:
    panel = make_panel(name, poll_interval=0.05)
    assert panel.controller.polling
    session.service(name).set_traffic(35)  # e.g. another notebook, or kubectl
    deadline = time.monotonic() + 10
    while panel.slider.value != 35 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert panel.slider.value == 35 and 'data-latest="35"' in panel.header.value
    panel.slider.value = 40
    settle(panel)
    panel.close()
    assert panel.closed and not panel.controller.polling
    assert not [t for t in threading.enumerate() if t.name.startswith("kserve-nb-panel")]


# ---------------------------------------------------------------------- guards, tabs, theme, static view


def test_the_percent_box_holds_0_to_100_and_buttons_say_why_they_are_off(
    make_panel: Callable[..., Panel], session: Session
) -> None:
    panel = make_panel("pw-never-created")
    panel.percent.value = 150
    assert panel.percent.value == 100 and panel.percent.max == 100 and panel.percent.min == 0
    assert panel.promote_button.disabled and panel.rollback_button.disabled and panel.slider.disabled
    assert panel.promote_button.tooltip == "pw-never-created does not exist yet: deploy a model first"
    assert "does not exist yet" in panel.header.value


def test_the_weighted_route_comparison_draws_the_split_figure(
    session: Session, make_panel: Callable[..., Panel]
) -> None:
    svc = session.service("pw-weighted")
    try:
        svc.deploy(MODEL_1, tag_routing=False)
        svc.canary(MODEL_2, 30)
        panel = make_panel("pw-weighted")
        panel.n_rows.value = 40
        panel.send_button.click()
        settle(panel)
        assert figure_names(panel) == ["predictions", "latency", "agreement", "split"]
    finally:
        svc.delete()


def test_more_tabs_by_add_tab_or_for_every_panel_by_register_tab(
    name: str, make_panel: Callable[..., Panel]
) -> None:
    import ipywidgets as w

    from kserve_nb.widgets import TAB_BUILDERS, register_tab

    notes = w.Textarea()
    defaults = TAB_BUILDERS[:]  # the package's own tabs (Rollout, Live) are set aside for this test
    TAB_BUILDERS.clear()

    @register_tab
    def rollout(panel: Panel) -> tuple[str, Any]:
        return "Rollout", w.HTML(f"rollout of {panel.controller.service.name}")

    def broken(panel: Panel) -> tuple[str, Any]:
        raise RuntimeError("no metrics source")

    register_tab(broken)
    try:
        panel = make_panel(name)
    finally:
        TAB_BUILDERS[:] = defaults
    assert list(panel.tabs.titles) == ["Deploy", "Test", "Log", "Rollout"]
    assert "broken failed: RuntimeError: no metrics source" in panel.log_html.value  # logged, panel still up
    assert panel.add_tab("Notes", notes, select=True) == 4 and panel.tabs.selected_index == 4
    panel.select_tab("Log")
    assert panel.tabs.selected_index == 2
    panel.close()
    assert notes.comm is None  # added tabs close with the panel


def test_figures_follow_the_theme_and_tables_use_jupyterlab_colours(
    name: str, make_panel: Callable[..., Panel]
) -> None:
    from kserve_nb import style

    panel = make_panel(name)
    try:
        panel._on_theme("dark")  # what the theme probe reports from the browser
        panel.send_button.click()
        settle(panel)
        layout = panel.figures.children[0].outputs[0]["data"][PLOTLY_MIME]["layout"]
        assert layout["template"]["layout"]["font"]["color"] == "#f2f5fa"  # plotly_dark
        assert layout["template"]["layout"]["paper_bgcolor"] == "rgba(0,0,0,0)"
        panel._on_theme("light")
        layout = panel.figures.children[0].outputs[0]["data"][PLOTLY_MIME]["layout"]
        assert layout["template"]["layout"]["font"]["color"] == "#2a3f5f"  # plotly_white, redrawn
    finally:
        style.set_theme(None)
    assert "--jp-ui-font-color1" in panel.css.value and "border-collapse" in panel.css.value
    for html_text in (panel.header.value, panel.log_html.value, panel.summary_html.value):
        assert "#1f2328" not in html_text.replace("var(--jp-ui-font-color1, #1f2328)", "")  # no bare dark text


def test_the_panel_carries_a_static_view_for_readers_without_the_widget(
    name: str, make_panel: Callable[..., Panel]
) -> None:
    panel = make_panel(name)
    panel.slider.value = 20
    settle(panel)
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    static = bundle["text/html"]
    assert "static view" in static and MODEL_2 in static and MODEL_1 in static and "settled at 80%" in static
    assert "<style" not in static  # sanitizers drop it: the static view must read without it


def test_lab_theme_setting_is_read_from_jupyterlab_user_settings(tmp_path: Any) -> None:
    from kserve_nb import style

    assert style.lab_theme_setting(tmp_path) is None
    path = tmp_path / "@jupyterlab" / "apputils-extension" / "themes.jupyterlab-settings"
    path.parent.mkdir(parents=True)
    path.write_text('{\n  // JSON5, as JupyterLab writes it\n  "theme": "JupyterLab Dark"\n}')
    assert style.lab_theme_setting(tmp_path) == "dark"
    path.write_text('{"theme": "JupyterLab Light", "adaptive-theme": false}')
    assert style.lab_theme_setting(tmp_path) == "light"
    path.write_text('{"theme": "JupyterLab Light", "adaptive-theme": true}')
    assert style.lab_theme_setting(tmp_path) is None  # follows the OS: only the browser knows
