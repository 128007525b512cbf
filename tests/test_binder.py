"""Binder: what mybinder.org builds from ``binder/`` is enough to run the walkthrough notebook.

Like repo2docker, this installs ``binder/requirements.txt`` from the repository root into a fresh
virtual environment (no system site-packages, so a missing dependency shows), runs ``binder/postBuild``,
then lets ``binder/start`` bring the local cluster up and hand over to a notebook client that executes
``notebooks/01-canary-release.ipynb`` with that environment's own kernel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kserve_nb.local import manager

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
NOTEBOOK = ROOT / "notebooks" / "01-canary-release.ipynb"

# Runs inside the Binder environment: the kernel must be that environment's Python.
RUNNER = r"""
import json, sys
import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

spec = KernelSpecManager().get_kernel_spec("python3")
argv0 = spec.argv[0]
if argv0 not in ("python", "python3") and not argv0.startswith(sys.prefix):
    sys.exit(f"kernel python3 would run {argv0}, not this environment's Python ({sys.prefix})")
nb = nbformat.read(sys.argv[1], as_version=4)
NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
nbformat.write(nb, sys.argv[3])
print(json.dumps({"prefix": sys.prefix}))
"""


def step(
    cmd: list[str], *, env: dict[str, str], timeout: float, what: str
) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    took = time.monotonic() - started
    assert proc.returncode == 0, (
        f"{what} failed ({proc.returncode}) after {took:.0f}s:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    return proc, took


def test_binder_files_reuse_the_project_pins() -> None:
    lines = [
        ln.split("#", 1)[0].strip() for ln in (BINDER / "requirements.txt").read_text().splitlines()
    ]
    assert [ln for ln in lines if ln] == ["-c ../constraints.txt", "-e .[local,notebooks]"]
    assert (BINDER / "runtime.txt").read_text().strip() == "python-3.11"
    for script in ("postBuild", "start"):
        assert os.access(BINDER / script, os.X_OK), f"binder/{script} must be executable"
    assert 'exec "$@"' in (BINDER / "start").read_text()
    # repo2docker apt-installs these (without recommends): nginx is the local cluster's ingress data
    # plane, prometheus scrapes its per-revision metrics.
    assert (BINDER / "apt.txt").read_text().split() == ["nginx", "libnginx-mod-http-lua", "prometheus"]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_binder_environment_runs_the_walkthrough_notebook(tmp_path: Path) -> None:
    venv, home, out = tmp_path / "binder-env", tmp_path / "kserve-nb-home", tmp_path / "01-executed.ipynb"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "KUBECONFIG")}
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        KSERVE_NB_HOME=str(home),
        # What repo2docker sets; one environment for server and kernel, as with its default Python.
        KERNEL_PYTHON_PREFIX=str(venv),
        NB_PYTHON_PREFIX=str(venv),
        JUPYTER_DATA_DIR=str(tmp_path / "jupyter-data"),  # no user-level kernelspecs from this machine
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    timings = {}
    try:
        _, timings["venv"] = step(
            [sys.executable, "-m", "venv", str(venv)], env=env, timeout=120, what="python -m venv"
        )
        # As repo2docker does it: `pip install -r binder/requirements.txt` from the repository root.
        # --no-compile only skips writing .pyc files up front (imports compile what they need).
        _, timings["pip install"] = step(
            [str(venv / "bin" / "pip"), "install", "-q", "--no-compile", "-r", "binder/requirements.txt"],
            env=env, timeout=900, what="pip install -r binder/requirements.txt",
        )
        _, timings["postBuild"] = step([str(BINDER / "postBuild")], env=env, timeout=300, what="binder/postBuild")
        assert (home / "storage" / "gs" / "kfserving-examples" / "models" / "sklearn" / "1.0" / "model-2").is_dir()
        proc, timings["start + notebook"] = step(
            [
                str(BINDER / "start"),
                str(venv / "bin" / "python"),
                "-c",
                RUNNER,
                str(NOTEBOOK),
                str(NOTEBOOK.parent),
                str(out),
            ],
            env=env,
            timeout=600,
            what="binder/start + executing 01-canary-release.ipynb",
        )
    finally:
        manager.down(home)
        shutil.rmtree(venv, ignore_errors=True)  # ~1 GB; pytest keeps the last runs' tmp dirs
        print("binder timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))

    assert json.loads(proc.stdout.strip().splitlines()[-1])["prefix"] == str(venv)
    assert "local cluster running" in proc.stdout  # binder/start brought the cluster up first
    import nbformat

    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    texts = "\n".join(str(o.get("data", {}).get("text/plain", o.get("text", ""))) for o in outputs)
    assert "PredictionResult latest → sklearn-iris-predictor-00002: [1, 1]" in texts
    assert "0% sklearn-iris-predictor-00002 [latest] + 100% sklearn-iris-predictor-00001 [prev]" in texts
