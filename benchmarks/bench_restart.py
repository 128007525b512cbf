"""Serving through a control-plane restart: kill -9 of the local cluster's daemon, then `local up`.

Run: ``.venv/bin/python benchmarks/bench_restart.py [--concurrency 16] [--phase 2]``

Starts a local cluster (private state dir, nginx ingress) with a 30/70 canary, drives predictions
through the ingress from ``--concurrency`` keep-alive clients, kills the daemon with SIGKILL, waits
``--phase`` seconds, runs ``local up`` (which adopts nginx and the model servers), and prints per
phase the answers, the failures and the throughput next to the steady-state throughput (ratio).
Loopback only; everything is stopped with ``local down`` at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from kserve_nb.local import manager

M1 = "gs://kfserving-examples/models/sklearn/1.0/model"
M2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
ROW = {"instances": [[6.8, 2.8, 4.8, 1.4]]}
BASE = "/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices"


def _canary(cluster: manager.LocalCluster) -> None:
    import ssl

    token = (cluster.state_dir / "token").read_text().strip()
    ca = ssl.create_default_context(cafile=str(cluster.state_dir / "ca.crt"))
    with httpx.Client(base_url=cluster.api, headers={"Authorization": f"Bearer {token}"}, verify=ca, timeout=30) as api:
        def isvc(uri: str, canary: int | None = None) -> dict:
            predictor: dict = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri}}
            if canary is not None:
                predictor["canaryTrafficPercent"] = canary
            return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                    "metadata": {"name": "bench"}, "spec": {"predictor": predictor}}

        def wait(check: object) -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                status = api.get(f"{BASE}/bench").json().get("status") or {}
                if check(status):  # type: ignore[operator]
                    return
                time.sleep(0.05)
            raise SystemExit("the InferenceService never became ready")

        def ready(status: dict) -> bool:
            return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])

        api.post(BASE, json=isvc(M1)).raise_for_status()
        wait(ready)
        api.patch(f"{BASE}/bench", json=isvc(M2, 30),
                  headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
        wait(lambda s: ready(s) and len(s["components"]["predictor"].get("traffic") or []) == 2)


async def _drive(cluster: manager.LocalCluster, concurrency: int, phase: float) -> None:
    answers: list[tuple[float, object]] = []
    stop = asyncio.Event()

    async def client() -> None:
        async with httpx.AsyncClient(base_url=cluster.ingress, timeout=10) as c:
            while not stop.is_set():
                try:
                    r = await c.post(
                        "/v1/models/bench:predict", json=ROW, headers={"Host": "bench.default.example.com"}
                    )
                    answers.append((time.monotonic(), r.status_code))
                except httpx.HTTPError as e:
                    answers.append((time.monotonic(), type(e).__name__))

    tasks = [asyncio.create_task(client()) for _ in range(concurrency)]
    t0 = time.monotonic()
    await asyncio.sleep(phase)
    t1 = time.monotonic()
    os.kill(cluster.pid, signal.SIGKILL)
    await asyncio.sleep(phase)
    t2 = time.monotonic()
    await asyncio.get_running_loop().run_in_executor(None, manager.up, cluster.state_dir)
    t3 = time.monotonic()
    await asyncio.sleep(phase)
    t4 = time.monotonic()
    stop.set()
    await asyncio.gather(*tasks)

    def rate(a: float, b: float) -> float:
        return sum(1 for t, _ in answers if a <= t < b) / (b - a)

    steady = rate(t0, t1)
    print(f"concurrency {concurrency}: {len(answers)} answers, {Counter(s for _, s in answers)}")
    print(f"{'phase':<28}{'s':>6}{'answers':>9}{'failed':>8}{'req/s':>9}{'vs steady':>11}")
    for name, a, b in (("steady (daemon up)", t0, t1), ("daemon killed, not running", t1, t2),
                       ("`local up` (adopting)", t2, t3), ("after the restart", t3, t4)):
        window = [s for t, s in answers if a <= t < b]
        failed = sum(1 for s in window if s != 200)
        print(f"{name:<28}{b - a:>6.2f}{len(window):>9}{failed:>8}{rate(a, b):>9.0f}{rate(a, b) / steady:>10.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--phase", type=float, default=2.0, help="seconds per phase")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-restart-") as tmp:
        state = Path(tmp) / "state"
        cluster = manager.up(state)
        try:
            if cluster.ingress_proxy != "nginx":
                raise SystemExit("needs nginx: the Python gateway alone lives in the daemon and dies with it")
            _canary(cluster)
            asyncio.run(_drive(cluster, args.concurrency, args.phase))
        finally:
            manager.down(state)


if __name__ == "__main__":
    main()
