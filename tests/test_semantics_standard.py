"""Table-driven tests of KServe's Standard-mode canary rules (``kserve_nb.semantics_standard``).

One test per row of the transition table in ``docs/standard-mode-canary.md``, then KServe's
``test/e2e/predictor/test_canary_raw_deployment.py`` scenarios as pure transitions, then the
webhook rules and the client's patch builders. A tiny simulator plays the Kubernetes side: it
reports a Deployment's pods ready (or failing) and the Gateway accepting the routes, as the local
controller will when its processes and ingress report.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kserve_nb import errors
from kserve_nb import resources as r
from kserve_nb import semantics_standard as ss
from kserve_nb.patches import merge_patch

V1, V2, V3 = "gs://m/v1", "gs://m/v2", "gs://m/v3"
BAD = "gs://m/missing"
SKLEARN = {"modelFormat": {"name": "sklearn"}}
MODE = {r.DEPLOYMENT_MODE_ANNOTATION: "Standard", ss.AUTOSCALER_CLASS_ANNOTATION: "none"}


def predictor(uri: str, name: str | None = None, min_replicas: int | None = 2) -> dict[str, Any]:
    """The e2e test's ``_make_predictor``: sklearn, its storageUri, optional name and minReplicas."""
    p: dict[str, Any] = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri}}
    if min_replicas is not None:
        p["minReplicas"] = min_replicas
    if name:
        p["name"] = name
    return p


def canary(name: str, pct: int, uri: str, min_replicas: int | None = None) -> dict[str, Any]:
    return {"predictor": predictor(uri, name, min_replicas), "trafficPercent": pct}


class Sim:
    """One Standard-mode InferenceService: apply → reconcile → pods ready → routes accepted."""

    def __init__(self, name: str = "my-model", ns: str = "default", stable_min: int = 2) -> None:
        self.name, self.ns = name, ns
        self.state = ss.StandardState(uid="uid-1")
        self.isvc: dict[str, Any] = {
            "metadata": {"name": name, "namespace": ns, "generation": 0, "annotations": dict(MODE)},
            "spec": {},
            "status": {},
        }
        self.stable_min = stable_min
        self.clock = 0
        self.restarts: list[str] = []  # Deployments whose pods were replaced (template changed)

    def now(self) -> str:
        self.clock += 1
        return f"2026-01-01T00:00:{self.clock:02d}Z"

    # ---- the API side
    def apply_patch(self, patch: dict[str, Any]) -> None:
        new = merge_patch(self.isvc, {k: v for k, v in patch.items() if k != "status"})
        error = ss.validate(new, self.isvc)
        assert error is None, error
        if new.get("spec") != self.isvc.get("spec"):
            new["metadata"]["generation"] += 1
        self.isvc = new
        self.reconcile()

    def create(self, stable_uri: str, canaries: list[dict[str, Any]] | None = None) -> None:
        spec: dict[str, Any] = {"predictor": predictor(stable_uri, min_replicas=self.stable_min)}
        if canaries:
            spec["canary"] = canaries
        self.apply_patch({"spec": spec})

    def reconcile(self) -> None:
        before = {n: d.template_hash for n, d in self.state.deployments.items()}
        self.isvc["status"] = ss.reconcile(self.isvc, self.state, self.now()).status
        for n, d in self.state.deployments.items():
            if n in before and before[n] != d.template_hash:
                self.restarts.append(n)

    # ---- the Kubernetes side
    def ready(self, *names: str) -> None:
        for n in names:
            assert self.state.mark_ready(self.dep(n)), n
        self.reconcile()

    def fail(self, name: str, message: str = "Missing model file") -> None:
        assert self.state.mark_failed(self.dep(name), message)
        self.reconcile()

    def accept(self) -> None:
        assert self.state.accept_routes()
        self.reconcile()

    def settle(self) -> None:
        """Every current pod template ready (serving nothing it shouldn't), routes accepted."""
        for rec in self.state.deployments.values():
            if rec.replicas > 0 and rec.failed is None:
                self.state.mark_ready(rec.name)
        self.reconcile()
        self.state.accept_routes()
        self.reconcile()

    # ---- views
    def dep(self, short: str) -> str:
        return ss.predictor_service_name(self.name, None if short == "stable" else short)

    def deployments(self) -> dict[str, tuple[Any, ...]]:
        """Deployment name → (storageUri of its template, replicas, serving storageUri)."""
        return {
            d.name: (d.storage_uri, d.replicas, d.serving_uri) for d in ss.workloads(self.state)
        }

    def backends(self) -> list[tuple[str, Any]]:
        return [(b.service, b.weight) for b in self.state.backends()]

    def cond(self, ctype: str) -> tuple[Any, ...] | None:
        c = r.condition(self.isvc, ctype)
        return None if c is None else (c["status"], c.get("reason"))

    def canary_statuses(self) -> list[tuple[Any, ...]]:
        entries = self.isvc["status"].get("canaryStatuses", [])
        return [(c["name"], c["ready"], c["trafficPercent"]) for c in entries]

    @property
    def status(self) -> dict[str, Any]:
        return self.isvc["status"]


