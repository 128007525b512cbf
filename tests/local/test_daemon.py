"""The local cluster as a whole process: CLI contract, restarts after kill -9, end-to-end split."""

from __future__ import annotations

import math
import os
import signal
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from kserve_nb.local import manager

BASE = "/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices"
M1 = "gs://kfserving-examples/models/sklearn/1.0/model"
M2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
ROW = {"instances": [[6.8, 2.8, 4.8, 1.4]]}


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kserve_nb.cli", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )


def api(cluster: manager.LocalCluster) -> httpx.Client:
    token = (cluster.state_dir / "token").read_text().strip()
    ca = ssl.create_default_context(cafile=str(cluster.state_dir / "ca.crt"))
    return httpx.Client(base_url=cluster.api, headers={"Authorization": f"Bearer {token}"}, verify=ca, timeout=30)


def manifest(name: str, uri: str, canary: int | None = None) -> dict[str, Any]:
    predictor: dict[str, Any] = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri}}
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name},
        "spec": {"predictor": predictor},
    }


def wait_for(client: httpx.Client, name: str, check: Any, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    obj: dict[str, Any] = {}
    while time.monotonic() < deadline:
        obj = client.get(f"{BASE}/{name}").json()
        if check(obj):
            return obj
        time.sleep(0.05)
    raise AssertionError(f"{name} never reached the expected state: {obj.get('status')}")


def ready(obj: dict[str, Any]) -> bool:
    conds = {c["type"]: c["status"] for c in (obj.get("status") or {}).get("conditions") or []}
    return conds.get("Ready") == "True"


def split(obj: dict[str, Any]) -> list[tuple[str, int]]:
    traffic = obj["status"]["components"]["predictor"].get("traffic") or []
    return [(e["revisionName"], e["percent"]) for e in traffic]


def model_servers(daemon_pid: int) -> list[psutil.Process]:
    """Every process the daemon started (zygote and revisions run in their own sessions)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "environ"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "zygote_main" in cmd and f", {daemon_pid})" in cmd:
            found.append(proc)
            try:
                found.extend(proc.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
    return found


@pytest.fixture()
def fresh(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "state"
    try:
        yield state
    finally:
        manager.down(state)


def test_cli_up_is_idempotent_env_status_down_and_files_are_private(fresh: Path) -> None:
    out = cli("local", "up", "--state-dir", str(fresh))
    assert out.returncode == 0, out.stderr
    first = manager.status(fresh)
    assert first is not None
    again = cli("local", "up", "--state-dir", str(fresh))
    assert again.returncode == 0 and manager.status(fresh).pid == first.pid  # type: ignore[union-attr]

    env = cli("local", "env", "--state-dir", str(fresh)).stdout.strip()
    assert env.startswith("export KUBECONFIG=") and "INGRESS_HOST=127.0.0.1" in env
    assert f"INGRESS_PORT={first.ingress_port}" in env

    config = yaml.safe_load(first.kubeconfig.read_text())
    assert config["current-context"] == "kserve-nb-local"
    assert "token" in config["users"][0]["user"]
    for name in ("kubeconfig", "token", "tls.key", "endpoint.json"):
        assert stat.S_IMODE((fresh / name).stat().st_mode) == 0o600, name

    assert cli("local", "status", "--state-dir", str(fresh)).returncode == 0
    # No token, no API.
    ca = ssl.create_default_context(cafile=str(fresh / "ca.crt"))
    assert httpx.get(first.api + "/api", verify=ca).status_code == 401
    # Loopback only.
    daemon = psutil.Process(first.pid)
    listening = [
        c.laddr.ip
        for proc in [daemon, *daemon.children(recursive=True)]  # nginx (the ingress) is a child
        for c in proc.connections()
        if c.status == psutil.CONN_LISTEN
    ]
    assert listening and set(listening) == {"127.0.0.1"}

    assert cli("local", "down", "--state-dir", str(fresh)).returncode == 0
    assert manager.status(fresh) is None
    assert cli("local", "status", "--state-dir", str(fresh)).returncode == 1


def test_kill_9_of_the_control_plane_then_up_keeps_every_object_revision_and_split(fresh: Path) -> None:
    cluster = manager.up(fresh)
    with api(cluster) as client:
        client.post(BASE, json=manifest("survivor", M1)).raise_for_status()
        wait_for(client, "survivor", ready)
        client.patch(f"{BASE}/survivor", json=manifest("survivor", M2, canary=30),
                     headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
        before = wait_for(client, "survivor", lambda o: ready(o) and split(o) == [
            ("survivor-predictor-00002", 30), ("survivor-predictor-00001", 70)])
    servers = model_servers(cluster.pid)
    zygote = [p for p in servers if p.ppid() == cluster.pid]
    revisions = list({p.pid: p for p in servers if p not in zygote}.values())  # forks share the cmdline
    assert len(zygote) == 1 and len(revisions) == 2
    if cluster.ingress_proxy == "nginx":
        nginx = [p for p in psutil.Process(cluster.pid).children(recursive=True) if p.name() == "nginx"]
        assert len(nginx) >= 2  # master + worker
        revisions += nginx

    # The control plane goes (the zygote dies with its daemon); the data plane keeps running, as a
    # cluster's pods outlive its control plane (tests/local/test_data_plane.py: and keeps serving).
    os.kill(cluster.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in zygote):
        time.sleep(0.05)
    assert not [p.pid for p in zygote if p.is_running() and p.status() != psutil.STATUS_ZOMBIE], "zygote"
    assert all(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in revisions)

    restarted = manager.up(fresh)
    assert restarted.pid != cluster.pid
    # Adopted by the new daemon, not restarted.
    assert all(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in revisions)
    with api(restarted) as client:
        after = client.get(f"{BASE}/survivor").json()
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
        assert after["status"]["components"]["predictor"] == before["status"]["components"]["predictor"]
        # Serving again, and a further change continues the revision numbering.
        gw = httpx.Client(base_url=restarted.ingress, timeout=10)
        deadline = time.monotonic() + 30
        seen = set()
        while time.monotonic() < deadline and len(seen) < 2:
            resp = gw.post("/v1/models/survivor:predict", json=ROW, headers={"Host": "survivor.default.example.com"})
            if resp.status_code == 200:
                seen.add(resp.headers["x-kserve-revision"])
        assert seen == {"survivor-predictor-00001", "survivor-predictor-00002"}
        client.patch(f"{BASE}/survivor", json={"metadata": {"labels": {"v": "3"}}},
                     headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
        wait_for(client, "survivor", lambda o: o["status"]["components"]["predictor"].get(
            "latestReadyRevision") == "survivor-predictor-00003")


def test_1000_requests_at_a_10_percent_split_land_within_the_binomial_interval(
    local_cluster: manager.LocalCluster,
) -> None:
    with api(local_cluster) as client:
        client.delete(f"{BASE}/splitter")
        client.post(BASE, json=manifest("splitter", M1)).raise_for_status()
        wait_for(client, "splitter", ready)
        client.patch(f"{BASE}/splitter", json=manifest("splitter", M2, canary=10),
                     headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
        wait_for(client, "splitter", lambda o: ready(o) and dict(split(o)).get("splitter-predictor-00002") == 10)
    n, p = 1000, 0.10
    hits = 0
    with httpx.Client(base_url=local_cluster.ingress, timeout=10) as gw:
        for _ in range(n):
            resp = gw.post("/v1/models/splitter:predict", json=ROW, headers={"Host": "splitter.default.example.com"})
            assert resp.status_code == 200
            hits += resp.headers["x-kserve-revision"] == "splitter-predictor-00002"
    # 99.9% two-sided normal interval of Binomial(1000, 0.1): 100 ± 3.29 * sqrt(90) ≈ [69, 131]
    half = 3.2905 * math.sqrt(n * p * (1 - p))
    assert n * p - half <= hits <= n * p + half, hits


def test_a_change_right_after_a_promotion_keeps_the_promotions_bookkeeping(
    local_cluster: manager.LocalCluster,
) -> None:
    # The promotion's status waits (briefly) for the ingress to serve its routes; a change arriving
    # meanwhile must still be reconciled from it: the promoted revision becomes the new `prev`.
    merge = {"Content-Type": "application/merge-patch+json"}
    with api(local_cluster) as client:
        client.delete(f"{BASE}/quick")
        client.post(BASE, json=manifest("quick", M1)).raise_for_status()
        wait_for(client, "quick", ready)
        client.patch(f"{BASE}/quick", json=manifest("quick", M2, canary=10), headers=merge).raise_for_status()
        wait_for(
            client,
            "quick",
            lambda o: ready(o) and split(o) == [("quick-predictor-00002", 10), ("quick-predictor-00001", 90)],
        )
        client.patch(
            f"{BASE}/quick", json={"spec": {"predictor": {"canaryTrafficPercent": None}}}, headers=merge
        ).raise_for_status()
        client.patch(f"{BASE}/quick", json=manifest("quick", M1, canary=20), headers=merge).raise_for_status()
        done = wait_for(client, "quick", lambda o: ready(o) and split(o)[0][0] == "quick-predictor-00003")
        assert split(done) == [("quick-predictor-00003", 20), ("quick-predictor-00002", 80)]
        assert done["status"]["components"]["predictor"]["latestRolledoutRevision"] == "quick-predictor-00002"
        client.delete(f"{BASE}/quick")
