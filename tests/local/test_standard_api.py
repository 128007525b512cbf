"""Standard-mode objects on the local API server: Deployments, Services and HTTPRoutes.

The objects are built by :mod:`kserve_nb.local.standard_objects` from a real
``semantics_standard`` state (the KServe e2e test's isvc: stable v1 at 2 replicas, canary v2 at
20 %) and upserted straight into the store as the controller does (object, then its status), then
read back with the real kubectl and the official ``kubernetes`` client. The builders are also
checked on their own against what KServe and Kubernetes write.
"""

from __future__ import annotations

import queue
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kserve_nb import resources as r
from kserve_nb import semantics_standard as ss
from kserve_nb.local import standard_objects, tables, validation
from kserve_nb.local.store import DEPLOYMENTS, HTTPROUTES, INFERENCESERVICES, SERVICES, ResourceType

try:  # the helper sits beside this file; import it whether or not tests/ is a package
    from tests.local.conftest_api import CONTEXT, LocalApi
    from tests.local.test_kubectl_api import KUBECTL, _env, kubectl, lines, needs_kubectl
except ImportError:  # pragma: no cover - depends on how pytest put this directory on sys.path
    from conftest_api import CONTEXT, LocalApi  # type: ignore[no-redef]
    from test_kubectl_api import KUBECTL, _env, kubectl, lines, needs_kubectl  # type: ignore[no-redef]

NS = "kserve-std"
NAME = "my-model"
V1 = "gs://kfserving-examples/models/sklearn/1.0/model"
V2 = "gs://kfserving-examples/models/sklearn/1.3/mixedtype"
MODE = {r.DEPLOYMENT_MODE_ANNOTATION: "Standard", ss.AUTOSCALER_CLASS_ANNOTATION: "none"}
NOW = "2026-01-01T00:00:00Z"


def isvc_manifest() -> dict[str, Any]:
    """KServe's e2e canary isvc: stable v1 (2 replicas) and canary v2 at 20 %."""
    def predictor(uri: str) -> dict[str, Any]:
        return {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri}}

    return {
        "apiVersion": r.API_VERSION, "kind": r.KIND,
        "metadata": {"name": NAME, "namespace": NS, "annotations": dict(MODE), "labels": {"team": "ml"}},
        "spec": {"predictor": {**predictor(V1), "minReplicas": 2},
                 "canary": [{"predictor": {**predictor(V2), "name": "v2"}, "trafficPercent": 20}]},
    }


def settled_state(isvc: dict[str, Any]) -> ss.StandardState:
    """Reconcile until both Deployments serve and the Gateway accepted the routes."""
    state = ss.StandardState(uid=isvc["metadata"].get("uid", "uid"))
    ss.reconcile(isvc, state, NOW)
    for rec in list(state.deployments.values()):
        state.mark_ready(rec.name)
    ss.reconcile(isvc, state, NOW)
    state.accept_routes()
    ss.reconcile(isvc, state, NOW)
    return state


# ================================================================================ builders


def test_deployment_and_service_carry_kserve_labels_owner_and_ports() -> None:
    isvc = {**isvc_manifest(), "metadata": {**isvc_manifest()["metadata"], "uid": "isvc-uid"}}
    state = settled_state(isvc)
    stable = state.deployments["my-model-predictor"]
    deploy = standard_objects.deployment_object(isvc, stable)
    labels = {"team": "ml", r.ISVC_LABEL: NAME, "component": "predictor", "app": "isvc.my-model-predictor"}
    assert deploy["metadata"]["labels"] == labels
    assert deploy["metadata"]["ownerReferences"] == [{
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "name": NAME, "uid": "isvc-uid",
        "controller": True, "blockOwnerDeletion": True}]
    assert deploy["spec"]["replicas"] == 1  # 2 minus the ready canary's one replica
    assert deploy["spec"]["selector"] == {"matchLabels": {"app": "isvc.my-model-predictor"}}
    template = deploy["spec"]["template"]
    assert template["metadata"]["labels"] == labels
    assert template["metadata"]["annotations"][r.STORAGE_URI_ANNOTATION] == V1
    assert template["spec"]["containers"][0]["args"] == [
        "--model_name=my-model", "--model_dir=/mnt/models", "--http_port=8080"]
    status = deploy["status"]
    assert (status["replicas"], status["readyReplicas"], status["availableReplicas"]) == (1, 1, 1)
    conds = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conds == {"Available": ("True", "MinimumReplicasAvailable"),
                     "Progressing": ("True", "NewReplicaSetAvailable")}
    assert status["observedGeneration"] == stable.generation

    canary = standard_objects.deployment_object(isvc, state.deployments["my-model-v2-predictor"])
    assert canary["metadata"]["labels"]["app"] == "isvc.my-model-v2-predictor"
    assert canary["spec"]["template"]["metadata"]["annotations"][r.STORAGE_URI_ANNOTATION] == V2
    # the model is served under the isvc name on every side
    assert "--model_name=my-model" in canary["spec"]["template"]["spec"]["containers"][0]["args"]

    svc = standard_objects.service_object(isvc, stable)
    assert svc["metadata"]["labels"] == labels
    assert svc["spec"]["ports"] == [{"name": "my-model-predictor", "port": 80, "protocol": "TCP", "targetPort": 8080}]
    assert svc["spec"]["selector"] == {"app": "isvc.my-model-predictor"}
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["clusterIPs"] == [svc["spec"]["clusterIP"]]
    assert svc["spec"]["clusterIP"].startswith("10.") and svc["spec"]["clusterIP"] != "10.96.0.1"
    other = standard_objects.service_object(isvc, state.deployments["my-model-v2-predictor"])
    assert other["spec"]["clusterIP"] != svc["spec"]["clusterIP"]


