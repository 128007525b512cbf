"""The release panel's controller (no widgets) against the real local cluster.

The controller is what the panel's buttons and slider call; here it is driven directly, and the
cluster's own object (read with the real kubectl) must follow every applied action and stay put
for every refused, pending or cancelled one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from kserve_nb.config import KServeNb
from kserve_nb.errors import NotFound
from kserve_nb.session import Session, connect
from kserve_nb.widgets.controller import PanelController
from kserve_nb.widgets.samples import IRIS_SOURCE, iris_rows

MODEL_1 = "gs://kfserving-examples/models/sklearn/1.0/model"
MODEL_2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"


@pytest.fixture(scope="module")
def session(local_cluster: Any) -> Iterator[Session]:
    s = connect(local=True, state_dir=local_cluster.state_dir)
    yield s
    s.close()


@pytest.fixture()
def name(session: Session, request: pytest.FixtureRequest) -> Iterator[str]:
    """A service name unique to the test, deleted afterwards."""
    base = "pn-" + request.node.name.removeprefix("test_").replace("_", "-")[:28].rstrip("-")
    yield base
    try:
        session.service(base).delete()
    except NotFound:
        pass


def settings(max_step: int = 20, confirm_above: int = 50) -> KServeNb:
    return KServeNb(max_step=max_step, confirm_above=confirm_above)


def in_canary(session: Session, name: str, tag_routing: bool = True) -> None:
    """``name`` on model 1, then model 2 as a 10% canary (through the façade, waiting for each)."""
    svc = session.service(name)
    svc.deploy(MODEL_1, tag_routing=tag_routing)
    svc.canary(MODEL_2, 10)


# ---------------------------------------------------------------------- deploy


def test_preview_of_a_new_service_plans_a_create_and_applies_nothing(session: Session, name: str) -> None:
    c = PanelController(session.service(name), settings())
    c.refresh()
    assert c.exists is False and c.status is None
    plan = c.preview_deploy(MODEL_1, 10, tag_routing=True)
    assert plan is not None and plan.new_revision == f"{name}-predictor-00001"
    assert c.plan is plan and "dry run of create" in c.log[-1].outcome
    assert not session.service(name).exists()


def test_deploy_creates_then_deploys_a_canary(session: Session, name: str, kubectl: Any) -> None:
    c = PanelController(session.service(name), settings())
    assert c.deploy(MODEL_1, 10, tag_routing=True) == "applied"
    assert kubectl.split(name) == {"00001": 100}
    plan = c.preview_deploy(MODEL_2, 10, tag_routing=True)
    assert [(e.percent, e.revision[-5:]) for e in plan.after.traffic] == [(10, "00002"), (90, "00001")]
    assert kubectl.canary_percent(name) is None  # the preview changed nothing
    assert c.deploy(MODEL_2, 10, tag_routing=True) == "applied"
    assert kubectl.canary_percent(name) == 10
    assert kubectl.split(name) == {"00002": 10, "00001": 90}
    assert c.status.latest_percent == 10
    assert c.revision_uris == {f"{name}-predictor-00001": MODEL_1, f"{name}-predictor-00002": MODEL_2}
    assert [e.action for e in c.log] == ["deploy", "preview", "deploy"] and all(e.ok for e in c.log)


def test_a_deploy_above_the_confirmation_threshold_waits_for_confirm(session: Session, name: str, kubectl: Any) -> None:
    session.service(name).deploy(MODEL_1)
    c = PanelController(session.service(name), settings(confirm_above=50))
    c.refresh()
    assert c.deploy(MODEL_2, 60) == "needs_confirmation"
    assert c.pending is not None and c.pending.action == "deploy" and "60%" in c.pending.message
    assert kubectl.isvc(name)["spec"]["predictor"]["model"]["storageUri"] == MODEL_1
    assert c.confirm() == "applied"
    assert kubectl.canary_percent(name) == 60 and c.pending is None


# ---------------------------------------------------------------------- traffic guards


def test_a_move_within_max_step_applies_and_a_bigger_one_is_refused(session: Session, name: str, kubectl: Any) -> None:
    in_canary(session, name)
    c = PanelController(session.service(name), settings(max_step=20))
    c.refresh()
    assert c.request_traffic(30) == "applied"
    assert kubectl.canary_percent(name) == 30 and kubectl.split(name) == {"00002": 30, "00001": 70}
    assert c.error is None and c.live_percent == 30

    assert c.request_traffic(90) == "refused"
    assert kubectl.canary_percent(name) == 30  # refused, not clamped: nothing nobody chose is applied
    assert "move of 60 points" in c.error and "move to 50% first" in c.error
    assert c.log[-1].ok is False and "refused" in c.log[-1].outcome
    assert c.request_traffic(30) == "unchanged"
    assert c.request_traffic(10) == "applied" and kubectl.canary_percent(name) == 10
    assert c.error is None  # a successful action clears the previous error


def test_raising_the_canary_above_the_threshold_needs_confirmation(session: Session, name: str, kubectl: Any) -> None:
    in_canary(session, name)
    c = PanelController(session.service(name), settings(max_step=50, confirm_above=40))
    c.refresh()
    assert c.request_traffic(50) == "needs_confirmation"
    assert c.pending.action == "traffic" and c.pending.kwargs == {"percent": 50}
    assert kubectl.canary_percent(name) == 10
    c.cancel()
    assert c.pending is None and c.log[-1].outcome == "cancelled"
    assert kubectl.canary_percent(name) == 10

    assert c.request_traffic(50) == "needs_confirmation"
    assert c.confirm() == "applied"
    assert kubectl.canary_percent(name) == 50 and kubectl.split(name) == {"00002": 50, "00001": 50}
    # Lowering exposure is never held back, even above the threshold.
    assert c.request_traffic(45) == "applied" and kubectl.canary_percent(name) == 45


def test_promote_and_rollback_wait_for_confirmation(session: Session, name: str, kubectl: Any) -> None:
    in_canary(session, name)
    c = PanelController(session.service(name), settings())
    c.refresh()
    assert c.promote() == "needs_confirmation"
    assert f"{name}-predictor-00002" in c.pending.message
    assert kubectl.canary_percent(name) == 10
    assert c.confirm() == "applied"
    assert kubectl.canary_percent(name) is None and kubectl.split(name) == {"00002": 100}

    assert c.rollback() == "needs_confirmation"
    c.cancel()
    assert kubectl.split(name) == {"00002": 100}
    assert c.rollback() == "needs_confirmation" and c.confirm() == "applied"
    assert kubectl.canary_percent(name) == 0 and kubectl.split(name) == {"00002": 0, "00001": 100}
    assert c.confirm() == "unchanged"  # nothing pending any more


# ---------------------------------------------------------------------- test traffic


def test_send_test_compares_both_sides_with_iris_or_a_notebook_dataframe(session: Session, name: str) -> None:
    in_canary(session, name, tag_routing=True)
    frame = pd.DataFrame(iris_rows(6), columns=["a", "b", "c", "d"])
    c = PanelController(session.service(name), settings(), user_ns={"holdout": frame, "_hidden": frame, "n": 3})
    c.refresh()
    assert c.input_sources() == [IRIS_SOURCE, "holdout"]

    comparison = c.send_test(8, IRIS_SOURCE)
    assert c.comparison is comparison and c.error is None
    assert set(comparison.results["target"]) == {"latest", "prev"} and len(comparison.results) == 16
    assert set(comparison.figures()) >= {"predictions", "latency"}
    assert c.log[-1].action == "send" and "agreement" in c.log[-1].outcome

    comparison = c.send_test(4, "holdout")
    assert len(comparison.results) == 8


def test_without_tag_routing_send_test_compares_the_weighted_route_with_the_split(session: Session, name: str) -> None:
    in_canary(session, name, tag_routing=False)
    c = PanelController(session.service(name), settings())
    c.refresh()
    comparison = c.send_test(40)
    assert c.comparison is comparison and c.results is comparison.results
    assert set(comparison.results["target"]) == {"default"} and len(comparison.results) == 40
    split = comparison.split
    assert set(split["configured_pct"]) == {10, 90} and int(split["observed_n"].sum()) == 40
    assert c.comparison_basis is not None and dict(c.comparison_basis.split) == {
        f"{name}-predictor-00002": 10, f"{name}-predictor-00001": 90}
    assert "weighted route at 90%" in c.log[-1].outcome and c.notice.area == "test"


# ---------------------------------------------------------------------- errors


def test_errors_land_in_the_error_field_and_the_log(session: Session, name: str, kubectl: Any) -> None:
    in_canary(session, name)
    c = PanelController(session.service(name), settings(), user_ns={})
    c.refresh()
    assert c.deploy("gs://no-such-bucket/model", 10) == "failed"
    assert c.error.startswith("deploy failed: storageUri gs://no-such-bucket/model")
    assert c.log[-1].ok is False
    assert kubectl.isvc(name)["spec"]["predictor"]["model"]["storageUri"] == MODEL_2

    assert c.send_test(5, "missing_frame") is None
    assert "no DataFrame 'missing_frame'" in c.error

    # The same failure on the worker thread is reported, not lost.
    assert c.submit("deploy", "not a uri", 10).result(timeout=30) == "failed"
    assert "storageUri" in c.error and "no supported scheme" in c.error
    c.stop()


def test_a_panel_on_a_missing_service_reports_it_instead_of_raising(session: Session) -> None:
    c = PanelController(session.service("pn-never-created"), settings())
    assert c.refresh() is None and c.exists is False
    assert c.request_traffic(10) == "refused"
    assert "does not exist yet: deploy a model first" in c.error and c.notice.area == "release"


# ---------------------------------------------------------------------- background work


def test_polling_reports_changes_and_stop_leaves_no_thread(session: Session, name: str) -> None:
    in_canary(session, name)
    before = {t.ident for t in threading.enumerate()}
    c = PanelController(session.service(name), settings(max_step=100, confirm_above=100))
    seen: list[tuple[str, str]] = []
    c.observe(lambda what: seen.append((what, threading.current_thread().name)))
    c.start_polling(0.05)
    assert c.polling
    session.service(name).set_traffic(40)  # someone else changes the split
    deadline = time.monotonic() + 10
    while c.live_percent != 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert c.live_percent == 40
    assert ("status", "kserve-nb-panel-poll") in seen

    gate = threading.Event()
    c.submit(gate.wait, 10)  # hold the worker so three quick slider releases queue up behind it
    futures = [c.submit_traffic(p) for p in (45, 50, 55)]
    gate.set()
    assert [f.result(timeout=30) for f in futures] == ["unchanged", "unchanged", "applied"]  # only the last
    assert c.live_percent == 55
    assert c.wait_idle(10)

    assert c.stop(timeout=10) is True
    assert not c.polling
    leftover = [t for t in threading.enumerate() if t.ident not in before and t.name.startswith("kserve-nb-panel")]
    assert leftover == []


# ---------------------------------------------------------------------- notices, truth and staleness


@pytest.fixture(scope="module")
def corrupt_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A model file that exists (so the pre-flight passes) but cannot be loaded: its revision fails."""
    directory = tmp_path_factory.mktemp("panel-corrupt-model")
    (directory / "model.joblib").write_bytes(b"this is not a joblib pickle\n")
    return directory.as_uri()


