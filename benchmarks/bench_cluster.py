"""Local cluster benchmarks, measured side by side in one run.

- cold start of the local cluster (``kserve-nb local up`` to API + ingress answering);
- API latency: GET and JSON merge PATCH of an InferenceService (p50/p99 over loopback);
- apply → canary serving: from sending the canary patch until the new revision answers on its
  ``latest-`` URL through the ingress (the x-kserve-revision header names it);
- the same release step through the façade in Knative mode (a new revision on ``latest-``) and in
  Standard mode (a ``spec.canary[]`` Deployment behind the HTTPRoute's weights);
- kubectl: wall time of ``kubectl get isvc`` (the real binary, for scale).

Run: ``.venv/bin/python benchmarks/bench_cluster.py`` (loopback only, bounded).
"""

from __future__ import annotations

import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kserve_nb.local import manager

M = ["gs://kfserving-examples/models/sklearn/1.0/model", "gs://kfserving-examples/models/sklearn/1.0/model-2"]
NS = "default"
BASE = "/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def manifest(name: str, uri: str) -> dict:  # type: ignore[type-arg]
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "annotations": {"serving.kserve.io/enable-tag-routing": "true"}},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri}}},
    }


def wait_ready(api: httpx.Client, name: str, timeout: float = 30) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = api.get(f"{BASE}/{name}").json()
        conds = {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}
        if conds.get("Ready") == "True":
            return obj
        time.sleep(0.01)
    raise SystemExit(f"{name} not ready in {timeout}s")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cluster = manager.up(Path(tmp) / "state")
        cold = time.perf_counter() - t0
        token = (cluster.state_dir / "token").read_text().strip()
        ca = ssl.create_default_context(cafile=str(cluster.state_dir / "ca.crt"))
        api = httpx.Client(
            base_url=cluster.api, headers={"Authorization": f"Bearer {token}"}, timeout=30, verify=ca
        )
        gw = httpx.Client(base_url=cluster.ingress, timeout=10)
        try:
            api.post(BASE, json=manifest("bench", M[0])).raise_for_status()
            wait_ready(api, "bench")

            gets, patches = [], []
            for _ in range(300):
                s = time.perf_counter()
                api.get(f"{BASE}/bench").raise_for_status()
                gets.append((time.perf_counter() - s) * 1000)
            for i in range(100):
                s = time.perf_counter()
                api.patch(
                    f"{BASE}/bench",
                    # last-applied is not copied into the revision template: no new revision
                    json={"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": str(i)}}},
                    headers={"Content-Type": "application/merge-patch+json"},
                ).raise_for_status()
                patches.append((time.perf_counter() - s) * 1000)

            serving = []
            host = "latest-bench-predictor.default.example.com"
            for i in range(6):
                uri = M[(i + 1) % 2]
                before = api.get(f"{BASE}/bench").json()["status"]["components"]["predictor"]["latestCreatedRevision"]
                number = int(before.rsplit("-", 1)[1]) + 1
                # Each step also flips a label in the template, so every step is a new revision.
                body = {"metadata": {"labels": {"step": str(i)}},
                        "spec": {"predictor": {"canaryTrafficPercent": 10, "model": {"storageUri": uri}}}}
                s = time.perf_counter()
                api.patch(
                    f"{BASE}/bench", json=body, headers={"Content-Type": "application/merge-patch+json"}
                ).raise_for_status()
                want = f"bench-predictor-{number:05d}"
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    resp = gw.post("/v1/models/bench:predict", headers={"Host": host},
                                   json={"instances": [[6.8, 2.8, 4.8, 1.4]]})
                    if resp.status_code == 200 and resp.headers.get("x-kserve-revision") == want:
                        break
                    time.sleep(0.002)
                serving.append((time.perf_counter() - s) * 1000)
                api.patch(f"{BASE}/bench", json={"spec": {"predictor": {"canaryTrafficPercent": None}}},
                          headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
                wait_ready(api, "bench")

            # The same through the façade: Service.canary() returns once the new revision is ready
            # and the split is in place (its own wait), then the first answer on latest-.
            import kserve_nb

            session = kserve_nb.connect(local=True, state_dir=cluster.state_dir, namespace=NS)
            svc = session.service("bench")
            facade = []
            for _ in range(4):
                other = M[1] if svc.status().storage_uri == M[0] else M[0]  # always a new revision
                s = time.perf_counter()
                svc.canary(other, 10, tag_routing=True)
                svc.predict({"instances": [[6.8, 2.8, 4.8, 1.4]]}, to="latest")
                facade.append((time.perf_counter() - s) * 1000)
                svc.promote()

            # The same release step on a Standard-mode service (spec.canary[]: a new Deployment
            # and the HTTPRoute's weights instead of a Knative revision), side by side.
            std_manifest = manifest("bench-std", M[0])
            std_manifest["metadata"]["annotations"] = {"serving.kserve.io/deploymentMode": "Standard"}
            api.post(BASE, json=std_manifest).raise_for_status()
            wait_ready(api, "bench-std")
            std = session.service("bench-std")
            standard = []
            for _ in range(4):
                other = M[1] if std.status().storage_uri == M[0] else M[0]
                s = time.perf_counter()
                std.canary(other, 10)
                std.predict({"instances": [[6.8, 2.8, 4.8, 1.4]]}, to="latest")
                standard.append((time.perf_counter() - s) * 1000)
                std.promote()
            session.close()

            kubectl = []
            for _ in range(5):
                s = time.perf_counter()
                subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), "get", "isvc", "bench"],
                               check=True, capture_output=True, timeout=30)
                kubectl.append((time.perf_counter() - s) * 1000)
        finally:
            api.close()
            gw.close()
            manager.down(cluster.state_dir)

    print("local cluster")
    print(f"  cold start (local up → API and ingress answer)   {cold * 1000:8.0f} ms")
    print(f"  API GET isvc        p50 {pct(gets, .5):6.2f} ms   p99 {pct(gets, .99):6.2f} ms   (n={len(gets)})")
    print(
        f"  API PATCH isvc      p50 {pct(patches, 0.5):6.2f} ms   p99 {pct(patches, 0.99):6.2f} ms   (n={len(patches)})"
    )
    print(f"  apply → canary serving on latest-  median {statistics.median(serving):6.0f} ms   "
          f"max {max(serving):6.0f} ms   (n={len(serving)})")
    print(f"  Service.canary() → first answer on latest-  median {statistics.median(facade):6.0f} ms   "
          f"max {max(facade):6.0f} ms   (n={len(facade)})")
    print(f"  Standard mode: Service.canary() → first answer on the canary side  median "
          f"{statistics.median(standard):6.0f} ms   max {max(standard):6.0f} ms   (n={len(standard)}; "
          f"{statistics.median(standard) / statistics.median(facade):.2f}× Knative mode)")
    print(f"  kubectl get isvc (whole command)    median {statistics.median(kubectl):6.0f} ms")


if __name__ == "__main__":
    main()