def test_deployment_status_follows_the_record_through_rollout_and_failure() -> None:
    isvc = isvc_manifest()
    state = ss.StandardState(uid="u")
    ss.reconcile(isvc, state, NOW)
    rec = state.deployments["my-model-predictor"]
    status = standard_objects.deployment_status(rec)
    assert status["unavailableReplicas"] == rec.replicas and "availableReplicas" not in status
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [
        ("Available", "False", "MinimumReplicasUnavailable"), ("Progressing", "True", "ReplicaSetUpdated")]
    state.mark_ready(rec.name)
    old_template = rec.template_hash
    rec.template_hash = "new-template"  # a rolling update: old pods still serve
    status = standard_objects.deployment_status(rec)
    assert status["availableReplicas"] == rec.replicas and status["updatedReplicas"] == 1
    assert [(c["type"], c["reason"]) for c in status["conditions"]] == [
        ("Available", "MinimumReplicasAvailable"), ("Progressing", "ReplicaSetUpdated")]
    state.mark_failed(rec.name, "model failed to load")
    progressing = standard_objects.deployment_status(rec)["conditions"][1]
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert progressing["message"] == f'ReplicaSet "{rec.replica_set}" has timed out progressing.'
    assert rec.replica_set != f"{rec.name}-{old_template[:10]}"
    assert standard_objects.deployment_status(rec, observed_generation=7)["observedGeneration"] == 7


