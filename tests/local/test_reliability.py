"""Reliability scenarios, bounded in time: a whole release under load loses no request.

(The control-plane ``kill -9`` under load is in ``test_data_plane.py``, hostile input in
``test_hostile.py``.) Here the traffic generator keeps 32 requests in flight against the service's
default host while a release goes canary 10 % → 50 % → promote → a second canary → rollback;
every request must be answered by a ready revision, and each answer must come from a revision the
split of that moment could send it to.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from kserve_nb.analysis.frames import ok_mask
from kserve_nb.session import Session

M1 = "gs://kfserving-examples/models/sklearn/1.0/model"
M2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
NS = "reliability"



@pytest.mark.timeout(240)
def test_a_whole_release_under_load_at_concurrency_32_loses_no_request(session: Session) -> None:
    from kserve_nb.widgets.samples import iris_rows

    svc = session.service("rel-load")
    if svc.exists():
        svc.delete()
        deadline = time.monotonic() + 30
        while svc.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    svc.deploy(M1)
    load = svc.generate_load(iris_rows(150), rate=300, concurrency=32, duration=90, progress=False)
    try:
        time.sleep(1.0)
        steps: list[Any] = [
            lambda: svc.canary(M2, 10),
            lambda: svc.set_traffic(50),
            lambda: svc.promote(),
            lambda: svc.canary(M1, 20),
            lambda: svc.rollback(),
        ]
        for step in steps:
            step()
            time.sleep(1.0)  # traffic at every settled split, not only across the changes
    finally:
        load.stop()
        load.wait(timeout=60)
    results = load.results
    assert len(results) > 500, load.summary()
    failed = results[~ok_mask(results)]
    assert failed.empty, failed[["revision", "status_code", "error"]].head(10).to_dict("records")
    # Every revision the release made answered a share, and nothing else did.
    assert set(results["revision"]) == {f"rel-load-predictor-0000{n}" for n in (1, 2, 3)}
    st = svc.status()
    assert st.canary_traffic_percent == 0 and st.prev_percent == 100