S, C2, C3 = "my-model-predictor", "my-model-v2-predictor", "my-model-v3-predictor"


def at_row_1() -> Sim:
    s = Sim()
    s.create(V1)
    s.settle()
    return s


def at_row_2b() -> Sim:
    s = at_row_1()
    s.apply_patch(ss.add_canary_patch(s.isvc, "v2", V2, 20))
    s.ready("v2")
    return s


# --------------------------------------------------------------------------- the transition table


def test_row_1_create_stable() -> None:
    s = Sim()
    s.create(V1)
    assert s.deployments() == {S: (V1, 2, None)}
    assert s.backends() == []
    assert s.cond("PredictorReady") == ("False", "MinimumReplicasUnavailable")
    assert s.cond("IngressReady") == ("False", "Predictor Deployment NotReady")
    assert s.cond("Ready") == ("False", "MinimumReplicasUnavailable")
    assert s.status["components"]["predictor"] == {}
    assert "url" not in s.status
    s.ready("stable")
    assert s.backends() == [(S, None)]  # the routes exist once PredictorReady is True
    assert s.cond("IngressReady") == ("False", "ParentStatusNotAvailable")
    assert s.cond("Ready")[0] == "False"  # type: ignore[index]
    s.accept()
    assert s.cond("IngressReady") == ("True", None)
    assert s.cond("Ready") == ("True", None)
    assert s.cond("PredictorReady") == ("True", "NewReplicaSetAvailable")
    assert s.cond("Stopped") == ("False", None)
    assert s.cond(ss.CANARY_READY) is None
    assert s.status["url"] == "http://my-model-default.example.com"
    assert s.status["address"] == {"url": "http://my-model-predictor.default.svc.cluster.local"}
    assert s.status["components"]["predictor"] == {"url": "http://my-model-predictor-default.example.com"}
    assert "canaryStatuses" not in s.status and "traffic" not in s.status["components"]["predictor"]
    assert s.status["deploymentMode"] == "Standard"
    assert s.status["observedGeneration"] == 1
    assert s.status["modelStatus"]["transitionStatus"] == "UpToDate"


def test_row_2_add_canary_waits_for_its_pods_before_taking_traffic() -> None:
    s = at_row_1()
    s.apply_patch(ss.add_canary_patch(s.isvc, "v2", V2, 20))
    assert s.deployments() == {S: (V1, 2, V1), C2: (V2, 1, None)}
    assert s.canary_statuses() == [("v2", False, 20)]
    assert s.cond(ss.CANARY_READY) == ("False", "CanariesNotReady")
    assert s.backends() == [(S, 100)]  # an unready canary gets no backend
    assert s.cond("Ready") == ("True", None)  # CanaryPredictorReady is not part of Ready
    s.ready("v2")
    assert s.canary_statuses() == [("v2", True, 20)]
    assert s.cond(ss.CANARY_READY) == ("True", "AllCanariesReady")
    assert s.backends() == [(S, 80), (C2, 20)]
    assert s.deployments() == {S: (V1, 1, V1), C2: (V2, 1, V2)}  # stable min 2 − 1 ready canary replica
    assert s.status["observedGeneration"] == 2  # the stable Deployment's generation (replicas changed)
    assert s.restarts == []
    assert ss.split(s.state.backends()) == {S: 0.8, C2: 0.2}


