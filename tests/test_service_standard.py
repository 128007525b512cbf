"""The façade's release verbs on a Standard-mode (RawDeployment) service, against the real local cluster.

The same calls as in Knative mode — ``canary``, ``set_traffic``, ``promote``, ``rollback``, ``send``,
``compare`` — drive ``spec.canary[]``. The cluster's own objects (the isvc and the HTTPRoute, read
with the real kubectl) must follow each applied step; predictions are real HTTP through the local
ingress, and ``x-kserve-revision`` names the Deployment (``{deployment}-{pod-template-hash}``) that
answered.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kserve_nb import errors
from kserve_nb.history import DONE
from kserve_nb.plan import Plan
from kserve_nb.service import Release, Service
from kserve_nb.session import Session

NS = "std-service"
M1 = "gs://kfserving-examples/models/sklearn/1.0/model"
M2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
ROWS = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6], [5.1, 3.5, 1.4, 0.2], [7.7, 3.0, 6.1, 2.3]]
MODE = {"serving.kserve.io/deploymentMode": "Standard", "serving.kserve.io/autoscalerClass": "none"}


def manifest(name: str, uri: str = M1) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": NS, "annotations": dict(MODE)},
        "spec": {"predictor": {"minReplicas": 2, "model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri}}},
    }


@pytest.fixture()
def svc(session: Session, request: pytest.FixtureRequest) -> Iterator[Service]:
    """A Standard-mode service unique to the test (created, not waited for), deleted afterwards."""
    name = "sd-" + request.node.name.removeprefix("test_").replace("_", "-")[:24].rstrip("-")
    session.apply(manifest(name), namespace=NS)
    service = session.service(name, NS)
    yield service
    try:
        service.delete()
    except errors.NotFound:
        pass


def route_weights(kubectl: Any, name: str) -> dict[str, int]:
    """Service → weight of the predictor HTTPRoute's first rule, as kubectl prints it."""
    route = json.loads(kubectl.run("get", "httproute", f"{name}-predictor", "-n", NS, "-o", "json").stdout)
    return {ref["name"]: ref["weight"] for ref in route["spec"]["rules"][0]["backendRefs"]}


def deployment(revision: str | None) -> str:
    """The Deployment of an ``x-kserve-revision`` value ``{deployment}-{pod-template-hash}``."""
    assert revision, "the local ingress names the serving process in x-kserve-revision"
    return revision.rsplit("-", 1)[0]


def test_canary_dry_run_applies_nothing(svc: Service, kubectl: Any) -> None:
    plan = svc.canary(M2, 20, dry_run=True)
    assert isinstance(plan, Plan) and plan.standard
    assert plan.new_deployments == (f"{svc.name}-v2-predictor",)
    assert plan.after.split() == {f"{svc.name}-predictor": 80, f"{svc.name}-v2-predictor": 20}
    assert plan.patch["spec"]["canary"][0]["predictor"]["name"] == "v2"
    assert "canary" not in kubectl.isvc(svc.name, NS)["spec"]
    assert svc.history().empty or "canary" not in set(svc.history()["action"])


