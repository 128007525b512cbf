"""The local API server's service proxy, against real model servers and the real kubectl.

``/api/v1/namespaces/{ns}/services/{[scheme:]name[:port]}/proxy/{path}`` is how a client outside a
real cluster reaches one Standard-mode side (``docs/standard-mode-canary.md`` §9). Here it is the
local cluster's: the request goes to a ready model-server process of the Service's Deployment, and
everything a pod answers comes back as it is — compared with the same request through the local
ingress on the Service's in-cluster host, which reaches the same process. What a pod receives
(headers dropped and added, the path as joined) is checked on a server that echoes its request,
put behind a Service by a fixed Endpoints table in the controller's place.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from kserve_nb.session import Session
from tests.waiting import wait_for

NS = "svc-proxy"
M1 = "gs://kfserving-examples/models/sklearn/1.0/model"
M2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
ROWS = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6], [5.1, 3.5, 1.4, 0.2], [7.7, 3.0, 6.1, 2.3]]
MODE = {"serving.kserve.io/deploymentMode": "Standard", "serving.kserve.io/autoscalerClass": "none"}
NAME = "px"
STABLE = f"{NAME}-predictor"
CANARY = f"{NAME}-v2-predictor"


def manifest(name: str, uri: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": NS, "annotations": dict(MODE)},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri}}},
    }


class Api:
    """HTTPS calls to the local API server with the kubeconfig's token and CA, and to its ingress."""

    def __init__(self, kubeconfig: Path, ingress: str) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        self.server = config["clusters"][0]["cluster"]["server"]
        self.token = config["users"][0]["user"]["token"]
        ca = ssl.create_default_context(cafile=str(kubeconfig.with_name("ca.crt")))
        self.client = httpx.Client(base_url=self.server, verify=ca, trust_env=False, timeout=30)
        self.ingress = httpx.Client(base_url=ingress, trust_env=False, timeout=30)

    def proxy(self, method: str, service: str, path: str, *, auth: bool = True, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if auth:
            headers["Authorization"] = f"Bearer {self.token}"
        return self.client.request(method, f"/api/v1/namespaces/{NS}/services/{service}/proxy{path}",
                                   headers=headers, **kwargs)

    def direct(self, method: str, service: str, path: str, **kwargs: Any) -> httpx.Response:
        """The same request through the ingress, on the Service's in-cluster host (same process)."""
        headers = {**kwargs.pop("headers", {}), "Host": f"{service}.{NS}.svc.cluster.local"}
        return self.ingress.request(method, path, headers=headers, **kwargs)

    def close(self) -> None:
        self.client.close()
        self.ingress.close()


@pytest.fixture(scope="module")
def api(session: Session, local_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """A Standard-mode isvc with a ready canary ``v2``, and one whose model cannot load."""
    session.apply(manifest(NAME, M1), namespace=NS)
    session.service(NAME, NS).canary(M2, 20)  # waits for the stable, then for v2 to be ready
    bad = tmp_path_factory.mktemp("bad-model")
    (bad / "model.joblib").write_bytes(b"not a pickle")
    session.apply(manifest("pxbad", f"file://{bad}"), namespace=NS)
    client = Api(local_cluster.kubeconfig, local_cluster.ingress)
    try:
        yield client
    finally:
        client.close()
        for name in (NAME, "pxbad"):
            session.service(name, NS).delete()


def status_of(answer: httpx.Response) -> dict[str, Any]:
    """The Kubernetes ``Status`` body of an error answer."""
    body: dict[str, Any] = answer.json()
    assert body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == answer.status_code
    return body


def test_each_side_answers_through_the_proxy_as_through_its_own_host(api: Api) -> None:
    payload = {"instances": ROWS}
    for service in (STABLE, CANARY):
        proxied = api.proxy("POST", f"{service}:80", f"/v1/models/{NAME}:predict", json=payload)
        direct = api.direct("POST", service, f"/v1/models/{NAME}:predict", json=payload)
        assert proxied.status_code == direct.status_code == 200
        assert proxied.json() == direct.json() and len(proxied.json()["predictions"]) == len(ROWS)
        assert direct.headers["x-kserve-revision"].rsplit("-", 1)[0] == service  # the ingress names the pod
        assert "x-kserve-revision" not in proxied.headers  # the proxy reaches the pod itself
    # A port by name, the scheme spelled out: the same pod.
    for service_id in (f"{STABLE}:{STABLE}", f"http:{STABLE}:80"):
        assert api.proxy("GET", service_id, f"/v1/models/{NAME}").json() == {"name": NAME, "ready": True}


def test_methods_status_headers_and_bodies_pass_through(api: Api) -> None:
    path = f"/v1/models/{NAME}"
    for method in ("GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"):
        proxied = api.proxy(method, f"{STABLE}:80", path, content=b'{"x": 1}' if method in ("PUT", "PATCH") else None)
        direct = api.direct(method, STABLE, path, content=b'{"x": 1}' if method in ("PUT", "PATCH") else None)
        assert (proxied.status_code, proxied.content) == (direct.status_code, direct.content), method
        assert proxied.headers.get("allow") == direct.headers.get("allow"), method
        assert proxied.headers.get("content-type") == direct.headers.get("content-type"), method
    # Request headers reach the model server and its response headers come back: KServe answers a
    # binary CloudEvent (ce-* request headers) with one (ce-* response headers).
    event = {"ce-specversion": "1.0", "ce-source": "tests", "ce-type": "io.kserve.inference.request",
             "ce-id": "42", "content-type": "application/json"}
    body = json.dumps({"instances": ROWS[:1]}).encode()
    proxied = api.proxy("POST", f"{STABLE}:80", f"{path}:predict", content=body, headers=event)
    assert proxied.status_code == 200, proxied.text
    assert proxied.headers["ce-source"] == f"io.kserve.inference.{NAME}"
    assert proxied.headers["ce-type"] == "io.kserve.inference.response"
    assert proxied.json() == api.direct("POST", STABLE, f"{path}:predict", content=body, headers=event).json()
    # A body sent chunked (no Content-Length) is streamed on.
    chunked = api.proxy("POST", f"{STABLE}:80", f"{path}:predict", content=iter([body[:5], body[5:]]))
    assert chunked.status_code == 200 and len(chunked.json()["predictions"]) == 1
    # The proxy root: GET without a path is redirected to it, and the model server answers there.
    redirect = api.proxy("GET", f"{STABLE}:80", "", params={"a": "b"})
    assert redirect.status_code == 301
    assert redirect.headers["location"] == f"/api/v1/namespaces/{NS}/services/{STABLE}:80/proxy/?a=b"
    assert api.proxy("GET", f"{STABLE}:80", "/").json() == api.direct("GET", STABLE, "/").json()


def test_kubernetes_errors(api: Api) -> None:
    unauthenticated = api.proxy("GET", f"{STABLE}:80", f"/v1/models/{NAME}", auth=False)
    assert unauthenticated.status_code == 401 and status_of(unauthenticated)["reason"] == "Unauthorized"
    # A Service that does not exist: its Service (a port number is looked up) or its Endpoints.
    missing = status_of(api.proxy("GET", "nope:80", "/"))
    assert (missing["code"], missing["reason"], missing["message"]) == (404, "NotFound", 'services "nope" not found')
    assert missing["details"] == {"name": "nope", "kind": "services"}
    missing = status_of(api.proxy("GET", "nope", "/"))
    assert (missing["code"], missing["message"]) == (404, 'endpoints "nope" not found')
    # Ports the Service does not have; a Service port that is named (KServe names it after the
    # Service) is not the unnamed one.
    assert status_of(api.proxy("GET", f"{STABLE}:81", "/"))["message"] == (
        f'no service port 81 found for service "{STABLE}"')
    for service_id in (f"{STABLE}:http", STABLE):
        unavailable = status_of(api.proxy("GET", service_id, "/"))
        assert (unavailable["code"], unavailable["reason"]) == (503, "ServiceUnavailable")
        assert unavailable["message"] == f'no endpoints available for service "{service_id}"'
    assert status_of(api.proxy("GET", f"ftp:{STABLE}:80", "/"))["message"] == (
        f'invalid service request "ftp:{STABLE}:80"')
    # https: the proxy speaks TLS to a pod that does not: it cannot reach it.
    tls = status_of(api.proxy("GET", f"https:{STABLE}:80", "/"))
    assert tls["code"] == 503 and tls["message"].startswith("error trying to reach service: ")
    assert api.proxy("TRACE", f"{STABLE}:80", "/").status_code == 405


def test_a_service_without_a_ready_pod_has_no_endpoints(api: Api, kubectl: Any) -> None:
    # pxbad's only pod cannot load its model: the Service is there, its pod never becomes ready.
    def failed_pod() -> bool:
        pods = json.loads(kubectl.run("get", "pods", "-n", NS, "-l", "serving.kserve.io/inferenceservice=pxbad",
                                      "-o", "json").stdout)["items"]
        return any(s.get("state", {}).get("waiting", {}).get("reason") == "CrashLoopBackOff"
                   for p in pods for s in p["status"].get("initContainerStatuses") or [])

    wait_for("pxbad's failed pod", failed_pod)
    answer = status_of(api.proxy("POST", "pxbad-predictor:80", "/v1/models/pxbad:predict", json={"instances": ROWS}))
    assert (answer["code"], answer["reason"]) == (503, "ServiceUnavailable")
    assert answer["message"] == 'no endpoints available for service "pxbad-predictor:80"'
    refused = kubectl.run("get", "--raw", f"/api/v1/namespaces/{NS}/services/pxbad-predictor:80/proxy/", check=False)
    assert refused.returncode != 0
    assert 'Error from server (ServiceUnavailable): no endpoints available for service "pxbad-predictor:80"' in (
        refused.stderr)


def test_kubectl_reaches_each_side(api: Api, kubectl: Any) -> None:
    for service in (STABLE, CANARY):
        raw = kubectl.run("get", "--raw", f"/api/v1/namespaces/{NS}/services/{service}:80/proxy/v1/models/{NAME}")
        assert json.loads(raw.stdout) == {"name": NAME, "ready": True}
        predicted = kubectl.run("create", "--raw", f"/api/v1/namespaces/{NS}/services/{service}:80/proxy/v1/models/"
                                f"{NAME}:predict", "-f", "-", input=json.dumps({"instances": ROWS}))
        expected = api.direct("POST", service, f"/v1/models/{NAME}:predict", json={"instances": ROWS}).json()
        assert json.loads(predicted.stdout) == expected


def test_discovery_lists_the_proxy_subresource(kubectl: Any) -> None:
    """Discovery names ``services/proxy`` as Kubernetes does (legacy list and aggregated)."""
    legacy = json.loads(kubectl.run("get", "--raw", "/api/v1").stdout)
    proxy = [r for r in legacy["resources"] if r["name"] == "services/proxy"]
    assert proxy and proxy[0]["kind"] == "ServiceProxyOptions" and "get" in proxy[0]["verbs"]
    resources = kubectl.run("api-resources", "--api-group=", "-o", "name").stdout.split()
    assert "services" in resources


class _Endpoints:
    """A fixed Endpoints table: Service ``echo`` has one ready pod, the echo server below. It takes
    the controller's place so that the pod can be a server that shows what it received."""

    def __init__(self, port: int) -> None:
        self.port = port

    def service_endpoints(self, namespace: str, service: str) -> tuple[list[tuple[str, int]], int]:
        return ([("127.0.0.1", self.port)], 0) if (namespace, service) == ("default", "echo") else ([], 0)


def loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock


def test_what_the_pod_receives_and_what_comes_back(tmp_path: Path) -> None:
    import asyncio
    import secrets

    from aiohttp import web

    from kserve_nb.local.apiserver import create_app
    from kserve_nb.local.store import SERVICES, Store

    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        seen = {"method": request.method, "path_qs": request.rel_url.raw_path_qs, "body": body.decode(),
                "headers": {k.lower(): v for k, v in request.headers.items()}}
        status = 302 if request.path == "/away" else 201
        own = "{}:{}".format(*request.transport.get_extra_info("sockname")[:2])  # type: ignore[union-attr]
        headers = {"Location": f"http://{own}/elsewhere/" if status == 302 else "/made",
                   "X-Pod": "yes", "Access-Control-Allow-Origin": "*"}
        return web.json_response(seen, status=status, headers=headers)

    async def main() -> None:
        pod = web.AppRunner(web.Application(), access_log=None)
        pod.app.router.add_route("*", "/{tail:.*}", echo)
        await pod.setup()
        pod_sock = loopback_socket()
        await web.SockSite(pod, pod_sock).start()
        pod_port = pod_sock.getsockname()[1]
        store = Store(tmp_path / "db.sqlite")
        store.create(SERVICES, {"apiVersion": "v1", "kind": "Service",
                                "metadata": {"name": "echo", "namespace": "default"},
                                "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}})
        token = secrets.token_urlsafe(16)
        api = web.AppRunner(create_app(store, token, endpoints=_Endpoints(pod_port)), access_log=None)
        await api.setup()
        api_sock = loopback_socket()
        await web.SockSite(api, api_sock).start()
        api_port = api_sock.getsockname()[1]
        base = f"http://127.0.0.1:{api_port}/api/v1/namespaces/default/services/echo:80/proxy"
        try:
            async with httpx.AsyncClient(trust_env=False) as client:
                answer = await client.put(f"{base}/a//b/../c/?q=1&q=2", content=b"payload", headers={
                    "Authorization": f"Bearer {token}", "X-Custom": "kept", "Connection": "keep-alive, X-Hop",
                    "X-Hop": "dropped", "X-Forwarded-For": "10.0.0.1"})
                redirect = await client.get(f"{base}/away", headers={"Authorization": f"Bearer {token}"})
        finally:
            await api.cleanup()
            await pod.cleanup()
            store.close()
        assert answer.status_code == 201 and answer.headers["x-pod"] == "yes"
        assert "access-control-allow-origin" not in answer.headers  # the pod's CORS is not the API server's
        seen = answer.json()
        assert (seen["method"], seen["path_qs"], seen["body"]) == ("PUT", "/a/c/?q=1&q=2", "payload")
        headers = seen["headers"]
        assert "authorization" not in headers and "x-hop" not in headers and headers["x-custom"] == "kept"
        assert headers["host"] == f"127.0.0.1:{api_port}" and headers["content-length"] == "7"
        assert headers["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
        assert headers["x-forwarded-uri"] == "/api/v1/namespaces/default/services/echo:80/proxy/a/c/"
        # A Location on the pod (a path, or the pod's own address) points back through the proxy.
        assert answer.headers["location"] == "/api/v1/namespaces/default/services/echo:80/proxy/made"
        assert redirect.status_code == 302
        assert redirect.headers["location"] == "/api/v1/namespaces/default/services/echo:80/proxy/elsewhere/"

    asyncio.run(main())
