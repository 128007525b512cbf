"""The local API server driven by real clients: ``kubectl`` 1.32, the ``kubernetes`` client, KServe's SDK.

Status and pods are written straight into the store (there is no controller here), shaped like the
walkthrough's examples, so the printed columns are deterministic except AGE.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kserve_nb.local.store import NAMESPACES

try:  # the helper sits beside this file; import it whether or not tests/ is a package
    from tests.local.conftest_api import CONTEXT, LocalApi, canary_status, isvc_manifest, pod_manifest
except ImportError:  # pragma: no cover - depends on how pytest put this directory on sys.path
    from conftest_api import CONTEXT, LocalApi, canary_status, isvc_manifest, pod_manifest  # type: ignore[no-redef]

NS = "kserve-test"
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
needs_kubectl = pytest.mark.skipif(not os.path.exists(KUBECTL), reason="kubectl is not installed")
AGE = r"\d+s"

STEP1 = """\
apiVersion: "serving.kserve.io/v1beta1"
kind: "InferenceService"
metadata:
  name: "sklearn-iris"
spec:
  predictor:
    model:
      modelFormat:
        name: sklearn
      storageUri: "gs://kfserving-examples/models/sklearn/1.0/model"
"""
STEP2 = """\
apiVersion: "serving.kserve.io/v1beta1"
kind: "InferenceService"
metadata:
  name: "sklearn-iris"
spec:
  predictor:
    canaryTrafficPercent: 10
    model:
      modelFormat:
        name: sklearn
      storageUri: "gs://kfserving-examples/models/sklearn/1.0/model-2"
"""
PROMOTE = STEP2.replace("    canaryTrafficPercent: 10\n", "")
ROLLBACK = STEP2.replace("canaryTrafficPercent: 10", "canaryTrafficPercent: 0")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[LocalApi]:
    server = LocalApi(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def kubectl(api: LocalApi, *args: str, stdin: str | None = None, check: bool = True,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run the real kubectl against the server with an isolated HOME and discovery cache."""
    cmd = [KUBECTL, f"--kubeconfig={api.kubeconfig}", f"--cache-dir={api.tmp_path / 'kube-cache'}", *args]
    result = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout, env=_env(api))
    if check:
        assert result.returncode == 0, f"{' '.join(args)}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result


def _env(api: LocalApi) -> dict[str, str]:
    home = api.tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}


def lines(text: str) -> list[list[str]]:
    """kubectl table output split into whitespace-separated cells (empty cells vanish)."""
    return [line.split() for line in text.strip().splitlines()]


def header_and_row(text: str) -> tuple[str, str]:
    out = text.rstrip("\n").splitlines()
    assert len(out) == 2, text
    return out[0], out[1]


def cell_at(header: str, row: str, column: str) -> str:
    """The text under a column heading (kubectl pads columns, so slice by the heading's offset)."""
    names = re.findall(r"\S+", header)
    starts = [header.index(n) for n in names]
    i = names.index(column)
    end = starts[i + 1] if i + 1 < len(starts) else None
    return row[starts[i]:end].strip()


@pytest.fixture
def ns(api: LocalApi) -> str:
    if os.path.exists(KUBECTL):
        assert kubectl(api, "create", "namespace", NS).stdout.strip() == f"namespace/{NS} created"
    else:
        api.call(api.store.create, NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS},
                                                "status": {"phase": "Active"}})
    return NS


# ================================================================================ kubectl


@needs_kubectl
@pytest.mark.kubectl
def test_kubectl_sees_a_v1_32_server_without_warnings(api: LocalApi) -> None:
    result = kubectl(api, "version")
    assert "Server Version: v1.32.0" in result.stdout
    assert "WARNING" not in result.stderr and result.stderr == ""
    resources = kubectl(api, "api-resources", "--no-headers").stdout
    assert re.search(
        r"^inferenceservices\s+isvc\s+serving.kserve.io/v1beta1\s+true\s+InferenceService$", resources, re.M
    )
    assert re.search(r"^revisions\s+rev\s+serving.knative.dev/v1\s+true\s+Revision$", resources, re.M)


