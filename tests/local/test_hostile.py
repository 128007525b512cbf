"""Hostile input: every one is a clean 4xx (never a 500, never a stall), and the cluster stays whole.

Two tables, each row a request a careless or malicious client can send:

- the Kubernetes API of a real local cluster daemon (API server, controller and gateway share its
  event loop, so a request that blocks the loop stalls them all): after every row an API GET must
  still answer;
- the ingress, on both data planes (the Python gateway alone, and nginx in front of it), with a
  real revision behind it: after every row the revision must still predict.

Then the rest of the hardening: storageUri confinement to the storage mirror (server and client
pre-flight agree, and refusals say nothing about paths outside the mirror), readiness re-probed
after start-up (a revision that lost its model restarts instead of answering 404 for ever), and a
state dir made loose is tightened when the daemon starts.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import shutil
import ssl
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvloop
import yaml

from kserve_nb import connect, errors
from kserve_nb.local import manager
from kserve_nb.local.gateway import Gateway
from kserve_nb.local.nginx import NginxIngress, find_nginx
from kserve_nb.local.runtime import READINESS_FAILURE_THRESHOLD, RevisionSpec, RevisionState, Runtime
from kserve_nb.local.storage import StorageError, mirror_root, resolve_storage_uri, seed_mirror
from kserve_nb.local.store import tighten_state_dir

T = TypeVar("T")
NS = "hostile"
ISVC = "sklearn-iris"
M1 = "gs://kfserving-examples/models/sklearn/1.0/model"
CM_PATH = f"/api/v1/namespaces/{NS}/configmaps"
ISVC_PATH = f"/apis/serving.kserve.io/v1beta1/namespaces/{NS}/inferenceservices"
INT64_MAX = 2**63 - 1


# ============================================================================ the API table


def _deep_json(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def _deep_yaml_manifest(depth: int) -> str:
    return ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\ndata: "
            + "{a: " * depth + "b" + "}" * depth + "\n")


# Billion laughs, small: seven levels of nine aliases, 9**7 (4.8 million) strings once expanded,
# from ~290 bytes. Expanding it would hold the daemon's event loop for seconds.
ALIAS_BOMB = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\n" + "".join(
    f"{n}: &{n} [{','.join(['*' + p] * 9) if p else ','.join(['x'] * 9)}]\n"
    for p, n in zip([""] + list("abcdef"), "abcdefg")
)
RECURSIVE_ALIAS = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: loop}\ndata: &d {a: *d}\n"
COPY_DOUBLING = json.dumps([{"op": "copy", "from": "/data", "path": f"/data/c{i}"} for i in range(30)])



def _pb(number: int, value: bytes | int) -> bytes:
    """One protobuf field: a varint (int) or length-delimited bytes."""
    def varint(v: int) -> bytes:
        out = b""
        while True:
            low, v = v & 0x7F, v >> 7
            out += bytes([low | (0x80 if v else 0)])
            if not v:
                return out

    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    return varint(number << 3 | 2) + varint(len(value)) + value


def _pb_configmap(metadata: bytes) -> bytes:
    """A ConfigMap in kubectl's protobuf envelope, with raw ``metadata`` field bytes."""
    return b"k8s\x00" + _pb(1, _pb(1, b"v1") + _pb(2, b"ConfigMap")) + _pb(2, metadata)


MERGE = "application/merge-patch+json"
JSONPATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"
YAML = "application/yaml"

PROTOBUF = "application/vnd.kubernetes.protobuf"

