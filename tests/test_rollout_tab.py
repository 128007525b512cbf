"""The panel's Rollout tab with real widgets against the real local cluster: the buttons are
clicked, the cluster is read back through the façade."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kserve_nb.session import Session
from kserve_nb.widgets.rollout_tab import RolloutTab

M1 = "gs://kfserving-examples/models/sklearn/1.0/model"
M2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
ERRORS = "gs://kserve-nb-faults/sklearn/iris-errors"
NS = "rollout-tab"



def until(check: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s")


def _tab(session: Session, name: str) -> RolloutTab:
    svc = session.service(name)
    if not svc.exists():
        svc.deploy(M1)
    return RolloutTab(svc)


def test_preview_then_start_promotes_and_the_tab_shows_every_step(session: Session) -> None:
    tab = _tab(session, "tab-good")
    try:
        tab.uri.value = M2
        tab.steps.value = "20,100"
        tab.interval.value = "1s"
        tab.gates.value = "error_rate<=prev+0.05\naccuracy>=prev-0.3"
        tab.rate.value = 60
        tab.preview_button.click()
        until(lambda: "dry run — nothing applied" in tab.view.value)
        assert "nothing applied" in tab.feedback.value
        assert session.service("tab-good").status().canary_traffic_percent is None
        tab.start_button.click()
        until(lambda: 'data-kind="ok"' in tab.feedback.value, timeout=120)
        assert "rollout Succeeded" in tab.feedback.value
        assert 'data-state="done"' in tab.view.value  # the step picture, every step done
        st = session.service("tab-good").status()
        assert st.storage_uri == M2 and st.canary_traffic_percent is None
    finally:
        tab.close()


def test_a_bad_candidate_rolls_back_by_itself_and_bad_input_is_one_line(session: Session) -> None:
    tab = _tab(session, "tab-bad")
    try:
        tab.uri.value = M2
        tab.steps.value = "ten"
        tab.start_button.click()
        until(lambda: 'data-kind="error"' in tab.feedback.value)
        assert "neither a percent nor &#x27;pause&#x27;" in tab.feedback.value
        tab.uri.value = ERRORS
        tab.steps.value = "20,100"
        tab.interval.value = "60s"
        tab.rate.value = 80
        tab.start_button.click()
        until(lambda: "RolledBack" in tab.feedback.value, timeout=120)
        assert "gate failed: error_rate" in tab.feedback.value
        assert 'data-state="failed"' in tab.view.value
        assert session.service("tab-bad").status().canary_traffic_percent == 0
    finally:
        tab.close()


def test_closing_the_panel_mid_rollout_leaves_it_held_and_abort_rolls_back(session: Session) -> None:
    tab = _tab(session, "tab-held")
    svc = session.service("tab-held")
    tab.uri.value = M2
    tab.steps.value = "10,100"
    tab.interval.value = "600s"
    tab.traffic.value = False
    tab.start_button.click()
    until(lambda: (svc.rollout_state() or None) and svc.rollout_state().candidate)
    until(lambda: svc.status().latest_percent == 10)
    tab.close()  # the notebook closes the panel: supervising stops, the traffic stays put
    state = until(lambda: (s := svc.rollout_state()) is not None and s.held() and s)
    assert "HELD at step 1/2" in state.summary()
    assert svc.status().canary_traffic_percent == 10

    again = RolloutTab(svc)  # a new panel shows the held rollout at once
    try:
        assert "HELD" in again.view.value and again.uri.value == M2
        again.abort_button.click()
        until(lambda: "Aborted" in again.feedback.value or "aborted" in again.feedback.value)
        st = svc.status()
        assert st.canary_traffic_percent == 0 and st.prev_percent == 100
    finally:
        again.close()