def test_row_3_set_percent_moves_weights_without_restarts() -> None:
    s = at_row_2b()
    s.apply_patch(ss.set_percent_patch(s.isvc, 50))
    assert s.backends() == [(S, 50), (C2, 50)]
    assert s.canary_statuses() == [("v2", True, 50)]
    assert s.deployments() == {S: (V1, 1, V1), C2: (V2, 1, V2)}  # ceil(2 × 50 / 100) = 1
    assert s.restarts == []
    assert s.cond("Ready") == ("True", None)


def test_row_4_promote_retargets_the_canary_deployment_without_restart() -> None:
    s = at_row_2b()
    canary_hash = s.state.deployments[C2].template_hash
    s.apply_patch(ss.promote_patch(s.isvc))
    assert s.isvc["spec"]["predictor"]["name"] == "v2"
    assert "canary" not in s.isvc["spec"]
    assert s.deployments() == {C2: (V2, 2, V2)}  # old stable deleted, canary is the stable now
    assert s.state.deployments[C2].role == "stable"
    assert s.state.deployments[C2].template_hash == canary_hash and s.restarts == []
    assert s.backends() == [(C2, None)]
    assert "canaryStatuses" not in s.status and s.cond(ss.CANARY_READY) is None
    assert s.status["components"]["predictor"]["url"] == "http://my-model-v2-predictor-default.example.com"
    assert s.status["address"] == {"url": "http://my-model-v2-predictor.default.svc.cluster.local"}
    assert s.status["url"] == "http://my-model-default.example.com"  # route names and hosts stay
    routes = ss.httproute_objects(s.isvc, s.state.backends())
    assert [(o["metadata"]["name"], o["spec"]["hostnames"]) for o in routes] == [
        ("my-model-predictor", ["my-model-predictor-default.example.com"]),
        ("my-model", ["my-model-default.example.com"]),
    ]
    ref = routes[0]["spec"]["rules"][0]["backendRefs"]
    assert ref == [{"group": "", "kind": "Service", "name": C2, "namespace": "default", "port": 80, "weight": 1}]
    assert s.cond("Ready") == ("True", None)


def test_row_5_rollback_deletes_the_canary_and_restores_the_stable() -> None:
    s = at_row_2b()
    s.apply_patch(ss.rollback_patch(s.isvc))
    assert s.deployments() == {S: (V1, 2, V1)}
    assert s.backends() == [(S, None)]
    assert "canaryStatuses" not in s.status and s.cond(ss.CANARY_READY) is None
    assert s.cond("Ready") == ("True", None)
    assert s.restarts == []


def test_row_6_canary_that_cannot_load_gets_no_traffic_and_ready_stays_true() -> None:
    s = at_row_1()
    s.apply_patch(ss.add_canary_patch(s.isvc, "v2", BAD, 20))
    s.fail("v2", "Missing model file in model directory /mnt/models")
    assert s.canary_statuses() == [("v2", False, 20)]
    assert s.cond(ss.CANARY_READY) == ("False", "CanariesNotReady")
    assert s.backends() == [(S, 100)]
    assert s.deployments()[S] == (V1, 2, V1)  # not reduced: the canary is not ready
    assert s.cond("Ready") == ("True", None)
    assert s.state.deployments[C2].failed.startswith("Missing model file")  # type: ignore[union-attr]
    # replacing the canary's model gives the new template a fresh chance
    s.apply_patch(ss.add_canary_patch(s.isvc, "v2", V2, 20))
    assert s.state.deployments[C2].failed is None
    s.ready("v2")
    assert s.backends() == [(S, 80), (C2, 20)]


