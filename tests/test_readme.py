"""The README runs as written: every fenced Python block and magic cell, in order, in a real Jupyter
kernel against a fresh local cluster; then its kubectl/curl block in bash against the same cluster.

A blank line inside a ```python block starts the next cell, as the README tells its reader. Blocks
fenced as bash are run only when cheap (the local-cluster block); ``make demo``/``make test`` are
what the rest of the suite checks.

The kernel sees ``KSERVE_NB_HOME`` and ``KUBECONFIG`` of this module's own cluster, so
``%kserve connect local`` and ``kserve_nb.connect()`` reach it verbatim and nothing else.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from kserve_nb.local import manager

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CELL_TIMEOUT = 300  # seconds for one cell: a release waits for its revision

_FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```$", re.S | re.M)


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block, in order."""
    return [(m["lang"], m["body"]) for m in _FENCE.finditer(text)]


def notebook_cells(text: str) -> list[str]:
    """The README's notebook cells in order: ```python blocks split at blank lines, and untagged
    blocks that are a cell magic (``%%kserve apply``)."""
    cells: list[str] = []
    for lang, body in fenced_blocks(text):
        if lang == "python":
            cells += [c.strip("\n") for c in re.split(r"\n\s*\n", body) if c.strip()]
        elif lang == "" and body.startswith("%%"):
            cells.append(body.rstrip("\n"))
    return cells


@dataclass
class Executed:
    """What one cell showed, as a notebook shows it (a display update replaces its display)."""

    cell: str
    outputs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def show(self, kind: str, content: dict[str, Any]) -> None:
        display_id = (content.get("transient") or {}).get("display_id")
        if kind == "update_display_data":
            for i, shown in enumerate(self.outputs):
                if display_id and (shown.get("transient") or {}).get("display_id") == display_id:
                    self.outputs[i] = {**shown, "data": content["data"]}
            return
        self.outputs.append({"msg_type": kind, **content})

    def html(self) -> list[str]:
        return [o["data"].get("text/html", "") for o in self.outputs if "data" in o]

    def results(self) -> list[dict[str, Any]]:
        return [o for o in self.outputs if o["msg_type"] == "execute_result"]


class Kernel:
    """A real ipykernel, driven over the Jupyter messaging protocol like a notebook frontend."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        from jupyter_client.manager import start_new_kernel

        self.manager, self.client = start_new_kernel(kernel_name="python3", env=env, cwd=str(cwd))

    def run(self, cell: str) -> Executed:
        executed = Executed(cell)
        msg_id = self.client.execute(cell)
        while True:
            msg = self.client.get_iopub_msg(timeout=CELL_TIMEOUT)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content["execution_state"] == "idle":
                break
            if kind == "error":
                executed.error = f"{content['ename']}: {content['evalue']}"
            elif kind in ("stream", "display_data", "execute_result", "update_display_data"):
                executed.show(kind, content)
        return executed

    def value(self, expression: str) -> Any:
        """A JSON-able value computed in the kernel."""
        done = self.run(f"import json as _json; print(_json.dumps({expression}))")
        assert done.error is None, done.error
        text = "".join(o["text"] for o in done.outputs if o["msg_type"] == "stream")
        return json.loads(text)

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh local cluster for the README alone, stopped (with its model servers) afterwards."""
    state = tmp_path_factory.mktemp("readme-cluster")
    manager.up(state)
    try:
        yield state
    finally:
        manager.down(state)


@pytest.fixture(scope="module")
def env(home: Path) -> dict[str, str]:
    out = {**os.environ, "KSERVE_NB_HOME": str(home), "KUBECONFIG": str(home / "kubeconfig")}
    for name in ("INGRESS_HOST", "INGRESS_PORT"):
        out.pop(name, None)
    return out


@pytest.fixture(scope="module")
def kernel(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    k = Kernel(env, tmp_path_factory.mktemp("readme-cwd"))
    try:
        yield k
    finally:
        k.close()


def test_the_readme_has_a_tour_to_run() -> None:
    cells = notebook_cells(README.read_text())
    assert cells[0].startswith("%load_ext kserve_nb")
    assert any(c.startswith("%%kserve apply") for c in cells)
    assert any("kserve_nb.connect(" in c for c in cells)
    assert len(cells) >= 10


def test_the_readme_runs_verbatim_in_a_kernel(kernel: Kernel) -> None:
    shown: list[Executed] = []
    for cell in notebook_cells(README.read_text()):
        done = kernel.run(cell)
        assert done.error is None, f"README cell failed:\n{cell}\n→ {done.error}"
        shown.append(done)

    # A release cell says how it went once: the live progress line, then the Release (which names
    # where it happened) — no banner, no second and third copy of the summary.
    release = next(e for e in shown if "--percent 10 --tag-routing\n" in e.cell + "\n")
    progress = [h for h in release.html() if "kserve-nb-progress" in h]
    assert len(progress) == 1 and "settled" in progress[0]
    assert not any("kserve-nb-banner" in h for h in release.html()), release.html()
    assert len(release.results()) == 1
    result = release.results()[0]["data"]
    assert "context kserve-nb-local" in result["text/html"] and "kserve-nb-release" in result["text/html"]

    dry_run = next(e for e in shown if "--dry-run" in e.cell)
    assert "dry run of canary" in dry_run.results()[0]["data"]["text/plain"]

    predicted = next(e for e in shown if e.cell.startswith("%kserve predict"))
    text = predicted.results()[0]["data"]["text/plain"]
    assert re.fullmatch(
        r"<PredictionResult latest → sklearn-iris-predictor-00002: \[\d\] \(HTTP 200, \d+\.\d ms\)>", text
    )

    # The progressive rollout of a faulty candidate rolled itself back at its first step.
    assert kernel.value("[r.phase, r.state.step]") == ["RolledBack", 0]
    assert "gate failed: error_rate" in kernel.value("r.reason")

    # Where the tour left the cluster: ready, all traffic back on the model the tour released
    # before, every step recorded.
    state = kernel.value("(lambda s: [s.ready, s.prev_percent, s.latest_percent])(svc.status())")
    assert state == [True, 100, 0]
    history = kernel.value('svc.history()[["action", "outcome"]].values.tolist()')
    assert history[0] == ["create", "applied"]  # the %%kserve apply create is recorded too
    assert history[-1] == ["rollout", "failed"]  # the rollout's outcome: rolled back, and why
    assert {outcome for _, outcome in history[1:-1]} == {"done"}


def test_the_readme_kubectl_block_runs_against_the_same_cluster(env: dict[str, str]) -> None:
    blocks = [
        body for lang, body in fenced_blocks(README.read_text()) if lang == "bash" and "kserve-nb local up" in body
    ]
    assert len(blocks) == 1
    if not shutil.which("kubectl") or not shutil.which("curl"):
        pytest.fail("kubectl and curl are installed by `make test`; install them to run the README's block")
    bin_dir = str(Path(sys.executable).parent)
    proc = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", blocks[0]], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "sklearn-iris" in proc.stdout  # kubectl get isvc -A
    assert '{"predictions":[1,1]}' in proc.stdout.replace(" ", "")  # curl to the service URL