# (name, method, path, params, content type, body, expected code, expected reason)
API_ROWS: list[tuple[str, str, str, dict[str, str], str | None, str | bytes, int, str]] = [
    ("merge patch nested 1,000 deep", "PATCH", f"{CM_PATH}/target", {}, MERGE,
     '{"data": ' + _deep_json(1000) + "}", 400, "BadRequest"),
    ("JSON patch adding a value nested 1,000 deep", "PATCH", f"{CM_PATH}/target", {}, JSONPATCH,
     '[{"op": "add", "path": "/metadata/labels", "value": ' + _deep_json(1000) + "}]", 400, "BadRequest"),
    ("JSON patch whose copies double the object 30 times", "PATCH", f"{CM_PATH}/target", {}, JSONPATCH,
     COPY_DOUBLING, 400, "BadRequest"),
    ("JSON create nested 1,000 deep", "POST", CM_PATH, {}, "application/json",
     '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "deep"}, "data": ' + _deep_json(1000) + "}",
     400, "BadRequest"),
    # (block style indents each level: 1,000 levels are a megabyte, 5,000 would pass the size limit)
    ("YAML create nested 1,000 deep (block)", "POST", CM_PATH, {}, YAML,
     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\ndata:\n"
     + "".join(" " * (i + 1) + "a:\n" for i in range(1000)), 400, "BadRequest"),
    ("YAML create nested 5,000 deep (flow)", "POST", CM_PATH, {}, YAML, _deep_yaml_manifest(5000), 400, "BadRequest"),
    ("server-side apply of YAML nested 5,000 deep", "PATCH", f"{CM_PATH}/target", {"fieldManager": "m"}, APPLY,
     _deep_yaml_manifest(5000).replace("name: deep", "name: target"), 400, "BadRequest"),
    ("YAML alias bomb (create)", "POST", CM_PATH, {}, YAML, ALIAS_BOMB, 400, "BadRequest"),
    ("YAML alias bomb (server-side apply)", "PATCH", f"{CM_PATH}/target", {"fieldManager": "m"}, APPLY,
     ALIAS_BOMB.replace("name: bomb", "name: target"), 400, "BadRequest"),
    ("YAML alias that contains itself", "POST", CM_PATH, {}, YAML, RECURSIVE_ALIAS, 400, "BadRequest"),
    ("YAML integer of 5,000 digits", "POST", CM_PATH, {}, YAML,
     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\nx: " + "9" * 5000 + "\n", 400, "BadRequest"),
    ("protobuf with a number where metadata belongs", "POST", CM_PATH, {}, PROTOBUF, _pb_configmap(_pb(1, 5)),
     400, "BadRequest"),
    ("protobuf creationTimestamp past year 9999", "POST", CM_PATH, {}, PROTOBUF,
     _pb_configmap(_pb(1, _pb(1, b"deep") + _pb(8, _pb(1, 2**62)))), 400, "BadRequest"),
    ("watch from a resourceVersion past uint64", "GET", CM_PATH,
     {"watch": "true", "resourceVersion": str(2**64)}, None, "", 400, "BadRequest"),
    ("watch from a negative resourceVersion", "GET", CM_PATH,
     {"watch": "true", "resourceVersion": "-5"}, None, "", 400, "BadRequest"),
    # A resourceVersion the store has not reached: Kubernetes' "Too large resource version"
    # (504 Timeout with the ResourceVersionTooLarge cause client-go's reflector re-lists on),
    # at once instead of a stream that would never deliver an event.
    ("watch from a resourceVersion just past int64", "GET", CM_PATH,
     {"watch": "true", "resourceVersion": str(INT64_MAX + 1)}, None, "", 504, "Timeout"),
    ("watch from resourceVersion int64 max", "GET", CM_PATH,
     {"watch": "true", "resourceVersion": str(INT64_MAX)}, None, "", 504, "Timeout"),
    ("watch with timeoutSeconds=nan", "GET", CM_PATH, {"watch": "true", "timeoutSeconds": "nan"}, None, "",
     400, "BadRequest"),
    ("watch with timeoutSeconds=inf", "GET", CM_PATH, {"watch": "true", "timeoutSeconds": "inf"}, None, "",
     400, "BadRequest"),
    ("watch with timeoutSeconds past int64", "GET", CM_PATH,
     {"watch": "true", "timeoutSeconds": str(2**63)}, None, "", 400, "BadRequest"),
    ("DELETE with preconditions that are a string", "DELETE", f"{CM_PATH}/target", {}, "application/json",
     '{"preconditions": "x"}', 400, "BadRequest"),
    ("DELETE with a numeric precondition uid", "DELETE", f"{CM_PATH}/target", {}, "application/json",
     '{"preconditions": {"uid": 5}}', 400, "BadRequest"),
]


def _api_client(cluster: manager.LocalCluster, timeout: float = 10) -> httpx.Client:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    token = config["users"][0]["user"]["token"]
    return httpx.Client(base_url=cluster.api, verify=ssl.create_default_context(cadata=ca),
                        headers={"Authorization": f"Bearer {token}"}, timeout=timeout)


@pytest.fixture(scope="module")
def api(local_cluster: manager.LocalCluster) -> Iterator[httpx.Client]:
    with _api_client(local_cluster) as client:
        response = client.post("/api/v1/namespaces", json={"apiVersion": "v1", "kind": "Namespace",
                                                          "metadata": {"name": NS}})
        assert response.status_code in (201, 409), response.text
        yield client


@pytest.fixture
def target(api: httpx.Client) -> dict[str, Any]:
    """A ConfigMap for the rows to aim at; recreated for each row."""
    api.delete(f"{CM_PATH}/target")
    response = api.post(CM_PATH, json={"apiVersion": "v1", "kind": "ConfigMap",
                                       "metadata": {"name": "target"}, "data": {"k": "v"}})
    assert response.status_code == 201, response.text
    return dict(response.json())


@pytest.mark.parametrize("row", API_ROWS, ids=[r[0] for r in API_ROWS])
def test_hostile_api_requests_get_a_clean_status_and_the_daemon_stays_responsive(
    api: httpx.Client, target: dict[str, Any],
    row: tuple[str, str, str, dict[str, str], str | None, str | bytes, int, str],
) -> None:
    _, method, path, params, content_type, body, code, reason = row
    headers = {"Content-Type": content_type} if content_type else {}
    content = body.encode() if isinstance(body, str) else body
    # The client's timeout bounds a stall: a watch that started streaming would hang here.
    response = api.request(method, path, params=params, headers=headers, content=content)
    assert response.status_code == code, response.text[:300]
    status = response.json()
    assert status["kind"] == "Status" and status["status"] == "Failure", status
    assert status["code"] == code and status["reason"] == reason, status
    assert "\n" not in status["message"] and len(status["message"]) < 500, status["message"]
    # Nothing was half-applied, and the daemon answers at once.
    after = api.get(f"{CM_PATH}/target")
    assert after.status_code == 200 and after.json()["data"] == {"k": "v"}
    assert after.json()["metadata"]["resourceVersion"] == target["metadata"]["resourceVersion"]
    for name in ("deep", "bomb", "loop"):
        assert api.get(f"{CM_PATH}/{name}").status_code == 404


def test_too_large_resource_version_is_the_status_client_go_relists_on(api: httpx.Client) -> None:
    response = api.get(CM_PATH, params={"watch": "true", "resourceVersion": str(INT64_MAX)})
    status = response.json()
    assert response.status_code == 504 and status["reason"] == "Timeout"
    assert status["message"].startswith(f"Too large resource version: {INT64_MAX}, current: ")
    assert status["details"]["causes"] == [{"reason": "ResourceVersionTooLarge",
                                            "message": "Too large resource version"}]


def test_anchors_and_merge_keys_of_ordinary_yaml_still_work(api: httpx.Client) -> None:
    body = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: anchors, labels: &l {app: x}, "
            "annotations: {<<: *l, team: y}}\ndata: {a: &v hello, b: *v}\n")
    response = api.post(CM_PATH, content=body, headers={"Content-Type": YAML})
    assert response.status_code == 201, response.text
    obj = response.json()
    assert obj["data"] == {"a": "hello", "b": "hello"}
    assert obj["metadata"]["annotations"] == {"app": "x", "team": "y"}
    api.delete(f"{CM_PATH}/anchors")