def test_row_7_two_canaries_split_with_the_stable() -> None:
    s = Sim(stable_min=4)
    s.create(V1)
    s.settle()
    s.apply_patch(ss.add_canary_patch(s.isvc, "v2", V2, 25))
    s.apply_patch(ss.add_canary_patch(s.isvc, "v3", V3, 25))
    s.ready("v3")
    assert s.backends() == [(S, 75), (C3, 25)]  # only the ready canary counts
    assert s.cond(ss.CANARY_READY) == ("False", "CanariesNotReady")
    s.ready("v2")
    assert s.backends() == [(S, 50), (C2, 25), (C3, 25)]
    assert s.deployments() == {S: (V1, 2, V1), C2: (V2, 1, V2), C3: (V3, 1, V3)}
    assert s.canary_statuses() == [("v2", True, 25), ("v3", True, 25)]
    # promoting one keeps the other
    s.apply_patch(ss.promote_patch(s.isvc, "v3"))
    assert s.backends() == [(C3, 75), (C2, 25)]
    assert s.canary_statuses() == [("v2", True, 25)]
    assert set(s.deployments()) == {C2, C3}


def test_row_8_dark_launch_needs_a_replica() -> None:
    s = at_row_1()
    # KServe's own sizing: ceil(2 × 0 / 100) = 0 replicas, so the canary can never become ready
    s.apply_patch({"spec": {"canary": [canary("v2", 0, V2)]}})
    assert s.deployments()[C2] == (V2, 0, None)
    assert not s.state.mark_ready(C2)  # no pod to become ready
    assert ss.serving_processes(s.state) == [(S, s.state.deployments[S].template_hash, V1)]
    assert s.canary_statuses() == [("v2", False, 0)] and s.backends() == [(S, 100)]
    # the client's patch gives a 0 % canary minReplicas 1: ready, listed with weight 0
    s.apply_patch(ss.add_canary_patch(s.isvc, "v2", V2, 0))
    assert s.isvc["spec"]["canary"][0]["predictor"]["minReplicas"] == 1
    assert s.canary_statuses() == [("v2", False, 0)]
    s.ready("v2")
    assert s.canary_statuses() == [("v2", True, 0)]
    assert s.backends() == [(S, 100), (C2, 0)]
    assert ss.split(s.state.backends()) == {S: 1.0, C2: 0.0}


def test_row_9_canary_at_100_takes_everything_but_the_stable_keeps_a_replica() -> None:
    s = at_row_2b()
    s.apply_patch(ss.set_percent_patch(s.isvc, 100))
    assert s.backends() == [(S, 0), (C2, 100)]
    assert s.deployments() == {S: (V1, 1, V1), C2: (V2, 2, V2)}
    assert s.cond("Ready") == ("True", None)


def test_row_10_new_model_under_the_same_canary_name_rolls_its_deployment() -> None:
    s = at_row_2b()
    s.apply_patch(ss.add_canary_patch(s.isvc, "v2", V3, 20))
    assert s.restarts == [C2]
    assert s.deployments()[C2] == (V3, 1, V2)  # old pods serve until the new ones are ready
    assert s.canary_statuses() == [("v2", True, 20)] and s.backends() == [(S, 80), (C2, 20)]
    assert (C2, s.state.deployments[C2].template_hash, V3) in ss.serving_processes(s.state)
    s.ready("v2")
    assert s.deployments()[C2] == (V3, 1, V3)
    assert [p for p in ss.serving_processes(s.state) if p[0] == C2] == [
        (C2, s.state.deployments[C2].template_hash, V3)
    ]


def test_row_11_routes_freeze_while_the_stable_is_not_ready() -> None:
    s = at_row_2b()
    assert s.state.mark_unavailable(S)
    s.reconcile()
    assert s.cond("PredictorReady") == ("False", "MinimumReplicasUnavailable")
    assert s.cond("Ready") == ("False", "MinimumReplicasUnavailable")
    s.apply_patch(ss.set_percent_patch(s.isvc, 50))
    assert s.backends() == [(S, 80), (C2, 20)]  # not updated while PredictorReady is not True
    assert s.cond("IngressReady") == ("True", None)  # the existing routes are still accepted
    s.ready("stable")
    assert s.backends() == [(S, 50), (C2, 50)]
    assert s.cond("Ready") == ("True", None)