def test_canary_traffic_compare_promote(svc: Service, kubectl: Any) -> None:
    release = svc.canary(M2, 20)
    assert isinstance(release, Release) and release.canary == "v2"
    stable, canary = f"{svc.name}-predictor", f"{svc.name}-v2-predictor"
    st = release.status
    assert st.standard and st.split() == {stable: 80, canary: 20}
    assert [(s.name, s.ready, s.percent, s.routed) for s in st.sides] == [
        ("stable", True, 80, 80), ("v2", True, 20, 20),
    ]
    assert route_weights(kubectl, svc.name) == {stable: 80, canary: 20}
    spec = kubectl.isvc(svc.name, NS)["spec"]
    assert spec["canary"][0]["trafficPercent"] == 20 and "canaryTrafficPercent" not in spec["predictor"]

    # each side on its own host; latest/prev are the newest canary and the stable
    for to, want in (("v2", canary), ("latest", canary), ("stable", stable), ("prev", stable)):
        answer = svc.predict({"instances": ROWS[:1]}, to=to)
        assert answer.target == to and deployment(answer.revision) == want
    results = svc.send(ROWS, to=("v2", "stable"), repeat=2)
    assert len(results) == 16 and results["error"].isna().all()
    for target, want in (("v2", canary), ("stable", stable)):
        assert {deployment(r) for r in results[results["target"] == target]["revision"]} == {want}

    cmp = svc.compare(ROWS)
    assert (cmp.baseline, cmp.candidate) == ("stable", "v2")
    assert cmp.agreement.n_pairs == len(ROWS)

    moved = svc.set_traffic(50)
    assert isinstance(moved, Release) and moved.status.split() == {stable: 50, canary: 50}
    assert route_weights(kubectl, svc.name) == {stable: 50, canary: 50}
    sampled = svc.send(ROWS * 25, to="default", warmup=0)
    by_side = Counter(deployment(r) for r in sampled["revision"])
    assert set(by_side) == {stable, canary} and min(by_side.values()) > 15  # 100 requests at 50/50

    promoted = svc.promote()
    assert isinstance(promoted, Release)
    assert promoted.status.stable is not None and promoted.status.stable.deployment == canary
    assert promoted.status.split() == {canary: 100} and promoted.status.canaries == ()
    live = kubectl.isvc(svc.name, NS)
    assert live["spec"]["predictor"]["name"] == "v2" and "canary" not in live["spec"]
    assert live["spec"]["predictor"]["model"]["storageUri"] == M2
    assert list(route_weights(kubectl, svc.name)) == [canary]
    assert deployment(svc.predict({"instances": ROWS[:1]}, to="stable").revision) == canary

    history = svc.history()
    steps = history[history["action"].isin(["canary", "traffic", "promote"])]
    assert list(steps["action"]) == ["canary", "traffic", "promote"]
    assert set(steps["outcome"]) == {DONE}
    assert "promote" in kubectl.run("get", "configmap", f"{svc.name}-kserve-nb-history", "-n", NS, "-o",
                                    "json").stdout


def test_rollback_removes_the_canary(svc: Service, kubectl: Any) -> None:
    svc.canary(M2, 30, name="candidate")
    plan = svc.rollback(dry_run=True)
    assert isinstance(plan, Plan) and plan.removed_deployments == (f"{svc.name}-candidate-predictor",)
    release = svc.rollback()
    assert isinstance(release, Release)
    assert release.status.split() == {f"{svc.name}-predictor": 100} and release.status.canaries == ()
    assert "canary" not in kubectl.isvc(svc.name, NS)["spec"]
    assert list(route_weights(kubectl, svc.name)) == [f"{svc.name}-predictor"]
    with pytest.raises(errors.ValidationError, match="nothing to roll back"):
        svc.rollback()
    with pytest.raises(errors.PredictionError, match="no canary"):
        svc.predict({"instances": ROWS[:1]}, to="latest")


def test_refusals_are_one_clear_line(svc: Service) -> None:
    with pytest.raises(errors.ValidationError, match="nothing to promote"):
        svc.promote()
    with pytest.raises(errors.ValidationError, match="no canary"):
        svc.set_traffic(10)
    with pytest.raises(errors.ValidationError, match="only in Knative mode"):
        svc.canary(M2, 10, tag_routing=True)
    with pytest.raises(errors.ValidationError, match="Standard mode: roll a model out as a canary"):
        svc.deploy(M2)
    with pytest.raises(errors.ValidationError, match="canary name 'latest' is a prediction target's name"):
        svc.canary(M2, 10, name="latest")
    svc.canary(M2, 60)
    with pytest.raises(errors.ValidationError, match="at most 100%"):
        svc.canary(M2, 50)  # a second canary (v3) would make 110%
    with pytest.raises(errors.ValidationError, match="no canary named 'v9'"):
        svc.set_traffic(10, canary="v9")
    with pytest.raises(errors.ValidationError, match="unknown target 'v9'"):
        svc.predict({"instances": ROWS[:1]}, to="v9")


