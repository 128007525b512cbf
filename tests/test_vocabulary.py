"""The pure vocabulary the façade and the local cluster share: pod rows, split text, manifests,
and the storageUri pre-flight each kind of cluster answers."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kserve_nb import errors
from kserve_nb.cluster import Cluster, ClusterRef
from kserve_nb.local import tables
from kserve_nb.local.adapter import LocalApiCluster
from kserve_nb.local.manager import LocalCluster
from kserve_nb.manifests import check_percent, check_storage_uri, isvc_manifest, parse_manifest, validate_document
from kserve_nb.pods import POD_COLUMNS, pod_row, pod_state
from kserve_nb.splits import split_text

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2024, 1, 1, 1, 0, 0, tzinfo=UTC)


def _pod(phase: str, kserve_state: dict[str, Any], *, ready: bool = False, init_state: dict[str, Any] | None = None,
         restarts: int = 0, meta: dict[str, Any] | None = None) -> dict[str, Any]:
    # The shape the local controller writes: a storage initializer, the model server and queue-proxy.
    init = init_state or {"terminated": {"exitCode": 0, "reason": "Completed"}}
    return {
        "metadata": {"name": "m-predictor-00001-deployment-x", "creationTimestamp": "2024-01-01T00:00:00Z",
                     "labels": {"serving.knative.dev/revision": "m-predictor-00001"}, **(meta or {})},
        "spec": {"initContainers": [{"name": "storage-initializer"}],
                 "containers": [{"name": "kserve-container"}, {"name": "queue-proxy"}]},
        "status": {
            "phase": phase,
            "conditions": [{"type": "Initialized", "status": "False" if init_state else "True"},
                           {"type": "Ready", "status": "True" if ready else "False"}],
            "initContainerStatuses": [{"name": "storage-initializer", "state": init}],
            "containerStatuses": [
                {"name": "kserve-container", "ready": ready, "restartCount": restarts, "state": kserve_state},
                {"name": "queue-proxy", "ready": ready, "state": {"running": {}} if ready else kserve_state},
            ],
        },
    }


POD_CASES = [
    (_pod("Running", {"running": {}}, ready=True), "2/2", "Running"),
    (_pod("Pending", {"waiting": {"reason": "ContainerCreating"}}), "0/2", "ContainerCreating"),
    (_pod("Running", {"waiting": {"reason": "CrashLoopBackOff"}}, restarts=3), "0/2", "CrashLoopBackOff"),
    (_pod("Pending", {"waiting": {"reason": "PodInitializing"}},
          init_state={"waiting": {"reason": "CrashLoopBackOff"}}), "0/2", "Init:CrashLoopBackOff"),
    (_pod("Running", {"running": {}}, ready=True, meta={"deletionTimestamp": "2024-01-01T00:59:00Z"}),
     "2/2", "Terminating"),
    (_pod("Succeeded", {"terminated": {"exitCode": 0, "reason": "Completed"}}), "0/2", "Completed"),
    (_pod("Failed", {"terminated": {"exitCode": 1, "reason": "Error"}}), "0/2", "Error"),
]


@pytest.mark.parametrize(("pod", "ready", "status"), POD_CASES)
def test_client_pod_rows_and_the_api_table_say_the_same(pod: dict[str, Any], ready: str, status: str) -> None:
    row = pod_row(pod, NOW)
    cells, _ = tables.pod_cells(pod, NOW)
    assert list(row) == list(POD_COLUMNS)
    assert (row["READY"], row["STATUS"]) == (ready, status) == (cells[1], cells[2])
    assert row["AGE"] == cells[4] == "60m"
    assert row["REVISION"] == "m-predictor-00001"
    assert row["RESTARTS"] == pod_state(pod).restarts


def test_restarts_show_when_the_last_one_was() -> None:
    pod = _pod("Running", {"waiting": {"reason": "CrashLoopBackOff"}}, restarts=4)
    pod["status"]["containerStatuses"][0]["lastState"] = {"terminated": {"finishedAt": "2024-01-01T00:58:00Z"}}
    assert pod_state(pod).restarts_text(NOW) == "4 (2m ago)"
    assert pod_row(pod, NOW)["RESTARTS"] == 4


def test_split_text_one_format_everywhere() -> None:
    assert split_text({"r1": 90, "r2": 10}) == "90% r1 + 10% r2"
    assert split_text([("r2", 10), ("r1", 90)]) == "10% r2 + 90% r1"
    assert split_text({"r2": 10, "r1": 90}, biggest_first=True) == "90% r1 + 10% r2"
    assert split_text({"b": 50, "a": 50}, biggest_first=True) == "50% a + 50% b"
    assert split_text({}) == "no traffic"
    assert split_text([], empty="nothing") == "nothing"
    assert split_text(x for x in [("r1 [prev]", 100)]) == "100% r1 [prev]"


def test_manifest_checks() -> None:
    assert check_percent(10) == 10 and check_percent("20") == 20 and check_percent(30.0) == 30
    for bad in (101, -1, True, "x", 1.5):
        with pytest.raises(errors.ValidationError, match="canary percent"):
            check_percent(bad)
    assert check_storage_uri("  gs://b/m ") == "gs://b/m"
    assert check_storage_uri("/models/m") == "/models/m"
    with pytest.raises(errors.ValidationError, match="no supported scheme"):
        check_storage_uri("ftp://b/m")
    docs = parse_manifest("a: 1\n---\n---\nkind: List\nitems: [{b: 2}]\n")
    assert docs == [{"a": 1}, {"b": 2}]
    with pytest.raises(errors.ValidationError, match="malformed YAML at line 1"):
        parse_manifest("a: [")
    validate_document(isvc_manifest("m", "ns", "gs://b/m", canary_percent=10))
    with pytest.raises(errors.ValidationError, match="must be an integer"):
        validate_document(isvc_manifest("m", "ns", "gs://b/m") | {"spec": {"predictor": {"canaryTrafficPercent": "5"}}})


def _api_client() -> Any:
    return client.ApiClient(client.Configuration())


def test_a_real_cluster_checks_only_the_syntax_of_a_storage_uri() -> None:
    cluster = Cluster(_api_client(), ClusterRef("https://example.invalid", "prod", "models", "kubeconfig"))
    try:
        # The model's existence is the storage initializer's business, once a pod starts.
        assert cluster.preflight_storage_uri(" gs://bucket/not-checked-here ") == "gs://bucket/not-checked-here"
        with pytest.raises(errors.ValidationError, match="no supported scheme"):
            cluster.preflight_storage_uri("bucket/model")
    finally:
        cluster.close()


def test_the_local_cluster_looks_the_model_up_in_its_mirror(tmp_path: Path) -> None:
    model = tmp_path / "storage" / "gs" / "bucket" / "model" / "model.joblib"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"")
    local = LocalCluster(state_dir=tmp_path, pid=0, api="https://127.0.0.1:1", ingress_host="127.0.0.1",
                         ingress_port=1, kubeconfig=tmp_path / "kubeconfig")
    ref = ClusterRef("https://127.0.0.1:1", "kserve-nb-local", "default", "local")
    cluster = LocalApiCluster(_api_client(), ref, local)
    try:
        assert cluster.preflight_storage_uri("gs://bucket/model") == "gs://bucket/model"
        with pytest.raises(errors.ValidationError, match=r"^storageUri gs://bucket/missing: .*nothing was applied$"):
            cluster.preflight_storage_uri("gs://bucket/missing")
        with pytest.raises(errors.ValidationError, match="no supported scheme"):
            cluster.preflight_storage_uri("bucket/model")
    finally:
        cluster.close()


def test_the_facade_modules_import_without_a_cycle() -> None:
    code = (
        "import sys, kserve_nb.service\n"
        "assert 'kserve_nb.session' not in sys.modules, 'service imports session'\n"
        "import kserve_nb.manifests, kserve_nb.pods, kserve_nb.splits, kserve_nb.resources\n"
        "local = [m for m in sys.modules if m.startswith('kserve_nb.local')]\n"
        "assert not local, f'the client loaded the local cluster: {local}'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_only_the_local_cluster_reads_its_storage_mirror() -> None:
    # The client asks its Cluster (Cluster.preflight_storage_uri); only the local package, where
    # LocalApiCluster answers for the local cluster, touches the mirror.
    readers = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "kserve_nb").rglob("*.py")
        if "local" not in path.relative_to(ROOT / "kserve_nb").parts[:1]
        and ("kserve_nb.local.storage" in path.read_text() or "from kserve_nb.local import storage" in path.read_text())
    ]
    assert readers == []


def test_the_empty_services_table_has_the_status_tables_columns() -> None:
    from kserve_nb import resources as r
    from kserve_nb.status import ServiceStatus

    assert list(ServiceStatus.from_isvc({"metadata": {"name": "x"}}).table.columns) == list(r.ISVC_TABLE_COLUMNS)