def test_row_11b_failed_stable_rollout_keeps_old_pods_but_predictor_is_not_ready() -> None:
    s = at_row_1()
    s.apply_patch({"spec": {"predictor": {"model": {"storageUri": BAD}}}})
    assert s.cond("PredictorReady") == ("True", "MinimumReplicasAvailable")  # old pods serve
    s.fail("stable")
    assert s.cond("PredictorReady") == ("False", "ProgressDeadlineExceeded")
    assert s.cond("Ready")[0] == "False"  # type: ignore[index]
    assert s.deployments()[S] == (BAD, 2, V1)
    assert s.status["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"
    assert s.backends() == [(S, None)]


def test_row_12_force_stop_deletes_everything_and_reports_stopped() -> None:
    s = at_row_2b()
    s.apply_patch({"metadata": {"annotations": {ss.STOP_ANNOTATION: "true"}}})
    assert s.deployments() == {} and s.state.routes is None
    assert s.cond("PredictorReady") == ("False", "Stopped")
    assert s.cond("IngressReady") == ("False", "Stopped")
    assert s.cond("Stopped") == ("True", None)
    assert s.cond(ss.CANARY_READY) == ("False", "Stopped")
    assert s.canary_statuses() == [("v2", False, 20)]
    assert s.cond("Ready") == ("False", "Stopped")
    assert "url" not in s.status and "components" not in s.status
    # resume: everything comes back
    s.apply_patch({"metadata": {"annotations": {ss.STOP_ANNOTATION: None}}})
    assert s.cond("Stopped") == ("False", None)
    s.settle()
    assert s.backends() == [(S, 80), (C2, 20)]
    assert s.cond("Ready") == ("True", None)


def with_canaries(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"canary": list(entries)}}


NO_MAX = {"predictor": {**predictor(V2, "v2", None), "maxReplicas": 3}, "trafficPercent": 10}
LEGACY = {"metadata": {"annotations": {r.DEPLOYMENT_MODE_ANNOTATION: "RawDeployment"}}}
INVALID = [
    (with_canaries(canary("v2", 60, V2), canary("v3", 50, V3)), "sum of canary trafficPercent values (110) must be"),
    (with_canaries(canary("v2", 10, V2), canary("v2", 10, V3)), 'canary predictor.name "v2" is duplicated'),
    (with_canaries({"predictor": predictor(V2), "trafficPercent": 10}), "canary[0] predictor.name is required"),
    (with_canaries(canary("v2", 101, V2)), 'canary "v2" trafficPercent must be between 0 and 100, got 101'),
    (with_canaries(canary("v2", 10, V2, min_replicas=3)), 'canary "v2" minReplicas (3) must not exceed stable'),
    (with_canaries(NO_MAX), 'canary "v2" must not set maxReplicas (canary uses fixed replicas)'),
    (with_canaries({"predictor": {"name": "v2"}, "trafficPercent": 10}), 'canary "v2" predictor: exactly one of'),
    ({**LEGACY, **with_canaries(canary("v2", 10, V2))}, "canary is only supported in Standard deployment mode"),
    ({"spec": {"predictor": {"name": "v2"}}}, "predictor.name change requires a model change (e.g. storageUri)"),
]


@pytest.mark.parametrize("patch,message", INVALID)
def test_row_13_webhook_refuses_invalid_specs(patch: dict[str, Any], message: str) -> None:
    s = at_row_1()
    new = merge_patch(s.isvc, patch)
    error = ss.validate(new, s.isvc)
    assert error is not None and error.startswith(message), error


def test_row_13_canary_named_like_the_stable_is_refused() -> None:
    s = at_row_2b()
    s.apply_patch(ss.promote_patch(s.isvc))  # the stable is now "v2"
    new = merge_patch(s.isvc, {"spec": {"canary": [canary("v2", 10, V3)]}})
    assert ss.validate(new, s.isvc) == 'canary predictor.name "v2" conflicts with stable predictor name'
    with pytest.raises(errors.ValidationError, match="stable predictor's name"):
        ss.add_canary_patch(s.isvc, "v2", V3, 10)


