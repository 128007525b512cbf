"""The traffic generator and the client metric source, against the real local cluster over real HTTP.

One InferenceService is split 70/30 between the walkthrough's two models; load goes to its default
host, so the split decides which revision answers each request and the ingress says which did.
Timing assertions are deliberately loose: this machine is shared.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris

import kserve_nb
from kserve_nb.analysis import RESULT_COLUMNS
from kserve_nb.errors import PredictionError, ValidationError
from kserve_nb.local import manager
from kserve_nb.metrics import RevisionSample
from kserve_nb.metrics.client import UNATTRIBUTED, ClientSource
from kserve_nb.predict import PredictionClient, Target
from kserve_nb.predict.load import LOAD_COLUMNS, LoadRun, generate_load, matches
from kserve_nb.session import Session

M1 = "gs://kfserving-examples/models/sklearn/1.0/model"
M2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
ERRORS = "gs://kserve-nb-faults/sklearn/iris-errors"
NS = "load-test"
R1, R2 = "load-iris-predictor-00001", "load-iris-predictor-00002"
X, Y = load_iris(return_X_y=True)
FRAME = pd.DataFrame(X, columns=["sepal_length", "sepal_width", "petal_length", "petal_width"])



@pytest.fixture(scope="module")
def svc(session: Session) -> kserve_nb.Service:
    """``load-iris``: 70% on model 1 (00001), 30% on model 2 (00002)."""
    svc = session.service("load-iris")
    if svc.exists():
        svc.delete()
    svc.deploy(M1)
    svc.canary(M2, 30)
    return svc


def _idle(client: PredictionClient) -> int:
    """Tasks left on the client's loop other than the one asking (nothing may linger after a run)."""

    async def others() -> int:
        return len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()])

    deadline = time.monotonic() + 5
    while (n := client._loop.run(others)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return n


def test_load_is_paced_bounded_attributed_and_labelled(svc: kserve_nb.Service, session: Session) -> None:
    run = svc.generate_load(FRAME, y=Y, rate=40, duration=3, concurrency=4, progress=False)
    # Non-blocking: the call returned while the traffic is still going.
    assert isinstance(run, LoadRun) and run.running and run.completed < run.planned
    assert "running" in repr(run) and "default" in repr(run)
    run.wait(timeout=60)
    assert run.done and run.state == "finished"
    assert run.planned == 120 and 60 <= run.sent <= 120  # rate × duration at most; a busy box may send fewer

    df = run.results
    assert list(df.columns) == [*RESULT_COLUMNS, *LOAD_COLUMNS]
    assert len(df) == run.sent == run.completed
    assert df["error"].isna().all() and (df["status_code"] == 200).all()
    # Paced: sent over the whole duration at about 1/rate apart, not in a burst.
    gaps = np.diff(df["sent_s"].to_numpy())
    assert df["sent_s"].max() <= 3.0 and df["sent_s"].max() >= 1.5
    assert 0.0125 <= float(np.median(gaps)) <= 0.05
    # Rows are replayed in order and cycled; the target is the weighted default host.
    assert df["row"].tolist() == [i % len(X) for i in range(len(df))]
    assert set(df["target"]) == {"default"}
    # The split decides who answers: both revisions, about 70/30.
    share = df["revision"].value_counts(normalize=True)
    assert set(share.index) == {R1, R2}
    assert 0.1 <= share[R2] <= 0.5
    # Labels: correct is prediction == y for every row, and both models are good on iris.
    assert df["label"].tolist() == [int(Y[r]) for r in df["row"]]
    assert df["correct"].tolist() == [p == y for p, y in zip(df["prediction"], df["label"])]
    summary = run.summary()
    assert summary.loc["all", "requests"] == len(df) and summary.loc["all", "labelled"] == len(df)
    assert summary.loc["all", "accuracy"] > 0.9
    assert summary.loc[R2, "requests"] == (df["revision"] == R2).sum()
    assert summary.loc["all", "errors"] == 0 and summary.loc["all", "p50_ms"] > 0
    assert "finished" in repr(run) and "req/s" in repr(run) and "<table" in run._repr_html_()
    assert _idle(session.prediction_client(svc.name)) == 0


def test_max_requests_bounds_the_run(svc: kserve_nb.Service) -> None:
    run = svc.generate_load(X[:10], rate=100, duration=60, max_requests=25, progress=False).wait(timeout=60)
    assert run.sent == run.completed == 25 and run.planned == 25
    assert run.state == "finished (max_requests)"
    assert run.elapsed < 30  # ended at the count, long before the duration
    assert run.results["repeat"].tolist() == [i // 10 for i in range(25)]


def test_stop_ends_a_run_early_and_nothing_keeps_running(svc: kserve_nb.Service, session: Session) -> None:
    run = svc.generate_load(X, rate=20, duration=120, progress=False)
    deadline = time.monotonic() + 30
    while run.completed < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.stop() is run
    run.wait(timeout=30)
    assert run.state == "stopped" and run.done and not run.running
    sent = run.sent
    assert 5 <= sent < run.planned
    time.sleep(0.3)
    assert run.sent == sent == run.completed  # nothing more went out, everything sent came back
    assert _idle(session.prediction_client(svc.name)) == 0


def test_wait_with_a_timeout_says_the_run_goes_on(svc: kserve_nb.Service) -> None:
    run = svc.generate_load(X, rate=10, duration=60, progress=False)
    try:
        with pytest.raises(PredictionError, match="still going"):
            run.wait(timeout=0.2)
        assert run.running
    finally:
        run.stop().wait(timeout=30)


def test_client_source_counts_what_the_run_observed(svc: kserve_nb.Service) -> None:
    run = svc.generate_load(X, y=Y, rate=50, duration=2, concurrency=4, progress=False)
    source = ClientSource(run)
    assert source.name == "client"
    early = source.snapshot(NS, svc.name, [R1, R2])
    run.wait(timeout=60)
    snap = source.snapshot(NS, svc.name, [R1, R2, "load-iris-predictor-00009"])
    df = run.results
    for rev in (R1, R2):
        s, mine = snap[rev], df[df["revision"] == rev]
        assert isinstance(s, RevisionSample) and s.source == "client" and s.revision == rev
        assert s.requests == len(mine) and s.errors == 0 and dict(s.codes) == {"200": len(mine)}
        assert s.latency.total == len(mine)
        assert s.labelled == len(mine) and s.correct == int(mine["correct"].sum())
        assert abs(s.latency.quantile(0.5) - mine["latency_ms"].median()) < max(2.0, 0.5 * mine["latency_ms"].median())
        # Cumulative: the later snapshot holds the earlier one, and their difference is what came between.
        assert s.requests >= early[rev].requests
        assert (s - early[rev]).requests == s.requests - early[rev].requests
    assert snap["load-iris-predictor-00009"].requests == 0
    assert UNATTRIBUTED not in snap  # the ingress named the revision of every answer
    # Reading again adds nothing; a frame of the same results counts the same.
    assert source.snapshot(NS, svc.name, [R1])[R1] == snap[R1]
    again = ClientSource(df).snapshot(NS, svc.name, [R1, R2])
    assert (again[R1].requests, again[R1].correct, again[R1].latency) == (
        snap[R1].requests,
        snap[R1].correct,
        snap[R1].latency,
    )
    with pytest.raises(ValidationError, match="follows traffic to load-test/load-iris"):
        source.snapshot(NS, "another-service", [R1])


def test_a_failing_revision_is_recorded_not_raised(svc: kserve_nb.Service, session: Session) -> None:
    """A canary that answers 500 for a quarter of its requests: the failures land on it alone."""
    bad = session.service("load-bad")
    if bad.exists():
        bad.delete()
    bad.deploy(M1)
    bad.canary(ERRORS, 50)
    run = bad.generate_load(X, rate=60, duration=3, concurrency=8, progress=False).wait(timeout=60)
    snap = ClientSource(run).snapshot(NS, "load-bad", ["load-bad-predictor-00001", "load-bad-predictor-00002"])
    good, faulty = snap["load-bad-predictor-00001"], snap["load-bad-predictor-00002"]
    assert run.state == "finished" and good.requests + faulty.requests == run.sent
    assert good.errors == 0  # no failed request outside the bad revision
    assert 0.08 <= faulty.error_rate <= 0.5 and faulty.codes.get("500") == faulty.errors
    failed = run.results.dropna(subset=["error"])
    assert failed["error"].str.contains("injected fault").all()
    bad.delete()


def _revision_pid(state_dir: Path, namespace: str, revision: str) -> int:
    """The pid of a revision's model server: the process whose stdout is that revision's log."""
    log = os.path.realpath(state_dir / "logs" / namespace / f"{revision}.log")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.path.realpath(entry / "fd" / "1") == log:
                    return int(entry.name)
            except OSError:
                continue
    raise AssertionError(f"no model server writes {log}")


def test_a_revision_killed_mid_run_costs_failed_requests_not_the_run(
    session: Session, local_cluster: manager.LocalCluster
) -> None:
    """kill -9 of the canary's model server while traffic flows: whatever was lost is recorded (on
    that revision, or unattributed), the other revision is untouched, and the run goes on to the end."""
    svc = session.service("load-dead")
    if svc.exists():
        svc.delete()
    svc.deploy(M1)
    svc.canary("gs://kserve-nb-faults/sklearn/iris-control", 50)  # the same model, a new revision
    run = svc.generate_load(X, rate=60, duration=3, concurrency=8, progress=False)
    deadline = time.monotonic() + 30
    while run.completed < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(_revision_pid(local_cluster.state_dir, NS, "load-dead-predictor-00002"), signal.SIGKILL)
    run.wait(timeout=60)
    assert run.state == "finished" and run.completed == run.sent
    snap = ClientSource(run).snapshot(NS, "load-dead", ["load-dead-predictor-00001", "load-dead-predictor-00002"])
    assert snap["load-dead-predictor-00001"].errors == 0
    failed = run.results.dropna(subset=["error"])
    assert set(failed["revision"].dropna()) <= {"load-dead-predictor-00002"}
    assert ((failed["status_code"].isna()) | (failed["status_code"] >= 500)).all()
    # The crashed revision is restarted and answers again before the run ends.
    late = run.results[run.results["sent_s"] > run.results["sent_s"].max() - 0.5]
    assert (late["revision"] == "load-dead-predictor-00002").any()
    svc.delete()


def test_a_dead_ingress_gives_failed_requests_under_unattributed() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with PredictionClient(f"http://127.0.0.1:{port}", model="m", timeout=5) as client:
        target = Target("default", "m-predictor.ns.example.com")
        run = generate_load(client, target, X[:3], rate=50, duration=1, progress=False).wait(timeout=30)
        assert run.state == "finished" and run.sent >= 10
        df = run.results
        assert df["status_code"].isna().all() and df["error"].str.contains("refused").all()
        snap = ClientSource(run).snapshot("ns", "m", ["m-predictor-00001"])
        assert snap["m-predictor-00001"].requests == 0
        lost = snap[UNATTRIBUTED]
        assert lost.requests == lost.errors == run.sent and dict(lost.codes) == {"error": run.sent}
        assert run.summary().loc[UNATTRIBUTED, "error_rate"] == 1.0


def test_progress_widget_shows_the_run_and_its_stop_button_stops_it(svc: kserve_nb.Service) -> None:
    from kserve_nb.predict.load import _WidgetProgress

    run = svc.generate_load(X, rate=20, duration=120, progress=False)
    widget = _WidgetProgress(run)
    assert widget.bar.max == run.planned == 2400
    deadline = time.monotonic() + 30
    while run.completed < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    widget.update(run)
    assert widget.bar.value >= 3 and "req/s" in widget.label.value
    widget.button.click()  # what a click in the notebook does
    run.wait(timeout=30)
    assert run.state == "stopped"
    widget.done(run)
    assert widget.button.disabled and "stopped" in widget.label.value


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0}, "rate must be a positive number"),
        ({"rate": math.inf}, "rate must be a positive number"),
        ({"duration": -1}, "duration must be a positive number"),
        ({"concurrency": 0}, "concurrency must be a whole number"),
        ({"max_requests": 0}, "max_requests must be"),
        ({"y": [0, 1]}, "y has 2 labels but there are 150 rows"),
        ({"to": "canary"}, "unknown target 'canary'"),
        ({"protocol": "v3"}, "protocol"),
    ],
)
def test_bad_arguments_are_one_line_errors_and_send_nothing(
    svc: kserve_nb.Service, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        svc.generate_load(X, progress=False, **kwargs)


@pytest.mark.parametrize(
    ("prediction", "label", "expected"),
    [
        (2, 2, True),
        ([2], 2, True),
        (2.0, 2, True),
        ([0.1, 0.7, 0.2], 1, True),
        (1, 2, False),
        ("setosa", "setosa", True),
    ],
)
def test_matches_reads_classes_one_element_lists_and_probabilities(prediction: Any, label: Any, expected: bool) -> None:
    assert matches(prediction, label) is expected


def test_in_a_jupyter_kernel_the_progress_is_a_live_widget(
    svc: kserve_nb.Service, local_cluster: manager.LocalCluster
) -> None:
    """A real ipykernel, driven over the Jupyter protocol: the cell returns at once with a progress
    widget on display, and the widget keeps updating from the background while the kernel is idle."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:

        def execute(code: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            msg_id = kc.execute(code)
            mine, others = [], []
            while True:
                msg = kc.get_iopub_msg(timeout=120)
                if msg["parent_header"].get("msg_id") != msg_id:
                    others.append(msg)
                    continue
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    return mine, others
                mine.append(msg)

        shown, _ = execute(
            "import kserve_nb\n"
            "from sklearn.datasets import load_iris\n"
            "X, _ = load_iris(return_X_y=True)\n"
            f"s = kserve_nb.connect(local=True, state_dir={str(local_cluster.state_dir)!r}, namespace={NS!r})\n"
            f"run = s.service({svc.name!r}).generate_load(X, rate=20, duration=2)\n"
            "print(run.running)\n"
        )
        errors = [m["content"] for m in shown if m["msg_type"] == "error"]
        assert not errors, errors
        assert any("application/vnd.jupyter.widget-view+json" in m["content"].get("data", {})
                   for m in shown if m["msg_type"] == "display_data")
        assert "True" in "".join(m["content"]["text"] for m in shown if m["msg_type"] == "stream")
        done, background = execute("run.wait(timeout=60); print(run.state, run.sent)")
        out = "".join(m["content"]["text"] for m in done if m["msg_type"] == "stream")
        assert out.startswith("finished"), out
        updates = [m for m in shown + done + background if m["msg_type"] == "comm_msg"
                   and "value" in m["content"].get("data", {}).get("state", {})]
        assert updates, "the progress bar was never updated"
        execute("s.close()")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_service_send_warms_up_each_target_unless_told_not_to(svc: kserve_nb.Service) -> None:
    df = svc.send(X[:4], to="default")
    assert len(df) == 4 and df.attrs["warmup"] == 3 and df["error"].isna().all()
    assert svc.send(X[:4], to="default", warmup=0).attrs["warmup"] == 0


def test_closing_the_client_ends_a_run_cleanly(
    svc: kserve_nb.Service, session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    client = PredictionClient(session.ingress, model=svc.name)
    run = generate_load(client, svc.target("default"), X, rate=20, duration=60, progress=False)
    deadline = time.monotonic() + 30
    while run.completed < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    client.close()
    assert run.wait(timeout=10) is run
    assert run.done and run.state == "stopped (the prediction client was closed)"
    elapsed = run.elapsed
    time.sleep(0.2)
    assert run.elapsed == elapsed  # the run's clean-up ran: it has an end time
    assert not [r for r in caplog.records if r.name == "asyncio" and r.levelname == "ERROR"]
