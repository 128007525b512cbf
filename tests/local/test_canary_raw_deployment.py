"""KServe's e2e ``test/e2e/predictor/test_canary_raw_deployment.py`` on the local cluster.

The four scenarios of KServe's Standard-mode canary test (create, promote, roll back, force stop),
driven as KServe's test drives them: KServe's SDK (``KServeClient``, ``V1beta1CanarySpec``) for the
InferenceService, the ``kubernetes`` client for Deployments, pods and the HTTPRoute, and real HTTP
through the ingress. The stable model answers the iris row with 200 and the canary's
``sklearn/1.3/mixedtype`` model (seeded in the local mirror) with 500, so the status codes of ~100
requests show the 80/20 split. Adapted to the local cluster: the kubeconfig and ingress come from
the session's cluster, polls are sub-second instead of 5–10 s, the Gateway API route checks
always run (the local ingress is the Gateway), and the created route is also read with the real
kubectl. ``docs/standard-mode-canary.md`` §8 describes the
original.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kserve import (
    KServeClient,
    V1beta1CanarySpec,
    V1beta1InferenceService,
    V1beta1InferenceServiceSpec,
    V1beta1ModelFormat,
    V1beta1ModelSpec,
    V1beta1PredictorSpec,
    constants,
)
from kubernetes import client
from kubernetes import config as k8s_config
from kubernetes.client import V1ResourceRequirements
from kubernetes.client.rest import ApiException

from kserve_nb.local import manager

pytestmark = pytest.mark.kubectl

NS = "kserve-ci-e2e-raw"
STABLE_MODEL_URI = "gs://kfserving-examples/models/sklearn/1.0/model"
CANARY_MODEL_URI = "gs://kfserving-examples/models/sklearn/1.3/mixedtype"
RESOURCES = V1ResourceRequirements(requests={"cpu": "50m", "memory": "128Mi"},
                                   limits={"cpu": "100m", "memory": "256Mi"})
POLL = 0.25
TIMEOUT = 120


class E2E:
    """KServe's SDK and the kubernetes client against the session's local cluster."""

    def __init__(self, local: manager.LocalCluster) -> None:
        self.local = local
        self.kserve = KServeClient(config_file=str(local.kubeconfig))
        api = k8s_config.new_client_from_config(config_file=str(local.kubeconfig), persist_config=False)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def wait_ready(self, name: str, expected_generation: int | None = None) -> None:
        self.kserve.wait_isvc_ready(name, namespace=NS, timeout_seconds=TIMEOUT, polling_interval=POLL,
                                    expected_generation=expected_generation)

    def deployment_available(self, name: str) -> Any:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                dep = self.apps.read_namespaced_deployment(name, NS)
                if dep.status.available_replicas and dep.status.available_replicas > 0:
                    return dep
            except ApiException as e:
                if e.status != 404:
                    raise
            time.sleep(POLL)
        raise TimeoutError(f"Deployment {name} has no available replica after {TIMEOUT}s")

    def deployment_gone(self, name: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                self.apps.read_namespaced_deployment(name, NS)
            except ApiException as e:
                if e.status == 404:
                    return
                raise
            time.sleep(POLL)
        raise TimeoutError(f"Deployment {name} still exists after {TIMEOUT}s")

    def condition_reason(self, name: str, ctype: str, reason: str) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            conditions = self.kserve.get(name, namespace=NS).get("status", {}).get("conditions", [])
            found = next((c for c in conditions if c["type"] == ctype), None)
            if found is not None and found.get("reason") == reason:
                return found  # type: ignore[no-any-return]
            time.sleep(POLL)
        raise TimeoutError(f"{ctype} never had reason {reason} within {TIMEOUT}s")

    def route_backends(self, route: str) -> list[tuple[str, int | None]]:
        """(Service, weight) of the first rule of an HTTPRoute."""
        obj = self.custom.get_namespaced_custom_object("gateway.networking.k8s.io", "v1", NS, "httproutes", route)
        rules = obj.get("spec", {}).get("rules", [])
        return [(ref["name"], ref.get("weight")) for ref in rules[0].get("backendRefs", [])] if rules else []

    def pod_uids(self, deployment: str) -> set[str]:
        dep = self.apps.read_namespaced_deployment(deployment, NS)
        selector = ",".join(f"{k}={v}" for k, v in dep.spec.selector.match_labels.items())
        return {p.metadata.uid for p in self.core.list_namespaced_pod(NS, label_selector=selector).items}

    def split(self, name: str, expected: dict[int, int], requests: int = 100, tolerance: int = 10) -> dict[int, int]:
        """Send ``requests`` iris predictions to the isvc's URL host; each status code's share must be
        within ``tolerance`` points of ``expected`` (200 = the stable model, 500 = mixedtype)."""
        isvc = self.kserve.get(name, namespace=NS)
        host = isvc["status"]["url"].split("://", 1)[1]
        counts: dict[int, int] = {}
        with httpx.Client(base_url=self.local.ingress, timeout=30) as http:
            for _ in range(requests):
                code = 0
                for _attempt in range(3):  # only gateway errors are retried: 500 is an answer here
                    code = http.post(f"/v1/models/{name}:predict", json={"instances": [[1, 2, 3, 4]]},
                                     headers={"Host": host}).status_code
                    if code not in (502, 503, 504):
                        break
                counts[code] = counts.get(code, 0) + 1
        total = sum(counts.values())
        for code, pct in expected.items():
            assert code in counts, f"no {code} answer among {counts}"
            assert abs(100 * counts[code] / total - pct) <= tolerance, f"{code}: {counts} vs {expected}"
        return counts

    def delete(self, name: str) -> None:
        try:
            self.kserve.delete(name, NS)
        except RuntimeError:
            pass  # already gone


@pytest.fixture(scope="module")
def e2e(local_cluster: manager.LocalCluster) -> Iterator[E2E]:
    harness = E2E(local_cluster)
    try:
        harness.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NS)))
    except ApiException as e:
        if e.status != 409:
            raise
    yield harness


def make_predictor(storage_uri: str, name: str | None = None, min_replicas: int | None = 2) -> V1beta1PredictorSpec:
    spec = V1beta1PredictorSpec(
        min_replicas=min_replicas,
        model=V1beta1ModelSpec(model_format=V1beta1ModelFormat(name="sklearn"), storage_uri=storage_uri,
                               resources=RESOURCES),
    )
    if name:
        spec.name = name
    return spec


def make_isvc(name: str, canaries: list[V1beta1CanarySpec] | None = None) -> V1beta1InferenceService:
    return V1beta1InferenceService(
        api_version=constants.KSERVE_V1BETA1,
        kind=constants.KSERVE_KIND_INFERENCESERVICE,
        metadata=client.V1ObjectMeta(name=name, namespace=NS, annotations={
            "serving.kserve.io/deploymentMode": "Standard",
            "serving.kserve.io/autoscalerClass": "none",
        }),
        spec=V1beta1InferenceServiceSpec(predictor=make_predictor(STABLE_MODEL_URI), canary=canaries),
    )


def with_canary(name: str) -> V1beta1InferenceService:
    v2 = V1beta1CanarySpec(traffic_percent=20, predictor=make_predictor(CANARY_MODEL_URI, name="v2", min_replicas=None))
    return make_isvc(name, canaries=[v2])


def test_canary_create(e2e: E2E, kubectl: Any) -> None:
    name = "isvc-canary-create"
    try:
        e2e.kserve.create(with_canary(name))
        e2e.wait_ready(name)
        assert e2e.deployment_available(f"{name}-predictor") is not None
        assert e2e.deployment_available(f"{name}-v2-predictor") is not None
        assert e2e.condition_reason(name, "CanaryPredictorReady", "AllCanariesReady")["status"] == "True"
        statuses = e2e.kserve.get(name, namespace=NS).get("status", {}).get("canaryStatuses", [])
        assert statuses and statuses[0]["name"] == "v2"
        backends = e2e.route_backends(f"{name}-predictor")
        assert len(backends) == 2, backends
        assert dict(backends) == {f"{name}-predictor": 80, f"{name}-v2-predictor": 20}
        # the same route through the real kubectl, as an operator would read it
        weights = kubectl.run("get", "httproute", f"{name}-predictor", "-n", NS, "-o",
                              "jsonpath={range .spec.rules[0].backendRefs[*]}{.name}={.weight} {end}").stdout
        assert weights.split() == [f"{name}-predictor=80", f"{name}-v2-predictor=20"]
        table = kubectl.run("get", "httproute", "-n", NS).stdout.splitlines()
        assert table[0].split() == ["NAME", "HOSTNAMES", "AGE"]
        assert any(line.split()[:2] == [name, f'["{name}-{NS}.{e2e.local.domain}"]'] for line in table[1:]), table
        e2e.split(name, {200: 80, 500: 20})
    finally:
        e2e.delete(name)


def test_canary_promote(e2e: E2E) -> None:
    name = "isvc-canary-promote"
    try:
        e2e.kserve.create(with_canary(name))
        e2e.wait_ready(name)
        e2e.deployment_available(f"{name}-v2-predictor")
        canary_pods = e2e.pod_uids(f"{name}-v2-predictor")
        assert canary_pods

        promoted = make_isvc(name)
        promoted.spec.predictor = make_predictor(CANARY_MODEL_URI, name="v2")
        promoted.spec.canary = []
        patched = e2e.kserve.patch(name, promoted, namespace=NS)
        e2e.wait_ready(name, expected_generation=patched["metadata"]["generation"])
        e2e.deployment_available(f"{name}-v2-predictor")
        e2e.deployment_gone(f"{name}-predictor")
        after = e2e.pod_uids(f"{name}-v2-predictor")
        assert canary_pods <= after, f"the canary's pods were replaced: {canary_pods} → {after}"
        backends = e2e.route_backends(f"{name}-predictor")
        assert len(backends) == 1 and backends[0][0] == f"{name}-v2-predictor", backends
        e2e.split(name, {500: 100}, requests=50)
    finally:
        e2e.delete(name)


def test_canary_rollback(e2e: E2E) -> None:
    name = "isvc-canary-rollback"
    try:
        e2e.kserve.create(with_canary(name))
        e2e.wait_ready(name)
        e2e.deployment_available(f"{name}-v2-predictor")

        rolled_back = make_isvc(name)
        rolled_back.spec.canary = []
        patched = e2e.kserve.patch(name, rolled_back, namespace=NS)
        e2e.wait_ready(name, expected_generation=patched["metadata"]["generation"])
        e2e.deployment_gone(f"{name}-v2-predictor")
        e2e.deployment_available(f"{name}-predictor")
        conditions = e2e.kserve.get(name, namespace=NS).get("status", {}).get("conditions", [])
        assert not any(c["type"] == "CanaryPredictorReady" for c in conditions)
        backends = e2e.route_backends(f"{name}-predictor")
        assert len(backends) == 1 and backends[0][0] == f"{name}-predictor", backends
        e2e.split(name, {200: 100}, requests=50)
    finally:
        e2e.delete(name)


def test_canary_force_stop(e2e: E2E) -> None:
    name = "isvc-canary-stop"
    isvc = with_canary(name)
    try:
        e2e.kserve.create(isvc)
        e2e.wait_ready(name)
        e2e.deployment_available(f"{name}-v2-predictor")
        stop = V1beta1InferenceService(
            api_version=constants.KSERVE_V1BETA1,
            kind=constants.KSERVE_KIND_INFERENCESERVICE,
            metadata=client.V1ObjectMeta(name=name, namespace=NS, annotations={"serving.kserve.io/stop": "true"}),
            spec=isvc.spec,
        )
        e2e.kserve.patch(name, stop, namespace=NS)
        e2e.deployment_gone(f"{name}-v2-predictor")
        e2e.condition_reason(name, "CanaryPredictorReady", "Stopped")
    finally:
        e2e.delete(name)
