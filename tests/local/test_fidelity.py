"""Fidelity to KServe 0.21 (+ Knative) where KServe's own e2e tests and controller cases looked.

Each behaviour is checked on the session's real local cluster with the official ``kubernetes``
client (typed reads, as KServe's e2e tests and SDK make them), KServe's SDK models and the real
kubectl: typed reads of every kind served, the ``serving.kserve.io/stop`` annotation, a pinned
(0%) revision kept at min-scale, the ServingRuntime lookup, the Knative Service, and the events
KServe's controller records. The pure rules behind them are tested at the end, without a cluster.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from kserve_nb.local import manager
from kserve_nb.semantics import validate_traffic
from kserve_nb.servingruntimes import RuntimeChoice, RuntimeFailure, select_runtime
from tests import waiting

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
KNATIVE = "serving.knative.dev"
M1 = "gs://kfserving-examples/models/sklearn/1.0/model"
M2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
IRIS = {"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}


# ------------------------------------------------------------------------------ helpers


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 90.0) -> Any:
    return waiting.wait_for(what, probe, timeout)


class Cluster:
    """The official clients on one namespace of the session cluster."""

    def __init__(self, local: manager.LocalCluster, namespace: str) -> None:
        self.local = local
        self.ns = namespace
        self.api = k8s_config.new_client_from_config(config_file=str(local.kubeconfig), persist_config=False)
        self.core = k8s.CoreV1Api(self.api)
        self.custom = k8s.CustomObjectsApi(self.api)

    def create_isvc(self, name: str, predictor: dict[str, Any], annotations: dict[str, str] | None = None) -> None:
        meta: dict[str, Any] = {"name": name, "namespace": self.ns}
        if annotations:
            meta["annotations"] = annotations
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService", "metadata": meta,
                "spec": {"predictor": predictor}}
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)

    def patch_isvc(self, name: str, patch: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name, patch)

    def isvc(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)  # type: ignore[no-any-return]

    def condition(self, name: str, ctype: str) -> dict[str, Any]:
        for cond in (self.isvc(name).get("status") or {}).get("conditions") or []:
            if cond["type"] == ctype:
                return cond  # type: ignore[no-any-return]
        return {}

    def ready(self, name: str) -> bool:
        return self.condition(name, "Ready").get("status") == "True"

    def revisions(self, name: str) -> list[dict[str, Any]]:
        out = self.custom.list_namespaced_custom_object(
            KNATIVE, "v1", self.ns, "revisions", label_selector=f"serving.kserve.io/inferenceservice={name}")
        return out["items"]  # type: ignore[no-any-return]

    def ready_pods(self, name: str) -> set[str]:
        """Revisions whose pod is listed Running and Ready (a typed read)."""
        pods = self.core.list_namespaced_pod(self.ns, label_selector=f"serving.kserve.io/inferenceservice={name}")
        return {
            p.metadata.labels["serving.knative.dev/revision"]
            for p in pods.items
            if p.status.phase == "Running"
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        }

    def events(self, name: str) -> list[k8s.CoreV1Event]:
        selector = f"involvedObject.name={name},involvedObject.kind=InferenceService"
        return list(self.core.list_namespaced_event(self.ns, field_selector=selector).items)

    def predict(self, host: str, model: str) -> httpx.Response:
        return httpx.post(f"{self.local.ingress}/v1/models/{model}:predict", json=IRIS,
                          headers={"Host": host}, timeout=30)

    def host(self, name: str, prefix: str = "") -> str:
        return f"{prefix}{name}.{self.ns}.{self.local.domain}"


@pytest.fixture
def cluster(local_cluster: manager.LocalCluster) -> Iterator[Cluster]:
    """A fresh namespace on the session cluster, deleted (with its isvcs and processes) afterwards."""
    ns = "fid-" + uuid.uuid4().hex[:8]
    c = Cluster(local_cluster, ns)
    c.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
    try:
        yield c
    finally:
        c.core.delete_namespace(ns)
        c.api.close()


def sklearn(uri: str, **extra: Any) -> dict[str, Any]:
    return {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri}, **extra}


def revision(name: str, n: int) -> str:
    return f"{name}-predictor-{n:05d}"


# -------------------------------------------------------------------------- typed reads


def test_typed_reads_of_every_kind_the_api_serves(cluster: Cluster, kubectl: Any) -> None:
    import kserve

    cluster.create_isvc("typed", sklearn(M1))
    wait_for("typed Ready", lambda: cluster.ready("typed"))
    wait_for("its pod Ready", lambda: cluster.ready_pods("typed") == {revision("typed", 1)})

    # Pods, typed, namespaced and cluster-wide (these raised "Invalid value for `image_id`" before).
    pods = cluster.core.list_namespaced_pod(cluster.ns).items
    assert len(pods) == 1
    pod = cluster.core.read_namespaced_pod(pods[0].metadata.name, cluster.ns)
    assert [c.name for c in pod.status.container_statuses] == ["kserve-container", "queue-proxy"]
    assert all(c.image and c.image_id is not None for c in pod.status.container_statuses)
    init = pod.status.init_container_statuses[0]
    assert (init.name, init.image, init.image_id) == ("storage-initializer", "kserve/storage-initializer", "")
    assert any(p.metadata.namespace == cluster.ns for p in cluster.core.list_pod_for_all_namespaces().items)

    # Namespaces and configmaps.
    assert cluster.core.read_namespace(cluster.ns).status.phase == "Active"
    assert cluster.ns in {n.metadata.name for n in cluster.core.list_namespace().items}
    cluster.core.create_namespaced_config_map(
        cluster.ns, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="cm"), data={"k": "v"}))
    assert cluster.core.read_namespaced_config_map("cm", cluster.ns).data == {"k": "v"}
    assert [c.metadata.name for c in cluster.core.list_namespaced_config_map(cluster.ns).items] == ["cm"]

    # Events: the controller recorded the Ready transition.
    events = wait_for("the InferenceServiceReady event", lambda: [
        e for e in cluster.events("typed") if e.reason == "InferenceServiceReady"])
    event = cluster.core.read_namespaced_event(events[0].metadata.name, cluster.ns)
    assert (event.type, event.message, event.source.component) == (
        "Normal", "InferenceService [typed] is Ready", "v1beta1Controllers")
    assert (event.involved_object.kind, event.involved_object.name) == ("InferenceService", "typed")
    assert event.count == 1 and event.first_timestamp is not None
    assert any(e.metadata.namespace == cluster.ns for e in cluster.core.list_event_for_all_namespaces().items)

    # Knative revisions and services, through CustomObjectsApi as KServe's e2e tests read them.
    revs = cluster.revisions("typed")
    assert [r["metadata"]["name"] for r in revs] == [revision("typed", 1)]
    ksvc = cluster.custom.get_namespaced_custom_object(KNATIVE, "v1", cluster.ns, "services", "typed-predictor")
    assert ksvc["status"]["latestReadyRevisionName"] == revision("typed", 1)
    listed = cluster.custom.list_namespaced_custom_object(KNATIVE, "v1", cluster.ns, "services")
    assert [k["metadata"]["name"] for k in listed["items"]] == ["typed-predictor"]

    # The InferenceService, typed: its spec and modelStatus with KServe's SDK models, its metadata
    # with the kubernetes client's (the SDK's ApiClient resolves neither V1ObjectMeta nor the
    # Knative types its status models name, on any cluster).
    raw = cluster.isvc("typed")

    def typed(api: Any, part: Any, model: str) -> Any:
        class Response:
            data = json.dumps(part)
        return api.deserialize(Response(), model)

    spec = typed(kserve.ApiClient(), raw["spec"], "V1beta1InferenceServiceSpec")
    model_status = typed(kserve.ApiClient(), raw["status"]["modelStatus"], "V1beta1ModelStatus")
    meta = typed(cluster.api, raw["metadata"], "V1ObjectMeta")
    assert spec.predictor.model.storage_uri == M1 and meta.name == "typed"
    assert model_status.transition_status == "UpToDate"
    assert raw["status"]["clusterServingRuntimeName"] == "kserve-sklearnserver"
    assert kubectl.run("get", "pods", "-n", cluster.ns, "-o", "json").returncode == 0


# ------------------------------------------------------------------------ stop annotation


def test_stop_annotation_stops_the_service_and_removing_it_restarts(cluster: Cluster, kubectl: Any) -> None:
    cluster.create_isvc("stopper", sklearn(M1))
    wait_for("Ready", lambda: cluster.ready("stopper"))
    wait_for("pod", lambda: cluster.ready_pods("stopper") == {revision("stopper", 1)})
    assert cluster.predict(cluster.host("stopper"), "stopper").status_code == 200

    cluster.patch_isvc("stopper", {"metadata": {"annotations": {"serving.kserve.io/stop": "true"}}})
    wait_for("Stopped=True", lambda: cluster.condition("stopper", "Stopped").get("status") == "True")
    status = cluster.isvc("stopper")["status"]
    conditions = {c["type"]: (c["status"], c.get("reason")) for c in status["conditions"]}
    assert conditions == {"IngressReady": ("False", "Stopped"), "PredictorReady": ("False", "Stopped"),
                          "Ready": ("False", "Stopped"), "Stopped": ("True", None)}
    assert "components" not in status and "url" not in status  # KServe clears the status
    # The ksvc is deleted, its revisions and pods with it: nothing serves, no new revision.
    wait_for("no pods", lambda: not cluster.core.list_namespaced_pod(cluster.ns).items)
    assert cluster.revisions("stopper") == []
    with pytest.raises(ApiException) as missing:
        cluster.custom.get_namespaced_custom_object(KNATIVE, "v1", cluster.ns, "services", "stopper-predictor")
    assert missing.value.status == 404
    wait_for("the ingress to drop it", lambda: cluster.predict(cluster.host("stopper"), "stopper").status_code == 404)
    reason = kubectl.run("get", "isvc", "stopper", "-n", cluster.ns, "-o",
                         "jsonpath={.status.conditions[?(@.type=='Ready')].reason}").stdout
    assert reason == "Stopped"
    assert any(e.reason == "InferenceServiceNotReady"
               and e.message == "InferenceService [stopper] is no longer Ready because of: "
                                "IngressReady, PredictorReady, Ready"
               for e in cluster.events("stopper"))

    # Removing the annotation creates the ksvc again: its first revision, serving.
    cluster.patch_isvc("stopper", {"metadata": {"annotations": {"serving.kserve.io/stop": None}}})
    wait_for("Ready again", lambda: cluster.ready("stopper"))
    assert cluster.condition("stopper", "Stopped")["status"] == "False"
    assert [r["metadata"]["name"] for r in cluster.revisions("stopper")] == [revision("stopper", 1)]
    wait_for("pod again", lambda: cluster.ready_pods("stopper") == {revision("stopper", 1)})
    assert cluster.predict(cluster.host("stopper"), "stopper").json() == {"predictions": [1, 1]}


# ------------------------------------------------------------------------- pinned revision


def test_pinned_revision_keeps_its_pod_at_min_scale(cluster: Cluster) -> None:
    cluster.create_isvc("pinned", sklearn(M1))
    wait_for("Ready", lambda: cluster.ready("pinned"))
    # A dark launch: the new revision is routed at 0% (the route still references it).
    cluster.patch_isvc("pinned", {"spec": {"predictor": {"canaryTrafficPercent": 0, "model": {"storageUri": M2}}}})
    wait_for("revision 2 ready", lambda: cluster.isvc("pinned")["status"]["components"]["predictor"]
             .get("latestReadyRevision") == revision("pinned", 2))
    traffic = cluster.isvc("pinned")["status"]["components"]["predictor"]["traffic"]
    assert {(t["revisionName"], t["percent"]) for t in traffic} == {
        (revision("pinned", 2), 0),
        (revision("pinned", 1), 100),
    }
    # Knative keeps a routed revision at min-scale (1): both pods run and are Ready.
    wait_for("both pods Ready", lambda: cluster.ready_pods("pinned") == {revision("pinned", 1), revision("pinned", 2)})
    time.sleep(1.0)  # and stay so once the controller has settled
    assert cluster.ready_pods("pinned") == {revision("pinned", 1), revision("pinned", 2)}
    rev2 = next(r for r in cluster.revisions("pinned") if r["metadata"]["name"] == revision("pinned", 2))
    assert rev2["status"]["actualReplicas"] == 1


# --------------------------------------------------------------------- ServingRuntime lookup


def test_unknown_runtime_fails_the_model_status_and_creates_nothing(cluster: Cluster, kubectl: Any) -> None:
    predictor = {"model": {"modelFormat": {"name": "sklearn"}, "runtime": "kserve-nope", "storageUri": M1}}
    cluster.create_isvc("nort", predictor)
    status = wait_for("modelStatus InvalidSpec", lambda: (
        (cluster.isvc("nort").get("status") or {}).get("modelStatus", {}).get("transitionStatus") == "InvalidSpec"
        and cluster.isvc("nort")["status"]))
    assert status["modelStatus"]["lastFailureInfo"] == {
        "reason": "RuntimeNotRecognized", "message": "Waiting for runtime to become available"}
    assert status["modelStatus"]["states"]["targetModelState"] == "FailedToLoad"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "IngressReady": "Unknown", "PredictorReady": "Unknown", "Ready": "Unknown"}
    assert "components" not in status
    assert cluster.revisions("nort") == [] and not cluster.core.list_namespaced_pod(cluster.ns).items
    warning = wait_for(
        "the InternalError event", lambda: [e for e in cluster.events("nort") if e.reason == "InternalError"]
    )
    assert (warning[0].type, warning[0].message) == (
        "Warning", "No ServingRuntimes or ClusterServingRuntimes with the name: kserve-nope")

    # A runtime KServe ships that does not serve the format.
    cluster.create_isvc("wrongrt", {"model": {"modelFormat": {"name": "sklearn"},
                                              "runtime": "kserve-tensorflow-serving", "storageUri": M1}})
    info = wait_for("NoSupportingRuntime", lambda: (
        (cluster.isvc("wrongrt").get("status") or {}).get("modelStatus", {}).get("lastFailureInfo")))
    assert info == {
        "reason": "NoSupportingRuntime",
        "message": "Specified runtime does not support specified framework/version",
    }

    # Naming the sklearn runtime works, and is what an unnamed sklearn model gets.
    cluster.create_isvc("namedrt", {"model": {"modelFormat": {"name": "sklearn"},
                                              "runtime": "kserve-sklearnserver", "storageUri": M1}})
    wait_for("named runtime Ready", lambda: cluster.ready("namedrt"))
    assert cluster.isvc("namedrt")["status"]["clusterServingRuntimeName"] == "kserve-sklearnserver"
    described = kubectl.run("describe", "isvc", "nort", "-n", cluster.ns).stdout
    assert "InternalError" in described and "No ServingRuntimes or ClusterServingRuntimes" in described


# --------------------------------------------------------------------------- Knative Service


def test_knative_service_is_served_with_the_autoscaling_annotations(cluster: Cluster, kubectl: Any) -> None:
    # What KServe's e2e test_sklearn_kserve_concurrency creates and reads back.
    cluster.create_isvc("scaled", sklearn(M1, minReplicas=1, maxReplicas=3, scaleMetric="concurrency", scaleTarget=2))
    wait_for("Ready", lambda: cluster.ready("scaled"))
    ksvc = cluster.custom.get_namespaced_custom_object(KNATIVE, "v1", cluster.ns, "services", "scaled-predictor")
    annotations = ksvc["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/metric"] == "concurrency"
    assert annotations["autoscaling.knative.dev/target"] == "2"
    assert annotations["autoscaling.knative.dev/min-scale"] == "1"
    assert annotations["autoscaling.knative.dev/max-scale"] == "3"
    assert annotations["autoscaling.knative.dev/class"] == "kpa.autoscaling.knative.dev"
    assert ksvc["spec"]["traffic"] == [{"latestRevision": True, "percent": 100}]
    assert ksvc["metadata"]["labels"]["serving.kserve.io/inferenceservice"] == "scaled"
    assert ksvc["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"
    assert ksvc["status"]["url"] == f"http://scaled-predictor.{cluster.ns}.{cluster.local.domain}"
    assert {c["type"]: c["status"] for c in ksvc["status"]["conditions"]} == {
        "ConfigurationsReady": "True", "Ready": "True", "RoutesReady": "True"}
    rev = cluster.revisions("scaled")[0]
    assert rev["metadata"]["annotations"]["autoscaling.knative.dev/metric"] == "concurrency"
    assert rev["metadata"]["annotations"]["autoscaling.knative.dev/target"] == "2"

    out = kubectl.run("get", "ksvc", "-n", cluster.ns).stdout.splitlines()
    assert out[0].split() == ["NAME", "URL", "LATESTCREATED", "LATESTREADY", "READY", "REASON"]
    assert out[1].split() == ["scaled-predictor", f"http://scaled-predictor.{cluster.ns}.{cluster.local.domain}",
                              revision("scaled", 1), revision("scaled", 1), "True"]
    # Read-only, as the revisions are: KServe owns it.
    refused = kubectl.run("delete", "ksvc", "scaled-predictor", "-n", cluster.ns, check=False)
    assert refused.returncode != 0 and "does not allow this method" in refused.stderr


# ------------------------------------------------------------- out-of-range percent, events


def test_out_of_range_percent_fails_the_predictor_and_records_events(cluster: Cluster, kubectl: Any) -> None:
    cluster.create_isvc("wide", sklearn(M1))
    wait_for("Ready", lambda: cluster.ready("wide"))
    cluster.patch_isvc("wide", {"spec": {"predictor": {"canaryTrafficPercent": 120}}})
    cond = wait_for("PredictorReady False", lambda: (
        cluster.condition("wide", "PredictorReady").get("status") == "False"
        and cluster.condition("wide", "PredictorReady")))
    expected = (
        "fails to reconcile predictor: fails to reconcile knative service: admission webhook "
        '"validation.webhook.serving.knative.dev" denied the request: validation failed: '
        "Traffic targets sum to 120, want 100: spec.traffic\nexpected 0 <= 120 <= 100: spec.traffic[0].percent"
    )
    assert (cond["reason"], cond["message"]) == ("ReconcileFailed", expected)
    # The ksvc update was refused whole: the old revision keeps all the traffic and serves.
    traffic = cluster.isvc("wide")["status"]["components"]["predictor"]["traffic"]
    assert [(t["revisionName"], t["percent"]) for t in traffic] == [(revision("wide", 1), 100)]
    assert cluster.predict(cluster.host("wide"), "wide").status_code == 200

    events = wait_for(
        "the InternalError event", lambda: [e for e in cluster.events("wide") if e.reason == "InternalError"]
    )
    assert (events[0].type, events[0].message) == ("Warning", expected)
    reasons = {e.reason for e in cluster.events("wide")}
    assert {"InferenceServiceReady", "InferenceServiceNotReady", "InternalError"} <= reasons

    got = kubectl.run("get", "events", "-n", cluster.ns).stdout.splitlines()
    assert got[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert any(line.split()[1:4] == ["Warning", "InternalError", "inferenceservice/wide"] for line in got[1:])
    assert any(line.split()[1:4] == ["Normal", "InferenceServiceReady", "inferenceservice/wide"] for line in got[1:])
    described = kubectl.run("describe", "isvc", "wide", "-n", cluster.ns).stdout
    tail = described[described.index("Events:"):]
    assert "Type     Reason" in tail
    assert "Warning  InferenceServiceNotReady" in tail and "v1beta1Controllers" in tail
    assert "InferenceService [wide] is no longer Ready because of: PredictorReady, Ready" in tail

    # A valid percent recovers (and the controller says so).
    cluster.patch_isvc("wide", {"spec": {"predictor": {"canaryTrafficPercent": None}}})
    wait_for("Ready again", lambda: cluster.ready("wide"))
    wait_for("a second InferenceServiceReady", lambda: any(
        e.reason == "InferenceServiceReady" and e.count == 2 for e in cluster.events("wide")))


# ------------------------------------------------------------------------------ pure rules


def test_knative_traffic_validation_message_lists_every_error_sorted() -> None:
    prefix = ('fails to reconcile knative service: admission webhook "validation.webhook.serving.knative.dev" '
              "denied the request: validation failed: ")
    assert validate_traffic([{"latestRevision": True, "percent": 100}]) is None
    assert validate_traffic([{"percent": -20}, {"percent": 120}]) == prefix + (
        "expected 0 <= -20 <= 100: spec.traffic[0].percent\nexpected 0 <= 120 <= 100: spec.traffic[1].percent")
    assert validate_traffic([{"percent": 101}]) == prefix + (
        "Traffic targets sum to 101, want 100: spec.traffic\nexpected 0 <= 101 <= 100: spec.traffic[0].percent")


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"modelFormat": {"name": "sklearn"}}, RuntimeChoice("kserve-sklearnserver", "v1")),
        # v2: both sklearn runtimes serve it, and mlserver's priority (2) is higher.
        ({"modelFormat": {"name": "sklearn"}, "protocolVersion": "v2"}, RuntimeChoice("kserve-mlserver", "v2")),
        ({"modelFormat": {"name": "sklearn"}, "runtime": "kserve-mlserver"}, RuntimeChoice("kserve-mlserver", "v2")),
        ({"modelFormat": {"name": "sklearn", "version": "0"}}, RuntimeFailure(
            "NoSupportingRuntime", "No runtime found to support specified framework/version",
            "no runtime found to support predictor with model type: {sklearn 0}")),
        ({"modelFormat": {"name": "sklearn"}, "runtime": "kserve-mlserver", "protocolVersion": "v1"}, RuntimeFailure(
            "NoSupportingRuntime", "Specified runtime does not support specified protocol version",
            "specified runtime kserve-mlserver does not support specified protocol version")),
        ({"modelFormat": {"name": "sklearn"}, "runtime": "mine"}, RuntimeFailure(
            "RuntimeNotRecognized", "Waiting for runtime to become available",
            "No ServingRuntimes or ClusterServingRuntimes with the name: mine")),
        ({"modelFormat": {"name": "onnx"}, "protocolVersion": "v2"}, RuntimeChoice("kserve-tritonserver", "v2")),
        ({"modelFormat": {"name": "foo"}}, RuntimeFailure(
            "NoSupportingRuntime", "No runtime found to support specified framework/version",
            "no runtime found to support predictor with model type: {foo <nil>}")),
    ],
)
def test_servingruntime_selection_follows_kserve(model: dict[str, Any], expected: object) -> None:
    assert select_runtime(model) == expected
