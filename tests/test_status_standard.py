"""Standard-mode client logic without a cluster: status parsing, dry runs, default names, settling.

Statuses come from KServe's own Standard-mode rules (:func:`semantics_standard.reconcile` with the
pods reported ready), shaped as ``docs/standard-mode-canary.md`` describes them.
"""

from __future__ import annotations

from typing import Any

import pytest

from kserve_nb import errors, standard
from kserve_nb import resources as r
from kserve_nb import semantics_standard as std
from kserve_nb.patches import merge_patch
from kserve_nb.plan import plan
from kserve_nb.release_standard import settled as settled_standard
from kserve_nb.status import ServiceStatus

NOW = "2026-01-01T00:00:00Z"


def base_isvc(**predictor: Any) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": "my-model", "namespace": "default", "generation": 1, "resourceVersion": "1",
            "annotations": {
                "serving.kserve.io/deploymentMode": "Standard", "serving.kserve.io/autoscalerClass": "none",
            },
        },
        "spec": {"predictor": {"minReplicas": 2, "model": {"modelFormat": {"name": "sklearn"},
                                                          "storageUri": "gs://m/v1"}, **predictor}},
    }


class Cluster:
    """KServe's rules played forward: reconcile, report every pod of ``ready`` ready, accept routes."""

    def __init__(self) -> None:
        self.state = std.StandardState(uid="u")

    def settle(self, isvc: dict[str, Any], ready: set[str] | None = None) -> dict[str, Any]:
        obj = isvc
        for _ in range(8):
            result = std.reconcile(obj, self.state, NOW)
            obj = {**obj, "status": result.status}
            changed = result.changed
            for rec in list(self.state.deployments.values()):
                if ready is None or rec.name in ready:
                    changed |= self.state.mark_ready(rec.name)
            changed |= self.state.accept_routes()
            if not changed:
                break
        return obj

    def route(self) -> list[tuple[str, int | None]]:
        return [(b.service, b.weight) for b in self.state.backends()]


@pytest.fixture()
def cluster() -> Cluster:
    return Cluster()


@pytest.fixture()
def stable(cluster: Cluster) -> dict[str, Any]:
    return cluster.settle(base_isvc())


def test_stable_only_status(stable: dict[str, Any], cluster: Cluster) -> None:
    st = ServiceStatus.from_isvc(stable, route=cluster.route())
    assert st.standard and st.ready
    assert st.canaries == () and st.stable is not None
    assert (st.stable.deployment, st.stable.storage_uri, st.stable.routed) == ("my-model-predictor", "gs://m/v1", 100)
    assert st.split() == {"my-model-predictor": 100}
    assert st.latest_percent is None and st.latest_revision is None  # kubectl's revision columns are empty
    assert st.summary() == "default/my-model  READY True  100% stable (my-model-predictor)"
    assert list(st.table.columns) == ["NAME", "URL", "READY", "MODE", "STABLE", "CANARIES", "AGE"]
    # kubectl get isvc's own columns (what the services table lines up), revision cells empty
    row = st.kubectl_row.iloc[0]
    assert list(st.kubectl_row.columns) == list(r.ISVC_TABLE_COLUMNS) and row["LATESTREADYREVISION"] == ""
    assert st.spec_observed and st.route_settled and not st.in_canary


def test_canary_not_ready_keeps_its_share_on_the_stable(stable: dict[str, Any], cluster: Cluster) -> None:
    isvc = merge_patch(stable, std.add_canary_patch(stable, "v2", "gs://m/v2", 20))
    isvc = cluster.settle(isvc, ready={"my-model-predictor"})
    st = ServiceStatus.from_isvc(isvc, route=cluster.route())
    v2 = st.side("v2")
    assert v2 is not None and not v2.ready and v2.routed is None and v2.percent == 20
    assert st.ready  # KServe's Ready ignores canaries
    assert st.split() == {"my-model-predictor": 100}
    assert "v2 not ready (20% configured)" in st.summary()
    assert "canary v2 is not ready" in st._repr_html_()