def test_legacy_mode_annotation_is_defaulted_to_standard() -> None:
    isvc = {"metadata": {"name": "x", "annotations": {r.DEPLOYMENT_MODE_ANNOTATION: "RawDeployment"}}}
    patch = ss.default_mode_annotation(isvc)
    assert patch == {"metadata": {"annotations": {r.DEPLOYMENT_MODE_ANNOTATION: "Standard"}}}
    assert ss.default_mode_annotation(merge_patch(isvc, patch)) is None


# --------------------------------------------------------------------------- KServe's e2e scenarios


def e2e_create(service: str) -> Sim:
    """``_make_isvc`` with one canary v2 at 20 % (no minReplicas), created, then waited on."""
    s = Sim(service, "kserve-ci-e2e-test")
    s.create(E2E_STABLE, [canary("v2", 20, E2E_CANARY)])
    s.settle()  # kserve.wait_isvc_ready + _wait_for_deployment for both
    return s


E2E_CANARY = "gs://kfserving-examples/models/sklearn/1.3/mixedtype"
E2E_STABLE = "gs://kfserving-examples/models/sklearn/1.0/model"


def test_e2e_canary_create() -> None:
    s = e2e_create("isvc-canary-create")
    stable, cdep = "isvc-canary-create-predictor", "isvc-canary-create-v2-predictor"
    assert s.cond("Ready") == ("True", None)
    assert s.state.deployments[stable].available and s.state.deployments[cdep].available
    assert s.cond(ss.CANARY_READY) == ("True", "AllCanariesReady")
    assert s.status["canaryStatuses"][0]["name"] == "v2"
    route = ss.httproute_objects(s.isvc, s.state.backends())[0]
    assert route["metadata"]["name"] == stable
    refs = [(b["name"], b.get("weight")) for b in route["spec"]["rules"][0]["backendRefs"]]
    assert refs == [(stable, 80), (cdep, 20)]
    # stable answers 200, the mixedtype canary 500: ≈80 % / 20 %
    assert ss.split(s.state.backends()) == {stable: 0.8, cdep: 0.2}


def test_e2e_canary_promote() -> None:
    s = e2e_create("isvc-canary-promote")
    stable, cdep = "isvc-canary-promote-predictor", "isvc-canary-promote-v2-predictor"
    canary_hash = s.state.deployments[cdep].template_hash
    # the test's own patch: predictor = _make_predictor(CANARY, name="v2") (minReplicas 2), canary = []
    promoted = {"spec": {"predictor": predictor(E2E_CANARY, "v2", 2), "canary": []}}
    generation = s.isvc["metadata"]["generation"]
    s.apply_patch(promoted)
    assert s.isvc["metadata"]["generation"] == generation + 1
    assert set(s.deployments()) == {cdep}  # _wait_for_deployment_gone(stable)
    assert s.state.deployments[cdep].template_hash == canary_hash and s.restarts == []  # pod UIDs kept
    assert [b.service for b in s.state.backends()] == [cdep]
    assert ss.split(s.state.backends()) == {cdep: 1.0}  # ≈100 % 500s
    assert s.cond("Ready") == ("True", None)
    # the client's promote patch reaches the same spec
    again = e2e_create("isvc-canary-promote")
    again.apply_patch(ss.promote_patch(again.isvc))
    assert again.isvc["spec"]["predictor"] == s.isvc["spec"]["predictor"]
    assert again.backends() == s.backends() and again.restarts == []
    assert stable not in again.deployments()


def test_e2e_canary_rollback() -> None:
    s = e2e_create("isvc-canary-rollback")
    stable = "isvc-canary-rollback-predictor"
    rolled_back = {"spec": {"predictor": predictor(E2E_STABLE, min_replicas=2), "canary": []}}
    s.apply_patch(rolled_back)
    assert set(s.deployments()) == {stable}
    assert s.cond(ss.CANARY_READY) is None
    assert [b.service for b in s.state.backends()] == [stable]
    assert ss.split(s.state.backends()) == {stable: 1.0}  # ≈100 % 200s
    assert s.cond("Ready") == ("True", None)