def test_every_notice_names_the_area_of_the_control_that_caused_it(session: Session, name: str) -> None:
    in_canary(session, name)
    c = PanelController(session.service(name), settings(max_step=20))
    c.refresh()
    seen: list[tuple[str, str]] = []
    c.observe(lambda what: what == "notice" and seen.append((c.notice.area, c.notice.level)))
    assert c.request_traffic(90) == "refused"
    assert c.notice.area == "release" and c.notice.level == "refused" and "move to 30% first" in c.notice.text
    assert c.request_traffic(20) == "applied"
    assert seen[-2:] == [("release", "busy"), ("release", "ok")] and "settled at 80%" in c.notice.text
    assert c.preview_deploy("", 10) is None and c.notice.area == "deploy" and "enter the storageUri" in c.notice.text
    assert c.send_test(0) == "refused" and c.notice.area == "test"


def test_a_failed_canary_after_a_rollback_says_where_traffic_went(
    session: Session, name: str, kubectl: Any, corrupt_model: str
) -> None:
    in_canary(session, name)
    session.service(name).rollback()
    assert kubectl.split(name) == {"00002": 0, "00001": 100}
    c = PanelController(session.service(name), settings())
    c.refresh()
    assert c.deploy(corrupt_model, 10) == "failed"
    # KServe gives the canary percent to the latest *ready* revision: 00002 went from 0% to 10%.
    assert kubectl.split(name) == {"00002": 10, "00001": 90}
    text = c.notice.text
    assert c.notice.level == "error" and c.notice.area == "deploy" and f"{name}-predictor-00003 failed" in text
    rev1, rev2 = f"{name}-predictor-00001", f"{name}-predictor-00002"
    assert f"traffic moved from 0% {rev2} + 100% {rev1} to 10% {rev2} + 90% {rev1}" in text
    assert "stays on" not in text and c.log[-1].ok is False
    failed = c.failed_revisions
    assert [f.name for f in failed] == [f"{name}-predictor-00003"]
    assert failed[0].reason == "RevisionFailed" and failed[0].storage_uri == corrupt_model.rstrip("/")
    assert c.promote_blocker() and "failed" in c.promote_blocker()


