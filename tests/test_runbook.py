"""The release runbook (notebooks/03-release-runbook.ipynb) executed headless with papermill.

Each outcome runs the real notebook against the session's local cluster, each on its own service:
a good candidate is promoted; a missing model, a model whose revision fails to load, and a model
that disagrees heavily with the baseline are rolled back. Every case checks that the cluster ends
where the verdict says (through a Session) and that the JSON record says the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kserve_nb import runbook
from kserve_nb.analysis.compare import Check, Verdict
from kserve_nb.local import manager
from kserve_nb.session import Session, connect

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = ROOT / "notebooks" / "03-release-runbook.ipynb"
NS = "runbook-test"
MODEL = "gs://kfserving-examples/models/sklearn/1.0/model"
MODEL_2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
MISSING = "gs://kfserving-examples/models/sklearn/1.0/model-missing"


def run_runbook(cluster: manager.LocalCluster, out_dir: Path, **parameters: Any) -> tuple[dict[str, Any], Any]:
    """Execute the runbook with papermill; returns its JSON record and the executed notebook."""
    import papermill

    record = out_dir / f"{parameters['service']}.json"
    executed = out_dir / f"{parameters['service']}.ipynb"
    params = {"namespace": NS, "state_dir": str(cluster.state_dir), "record_path": str(record), **parameters}
    nb = papermill.execute_notebook(
        str(RUNBOOK), str(executed), parameters=params, cwd=str(RUNBOOK.parent),
        kernel_name="python3", progress_bar=False, execution_timeout=300,
    )
    return json.loads(record.read_text()), nb


def verdict_text(nb: Any) -> str:
    """The text of the runbook's last cell (the verdict)."""
    last = nb.cells[-1]
    return "\n".join(o.get("data", {}).get("text/plain", "") for o in last.outputs)


@pytest.fixture(scope="module")
def session(local_cluster: manager.LocalCluster) -> Session:
    s = connect(local=True, state_dir=local_cluster.state_dir, namespace=NS)
    s.create_namespace(NS)
    yield s
    s.close()


@pytest.fixture(scope="module")
def degraded_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A classifier trained on shuffled iris labels: it answers, but rarely like the baseline."""
    import joblib
    import numpy as np
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    x, y = load_iris(return_X_y=True)
    model = DecisionTreeClassifier(random_state=0).fit(x, np.random.default_rng(0).permutation(y))
    directory = tmp_path_factory.mktemp("degraded-model")
    joblib.dump(model, directory / "model.joblib")
    return directory.as_uri()


@pytest.fixture(scope="module")
def corrupt_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A model file that exists (so the pre-flight passes) but cannot be loaded: its revision fails."""
    directory = tmp_path_factory.mktemp("corrupt-model")
    (directory / "model.joblib").write_bytes(b"this is not a joblib pickle\n")
    return directory.as_uri()


def serving(session: Session, name: str) -> list[dict[str, Any]]:
    return runbook.serving(session.service(name)).to_dict(orient="records")


# ---------------------------------------------------------------------- the four outcomes


@pytest.mark.timeout(300)
def test_good_candidate_is_promoted(local_cluster, session, tmp_path) -> None:
    record, nb = run_runbook(local_cluster, tmp_path, service="rb-good", candidate_uri=MODEL_2)

    assert record["decision"]["action"] == "promote"
    assert record["decision"]["basis"] == "verdict"
    st = session.service("rb-good").status()
    assert st.ready and st.latest_percent == 100 and len(st.traffic) == 1
    assert st.latest_revision == "rb-good-predictor-00002" and st.storage_uri == MODEL_2
    assert serving(session, "rb-good") == [
        {"revision": "rb-good-predictor-00002", "storageUri": MODEL_2, "percent": 100}
    ]
    assert record["outcome"] == {
        "expected_storageUri": MODEL_2, "serving": serving(session, "rb-good"), "ready": "True", "consistent": True,
    }
    assert record["after"]["latestReadyRevision"] == st.latest_ready_revision
    assert record["before"]["traffic"] == [
        {"revisionName": "rb-good-predictor-00001", "percent": 100, "latestRevision": True, "tag": "latest"}
    ]
    assert record["canary"]["latest"] == 10 and record["canary"]["prev"] == 90
    assert record["comparison"]["agreement"]["pairs"] == 150
    assert record["comparison"]["agreement"]["rate"] >= 0.9
    assert [c["passed"] for c in record["verdict"]["checks"]] == [True, True, True, True]
    assert [e["action"] for e in record["history"]] == ["create", "canary", "promote"]
    assert record["cluster"]["context"] == "kserve-nb-local" and record["cluster"]["local"] is True
    assert record["parameters"]["candidate_uri"] == MODEL_2
    assert "RELEASE VERDICT: PROMOTED" in verdict_text(nb)