def test_e2e_canary_force_stop() -> None:
    s = e2e_create("isvc-canary-stop")
    spec = copy.deepcopy(s.isvc["spec"])
    s.apply_patch({"metadata": {"annotations": {ss.STOP_ANNOTATION: "true"}}, "spec": spec})
    assert "isvc-canary-stop-v2-predictor" not in s.deployments()
    assert s.cond(ss.CANARY_READY) == ("False", "Stopped")


# --------------------------------------------------------------------------- client patch builders


def test_add_canary_patch_carries_every_entry_and_the_stable_model_format() -> None:
    s = at_row_2b()
    patch = ss.add_canary_patch(s.isvc, "v3", V3, 30)
    assert patch == {
        "spec": {
            "canary": [
                {"predictor": {"name": "v2", "model": {"storageUri": V2, **SKLEARN}}, "trafficPercent": 20},
                {"predictor": {"name": "v3", "model": {"storageUri": V3, **SKLEARN}}, "trafficPercent": 30},
            ]
        }
    }
    with pytest.raises(errors.ValidationError, match=r"take 110% of the traffic \(v2 20%, v3 90%\)"):
        ss.add_canary_patch(s.isvc, "v3", V3, 90)


def test_add_canary_patch_sets_the_mode_annotation_when_it_is_missing() -> None:
    isvc = {
        "metadata": {"name": "m", "annotations": {}},
        "spec": {"predictor": predictor(V1)},
        "status": {"deploymentMode": "Standard"},
    }
    patch = ss.add_canary_patch(isvc, "v2", V2, 10)
    assert patch["metadata"] == {"annotations": {r.DEPLOYMENT_MODE_ANNOTATION: "Standard"}}
    assert ss.validate(merge_patch(isvc, patch), isvc) is None


@pytest.mark.parametrize(
    "name,match",
    [
        ("V2", "lower-case letters"),
        ("v2-", "lower-case letters"),
        ("2v", "lower-case letters"),
        ("v" * 60, "Kubernetes allows 63"),
    ],
)
def test_add_canary_patch_refuses_bad_names(name: str, match: str) -> None:
    with pytest.raises(errors.ValidationError, match=match):
        ss.add_canary_patch(at_row_1().isvc, name, V2, 10)


@pytest.mark.parametrize("pct", [-1, 101, 10.5, "10", True, None])
def test_percent_must_be_a_whole_number_from_0_to_100(pct: Any) -> None:
    with pytest.raises(errors.ValidationError, match="whole number from 0 to 100"):
        ss.add_canary_patch(at_row_1().isvc, "v2", V2, pct)


def test_knative_isvc_is_refused_with_the_other_api_named() -> None:
    isvc = {"metadata": {"name": "m"}, "spec": {"predictor": predictor(V1)}}
    with pytest.raises(errors.ValidationError, match="canaryTrafficPercent"):
        ss.add_canary_patch(isvc, "v2", V2, 10)


def test_set_percent_promote_rollback_need_a_canary_and_a_name_when_several() -> None:
    s = at_row_1()
    with pytest.raises(errors.ValidationError, match="has no canary"):
        ss.set_percent_patch(s.isvc, 10)
    with pytest.raises(errors.ValidationError, match="no canary to roll back"):
        ss.rollback_patch(s.isvc)
    s.apply_patch(ss.add_canary_patch(s.isvc, "v2", V2, 10))
    s.apply_patch(ss.add_canary_patch(s.isvc, "v3", V3, 10))
    with pytest.raises(errors.ValidationError, match=r"2 canaries \(v2, v3\); name the one"):
        ss.promote_patch(s.isvc)
    with pytest.raises(errors.ValidationError, match="no canary named 'v4'"):
        ss.set_percent_patch(s.isvc, 10, "v4")
    assert ss.rollback_patch(s.isvc, "v2") == {"spec": {"canary": [s.isvc["spec"]["canary"][1]]}}
    assert ss.rollback_patch(s.isvc) == {"spec": {"canary": None}}


