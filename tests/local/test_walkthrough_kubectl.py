"""KServe's canary walkthrough, verbatim, with the real kubectl and curl against the local cluster.

Each step is the documented shell text run by bash with ``KUBECONFIG``, ``INGRESS_HOST`` and
``INGRESS_PORT`` from ``kserve-nb local env``; the ``kubectl get isvc`` columns and the ``-oyaml``
status must match the walkthrough (ages and pod hashes aside).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kserve_nb.local import manager

pytestmark = pytest.mark.kubectl

R = "sklearn-iris-predictor-0000"

CREATE = """
kubectl create namespace kserve-test
kubectl apply -n kserve-test -f - <<EOF
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
EOF
"""

CANARY_10 = """
kubectl apply -n kserve-test -f - <<EOF
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
EOF
"""

PROMOTE = CANARY_10.replace("    canaryTrafficPercent: 10\n", "")
ROLLBACK = CANARY_10.replace("canaryTrafficPercent: 10", "canaryTrafficPercent: 0")

TAG_ROUTING = """
kubectl apply -n kserve-test -f - <<EOF
apiVersion: "serving.kserve.io/v1beta1"
kind: "InferenceService"
metadata:
  name: "sklearn-iris"
  annotations:
    serving.kserve.io/enable-tag-routing: "true"
spec:
  predictor:
    canaryTrafficPercent: 10
    model: {modelFormat: {name: sklearn}, storageUri: "gs://kfserving-examples/models/sklearn/1.0/model-2"}
EOF
"""

CURL = """curl -sS -v -H "Host: {host}" \\
  http://${{INGRESS_HOST}}:${{INGRESS_PORT}}/v1/models/sklearn-iris:predict -d @./iris-input.json"""


