"""``%kserve`` magics in a real IPython shell against the real local cluster.

Every command goes through ``shell.run_cell`` exactly as a notebook cell would, so line parsing,
``{var}``/``$var`` expansion, the displayhook and error rendering are IPython's own. Cluster state
is checked with the real ``kubectl``, not through our own code.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.testing.tools import default_config
from IPython.utils.capture import capture_output

from kserve_nb.errors import KServeNbError, NotFound, ValidationError

MODEL_1 = "gs://kfserving-examples/models/sklearn/1.0/model"
MODEL_2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
IRIS = {"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}


def manifest(name: str, uri: str = MODEL_1) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: "serving.kserve.io/v1beta1"
        kind: "InferenceService"
        metadata:
          name: "{name}"
        spec:
          predictor:
            model:
              modelFormat:
                name: sklearn
              storageUri: "{uri}"
        """
    )


# ---------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def shell(local_cluster: Any) -> Iterator[InteractiveShell]:
    """A real InteractiveShell with the extension loaded and connected to the test cluster."""
    import plotly.io as pio

    # Figures are displayed by `%kserve compare`; make sure no renderer ever opens a browser.
    pio.renderers.default = "plotly_mimetype"
    sh = InteractiveShell.instance(config=default_config())
    sh.run_line_magic("load_ext", "kserve_nb")
    ok(sh, f"%kserve connect local --state-dir {local_cluster.state_dir}")
    yield sh
    if "kserve_nb" in sh.extension_manager.loaded:
        sh.run_line_magic("unload_ext", "kserve_nb")


def ok(sh: InteractiveShell, cell: str) -> Any:
    """Run a cell that must succeed; return the value IPython displayed (or None)."""
    result = sh.run_cell(cell)
    assert result.success, f"{cell!r} failed: {result.error_in_exec or result.error_before_exec!r}"
    return result.result


def one_line_error(
    sh: InteractiveShell, cell: str, capsys: pytest.CaptureFixture[str], kind: type = KServeNbError
) -> str:
    """Run a failing cell; assert IPython showed exactly one line and no traceback. Returns it."""
    capsys.readouterr()
    result = sh.run_cell(cell)
    err = result.error_in_exec
    assert isinstance(err, kind), f"{cell!r}: expected {kind.__name__}, got {err!r}"
    assert len(err._render_traceback_()) == 1
    shown = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(shown) == 1, shown
    assert "Traceback" not in shown[0]
    return shown[0]


def magics(sh: InteractiveShell) -> Any:
    return sh.magics_manager.registry["KServeMagics"]


def isvc(kubectl: Any, name: str) -> dict[str, Any]:
    """The live object as ``kubectl get isvc NAME -o json`` prints it."""
    return json.loads(kubectl.run("get", "isvc", name, "-n", "default", "-o", "json").stdout)