def test_ready_canary_status_html_and_tables(stable: dict[str, Any], cluster: Cluster) -> None:
    isvc = cluster.settle(merge_patch(stable, std.add_canary_patch(stable, "v2", "gs://m/v2", 20)))
    st = ServiceStatus.from_isvc(isvc, route=cluster.route())
    assert [(s.name, s.deployment, s.storage_uri, s.ready, s.percent, s.routed) for s in st.sides] == [
        ("stable", "my-model-predictor", "gs://m/v1", True, 80, 80),
        ("v2", "my-model-v2-predictor", "gs://m/v2", True, 20, 20),
    ]
    assert st.newest_canary is not None and st.newest_canary.name == "v2"
    assert st.summary().endswith("80% stable (my-model-predictor) + 20% v2 (my-model-v2-predictor)")
    assert st.table["CANARIES"][0] == "v2 20%"
    assert list(st.sides_table["routed"]) == [80, 20]
    html = st._repr_html_()
    assert "my-model-v2-predictor" in html and "v2 20%" in html and "kserve-nb-split" in html
    # the same split derived from the status alone (no route read) agrees with the live route
    assert ServiceStatus.from_isvc(isvc).split() == st.split()


def test_stale_route_is_not_settled(stable: dict[str, Any], cluster: Cluster) -> None:
    isvc = cluster.settle(merge_patch(stable, std.add_canary_patch(stable, "v2", "gs://m/v2", 20)))
    old_route = [("my-model-predictor", None)]
    st = ServiceStatus.from_isvc(isvc, route=old_route)
    assert not st.route_settled
    assert st.split() == {"my-model-predictor": 100}  # the live route is the truth about where requests go


def test_status_that_lags_the_spec_is_not_observed(stable: dict[str, Any]) -> None:
    patched = merge_patch(stable, std.add_canary_patch(stable, "v2", "gs://m/v2", 20))
    assert not ServiceStatus.from_isvc(patched).spec_observed  # canaryStatuses does not name v2 yet


def test_promotion_status_names_the_new_stable(stable: dict[str, Any], cluster: Cluster) -> None:
    isvc = cluster.settle(merge_patch(stable, std.add_canary_patch(stable, "v2", "gs://m/v2", 20)))
    promoted = cluster.settle(merge_patch(isvc, std.promote_patch(isvc, "v2")))
    st = ServiceStatus.from_isvc(promoted, route=cluster.route())
    assert st.stable is not None and st.stable.deployment == "my-model-v2-predictor"
    assert st.stable.storage_uri == "gs://m/v2" and st.canaries == ()
    assert st.spec_observed and st.split() == {"my-model-v2-predictor": 100}
    # just after the patch, the status still names the old stable's URL: not observed yet
    assert not ServiceStatus.from_isvc(merge_patch(isvc, std.promote_patch(isvc, "v2"))).spec_observed


def test_next_canary_name() -> None:
    isvc = base_isvc()
    assert standard.next_canary_name(isvc) == "v2"
    with_v2 = merge_patch(isvc, std.add_canary_patch(isvc, "v2", "gs://m/v2", 10))
    assert standard.next_canary_name(with_v2) == "v3"
    promoted = merge_patch(with_v2, std.promote_patch(with_v2, "v2"))
    assert standard.next_canary_name(promoted) == "v3"  # the stable's name counts
    named = merge_patch(isvc, std.add_canary_patch(isvc, "candidate", "gs://m/x", 10))
    assert standard.next_canary_name(named) == "v2"


def test_dry_run_of_a_canary(stable: dict[str, Any], cluster: Cluster) -> None:
    before = ServiceStatus.from_isvc(stable, route=cluster.route())
    body = std.add_canary_patch(stable, "v2", "gs://m/v2", 20)
    p = plan("canary", stable, body, before=before)
    assert p.standard and p.new_revision is None
    assert p.new_deployments == ("my-model-v2-predictor",) and p.removed_deployments == ()
    assert p.after.split() == {"my-model-predictor": 80, "my-model-v2-predictor": 20}
    assert p.summary() == (
        "dry run of canary on default/my-model: new Deployment my-model-v2-predictor; traffic → "
        "80% stable (my-model-predictor) + 20% v2 (my-model-v2-predictor) (canaries assumed ready)"
    )
    assert list(p.traffic.columns) == ["when", "side", "deployment", "storageUri", "percent", "routed"]
    # KServe's sizing: the stable (minReplicas 2) gives up the ready canary's one replica
    assert p.workloads.to_dict("records") == [
        {"deployment": "my-model-predictor", "side": "stable", "storageUri": "gs://m/v1", "replicas": 1},
        {"deployment": "my-model-v2-predictor", "side": "v2", "storageUri": "gs://m/v2", "replicas": 1},
    ]
    assert "spec.canary" in set(p.changes["field"])
    assert "my-model-v2-predictor" in p._repr_html_()