def parse_table(text: str) -> list[dict[str, str]]:
    """Parse kubectl's column output by header positions (empty cells stay empty)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    rows = []
    for line in lines[1:]:
        cells = {}
        for i, name in enumerate(names):
            end = starts[i + 1] if i + 1 < len(starts) else None
            cells[name] = line[starts[i] : end].strip()
        rows.append(cells)
    return rows


class Shell:
    """bash with the local cluster's environment, in a directory holding iris-input.json."""

    def __init__(self, cluster: manager.LocalCluster, workdir: Path) -> None:
        self.env = {**os.environ, **cluster.env()}
        self.workdir = workdir
        (workdir / "iris-input.json").write_text(
            '{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}'
        )

    def run(self, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, f"{script}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        return proc

    def isvc_row(self) -> dict[str, str]:
        rows = parse_table(self.run("kubectl get isvc -n kserve-test sklearn-iris").stdout)
        assert len(rows) == 1
        return rows[0]

    def wait_row(self, expected: dict[str, str], timeout: float = 30) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        row: dict[str, str] = {}
        while time.monotonic() < deadline:
            row = self.isvc_row()
            if all(row.get(k) == v for k, v in expected.items()):
                return row
            time.sleep(0.1)
        raise AssertionError(f"kubectl get isvc never showed {expected}; last row {row}")

    def isvc_yaml(self) -> dict[str, Any]:
        return yaml.safe_load(self.run("kubectl get isvc -n kserve-test sklearn-iris -oyaml").stdout)

    def pods(self) -> list[dict[str, str]]:
        out = self.run("kubectl get pod -n kserve-test").stdout
        return parse_table(out) if out.strip() else []

    def wait_pods(self, revisions: list[str], timeout: float = 30) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        pods: list[dict[str, str]] = []
        while time.monotonic() < deadline:
            pods = self.pods()
            names = sorted(p["NAME"].split("-deployment-")[0] for p in pods)
            if names == sorted(revisions) and all(
                p["READY"] == "2/2" and p["STATUS"] == "Running" for p in pods
            ):
                return pods
            time.sleep(0.1)
        raise AssertionError(f"pods never became {revisions} 2/2 Running; last: {pods}")

    def curl(self, host: str) -> tuple[dict[str, Any], str]:
        proc = self.run(CURL.format(host=host))
        match = re.search(r"^< x-kserve-revision: (\S+)", proc.stderr, re.M | re.I)
        assert match, proc.stderr
        return json.loads(proc.stdout), match.group(1)


def columns(ready: str, prev: str, latest: str, prevrev: str, latestrev: str) -> dict[str, str]:
    return {
        "URL": "http://sklearn-iris.kserve-test.example.com",
        "READY": ready,
        "PREV": prev,
        "LATEST": latest,
        "PREVROLLEDOUTREVISION": prevrev,
        "LATESTREADYREVISION": latestrev,
    }


def test_walkthrough_verbatim_with_kubectl_and_curl(
    local_cluster: manager.LocalCluster, tmp_path: Path
) -> None:
    sh = Shell(local_cluster, tmp_path)

    # Step 1: the first revision takes 100%.
    sh.run(CREATE)
    row = sh.wait_row(columns("True", "", "100", "", R + "1"))
    assert re.fullmatch(r"\d+s", row["AGE"]), row
    pods = sh.wait_pods([R + "1"])
    assert re.fullmatch(R + r"1-deployment-[a-z0-9]{9,10}-[a-z0-9]{5}", pods[0]["NAME"])

    # Step 2: a 10% canary of model-2.
    sh.run(CANARY_10)
    sh.wait_row(columns("True", "90", "10", R + "1", R + "2"))
    sh.wait_pods([R + "1", R + "2"])  # one pod per revision

    # Step 3: promote.
    sh.run(PROMOTE)
    sh.wait_row(columns("True", "", "100", "", R + "2"))
    sh.wait_pods([R + "2"])

    # Rollback: 100% back on revision 1; revision 2 keeps a 0% entry.
    sh.run(ROLLBACK)
    sh.wait_row(columns("True", "100", "0", R + "1", R + "2"))
    sh.wait_pods([R + "1", R + "2"])  # the pinned revision stays at min-scale 1, as in Knative
    traffic = sh.isvc_yaml()["status"]["components"]["predictor"]["traffic"]
    assert {(e["revisionName"], e["percent"]) for e in traffic} == {(R + "2", 0), (R + "1", 100)}

    # Tag routing: the annotation is copied into the template, so revision 3 appears.
    sh.run(TAG_ROUTING)
    sh.wait_row(columns("True", "90", "10", R + "1", R + "3"))
    status = sh.isvc_yaml()["status"]
    assert status["address"] == {"url": "http://sklearn-iris.kserve-test.svc.cluster.local"}
    predictor = status["components"]["predictor"]
    assert predictor["address"] == {"url": "http://sklearn-iris-predictor.kserve-test.svc.cluster.local"}
    assert predictor["latestCreatedRevision"] == R + "3"
    assert predictor["latestReadyRevision"] == R + "3"
    assert predictor["latestRolledoutRevision"] == R + "1"
    assert predictor["previousRolledoutRevision"] == R + "1"
    assert predictor["url"] == "http://sklearn-iris-predictor.kserve-test.example.com"
    assert predictor["traffic"] == [
        {
            "latestRevision": True,
            "percent": 10,
            "revisionName": R + "3",
            "tag": "latest",
            "url": "http://latest-sklearn-iris-predictor.kserve-test.example.com",
        },
        {
            "latestRevision": False,
            "percent": 90,
            "revisionName": R + "1",
            "tag": "prev",
            "url": "http://prev-sklearn-iris-predictor.kserve-test.example.com",
        },
    ]
    sh.wait_pods([R + "1", R + "3"])

    # Each side called explicitly through the ingress, with the documented curl.
    body, revision = sh.curl("latest-sklearn-iris-predictor.kserve-test.example.com")
    assert revision == R + "3" and body == {"predictions": [1, 1]}
    body, revision = sh.curl("prev-sklearn-iris-predictor.kserve-test.example.com")
    assert revision == R + "1" and body == {"predictions": [1, 1]}

    sh.run("kubectl delete isvc -n kserve-test sklearn-iris")
    deadline = time.monotonic() + 15
    while sh.pods() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sh.pods() == []