def wait_ready(sh: InteractiveShell, name: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        st = ok(sh, f"%kserve status {name}")
        if st.ready or time.monotonic() > deadline:
            assert st.ready, st.summary()
            return st
        time.sleep(0.1)


@pytest.fixture()
def service(shell: InteractiveShell, kubectl: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh ready service on model 1, named after the test, deleted afterwards."""
    name = "mg-" + request.node.name.removeprefix("test_").replace("_", "-")[:30].rstrip("-")
    ok(shell, f"%%kserve apply\n{manifest(name)}")
    wait_ready(shell, name)
    yield name
    _delete(shell, name)


def _delete(sh: InteractiveShell, name: str) -> None:
    if "KServeMagics" in sh.magics_manager.registry:
        try:
            magics(sh).session.service(name).delete()
        except NotFound:
            pass


# ---------------------------------------------------------------------- loading and help


def test_load_ext_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "sh = InteractiveShell.instance()\n"
        "sh.run_line_magic('load_ext', 'kserve_nb')\n"
        "assert 'kserve' in sh.magics_manager.magics['line']\n"
        "print(','.join(m for m in ('pandas', 'plotly', 'kubernetes', 'httpx', 'numpy', 'yaml') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_help_prints_usage_and_returns_nothing(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    for cell in ("%kserve --help", "%kserve", "%kserve canary --help"):
        capsys.readouterr()
        assert ok(shell, cell) is None
        out = capsys.readouterr().out
        assert out.startswith("usage: %kserve"), out
    assert "--storage-uri URI" in out and "--percent P" in out


def test_config_magic_updates_the_extension_settings(shell: InteractiveShell) -> None:
    ok(shell, "%config KServeNb.max_step = 7")
    try:
        assert magics(shell).settings.max_step == 7
        assert magics(shell).session.config.max_step == 7
    finally:
        ok(shell, "%config KServeNb.max_step = 100")


def test_connect_returns_the_session_banner(shell: InteractiveShell, local_cluster: Any) -> None:
    session = ok(shell, f"s = %kserve connect local --state-dir {local_cluster.state_dir}") or shell.user_ns["s"]
    assert session is magics(shell).session
    assert session.is_local and "context kserve-nb-local" in session.banner
    assert ok(shell, "%kserve local status").api == local_cluster.api


def test_question_mark_lists_every_subcommand_with_an_example(shell: InteractiveShell) -> None:
    from kserve_nb.magics.args import build_parser

    pages: list[Any] = []
    import IPython.core.page as page

    real_page = page.page
    page.page = lambda strng, *args, **kwargs: pages.append(strng)
    try:
        ok(shell, "%kserve?")
    finally:
        page.page = real_page
    text = pages[0]["text/plain"] if isinstance(pages[0], dict) else pages[0]
    assert "``" not in text and "`" not in text  # plain text, no raw reST markup
    for name, sub in build_parser().subcommands.items():  # subcommands added later are listed too
        assert re.search(rf"^  {name} +{re.escape(sub.description or '')}$", text, re.M), name
    assert text.count("e.g. %") + text.count("e.g. cmp = %") + text.count("e.g. results = %") == len(
        build_parser().subcommands
    )


def test_every_help_ends_with_an_example(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    from kserve_nb.magics.args import build_parser

    for name in build_parser().subcommands:
        capsys.readouterr()
        assert ok(shell, f"%kserve {name} --help") is None
        last = capsys.readouterr().out.rstrip().splitlines()
        assert last[0].startswith(f"usage: %kserve {name}"), last[0]
        example = last[-1].strip()
        assert re.match(rf"(\w+ = )?%%?kserve {name}\b", example), (name, example)


def test_comments_after_a_magic_are_ignored_as_in_a_shell(
    shell: InteractiveShell, service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ok(shell, f"%kserve status {service}   # or: %kserve status -A").name == service
    assert ok(shell, f"st = %kserve status {service}  # keep it") is None and shell.user_ns["st"].name == service
    # In quotes, or inside a word, # is not a comment.
    payload = '{"instances": [[6.8, 2.8, 4.8, 1.4]], "id": "#1"}'
    assert ok(shell, f"%kserve predict {service} --data '{payload}'  # one flower").predictions == [1]
    line = one_line_error(shell, f"%kserve status {service}#x", capsys, NotFound)
    assert f'"{service}#x" not found' in line
    assert "check the quotes" in one_line_error(shell, "%kserve status 'mg-x # still quoted", capsys, ValidationError)


def test_unknown_subcommand_suggests_the_closest(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(shell, "%kserve stauts mg-x", capsys, ValidationError)
    assert line.endswith(": unknown subcommand 'stauts'; did you mean status? (%kserve? lists them all)")
    assert "did you mean rollback?" in one_line_error(shell, "%kserve rolback mg-x", capsys, ValidationError)
    line = one_line_error(
        shell, "%kserve canary mg-x --storage-uri gs://b/m --percent 5 --dryrun", capsys, ValidationError
    )
    assert "unrecognized arguments: --dryrun (did you mean --dry-run?)" in line


def _complete(sh: InteractiveShell, text: str) -> list[str]:
    from IPython.core.completer import provisionalcompleter

    with provisionalcompleter():
        return sorted({c.text for c in sh.Completer.completions(text, len(text))})


def test_tab_completes_subcommands_options_choices_and_services(shell: InteractiveShell, service: str) -> None:
    from kserve_nb.magics.args import build_parser

    assert _complete(shell, "%kserve ") == sorted(build_parser().subcommands)
    assert _complete(shell, "%kserve sta") == ["status"]
    assert _complete(shell, "x = %kserve comp") == ["compare"]
    assert _complete(shell, "%%kserve ap") == ["apply"]
    assert "--storage-uri" in _complete(shell, "%kserve canary mg-x --") and "--percent" in _complete(
        shell, "%kserve canary mg-x --"
    )
    assert _complete(shell, "%kserve canary mg-x --sto") == ["--storage-uri"]
    assert _complete(shell, "%kserve predict mg-x --to ") == ["default", "latest", "prev"]
    assert _complete(shell, "%kserve local ") == ["down", "status", "up"]
    # Service names of the session's namespace (or of -n), fetched from the cluster.
    assert service in _complete(shell, "%kserve status ")
    assert _complete(shell, f"%kserve promote {service[:-1]}") == [service]
    assert service in _complete(shell, "%kserve canary --storage-uri gs://b/m ")
    assert service not in _complete(shell, "%kserve status -n kube-system ")
    shell.user_ns["iris_rows_for_tab"] = [[1.0, 2.0, 3.0, 4.0]]
    assert _complete(shell, f"%kserve compare {service} iris_rows_f") == ["iris_rows_for_tab"]


def test_tab_completion_without_a_session_never_errors(shell: InteractiveShell, local_cluster: Any) -> None:
    ok(shell, "%unload_ext kserve_nb")
    try:
        ok(shell, "%load_ext kserve_nb")
        assert not magics(shell).has_session
        assert _complete(shell, "%kserve sta") == ["status"]
        assert not any(c.startswith("mg-") for c in _complete(shell, "%kserve status "))
        assert not magics(shell).has_session  # completing did not connect
    finally:
        ok(shell, f"%kserve connect local --state-dir {local_cluster.state_dir}")
    ok(shell, "%unload_ext kserve_nb")
    assert magics_count(shell) == 0  # unloading removes the completer with the magic
    ok(shell, "%load_ext kserve_nb")
    ok(shell, f"%kserve connect local --state-dir {local_cluster.state_dir}")
    assert magics_count(shell) == 1


def magics_count(sh: InteractiveShell) -> int:
    return sum(getattr(m, "__qualname__", "").endswith("kserve_matcher") for m in sh.Completer.custom_matchers)


# ---------------------------------------------------------------------- bad input: one clean line


def test_unknown_subcommand_is_one_line(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(shell, "%kserve frobnicate x", capsys, ValidationError)
    assert "unknown subcommand 'frobnicate'" in line and "canary" in line


def test_missing_arguments_name_what_is_missing(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(shell, "%kserve canary mg-x --percent 10", capsys, ValidationError)
    assert "--storage-uri" in line and "usage: %kserve canary" in line
    assert "required: NAME, P" in one_line_error(shell, "%kserve traffic", capsys, ValidationError)


def test_percent_out_of_range_is_refused_before_anything_is_sent(
    shell: InteractiveShell, service: str, kubectl: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    cell = f"%kserve canary {service} --storage-uri {MODEL_2} --percent 150"
    line = one_line_error(shell, cell, capsys, ValidationError)
    assert "from 0 to 100, got 150" in line
    assert "from 0 to 100, got 150" in one_line_error(shell, f"%kserve traffic {service} 150", capsys, ValidationError)
    assert "whole number" in one_line_error(shell, f"%kserve traffic {service} ten", capsys, ValidationError)
    assert "canaryTrafficPercent" not in isvc(kubectl, service)["spec"]["predictor"]


def test_malformed_yaml_in_apply_names_line_and_column(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    body = "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: [mg-bad\n"
    line = one_line_error(shell, f"%%kserve apply\n{body}", capsys, ValidationError)
    assert "malformed YAML at line" in line and "column" in line and "nothing was applied" in line


def test_malformed_json_names_line_and_column(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    line = one_line_error(shell, """%kserve predict mg-x --data '{"instances": [[1, 2,]]}'""", capsys, ValidationError)
    assert "malformed JSON in --data at line 1, column" in line
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "instances": [[1, 2]\n}\n')
    line = one_line_error(shell, f"%kserve predict mg-x -d @{bad}", capsys, ValidationError)
    assert f"malformed JSON in {bad} at line 3, column 1" in line
    line = one_line_error(shell, '%%kserve predict mg-x\n{"instances": ', capsys, ValidationError)
    assert "malformed JSON in the cell body at line 2, column 1" in line  # EOF after the newline


def test_unknown_service_shows_the_not_found_message(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_line_error(shell, "%kserve status mg-does-not-exist", capsys, NotFound)
    assert 'InferenceService "mg-does-not-exist" not found in namespace "default"' in line
    one_line_error(shell, "%kserve promote mg-does-not-exist", capsys, NotFound)


def test_misused_forms_are_one_line(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    assert "takes no cell body" in one_line_error(shell, "%%kserve status\nx", capsys, ValidationError)
    assert "apply needs one manifest" in one_line_error(shell, "%kserve apply", capsys, ValidationError)
    assert "check the quotes" in one_line_error(shell, "%kserve status 'mg-x", capsys, ValidationError)
    assert "exactly one payload" in one_line_error(shell, "%kserve predict mg-x", capsys, ValidationError)
    assert "not a variable" in one_line_error(shell, "%kserve send mg-x no_such_rows", capsys, ValidationError)


def test_declared_context_must_match_the_session(
    shell: InteractiveShell, service: str, kubectl: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_line_error(shell, f"%kserve traffic {service} 0 --context prod-cluster", capsys, ValidationError)
    assert "declares context 'prod-cluster'" in line and "nothing was done" in line
    assert "canaryTrafficPercent" not in isvc(kubectl, service)["spec"]["predictor"]
    assert ok(shell, f"%kserve status {service} --context kserve-nb-local").ready is True


# ---------------------------------------------------------------------- values, display, expansion


def test_assignment_returns_the_value_and_a_bare_magic_displays_it_once(shell: InteractiveShell, service: str) -> None:
    ok(shell, f"x = %kserve status {service}")
    st = shell.user_ns["x"]
    assert st.name == service and st.ready
    with capture_output() as captured:
        shown = ok(shell, f"%kserve status {service}")
    assert shown.name == service  # displayed once, through the return value ...
    assert captured.outputs == []  # ... and not also by an explicit display()


def test_braces_and_dollar_expand_notebook_variables(shell: InteractiveShell, service: str) -> None:
    shell.user_ns["svc_name"] = service
    assert ok(shell, "%kserve status {svc_name}").name == service
    assert ok(shell, "%kserve status $svc_name").name == service
    shell.user_ns["names"] = {"svc": service}
    assert ok(shell, "%kserve status {names['svc']}").name == service


def test_services_table_pods_and_namespace(shell: InteractiveShell, service: str, kubectl: Any) -> None:
    table = ok(shell, "%kserve status")
    assert service in set(table["NAME"])
    pods = ok(shell, f"%kserve pods {service}")
    assert len(pods) == 1 and "predictor-00001" in pods["NAME"][0]
    ns = f"mg-ns-{int(time.time() * 1000) % 100000}"
    try:
        assert ok(shell, f"%kserve namespace create {ns}") == f"namespace/{ns} created"
        assert ok(shell, f"%kserve namespace create {ns}") == f"namespace/{ns} unchanged"
        assert kubectl.run("get", "namespace", ns).returncode == 0
    finally:
        kubectl.run("delete", "namespace", ns, "--ignore-not-found", check=False)


def test_apply_records_creates_and_updates_in_the_history(shell: InteractiveShell, service: str) -> None:
    assert str(ok(shell, f"%%kserve apply\n{manifest(service, MODEL_2)}")) == (
        f"inferenceservice.serving.kserve.io/{service} configured"
    )
    history = ok(shell, f"%kserve history {service}")
    assert history[["action", "storageUri", "outcome"]].values.tolist() == [
        ["create", MODEL_1, "applied"], ["apply", MODEL_2, "applied"]
    ]


def test_deploy_dry_run_and_no_wait(shell: InteractiveShell, service: str, kubectl: Any) -> None:
    plan = ok(shell, f"%kserve deploy {service} --storage-uri {MODEL_2} --dry-run")
    assert plan.new_revision == f"{service}-predictor-00002"
    assert isvc(kubectl, service)["spec"]["predictor"]["model"]["storageUri"] == MODEL_1
    release = ok(shell, f"%kserve deploy {service} --storage-uri {MODEL_2} --no-wait")
    assert release.waited is False
    assert isvc(kubectl, service)["spec"]["predictor"]["model"]["storageUri"] == MODEL_2


# ---------------------------------------------------------------------- the walkthrough


def test_walkthrough_end_to_end(shell: InteractiveShell, kubectl: Any, tmp_path: Path) -> None:
    name = "mg-walk"
    _delete(shell, name)
    try:
        _walkthrough(shell, kubectl, tmp_path, name)
    finally:
        _delete(shell, name)


def _walkthrough(shell: InteractiveShell, kubectl: Any, tmp_path: Path, name: str) -> None:
    # Step 1: create with %%kserve apply, exactly like `kubectl apply -f - <<EOF`.
    results = ok(shell, f"%%kserve apply\n{manifest(name)}")
    assert str(results) == f"inferenceservice.serving.kserve.io/{name} created"
    st = wait_ready(shell, name)
    assert (st.prev_percent, st.latest_percent) == (None, 100)

    # Step 2: a 10% canary of model-2 with tag routing; the dry run changes nothing first.
    plan = ok(shell, f"%kserve canary {name} --storage-uri {MODEL_2} --percent 10 --tag-routing --dry-run")
    assert [(e.percent, e.revision[-5:]) for e in plan.after.traffic] == [(10, "00002"), (90, "00001")]
    assert "canaryTrafficPercent" not in isvc(kubectl, name)["spec"]["predictor"]
    with capture_output() as captured:
        release = ok(shell, f"%kserve canary {name} --storage-uri {MODEL_2} --percent 10 --tag-routing")
    assert captured.outputs == []  # no banner: the Release names where it happened, once
    assert release.where == "local cluster · context kserve-nb-local"
    shown = release._repr_html_()
    assert shown.count("context kserve-nb-local") == 1 and shown.count(f"canary default/{name}") == 1
    assert (release.status.prev_percent, release.status.latest_percent) == (90, 10)
    live = isvc(kubectl, name)
    assert live["spec"]["predictor"]["canaryTrafficPercent"] == 10
    traffic = live["status"]["components"]["predictor"]["traffic"]
    assert {e["tag"]: e["percent"] for e in traffic} == {"latest": 10, "prev": 90}

    # One pod per revision.
    pods = ok(shell, f"%kserve pods {name}")
    assert sorted(pods["REVISION"]) == [f"{name}-predictor-00001", f"{name}-predictor-00002"]

    # Predict each side: -d @file (curl's syntax), a variable, and a %%kserve predict body.
    payload = tmp_path / "iris-input.json"
    payload.write_text(json.dumps(IRIS))
    latest = ok(shell, f"%kserve predict {name} --to latest -d @{payload}")
    assert latest.revision == f"{name}-predictor-00002" and len(latest.predictions) == 2
    # A readable value: side, revision, predictions, status and a rounded latency.
    assert re.fullmatch(
        rf"<PredictionResult latest → {name}-predictor-00002: \[\d, \d\] \(HTTP 200, \d+\.\d ms\)>", repr(latest)
    ), repr(latest)
    shell.user_ns["iris_payload"] = IRIS
    prev = ok(shell, f"%kserve predict {name} --to prev iris_payload")
    assert prev.revision == f"{name}-predictor-00001"
    body = ok(shell, f"%%kserve predict {name} --to latest\n{json.dumps(IRIS)}")
    assert body.predictions == latest.predictions
    # Inline JSON survives IPython's {…} expansion of line magics (it is not a Python expression).
    inline = ok(shell, f"%kserve predict {name} --to latest --data '{json.dumps(IRIS)}'")
    assert inline.predictions == latest.predictions

    # Paired replay and comparison.
    ok(shell, "import numpy as np\nX = np.array(" + repr(IRIS["instances"] * 5) + ")")
    frame = ok(shell, f"%kserve send {name} X --repeat 2")
    assert len(frame) == 2 * 10 * 2 and set(frame["target"]) == {"latest", "prev"}
    assert frame["error"].isna().all()
    with capture_output() as captured:
        comparison = ok(shell, f"%kserve compare {name} X")
    assert comparison.agreement.rate is not None
    assert len(captured.outputs) == len(comparison.figures())  # the figures; the summary is the value

    assert len(ok(shell, f"%kserve revisions {name}")) == 2

    # Traffic, promote, rollback — the cluster follows each.
    ok(shell, f"%kserve traffic {name} 30")
    assert isvc(kubectl, name)["spec"]["predictor"]["canaryTrafficPercent"] == 30
    promoted = ok(shell, f"%kserve promote {name}")
    live = isvc(kubectl, name)
    assert "canaryTrafficPercent" not in live["spec"]["predictor"]
    assert [(e["revisionName"], e["percent"]) for e in live["status"]["components"]["predictor"]["traffic"]] == [
        (f"{name}-predictor-00002", 100)
    ]
    assert promoted.status.latest_percent == 100
    ok(shell, f"%kserve rollback {name}")
    live = isvc(kubectl, name)
    assert live["spec"]["predictor"]["canaryTrafficPercent"] == 0
    split = {e["revisionName"]: e["percent"] for e in live["status"]["components"]["predictor"]["traffic"]}
    assert split == {f"{name}-predictor-00001": 100, f"{name}-predictor-00002": 0}

    history = ok(shell, f"%kserve history {name}")
    assert list(history["action"]) == ["create", "canary", "traffic", "promote", "rollback"]  # create: the apply
    assert list(history["outcome"]) == ["applied", "done", "done", "done", "done"]
    assert list(history["percent"]) == ["", 10, 30, "", ""]  # whole numbers, blanks: never NaN or 10.0
    shown = history._repr_html_()
    assert "NaN" not in shown + repr(history) and "10.0" not in shown + repr(history)
    assert "..." not in shown and shown.count(MODEL_2) == 1  # whole storageUris (pandas cuts cells past 50 characters)
    assert ok(shell, f"%kserve delete {name}") == f"inferenceservice.serving.kserve.io/{name} deleted"
    assert kubectl.run("get", "isvc", name, "-n", "default", check=False).returncode != 0


# ---------------------------------------------------------------------- panel and unload


def test_panel_magic_and_unload_stop_everything(shell: InteractiveShell, service: str, local_cluster: Any) -> None:
    panel = ok(shell, f"p = %kserve panel {service}") or shell.user_ns["p"]
    assert panel.controller.polling
    client = magics(shell).session.prediction_client(service)
    ok(shell, "%unload_ext kserve_nb")
    try:
        assert panel.closed and not panel.controller.polling
        assert client.closed  # the session's clients are closed
        assert "KServeMagics" not in shell.magics_manager.registry
        assert shell.run_cell("%kserve status").error_in_exec is not None  # the magic is gone
        assert not any(c.__class__.__name__ == "KServeNb" for c in shell.configurables)
    finally:
        ok(shell, "%load_ext kserve_nb")
        ok(shell, f"%kserve connect local --state-dir {local_cluster.state_dir}")
    assert ok(shell, f"%kserve status {service}").ready is True
