"""Dry runs predict the settled traffic with KServe's own semantics, applying nothing."""

from __future__ import annotations

from kserve_nb.patches import merge_patch, three_way_merge_patch
from kserve_nb.plan import plan
from tests.test_semantics import V1, V2, Sim


def _split(p):  # type: ignore[no-untyped-def]
    return [(e.revision[-1], e.percent, e.latest, e.tag) for e in p.after.traffic]


def _live(s: Sim) -> dict:  # type: ignore[type-arg]
    obj = dict(s.isvc)
    obj["metadata"] = {**obj["metadata"], "resourceVersion": "7"}
    return obj


def test_plan_canary_predicts_new_revision_and_split() -> None:
    s = Sim()
    s.apply(V1)
    s.settle()
    patch = {"spec": {"predictor": {"canaryTrafficPercent": 10, "model": {"storageUri": V2}}}}
    p = plan("canary", _live(s), patch)
    assert p.new_revision == "my-model-predictor-00002"
    assert _split(p) == [("2", 10, True, None), ("1", 90, False, "prev")]
    assert "spec.predictor.model.storageUri" in set(p.changes["field"])
    assert "new revision my-model-predictor-00002" in p.summary()
    assert p._repr_html_().startswith("<div>")


def test_plan_promote_and_rollback_after_promotion() -> None:
    s = Sim()
    s.apply(V1)
    s.settle()
    s.apply(V2, canary=10)
    s.settle()
    promote = plan("promote", _live(s), {"spec": {"predictor": {"canaryTrafficPercent": None}}})
    assert promote.new_revision is None
    assert _split(promote) == [("2", 100, True, None)]
    s.apply(V2)
    rollback = plan("rollback", _live(s), {"spec": {"predictor": {"canaryTrafficPercent": 0}}})
    assert _split(rollback) == [("2", 0, True, None), ("1", 100, False, "prev")]


def test_plan_tag_routing_annotation_makes_a_revision() -> None:
    s = Sim()
    s.apply(V1)
    s.settle()
    patch = {"metadata": {"annotations": {"serving.kserve.io/enable-tag-routing": "true"}},
             "spec": {"predictor": {"canaryTrafficPercent": 20}}}
    p = plan("canary", _live(s), patch)
    assert p.new_revision == "my-model-predictor-00002"
    assert _split(p) == [("2", 20, True, "latest"), ("1", 80, False, "prev")]


def test_merge_patch_rfc7386() -> None:
    assert merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": [1]}) == {
        "a": 1, "b": {"d": 3, "e": 4}, "f": [1]}
    assert merge_patch({"a": [1, 2]}, {"a": [3]}) == {"a": [3]}
    assert merge_patch(1, {"a": None}) == {}


def test_three_way_patch_removes_only_what_was_applied_before() -> None:
    original = {"spec": {"predictor": {"canaryTrafficPercent": 10, "model": {"storageUri": "a"}}}}
    modified = {"spec": {"predictor": {"model": {"storageUri": "a"}}}}
    current = {"spec": {"predictor": {"canaryTrafficPercent": 10, "model": {"storageUri": "a", "runtime": "x"}}},
               "status": {"url": "u"}}
    assert three_way_merge_patch(original, modified, current) == {
        "spec": {"predictor": {"canaryTrafficPercent": None}}}
    assert three_way_merge_patch(modified, modified, current) == {}