def test_a_deploy_that_sends_traffic_to_an_older_model_asks_whatever_the_percent(
    session: Session, name: str, kubectl: Any
) -> None:
    in_canary(session, name)
    session.service(name).promote()
    c = PanelController(session.service(name), settings(confirm_above=50))
    c.refresh()
    # The serving model again at 10%: no new revision, and KServe sends 90% back to model 1.
    assert c.deploy(MODEL_2, 10) == "needs_confirmation"
    assert f"sends 90% to {name}-predictor-00001 ({MODEL_1}), an older model" in c.pending.message
    c.cancel()
    assert kubectl.split(name) == {"00002": 100} and kubectl.canary_percent(name) is None
    # Model 1 as a new revision, at 5%: it is the model revision 00002 replaced.
    assert c.deploy(MODEL_1, 5) == "needs_confirmation" and f"{MODEL_1} is an older model" in c.pending.message
    assert c.confirm() == "applied" and kubectl.split(name) == {"00003": 5, "00002": 95}


def test_promote_and_rollback_are_refused_when_they_would_do_nothing(session: Session, name: str) -> None:
    missing = PanelController(session.service("pn-never-there"), settings())
    missing.refresh()
    for blocker in (missing.promote_blocker(), missing.rollback_blocker(), missing.traffic_blocker()):
        assert blocker == "pn-never-there does not exist yet: deploy a model first"
    assert missing.promote() == "refused" and missing.pending is None

    session.service(name).deploy(MODEL_1)
    c = PanelController(session.service(name), settings())
    c.refresh()
    assert c.promote_blocker() == f"nothing to promote: {name}-predictor-00001 already serves 100%"
    assert c.rollback_blocker().startswith(f"nothing to roll back to: {name} has only ever rolled out")
    assert c.rollback() == "refused" and "nothing to roll back to" in c.notice.text and c.pending is None
    session.service(name).canary(MODEL_2, 10)
    c.refresh()
    assert c.promote_blocker() is None and c.rollback_blocker() is None
    assert c.rollback() == "needs_confirmation" and c.confirm() == "applied"
    assert c.rollback_blocker() == f"already rolled back: {name}-predictor-00001 serves 100%"