@pytest.mark.timeout(300)
def test_missing_model_is_rolled_back_before_anything_is_applied(local_cluster, session, tmp_path) -> None:
    record, nb = run_runbook(local_cluster, tmp_path, service="rb-missing", candidate_uri=MISSING)

    assert record["decision"]["action"] == "rollback"
    assert record["decision"]["basis"] == "failure"
    (reason,) = record["decision"]["reasons"]
    assert "refused before anything was applied" in reason and "model-missing" in reason
    st = session.service("rb-missing").status()
    assert st.latest_created_revision == "rb-missing-predictor-00001"  # no revision was ever created
    assert st.ready and st.latest_percent == 100 and st.storage_uri == MODEL
    assert serving(session, "rb-missing") == record["outcome"]["serving"] == [
        {"revision": "rb-missing-predictor-00001", "storageUri": MODEL, "percent": 100}
    ]
    assert record["outcome"]["consistent"] is True
    assert record["comparison"] is None and record["verdict"] is None
    assert record["action"].startswith("nothing to undo")
    assert "RELEASE VERDICT: ROLLED BACK" in verdict_text(nb)


@pytest.mark.timeout(300)
def test_candidate_whose_revision_fails_is_rolled_back_to_the_baseline_model(
    local_cluster, session, tmp_path, corrupt_model
) -> None:
    record, nb = run_runbook(local_cluster, tmp_path, service="rb-corrupt", candidate_uri=corrupt_model)

    assert record["decision"]["action"] == "rollback"
    (reason,) = record["decision"]["reasons"]
    assert "did not become ready" in reason and "rb-corrupt-predictor-00002 failed" in reason
    assert record["canary"]["failure"]  # the failed revision as the cluster reported it
    st = session.service("rb-corrupt").status()
    # The spec no longer names the broken model: the baseline model serves 100% and the service is Ready.
    assert st.ready and st.storage_uri == MODEL and st.canary_traffic_percent is None
    assert serving(session, "rb-corrupt") == record["outcome"]["serving"] == [
        {"revision": "rb-corrupt-predictor-00003", "storageUri": MODEL, "percent": 100}
    ]
    assert record["outcome"]["consistent"] is True
    assert "RELEASE VERDICT: ROLLED BACK" in verdict_text(nb)


@pytest.mark.timeout(300)
def test_degraded_candidate_is_rolled_back_by_the_agreement_check(
    local_cluster, session, tmp_path, degraded_model
) -> None:
    record, nb = run_runbook(local_cluster, tmp_path, service="rb-degraded", candidate_uri=degraded_model)

    assert record["decision"]["action"] == "rollback"
    assert record["decision"]["basis"] == "verdict"
    agreement = next(c for c in record["verdict"]["checks"] if c["check"] == "agreement")
    assert agreement["passed"] is False and agreement["observed"] < 0.5
    assert any("paired inputs agree" in r for r in record["decision"]["reasons"])
    st = session.service("rb-degraded").status()
    # KServe's rollback: canaryTrafficPercent 0, 100% on the previous revision, the canary kept at 0%.
    assert st.canary_traffic_percent == 0 and st.prev_percent == 100 and st.latest_percent == 0
    assert st.prev_revision == "rb-degraded-predictor-00001"
    assert serving(session, "rb-degraded") == record["outcome"]["serving"] == [
        {"revision": "rb-degraded-predictor-00001", "storageUri": MODEL, "percent": 100}
    ]
    assert [e["action"] for e in record["history"]] == ["create", "canary", "rollback"]
    assert "RELEASE VERDICT: ROLLED BACK" in verdict_text(nb)


