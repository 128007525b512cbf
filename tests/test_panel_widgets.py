"""The release panel's real ipywidgets, driven like a user would (``.click()``, setting ``.value``).

Button and slider callbacks hand work to the panel's worker thread; each test waits for it
(``controller.wait_idle``) and then checks the cluster (real kubectl) and what the widgets show.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterator

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
    assert panel.tag_routing.value is True and panel.uri.value == MODEL_2
    for css in ("kserve-nb-slider", "kserve-nb-promote", "kserve-nb-rollback", "kserve-nb-confirm", "kserve-nb-status"):
        assert any(css in getattr(w, "_dom_classes", ()) for w in _all(panel)), css


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
    assert "✔ ready" in panel.status_line.value
    assert "traffic" in panel.log_html.value and "25%" in panel.log_html.value


def test_a_jump_beyond_max_step_is_refused_and_the_slider_snaps_back(
    name: str, make_panel: Callable[..., Panel], kubectl: Any
) -> None:
    panel = make_panel(name, max_step=20)
    panel.slider.value = 80
    settle(panel)
    assert kubectl.canary_percent(name) == 10
    assert panel.slider.value == 10
    assert "refused" in panel.status_line.value and "move to 30% first" in panel.status_line.value


def test_above_the_threshold_the_slider_waits_for_confirm(
    name: str, make_panel: Callable[..., Panel], kubectl: Any
) -> None:
    panel = make_panel(name, max_step=60, confirm_above=50)
    panel.slider.value = 60
    settle(panel)
    assert visible(panel.confirm_row) and "60%" in panel.confirm_text.value
    assert panel.slider.value == 60 and kubectl.canary_percent(name) == 10  # held, not applied
    panel.confirm_button.click()
    settle(panel)
    assert kubectl.canary_percent(name) == 60 and not visible(panel.confirm_row)

    panel.slider.value = 70
    settle(panel)
    panel.cancel_button.click()
    settle(panel)
    assert kubectl.canary_percent(name) == 60 and panel.slider.value == 60 and not visible(panel.confirm_row)


# ---------------------------------------------------------------------- promote / rollback


def test_promote_and_roll_back_buttons_act_after_confirmation(
    name: str, make_panel: Callable[..., Panel], kubectl: Any
) -> None:
    panel = make_panel(name)
    panel.promote_button.click()
    settle(panel)
    assert visible(panel.confirm_row) and "promote" in panel.confirm_text.value
    assert kubectl.canary_percent(name) == 10
    panel.confirm_button.click()
    settle(panel)
    assert kubectl.canary_percent(name) is None and kubectl.split(name) == {"00002": 100}
    assert panel.slider.value == 100

    panel.rollback_button.click()
    settle(panel)
    assert "roll back" in panel.confirm_text.value
    panel.confirm_button.click()
    settle(panel)
    assert kubectl.canary_percent(name) == 0 and kubectl.split(name) == {"00002": 0, "00001": 100}
    assert panel.slider.value == 0 and "rollback" in panel.log_html.value


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
    assert "dry run of canary" in panel.plan_html.value and f"{name}-predictor-00003" in panel.plan_html.value
    assert kubectl.isvc(name)["spec"]["predictor"]["model"]["storageUri"] == MODEL_2
    panel.deploy_button.click()
    settle(panel)
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
    assert "24 requests across" in panel.summary_html.value
    assert len(panel.figures.outputs) >= 2
    assert all(PLOTLY_MIME in o["data"] for o in panel.figures.outputs)
    panel.source.value = "holdout"
    panel.send_button.click()
    settle(panel)
    assert "10 requests across" in panel.summary_html.value


def test_a_failure_shows_on_the_status_line_and_in_the_log(
    name: str, make_panel: Callable[..., Panel], kubectl: Any
) -> None:
    panel = make_panel(name)
    panel.uri.value = "gs://no-such-bucket/model"
    panel.deploy_button.click()
    settle(panel)
    assert "⚠ deploy failed: storageUri gs://no-such-bucket/model" in panel.status_line.value
    assert "#cf222e" in panel.log_html.value  # the failed entry is shown in red
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