def test_dry_runs_of_promote_and_rollback(stable: dict[str, Any], cluster: Cluster) -> None:
    isvc = cluster.settle(merge_patch(stable, std.add_canary_patch(stable, "v2", "gs://m/v2", 20)))
    before = ServiceStatus.from_isvc(isvc, route=cluster.route())
    promote = plan("promote", isvc, std.promote_patch(isvc, "v2"), before=before)
    assert promote.after.split() == {"my-model-v2-predictor": 100}
    assert promote.removed_deployments == ("my-model-predictor",) and promote.new_deployments == ()
    rollback = plan("rollback", isvc, std.rollback_patch(isvc), before=before)
    assert rollback.after.split() == {"my-model-predictor": 100}
    assert rollback.removed_deployments == ("my-model-v2-predictor",)


def test_dry_run_refused_as_the_webhook_would(stable: dict[str, Any]) -> None:
    # A hand-made patch the client's builders would never produce: the plan replays the webhook.
    body = {"spec": {"canary": [
        {"predictor": {"name": "v2", "model": {"storageUri": "gs://m/v2"}}, "trafficPercent": 60},
        {"predictor": {"name": "v3", "model": {"storageUri": "gs://m/v3"}}, "trafficPercent": 50},
    ]}}
    with pytest.raises(errors.ValidationError, match=r"sum of canary trafficPercent values \(110\) must be <= 100"):
        plan("canary", stable, body)


def test_settled_predicate(stable: dict[str, Any], cluster: Cluster) -> None:
    settled = settled_standard("v2")
    patched = merge_patch(stable, std.add_canary_patch(stable, "v2", "gs://m/v2", 20))
    assert not settled(ServiceStatus.from_isvc(patched, route=cluster.route()), None)  # status lags
    starting = cluster.settle(patched, ready={"my-model-predictor"})
    assert not settled(ServiceStatus.from_isvc(starting, route=cluster.route()), None)  # v2 not ready
    done = cluster.settle(starting)
    assert not settled(ServiceStatus.from_isvc(done, route=[("my-model-predictor", None)]), None)  # old route
    assert settled(ServiceStatus.from_isvc(done, route=cluster.route()), None)
    rolled = cluster.settle(merge_patch(done, std.rollback_patch(done)))
    assert settled_standard(None)(ServiceStatus.from_isvc(rolled, route=cluster.route()), None)


def test_knative_status_is_unchanged() -> None:
    isvc = {
        "metadata": {"name": "x", "namespace": "ns"},
        "spec": {"predictor": {"model": {"storageUri": "gs://a"}, "canaryTrafficPercent": 10}},
        "status": {"components": {"predictor": {"traffic": [
            {"revisionName": "x-predictor-00002", "percent": 10, "latestRevision": True, "tag": "latest"},
            {"revisionName": "x-predictor-00001", "percent": 90, "latestRevision": False, "tag": "prev"},
        ]}}},
    }
    st = ServiceStatus.from_isvc(isvc)
    assert not st.standard and st.sides == () and st.canaries == ()
    assert st.split() == {"x-predictor-00002": 10, "x-predictor-00001": 90}
    assert "PREV" in st.table.columns


def test_the_local_ingress_routes_each_side_on_its_service_host(stable: dict[str, Any], cluster: Cluster) -> None:
    # An unnamed stable's component host is the weighted predictor host: the side hosts never are.
    isvc = cluster.settle(merge_patch(stable, std.add_canary_patch(stable, "v2", "gs://m/v2", 20)))
    table = std.ingress_routes(isvc, cluster.state)
    st = ServiceStatus.from_isvc(isvc, route=cluster.route())
    stable_side, v2 = st.stable, st.side("v2")
    assert stable_side is not None and v2 is not None
    assert table[standard.side_host(st, stable_side)] == [("default", "my-model-predictor", 100)]
    assert table[standard.side_host(st, v2)] == [("default", "my-model-v2-predictor", 100)]
    assert standard.side_host(st, stable_side) == "my-model-predictor.default.svc.cluster.local"
    assert len(table["my-model-predictor-default.example.com"]) == 2  # the weighted route
    assert standard.side_hosts(st, stable_side) == ["my-model-predictor.default.svc.cluster.local"]
    assert standard.side_hosts(st, v2)[0] == "my-model-v2-predictor-default.example.com"


def test_no_route_before_the_stable_is_ready(cluster: Cluster) -> None:
    starting = cluster.settle(base_isvc(), ready=set())
    st = ServiceStatus.from_isvc(starting)  # no route to read: KServe writes none before PredictorReady
    assert st.stable is not None and not st.stable.ready and st.stable.routed is None
    assert st.split() == {} and "no route yet" in st.summary()