@pytest.mark.timeout(300)
def test_rerunning_a_finished_release_changes_nothing(local_cluster, session, tmp_path) -> None:
    run_runbook(local_cluster, tmp_path, service="rb-rerun", candidate_uri=MODEL_2)
    (tmp_path / "again").mkdir()
    record, nb = run_runbook(local_cluster, tmp_path / "again", service="rb-rerun", candidate_uri=MODEL_2)

    assert record["decision"]["action"] == "none"
    assert "already serves 100%" in record["decision"]["reasons"][0]
    assert record["outcome"]["consistent"] is True and record["history"] == []
    assert serving(session, "rb-rerun") == [
        {"revision": "rb-rerun-predictor-00002", "storageUri": MODEL_2, "percent": 100}
    ]
    assert "RELEASE VERDICT: NO CHANGE" in verdict_text(nb)


# ---------------------------------------------------------------------- pure parts


def _verdict(*passed: bool | None) -> Verdict:
    checks = tuple(Check(f"c{i}", p, None, None, f"check {i}") for i, p in enumerate(passed))
    failed = [c.detail for c in checks if c.passed is False]
    ok = [c.detail for c in checks if c.passed is True]
    return Verdict("rollback" if failed else "promote", checks, tuple(failed or ok))


def test_decide_puts_preflight_before_failure_before_the_verdict() -> None:
    good = _verdict(True, True)
    assert runbook.decide(good, failure="boom", blockers=["in flight"]).action == "none"
    assert runbook.decide(good, failure="boom").to_dict() == {
        "action": "rollback",
        "reasons": ["boom"],
        "basis": "failure",
    }
    assert runbook.decide(good).action == "promote"
    bad = runbook.decide(_verdict(True, False, None))
    assert (bad.action, bad.reasons, bad.basis) == ("rollback", ("check 1",), "verdict")
    assert runbook.decide(None).action == "rollback"  # no evidence never promotes


def test_failure_reason_says_whether_anything_was_applied() -> None:
    from kserve_nb import errors

    assert "refused before anything was applied" in runbook.failure_reason(errors.ValidationError("x"))
    assert "did not become ready" in runbook.failure_reason(errors.RolloutError("x"))
    assert "test traffic" in runbook.failure_reason(errors.PredictionError("x"), "traffic")


def test_verdict_headline_reports_an_inconsistent_cluster_and_fails_the_run() -> None:
    from kserve_nb import errors

    decision = runbook.Decision("promote", ("all checks passed",), "verdict")
    fine = runbook.RunbookVerdict(decision, "s", "ns", "gs://b/m2", True, (("s-predictor-00002", "gs://b/m2", 100),))
    assert repr(fine).splitlines()[0] == "RELEASE VERDICT: PROMOTED"
    fine.raise_if_failed()
    broken = runbook.RunbookVerdict(decision, "s", "ns", "gs://b/m2", False, (("s-predictor-00001", "gs://b/m", 100),))
    assert broken.headline == "FAILED TO PROMOTE" and "NOT in the state" in repr(broken)
    with pytest.raises(errors.RolloutError):
        broken.raise_if_failed()


def test_records_are_plain_json() -> None:
    import numpy as np
    import pandas as pd

    assert runbook._plain({"a": np.float64(0.5), "b": float("nan"), "c": (np.int64(3), None)}) == {
        "a": 0.5, "b": None, "c": [3, None],
    }
    assert runbook._plain({"x": np.bool_(True), "y": pd.NA}) == {"x": True, "y": None}


def test_sample_inputs_cycle_a_file_or_use_iris(tmp_path: Path) -> None:
    from kserve_nb import errors

    src = tmp_path / "inputs.json"
    src.write_text(json.dumps({"instances": [[1, 2, 3, 4], [5, 6, 7, 8]]}))
    assert runbook.sample_inputs(3, src) == [[1, 2, 3, 4], [5, 6, 7, 8], [1, 2, 3, 4]]
    assert len(runbook.sample_inputs(200)) == 200 and len(runbook.sample_inputs(200)[0]) == 4
    with pytest.raises(errors.ValidationError):
        runbook.sample_inputs(0)
