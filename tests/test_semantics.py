"""Table-driven tests of the pure KServe/Knative reconcile core.

The tables are KServe's canary transitions (the rules and their KServe sources are listed in
:mod:`kserve_nb.semantics`) and every step of KServe's canary walkthrough. A tiny simulator stands
in for the model-server processes: it marks the latest created revision ready (or failed) between
passes, exactly as the controller does when the runtime reports.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kserve_nb import resources as r
from kserve_nb.semantics import (
    KsvcState,
    live_revisions,
    reconcile,
    routes,
    validate_traffic,
)

UNSET = object()
TAG = {r.TAG_ROUTING_ANNOTATION: "true"}


class Sim:
    """One InferenceService driven through apply → reconcile → revision readiness."""

    def __init__(self, name: str = "my-model", ns: str = "default") -> None:
        self.name, self.ns = name, ns
        self.ks = KsvcState(uid="uid-1")
        self.isvc: dict[str, Any] = {
            "metadata": {"name": name, "namespace": ns, "generation": 0, "annotations": {}},
            "spec": {},
            "status": {},
        }
        self.clock = 0
        self.ksvc_updates: list[int] = []

    def now(self) -> str:
        self.clock += 1
        return f"2026-01-01T00:{self.clock // 60:02d}:{self.clock % 60:02d}Z"

    def apply(self, uri: str, canary: Any = UNSET, annotations: dict[str, str] | None = None) -> None:
        spec = {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri}}}
        if canary is not UNSET:
            spec["predictor"]["canaryTrafficPercent"] = canary
        if spec != self.isvc["spec"]:
            self.isvc["metadata"]["generation"] += 1
        self.isvc["spec"] = spec
        if annotations is not None:
            self.isvc["metadata"]["annotations"] = dict(annotations)
        self.pass_()

    def pass_(self) -> None:
        before = self.ks.generation
        result = reconcile(self.isvc, self.ks, self.now())
        self.isvc["status"] = result.status
        self.ksvc_updates.append(self.ks.generation - before)

    def settle(self, fail: str | None = None) -> None:
        latest = self.ks.latest_created
        assert latest is not None
        if fail:
            self.ks.mark_failed(latest.name, fail)
        else:
            self.ks.mark_ready(latest.name)
        self.pass_()

    # ---- views
    @property
    def predictor(self) -> dict[str, Any]:
        return self.isvc["status"]["components"]["predictor"]

    def traffic(self) -> list[tuple[Any, ...]]:
        out = []
        for e in self.predictor.get("traffic", []):
            short = "r" + str(r.revision_number(e["revisionName"]))
            out.append((short, e["latestRevision"], e["percent"], e.get("tag")))
        return out

    def revs(self) -> tuple[str | None, ...]:
        p = self.predictor
        short = lambda n: ("r" + str(r.revision_number(n))) if n else None  # noqa: E731
        return (
            short(p.get("latestCreatedRevision")),
            short(p.get("latestReadyRevision")),
            short(p.get("latestRolledoutRevision")),
            short(p.get("previousRolledoutRevision")),
        )

    def columns(self) -> tuple[Any, ...]:
        c = r.printer_columns(self.isvc)
        short = lambda n: ("r" + str(r.revision_number(n))) if n else None  # noqa: E731
        return (c["PREV"], c["LATEST"], short(c["PREVROLLEDOUTREVISION"]), short(c["LATESTREADYREVISION"]))

    def ready(self) -> str:
        return r.condition(self.isvc, "Ready")["status"]  # type: ignore[index]

    def gens(self) -> tuple[int, int]:
        return self.isvc["metadata"]["generation"], self.isvc["status"]["observedGeneration"]


V1, V2, V3 = "gs://m/v1", "gs://m/v2", "gs://m/v3"


def test_transition_table_rows_1_to_7() -> None:
    s = Sim()
    # 1: create v1
    s.apply(V1)
    assert s.ready() == "Unknown"
    assert r.condition(s.isvc, "IngressReady")["message"] == "Predictor ingress not created"  # type: ignore[index]
    s.settle()
    assert s.traffic() == [("r1", True, 100, None)]
    assert s.revs() == ("r1", "r1", "r1", None)
    assert s.columns() == (None, 100, None, "r1")
    assert s.ready() == "True"
    assert s.gens() == (1, 1)

    # 2: v2 with canary 10: transient, then settled
    s.apply(V2, canary=10)
    assert s.traffic() == [("r1", True, 10, None), ("r1", False, 90, "prev")]
    assert s.revs() == ("r2", "r1", "r1", None)
    assert s.ready() == "Unknown"
    s.settle()
    assert s.traffic() == [("r2", True, 10, None), ("r1", False, 90, "prev")]
    assert s.revs() == ("r2", "r2", "r1", None)
    assert s.columns() == (90, 10, "r1", "r2")
    assert s.ready() == "True"
    assert s.gens() == (2, 2)

    # 3: canary 50, no new revision
    s.apply(V2, canary=50)
    assert len(s.ks.revisions) == 2
    assert s.traffic() == [("r2", True, 50, None), ("r1", False, 50, "prev")]
    assert s.columns() == (50, 50, "r1", "r2")
    assert s.gens() == (3, 3)

    # 4: promote
    s.apply(V2)
    assert s.traffic() == [("r2", True, 100, None)]
    assert s.revs() == ("r2", "r2", "r2", "r1")
    assert s.columns() == (None, 100, None, "r2")
    assert s.gens() == (4, 4)

    # 5: v3 with canary 20
    s.apply(V3, canary=20)
    assert s.traffic() == [("r2", True, 20, None), ("r2", False, 80, "prev")]
    assert s.revs() == ("r3", "r2", "r2", "r1")
    s.settle()
    assert s.traffic() == [("r3", True, 20, None), ("r2", False, 80, "prev")]
    assert s.revs() == ("r3", "r3", "r2", "r1")
    assert s.columns() == (80, 20, "r2", "r3")
    assert s.gens() == (5, 5)

    # 6: canary 0 during the in-flight canary
    s.apply(V3, canary=0)
    assert s.traffic() == [("r3", True, 0, None), ("r2", False, 100, "prev")]
    assert s.revs() == ("r3", "r3", "r2", "r1")
    assert s.columns() == (100, 0, "r2", "r3")
    assert s.gens() == (6, 6)

    # 7: add the tag-routing annotation: metadata-only change makes revision 4
    s.apply(V3, canary=0, annotations=TAG)
    assert s.revs() == ("r4", "r3", "r2", "r1")
    assert s.traffic() == [("r3", True, 0, "latest"), ("r2", False, 100, "prev")]
    s.settle()
    assert s.traffic() == [("r4", True, 0, "latest"), ("r2", False, 100, "prev")]
    assert s.revs() == ("r4", "r4", "r2", "r1")
    assert s.columns() == (100, 0, "r2", "r4")
    assert s.gens() == (6, 7)
    urls = [e.get("url") for e in s.predictor["traffic"]]
    assert urls == [
        "http://latest-my-model-predictor.default.example.com",
        "http://prev-my-model-predictor.default.example.com",
    ]


def test_rollback_after_promotion_pins_traffic_to_previous_revision_in_two_passes() -> None:
    s = Sim()
    s.apply(V1)
    s.settle()
    s.apply(V2, canary=10)
    s.settle()
    s.apply(V2)  # promote: rolled r2, previous r1
    gen = s.ks.generation
    s.apply(V2, canary=0)
    assert s.traffic() == [("r2", True, 0, None), ("r1", False, 100, "prev")]
    assert s.revs() == ("r2", "r2", "r1", "r1")
    assert s.columns() == (100, 0, "r1", "r2")
    assert s.ks.generation == gen + 2  # two ksvc updates
    assert s.ready() == "True"


def test_seed_walkthrough_every_step() -> None:
    s = Sim("sklearn-iris", "kserve-test")
    m1 = "gs://kfserving-examples/models/sklearn/1.0/model"
    m2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
    s.apply(m1)
    s.settle()
    assert s.isvc["status"]["url"] == "http://sklearn-iris.kserve-test.example.com"
    assert (s.ready(), *s.columns()) == ("True", None, 100, None, "r1")

    s.apply(m2, canary=10)
    s.settle()
    assert (s.ready(), *s.columns()) == ("True", 90, 10, "r1", "r2")
    assert [rev.name for rev in live_revisions(s.ks, s.isvc["status"])] == [
        "sklearn-iris-predictor-00001",
        "sklearn-iris-predictor-00002",
    ]

    s.apply(m2)  # promote
    assert (s.ready(), *s.columns()) == ("True", None, 100, None, "r2")
    assert [rev.name for rev in live_revisions(s.ks, s.isvc["status"])] == ["sklearn-iris-predictor-00002"]

    s.apply(m2, canary=0)  # rollback
    assert (s.ready(), *s.columns()) == ("True", 100, 0, "r1", "r2")
    # The pinned revision keeps its pod: the route still references it, at min-scale 1 (Knative).
    assert [rev.name for rev in live_revisions(s.ks, s.isvc["status"])] == [
        "sklearn-iris-predictor-00001",
        "sklearn-iris-predictor-00002",
    ]

    s.apply(m2, canary=10, annotations=TAG)  # tag routing creates revision 3
    s.settle()
    p = s.predictor
    assert p["latestCreatedRevision"] == "sklearn-iris-predictor-00003"
    assert p["latestReadyRevision"] == "sklearn-iris-predictor-00003"
    assert p["latestRolledoutRevision"] == "sklearn-iris-predictor-00001"
    assert p["previousRolledoutRevision"] == "sklearn-iris-predictor-00001"
    assert p["url"] == "http://sklearn-iris-predictor.kserve-test.example.com"
    assert p["address"] == {"url": "http://sklearn-iris-predictor.kserve-test.svc.cluster.local"}
    assert s.isvc["status"]["address"] == {"url": "http://sklearn-iris.kserve-test.svc.cluster.local"}
    assert p["traffic"] == [
        {
            "latestRevision": True,
            "percent": 10,
            "revisionName": "sklearn-iris-predictor-00003",
            "tag": "latest",
            "url": "http://latest-sklearn-iris-predictor.kserve-test.example.com",
        },
        {
            "latestRevision": False,
            "percent": 90,
            "revisionName": "sklearn-iris-predictor-00001",
            "tag": "prev",
            "url": "http://prev-sklearn-iris-predictor.kserve-test.example.com",
        },
    ]
    table = routes(s.isvc["status"], "sklearn-iris", "kserve-test")
    assert table["latest-sklearn-iris-predictor.kserve-test.example.com"] == [
        ("kserve-test", "sklearn-iris-predictor-00003", 100)
    ]
    assert table["sklearn-iris.kserve-test.example.com"] == [
        ("kserve-test", "sklearn-iris-predictor-00003", 10),
        ("kserve-test", "sklearn-iris-predictor-00001", 90),
    ]


def test_failed_canary_gets_no_traffic_and_ready_goes_false_until_a_good_revision() -> None:
    s = Sim()
    s.apply(V1)
    s.settle()
    s.apply("gs://m/missing", canary=10)
    s.settle(fail="Missing model file in model directory /x")
    assert s.traffic() == [("r1", True, 10, None), ("r1", False, 90, "prev")]
    assert s.revs() == ("r2", "r1", "r1", None)
    ready = r.condition(s.isvc, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "RevisionFailed"  # type: ignore[index]
    assert 'Revision "my-model-predictor-00002" failed with message: Missing model file' in ready["message"]  # type: ignore[index]
    assert s.isvc["status"]["modelStatus"]["transitionStatus"] == "BlockedByFailedLoad"
    assert [rev.name for rev in live_revisions(s.ks, s.isvc["status"])] == ["my-model-predictor-00001"]
    # canary 0 does not clear it: readiness follows the latest created revision
    s.apply("gs://m/missing", canary=0)
    assert s.ready() == "False"
    # a new good revision does
    s.apply(V2, canary=10)
    s.settle()
    assert s.ready() == "True"
    assert s.traffic() == [("r3", True, 10, None), ("r1", False, 90, "prev")]


def test_revision_that_never_gets_ready_keeps_ready_unknown_and_old_revision_serving() -> None:
    s = Sim()
    s.apply(V1)
    s.settle()
    s.apply(V2, canary=30)
    for _ in range(3):
        s.pass_()
    assert s.ready() == "Unknown"
    assert s.traffic() == [("r1", True, 30, None), ("r1", False, 70, "prev")]
    assert routes(s.isvc["status"], "my-model", "default")["my-model.default.example.com"] == [
        ("default", "my-model-predictor-00001", 100)
    ]


@pytest.mark.parametrize("bad", [150, -10, 101])
def test_out_of_range_percent_after_rollout_is_rejected_whole(bad: int) -> None:
    s = Sim()
    s.apply(V1)
    s.settle()
    before = copy.deepcopy(s.predictor)
    gen = s.ks.generation
    s.apply(V2, canary=bad)  # a new model AND a bad percent: nothing is half-applied
    assert s.ks.generation == gen and len(s.ks.revisions) == 1
    assert s.predictor.get("traffic") == before["traffic"]
    cond = r.condition(s.isvc, "PredictorReady")
    assert cond["status"] == "False" and cond["reason"] == "ReconcileFailed"  # type: ignore[index]
    assert "denied the request" in cond["message"]  # type: ignore[index]
    assert s.ready() == "False"


def test_percent_on_first_creation_is_ignored_then_splits_over_one_revision() -> None:
    s = Sim()
    s.apply(V1, canary=150)  # no rolled-out revision yet: 100% to latest, accepted silently
    assert s.ks.spec_traffic == [{"latestRevision": True, "percent": 100}]
    s.settle()
    s.apply(V1, canary=20)
    s.pass_()
    assert s.traffic() == [("r1", True, 20, None), ("r1", False, 80, "prev")]
    assert s.columns() == (80, 20, "r1", "r1")
    assert s.revs() == ("r1", "r1", "r1", None)  # rollback rule needs a previous revision


def test_only_percent_change_makes_no_revision_and_spec_order_is_latest_first() -> None:
    s = Sim()
    s.apply(V1)
    s.settle()
    s.apply(V2, canary=10)
    s.settle()
    n = len(s.ks.revisions)
    for pct in (20, 50, 90, 100, 0):
        s.apply(V2, canary=pct)
        assert len(s.ks.revisions) == n
    assert s.ks.spec_traffic[0]["latestRevision"] is True


def test_canary_100_promotes_like_removing_the_field() -> None:
    s = Sim()
    s.apply(V1)
    s.settle()
    s.apply(V2, canary=10)
    s.settle()
    s.apply(V2, canary=100)
    assert s.traffic() == [("r2", True, 100, None)]
    assert s.revs() == ("r2", "r2", "r2", "r1")


def test_disallowed_annotations_do_not_make_revisions() -> None:
    s = Sim()
    s.apply(V1, annotations={r.LAST_APPLIED_ANNOTATION: "{}"})
    s.settle()
    s.apply(V1, annotations={r.LAST_APPLIED_ANNOTATION: '{"x": 1}', "modelFormat": "sklearn"})
    assert len(s.ks.revisions) == 1
    s.apply(V1, annotations={"team": "a"})
    assert len(s.ks.revisions) == 2


def test_conditions_keep_transition_time_and_are_sorted() -> None:
    s = Sim()
    s.apply(V1)
    s.settle()
    first = {c["type"]: c["lastTransitionTime"] for c in s.isvc["status"]["conditions"]}
    s.pass_()
    again = {c["type"]: c["lastTransitionTime"] for c in s.isvc["status"]["conditions"]}
    assert first == again
    types = [c["type"] for c in s.isvc["status"]["conditions"]]
    assert types == sorted(types)
    sev = {c["type"]: c.get("severity") for c in s.isvc["status"]["conditions"]}
    assert sev["Ready"] is None and sev["PredictorRouteReady"] == "Info"


def test_state_round_trips_through_json() -> None:
    s = Sim()
    s.apply(V1)
    s.settle()
    s.apply(V2, canary=10)
    restored = KsvcState.from_json(s.ks.to_json())
    assert restored == s.ks


def test_validate_traffic_messages() -> None:
    assert validate_traffic([{"percent": 100}]) is None
    assert "Traffic targets sum to 90, want 100" in (validate_traffic([{"percent": 90}]) or "")
    assert "expected 0 <= 150 <= 100" in (validate_traffic([{"percent": 150}]) or "")


def test_raw_deployment_mode_is_reported_not_pretended() -> None:
    s = Sim()
    s.isvc["metadata"]["annotations"] = {r.DEPLOYMENT_MODE_ANNOTATION: "RawDeployment"}
    s.apply(V1, annotations={r.DEPLOYMENT_MODE_ANNOTATION: "RawDeployment"})
    cond = r.condition(s.isvc, "Ready")
    assert cond["status"] == "False" and cond["reason"] == "UnsupportedDeploymentMode"  # type: ignore[index]
    assert s.ks.revisions == []