def test_httproutes_wrap_the_semantics_and_report_acceptance() -> None:
    isvc = isvc_manifest()
    state = ss.StandardState(uid="u")
    ss.reconcile(isvc, state, NOW)
    assert standard_objects.httproute_objects(isvc, state) == []  # no route before the predictor is ready
    for rec in list(state.deployments.values()):
        state.mark_ready(rec.name)
    ss.reconcile(isvc, state, NOW)
    routes = standard_objects.httproute_objects(isvc, state, transition_time=NOW)
    assert [x["metadata"]["name"] for x in routes] == ["my-model-predictor", "my-model"]
    assert all(x["status"] == {"parents": []} for x in routes)
    state.accept_routes()
    routes = standard_objects.httproute_objects(isvc, state, transition_time=NOW)
    expected = ss.httproute_objects(isvc, state.backends())
    for route, bare in zip(routes, expected, strict=True):
        assert route["spec"] == bare["spec"]
        assert route["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"
        (parent,) = route["status"]["parents"]
        assert parent["parentRef"] == bare["spec"]["parentRefs"][0]
        assert {(c["type"], c["status"]) for c in parent["conditions"]} == {("Accepted", "True"),
                                                                         ("ResolvedRefs", "True")}
    weights = [(b["name"], b["weight"]) for b in routes[0]["spec"]["rules"][0]["backendRefs"]]
    assert weights == [("my-model-predictor", 80), ("my-model-v2-predictor", 20)]
    kinds = [rt.key for rt, _ in standard_objects.standard_objects(isvc, state)]
    assert kinds == [DEPLOYMENTS.key, SERVICES.key, DEPLOYMENTS.key, SERVICES.key, HTTPROUTES.key, HTTPROUTES.key]


def test_builders_pass_the_served_schemas_and_tables_print_kubectl_columns() -> None:
    isvc = isvc_manifest()
    state = settled_state(isvc)
    for rt, obj in standard_objects.standard_objects(isvc, state):
        result = validation.validate(obj, rt)
        assert result.unknown == [] and result.errors == [], (rt.kind, result.unknown, result.errors)
    deploy = standard_objects.deployment_object(isvc, state.deployments["my-model-predictor"])
    now = r.parse_time(NOW)
    assert now is not None
    assert tables.row(DEPLOYMENTS, deploy, now)["cells"][:4] == ["my-model-predictor", "1/1", 1, 1]
    names = [c["name"] for c in tables.column_definitions(DEPLOYMENTS) if c["priority"] == 0]
    assert names == ["Name", "Ready", "Up-to-date", "Available", "Age"]
    names = [c["name"] for c in tables.column_definitions(SERVICES) if c["priority"] == 0]
    assert names == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age"]
    assert [c["name"] for c in tables.column_definitions(HTTPROUTES)] == ["Name", "Hostnames", "Age"]


# ==================================================================== through the server


@pytest.fixture
def api(tmp_path: Path) -> Iterator[LocalApi]:
    server = LocalApi(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def upsert(api: LocalApi, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
    """Write ``obj`` as the controller does: create or replace the object, then its status (a
    Deployment's ``observedGeneration`` is the generation the store just gave it)."""
    def run() -> dict[str, Any]:
        store = api.store
        meta = obj["metadata"]
        existing = store.get(rt, meta["namespace"], meta["name"])
        if existing is None:
            stored = store.create(rt, obj)
        else:
            stored = store.update(rt, {**obj, "metadata": {**existing["metadata"], **meta}}, check_rv=False)
        status = dict(obj["status"])
        if rt is DEPLOYMENTS:  # the Deployment controller has seen the generation just stored
            status["observedGeneration"] = stored["metadata"]["generation"]
        return store.update(rt, {**stored, "status": status}, subresource="status")

    return api.call(run)


@pytest.fixture
def deployed(api: LocalApi) -> tuple[dict[str, Any], ss.StandardState]:
    """The e2e isvc stored, settled, and its Standard-mode objects upserted."""
    from kserve_nb.local.store import NAMESPACES

    api.call(api.store.create, NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS},
                                            "status": {"phase": "Active"}})
    isvc = api.call(api.store.create, INFERENCESERVICES, isvc_manifest())
    state = settled_state(isvc)
    for rt, obj in standard_objects.standard_objects(isvc, state):
        upsert(api, rt, obj)
    return isvc, state


@needs_kubectl
@pytest.mark.kubectl
def test_kubectl_gets_httproutes_deployments_and_services(api: LocalApi, deployed: Any) -> None:
    out = kubectl(api, "get", "httproute,deploy,svc", "-n", NS).stdout
    blocks = out.strip().split("\n\n")
    assert len(blocks) == 3, out
    route_rows = lines(blocks[0])
    assert route_rows[0] == ["NAME", "HOSTNAMES", "AGE"]
    assert route_rows[1][:2] == ["httproute.gateway.networking.k8s.io/my-model",
                                 '["my-model-kserve-std.example.com"]']
    assert route_rows[2][:2] == ["httproute.gateway.networking.k8s.io/my-model-predictor",
                                 '["my-model-predictor-kserve-std.example.com"]']
    deploy_rows = lines(blocks[1])
    assert deploy_rows[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert [row[:4] for row in deploy_rows[1:]] == [
        ["deployment.apps/my-model-predictor", "1/1", "1", "1"],
        ["deployment.apps/my-model-v2-predictor", "1/1", "1", "1"]]
    svc_rows = lines(blocks[2])
    assert svc_rows[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert [row[0] for row in svc_rows[1:]] == ["service/my-model-predictor", "service/my-model-v2-predictor"]
    assert all(row[1] == "ClusterIP" and re.fullmatch(r"10\.\d+\.\d+\.\d+", row[2]) and row[3:5] == ["<none>", "80/TCP"]
               for row in svc_rows[1:]), svc_rows

    wide = lines(kubectl(api, "get", "deploy", "my-model-predictor", "-n", NS, "-o", "wide").stdout)
    assert wide[0][-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    assert wide[1][-3:] == ["kserve-container", "kserve/sklearnserver:v0.21.0", "app=isvc.my-model-predictor"]
    svc_wide = lines(kubectl(api, "get", "svc", "my-model-predictor", "-n", NS, "-o", "wide").stdout)
    assert svc_wide[1][-1] == "app=isvc.my-model-predictor"

    route = yaml.safe_load(kubectl(api, "get", "httproute", "my-model-predictor", "-n", NS, "-o", "yaml").stdout)
    backends = route["spec"]["rules"][0]["backendRefs"]
    assert [(b["name"], b["weight"]) for b in backends] == [("my-model-predictor", 80), ("my-model-v2-predictor", 20)]
    assert route["status"]["parents"][0]["conditions"][0]["type"] == "Accepted"
    assert route["metadata"]["ownerReferences"][0]["name"] == NAME
    everything = kubectl(api, "get", "all", "-n", NS).stdout
    assert "deployment.apps/my-model-predictor" in everything and "service/my-model-v2-predictor" in everything
    # read-only for users, like pods
    denied = kubectl(api, "delete", "deploy", "my-model-predictor", "-n", NS, check=False)
    assert denied.returncode != 0 and "(MethodNotAllowed)" in denied.stderr, denied.stderr
    explain = kubectl(api, "explain", "httproute.spec.hostnames").stdout
    assert "FIELD: hostnames <[]string>" in explain
    explain = kubectl(api, "explain", "deploy.status.availableReplicas").stdout
    assert "FIELD: availableReplicas <integer>" in explain


@needs_kubectl
@pytest.mark.kubectl
def test_kubectl_watch_prints_a_deployment_losing_its_pods(api: LocalApi, deployed: Any) -> None:
    isvc, state = deployed
    cmd = [KUBECTL, f"--kubeconfig={api.kubeconfig}", f"--cache-dir={api.tmp_path / 'kube-cache'}",
           "get", "deploy", "-n", NS, "-w"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(api))
    output: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert output.get(timeout=15).split()[:2] == ["NAME", "READY"]
        assert output.get(timeout=15).split()[:4] == ["my-model-predictor", "1/1", "1", "1"]
        assert output.get(timeout=15).split()[:4] == ["my-model-v2-predictor", "1/1", "1", "1"]
        state.mark_unavailable("my-model-v2-predictor")
        upsert(api, DEPLOYMENTS, standard_objects.deployment_object(isvc, state.deployments["my-model-v2-predictor"]))
        assert output.get(timeout=15).split()[:4] == ["my-model-v2-predictor", "0/1", "1", "0"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


@pytest.fixture
def k8s(api: LocalApi) -> Iterator[Any]:
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(api.kubeconfig), context=CONTEXT, persist_config=False)
    try:
        yield client
    finally:
        client.close()


def test_kubernetes_client_reads_typed_deployments_services_and_custom_httproutes(
    api: LocalApi, deployed: Any, k8s: Any
) -> None:
    from kubernetes import client, watch
    from kubernetes.client.exceptions import ApiException

    apps = client.AppsV1Api(k8s)
    deploys = apps.list_namespaced_deployment(NS, label_selector=f"{r.ISVC_LABEL}={NAME},component=predictor")
    assert [d.metadata.name for d in deploys.items] == ["my-model-predictor", "my-model-v2-predictor"]
    stable = apps.read_namespaced_deployment("my-model-predictor", NS)
    assert stable.spec.replicas == 1 and stable.status.available_replicas == 1
    assert stable.metadata.generation == 1 and stable.status.observed_generation == 1
    assert {c.type: c.status for c in stable.status.conditions} == {"Available": "True", "Progressing": "True"}
    assert stable.metadata.owner_references[0].kind == "InferenceService"
    assert len(apps.list_deployment_for_all_namespaces().items) == 2
    with pytest.raises(ApiException) as denied:
        apps.delete_namespaced_deployment("my-model-predictor", NS)
    assert denied.value.status == 405

    core = client.CoreV1Api(k8s)
    svc = core.read_namespaced_service("my-model-v2-predictor", NS)
    assert svc.spec.ports[0].port == 80 and svc.spec.ports[0].target_port == 8080
    assert svc.spec.selector == {"app": "isvc.my-model-v2-predictor"}
    assert [s.metadata.name for s in core.list_namespaced_service(NS).items] == [
        "my-model-predictor", "my-model-v2-predictor"]

    custom = client.CustomObjectsApi(k8s)
    args = ("gateway.networking.k8s.io", "v1", NS, "httproutes")
    routes = custom.list_namespaced_custom_object(*args)
    assert [x["metadata"]["name"] for x in routes["items"]] == ["my-model", "my-model-predictor"]
    route = custom.get_namespaced_custom_object(*args, "my-model")
    assert route["spec"]["hostnames"] == ["my-model-kserve-std.example.com"]

    seen: list[tuple[str, int | None]] = []
    w = watch.Watch()
    for event in w.stream(apps.list_namespaced_deployment, NS, timeout_seconds=5):
        seen.append((event["type"], event["object"].status.available_replicas))
        if len(seen) == 2:
            w.stop()
    assert seen == [("ADDED", 1), ("ADDED", 1)]
