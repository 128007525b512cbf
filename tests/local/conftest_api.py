"""Test helper: the local API server on a real loopback port, in a background event loop.

Not a conftest (pytest does not load it by itself): the API test modules import :class:`LocalApi`
and build their fixtures from it. There is no controller; tests write status and pods straight
into the store through :meth:`LocalApi.call`, on the server's loop thread (the store is not
thread-safe).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from aiohttp import web

from kserve_nb.local.apiserver import create_app, kubeconfig, self_signed_tls
from kserve_nb.local.store import INFERENCESERVICES, PODS, Store

T = TypeVar("T")
CONTEXT = "kserve-nb-local"


class LocalApi:
    """A running API server: ``url``, ``token``, ``kubeconfig`` path, and an httpx client factory."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.store = Store(tmp_path / "db.sqlite")
        self.token = secrets.token_urlsafe(32)
        self.tls = self_signed_tls()
        self.ca_file = tmp_path / "ca.crt"
        self.ca_file.write_bytes(self.tls.ca_pem)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="local-apiserver", daemon=True)
        self._thread.start()
        self._runner: web.AppRunner | None = None
        self.port = self._run(self._start())
        self.url = f"https://127.0.0.1:{self.port}"
        self.kubeconfig = tmp_path / "kubeconfig"
        self.kubeconfig.touch(mode=0o600)
        self.kubeconfig.write_text(yaml.safe_dump(kubeconfig(self.url, self.token, self.tls.ca_pem, context=CONTEXT)))
        os.chmod(self.kubeconfig, 0o600)

    def _run(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> int:
        self.app = create_app(self.store, self.token)
        self._runner = web.AppRunner(self.app, shutdown_timeout=2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls.server_context())
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` on the server's loop thread (use it for every store access)."""

        async def run() -> T:
            return fn(*args, **kwargs)

        return self._run(run())

    def write_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Replace an InferenceService's status through the store, as the controller would."""

        def run() -> dict[str, Any]:
            obj = self.store.get(INFERENCESERVICES, namespace, name)
            assert obj is not None, f"{namespace}/{name} does not exist"
            obj["status"] = status
            return self.store.update(INFERENCESERVICES, obj, subresource="status")

        return self.call(run)

    def create_pod(self, pod: dict[str, Any]) -> dict[str, Any]:
        """Insert a pod through the store, as the controller would."""
        return self.call(self.store.create, PODS, pod)

    def client(self, *, token: str | None = None, **kwargs: Any) -> httpx.Client:
        """An httpx client for the server (``token=""`` sends no Authorization header)."""
        headers = {} if token == "" else {"Authorization": f"Bearer {token or self.token}"}
        headers.update(kwargs.pop("headers", {}))
        verify = ssl.create_default_context(cafile=str(self.ca_file))
        return httpx.Client(base_url=self.url, verify=verify, headers=headers, timeout=10, **kwargs)

    def stop(self) -> None:
        """Shut the server down, stop the loop and close the store."""
        if self._runner is not None:
            self._run(self._runner.cleanup(), timeout=15)
            self._runner = None
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
        self.store.close()


def isvc_manifest(name: str = "sklearn-iris", *, canary: int | None = None,
                  storage_uri: str = "gs://kfserving-examples/models/sklearn/1.0/model",
                  annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The walkthrough's InferenceService as a dict."""
    predictor: dict[str, Any] = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": storage_uri}}
    if canary is not None:
        predictor["canaryTrafficPercent"] = canary
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": meta,
            "spec": {"predictor": predictor}}


def canary_status(name: str = "sklearn-iris", namespace: str = "kserve-test", *,
                  prev: tuple[int, int] | None = (90, 1), latest: tuple[int, int] = (10, 2),
                  ready: str = "True") -> dict[str, Any]:
    """An isvc status shaped like the walkthrough's: traffic (percent, revision number) pairs."""
    traffic = [{"latestRevision": True, "percent": latest[0],
                "revisionName": f"{name}-predictor-{latest[1]:05d}"}]
    if prev is not None:
        traffic.append({"latestRevision": False, "percent": prev[0], "tag": "prev",
                        "revisionName": f"{name}-predictor-{prev[1]:05d}",
                        "url": f"http://prev-{name}-predictor.{namespace}.example.com"})
    return {
        "url": f"http://{name}.{namespace}.example.com",
        "address": {"url": f"http://{name}.{namespace}.svc.cluster.local"},
        "conditions": [{"type": "IngressReady", "status": "True"}, {"type": "PredictorReady", "status": ready},
                       {"type": "Ready", "status": ready}],
        "components": {"predictor": {"traffic": traffic,
                                     "latestReadyRevision": f"{name}-predictor-{latest[1]:05d}"}},
        "deploymentMode": "Knative",
        "observedGeneration": 1,
    }


def pod_manifest(name: str, namespace: str = "kserve-test", *, ready: bool = True, restarts: int = 0,
                 last_finished: str | None = None,
                 waiting_reason: str | None = None) -> dict[str, Any]:
    """A two-container revision pod like Knative's (kserve-container + queue-proxy)."""
    def status(container: str) -> dict[str, Any]:
        out: dict[str, Any] = {"name": container, "ready": ready and not waiting_reason, "restartCount": 0,
                               "image": "kserve/sklearnserver", "imageID": "", "started": True}
        if waiting_reason:
            out["state"] = {"waiting": {"reason": waiting_reason}}
        else:
            out["state"] = {"running": {"startedAt": "2024-01-01T00:00:00Z"}}
        return out

    containers = [status("kserve-container"), status("queue-proxy")]
    containers[0]["restartCount"] = restarts
    if last_finished:
        containers[0]["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": last_finished}}
    meta: dict[str, Any] = {"name": name, "namespace": namespace,
                            "labels": {"serving.kserve.io/inferenceservice": "sklearn-iris"}}
    pod = {
        "apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "spec": {"containers": [{"name": "kserve-container", "image": "kserve/sklearnserver"},
                                {"name": "queue-proxy", "image": "knative/queue"}], "nodeName": "local"},
        "status": {"phase": "Running", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}],
                   "containerStatuses": containers,
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }
    return pod