def test_a_watch_with_a_whole_timeout_still_streams_and_ends(api: httpx.Client, target: dict[str, Any]) -> None:
    rv = target["metadata"]["resourceVersion"]
    with api.stream("GET", CM_PATH, params={"watch": "true", "timeoutSeconds": "1",
                                            "resourceVersion": str(int(rv) - 1)}) as response:
        assert response.status_code == 200
        lines = [json.loads(line) for line in response.iter_lines() if line]
    assert any(e["object"]["metadata"]["name"] == "target" for e in lines)


# ============================================================================ the ingress table


HOST = f"{ISVC}.{NS}.example.com"
REV = f"{ISVC}-predictor-00001"
IRIS = b'{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}'


class DataPlane:
    """A real revision behind one data plane, on an event loop in a background thread."""

    def __init__(self, kind: str, state_dir: Path) -> None:
        self.kind = kind
        self.state_dir = state_dir
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=f"plane-{kind}", daemon=True)
        self._thread.start()
        self.events: list[RevisionState] = []
        self.routes: dict[str, list[tuple[str, str, int]]] = {}
        self.runtime = Runtime(state_dir, self._on_change)
        self.gateway: Gateway | NginxIngress = Gateway() if kind == "python" else NginxIngress(state_dir / "ingress")
        self.port = 0

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        async def on_loop() -> T:
            return fn(*args)

        return self.run(on_loop())

    def _endpoints(self) -> dict[tuple[str, str], tuple[str, int]]:
        return {k: (s.host, s.port) for k, s in self.runtime.states().items()
                if s.phase == "Ready" and s.port is not None}

    def _on_change(self, state: RevisionState) -> None:  # on the loop: the daemon's wiring
        self.events.append(state)
        self.gateway.update(self.routes, self._endpoints())

    def start(self) -> None:
        self.run(self.runtime.start(), timeout=90)
        self.port = self.run(self.gateway.start())
        self.call(self.runtime.ensure_running, RevisionSpec(NS, ISVC, REV, M1, "sklearn"))
        self.until(lambda s: s.phase == "Ready", timeout=60)
        self.routes = {HOST: [(NS, REV, 100)]}
        self.call(self.gateway.update, self.routes, self.call(self._endpoints))
        if isinstance(self.gateway, NginxIngress):
            self.run(self.gateway.wait_programmed())

    def until(self, check: Callable[[RevisionState], bool], timeout: float) -> RevisionState:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for state in list(self.events):
                if check(state):
                    return state
            time.sleep(0.02)
        raise AssertionError(f"no matching state in {self.events}")

    def state(self) -> RevisionState:
        return self.call(self.runtime.states)[(NS, REV)]

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                port: int | None = None, host: str = HOST) -> tuple[int, dict[str, str], bytes]:
        """One raw HTTP/1.1 request: the path goes out exactly as written (no client normalising)."""
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=15)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", host)
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def predicts(self) -> bool:
        status, _, body = self.request("POST", f"/v1/models/{ISVC}:predict", IRIS,
                                       {"Content-Type": "application/json"})
        return status == 200 and json.loads(body) == {"predictions": [1, 1]}

    def close(self) -> None:
        try:
            self.run(self.gateway.close())
            self.run(self.runtime.close(), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


@pytest.fixture(scope="module", params=["python", "nginx"])
def plane(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataPlane]:
    if request.param == "nginx" and find_nginx() is None:
        pytest.skip("nginx is not installed (make sysdeps installs it)")
    state_dir = tmp_path_factory.mktemp(f"plane-{request.param}")
    seed_mirror(state_dir)
    dp = DataPlane(request.param, state_dir)
    try:
        dp.start()
        yield dp
    finally:
        dp.close()


UNLOAD = f"/v2/repository/models/{ISVC}/unload"
# (name, method, path, content type, body, expected code)
INGRESS_ROWS: list[tuple[str, str, str, str | None, bytes, int]] = [
    ("model repository: unload", "POST", UNLOAD, None, b"", 403),
    ("model repository: load", "POST", f"/v2/repository/models/{ISVC}/load", None, b"", 403),
    ("model repository: index", "POST", "/v2/repository/index", "application/json", b"{}", 403),
    ("model repository: percent-encoded", "POST", f"/v2/%72epository/models/{ISVC}/unload", None, b"", 403),
    ("model repository: encoded slash", "POST", f"/v2%2Frepository/models/{ISVC}/unload", None, b"", 403),
    ("model repository: doubled slashes", "POST", f"//v2//repository/models/{ISVC}/unload", None, b"", 403),
    ("model repository: dot segments", "POST", f"/v2/models/../repository/models/{ISVC}/unload", None, b"", 403),
    ("absolute-form target that is no URL", "GET", "http://[bad/v1/models", None, b"", 400),
    ("CONNECT", "CONNECT", f"{HOST}:80", None, b"", 400),
    ("JSON nested 1,000 deep as text/plain", "POST", f"/v1/models/{ISVC}:predict", "text/plain",
     _deep_json(1000).encode(), 400),
    ("JSON nested 1,000 deep, no content type", "POST", f"/v1/models/{ISVC}:predict", None,
     ("[" * 1000 + "]" * 1000).encode(), 400),
]


# Request lines nginx refuses itself: rows for the Python gateway's own parsing.
PYTHON_GATEWAY_ONLY = {"absolute-form target that is no URL", "CONNECT"}


@pytest.mark.parametrize("row", INGRESS_ROWS, ids=[r[0] for r in INGRESS_ROWS])
def test_hostile_ingress_requests_get_a_clean_4xx_and_the_revision_keeps_serving(
    plane: DataPlane, row: tuple[str, str, str, str | None, bytes, int]
) -> None:
    name, method, path, content_type, body, code = row
    if name in PYTHON_GATEWAY_ONLY and plane.kind != "python":
        pytest.skip("nginx refuses this request line itself")
    headers = {"Content-Type": content_type} if content_type else {}
    status, response_headers, answer = plane.request(method, path, body, headers)
    assert status == code, answer[:300]
    assert 400 <= status < 500
    assert b"internal gateway error" not in answer and b"Traceback" not in answer
    assert plane.predicts()
    assert plane.state().restarts == 0  # the model was never unloaded


def test_the_repository_refusal_says_why_in_json(plane: DataPlane) -> None:
    status, headers, body = plane.request("POST", UNLOAD)
    assert status == 403 and headers["content-type"].startswith("application/json")
    assert "model repository API" in json.loads(body)["error"]


def test_a_revision_that_lost_its_model_is_restarted_by_its_readiness_probe(plane: DataPlane) -> None:
    if plane.kind != "python":
        pytest.skip("the runtime's own behaviour: one data plane is enough")
    before = plane.state()
    assert before.phase == "Ready" and before.port is not None
    # Straight to the revision (the ingress refuses it): the model is gone, the process stays up.
    status, _, body = plane.request("POST", UNLOAD, port=before.port)
    assert status == 200, body
    status, _, _ = plane.request("GET", f"/v1/models/{ISVC}", port=before.port)
    assert status == 404
    restarting = plane.until(lambda s: s.phase == "Restarting" and "readiness probe" in (s.message or ""),
                             timeout=60)
    assert f"failed {READINESS_FAILURE_THRESHOLD} times" in (restarting.message or "")
    plane.until(lambda s: s.phase == "Ready" and s.restarts >= 1, timeout=60)
    deadline = time.monotonic() + 30
    while not plane.predicts():
        assert time.monotonic() < deadline, "the restarted revision never served again"
        time.sleep(0.1)


# ============================================================================ storageUri confinement


def _escaping_uri(state_dir: Path, outside: Path) -> str:
    """A mirror URI whose percent-encoded ``..`` segments lead from its bucket to ``outside``."""
    bucket = mirror_root(state_dir) / "gs" / "kfserving-examples"
    return "gs://kfserving-examples/" + os.path.relpath(outside, bucket).replace("/", "%2f")


def test_an_encoded_dot_dot_uri_cannot_leave_the_mirror(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    (mirror_root(state_dir) / "gs" / "kfserving-examples").mkdir(parents=True)
    outside = tmp_path / "elsewhere" / "model"
    outside.mkdir(parents=True)
    (outside / "model.joblib").write_bytes(b"not a model")
    for uri in (_escaping_uri(state_dir, outside), _escaping_uri(state_dir, outside).replace("%2f", "%2F"),
                "gs://kfserving-examples/%2e%2e/%2e%2e/%2e%2e/elsewhere/model"):
        with pytest.raises(StorageError, match="may not contain '.' or '..'"):
            resolve_storage_uri(uri, state_dir)


def test_refusals_say_nothing_about_paths_outside_the_mirror(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    (mirror_root(state_dir) / "gs" / "b").mkdir(parents=True)
    exists, missing = tmp_path / "exists", tmp_path / "missing"
    exists.mkdir()
    messages = []
    for path in (exists, missing):
        uri = "gs://b/" + os.path.relpath(path, mirror_root(state_dir) / "gs" / "b").replace("/", "%2f")
        with pytest.raises(StorageError) as info:
            resolve_storage_uri(uri, state_dir)
        messages.append(str(info.value).replace(uri, "URI"))
    assert messages[0] == messages[1]
    assert str(tmp_path) not in messages[0]


def test_a_symlink_in_the_mirror_cannot_lead_out_of_it(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    bucket = mirror_root(state_dir) / "gs" / "b"
    bucket.mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (bucket / "link").symlink_to(tmp_path / "outside")
    with pytest.raises(StorageError, match="leads outside the local storage mirror"):
        resolve_storage_uri("gs://b/link", state_dir)
    (bucket / "inner").mkdir()
    (bucket / "alias").symlink_to(bucket / "inner")
    assert resolve_storage_uri("gs://b/alias", state_dir) == (bucket / "inner").resolve()


def test_the_cluster_refuses_an_escaping_uri_and_the_client_pre_flight_agrees(
    local_cluster: manager.LocalCluster, api: httpx.Client, tmp_path: Path
) -> None:
    # A real model outside the mirror: no revision may serve it.
    outside = tmp_path / "stolen"
    outside.mkdir()
    shutil.copy(mirror_root(local_cluster.state_dir) / "gs/kfserving-examples/models/sklearn/1.0/model/model.joblib",
                outside / "model.joblib")
    uri = _escaping_uri(local_cluster.state_dir, outside)

    session = connect(local=True, state_dir=local_cluster.state_dir, namespace=NS)
    try:
        with pytest.raises(errors.ValidationError, match="may not contain") as info:
            session.service("escape").deploy(uri)
        assert "nothing was applied" in str(info.value) and str(outside) not in str(info.value)
        assert not session.service("escape").exists()
    finally:
        session.close()

    # Past the pre-flight (plain API): the revision fails with the same reason, never serves.
    manifest = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                "metadata": {"name": "escape"},
                "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri}}}}
    assert api.post(ISVC_PATH, json=manifest).status_code == 201
    try:
        deadline = time.monotonic() + 60
        while True:
            status = api.get(f"{ISVC_PATH}/escape").json().get("status") or {}
            conditions = {c["type"]: c for c in status.get("conditions", [])}
            ready = conditions.get("Ready", {})
            assert ready.get("status") != "True", "a model outside the mirror was served"
            if "may not contain" in json.dumps(status):
                break
            assert time.monotonic() < deadline, f"the revision never failed: {status}"
            time.sleep(0.2)
        assert str(outside) not in json.dumps(status)
    finally:
        api.delete(f"{ISVC_PATH}/escape")


# ============================================================================ state dir modes


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_loose_state_dir_is_tightened_when_the_daemon_starts() -> None:
    with tempfile.TemporaryDirectory(prefix="kserve-nb-loose-") as tmp:
        state_dir = Path(tmp) / "state"
        (state_dir / "logs" / "old-ns").mkdir(parents=True)
        (state_dir / "storage").mkdir()
        loose = [state_dir / "logs" / "daemon.log", state_dir / "logs" / "old-ns" / "rev.log",
                 state_dir / "token"]
        for path in loose:
            path.write_text("secret\n")
        for path in [state_dir, state_dir / "logs", state_dir / "logs" / "old-ns", state_dir / "storage"]:
            path.chmod(0o755)
        for path in loose:
            path.chmod(0o644)
        try:
            cluster = manager.up(state_dir)
            deadline = time.monotonic() + 60
            while not (state_dir / "logs" / "zygote.log").exists():  # written by the daemon's child
                assert time.monotonic() < deadline
                time.sleep(0.1)
            for directory in (state_dir, state_dir / "logs", state_dir / "logs" / "old-ns", state_dir / "storage"):
                assert _mode(directory) == 0o700, directory
            private = [*loose, state_dir / "store.sqlite", state_dir / "logs" / "zygote.log",
                       state_dir / "logs" / "daemon.out", cluster.kubeconfig]
            for path in private:
                assert _mode(path) == 0o600, (path, oct(_mode(path)))
            for companion in ("store.sqlite-wal", "store.sqlite-shm"):
                if (state_dir / companion).exists():
                    assert _mode(state_dir / companion) == 0o600, companion
        finally:
            manager.down(state_dir)


def test_tightening_leaves_symlinks_and_the_mirror_trees_alone(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    model_dir = state_dir / "storage" / "gs" / "b" / "m"
    model_dir.mkdir(parents=True)
    (model_dir / "model.joblib").write_bytes(b"x")
    (model_dir / "model.joblib").chmod(0o644)
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_text("x")
    elsewhere.chmod(0o644)
    (state_dir / "link").symlink_to(elsewhere)
    tighten_state_dir(state_dir)
    assert _mode(state_dir) == 0o700 and _mode(state_dir / "storage") == 0o700
    assert _mode(elsewhere) == 0o644  # not followed out of the state dir
    assert _mode(model_dir / "model.joblib") == 0o644
