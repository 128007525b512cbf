"""The data plane outlives the control plane: kill -9 of the daemon under load, then re-adoption.

A real local cluster in a private state dir, real nginx, real model servers, real HTTP on 127.0.0.1.
Every wait is bounded; every process a test starts is stopped by it (``local down``, checked).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from kserve_nb.local import dataplane, manager
from kserve_nb.local.nginx import INGRESS_ENV
from kserve_nb.local.prometheus import find_prometheus

from .test_daemon import BASE, M1, M2, ROW, api, cli, manifest, ready, split, wait_for

MERGE = {"Content-Type": "application/merge-patch+json"}
NAME = "steady"
HOST = f"{NAME}.default.example.com"
R1, R2 = f"{NAME}-predictor-00001", f"{NAME}-predictor-00002"


class Load:
    """A bounded loop of predictions through the ingress on its own thread, every answer recorded."""

    def __init__(self, ingress: str, host: str, limit_seconds: float = 120) -> None:
        self.answers: list[tuple[float, int, str]] = []  # (monotonic time, status, revision or error)
        self._ingress, self._host, self._limit = ingress, host, limit_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        deadline = time.monotonic() + self._limit
        with httpx.Client(base_url=self._ingress, timeout=10) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    resp = client.post(f"/v1/models/{NAME}:predict", json=ROW, headers={"Host": self._host})
                    self.answers.append((time.monotonic(), resp.status_code, resp.headers.get("x-kserve-revision", "")))
                except httpx.HTTPError as e:
                    self.answers.append((time.monotonic(), 0, repr(e)))

    def between(self, start: float, end: float) -> list[tuple[float, int, str]]:
        return [a for a in self.answers if start <= a[0] <= end]

    def wait_for_more(self, n: int, timeout: float = 30) -> None:
        target = len(self.answers) + n
        deadline = time.monotonic() + timeout
        while len(self.answers) < target and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(self.answers) >= target, f"the load loop stalled at {len(self.answers)} answers"


@pytest.fixture()
def fresh(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "state"
    try:
        yield state
    finally:
        manager.down(state)


def _nginx_cluster(state: Path) -> manager.LocalCluster:
    cluster = manager.up(state)
    if cluster.ingress_proxy != "nginx":
        manager.down(state)
        pytest.skip("needs nginx: the Python gateway alone lives in the daemon and dies with it")
    return cluster


def _canary(cluster: manager.LocalCluster) -> None:
    with api(cluster) as client:
        client.post(BASE, json=manifest(NAME, M1)).raise_for_status()
        wait_for(client, NAME, ready)
        client.patch(f"{BASE}/{NAME}", json=manifest(NAME, M2, canary=30), headers=MERGE).raise_for_status()
        wait_for(client, NAME, lambda o: ready(o) and split(o) == [(R2, 30), (R1, 70)])


def _servers(state: Path) -> dict[str, tuple[int, int, int]]:
    """revision → (pid, port, restarts), from the runtime record."""
    record = dataplane.read(state / dataplane.RUNTIME_RECORD) or {}
    return {e["revision"]: (e["pid"], e["port"], e["restarts"]) for e in record.get("revisions") or []}


def _nginx(state: Path) -> list[psutil.Process]:
    record = dataplane.read(state / dataplane.INGRESS_RECORD) or {}
    master = psutil.Process(record["pid"])
    return [master, *master.children()]


def _zygote(daemon_pid: int) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(daemon_pid).children() if "zygote_main" in " ".join(p.cmdline())]
    except psutil.NoSuchProcess:
        return []


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pids: list[int], timeout: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _kill_daemon(cluster: manager.LocalCluster) -> None:
    os.kill(cluster.pid, signal.SIGKILL)
    assert _wait_gone([cluster.pid]) == []


def test_requests_to_ready_revisions_never_fail_across_a_kill_9_of_the_daemon_and_the_next_up(fresh: Path) -> None:
    cluster = _nginx_cluster(fresh)
    _canary(cluster)
    servers, nginx = _servers(fresh), _nginx(fresh)
    assert set(servers) == {R1, R2}
    zygote = _zygote(cluster.pid)
    assert len(zygote) == 1

    with Load(cluster.ingress, HOST) as load:
        load.wait_for_more(50)
        killed = time.monotonic()
        _kill_daemon(cluster)
        load.wait_for_more(100)  # served while no control plane runs
        # What only the Python gateway (in the daemon) answers is a clear 503 meanwhile.
        unknown = httpx.get(cluster.ingress + "/", headers={"Host": "nope.example.com"}, timeout=10)
        assert unknown.status_code == 503 and "kserve-nb local up" in unknown.json()["error"]
        up_at = time.monotonic()
        restarted = manager.up(fresh)
        back = time.monotonic()
        load.wait_for_more(50)
    answers = load.answers
    failed = [a for a in answers if a[1] != 200]
    assert failed == [], f"{len(failed)} of {len(answers)} requests failed: {failed[:5]}"
    assert {a[2] for a in load.between(killed, up_at)} == {R1, R2}
    assert {a[2] for a in load.between(up_at, back)}, "no request was answered while the daemon started"

    # Adopted: the same processes on the same ports, none restarted; the ingress did not move.
    assert restarted.pid != cluster.pid
    assert restarted.ingress_port == cluster.ingress_port
    assert _servers(fresh) == servers
    assert all(restarts == 0 for _, _, restarts in servers.values())
    assert [p.pid for p in _nginx(fresh)][0] == nginx[0].pid
    assert _wait_gone([p.pid for p in zygote]) == []  # the old zygote (control plane) died with its daemon
    with api(restarted) as client:
        pods = client.get("/api/v1/namespaces/default/pods").json()["items"]
        assert sorted(p["metadata"]["labels"]["serving.knative.dev/revision"] for p in pods) == [R1, R2]
        assert all(s["restartCount"] == 0 for p in pods for s in p["status"]["containerStatuses"])

        # The API and the controller work again: a canary step, then a promotion.
        client.patch(f"{BASE}/{NAME}", json={"spec": {"predictor": {"canaryTrafficPercent": 50}}},
                     headers=MERGE).raise_for_status()
        wait_for(client, NAME, lambda o: ready(o) and split(o) == [(R2, 50), (R1, 50)])
        client.patch(f"{BASE}/{NAME}", json={"spec": {"predictor": {"canaryTrafficPercent": None}}},
                     headers=MERGE).raise_for_status()
        wait_for(client, NAME, lambda o: ready(o) and split(o) == [(R2, 100)])
    with httpx.Client(base_url=restarted.ingress, timeout=10) as gw:
        seen = Counter(
            gw.post(f"/v1/models/{NAME}:predict", json=ROW, headers={"Host": HOST}).headers["x-kserve-revision"]
            for _ in range(20)
        )
    assert seen == {R2: 20}
    assert _servers(fresh)[R2][:2] == servers[R2][:2]  # the promoted revision is still the adopted process

    everything = [restarted.pid, *(p.pid for p in _zygote(restarted.pid)), *(p.pid for p in _nginx(fresh)),
                  *(pid for pid, _, _ in _servers(fresh).values()), *(pid for pid, _, _ in servers.values())]
    assert manager.down(fresh)
    assert _wait_gone(everything) == []
    assert not (fresh / dataplane.RUNTIME_RECORD).exists() and not (fresh / dataplane.INGRESS_RECORD).exists()


def test_down_without_a_daemon_stops_the_data_plane_and_never_a_foreign_process(fresh: Path) -> None:
    cluster = _nginx_cluster(fresh)
    _canary(cluster)
    servers, nginx = _servers(fresh), _nginx(fresh)
    for name in (dataplane.RUNTIME_RECORD, dataplane.INGRESS_RECORD):
        assert (fresh / name).stat().st_mode & 0o777 == 0o600
    mine = [p.pid for p in nginx] + [pid for pid, _, _ in servers.values()]
    if find_prometheus() is not None:
        mine.append(manager.ensure_prometheus(fresh).pid)
    _kill_daemon(cluster)
    assert all(_alive(p) for p in mine)  # still serving
    status = cli("local", "status", "--state-dir", str(fresh))
    assert status.returncode == 1 and "data plane still serves" in status.stdout and "local down" in status.stdout

    # Two unrelated processes: one under a recorded pid with another start time, one with the
    # recorded start time but another command line. Neither may be signalled, by `up` or `down`.
    foreign = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) for _ in range(2)]
    try:
        record = json.loads((fresh / dataplane.RUNTIME_RECORD).read_text())
        first = dict(record["revisions"][0])
        record["revisions"] += [
            {**first, "revision": f"{NAME}-predictor-00009", "pid": foreign[0].pid, "started": 1.0},
            {**first, "revision": f"{NAME}-predictor-00008", "pid": foreign[1].pid,
             "started": psutil.Process(foreign[1].pid).create_time()},
        ]
        (fresh / dataplane.RUNTIME_RECORD).write_text(json.dumps(record))
        restarted = manager.up(fresh)
        assert _servers(fresh) == servers  # the real ones adopted, the foreign ones ignored
        os.kill(restarted.pid, signal.SIGKILL)
        assert _wait_gone([restarted.pid]) == []
        (fresh / dataplane.RUNTIME_RECORD).write_text(json.dumps(record))

        assert manager.down(fresh)  # no daemon runs: the recorded data plane is stopped all the same
        assert _wait_gone(mine) == []
        assert all(p.poll() is None for p in foreign)
        assert manager.down(fresh) is False  # nothing left
    finally:
        for proc in foreign:
            proc.kill()
            proc.wait(10)


def test_a_server_that_died_or_hangs_while_the_daemon_was_down_is_replaced(fresh: Path) -> None:
    cluster = _nginx_cluster(fresh)
    _canary(cluster)
    servers = _servers(fresh)
    _kill_daemon(cluster)
    dead, hung = servers[R1][0], servers[R2][0]
    os.kill(dead, signal.SIGKILL)
    os.kill(hung, signal.SIGSTOP)  # alive, but it answers no probe
    restarted = manager.up(fresh)
    with api(restarted) as client:
        wait_for(client, NAME, lambda o: ready(o) and split(o) == [(R2, 30), (R1, 70)])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (
        set(_servers(fresh)) == {R1, R2} and all(pid not in (dead, hung) for pid, _, _ in _servers(fresh).values())
    ):
        time.sleep(0.05)
    now = _servers(fresh)
    assert set(now) == {R1, R2} and now[R1][0] != dead and now[R2][0] != hung
    assert _wait_gone([hung]) == []  # the hung one was killed, not left behind
    with httpx.Client(base_url=restarted.ingress, timeout=10) as gw:
        seen = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and seen != {R1, R2}:
            resp = gw.post(f"/v1/models/{NAME}:predict", json=ROW, headers={"Host": HOST})
            if resp.status_code == 200:
                seen.add(resp.headers["x-kserve-revision"])
    assert seen == {R1, R2}


def test_a_data_plane_whose_state_dir_is_deleted_stops_itself(tmp_path: Path) -> None:
    state = tmp_path / "gone"
    cluster = _nginx_cluster(state)
    try:
        _canary(cluster)
        mine = [p.pid for p in _nginx(state)] + [pid for pid, _, _ in _servers(state).values()]
        _kill_daemon(cluster)
        assert all(_alive(p) for p in mine)
    except BaseException:
        manager.down(state)
        raise
    subprocess.run(["rm", "-rf", str(state)], check=True)
    # Each checks every 2 s; the model servers then let in-flight requests finish (2 s at most).
    assert _wait_gone(mine, timeout=15) == []


def test_without_nginx_the_model_servers_are_adopted_and_the_ingress_returns_on_its_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Python gateway alone lives in the daemon, so the ingress is down until `up`; the model
    # servers are not, and are adopted all the same.
    monkeypatch.setenv(INGRESS_ENV, "python")
    state = tmp_path / "python"
    cluster = manager.up(state)
    pids: list[int] = []
    try:
        assert cluster.ingress_proxy == "python"
        _canary(cluster)
        servers = _servers(state)
        pids = [pid for pid, _, _ in servers.values()]
        _kill_daemon(cluster)
        assert all(_alive(p) for p in pids)
        restarted = manager.up(state)
        assert restarted.ingress_port == cluster.ingress_port and _servers(state) == servers
        with httpx.Client(base_url=restarted.ingress, timeout=10) as gw:
            answers = [gw.post(f"/v1/models/{NAME}:predict", json=ROW, headers={"Host": HOST}) for _ in range(40)]
        assert {r.status_code for r in answers} == {200}
        assert {r.headers["x-kserve-revision"] for r in answers} == {R1, R2}
    finally:
        manager.down(state)
    assert _wait_gone(pids) == []


def test_local_down_of_a_busy_cluster_leaves_no_model_server(tmp_path: Path) -> None:
    # Stopping a revision during shutdown notifies the controller; its reconcile must not start the
    # revision again (model servers outlive the daemon, so a restarted one would be left running).
    from kserve_nb.session import connect

    home = tmp_path / "busy"
    manager.up(home)
    try:
        s = connect(local=True, state_dir=home, namespace="busy")
        s.create_namespace("busy")
        for i in range(6):
            svc = s.service(f"busy-{i}")
            svc.deploy("gs://kfserving-examples/models/sklearn/1.0/model")
            svc.canary("gs://kfserving-examples/models/sklearn/1.0/model-2", 10)
        s.close()
    finally:
        manager.down(home)
    deadline = time.monotonic() + 10
    left: list[int] = []
    while time.monotonic() < deadline:
        left = []
        for p in psutil.process_iter(["pid"]):
            try:
                if p.cwd() == str(home) and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(p.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        if not left:
            break
        time.sleep(0.2)
    for pid in left:  # never leave them to the next test, even when failing
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, f"processes of the stopped cluster still running: {left}"
