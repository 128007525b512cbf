"""The local cluster's Standard-mode (RawDeployment) controller, over real HTTP and the real kubectl.

One test per group of rows of the transition table in ``docs/standard-mode-canary.md``: create,
add a 20 % canary, change its percent, promote it (its process and pod survive), an unready canary
that gets no traffic, roll back, a 0 % canary (weight 0: no traffic), a dead stable process (un-Ready,
routes frozen, restarted), a canary rolling to a new model under load (no failed request), a
stable model that cannot load (the old pod keeps serving), the stop annotation, the webhook's
refusals, a ``kill -9`` of the daemon (state, processes and routes survive), and delete (every
object goes). Which side answered
is read from ``x-kserve-revision`` (``{deployment}-{pod-template-hash}``).
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.rest import ApiException

from kserve_nb import resources as r
from kserve_nb import semantics_standard as ss
from kserve_nb.local import dataplane, manager
from tests import waiting

NS = "std-controller"
GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
GW = ("gateway.networking.k8s.io", "v1")
M1 = "gs://kfserving-examples/models/sklearn/1.0/model"
M2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
MISSING = "gs://kfserving-examples/models/sklearn/does-not-exist"
IRIS = {"instances": [[6.8, 2.8, 4.8, 1.4]]}
MODE = {"serving.kserve.io/deploymentMode": "Standard", "serving.kserve.io/autoscalerClass": "none"}
DENIED = 'admission webhook "inferenceservice.kserve-webhook-server.validator" denied the request: '


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 90.0) -> Any:
    return waiting.wait_for(what, probe, timeout)


def predictor(uri: str, name: str | None = None, min_replicas: int | None = 2) -> dict[str, Any]:
    p: dict[str, Any] = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri}}
    if min_replicas is not None:
        p["minReplicas"] = min_replicas
    if name:
        p["name"] = name
    return p


def canary(name: str, pct: int, uri: str) -> dict[str, Any]:
    return {"predictor": predictor(uri, name, None), "trafficPercent": pct}


class Std:
    """The official clients on one namespace of a local cluster."""

    def __init__(self, local: manager.LocalCluster, namespace: str) -> None:
        self.local = local
        self.ns = namespace
        self.api = k8s_config.new_client_from_config(config_file=str(local.kubeconfig), persist_config=False)
        self.core = k8s.CoreV1Api(self.api)
        self.apps = k8s.AppsV1Api(self.api)
        self.custom = k8s.CustomObjectsApi(self.api)

    def close(self) -> None:
        self.api.close()

    def ensure_namespace(self) -> None:
        try:
            self.core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=self.ns)))
        except ApiException as e:
            if e.status != 409:
                raise

    # ---- the isvc
    def create(self, name: str, stable: dict[str, Any], canaries: list[dict[str, Any]] | None = None) -> None:
        spec: dict[str, Any] = {"predictor": stable}
        if canaries:
            spec["canary"] = canaries
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService",
                "metadata": {"name": name, "namespace": self.ns, "annotations": dict(MODE)}, "spec": spec}
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body)

    def patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name, patch)  # type: ignore[no-any-return]

    def isvc(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)  # type: ignore[no-any-return]

    def delete(self, name: str) -> None:
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)
        except ApiException as e:
            if e.status != 404:
                raise

    def cond(self, name: str, ctype: str) -> tuple[str, str | None] | None:
        for c in (self.isvc(name).get("status") or {}).get("conditions") or []:
            if c["type"] == ctype:
                return c["status"], c.get("reason")
        return None

    def canary_statuses(self, name: str) -> list[tuple[str, bool, int]]:
        entries = (self.isvc(name).get("status") or {}).get("canaryStatuses") or []
        return [(c["name"], c["ready"], c["trafficPercent"]) for c in entries]

    def ready(self, name: str) -> bool:
        return self.cond(name, "Ready") == ("True", None)

    # ---- what KServe creates
    def deployments(self, name: str) -> dict[str, Any]:
        selector = f"serving.kserve.io/inferenceservice={name}"
        items = self.apps.list_namespaced_deployment(self.ns, label_selector=selector)
        return {d.metadata.name: d for d in items.items}

    def services(self, name: str) -> set[str]:
        items = self.core.list_namespaced_service(self.ns, label_selector=f"serving.kserve.io/inferenceservice={name}")
        return {s.metadata.name for s in items.items}

    def backends(self, route: str) -> list[tuple[str, int]] | None:
        try:
            obj = self.custom.get_namespaced_custom_object(*GW, self.ns, "httproutes", route)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return [(b["name"], b["weight"]) for b in obj["spec"]["rules"][0]["backendRefs"]]

    def pods(self, deployment: str) -> dict[str, str]:
        """Pod name → uid of a Deployment's pods, found through its selector as KServe's e2e test does."""
        dep = self.apps.read_namespaced_deployment(deployment, self.ns)
        selector = ",".join(f"{k}={v}" for k, v in dep.spec.selector.match_labels.items())
        pods = self.core.list_namespaced_pod(self.ns, label_selector=selector).items
        return {p.metadata.name: p.metadata.uid for p in pods}

    def all_pods(self, name: str) -> set[str]:
        items = self.core.list_namespaced_pod(self.ns, label_selector=f"serving.kserve.io/inferenceservice={name}")
        return {p.metadata.name for p in items.items}

    # ---- the data plane
    def send(self, host: str, model: str, n: int) -> Counter[tuple[int, str]]:
        """``n`` predictions on ``host``: (status code, Deployment that answered) → count."""
        out: Counter[tuple[int, str]] = Counter()
        with httpx.Client(base_url=self.local.ingress, timeout=30) as http:
            for _ in range(n):
                resp = http.post(f"/v1/models/{model}:predict", json=IRIS, headers={"Host": host})
                out[(resp.status_code, ss.deployment_of(resp.headers.get("x-kserve-revision", "-")))] += 1
        return out

    def host(self, name: str) -> str:
        return ss.top_level_host(name, self.ns, ss.StandardSettings(ingress_domain=self.local.domain))


@pytest.fixture(scope="module")
def std(local_cluster: manager.LocalCluster) -> Iterator[Std]:
    s = Std(local_cluster, NS)
    s.ensure_namespace()
    try:
        yield s
    finally:
        s.close()


def settled(std: Std, name: str, canaries: list[tuple[str, bool, int]] | None = None) -> Callable[[], bool]:
    """Ready, and (when given) exactly these canary statuses."""
    return lambda: std.ready(name) and (canaries is None or std.canary_statuses(name) == canaries)


# ------------------------------------------------------------------------------ rows 1–4


def test_create_add_canary_change_percent_and_promote_without_restart(std: Std) -> None:
    name = "ctl-a"
    S, C2 = f"{name}-predictor", f"{name}-v2-predictor"
    std.create(name, predictor(M1))
    wait_for("the stable to be ready", settled(std, name))
    isvc = std.isvc(name)
    status = isvc["status"]
    domain = std.local.domain
    assert status["url"] == f"http://{name}-{NS}.{domain}"
    assert status["address"]["url"] == f"http://{S}.{NS}.svc.cluster.local"
    assert status["components"]["predictor"]["url"] == f"http://{S}-{NS}.{domain}"
    assert status["deploymentMode"] == "Standard"
    assert std.cond(name, "PredictorReady") == ("True", "NewReplicaSetAvailable")
    assert std.cond(name, "CanaryPredictorReady") is None and "canaryStatuses" not in status
    deps = std.deployments(name)
    assert set(deps) == {S} and deps[S].spec.replicas == 2 and deps[S].status.available_replicas == 2
    assert std.services(name) == {S}
    assert std.backends(S) == [(S, 1)] and std.backends(name) == [(S, 1)]
    assert len(std.pods(S)) == 1  # one process per Deployment (replicas are bookkeeping)
    assert std.send(std.host(name), name, 10) == Counter({(200, S): 10})

    # row 2: a 20 % canary; the stable is scaled down by its replica once it is ready
    std.patch(name, {"spec": {"canary": [canary("v2", 20, M2)]}})
    wait_for("the canary to be ready", settled(std, name, [("v2", True, 20)]))
    wait_for("the 80/20 route", lambda: std.backends(S) == [(S, 80), (C2, 20)])
    assert std.backends(name) == [(S, 80), (C2, 20)]
    assert std.cond(name, "CanaryPredictorReady") == ("True", "AllCanariesReady")
    deps = std.deployments(name)
    assert {d: deps[d].spec.replicas for d in deps} == {S: 1, C2: 1}
    assert std.services(name) == {S, C2}
    answers = std.send(std.host(name), name, 100)
    assert set(answers) == {(200, S), (200, C2)}
    assert 10 <= answers[(200, C2)] <= 30, answers
    # each side on its own component host (a local extension, docs/standard-mode-canary.md §9)
    settings = ss.StandardSettings(ingress_domain=domain)
    assert std.send(ss.domain_name(C2, NS, settings), name, 5) == Counter({(200, C2): 5})
    pods_before = std.pods(C2)

    # row 3: 50 % — weights change, nothing restarts
    std.patch(name, {"spec": {"canary": [canary("v2", 50, M2)]}})
    wait_for("the 50/50 route", lambda: std.backends(S) == [(S, 50), (C2, 50)])
    assert std.canary_statuses(name) == [("v2", True, 50)]
    assert std.pods(C2) == pods_before

    # row 4: promote v2 — its Deployment becomes the stable one on the same pod (no restart)
    patch = ss.promote_patch(std.isvc(name))
    std.patch(name, patch)
    wait_for("the promotion", lambda: std.backends(S) == [(C2, 1)] and set(std.deployments(name)) == {C2})
    wait_for("Ready after the promotion", lambda: std.ready(name))
    # status.observedGeneration is the stable Deployment's (PropagateRawStatus), not the isvc's
    assert std.isvc(name)["status"]["observedGeneration"] == std.deployments(name)[C2].metadata.generation
    assert std.pods(C2) == pods_before
    assert std.services(name) == {C2}
    status = std.isvc(name)["status"]
    assert "canaryStatuses" not in status and std.cond(name, "CanaryPredictorReady") is None
    assert status["components"]["predictor"]["url"] == f"http://{C2}-{NS}.{domain}"
    assert status["address"]["url"] == f"http://{C2}.{NS}.svc.cluster.local"
    assert status["url"] == f"http://{name}-{NS}.{domain}"
    assert std.deployments(name)[C2].spec.replicas == 2
    assert std.send(std.host(name), name, 10) == Counter({(200, C2): 10})
    std.delete(name)


# ------------------------------------------------------------------------------ rows 6, 5


def test_an_unready_canary_gets_no_traffic_and_rollback_removes_it(std: Std) -> None:
    name = "ctl-b"
    S, C2 = f"{name}-predictor", f"{name}-v2-predictor"
    std.create(name, predictor(M1))
    wait_for("the stable to be ready", settled(std, name))
    std.patch(name, {"spec": {"canary": [canary("v2", 20, MISSING)]}})
    wait_for("the canary to fail", lambda: std.cond(name, "CanaryPredictorReady") == ("False", "CanariesNotReady")
             and std.deployments(name).get(C2) is not None
             and any(c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded"
                     for c in std.deployments(name)[C2].status.conditions or []))
    assert std.canary_statuses(name) == [("v2", False, 20)]
    assert std.ready(name)  # a failing canary never makes the isvc un-Ready
    assert std.backends(S) == [(S, 100)]
    assert std.deployments(name)[S].spec.replicas == 2  # not reduced by an unready canary
    assert std.send(std.host(name), name, 20) == Counter({(200, S): 20})

    # row 5: roll back — the canary's Deployment, Service and pod go; the stable is whole again
    std.patch(name, {"spec": {"canary": None}})
    wait_for("the rollback", lambda: set(std.deployments(name)) == {S} and std.backends(S) == [(S, 1)])
    assert std.services(name) == {S}
    assert std.cond(name, "CanaryPredictorReady") is None
    assert not any(p.startswith(C2) for p in std.all_pods(name))
    std.delete(name)


# ------------------------------------------------------------------------------ rows 10, 11b


class Load:
    """Predictions sent one after another on a thread: every (status, x-kserve-revision) seen."""

    def __init__(self, std: Std, name: str) -> None:
        self.std, self.name = std, name
        self.answers: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with httpx.Client(base_url=self.std.local.ingress, timeout=30) as http:
            while not self._stop.is_set():
                try:
                    resp = http.post(f"/v1/models/{self.name}:predict", json=IRIS,
                                     headers={"Host": self.std.host(self.name)})
                    self.answers.append((resp.status_code, resp.headers.get("x-kserve-revision", "")))
                except httpx.HTTPError as e:
                    self.answers.append((0, repr(e)))


def test_a_canary_rolling_to_a_new_model_serves_on_its_old_pod_until_the_new_one_is_ready(std: Std) -> None:
    name = "ctl-f"
    S, C2 = f"{name}-predictor", f"{name}-v2-predictor"
    std.create(name, predictor(M1), [canary("v2", 50, M2)])
    wait_for("the canary to be ready", settled(std, name, [("v2", True, 50)]))
    wait_for("the 50/50 route", lambda: std.backends(S) == [(S, 50), (C2, 50)])
    with Load(std, name) as load:
        wait_for("answers from both sides", lambda: {ss.deployment_of(rev) for _, rev in load.answers} == {S, C2})
        old = {rev for _, rev in load.answers if ss.deployment_of(rev) == C2}
        std.patch(name, {"spec": {"canary": [canary("v2", 50, M1)]}})
        wait_for("the canary's new pod to answer",
                 lambda: any(ss.deployment_of(rev) == C2 and rev not in old for _, rev in load.answers[-20:]))
        seen = len(load.answers)
        wait_for("more answers", lambda: len(load.answers) > seen + 20)
    assert {code for code, _ in load.answers} == {200}, Counter(load.answers)
    assert std.canary_statuses(name) == [("v2", True, 50)]
    assert std.backends(S) == [(S, 50), (C2, 50)]  # the route never changed
    # the old pod went once the ingress stopped routing to it; only the new template's pod is left
    wait_for("the old pod to go", lambda: len(std.pods(C2)) == 1)
    (pod,) = std.pods(C2)
    assert not any(pod.startswith(rev) for rev in old)
    std.delete(name)


def test_a_stable_model_that_cannot_load_leaves_the_old_pod_serving(std: Std) -> None:
    name = "ctl-g"
    S = f"{name}-predictor"
    std.create(name, predictor(M1))
    wait_for("the stable to be ready", settled(std, name))
    std.patch(name, {"spec": {"predictor": predictor(MISSING)}})
    wait_for("the rollout to fail", lambda: std.cond(name, "PredictorReady") == ("False", "ProgressDeadlineExceeded"))
    status = std.isvc(name)["status"]
    assert std.cond(name, "Ready")[0] == "False"  # type: ignore[index]
    assert std.cond(name, "IngressReady") == ("True", None)
    assert status["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"
    assert status["modelStatus"]["states"]["targetModelState"] == "FailedToLoad"
    assert std.send(std.host(name), name, 10) == Counter({(200, S): 10})  # the old template serves
    assert len(std.pods(S)) == 2  # the serving pod and the failing one
    # a model that loads fixes it: the failed template goes, the new one serves
    std.patch(name, {"spec": {"predictor": predictor(M2)}})
    wait_for("the stable to be ready again",
             lambda: std.cond(name, "PredictorReady") == ("True", "NewReplicaSetAvailable"))
    wait_for("one pod again", lambda: len(std.pods(S)) == 1)
    std.delete(name)


# ------------------------------------------------------------------------------ rows 8, 11


def test_a_ready_zero_percent_canary_is_listed_with_weight_0_and_gets_nothing(std: Std) -> None:
    name = "ctl-h"
    S, C2 = f"{name}-predictor", f"{name}-v2-predictor"
    std.create(name, predictor(M1))
    wait_for("the stable to be ready", settled(std, name))
    dark = {"predictor": predictor(M2, "v2", 1), "trafficPercent": 0}  # a dark launch needs minReplicas
    std.patch(name, {"spec": {"canary": [dark]}})
    wait_for("the dark canary to be ready", settled(std, name, [("v2", True, 0)]))
    wait_for("the route with the canary at 0", lambda: std.backends(S) == [(S, 100), (C2, 0)])
    assert std.send(std.host(name), name, 30) == Counter({(200, S): 30})
    # the canary's Service host reaches it alone
    assert std.send(r.cluster_local_host(C2, NS), name, 3) == Counter({(200, C2): 3})
    # without minReplicas a 0 % canary has no replica: no process, never ready, not routed
    std.patch(name, {"spec": {"canary": [canary("v2", 0, M2)]}})
    wait_for("the canary without replicas", lambda: std.canary_statuses(name) == [("v2", False, 0)]
             and std.backends(S) == [(S, 100)])
    assert std.deployments(name)[C2].spec.replicas == 0
    wait_for("its pod to go", lambda: not std.pods(C2))
    std.delete(name)


def test_a_dead_stable_process_makes_the_isvc_unready_until_it_is_restarted(std: Std) -> None:
    name = "ctl-i"
    S, C2 = f"{name}-predictor", f"{name}-v2-predictor"
    std.create(name, predictor(M1), [canary("v2", 20, M2)])
    wait_for("the canary to be ready", settled(std, name, [("v2", True, 20)]))
    wait_for("the 80/20 route", lambda: std.backends(S) == [(S, 80), (C2, 20)])
    record = dataplane.read(std.local.state_dir / dataplane.RUNTIME_RECORD) or {}
    (pid,) = [e["pid"] for e in record["revisions"] if e["namespace"] == NS and ss.deployment_of(e["revision"]) == S]
    os.kill(pid, signal.SIGKILL)
    selector = f"involvedObject.name={name},involvedObject.kind=InferenceService"
    wait_for("the not-ready event", lambda: any(
        e.reason == "InferenceServiceNotReady" and "PredictorReady" in e.message
        for e in std.core.list_namespaced_event(NS, field_selector=selector).items))
    wait_for("Ready again", settled(std, name, [("v2", True, 20)]))
    assert std.backends(S) == [(S, 80), (C2, 20)]  # the routes kept their programming throughout
    pods = std.core.list_namespaced_pod(NS, label_selector=f"app=isvc.{S}").items
    assert [p.status.container_statuses[0].restart_count for p in pods] == [1]
    assert set(std.send(std.host(name), name, 30)) == {(200, S), (200, C2)}
    std.delete(name)


# ------------------------------------------------------------------------------ row 12


def test_stop_annotation_deletes_everything_and_removing_it_resumes(std: Std) -> None:
    name = "ctl-c"
    S, C2 = f"{name}-predictor", f"{name}-v2-predictor"
    std.create(name, predictor(M1), [canary("v2", 20, M2)])
    wait_for("the canary to be ready", settled(std, name, [("v2", True, 20)]))
    std.patch(name, {"metadata": {"annotations": {ss.STOP_ANNOTATION: "true"}}})
    wait_for("the stop", lambda: std.cond(name, "CanaryPredictorReady") == ("False", "Stopped")
             and not std.deployments(name))
    status = std.isvc(name)["status"]
    assert std.cond(name, "PredictorReady") == ("False", "Stopped")
    assert std.cond(name, "IngressReady") == ("False", "Stopped")
    assert std.cond(name, "Stopped") == ("True", None)
    assert std.cond(name, "Ready")[0] == "False"  # type: ignore[index]
    assert status["canaryStatuses"] == [{"modelStatus": {"transitionStatus": ""}, "name": "v2", "ready": False,
                                         "trafficPercent": 20}]
    assert "url" not in status and "address" not in status
    assert std.services(name) == set() and std.backends(S) is None and std.backends(name) is None
    wait_for("the pods to go", lambda: not std.all_pods(name))
    answer = httpx.post(f"{std.local.ingress}/v1/models/{name}:predict", json=IRIS,
                        headers={"Host": std.host(name)}, timeout=30)
    assert answer.status_code == 404

    std.patch(name, {"metadata": {"annotations": {ss.STOP_ANNOTATION: None}}})
    wait_for("the resume", settled(std, name, [("v2", True, 20)]))
    wait_for("the 80/20 route again", lambda: std.backends(S) == [(S, 80), (C2, 20)])
    assert std.cond(name, "Stopped") == ("False", None)
    std.delete(name)


# ------------------------------------------------------------------------------ row 13


@pytest.mark.kubectl
def test_the_webhook_refuses_what_kserve_refuses(std: Std, kubectl: Any) -> None:
    name = "ctl-d"
    std.create(name, predictor(M1))
    wait_for("the mode in status", lambda: (std.isvc(name).get("status") or {}).get("deploymentMode") == "Standard")

    def refused(patch: dict[str, Any]) -> str:
        proc = kubectl.run("patch", "isvc", name, "-n", NS, "--type=merge", "-p", json.dumps(patch), check=False)
        assert proc.returncode != 0, proc.stdout
        return str(proc.stderr)

    cases = [
        ({"spec": {"canary": [canary("v2", 60, M2), canary("v3", 50, M2)]}},
         "sum of canary trafficPercent values (110) must be <= 100"),
        ({"spec": {"canary": [canary("v2", 10, M2), canary("v2", 10, M2)]}},
         'canary predictor.name "v2" is duplicated'),
        ({"spec": {"canary": [{"predictor": predictor(M2, None, None), "trafficPercent": 10}]}},
         "canary[0] predictor.name is required"),
        ({"spec": {"canary": [canary("v2", 101, M2)]}},
         'canary "v2" trafficPercent must be between 0 and 100, got 101'),
        ({"spec": {"canary": [{"predictor": {**predictor(M2, "v2", 3)}, "trafficPercent": 10}]}},
         'canary "v2" minReplicas (3) must not exceed stable predictor minReplicas (2)'),
        ({"spec": {"canary": [{"predictor": {**predictor(M2, "v2", None), "maxReplicas": 3}, "trafficPercent": 10}]}},
         'canary "v2" must not set maxReplicas (canary uses fixed replicas)'),
        ({"spec": {"predictor": {"name": "v9"}}}, "predictor.name change requires a model change (e.g. storageUri)"),
        ({"metadata": {"annotations": {"serving.kserve.io/deploymentMode": "Knative"}}},
         "update rejected: deploymentMode cannot be changed from 'Standard' to 'Knative'"),
    ]
    for patch, message in cases:
        assert DENIED + message in refused(patch), message
    # stable-name clash: the stable renamed (with a new model) and a canary of the same name
    clash = {"spec": {"predictor": predictor(M2, "v2"), "canary": [canary("v2", 10, M1)]}}
    assert DENIED + 'canary predictor.name "v2" conflicts with stable predictor name' in refused(clash)
    # spec.canary needs Standard mode
    knative = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService",
               "metadata": {"name": "ctl-knative", "namespace": NS},
               "spec": {"predictor": predictor(M1), "canary": [canary("v2", 10, M2)]}}
    proc = kubectl.run("create", "-f", "-", input=json.dumps(knative), check=False)
    assert proc.returncode != 0 and DENIED + "canary is only supported in Standard deployment mode" in proc.stderr
    # the legacy annotation is rewritten by the mutating webhook, so its canaries are accepted
    legacy = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "InferenceService",
              "metadata": {"name": "ctl-legacy", "namespace": NS,
                           "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"}},
              "spec": {"predictor": predictor(M1)}}
    kubectl.run("create", "-f", "-", input=json.dumps(legacy))
    assert std.isvc("ctl-legacy")["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    assert std.isvc(name)["spec"].get("canary") is None  # nothing refused was stored
    std.delete("ctl-legacy")
    std.delete(name)


# ------------------------------------------------------------------------------ delete


@pytest.mark.kubectl
def test_delete_removes_every_object_and_process(std: Std, kubectl: Any) -> None:
    name = "ctl-e"
    S, C2 = f"{name}-predictor", f"{name}-v2-predictor"
    std.create(name, predictor(M1), [canary("v2", 20, M2)])
    wait_for("the canary to be ready", settled(std, name, [("v2", True, 20)]))
    listed = kubectl.run("get", "deploy,svc,pods", "-n", NS, "-l",
                         f"serving.kserve.io/inferenceservice={name}", "-o", "name").stdout.split()
    assert {f"deployment.apps/{S}", f"deployment.apps/{C2}", f"service/{S}", f"service/{C2}"} <= set(listed)
    assert sum(1 for item in listed if item.startswith("pod/")) == 2
    # KServe's HTTPRoutes carry only the isvc's own labels: they are named after it
    routes = kubectl.run("get", "httproute", S, name, "-n", NS, "-o", "name").stdout.split()
    assert routes == [f"httproute.gateway.networking.k8s.io/{S}", f"httproute.gateway.networking.k8s.io/{name}"]
    runtime = std.local.state_dir / dataplane.RUNTIME_RECORD
    assert {e["revision"].rsplit("-", 1)[0] for e in (dataplane.read(runtime) or {})["revisions"]
            if e["namespace"] == NS} >= {S, C2}
    kubectl.run("delete", "isvc", name, "-n", NS)
    wait_for("every object to go", lambda: not kubectl.run(
        "get", "deploy,svc,pods", "-n", NS, "-l", f"serving.kserve.io/inferenceservice={name}",
        "-o", "name").stdout.strip())
    assert std.backends(S) is None and std.backends(name) is None
    wait_for("the processes to stop", lambda: not any(
        e["namespace"] == NS and e["revision"].startswith(f"{name}-")
        for e in (dataplane.read(runtime) or {}).get("revisions") or []))


# ------------------------------------------------------------------------------ restart


@pytest.fixture()
def own_cluster(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "state"
    try:
        yield state
    finally:
        manager.down(state)


def test_a_kill_9_of_the_daemon_keeps_state_processes_and_routes(own_cluster: Path) -> None:
    cluster = manager.up(own_cluster)
    std = Std(cluster, "restart")
    std.ensure_namespace()
    name = "ctl-r"
    S, C2 = f"{name}-predictor", f"{name}-v2-predictor"
    try:
        std.create(name, predictor(M1), [canary("v2", 20, M2)])
        wait_for("the canary to be ready", settled(std, name, [("v2", True, 20)]))
        wait_for("the 80/20 route", lambda: std.backends(S) == [(S, 80), (C2, 20)])
        before = std.isvc(name)
        pods = {d: std.pods(d) for d in (S, C2)}
        servers = {e["revision"]: e["pid"] for e in dataplane.read(own_cluster / dataplane.RUNTIME_RECORD)["revisions"]}
    finally:
        std.close()
    os.kill(cluster.pid, signal.SIGKILL)
    wait_for("the daemon to die", lambda: _gone(cluster.pid))
    restarted = manager.up(own_cluster)
    std = Std(restarted, "restart")
    try:
        wait_for("the isvc to be ready again", settled(std, name, [("v2", True, 20)]))
        after = std.isvc(name)
        assert after["status"] == before["status"]
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert {d: std.pods(d) for d in (S, C2)} == pods
        record = dataplane.read(own_cluster / dataplane.RUNTIME_RECORD)["revisions"]
        assert {e["revision"]: e["pid"] for e in record} == servers  # adopted: same processes
        assert std.backends(S) == [(S, 80), (C2, 20)]
        answers = std.send(std.host(name), name, 50)
        assert set(answers) == {(200, S), (200, C2)}
    finally:
        std.close()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True
