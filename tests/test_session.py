"""The Session/Service façade against the real local cluster over real HTTP."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

import kserve_nb
from kserve_nb import errors
from kserve_nb.local import manager
from kserve_nb.manifests import isvc_manifest
from kserve_nb.release import Step, safe_to_retry
from kserve_nb.session import Session, connect

M1 = "gs://kfserving-examples/models/sklearn/1.0/model"
M2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
IRIS = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]
NS = "session-test"



def _fresh(session: Session, name: str, uri: str = M1) -> kserve_nb.Service:
    svc = session.service(name)
    if svc.exists():
        svc.delete()
    svc.deploy(uri)
    return svc


def test_connect_banner_names_cluster_context_and_namespace(session: Session) -> None:
    assert session.is_local
    assert "context kserve-nb-local" in session.banner and f"namespace {NS}" in session.banner
    assert "kserve-nb-local" in repr(session)
    assert "token" not in repr(session).lower()


@pytest.mark.parametrize("condition", ["True", "False", "Unknown", None])
def test_ready_is_true_only_when_the_ready_condition_is_true(condition: str | None) -> None:
    # `while not st.ready: sleep` must wait: the READY column's word stays in ready_status.
    conditions = [{"type": "Ready", "status": condition}] if condition else []
    st = kserve_nb.ServiceStatus.from_isvc({"metadata": {"name": "x"}, "status": {"conditions": conditions}})
    assert st.ready is (condition == "True") and st.ready_status == condition
    assert f"READY {condition or '?'}" in st.summary()


def test_walkthrough_in_plain_python(session: Session) -> None:
    svc = _fresh(session, "sklearn-iris")
    st = svc.status()
    assert st.ready and st.latest_percent == 100 and st.prev_percent is None
    assert st.latest_revision == "sklearn-iris-predictor-00001"
    assert list(st.table.columns) == [
        "NAME", "URL", "READY", "PREV", "LATEST", "PREVROLLEDOUTREVISION", "LATESTREADYREVISION", "AGE"]

    rel = svc.canary(M2, 10)
    assert rel.new_revision == "sklearn-iris-predictor-00002"
    st = rel.status
    assert (st.prev_percent, st.latest_percent, st.prev_revision, st.latest_revision) == (
        90, 10, "sklearn-iris-predictor-00001", "sklearn-iris-predictor-00002")
    pods = svc.pods()
    assert sorted(pods["REVISION"]) == ["sklearn-iris-predictor-00001", "sklearn-iris-predictor-00002"]
    assert set(pods["READY"]) == {"2/2"}

    st = svc.promote().status
    assert (st.prev_percent, st.latest_percent, st.latest_revision) == (None, 100, "sklearn-iris-predictor-00002")

    st = svc.rollback().status
    assert (st.prev_percent, st.latest_percent, st.prev_revision, st.latest_revision) == (
        100, 0, "sklearn-iris-predictor-00001", "sklearn-iris-predictor-00002")

    st = svc.canary(M2, 10, tag_routing=True).status
    assert st.latest_revision == "sklearn-iris-predictor-00003"
    assert st.tag_url("latest") == "http://latest-sklearn-iris-predictor.session-test.example.com"
    result = svc.predict({"instances": IRIS}, to="latest")
    assert result.predictions == [1, 1] and result.revision == "sklearn-iris-predictor-00003"

    history = svc.history()
    assert list(history["action"])[-5:] == ["create", "canary", "promote", "rollback", "canary"]
    revs = svc.revisions()
    assert list(revs["revision"]) == [f"sklearn-iris-predictor-0000{i}" for i in (1, 2, 3)]
    assert list(revs["storageUri"]) == [M1, M2, M2]


def test_dry_run_applies_nothing_and_predicts_the_split(session: Session) -> None:
    svc = _fresh(session, "dry-run")
    before = svc.get()["metadata"]["resourceVersion"]
    p = svc.canary(M2, 25, dry_run=True)
    assert p.new_revision == "dry-run-predictor-00002"
    assert [(e.revision, e.percent) for e in p.after.traffic] == [
        ("dry-run-predictor-00002", 25), ("dry-run-predictor-00001", 75)]
    assert svc.get()["metadata"]["resourceVersion"] == before
    assert "canaryTrafficPercent" in json.dumps(p.patch)


def test_failed_canary_raises_with_revision_message_and_old_revision_keeps_serving(session: Session) -> None:
    svc = _fresh(session, "broken")
    # Bypass the client pre-flight (it would refuse the missing model) to see the cluster's verdict.
    manifest = isvc_manifest("broken", NS, "gs://kfserving-examples/models/sklearn/1.0/missing", canary_percent=10)
    session.apply(manifest)
    with pytest.raises(errors.RolloutError) as info:
        svc._wait("canary", lambda st, new: False, "broken-predictor-00002", 20)
    assert "broken-predictor-00002 failed" in str(info.value)
    st = svc.status()
    assert st.ready is False and st.ready_status == "False" and st.split() == {"broken-predictor-00001": 100}


def test_wait_deadline_raises_rollout_error_naming_the_state(session: Session) -> None:
    svc = _fresh(session, "slow")
    with pytest.raises(errors.RolloutError) as info:
        svc._wait("canary", lambda st, new: False, None, 0.3)
    assert "did not settle within" in str(info.value) and "slow" in str(info.value)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: s.service("x").canary(M2, 150), "from 0 to 100"),
        (lambda s: s.service("x").canary(M2, "ten"), "whole number"),
        (lambda s: s.service("x").canary("ftp://x/y", 10), "no supported scheme"),
        (lambda s: s.service("x").canary("gs://nowhere/at/all", 10), "nothing was applied"),
        (lambda s: s.apply("kind: [unclosed"), "malformed YAML at line 1"),
        (lambda s: s.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}), "not handled here"),
        (lambda s: s.apply({"apiVersion": "serving.kserve.io/v1alpha1", "kind": "InferenceService",
                            "metadata": {"name": "p"}}), "apiVersion must be"),
        (lambda s: s.apply(isvc_manifest("p", NS, M1, canary_percent=150)), "from 0 to 100"),
        (lambda s: s.service("does-not-exist").status(), "not found"),
        (lambda s: s.service("does-not-exist").promote(), "not found"),
        (lambda s: (s.apply(isvc_manifest("a" * 50, NS, M1)), s.service("a" * 50).canary(M2, 10, tag_routing=True)),
         "fit in 63 characters"),
    ],
)
def test_bad_input_gets_one_clear_line_and_nothing_changes(session: Session, call, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(errors.KServeNbError) as info:
        call(session)
    text = str(info.value)
    assert message in text and "\n" not in text
    assert len(info.value._render_traceback_()) == 1


def test_conflicting_concurrent_change_is_refused_not_lost(session: Session) -> None:
    svc = _fresh(session, "conflict")
    svc.canary(M2, 10)
    stale = svc.get()
    # Someone else moves the canary to 30 after we read.
    session.cluster.patch_isvc("conflict", NS, {"spec": {"predictor": {"canaryTrafficPercent": 30}}})
    guarded = {"metadata": {"resourceVersion": stale["metadata"]["resourceVersion"]},
               "spec": {"predictor": {"canaryTrafficPercent": 50}}}
    with pytest.raises(errors.Conflict) as info:
        session.cluster.patch_isvc("conflict", NS, guarded)
    assert "modified" in str(info.value)
    assert svc.get()["spec"]["predictor"]["canaryTrafficPercent"] == 30
    assert safe_to_retry(stale, svc.get(), _step_touching_percent()) is False


def _step_touching_percent():  # type: ignore[no-untyped-def]
    return Step("traffic", lambda i: {}, lambda s, n: True, ("spec.predictor.canaryTrafficPercent",))


def test_send_and_compare_give_per_revision_rows(session: Session) -> None:
    svc = _fresh(session, "sender")
    svc.canary(M2, 50, tag_routing=True)
    frame = svc.send(IRIS * 10, to=("latest", "prev"))
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == 40
    assert set(frame["revision"]) == {"sender-predictor-00002", "sender-predictor-00001"}
    assert frame["error"].isna().all() or (frame["error"] == "").all()
    comparison = svc.compare(IRIS * 5)
    assert not comparison.summary.empty


def test_apply_is_kubectl_like_create_configure_unchanged(session: Session) -> None:
    text = yaml.safe_dump(isvc_manifest("applied", NS, M1))
    svc = session.service("applied")
    if svc.exists():
        svc.delete()
    assert [r.action for r in session.apply(text)] == ["created"]
    assert [r.action for r in session.apply(text)] == ["unchanged"]
    changed = text.replace("model\n", "model-2\n")
    assert str(session.apply(changed)) == "inferenceservice.serving.kserve.io/applied configured"


def test_two_local_clusters_side_by_side_via_contexts(
    local_cluster: manager.LocalCluster, tmp_path: Path
) -> None:
    other = manager.up(tmp_path / "second")
    try:
        merged = tmp_path / "kubeconfig"
        a = yaml.safe_load(Path(local_cluster.kubeconfig).read_text())
        b = yaml.safe_load(Path(other.kubeconfig).read_text())
        for doc, suffix in ((a, "a"), (b, "b")):
            for key in ("clusters", "users", "contexts"):
                for item in doc[key]:
                    item["name"] = f"{item['name']}-{suffix}"
                    if key == "contexts":
                        item["context"]["cluster"] += f"-{suffix}"
                        item["context"]["user"] += f"-{suffix}"
        merged.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "kserve-nb-local-a",
            "clusters": a["clusters"] + b["clusters"], "users": a["users"] + b["users"],
            "contexts": a["contexts"] + b["contexts"]}))
        merged.chmod(0o600)
        sa = connect(kubeconfig=merged, context="kserve-nb-local-a", namespace="default")
        sb = connect(kubeconfig=merged, context="kserve-nb-local-b", namespace="default")
        sb.service("only-in-b").deploy(M1, wait=False)
        assert "only-in-b" in list(sb.services()["NAME"])
        assert "only-in-b" not in list(sa.services()["NAME"])
        assert sa.cluster.ref.server != sb.cluster.ref.server
        with pytest.raises(errors.ConfigError):
            connect(kubeconfig=merged, context="nope")
        sa.close()
        sb.close()
    finally:
        manager.down(tmp_path / "second")


def test_kernel_loop_is_not_blocked_by_send(session: Session) -> None:
    import asyncio

    svc = _fresh(session, "looped")
    svc.canary(M2, 50, tag_routing=True)

    async def inside_running_loop() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        frame = svc.send(IRIS * 20, to=("latest", "prev"))
        task.cancel()
        return len(frame)

    assert asyncio.run(inside_running_loop()) == 80
    assert threading.active_count() < 50


def test_rollback_pins_traffic_away_from_a_failed_canary(session: Session) -> None:
    svc = _fresh(session, "failed-then-back")
    # Bypass the client pre-flight to let the cluster fail the revision itself.
    session.apply(
        isvc_manifest("failed-then-back", NS, "gs://kfserving-examples/models/sklearn/1.0/none", canary_percent=20)
    )
    deadline = time.monotonic() + 20
    while svc.status().failure is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "failed" in (svc.status().failure or "")
    st = svc.rollback().status
    assert (st.prev_percent, st.latest_percent) == (100, 0)
    assert st.split() == {"failed-then-back-predictor-00001": 100}


def test_a_canary_right_after_an_apply_waits_for_the_first_revision(session: Session) -> None:
    # %%kserve apply does not wait; a canary (even a dry run) must not plan a split with nothing.
    svc = session.service("first-rev")
    if svc.exists():
        svc.delete()
    session.apply(isvc_manifest("first-rev", NS, M1))
    plan = svc.canary(M2, 10, dry_run=True)
    assert plan.after.prev_revision == "first-rev-predictor-00001"
    assert (plan.after.prev_percent, plan.after.latest_percent) == (90, 10)
    assert svc.status().canary_traffic_percent is None  # still a dry run


def test_a_runtime_kserve_does_not_know_fails_the_wait_at_once(session: Session) -> None:
    # KServe says so only in modelStatus (RuntimeNotRecognized); Ready stays Unknown.
    svc = session.service("no-runtime")
    if svc.exists():
        svc.delete()
    manifest = isvc_manifest("no-runtime", NS, M1)
    manifest["spec"]["predictor"]["model"]["runtime"] = "kserve-nosuchserver"
    session.apply(manifest)
    started = time.monotonic()
    with pytest.raises(errors.RolloutError, match="RuntimeNotRecognized"):
        svc.canary(M2, 10, timeout=120)
    assert time.monotonic() - started < 60
