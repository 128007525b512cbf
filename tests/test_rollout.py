"""The progressive-rollout autopilot end to end on the real local cluster.

Each test releases a real candidate model through real steps while the traffic generator sends iris
flowers to the service's default host; the gates read per-revision counters from the local
Prometheus (scraping the ingress) or from the generator's own responses. Covered: a good candidate
promoted through every step; candidates with injected errors and injected latency rolled back by
themselves at the first step, with no failed request outside the bad revision; a supervisor killed
mid-rollout leaves the service held at its step with the state visible, and a rerun resumes it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from kserve_nb import errors
from kserve_nb.local import manager
from kserve_nb.session import Session

M1 = "gs://kfserving-examples/models/sklearn/1.0/model"
M2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
ERRORS = "gs://kserve-nb-faults/sklearn/iris-errors"
SLOW = "gs://kserve-nb-faults/sklearn/iris-slow"
NS = "rollout-test"
ROOT = Path(__file__).resolve().parent.parent



@pytest.fixture(scope="module")
def iris() -> tuple[Any, Any]:
    from sklearn.datasets import load_iris

    data = load_iris()
    return data.data.tolist(), data.target.tolist()


def _fresh(session: Session, name: str) -> Any:
    svc = session.service(name)
    if svc.exists():
        svc.delete()
        deadline = time.monotonic() + 30
        while svc.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    svc.deploy(M1)
    return svc


def _failures_outside(results: Any, bad_revision: str) -> Any:
    from kserve_nb.analysis.frames import ok_mask

    failed = results[~ok_mask(results)]
    return failed[failed["revision"] != bad_revision]


def test_a_good_candidate_is_promoted_through_every_step(session: Session, iris: tuple[Any, Any]) -> None:
    svc = _fresh(session, "ro-good")
    rows, labels = iris
    result = svc.rollout(
        M2, steps="10,50,100", interval="2s",
        gates=["error_rate<=prev+0.05", "p95<=3*prev+20ms", "accuracy>=prev-0.2"],
        min_requests=10, max_wait="60s", load=rows, y=labels, rate=60, display=False,
    )
    assert result.ok, result.summary()
    assert result.phase == "Succeeded"
    events = [(e["event"], e["percent"]) for e in result.state.timeline]
    assert ("step", 10) in events and ("step", 50) in events and ("promote", 50) in events or ("promote", 100) in events
    st = svc.status()
    assert st.canary_traffic_percent is None and st.latest_percent == 100
    assert st.storage_uri == M2 and st.latest_revision == "ro-good-predictor-00002"
    saved = svc.rollout_state()
    assert saved.phase == "Succeeded" and not saved.live
    record = result.to_dict()
    assert record["phase"] == "Succeeded" and record["timeline"] and record["gates"]
    assert all("statement" in g for g in record["gates"])  # every verdict states its evidence
    # Requests, errors and latency from Prometheus; which answers were right from the labelled traffic.
    assert result.state.source.startswith("prometheus") and "labels from client" in result.state.source
    accuracy = next(g for g in record["gates"] if g["metric"] == "accuracy")
    assert accuracy["n_candidate"] > 0
    # The resolved PromQL behind the counts is part of the record and of what the notebook shows.
    assert "revision_app_request_count" in record["queries"]["ro-good-predictor-00002"]["requests"]
    assert "queries behind these numbers" in result._repr_html_()
    history = svc.history()
    assert (history["action"] == "rollout").any()


def test_a_candidate_with_injected_errors_is_rolled_back_at_the_first_step(
    session: Session, iris: tuple[Any, Any]
) -> None:
    svc = _fresh(session, "ro-errors")
    rows, _ = iris
    load = svc.generate_load(rows, rate=80, concurrency=8, duration=120)
    try:
        result = svc.rollout(
            ERRORS, steps="20,50,100", interval="60s", gates=["error_rate<=prev+0.01"], display=False,
        )
    finally:
        load.stop()
    assert result.phase == "RolledBack", result.summary()
    assert result.state.step == 0  # the first step, long before its 60 s bake ended
    assert "error_rate" in result.reason
    bad = "ro-errors-predictor-00002"
    st = svc.status()
    assert st.canary_traffic_percent == 0 and st.prev_percent == 100
    fail = [e for e in result.evidence if e.decision == "fail"]
    assert fail and fail[0].n_candidate > 0
    outside = _failures_outside(load.results, bad)
    assert outside.empty, outside.head().to_dict("records")


def test_a_slow_candidate_is_rolled_back_by_its_latency_gate(session: Session, iris: tuple[Any, Any]) -> None:
    svc = _fresh(session, "ro-slow")
    rows, labels = iris
    result = svc.rollout(
        SLOW, steps="20,100", interval="60s", gates=["p95<=1.5*prev+10ms"], load=rows, y=labels, rate=60,
        metrics="client", display=False,
    )
    assert result.phase == "RolledBack", result.summary()
    assert result.state.step == 0 and "p95" in result.reason
    assert svc.status().canary_traffic_percent == 0


_SUPERVISOR = textwrap.dedent(
    """
    import sys
    from kserve_nb.session import connect
    s = connect(local=True, state_dir=sys.argv[1], namespace=sys.argv[2])
    s.service(sys.argv[3]).rollout(
        sys.argv[4], steps="10,50,100", interval="3s", gates=["error_rate<=prev+0.05"], min_requests=5,
        max_wait="600s", lease="3s", display=False,
    )
    """
)


def test_a_dead_supervisor_leaves_the_service_held_at_its_step_and_a_rerun_resumes(
    session: Session, local_cluster: manager.LocalCluster, iris: tuple[Any, Any]
) -> None:
    svc = _fresh(session, "ro-held")
    proc = subprocess.Popen(
        [sys.executable, "-c", _SUPERVISOR, str(local_cluster.state_dir), NS, "ro-held", M2],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        state = None
        while time.monotonic() < deadline:
            state = svc.rollout_state()
            if state is not None and state.candidate and any(e["event"] == "step" for e in state.timeline):
                break
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            time.sleep(0.2)
        assert state is not None and state.live and state.step == 0
        os.kill(proc.pid, signal.SIGKILL)  # the "kernel" dies mid-rollout (no test traffic: it waits)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    # Nothing moves the traffic any more: the service holds at its step, and says so.
    time.sleep(4)
    st = svc.status()
    assert st.canary_traffic_percent == 10 and st.latest_percent == 10
    held = svc.rollout_state()
    assert held.live and held.held()
    assert "HELD at step 1/3 (10% to ro-held-predictor-00002)" in held.summary()
    with pytest.raises(errors.ValidationError, match="another rollout"):
        svc.rollout(SLOW, steps="10,50,100", display=False)

    # Re-running the same rollout resumes it at that step, and with traffic it goes to the end.
    rows, labels = iris
    result = svc.rollout(M2, steps="10,50,100", load=rows, y=labels, rate=60, display=False)
    assert result.phase == "Succeeded", result.summary()
    events = [e["event"] for e in result.state.timeline]
    assert events.count("start") == 1 and events.count("resume") == 1
    assert svc.status().canary_traffic_percent is None


def test_a_pause_step_waits_for_approval_and_abort_rolls_back(session: Session, iris: tuple[Any, Any]) -> None:
    import threading

    svc = _fresh(session, "ro-pause")
    rows, labels = iris
    outcome: dict[str, Any] = {}

    def run(uri: str) -> None:
        try:
            outcome[uri] = svc.rollout(uri, steps="10,pause,100", interval="1s", min_requests=5,
                                       load=rows, y=labels, rate=60, display=False)
        except Exception as err:  # noqa: BLE001 - surfaced by the asserts below
            outcome[uri] = err

    def wait_paused() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = svc.rollout_state()
            if state is not None and state.phase == "Paused":
                return
            time.sleep(0.2)
        raise AssertionError(f"never paused: {svc.rollout_state()}")

    worker = threading.Thread(target=run, args=(M2,))
    worker.start()
    wait_paused()
    assert svc.status().latest_percent == 10  # holds its share while waiting
    svc.approve_rollout()
    worker.join(120)
    assert getattr(outcome[M2], "phase", outcome[M2]) == "Succeeded"

    worker = threading.Thread(target=run, args=(M1,))  # and back again, this time aborted
    worker.start()
    wait_paused()
    final = svc.abort_rollout()
    worker.join(120)
    assert final.phase == "Aborted" and getattr(outcome[M1], "phase", outcome[M1]) == "Aborted"
    st = svc.status()
    assert st.canary_traffic_percent == 0 and st.prev_percent == 100 and st.storage_uri == M1


def test_a_dry_run_shows_the_plan_the_first_patch_and_the_queries(session: Session) -> None:
    svc = _fresh(session, "ro-dry")
    preview = svc.rollout(M2, steps="5,25,pause,100", interval="30s", gates=["p95<=1.2*prev"], dry_run=True)
    text = str(preview)
    assert "5% → 25% → ⏸ approve → promote" in text
    assert "canaryTrafficPercent" in text
    assert "revision_app_request" in text  # the resolved PromQL
    assert svc.status().canary_traffic_percent is None  # nothing applied
    assert svc.rollout_state() is None
    with pytest.raises(errors.ValidationError, match="accuracy gate needs labelled test traffic"):
        svc.rollout(M2, gates=["accuracy>=prev-0.02"], dry_run=True)
