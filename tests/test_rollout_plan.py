"""The rollout's pure parts: gate grammar, step plans, durations, and the state's round trip."""

from __future__ import annotations

import json
import time

import pytest

from kserve_nb import errors
from kserve_nb.durations import parse_duration
from kserve_nb.metrics.sample import Histogram, RevisionSample
from kserve_nb.rollout.gates import Gate, parse_gates
from kserve_nb.rollout.plan import PAUSE, RolloutPlan, parse_steps, plan_picture
from kserve_nb.rollout.state import RolloutState, sample_from_dict, sample_to_dict


@pytest.mark.parametrize(
    "text, metric, op, factor, offset",
    [
        ("error_rate<=prev+0.01", "error_rate", "<=", 1.0, 0.01),
        ("p95<=1.2*prev", "p95", "<=", 1.2, 0.0),
        ("p95 <= prev*1.2 + 5ms", "p95", "<=", 1.2, 5.0),
        ("accuracy>=prev-0.02", "accuracy", ">=", 1.0, -0.02),
        ("p99<=250ms", "p99", "<=", 0.0, 250.0),
        ("p50<0.3s", "p50", "<=", 0.0, 300.0),
        ("error_rate<=1%", "error_rate", "<=", 0.0, 0.01),
        ("success_rate>=99.5%", "success_rate", ">=", 0.0, 0.995),
        ("error_rate<=1e-3+prev", "error_rate", "<=", 1.0, 0.001),
    ],
)
def test_gate_grammar(text: str, metric: str, op: str, factor: float, offset: float) -> None:
    gate = Gate.parse(text)
    assert (gate.metric, gate.op) == (metric, op)
    assert gate.factor == pytest.approx(factor) and gate.offset == pytest.approx(offset)
    assert str(gate) == text.strip()


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("latency<=prev", "unknown metric 'latency'"),
        ("p95<=5%", "latency limit is in ms or s"),
        ("error_rate<=10ms", "is a fraction"),
        ("error_rate==0.01", "write METRIC OP LIMIT"),
        ("p95<=prev*x", "cannot read 'prev*x'"),
        ("p95<=-1*prev", "must not be negative"),
        ("", "a gate must be text"),
    ],
)
def test_a_bad_gate_is_one_clear_line(text: str, fragment: str) -> None:
    with pytest.raises(errors.ValidationError) as err:
        Gate.parse(text)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_parse_gates_takes_one_or_many() -> None:
    assert parse_gates(None) == ()
    assert [g.metric for g in parse_gates("p95<=1.2*prev")] == ["p95"]
    assert [g.metric for g in parse_gates(["error_rate<=prev+0.01", "p99<=1s"])] == ["error_rate", "p99"]


@pytest.mark.parametrize(
    "given, steps",
    [
        ("5,10,25,50,100", (5, 10, 25, 50, 100)),
        ("10, 50%", (10, 50, 100)),  # a rollout always ends by promoting
        ("5,10,pause,50,100", (5, 10, PAUSE, 50, 100)),
        ([20, "approve", 100], (20, PAUSE, 100)),
    ],
)
def test_steps(given: object, steps: tuple[object, ...]) -> None:
    assert parse_steps(given) == steps


@pytest.mark.parametrize(
    "given, fragment",
    [("10,5,100", "steps must rise"), ("0,50", "out of range"), ("150", "out of range"),
     ("pause,10", "first step must be a percent"), ("ten", "neither a percent nor 'pause'"), ("pause", "at least one")],
)
def test_bad_steps(given: str, fragment: str) -> None:
    with pytest.raises(errors.ValidationError, match=fragment):
        parse_steps(given)


@pytest.mark.parametrize("given, seconds", [("30s", 30.0), ("2m", 120.0), ("1.5h", 5400.0), ("500ms", 0.5), (7, 7.0)])
def test_durations(given: object, seconds: float) -> None:
    assert parse_duration(given) == seconds


@pytest.mark.parametrize("given", ["soon", "-1s", "0", "nan"])
def test_bad_durations(given: str) -> None:
    with pytest.raises(errors.ValidationError):
        parse_duration(given)


def test_plan_round_trips_and_describes_itself() -> None:
    plan = RolloutPlan.build(
        "gs://b/m2", steps="10,pause,50,100", interval="5s", gates=["error_rate<=prev+0.01", "p95<=1.2*prev"],
        alpha=0.05, min_requests=20,
    )
    assert RolloutPlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    assert plan.gate_alpha == pytest.approx(0.025)
    text = plan.describe()
    assert "10% → ⏸ approve → 50% → promote" in text and "error_rate<=prev+0.01" in text
    picture = plan_picture(plan, current=1, outcome={0: "done"})
    assert picture.count('class="kserve-nb-step"') == 4 and 'data-state="done"' in picture


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"alpha": 0.9}, "alpha"),
        ({"min_requests": 0}, "min_requests"),
        ({"on_inconclusive": "shrug"}, "on_inconclusive"),
    ],
)
def test_bad_plan_options(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(errors.ValidationError, match=fragment):
        RolloutPlan.build("gs://b/m", **kwargs)  # type: ignore[arg-type]


def test_state_round_trips_through_its_configmap_form() -> None:
    plan = RolloutPlan.build("gs://b/m2", steps="10,50,100", interval="3s")
    sample = RevisionSample(
        "svc-predictor-00001", 10, 1, Histogram.from_samples([1.0, 2.0, 70.0]), 4, 3, {"200": 9, "500": 1}
    )
    assert sample_from_dict(json.loads(json.dumps(sample_to_dict(sample)))) == sample
    now = time.time()
    state = RolloutState(
        "svc", "ns", plan, step=1, candidate="svc-predictor-00002", baseline="svc-predictor-00001",
        origin={sample.revision: sample_to_dict(sample)}, started=now, step_started=now, heartbeat=now,
        supervisor="me@host pid 1",
    ).event("step", "50% of the traffic to svc-predictor-00002")
    cm = {"metadata": {"name": "svc-kserve-nb-rollout"},
          "data": {"state": json.dumps(state.to_dict()), "approve-1": "you", "abort": "them"}}
    back = RolloutState.from_configmap(cm)
    assert back.plan == plan and back.step == 1 and back.percent == 50
    assert back.approved == frozenset({1}) and back.abort_requested == "them"
    assert back.origin_sample(sample.revision) == sample
    assert back.timeline[-1]["event"] == "step"
    assert not back.held(now + 1) and back.held(now + back.lease + 1)
    assert "HELD at step 2/3 (50% to svc-predictor-00002)" in back.summary(now + back.lease + 5)


def test_an_unreadable_state_says_how_to_start_over() -> None:
    with pytest.raises(errors.ValidationError, match="delete it"):
        RolloutState.from_configmap({"metadata": {"name": "x"}, "data": {"state": "{not json"}})
