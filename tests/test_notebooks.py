"""The stored notebooks are runbooks: nbval re-executes each one against a fresh local cluster and
compares every checked output with the stored one.

After an intended change of what a notebook shows, store it again, executed against a fresh local
cluster: ``.venv/bin/python tests/test_notebooks.py`` (all of 01–03b and 05) or with notebook paths.

Volatile parts of outputs (ports, ages, timings, latencies, record paths, timestamps) are rewritten by
``tests/nbval_sanitize.cfg`` before comparing; cells whose whole output is volatile (plotly figures,
widgets, pod tables with random suffixes) are tagged ``nbval-ignore-output`` and still executed.

nbval runs in a subprocess so that its kernel sees ``KSERVE_NB_HOME`` pointing at this module's own
cluster (``%kserve connect local`` and ``connect(local=True)`` start or reuse the cluster there); the
session-wide ``local_cluster`` fixture is a different state dir, hence an independent cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kserve_nb.local import manager

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0[1-35]*-*.ipynb"))  # 01–03b and 05, not 04 (real cluster)
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"
NBVAL_TIMEOUT = 600  # seconds for one notebook, kernel start to last cell


@pytest.fixture(scope="module")
def notebook_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh local cluster for the notebooks, stopped (with its model servers) afterwards."""
    home = tmp_path_factory.mktemp("nbval-cluster")
    manager.up(home)
    try:
        yield home
    finally:
        manager.down(home)


def test_the_runbook_notebooks_are_stored_executed() -> None:
    import nbformat

    assert [p.name.split("-")[0] for p in NOTEBOOKS] == ["01", "02", "03", "03b", "05"]
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code and all(c.execution_count is not None for c in code), f"{path.name} is not stored executed"
        assert any(c.outputs for c in code), f"{path.name} has no stored outputs"
        errors = [o for c in code for o in c.outputs if o.output_type == "error"]
        assert not errors, f"{path.name} was stored with an error: {errors[0].get('evalue')}"


@pytest.mark.timeout(NBVAL_TIMEOUT + 60)
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_reproduces_its_stored_outputs(notebook: Path, notebook_home: Path) -> None:
    env = {**os.environ, "KSERVE_NB_HOME": str(notebook_home)}
    # The notebooks connect to the local cluster explicitly; keep any real kubeconfig out of reach anyway.
    env.pop("KUBECONFIG", None)
    started = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env",
            "--nbval-sanitize-with", str(SANITIZE), "--nbval-cell-timeout", "300",
            "-p", "no:cacheprovider", "-o", "addopts=", "-q", str(notebook.relative_to(ROOT)),
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=NBVAL_TIMEOUT,
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, (
        f"nbval found differences in {notebook.name} after {took:.0f}s "
        "(re-execute the notebook against a fresh local cluster and store it, or sanitize the volatile "
        f"part in {SANITIZE.name}):\n{proc.stdout[-12000:]}\n{proc.stderr[-3000:]}"
    )


def test_real_cluster_notebook_is_never_executed_here() -> None:
    import nbformat

    path = ROOT / "notebooks" / "04-real-cluster.ipynb"
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all("nbval-skip" in c.metadata.get("tags", []) for c in code)
    assert all(not c.outputs and c.execution_count is None for c in code), "it must not look as if it ran"
    assert "never executed" in nb.cells[0].source
    pytest.skip(
        "04-real-cluster.ipynb talks to a real KServe cluster chosen by its reader; CI has none, so it is "
        "checked for its nbval-skip tags only and never run"
    )


def store_executed(paths: list[Path]) -> None:
    """Re-execute ``paths`` against a fresh local cluster and store them with their outputs."""
    import tempfile

    import nbformat
    from nbclient import NotebookClient

    with tempfile.TemporaryDirectory(prefix="kserve-nb-store-") as home:
        os.environ["KSERVE_NB_HOME"] = home  # the kernels inherit it: %kserve connect local lands here
        os.environ.pop("KUBECONFIG", None)
        manager.up(home)
        try:
            for path in paths:
                started = time.monotonic()
                nb = nbformat.read(path, as_version=4)
                client = NotebookClient(
                    nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
                )
                client.execute()
                nbformat.write(nb, path)
                print(f"stored {path.relative_to(ROOT)} ({time.monotonic() - started:.0f}s)")
        finally:
            manager.down(home)


if __name__ == "__main__":
    store_executed([Path(p).resolve() for p in sys.argv[1:]] or NOTEBOOKS)
