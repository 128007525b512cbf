"""The release panel's controller on a Standard-mode (RawDeployment) service, against the real cluster.

The slider sets the newest canary's ``trafficPercent`` under the same guards as in Knative mode
(largest step, confirmation above a threshold); Promote makes the canary the stable; Roll back
removes it; Test compares the stable with the canary on their own hosts. The cluster's HTTPRoute,
read with the real kubectl, follows every applied action and stays put for refused or pending ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from kserve_nb.config import KServeNb
from kserve_nb.errors import NotFound
from kserve_nb.session import Session
from kserve_nb.widgets.controller import PanelController
from kserve_nb.widgets.view import header_html, plan_html

NS = "std-panel"
M1 = "gs://kfserving-examples/models/sklearn/1.0/model"
M2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"


@pytest.fixture()
def name(session: Session) -> Iterator[str]:
    svc = "pns-release"
    session.apply({
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": svc, "annotations": {
            "serving.kserve.io/deploymentMode": "Standard", "serving.kserve.io/autoscalerClass": "none"}},
        "spec": {"predictor": {"minReplicas": 2, "model": {"modelFormat": {"name": "sklearn"}, "storageUri": M1}}},
    }, namespace=NS)
    yield svc
    try:
        session.service(svc, NS).delete()
    except NotFound:
        pass


def weights(kubectl: Any, name: str) -> dict[str, int]:
    route = json.loads(kubectl.run("get", "httproute", f"{name}-predictor", "-n", NS, "-o", "json").stdout)
    return {ref["name"]: ref["weight"] for ref in route["spec"]["rules"][0]["backendRefs"]}


def test_panel_releases_a_standard_canary(session: Session, name: str, kubectl: Any) -> None:
    svc = session.service(name, NS)
    svc.status()
    c = PanelController(svc, KServeNb(max_step=20, confirm_above=50))
    stable, v2 = f"{name}-predictor", f"{name}-v2-predictor"

    # a fresh stable: nothing to move, promote or roll back, each button says why
    c.refresh()
    assert c.live_percent is None
    assert "no canary" in (c.traffic_blocker() or "")
    assert "nothing to promote" in (c.promote_blocker() or "")
    assert "nothing to roll back" in (c.rollback_blocker() or "")
    assert c.request_traffic(10) == "refused"

    plan = c.preview_deploy(M2, 20)
    assert plan is not None and plan.new_deployments == (v2,)
    assert "new Deployment" in plan_html(plan) and v2 in plan_html(plan)
    assert c.deploy(M2, 20) == "applied"
    assert weights(kubectl, name) == {stable: 80, v2: 20}
    assert c.live_percent == 20 and c.promote_blocker() is None and c.rollback_blocker() is None
    header = header_html(c)
    assert stable in header and v2 in header and "80%" in header and "20%" in header and "Standard mode" in header

    # the slider: guarded like in Knative mode, and it moves the newest canary
    assert c.request_traffic(80) == "refused"  # a 60-point move: more than max_step
    assert weights(kubectl, name) == {stable: 80, v2: 20}
    assert c.request_traffic(40) == "applied"
    assert weights(kubectl, name) == {stable: 60, v2: 40}
    assert c.request_traffic(60) == "needs_confirmation"
    assert weights(kubectl, name) == {stable: 60, v2: 40}
    assert c.confirm() == "applied"
    assert weights(kubectl, name) == {stable: 40, v2: 60}

    # Test: the stable against the canary, paired on identical rows
    cmp = c.send_test(8)
    assert cmp is not None and (cmp.baseline, cmp.candidate) == ("stable", "v2")
    assert c.comparison_stale is None

    assert c.promote() == "needs_confirmation"
    assert c.pending is not None and v2 in c.pending.message
    assert c.confirm() == "applied"
    assert list(weights(kubectl, name)) == [v2]
    assert kubectl.isvc(name, NS)["spec"]["predictor"]["name"] == "v2"
    assert c.status is not None and c.status.stable is not None and c.status.stable.deployment == v2
    assert "nothing to roll back" in (c.rollback_blocker() or "")
    assert c.comparison_stale is not None  # sent at another split


def test_panel_rolls_back_every_canary(session: Session, name: str, kubectl: Any) -> None:
    svc = session.service(name, NS)
    svc.canary(M2, 10)
    c = PanelController(svc, KServeNb(max_step=100, confirm_above=50))
    c.refresh()
    assert c.rollback() == "needs_confirmation"
    assert c.pending is not None and "remove canary v2" in c.pending.message
    assert c.confirm() == "applied"
    assert list(weights(kubectl, name)) == [f"{name}-predictor"]
    assert c.status is not None and c.status.canaries == ()


def test_the_panel_widget_slider_moves_the_newest_canary(session: Session, name: str, kubectl: Any) -> None:
    from kserve_nb.widgets import Panel

    svc = session.service(name, NS)
    svc.canary(M2, 20)
    panel = Panel(svc, config=KServeNb(max_step=30, confirm_above=50), user_ns={}, poll_interval=0)
    try:
        assert panel.slider.value == 20 and not panel.slider.disabled
        header = panel.header.value
        assert "Standard mode" in header and f"{name}-v2-predictor" in header and 'data-latest="20"' in header
        panel.slider.value = 35
        assert panel.controller.wait_idle(60)
        assert weights(kubectl, name) == {f"{name}-predictor": 65, f"{name}-v2-predictor": 35}
        assert 'data-latest="35"' in panel.header.value
        assert not panel.promote_button.disabled and not panel.rollback_button.disabled
    finally:
        panel.close()