@needs_kubectl
@pytest.mark.kubectl
def test_kubectl_walkthrough_columns_through_apply_canary_promote_rollback(api: LocalApi, ns: str) -> None:
    assert kubectl(api, "apply", "-n", ns, "-f", "-", stdin=STEP1).stdout.strip() == \
        "inferenceservice.serving.kserve.io/sklearn-iris created"
    api.write_status(ns, "sklearn-iris", canary_status(prev=None, latest=(100, 1)))
    header, row = header_and_row(kubectl(api, "get", "isvc", "-n", ns, "sklearn-iris").stdout)
    assert header.split() == ["NAME", "URL", "READY", "PREV", "LATEST", "PREVROLLEDOUTREVISION",
                              "LATESTREADYREVISION", "AGE"]
    assert cell_at(header, row, "PREV") == "" and cell_at(header, row, "PREVROLLEDOUTREVISION") == ""
    assert re.fullmatch(r"sklearn-iris\s+http://sklearn-iris\.kserve-test\.example\.com\s+True\s+100\s+"
                        rf"sklearn-iris-predictor-00001\s+{AGE}", row), row

    # Step 2: a 10% canary (the update path of kubectl apply: a JSON merge patch).
    assert kubectl(api, "apply", "-n", ns, "-f", "-", stdin=STEP2).stdout.strip() == \
        "inferenceservice.serving.kserve.io/sklearn-iris configured"
    api.write_status(ns, "sklearn-iris", canary_status(prev=(90, 1), latest=(10, 2)))
    header, row = header_and_row(kubectl(api, "get", "isvc", "-n", ns, "sklearn-iris").stdout)
    assert re.fullmatch(r"sklearn-iris\s+http://sklearn-iris\.kserve-test\.example\.com\s+True\s+90\s+10\s+"
                        rf"sklearn-iris-predictor-00001\s+sklearn-iris-predictor-00002\s+{AGE}", row), row
    obj = yaml.safe_load(kubectl(api, "get", "isvc", "-n", ns, "sklearn-iris", "-oyaml").stdout)
    assert obj["metadata"]["generation"] == 2
    assert obj["spec"]["predictor"]["canaryTrafficPercent"] == 10
    applied = obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    assert yaml.safe_load(applied)["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert obj["status"]["components"]["predictor"]["traffic"][1]["tag"] == "prev"

    # Promote: the field disappears from the manifest, so apply's patch sets it to null.
    kubectl(api, "apply", "-n", ns, "-f", "-", stdin=PROMOTE)
    obj = yaml.safe_load(kubectl(api, "get", "isvc", "-n", ns, "sklearn-iris", "-oyaml").stdout)
    assert "canaryTrafficPercent" not in obj["spec"]["predictor"] and obj["metadata"]["generation"] == 3

    # Rollback: canaryTrafficPercent 0.
    kubectl(api, "apply", "-n", ns, "-f", "-", stdin=ROLLBACK)
    api.write_status(ns, "sklearn-iris", canary_status(prev=(100, 1), latest=(0, 2)))
    header, row = header_and_row(kubectl(api, "get", "isvc", "-n", ns, "sklearn-iris").stdout)
    assert re.fullmatch(r"sklearn-iris\s+http://sklearn-iris\.kserve-test\.example\.com\s+True\s+100\s+0\s+"
                        rf"sklearn-iris-predictor-00001\s+sklearn-iris-predictor-00002\s+{AGE}", row), row


@needs_kubectl
@pytest.mark.kubectl
def test_kubectl_apply_twice_is_unchanged_and_server_dry_run_stores_nothing(api: LocalApi, ns: str) -> None:
    kubectl(api, "apply", "-n", ns, "-f", "-", stdin=STEP1)
    assert kubectl(api, "apply", "-n", ns, "-f", "-", stdin=STEP1).stdout.strip() == \
        "inferenceservice.serving.kserve.io/sklearn-iris unchanged"
    dry = kubectl(api, "apply", "-n", ns, "--dry-run=server", "-f", "-", stdin=STEP2).stdout.strip()
    assert dry == "inferenceservice.serving.kserve.io/sklearn-iris configured (server dry run)"
    obj = yaml.safe_load(kubectl(api, "get", "isvc", "-n", ns, "sklearn-iris", "-oyaml").stdout)
    assert "canaryTrafficPercent" not in obj["spec"]["predictor"]


@needs_kubectl
@pytest.mark.kubectl
def test_kubectl_server_side_apply(api: LocalApi, ns: str) -> None:
    assert kubectl(api, "apply", "--server-side", "-n", ns, "-f", "-", stdin=STEP2).stdout.strip() == \
        "inferenceservice.serving.kserve.io/sklearn-iris serverside-applied"
    kubectl(api, "apply", "--server-side", "-n", ns, "-f", "-", stdin=PROMOTE)
    obj = yaml.safe_load(kubectl(api, "get", "isvc", "-n", ns, "sklearn-iris", "-oyaml").stdout)
    assert "canaryTrafficPercent" not in obj["spec"]["predictor"]
    conflict = kubectl(api, "apply", "--server-side", "--field-manager=other", "-n", ns, "-f", "-",
                       stdin=STEP1, check=False)
    assert conflict.returncode == 1
    assert conflict.stderr.startswith('error: Apply failed with 1 conflict: conflict with "kubectl": '
                                      ".spec.predictor.model.storageUri")
    kubectl(
        api, "apply", "--server-side", "--force-conflicts", "--field-manager=other", "-n", ns, "-f", "-", stdin=STEP1
    )


@needs_kubectl
@pytest.mark.kubectl
def test_kubectl_legacy_sklearn_manifest_is_defaulted(api: LocalApi, ns: str) -> None:
    legacy = STEP1.replace("    model:\n      modelFormat:\n        name: sklearn\n", "    sklearn:\n")
    assert "sklearn:\n      storageUri" in legacy
    kubectl(api, "apply", "-n", ns, "-f", "-", stdin=legacy)
    spec = yaml.safe_load(kubectl(api, "get", "isvc", "-n", ns, "sklearn-iris", "-oyaml").stdout)["spec"]
    assert spec["predictor"] == {"model": {"modelFormat": {"name": "sklearn"},
                                           "storageUri": "gs://kfserving-examples/models/sklearn/1.0/model"}}


@needs_kubectl
@pytest.mark.kubectl
def test_kubectl_get_all_namespaces_and_empty_namespace(api: LocalApi, ns: str) -> None:
    empty = kubectl(api, "get", "isvc", "-n", ns)
    assert empty.stdout == "" and empty.stderr.strip() == f"No resources found in {ns} namespace."
    kubectl(api, "apply", "-n", ns, "-f", "-", stdin=STEP1)
    out = lines(kubectl(api, "get", "isvc", "-A").stdout)
    assert out[0][:2] == ["NAMESPACE", "NAME"] and out[1][:2] == [ns, "sklearn-iris"]
    assert lines(kubectl(api, "get", "inferenceservices.serving.kserve.io", "-n", ns, "-o", "name").stdout) == [
        ["inferenceservice.serving.kserve.io/sklearn-iris"]]


@needs_kubectl
@pytest.mark.kubectl
def test_kubectl_get_pods_prints_revision_pods(api: LocalApi, ns: str) -> None:
    api.create_pod(pod_manifest("sklearn-iris-predictor-00001-deployment-7965bcc66-grdbq", ns))
    api.create_pod(pod_manifest("sklearn-iris-predictor-00002-deployment-6744dbbd8c-wfghv", ns))
    out = kubectl(api, "get", "pod", "-n", ns).stdout.splitlines()
    assert out[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert re.fullmatch(rf"sklearn-iris-predictor-00001-deployment-7965bcc66-grdbq\s+2/2\s+Running\s+0\s+{AGE}", out[1])
    assert re.fullmatch(
        rf"sklearn-iris-predictor-00002-deployment-6744dbbd8c-wfghv\s+2/2\s+Running\s+0\s+{AGE}", out[2]
    )
    wide = lines(kubectl(api, "get", "pods", "-n", ns, "-o", "wide").stdout)
    assert wide[0] == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED",
        "NODE",
        "READINESS",
        "GATES",
    ]
    assert wide[1][5:] == ["127.0.0.1", "local", "<none>", "<none>"]
    assert kubectl(api, "delete", "pod", "-n", ns, wide[1][0], check=False).returncode != 0


@needs_kubectl
@pytest.mark.kubectl
def test_kubectl_patch_merge_and_json(api: LocalApi, ns: str) -> None:
    kubectl(api, "apply", "-n", ns, "-f", "-", stdin=STEP2)
    out = kubectl(api, "patch", "isvc", "sklearn-iris", "-n", ns, "--type", "merge",
                  "-p", '{"spec":{"predictor":{"canaryTrafficPercent":50}}}').stdout.strip()
    assert out == "inferenceservice.serving.kserve.io/sklearn-iris patched"
    value = kubectl(
        api, "get", "isvc", "sklearn-iris", "-n", ns, "-o", "jsonpath={.spec.predictor.canaryTrafficPercent}"
    )
    assert value.stdout == "50"
    kubectl(api, "patch", "isvc", "sklearn-iris", "-n", ns, "--type", "json",
            "-p", '[{"op":"remove","path":"/spec/predictor/canaryTrafficPercent"}]')
    failed = kubectl(api, "patch", "isvc", "sklearn-iris", "-n", ns, "--type", "json",
                     "-p", '[{"op":"test","path":"/spec/predictor/minReplicas","value":3}]', check=False)
    assert failed.returncode == 1 and "The request is invalid" in failed.stderr
    # kubectl's default patch type is strategic merge, which a CRD refuses with kubectl's usual text.
    smp = kubectl(api, "patch", "isvc", "sklearn-iris", "-n", ns, "-p", "{}", check=False)
    assert "application/strategic-merge-patch+json is not supported by serving.kserve.io/v1beta1, " \
           "Kind=InferenceService" in smp.stderr


@needs_kubectl
@pytest.mark.kubectl
def test_kubectl_apply_errors_read_like_a_real_cluster(api: LocalApi, ns: str) -> None:
    kubectl(api, "apply", "-n", ns, "-f", "-", stdin=STEP1)
    unknown = STEP2.replace("canaryTrafficPercent: 10", "canaryTrafficPercent: 10\n    foo: 1")
    result = kubectl(api, "apply", "-n", ns, "-f", "-", stdin=unknown, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().endswith('error when patching "STDIN": InferenceService in version "v1beta1" cannot '
                                          'be handled as a InferenceService: strict decoding error: unknown field '
                                          '"spec.predictor.foo"')
    created = kubectl(api, "create", "-n", ns, "-f", "-", stdin=unknown.replace("sklearn-iris", "other"), check=False)
    assert created.stderr.strip() == (
        'Error from server (BadRequest): error when creating "STDIN": InferenceService in version "v1beta1" cannot '
        'be handled as a InferenceService: strict decoding error: unknown field "spec.predictor.foo"')
    wrong_type = STEP2.replace("canaryTrafficPercent: 10", 'canaryTrafficPercent: "abc"')
    result = kubectl(api, "apply", "-n", ns, "-f", "-", stdin=wrong_type, check=False)
    assert result.stderr.strip() == (
        'The InferenceService "sklearn-iris" is invalid: spec.predictor.canaryTrafficPercent: Invalid value: '
        '"string": spec.predictor.canaryTrafficPercent in body must be of type integer: "string"')
    bad_yaml = "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata:\n  name: [\n"
    result = kubectl(api, "apply", "-n", ns, "-f", "-", stdin=bad_yaml, check=False)
    assert result.returncode == 1 and "error converting YAML to JSON" in result.stderr
    bad_name = STEP1.replace('name: "sklearn-iris"', 'name: "2-iris"')
    result = kubectl(api, "apply", "-n", ns, "-f", "-", stdin=bad_name, check=False)
    assert 'Error from server (Forbidden): error when creating "STDIN": admission webhook ' \
           '"inferenceservice.kserve-webhook-server.validator" denied the request: the InferenceService "2-iris" ' \
           "is invalid" in result.stderr
    missing_ns = kubectl(api, "apply", "-n", "nope", "-f", "-", stdin=STEP1, check=False)
    assert 'namespaces "nope" not found' in missing_ns.stderr
    assert "Error from server (NotFound)" in kubectl(api, "get", "isvc", "nope", "-n", ns, check=False).stderr


@needs_kubectl
@pytest.mark.kubectl
def test_kubectl_delete(api: LocalApi, ns: str) -> None:
    kubectl(api, "apply", "-n", ns, "-f", "-", stdin=STEP1)
    assert kubectl(api, "delete", "isvc", "sklearn-iris", "-n", ns).stdout.strip() == \
        'inferenceservice.serving.kserve.io "sklearn-iris" deleted'
    assert kubectl(api, "get", "isvc", "-n", ns).stderr.strip() == f"No resources found in {ns} namespace."
    kubectl(api, "create", "configmap", "cfg", "-n", ns, "--from-literal=a=b")
    assert kubectl(api, "delete", "cm", "cfg", "-n", ns).stdout.strip() == 'configmap "cfg" deleted'
    assert kubectl(api, "delete", "namespace", ns).stdout.strip() == f'namespace "{ns}" deleted'
    assert "forbidden" in kubectl(api, "delete", "namespace", "default", check=False).stderr


@needs_kubectl
@pytest.mark.kubectl
def test_kubectl_get_watch_prints_new_rows(api: LocalApi, ns: str) -> None:
    kubectl(api, "apply", "-n", ns, "-f", "-", stdin=STEP1)
    cmd = [KUBECTL, f"--kubeconfig={api.kubeconfig}", f"--cache-dir={api.tmp_path / 'kube-cache'}",
           "get", "isvc", "-n", ns, "-w"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(api))
    output: queue.Queue[str] = queue.Queue()
    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.put(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        assert output.get(timeout=15).split()[0] == "NAME"
        assert output.get(timeout=15).split()[0] == "sklearn-iris"
        api.write_status(ns, "sklearn-iris", canary_status(prev=(90, 1), latest=(10, 2)))
        row = output.get(timeout=15)
        assert re.match(r"sklearn-iris\s+http://sklearn-iris\.kserve-test\.example\.com\s+True\s+90\s+10\s+", row), row
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


@needs_kubectl
@pytest.mark.kubectl
def test_kubectl_wait_for_ready_condition(api: LocalApi, ns: str) -> None:
    kubectl(api, "apply", "-n", ns, "-f", "-", stdin=STEP1)
    cmd = [KUBECTL, f"--kubeconfig={api.kubeconfig}", f"--cache-dir={api.tmp_path / 'kube-cache'}",
           "wait", "--for=condition=Ready", "isvc/sklearn-iris", "-n", ns, "--timeout=20s"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(api))
    try:
        api.write_status(ns, "sklearn-iris", canary_status(ready="False"))
        api.write_status(ns, "sklearn-iris", canary_status(ready="True"))
        out, err = proc.communicate(timeout=25)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.strip() == "inferenceservice.serving.kserve.io/sklearn-iris condition met"
    describe = kubectl(api, "describe", "isvc", "sklearn-iris", "-n", ns).stdout
    assert (
        "Canary Traffic Percent" not in describe and "Latest Ready Revision:  sklearn-iris-predictor-00002" in describe
    )


@needs_kubectl
@pytest.mark.kubectl
def test_kubectl_configmaps_namespaces_and_categories(api: LocalApi, ns: str) -> None:
    kubectl(api, "create", "configmap", "cfg", "-n", ns, "--from-literal=a=b", "--from-literal=c=d")
    assert lines(kubectl(api, "get", "cm", "-n", ns).stdout)[1][:2] == ["cfg", "2"]
    cm = yaml.safe_load(kubectl(api, "get", "cm", "cfg", "-n", ns, "-oyaml").stdout)
    assert cm["data"] == {"a": "b", "c": "d"}
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  a: z\n"
    applied = kubectl(api, "apply", "-n", ns, "-f", "-", stdin=manifest)
    assert applied.stdout.strip() == "configmap/cfg configured"
    assert "missing the kubectl.kubernetes.io/last-applied-configuration annotation" in applied.stderr
    # Without a previous last-applied configuration apply cannot know that c was dropped: it stays.
    assert yaml.safe_load(kubectl(api, "get", "cm", "cfg", "-n", ns, "-oyaml").stdout)["data"] == {"a": "z", "c": "d"}
    kubectl(api, "apply", "-n", ns, "-f", "-", stdin=manifest.replace("a: z", "e: f"))
    assert yaml.safe_load(kubectl(api, "get", "cm", "cfg", "-n", ns, "-oyaml").stdout)["data"] == {"c": "d", "e": "f"}
    namespaces = lines(kubectl(api, "get", "ns").stdout)
    assert [r[:2] for r in namespaces] == [["NAME", "STATUS"], ["default", "Active"], [ns, "Active"],
                                           ["kube-public", "Active"], ["kube-system", "Active"]]
    kubectl(api, "apply", "-n", ns, "-f", "-", stdin=STEP1)
    everything = kubectl(api, "get", "all", "-n", ns).stdout
    assert "inferenceservice.serving.kserve.io/sklearn-iris" in everything
    explain = kubectl(api, "explain", "isvc.spec.predictor.canaryTrafficPercent").stdout
    assert "FIELD: canaryTrafficPercent <integer>" in explain


# ====================================================================== kubernetes client


@pytest.fixture
def k8s(api: LocalApi, ns: str) -> Iterator[Any]:
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(api.kubeconfig), context=CONTEXT, persist_config=False)
    try:
        yield client
    finally:
        client.close()


def test_kubernetes_client_custom_objects_crud(k8s: Any) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    custom = client.CustomObjectsApi(k8s)
    args = ("serving.kserve.io", "v1beta1", NS, "inferenceservices")
    created = custom.create_namespaced_custom_object(*args, body=isvc_manifest(canary=10))
    assert created["metadata"]["generation"] == 1
    got = custom.get_namespaced_custom_object(*args, "sklearn-iris")
    assert got["spec"]["predictor"]["canaryTrafficPercent"] == 10
    listed = custom.list_namespaced_custom_object(*args)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["sklearn-iris"]
    everywhere = custom.list_cluster_custom_object("serving.kserve.io", "v1beta1", "inferenceservices")
    assert len(everywhere["items"]) == 1
    patched = custom.patch_namespaced_custom_object(*args, "sklearn-iris",
                                                    {"spec": {"predictor": {"canaryTrafficPercent": None}}})
    assert "canaryTrafficPercent" not in patched["spec"]["predictor"]
    patched["spec"]["predictor"]["canaryTrafficPercent"] = 30
    replaced = custom.replace_namespaced_custom_object(*args, "sklearn-iris", patched)
    assert replaced["metadata"]["generation"] == 3
    with pytest.raises(ApiException) as conflict:
        custom.replace_namespaced_custom_object(*args, "sklearn-iris", patched)  # stale resourceVersion
    assert conflict.value.status == 409
    status = custom.patch_namespaced_custom_object_status(*args, "sklearn-iris", {"status": canary_status()})
    assert status["status"]["components"]["predictor"]["traffic"][0]["percent"] == 10
    with pytest.raises(ApiException) as exists:
        custom.create_namespaced_custom_object(*args, body=isvc_manifest())
    assert exists.value.status == 409 and "already exists" in exists.value.body
    deleted = custom.delete_namespaced_custom_object(*args, "sklearn-iris")
    assert deleted["metadata"]["name"] == "sklearn-iris"
    with pytest.raises(ApiException) as missing:
        custom.get_namespaced_custom_object(*args, "sklearn-iris")
    assert missing.value.status == 404


def test_kubernetes_client_core_v1(api: LocalApi, k8s: Any) -> None:
    from kubernetes import client

    core = client.CoreV1Api(k8s)
    api.create_pod(pod_manifest("sklearn-iris-predictor-00001-deployment-abc"))
    pods = core.list_namespaced_pod(NS, label_selector="serving.kserve.io/inferenceservice=sklearn-iris")
    assert [p.metadata.name for p in pods.items] == ["sklearn-iris-predictor-00001-deployment-abc"]
    assert pods.items[0].status.container_statuses[0].ready is True
    assert {n.metadata.name for n in core.list_namespace().items} == {"default", "kube-public", "kube-system", NS}
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cfg"), data={"a": "b"})
    core.create_namespaced_config_map(NS, cm)
    assert core.read_namespaced_config_map("cfg", NS).data == {"a": "b"}
    core.patch_namespaced_config_map("cfg", NS, {"data": {"a": "c"}})
    assert core.read_namespaced_config_map("cfg", NS).data == {"a": "c"}
    status = core.delete_namespaced_config_map("cfg", NS)
    assert status.status == "Success"


def test_kubernetes_client_watch_stream_on_custom_objects(api: LocalApi, k8s: Any) -> None:
    from kubernetes import client, watch

    custom = client.CustomObjectsApi(k8s)
    args = ("serving.kserve.io", "v1beta1", NS, "inferenceservices")
    custom.create_namespaced_custom_object(*args, body=isvc_manifest())
    seen: list[tuple[str, Any]] = []
    w = watch.Watch()

    def mutate() -> None:
        custom.patch_namespaced_custom_object(
            *args, "sklearn-iris", {"spec": {"predictor": {"canaryTrafficPercent": 10}}}
        )

    for event in w.stream(custom.list_namespaced_custom_object, *args, timeout_seconds=5):
        seen.append((event["type"], event["object"]["spec"]["predictor"].get("canaryTrafficPercent")))
        if len(seen) == 1:
            threading.Thread(target=mutate).start()
        if len(seen) == 2:
            w.stop()
    assert seen == [("ADDED", None), ("MODIFIED", 10)]


def test_kserve_sdk_client(api: LocalApi, ns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from kubernetes import client as k8s_client

    # KServeClient loads the kubeconfig into the kubernetes package's global default configuration.
    monkeypatch.setattr(k8s_client.Configuration, "_default", None)
    from kserve import (
        KServeClient,
        V1beta1InferenceService,
        V1beta1InferenceServiceSpec,
        V1beta1ModelFormat,
        V1beta1ModelSpec,
        V1beta1PredictorSpec,
    )

    kserve = KServeClient(config_file=str(api.kubeconfig), context=CONTEXT)
    isvc = V1beta1InferenceService(
        api_version="serving.kserve.io/v1beta1", kind="InferenceService",
        metadata=k8s_client.V1ObjectMeta(name="sklearn-iris", namespace=ns),
        spec=V1beta1InferenceServiceSpec(predictor=V1beta1PredictorSpec(
            model=V1beta1ModelSpec(model_format=V1beta1ModelFormat(name="sklearn"),
                                   storage_uri="gs://kfserving-examples/models/sklearn/1.0/model"))),
    )
    created = kserve.create(isvc, namespace=ns)
    assert created["spec"]["predictor"]["model"]["modelFormat"] == {"name": "sklearn"}
    assert kserve.get("sklearn-iris", namespace=ns)["metadata"]["generation"] == 1
    isvc.spec.predictor.canary_traffic_percent = 10
    isvc.spec.predictor.model.storage_uri = "gs://kfserving-examples/models/sklearn/1.0/model-2"
    patched = kserve.patch("sklearn-iris", isvc, namespace=ns)  # a JSON merge patch of the model object
    assert patched["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert kserve.is_isvc_ready("sklearn-iris", namespace=ns) is False
    api.write_status(ns, "sklearn-iris", canary_status())
    assert kserve.is_isvc_ready("sklearn-iris", namespace=ns) is True
    kserve.delete("sklearn-iris", namespace=ns)
    assert kserve.get(namespace=ns)["items"] == []