def test_a_canary_at_zero_keeps_a_ready_pod(svc: Service, kubectl: Any) -> None:
    svc.canary(M2, 10)
    release = svc.set_traffic(0)
    assert isinstance(release, Release)
    v2 = release.status.side("v2")
    assert v2 is not None and v2.ready and v2.routed == 0
    assert kubectl.isvc(svc.name, NS)["spec"]["canary"][0]["predictor"]["minReplicas"] == 1
    answer = svc.predict({"instances": ROWS[:1]}, to="v2")  # still answers on its own host
    assert deployment(answer.revision) == f"{svc.name}-v2-predictor"


def test_a_canary_whose_model_cannot_load_fails_the_wait_fast(
    svc: Service, kubectl: Any, tmp_path: Any
) -> None:
    bad = tmp_path / "bad-model"
    bad.mkdir()
    (bad / "model.joblib").write_bytes(b"not a pickle")
    with pytest.raises(errors.RolloutError, match=r"canary v2 \(Deployment .*-v2-predictor.*\) cannot become ready"):
        svc.canary(f"file://{bad}", 20, timeout=60)
    st = svc.status()
    v2 = st.side("v2")
    assert v2 is not None and not v2.ready and v2.routed is None
    assert st.ready and st.split() == {f"{svc.name}-predictor": 100}  # the stable keeps everything
    history = svc.history()
    assert history.iloc[-1]["action"] == "canary" and history.iloc[-1]["outcome"] == "failed"
    with pytest.raises(errors.RolloutError, match="refusing to promote: canary v2"):
        svc.promote()
    release = svc.rollback()
    assert isinstance(release, Release) and release.status.canaries == ()


def test_runbook_helpers_read_the_same_in_standard_mode(svc: Service) -> None:
    from kserve_nb import runbook

    svc.canary(M2, 10, dry_run=True)  # waits for the stable to serve
    assert runbook.preflight(svc, M1, M2) == []
    before = svc.status()
    snapshot = runbook.status_snapshot(before)
    assert snapshot is not None and snapshot["sides"][0]["deployment"] == f"{svc.name}-predictor"
    svc.canary(M2, 10)
    assert runbook.preflight(svc, M1, M2)[0].startswith("a canary is already in flight")
    decision = runbook.Decision(runbook.ROLLBACK, ("test",), "verdict")
    runbook.carry_out(svc, decision, before=before, baseline_uri=M1)
    outcome = runbook.check_outcome(svc, decision, baseline_uri=M1, candidate_uri=M2)
    assert outcome["consistent"] and outcome["serving"] == [
        {"revision": f"{svc.name}-predictor", "storageUri": M1, "percent": 100}
    ]
    svc.canary(M2, 10)
    promote = runbook.Decision(runbook.PROMOTE, ("test",), "verdict")
    runbook.carry_out(svc, promote, before=before, baseline_uri=M1)
    assert runbook.check_outcome(svc, promote, baseline_uri=M1, candidate_uri=M2)["consistent"]
    # The autopilot runs in Standard mode too (tests/test_rollout_standard.py); the stable's own model is no release.
    with pytest.raises(errors.ValidationError, match="already serves"):
        svc.rollout(M2)


