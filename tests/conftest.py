"""Shared fixtures: one real local cluster per test session, the real kubectl, loopback only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from kserve_nb.local import manager

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[manager.LocalCluster]:
    """A real local cluster daemon in a fresh state dir, stopped (with its processes) at the end."""
    state_dir = tmp_path_factory.mktemp("kserve-nb-cluster")
    cluster = manager.up(state_dir)
    try:
        yield cluster
    finally:
        manager.down(state_dir)


@pytest.fixture(scope="module")
def session(request: pytest.FixtureRequest, local_cluster: manager.LocalCluster) -> Iterator[Any]:
    """A Session on the test cluster in the test module's own namespace (its ``NS``), created if
    missing, closed after the module."""
    from kserve_nb.session import connect

    namespace = request.module.NS
    s = connect(local=True, state_dir=local_cluster.state_dir, namespace=namespace)
    s.create_namespace(namespace)
    try:
        yield s
    finally:
        s.close()


class Kubectl:
    """The real kubectl against one kubeconfig. Arguments are a list: no shell strings."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.binary = shutil.which("kubectl") or "/usr/bin/kubectl"

    def run(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.binary, "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc

    def isvc(self, name: str, namespace: str = "default") -> dict[str, Any]:
        """The live object as ``kubectl get isvc NAME -o json`` prints it."""
        return cast(dict[str, Any], json.loads(self.run("get", "isvc", name, "-n", namespace, "-o", "json").stdout))

    def canary_percent(self, name: str) -> Any:
        """The live ``spec.predictor.canaryTrafficPercent`` (None when unset)."""
        return self.isvc(name)["spec"]["predictor"].get("canaryTrafficPercent")

    def split(self, name: str) -> dict[str, int]:
        """The live traffic split: revision number (``00002``) → percent."""
        traffic = self.isvc(name)["status"]["components"]["predictor"]["traffic"]
        return {e["revisionName"].rsplit("-", 1)[1]: e["percent"] for e in traffic}


@pytest.fixture(scope="session")
def kubectl(local_cluster: manager.LocalCluster) -> Kubectl:
    """The real kubectl pointed at the session's local cluster."""
    if not shutil.which("kubectl"):
        pytest.fail("kubectl is not installed; these machines ship it at /usr/bin/kubectl")
    return Kubectl(local_cluster.kubeconfig)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Directory for files tests keep (screenshots, executed notebooks)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
