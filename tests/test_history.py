"""Release history on the real local cluster: no entry lost to concurrent writers, intent recorded
before a step changes anything, and a history that cannot be written is said out loud."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import threading
from typing import Any

import httpx
import pytest
import yaml

from kserve_nb.history import PENDING, History, HistoryWarning, history_configmap_name, new_entry
from kserve_nb.local import manager
from kserve_nb.session import Session

NS = "history-test"
M1 = "gs://kfserving-examples/models/sklearn/1.0/model"
M2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"



def _writer(session: Session, service: str, who: str, count: int, failures: list[BaseException]) -> None:
    history = History(session.cluster, service, NS)
    try:
        for i in range(count):
            history.append(new_entry("note", session.context, writer=who, n=i))
    except BaseException as err:  # noqa: BLE001 - reported by the test
        failures.append(err)


def test_two_concurrent_writers_keep_every_entry(session: Session) -> None:
    failures: list[BaseException] = []
    threads = [threading.Thread(target=_writer, args=(session, "two-threads", who, 50, failures))
               for who in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures
    entries = History(session.cluster, "two-threads", NS).entries()
    assert len(entries) == 100
    for who in ("a", "b"):  # each writer's entries, all there and in its own order
        assert [e["n"] for e in entries if e["writer"] == who] == list(range(50))


def test_two_processes_writing_at_once_keep_every_entry(session: Session, local_cluster: manager.LocalCluster) -> None:
    script = (
        "import sys\n"
        "from kserve_nb import connect\n"
        "from kserve_nb.history import History, new_entry\n"
        "s = connect(kubeconfig=sys.argv[1], namespace=sys.argv[2])\n"
        "h = History(s.cluster, 'two-processes', sys.argv[2])\n"
        "h.entries()\n"  # connected and warm
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"  # both start together
        "for i in range(50):\n"
        "    h.append(new_entry('note', s.context, writer=sys.argv[3], n=i))\n"
        "s.close()\n"
    )
    env = {**os.environ, "KSERVE_NB_HOME": str(local_cluster.state_dir)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(local_cluster.kubeconfig), NS, who], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for who in ("p", "q")]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            _, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    entries = History(session.cluster, "two-processes", NS).entries()
    assert sorted((e["writer"], e["n"]) for e in entries) == sorted((w, i) for w in "pq" for i in range(50))


def _api(cluster: manager.LocalCluster) -> httpx.Client:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    return httpx.Client(base_url=cluster.api, verify=ssl.create_default_context(cadata=ca), timeout=10,
                        headers={"Authorization": f"Bearer {config['users'][0]['user']['token']}"})


def _writes_since(api: httpx.Client, path: str, name: str, since: int) -> list[dict[str, Any]]:
    """Every version of object ``name`` written after resourceVersion ``since`` (the store's event log)."""
    params = {"watch": "true", "resourceVersion": str(since), "timeoutSeconds": "1",
              "fieldSelector": f"metadata.name={name}"}
    with api.stream("GET", path, params=params) as response:
        assert response.status_code == 200
        return [json.loads(line)["object"] for line in response.iter_lines() if line]


def _canaries(configmap: dict[str, Any]) -> list[dict[str, Any]]:
    entries = [json.loads(v) for _, v in sorted((configmap.get("data") or {}).items())]
    return [e for e in entries if e["action"] == "canary"]


def test_a_step_records_its_intent_before_its_patch_and_settles_that_entry(
    session: Session, local_cluster: manager.LocalCluster
) -> None:
    svc = session.service("intent")
    if svc.exists():
        svc.delete()
    svc.deploy(M1)
    with _api(local_cluster) as api:
        since = int(api.get(f"/api/v1/namespaces/{NS}/configmaps").json()["metadata"]["resourceVersion"])
        svc.canary(M2, 10)
        # One resourceVersion counter orders every write in the cluster: the history's and the isvc's.
        history = _writes_since(api, f"/api/v1/namespaces/{NS}/configmaps", history_configmap_name("intent"), since)
        isvc = _writes_since(api, f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices",
                             "intent", since)
    patched = next(int(o["metadata"]["resourceVersion"]) for o in isvc
                   if o["spec"]["predictor"].get("canaryTrafficPercent") == 10)
    intent = next(o for o in history if _canaries(o))
    assert int(intent["metadata"]["resourceVersion"]) < patched, "the intent was written after the patch"
    [pending] = _canaries(intent)
    assert pending["outcome"] == PENDING and pending["storageUri"] == M2 and pending["percent"] == 10
    # Settled in place: still one entry for the step, now with its outcome, keeping its start time.
    [settled] = _canaries(history[-1])
    assert settled["outcome"] == "done" and settled["time"] == pending["time"] and settled["split"]
    stored = session.cluster.get_configmap(history_configmap_name("intent"), NS) or {}
    assert [e["outcome"] for e in _canaries(stored)] == ["done"]


def test_a_history_that_cannot_be_written_warns_the_user(session: Session) -> None:
    # A namespace that does not exist: the ConfigMap cannot be created, the step itself went ahead.
    svc = session.service("ghost", namespace="no-such-namespace-for-history")
    with pytest.warns(HistoryWarning, match="missing from its release history"):
        key = svc._record(new_entry("traffic", session.context, percent=10))
    assert key is None


def test_update_settles_an_entry_in_place_and_appends_when_it_is_gone(session: Session) -> None:
    history = History(session.cluster, "settle", NS)
    key = history.append(new_entry("traffic", session.context, percent=20, outcome=PENDING))
    history.update(key, {"outcome": "done", "split": "20% a + 80% b"})
    [entry] = history.entries()
    assert entry["outcome"] == "done" and entry["percent"] == 20 and entry["split"] == "20% a + 80% b"
    # Its entry trimmed or edited away meanwhile: the outcome is recorded anew, not lost.
    current = session.cluster.get_configmap(history_configmap_name("settle"), NS)
    assert current is not None
    current["data"] = {}
    session.cluster.replace_configmap(current, NS)
    history.update(key, {"action": "traffic", "outcome": "failed", "error": "boom"})
    assert [e["outcome"] for e in history.entries()] == ["failed"]