def test_without_a_route_each_side_is_reached_through_the_api_servers_service_proxy(
    svc: Service, local_cluster: Any
) -> None:
    from kserve_nb import standard
    from kserve_nb.cluster import Cluster

    svc.canary(M2, 20)
    # A session as on a real cluster (no local half): KServe routes no per-side host and no route
    # of ours lists one, so stable and v2 are called through the API server's service proxy.
    remote = Session(Cluster.from_kubeconfig(local_cluster.kubeconfig), ingress=local_cluster.ingress)
    try:
        far = remote.service(svc.name, NS)
        sides = {"stable": f"{svc.name}-predictor", "v2": f"{svc.name}-v2-predictor"}
        for side, name in sides.items():
            target = far.target(side)
            assert target.host == f"{name}.{NS}.svc.cluster.local" and target.host in far._proxied
        assert far.target("default").host not in far._proxied
        answer = far.predict({"instances": ROWS[:1]}, to="v2")
        # No x-kserve-revision: the proxy reached the pod itself, so the row names the side's Deployment.
        assert answer.status_code == 200 and answer.revision == sides["v2"]
        results = far.send(ROWS, to=("stable", "v2", "default"), warmup=1)
        assert results["error"].isna().all() and (results["status_code"] == 200).all()
        revisions = results.groupby("target")["revision"].agg(set).to_dict()
        assert revisions["stable"] == {sides["stable"]} and revisions["v2"] == {sides["v2"]}
        # default went to the ingress, which names the pod that answered ({deployment}-{hash}).
        assert {deployment(r) for r in revisions["default"]} <= set(sides.values())
        # The same models answer as through the local ingress.
        local = svc.send(ROWS, to=("stable", "v2"), warmup=0)
        key = ["target", "row"]
        proxied = results[results["target"] != "default"].sort_values(key)["prediction"].tolist()
        assert proxied == local.sort_values(key)["prediction"].tolist()
        comparison = far.compare(ROWS, warmup=1)
        assert (comparison.baseline, comparison.candidate) == ("stable", "v2")
        assert set(comparison.summary["revision"]) == set(sides.values())
        # Background load to one side takes the same path (through the ingress, with the side's
        # in-cluster Host, it would find no route), on a client of its own closed when the run ends.
        run = far.generate_load(ROWS, to="v2", rate=50, duration=5, max_requests=5, progress=False).wait(timeout=30)
        load = run.results
        assert len(load) == 5 and load["error"].isna().all() and set(load["revision"]) == {sides["v2"]}
        deadline = time.monotonic() + 5
        while not run._client.closed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert run._client.closed
    finally:
        remote.close()
    # The transport never shows the credential it sends.
    token = yaml.safe_load(local_cluster.kubeconfig.read_text())["users"][0]["user"]["token"]
    transport = standard.ServiceProxyTransport(remote.cluster.api_client.configuration)
    try:
        assert token not in repr(transport)
    finally:
        transport.close()


def test_a_canary_given_a_new_model_under_its_name_waits_for_the_rollout(svc: Service, kubectl: Any) -> None:
    svc.canary(M2, 20)
    release = svc.canary(M1, 20, name="v2")  # same name: its Deployment rolls to the new model
    assert isinstance(release, Release)
    dep = json.loads(kubectl.run("get", "deployment", f"{svc.name}-v2-predictor", "-n", NS, "-o", "json").stdout)
    template = dep["spec"]["template"]["metadata"]["annotations"]
    assert template["internal.serving.kserve.io/storage-initializer-sourceuri"] == M1
    assert dep["status"]["updatedReplicas"] == dep["status"]["replicas"]
    side = release.status.side("v2")
    assert side is not None and side.storage_uri == M1 and side.routed == 20
    # by the time the step returned, v2 answers with the new model's pods
    answer = svc.predict({"instances": ROWS[:1]}, to="v2")
    hash_now = answer.revision.rsplit("-", 1)[1] if answer.revision else ""
    pods = json.loads(kubectl.run("get", "pods", "-n", NS, "-l", f"app=isvc.{svc.name}-v2-predictor", "-o",
                                  "json").stdout)["items"]
    source = "internal.serving.kserve.io/storage-initializer-sourceuri"
    new_model = {
        p["metadata"]["labels"].get("pod-template-hash")
        for p in pods
        if (p["metadata"].get("annotations") or {}).get(source) == M1
    }
    assert new_model and hash_now in new_model