def test_promote_patch_refuses_a_canary_with_the_stable_model() -> None:
    s = at_row_1()
    s.apply_patch(ss.add_canary_patch(s.isvc, "v2", V1, 10))
    with pytest.raises(errors.ValidationError, match="same storageUri"):
        ss.promote_patch(s.isvc)


def test_promote_patch_carries_the_canary_overrides_so_the_pod_template_is_unchanged() -> None:
    s = at_row_1()
    entry = canary("v2", 20, V2)
    entry["predictor"]["model"]["resources"] = {"limits": {"cpu": "1"}}
    s.apply_patch({"spec": {"canary": [entry]}})
    s.ready("v2")
    before = s.state.deployments[C2].template_hash
    s.apply_patch(ss.promote_patch(s.isvc))
    assert s.isvc["spec"]["predictor"]["model"]["resources"] == {"limits": {"cpu": "1"}}
    assert s.isvc["spec"]["predictor"]["minReplicas"] == 2  # the stable keeps its sizing
    assert s.state.deployments[C2].template_hash == before and s.restarts == []


def test_promote_patch_drops_a_legacy_framework_block() -> None:
    isvc = {
        "metadata": {"name": "m", "annotations": dict(MODE)},
        "spec": {
            "predictor": {"sklearn": {"storageUri": V1}},
            "canary": [canary("v2", 10, V2, min_replicas=1)],
        },
    }
    patch = ss.promote_patch(isvc)
    assert patch["spec"]["predictor"]["sklearn"] is None
    promoted = merge_patch(isvc, patch)
    assert promoted["spec"]["predictor"] == {"name": "v2", "model": {**SKLEARN, "storageUri": V2}}
    assert ss.validate(promoted, isvc) is None


def test_canary_inherits_what_it_does_not_override() -> None:
    stable = {"minReplicas": 2, "model": {"modelFormat": {"name": "sklearn"}, "storageUri": V1, "runtime": "rt"}}
    merged = ss.overlay(stable, {"name": "v2", "model": {"storageUri": V2, "runtime": ""}})
    assert merged == {"minReplicas": 2, "name": "v2", "model": {**SKLEARN, "storageUri": V2, "runtime": "rt"}}


def test_ingress_routes_split_both_hosts_and_expose_each_side() -> None:
    s = at_row_2b()
    table = ss.ingress_routes(s.isvc, s.state)
    split = [("default", S, 80), ("default", C2, 20)]
    assert table["my-model-default.example.com"] == split
    assert table["my-model-predictor-default.example.com"] == split
    assert table["my-model-v2-predictor-default.example.com"] == [("default", C2, 100)]


def test_state_round_trips_through_json() -> None:
    s = at_row_2b()
    assert ss.StandardState.from_json(s.state.to_json()) == s.state


def test_stale_readiness_reports_are_ignored() -> None:
    s = at_row_2b()
    old = s.state.deployments[C2].template_hash
    s.apply_patch(ss.add_canary_patch(s.isvc, "v2", V3, 20))
    assert not s.state.mark_ready(C2, old)  # a pod of the previous template
    assert not s.state.mark_failed(C2, "boom", old)
    assert s.state.deployments[C2].serving_uri == V2


def test_reconcile_refuses_other_modes() -> None:
    with pytest.raises(ValueError, match="Standard mode only"):
        ss.reconcile({"metadata": {"name": "m"}, "spec": {}}, ss.StandardState(uid="u"), "t")


def test_conditions_keep_transition_time_and_are_sorted() -> None:
    s = at_row_2b()
    first = {c["type"]: c["lastTransitionTime"] for c in s.status["conditions"]}
    s.reconcile()
    assert {c["type"]: c["lastTransitionTime"] for c in s.status["conditions"]} == first
    types = [c["type"] for c in s.status["conditions"]]
    assert types == sorted(types)
    sev = {c["type"]: c.get("severity") for c in s.status["conditions"]}
    assert sev[ss.CANARY_READY] == "Info" and sev["Stopped"] == "Info" and sev["Ready"] is None
