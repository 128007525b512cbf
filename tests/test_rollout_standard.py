"""The progressive-rollout autopilot on a Standard-mode (``spec.canary[]``) service, on the real local cluster.

The candidate is a new canary (``v2``) whose ``trafficPercent`` the steps set; the gates compare its
side with the ``stable`` side, each side being every pod of its Deployment. The numbers come from
the local cluster's real Prometheus, scraping the ingress's per-target counters, summed per
Deployment by the Standard-mode PromQL (``STANDARD_LOCAL``); traffic is real predictions sent to
the service's weighted host by the traffic generator. Covered: the per-side counters agree with
what the client saw answered by each Deployment; a good candidate is promoted through its steps; a
candidate that fails a quarter of its requests is rolled back by itself at the first step, with no
failed request outside its Deployment; a rollout paused for approval and aborted removes its
canary; an error gate on metrics without status codes is refused.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kserve_nb import errors
from kserve_nb.analysis.frames import ok_mask
from kserve_nb.metrics.client import ClientSource
from kserve_nb.metrics.prometheus import KNATIVE, KSERVE_STANDARD, STANDARD_LOCAL, _alternation
from kserve_nb.semantics_standard import deployment_of
from kserve_nb.service import Service
from kserve_nb.session import Session

NS = "rollout-standard"
M1 = "gs://kfserving-examples/models/sklearn/1.0/model"
M2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
ERRORS = "gs://kserve-nb-faults/sklearn/iris-errors"
MODE = {"serving.kserve.io/deploymentMode": "Standard", "serving.kserve.io/autoscalerClass": "none"}


@pytest.fixture(scope="module")
def iris() -> tuple[list[Any], list[Any]]:
    from sklearn.datasets import load_iris

    data = load_iris()
    return data.data.tolist(), data.target.tolist()


@pytest.fixture()
def svc(session: Session, request: pytest.FixtureRequest) -> Iterator[Service]:
    """A fresh, ready Standard-mode service on model 1, unique to the test; deleted afterwards."""
    name = "rs-" + request.node.name.removeprefix("test_").replace("_", "-")[:20].rstrip("-")
    service = session.service(name, NS)
    if service.exists():
        service.delete()
        deadline = time.monotonic() + 30
        while service.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    session.apply({
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
        "metadata": {"name": name, "namespace": NS, "annotations": dict(MODE)},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": M1}}},
    }, namespace=NS)
    deadline = time.monotonic() + 60
    while not ((stable := service.status().stable) and stable.ready) and time.monotonic() < deadline:
        time.sleep(0.1)
    yield service
    try:
        service.delete()
    except errors.NotFound:
        pass


def test_standard_queries_select_deployments_not_other_names() -> None:
    values = {"namespace": "ns", "service": "m", "revisions": _alternation(["m-predictor", "m-v2-predictor"])}
    local = STANDARD_LOCAL.resolve("requests", **values)
    assert 'revision_name=~"(m-predictor|m-v2-predictor)-[bcdfghjklmnpqrstvwxz2456789]+"' in local
    assert 'label_replace(' in local and '"deployment"' in local
    real = KSERVE_STANDARD.resolve("latency_buckets", **values)
    assert "request_predict_seconds_bucket" in real
    assert 'pod=~"(m-predictor|m-v2-predictor)-[a-z0-9]+-[a-z0-9]+"' in real
    assert not KSERVE_STANDARD.counts_errors and STANDARD_LOCAL.counts_errors and KNATIVE.counts_errors


def test_prometheus_per_side_agrees_with_what_each_deployment_answered(svc: Service, iris: tuple[Any, Any]) -> None:
    rows, _ = iris
    svc.canary(M2, 50)
    st = svc.status()
    sides = {s.name: s.deployment for s in st.sides}
    assert sides == {"stable": f"{svc.name}-predictor", "v2": f"{svc.name}-v2-predictor"}
    source = svc.session.metrics().for_sides(sides)
    before = source.snapshot(NS, svc.name, ["stable", "v2"])
    run = svc.generate_load(rows, rate=100, concurrency=4, max_requests=300, progress=False)
    run.wait(60)
    results = run.results
    assert ok_mask(results).all()
    by_deployment = results["revision"].map(deployment_of).value_counts().to_dict()
    assert set(by_deployment) == set(sides.values())
    # Prometheus (scraping the ingress each second) catches up with the client.
    deadline = time.monotonic() + 30
    while True:
        now = source.snapshot(NS, svc.name, ["stable", "v2"])
        delta = {side: (now[side] - before[side]).requests for side in sides}
        if delta == {side: by_deployment[dep] for side, dep in sides.items()} or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert delta == {side: by_deployment[dep] for side, dep in sides.items()}
    assert now["v2"].revision == "v2" and now["v2"].latency.total >= delta["v2"]
    assert f"{svc.name}-v2-predictor" in now["v2"].queries["requests"]
    # The client's own counts, per side, say the same.
    client = ClientSource(results).for_sides(sides).snapshot(NS, svc.name, ["stable", "v2"])
    assert {side: client[side].requests for side in sides} == delta
    explained = source.explain(NS, svc.name, ["stable", "v2"])
    assert set(explained["revision"]) == {"stable", "v2"}
    assert explained["query"].str.contains("label_replace").all()


def test_a_good_standard_canary_is_promoted_through_its_steps(svc: Service, iris: tuple[Any, Any]) -> None:
    rows, labels = iris
    preview = svc.rollout(M2, steps="20,100", interval="2s", dry_run=True)
    assert "stable = Deployment" in preview.source and f"{svc.name}-v2-predictor" in str(preview)
    result = svc.rollout(
        M2, steps="20,60,100", interval="2s",
        gates=["error_rate<=prev+0.05", "p95<=3*prev+20ms", "accuracy>=prev-0.2"],
        min_requests=10, max_wait="60s", load=rows, y=labels, rate=60, display=False,
    )
    assert result.ok, result.summary()
    state = result.state
    assert (state.candidate, state.baseline) == ("v2", "stable")
    assert state.sides == {"stable": f"{svc.name}-predictor", "v2": f"{svc.name}-v2-predictor"}
    events = [(e["event"], e["percent"]) for e in state.timeline]
    assert ("step", 20) in events and ("step", 60) in events
    assert any("canary v2 (Deployment" in e["message"] for e in state.timeline)
    st = svc.status()
    assert not st.canaries and st.stable is not None and st.stable.storage_uri == M2
    assert st.stable.deployment == f"{svc.name}-v2-predictor"  # promoted: the canary's pods serve on
    record = result.to_dict()
    assert record["mode"] == "Standard" and record["sides"] == state.sides
    assert "label_replace" in record["queries"]["v2"]["requests"]
    assert record["samples"]["v2"]["requests"] > 0 and record["samples"]["stable"]["requests"] > 0
    accuracy = next(g for g in record["gates"] if g["metric"] == "accuracy")
    assert accuracy["n_candidate"] > 0
    assert "<th>side</th>" in result._repr_html_() and "<th>deployment</th>" in result._repr_html_()


def test_a_paused_standard_rollout_aborted_by_a_person_removes_its_canary(svc: Service, iris: tuple[Any, Any]) -> None:
    rows, _ = iris
    out: dict[str, Any] = {}

    def run() -> None:
        out["result"] = svc.rollout(
            M2, steps="20,pause,100", interval="1s", gates=["error_rate<=prev+0.05"], min_requests=5,
            max_wait="60s", load=rows, rate=40, display=False,
        )

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and ((st := svc.rollout_state()) is None or st.phase != "Paused"):
        time.sleep(0.2)
    state = svc.rollout_state()
    assert state is not None and state.phase == "Paused", state
    assert "to v2" in state.summary() and svc.status().side("v2").percent == 20
    aborted = svc.abort_rollout()
    worker.join(30)
    assert not worker.is_alive()
    assert aborted.phase == "Aborted" and out["result"].phase == "Aborted"
    st = svc.status()
    assert not st.canaries and st.stable is not None and st.stable.storage_uri == M1


def test_a_bad_standard_canary_is_rolled_back_by_itself(svc: Service, iris: tuple[Any, Any]) -> None:
    rows, _ = iris
    load = svc.generate_load(rows, rate=80, concurrency=8, duration=90, progress=False)
    try:
        result = svc.rollout(ERRORS, steps="20,50,100", interval="60s", gates=["error_rate<=prev+0.01"], display=False)
    finally:
        load.stop()
    assert result.phase == "RolledBack", result.summary()
    assert result.state.step == 0 and "error_rate" in result.reason
    fail = [e for e in result.evidence if e.decision == "fail"]
    assert fail and fail[0].n_candidate > 0
    st = svc.status()
    assert not st.canaries and st.stable is not None and st.stable.storage_uri == M1
    bad = f"{svc.name}-v2-predictor"
    results = load.results
    failed = results[~ok_mask(results)]
    assert not failed.empty  # the bad side did fail some requests…
    outside = failed[failed["revision"].map(lambda r: deployment_of(str(r))) != bad]
    assert outside.empty, outside.head().to_dict("records")  # …and nothing else did
    assert svc.rollout_state().phase == "RolledBack"


def test_an_error_gate_on_metrics_without_status_codes_is_refused(svc: Service) -> None:
    source = svc.session.metrics().with_queries(KNATIVE)
    source.standard_queries = KSERVE_STANDARD
    with pytest.raises(errors.ValidationError, match="needs status codes"):
        svc.rollout(M2, gates=["error_rate<=1%"], metrics=source, dry_run=True)
    assert not svc.status().canaries  # nothing applied


def test_a_bad_standard_canary_is_rolled_back_on_the_test_traffic_alone(svc: Service, iris: tuple[Any, Any]) -> None:
    rows, labels = iris
    result = svc.rollout(
        ERRORS, steps="20,100", interval="60s", gates=["error_rate<=prev+0.01"], load=rows, y=labels, rate=80,
        metrics="client", display=False,
    )
    assert result.phase == "RolledBack" and result.state.step == 0, result.summary()
    assert result.state.source == "client" and set(result.samples or {}) >= {"stable", "v2"}
    assert result.samples is not None and result.samples["v2"].errors > 0 and result.samples["stable"].errors == 0
    assert not svc.status().canaries


def test_the_rollout_magic_previews_a_standard_rollout_per_side(svc: Service, local_cluster: Any) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.testing.tools import default_config

    from kserve_nb.rollout.api import RolloutPreview

    shell = InteractiveShell.instance(config=default_config())
    shell.run_line_magic("load_ext", "kserve_nb")
    try:
        assert shell.run_cell(f"%kserve connect local --state-dir {local_cluster.state_dir} -n {NS}").success
        result = shell.run_cell(f"%kserve rollout {svc.name} --storage-uri {M2} --steps 20,100 --dry-run")
        assert result.success, result.error_in_exec
        preview = result.result
        assert isinstance(preview, RolloutPreview)
        assert preview.first_step.patch["spec"]["canary"][0]["predictor"]["name"] == "v2"
        assert f"v2 = Deployment {svc.name}-v2-predictor" in preview.source
        assert "label_replace" in preview.queries["requests"]
    finally:
        shell.run_line_magic("unload_ext", "kserve_nb")
    assert not svc.status().canaries  # a dry run applies nothing
