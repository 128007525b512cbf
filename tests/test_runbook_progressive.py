"""The progressive runbook (notebooks/03b-progressive-runbook.ipynb) executed headless.

A good candidate's promotion is what the stored notebook shows (nbval re-runs it in
test_notebooks.py); here: a candidate with injected errors rolled back by its gate, through
``python -m kserve_nb.demo --progressive`` (the record, the timeline and the HTML report), and a
candidate whose revision never starts, after which the baseline model serves again.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kserve_nb import runbook
from kserve_nb.local import manager
from kserve_nb.session import Session

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = ROOT / "notebooks" / "03b-progressive-runbook.ipynb"
NS = "runbook-progressive"
MODEL = "gs://kfserving-examples/models/sklearn/1.0/model"
ERRORS = "gs://kserve-nb-faults/sklearn/iris-errors"



@pytest.mark.timeout(300)
def test_the_demo_rolls_a_bad_candidate_back_by_itself_and_reports_why(
    local_cluster: manager.LocalCluster, session: Session, tmp_path: Path
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kserve_nb.demo", "--progressive", "--candidate", ERRORS, "--strict",
         "--state-dir", str(local_cluster.state_dir), "--namespace", NS, "--service", "rbp-errors",
         "--output-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr  # --strict: not promoted
    out = proc.stdout
    assert "RELEASE VERDICT: ROLLED BACK" in out and "Rollout timeline:" in out
    assert "[fail] error_rate" in out and "anytime-valid CI" in out
    assert "Traceback" not in out + proc.stderr

    record = json.loads((tmp_path / "release-record.json").read_text())
    assert record["runbook"] == "03b-progressive-runbook"
    assert record["decision"]["action"] == "rollback" and record["decision"]["basis"] == "rollout"
    rollout = record["rollout"]
    assert rollout["phase"] == "RolledBack"
    events = [e["event"] for e in rollout["timeline"]]
    assert events[:2] == ["start", "step"] and events[-2:] == ["rollback", "rolled back"]
    failed = [g for g in rollout["gates"] if g["decision"] == "fail"]
    assert failed and failed[0]["metric"] == "error_rate" and failed[0]["n_candidate"] > 0
    assert record["outcome"]["consistent"] is True
    assert [s["storageUri"] for s in record["outcome"]["serving"]] == [MODEL]
    report = (tmp_path / "release-runbook.html").read_text()
    assert "kserve-nb-rollout-plan" in report and "rolled back" in report

    st = session.service("rbp-errors").status()
    assert st.canary_traffic_percent == 0 and st.prev_percent == 100


@pytest.mark.timeout(300)
def test_a_candidate_that_never_starts_fails_the_rollout_and_the_baseline_serves_again(
    local_cluster: manager.LocalCluster, session: Session, tmp_path: Path
) -> None:
    import papermill

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "model.joblib").write_bytes(b"not a joblib pickle\n")
    record_path = tmp_path / "record.json"
    papermill.execute_notebook(
        str(RUNBOOK), str(tmp_path / "executed.ipynb"), cwd=str(RUNBOOK.parent), kernel_name="python3",
        progress_bar=False, execution_timeout=240,
        parameters={"service": "rbp-corrupt", "namespace": NS, "candidate_uri": corrupt.as_uri(),
                    "state_dir": str(local_cluster.state_dir), "record_path": str(record_path)},
    )
    record = json.loads(record_path.read_text())
    assert record["rollout"]["phase"] == "Failed"
    assert "did not start" in record["rollout"]["reason"]
    assert record["decision"]["action"] == "rollback"
    assert "baseline restored" in record["action"]
    assert record["outcome"]["consistent"] is True
    assert runbook.serving(session.service("rbp-corrupt")).to_dict(orient="records") == [
        {"revision": "rbp-corrupt-predictor-00003", "storageUri": MODEL, "percent": 100}
    ]