def test_out_of_range_percentages_are_refused(session: Session, name: str, kubectl: Any) -> None:
    in_canary(session, name)
    c = PanelController(session.service(name), settings(max_step=100, confirm_above=100))
    c.refresh()
    assert c.request_traffic(150) == "refused" and "0–100" in c.notice.text
    assert c.deploy(MODEL_1, 150) == "refused" and c.notice.area == "deploy"
    assert kubectl.canary_percent(name) == 10


def test_release_steps_clear_the_plan_and_mark_old_comparisons(session: Session, name: str) -> None:
    in_canary(session, name)
    c = PanelController(session.service(name), settings(max_step=50))
    c.refresh()
    assert c.preview_deploy(MODEL_1, 20) is not None and c.plan is not None and c.plan_stale is None
    assert c.send_test(6) is not None and c.comparison_stale is None
    assert c.request_traffic(30) == "applied"
    assert c.plan is None  # its "before" is gone
    stale = c.comparison_stale
    assert stale is not None and "earlier split (90%" in stale and f"now 70% {name}-predictor-00001" in stale

    assert c.preview_deploy(MODEL_1, 20) is not None
    session.service(name).set_traffic(40)  # someone else moves the split: the plan says so
    c.refresh()
    assert c.plan is not None and "the service has changed since" in (c.plan_stale or "")
    assert c.preview_deploy("gs://no-such-bucket/model", 20) is None
    assert c.plan is None  # a failed preview leaves no old plan behind

    assert c.promote() == "needs_confirmation" and c.confirm() == "applied"
    assert "now 100%" in (c.comparison_stale or "")


def test_a_failed_step_never_shows_a_tick() -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from kserve_nb.progress import Progress

    InteractiveShell.instance()
    with capture_output() as captured:
        failed = Progress("canary default/x", enabled=True)
        failed.done("x-predictor-00002 failed: RevisionFailed", ok=False)
        stopped = Progress("canary default/y", enabled=True)
        stopped.done("stopped waiting", ok=None)
        good = Progress("canary default/z", enabled=True)
        good.done("10% latest")
    shown = [o.data["text/html"] for o in captured.outputs]
    final = {title: html for html in shown for title in ("/x", "/y", "/z") if title + "</b>" in html}
    assert "✘" in final["/x"] and "✔" not in final["/x"] and 'data-outcome="failed"' in final["/x"]
    assert "⏹" in final["/y"] and "✔" not in final["/y"]
    assert "✔" in final["/z"] and (failed.outcome, stopped.outcome, good.outcome) == (False, None, True)
