"""Fault-injected candidate models: as estimators, in the seeded mirror, and served by the local cluster.

Each seeded ``gs://kserve-nb-faults/…`` URI is deployed as its own InferenceService and called over
real HTTP through the ingress; the behaviour asserted is the one its name promises.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

import kserve_nb
from kserve_nb.errors import PredictionError
from kserve_nb.local.faults import FaultyModel, InjectedFault
from kserve_nb.local.storage import (
    FAULT_MODELS,
    SEED_MODELS,
    find_model_file,
    mirror_root,
    resolve_storage_uri,
    seed_mirror,
)
from kserve_nb.session import Session

M1 = "gs://kfserving-examples/models/sklearn/1.0/model"
NS = "faults-test"
X, Y = load_iris(return_X_y=True)
ROWS = X.tolist()


# -- the estimator ------------------------------------------------------------------------------


def test_faulty_model_is_the_base_model_when_no_fault_is_set() -> None:
    base = SVC().fit(X, Y)
    model = FaultyModel(base)
    assert (model.predict(X) == base.predict(X)).all()
    assert list(model.classes_) == [0, 1, 2] and model.score(X, Y) == base.score(X, Y)
    assert model.get_params()["error_rate"] == 0.0 and "FaultyModel(" in repr(model)


def test_errors_are_raised_at_the_rate_and_seeded() -> None:
    model = FaultyModel(SVC().fit(X, Y), error_rate=0.25, seed=7)

    def outcomes(m: FaultyModel) -> list[bool]:
        out = []
        for row in ROWS[:400] * 3:
            try:
                m.predict([row])
                out.append(True)
            except InjectedFault as e:
                assert "injected fault" in str(e)
                out.append(False)
        return out

    first = outcomes(model)
    assert 0.18 <= first.count(False) / len(first) <= 0.32
    # A fresh copy (as a restarted revision loads it) fails the same requests.
    copy = pickle.loads(pickle.dumps(FaultyModel(SVC().fit(X, Y), error_rate=0.25, seed=7)))  # noqa: S301 - our own bytes
    assert outcomes(copy) == first


def test_flips_change_predictions_to_another_class() -> None:
    base = LogisticRegression(max_iter=500).fit(X, Y)
    model = FaultyModel(base, flip_rate=0.3, seed=1)
    pred, truth = model.predict(X), base.predict(X)
    changed = pred != truth
    assert 0.15 <= changed.mean() <= 0.45
    assert set(pred) <= {0, 1, 2}
    always = FaultyModel(base, flip_rate=1.0).predict_proba(X)
    assert (always.argmax(axis=1) != base.predict_proba(X).argmax(axis=1)).all()
    assert np.allclose(always.sum(axis=1), 1.0)


def test_predict_proba_exists_only_when_the_base_has_it() -> None:
    assert not hasattr(FaultyModel(SVC().fit(X, Y)), "predict_proba")
    assert hasattr(FaultyModel(LogisticRegression(max_iter=500).fit(X, Y)), "predict_proba")


def test_fit_trains_a_clone_and_checks_rates() -> None:
    base = SVC()
    model = FaultyModel(base, flip_rate=0.0).fit(X, Y)
    assert model.base is not base and model.predict(X[:2]).tolist() == SVC().fit(X, Y).predict(X[:2]).tolist()
    with pytest.raises(ValueError, match="error_rate must be from 0 to 1"):
        FaultyModel(SVC(), error_rate=1.5).fit(X, Y)
    with pytest.raises(ValueError, match="latency_ms must be ≥ 0"):
        FaultyModel(SVC().fit(X, Y), latency_ms=-5).predict(X[:1])


def test_seeded_mirror_holds_every_fault_model(tmp_path: Path) -> None:
    seed_mirror(tmp_path)
    root = mirror_root(tmp_path)
    for uri, params in FAULT_MODELS.items():
        model = joblib.load(find_model_file(resolve_storage_uri(uri, tmp_path)))
        assert isinstance(model, FaultyModel)
        for name, value in params.items():
            assert getattr(model, name) == value
        assert type(model.base).__name__ == "SVC"
    assert all((root / rel).is_file() for rel in SEED_MODELS)
    readme = (root / "README.txt").read_text()
    assert all(uri in readme for uri in FAULT_MODELS)


# -- served by the local cluster ----------------------------------------------------------------



def _serve(session: Session, name: str, uri: str) -> kserve_nb.Service:
    svc = session.service(name)
    if svc.exists():
        svc.delete()
    svc.deploy(uri)
    return svc


@pytest.fixture(scope="module")
def baseline(session: Session) -> kserve_nb.Service:
    return _serve(session, "fault-base", M1)


def test_errors_model_answers_500_with_a_json_error_at_about_a_quarter(session: Session) -> None:
    svc = _serve(session, "fault-errors", "gs://kserve-nb-faults/sklearn/iris-errors")
    try:
        df = svc.send(ROWS, to="default", repeat=2, concurrency=4)
        failed = df[df["status_code"] == 500]
        assert 0.15 <= len(failed) / len(df) <= 0.35
        assert set(df["status_code"].dropna()) == {200, 500}  # a 5xx answer, never a dead server
        assert failed["error"].str.contains("injected fault").all()
        # The revision survives its faults: it still answers, and says which revision it is.
        assert set(df["revision"]) == {"fault-errors-predictor-00001"}
        # On the wire, a fault is KServe's answer to a model error: 500 with a JSON error body.
        for _ in range(60):
            try:
                svc.predict({"instances": ROWS[:1]})
            except PredictionError as err:
                assert err.status == 500 and isinstance(err.body, dict)
                assert err.body["error"].startswith("injected fault: this model fails 25% of requests")
                break
        else:
            pytest.fail("60 requests to a model failing 25% of them all succeeded")
    finally:
        svc.delete()


def test_three_percent_errors_model_fails_a_few_requests(session: Session) -> None:
    svc = _serve(session, "fault-errors-3", "gs://kserve-nb-faults/sklearn/iris-errors-3pct")
    try:
        df = svc.send(ROWS, to="default", repeat=2, concurrency=4)
        rate = (df["status_code"] == 500).mean()
        assert 0.002 <= rate <= 0.09
    finally:
        svc.delete()


def test_slow_model_adds_at_least_50_ms(session: Session, baseline: kserve_nb.Service) -> None:
    svc = _serve(session, "fault-slow", "gs://kserve-nb-faults/sklearn/iris-slow")
    try:
        slow = svc.send(ROWS[:40], to="default", concurrency=1)
        base = baseline.send(ROWS[:40], to="default", concurrency=1)
        assert slow["error"].isna().all()
        assert slow["latency_ms"].min() >= 50.0
        assert slow["latency_ms"].median() >= base["latency_ms"].median() + 45.0
        assert slow["prediction"].tolist() == base["prediction"].tolist()
    finally:
        svc.delete()


def test_flip_model_disagrees_with_model_1_on_iris(session: Session, baseline: kserve_nb.Service) -> None:
    svc = _serve(session, "fault-flip", "gs://kserve-nb-faults/sklearn/iris-flip")
    try:
        flipped = svc.send(ROWS, to="default", concurrency=4)
        base = baseline.send(ROWS, to="default", concurrency=4)
        assert flipped["error"].isna().all()
        disagreement = float(np.mean(np.array(flipped["prediction"].tolist()) != np.array(base["prediction"].tolist())))
        assert 0.15 <= disagreement <= 0.45
    finally:
        svc.delete()


def test_control_model_answers_exactly_like_model_1(session: Session, baseline: kserve_nb.Service) -> None:
    svc = _serve(session, "fault-control", "gs://kserve-nb-faults/sklearn/iris-control")
    try:
        control = svc.send(ROWS, to="default", concurrency=4)
        base = baseline.send(ROWS, to="default", concurrency=4)
        assert control["error"].isna().all()
        assert control["prediction"].tolist() == base["prediction"].tolist()
    finally:
        svc.delete()
