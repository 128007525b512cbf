"""``%kserve rollout`` in a real IPython shell against the real local cluster."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing.tools import default_config
from IPython.utils.capture import capture_output

M1 = "gs://kfserving-examples/models/sklearn/1.0/model"
M2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
NS = "rollout-magics"


@pytest.fixture(scope="module")
def shell(local_cluster: Any) -> Iterator[InteractiveShell]:
    sh = InteractiveShell.instance(config=default_config())
    sh.run_line_magic("load_ext", "kserve_nb")
    for cell in (
        # The shell is IPython's singleton, shared with other test modules: the namespace goes on
        # the session (gone at unload), never into %config (which would outlive this module).
        f"%kserve connect local --state-dir {local_cluster.state_dir}",
        f"%kserve namespace create {NS}",
        f"%kserve connect local --state-dir {local_cluster.state_dir} -n {NS}",
        f"%kserve deploy ro-magic --storage-uri {M1}",
    ):
        assert sh.run_cell(cell).success, cell
    yield sh
    if "kserve_nb" in sh.extension_manager.loaded:
        sh.run_line_magic("unload_ext", "kserve_nb")


def run(sh: InteractiveShell, cell: str) -> tuple[Any, str]:
    with capture_output() as out:
        result = sh.run_cell(cell)
    shown = "".join(o.data.get("text/plain", "") for o in out.outputs)  # what display() showed
    return result, out.stdout + out.stderr + shown


def test_rollout_dry_run_shows_plan_patch_and_queries(shell: InteractiveShell) -> None:
    result, _ = run(
        shell,
        f"%kserve rollout ro-magic --storage-uri {M2} --steps 5,10,25,50,100 --interval 30s "
        "--gate 'error_rate<=prev+0.01' --gate 'p95<=1.2*prev'   --dry-run  # just look",
    )
    assert result.success, result.error_in_exec
    preview = result.result
    text = str(preview)
    assert "5% → 10% → 25% → 50% → promote" in text and "p95<=1.2*prev" in text
    assert '"canaryTrafficPercent": 5' in text
    html = preview._repr_html_()
    assert html.count('class="kserve-nb-step"') == 5 and "dry run — nothing applied" in html


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("%kserve rollout ro-magic", "rollout needs --storage-uri"),
        (f"%kserve rollout ro-magic --storage-uri {M2} --steps 10,5", "steps must rise"),
        (f"%kserve rollout ro-magic --storage-uri {M2} --gate 'latency<=prev'", "unknown metric 'latency'"),
        (f"%kserve rollout ro-magic --storage-uri {M2} --interval soon", "not a duration"),
        ("%kserve rollout ro-magic --approve", "no rollout in progress to approve"),
        ("%kserve rollout ro-magic --abort", "no rollout in progress to abort"),
        (f"%kserve rollout ro-magic --storage-uri {M2} --load nothing_here", "is not a variable"),
    ],
)
def test_bad_rollout_lines_are_one_clear_error(shell: InteractiveShell, line: str, fragment: str) -> None:
    result, out = run(shell, line)
    assert not result.success
    assert fragment in str(result.error_in_exec), result.error_in_exec
    assert "Traceback" not in out


def test_a_rollout_runs_from_a_cell_and_status_shows_its_state(shell: InteractiveShell) -> None:
    from sklearn.datasets import load_iris

    iris = load_iris()
    shell.user_ns["rows"], shell.user_ns["y"] = iris.data.tolist(), iris.target.tolist()
    result, _ = run(
        shell,
        f"r = %kserve rollout ro-magic --storage-uri {M2} --steps 20,100 --interval 1s --min-requests 5 "
        "--gate 'error_rate<=prev+0.05' --gate 'accuracy>=prev-0.5' --load rows --labels y --rate 60 --metrics client",
    )
    assert result.success, result.error_in_exec
    r = shell.user_ns["r"]
    assert r.phase == "Succeeded", r.summary()
    assert any(g["metric"] == "accuracy" for g in r.to_dict()["gates"])
    result, _ = run(shell, "%kserve rollout ro-magic --state")
    assert result.success and result.result.phase == "Succeeded"


def test_status_shows_a_held_rollout_and_abort_rolls_it_back_without_a_supervisor(shell: InteractiveShell) -> None:
    import threading

    session = shell.user_ns.get("_kserve_session") or _session(shell)
    assert shell.run_cell(f"%kserve deploy ro-held-magic --storage-uri {M1}").success
    svc = session.service("ro-held-magic", NS)
    stop = threading.Event()

    def stop_after_first_step(state: Any, evidence: Any) -> None:
        stop.set()  # the supervisor stops at its next check: the rollout is left held at 10 %

    from kserve_nb.rollout.plan import RolloutPlan
    from kserve_nb.rollout.runner import Supervisor

    plan = RolloutPlan.build(M2, steps="10,100", interval="600s")
    result = Supervisor(svc, plan, session.metrics(), cancel=stop, display=False,
                        on_update=stop_after_first_step).run()
    assert result.state.live and result.state.held()
    _, out = run(shell, "%kserve status ro-held-magic")
    assert "HELD at step 1/2 (10% to ro-held-magic-predictor-00002)" in out
    result, _ = run(shell, "%kserve rollout ro-held-magic --abort")
    assert result.success, result.error_in_exec
    assert result.result.phase == "Aborted"
    st = svc.status()
    assert st.canary_traffic_percent == 0 and st.prev_percent == 100


def _session(shell: InteractiveShell) -> Any:
    from kserve_nb.magics import core

    magics = shell.magics_manager.registry["KServeMagics"]
    assert isinstance(magics, core.KServeMagics)
    return magics.session
