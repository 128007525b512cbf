"""``%kserve`` magics on a Standard-mode (RawDeployment) service, in a real IPython shell and cluster.

The same subcommands as in Knative mode release through ``spec.canary[]``; the cluster's objects are
read with the real kubectl, and each side's answer names the Deployment that served it.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing.tools import default_config

from kserve_nb.errors import KServeNbError
from kserve_nb.plan import Plan
from kserve_nb.service import Release
from kserve_nb.status import ServiceStatus

NS = "std-magics"
M1 = "gs://kfserving-examples/models/sklearn/1.0/model"
M2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
ROWS = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6], [5.1, 3.5, 1.4, 0.2]]


@pytest.fixture(scope="module")
def shell(local_cluster: Any) -> Iterator[InteractiveShell]:
    """The shared shell with the extension, connected to the test cluster in this module's namespace."""
    import plotly.io as pio

    pio.renderers.default = "plotly_mimetype"  # `%kserve compare` displays figures: never a browser
    sh = InteractiveShell.instance(config=default_config())
    if "kserve_nb" not in sh.extension_manager.loaded:
        sh.run_line_magic("load_ext", "kserve_nb")
    ok(sh, f"%kserve connect local --state-dir {local_cluster.state_dir} -n {NS}")
    ok(sh, f"%kserve namespace create {NS}")
    yield sh


def ok(sh: InteractiveShell, cell: str) -> Any:
    """Run a cell that must succeed; return the value IPython displayed (or None)."""
    result = sh.run_cell(cell)
    assert result.success, f"{cell!r} failed: {result.error_in_exec or result.error_before_exec!r}"
    return result.result


def one_line_error(sh: InteractiveShell, cell: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    result = sh.run_cell(cell)
    assert isinstance(result.error_in_exec, KServeNbError), f"{cell!r}: got {result.error_in_exec!r}"
    shown = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(shown) == 1 and "Traceback" not in shown[0], shown
    return shown[0]


def weights(kubectl: Any, name: str) -> dict[str, int]:
    route = json.loads(kubectl.run("get", "httproute", f"{name}-predictor", "-n", NS, "-o", "json").stdout)
    return {ref["name"]: ref["weight"] for ref in route["spec"]["rules"][0]["backendRefs"]}


@pytest.fixture()
def name(shell: InteractiveShell) -> Iterator[str]:
    svc = "mgs-release"
    body = textwrap.dedent(
        f"""\
        %%kserve apply -n {NS}
        apiVersion: serving.kserve.io/v1beta1
        kind: InferenceService
        metadata:
          name: {svc}
          annotations:
            serving.kserve.io/deploymentMode: Standard
            serving.kserve.io/autoscalerClass: none
        spec:
          predictor:
            minReplicas: 2
            model: {{modelFormat: {{name: sklearn}}, storageUri: "{M1}"}}
        """
    )
    ok(shell, body)
    yield svc
    shell.run_cell(f"%kserve delete {svc}")


def test_a_standard_release_with_magics(
    shell: InteractiveShell, name: str, kubectl: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = ok(shell, f"%kserve canary {name} --storage-uri {M2} --percent 20 --dry-run")
    assert isinstance(plan, Plan) and plan.new_deployments == (f"{name}-v2-predictor",)
    release = ok(shell, f"%kserve canary {name} --storage-uri {M2} --percent 20")
    assert isinstance(release, Release) and release.canary == "v2"
    stable, v2 = f"{name}-predictor", f"{name}-v2-predictor"
    assert weights(kubectl, name) == {stable: 80, v2: 20}

    st = ok(shell, f"%kserve status {name}")
    assert isinstance(st, ServiceStatus) and st.standard
    html = st._repr_html_()
    assert v2 in html and "Standard" in html and "00001" not in html  # Deployments, no revision numbers
    sides = ok(shell, f"%kserve revisions {name}")
    assert isinstance(sides, pd.DataFrame) and list(sides["deployment"]) == [stable, v2]

    answer = ok(shell, f"%kserve predict {name} --to v2 --data '{json.dumps({'instances': ROWS[:1]})}'")
    assert answer.target == "v2" and answer.revision.rsplit("-", 1)[0] == v2
    shell.user_ns["std_rows"] = ROWS
    results = ok(shell, f"%kserve send {name} std_rows --to stable,v2")
    assert set(results["target"]) == {"stable", "v2"} and results["error"].isna().all()
    cmp = ok(shell, f"%kserve compare {name} std_rows")
    assert (cmp.baseline, cmp.candidate) == ("stable", "v2")

    ok(shell, f"%kserve traffic {name} 40")
    assert weights(kubectl, name) == {stable: 60, v2: 40}
    ok(shell, f"%kserve promote {name}")
    assert kubectl.isvc(name, NS)["spec"]["predictor"]["name"] == "v2"
    assert list(weights(kubectl, name)) == [v2]

    ok(shell, f"%kserve canary {name} --storage-uri {M1} --percent 10 --canary back")
    assert weights(kubectl, name) == {v2: 90, f"{name}-back-predictor": 10}
    ok(shell, f"%kserve rollback {name} --canary back")
    assert list(weights(kubectl, name)) == [v2]

    line = one_line_error(shell, f"%kserve rollback {name}", capsys)
    assert "nothing to roll back" in line
    payload = json.dumps({"instances": [[1, 2, 3, 4]]})
    line = one_line_error(shell, f"%kserve predict {name} --to latest --data '{payload}'", capsys)
    assert "no canary" in line
    history = ok(shell, f"%kserve history {name}")
    assert {"canary", "traffic", "promote", "rollback"} <= set(history["action"])


def test_canary_name_refused_in_knative_mode(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    svc = "mgs-knative"
    ok(shell, f"%kserve deploy {svc} --storage-uri {M1}")
    try:
        line = one_line_error(shell, f"%kserve traffic {svc} 10 --canary v2", capsys)
        assert "Knative mode" in line and "canary=" in line
    finally:
        shell.run_cell(f"%kserve delete {svc}")
