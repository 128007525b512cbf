"""The autopilot on the real local cluster: how fast and at what exposure it rolls back a bad
candidate, and what a Flagger-style threshold gate would have done on the very same checks.

Run: ``.venv/bin/python benchmarks/bench_rollout.py [--rate 80] [--runs 3]``

On a fresh local cluster (temporary state dir, stopped at the end), for each candidate — a good one
(``model-2``), one failing 25 % of its requests (``iris-errors``), one 50 ms slower
(``iris-slow``) — a rollout ``10,50,100`` with 10 s steps runs while the traffic generator sends
iris rows to the default host at ``--rate`` req/s. The gates are ``error_rate<=prev+0.01`` and
``p95<=1.5*prev+10ms``, read from the local Prometheus. Side by side in one run, per candidate:

- our anytime-valid gates: the outcome, seconds from the candidate's first share to the rollback,
  and the candidate requests served by then (the exposure);
- a Flagger-style gate (``error rate ≤ prev + 1 pt`` and ``p95 ≤ 1.5 × prev + 10 ms`` on the point
  estimates, at the same checks, on the same counters): when it would first have fired, and whether
  it fires on the good candidate too (a false rollback).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BASE = "gs://kfserving-examples/models/sklearn/1.0/model"
CANDIDATES = {
    "good (model-2)": "gs://kfserving-examples/models/sklearn/1.0/model-2",
    "25% errors": "gs://kserve-nb-faults/sklearn/iris-errors",
    "+50 ms": "gs://kserve-nb-faults/sklearn/iris-slow",
}
GATES = ["error_rate<=prev+0.01", "p95<=1.5*prev+10ms"]


class Recorder:
    """Wraps the metric source to keep every snapshot the autopilot took, so a Flagger-style gate
    can be replayed on exactly the same numbers afterwards."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.snapshots: list[tuple[float, dict[str, Any]]] = []

    def snapshot(self, namespace: str, service: str, revisions: Any) -> dict[str, Any]:
        got = self.inner.snapshot(namespace, service, revisions)
        self.snapshots.append((time.monotonic(), got))
        return got


def flagger_fires(rec: Recorder, candidate: str, baseline: str) -> tuple[float, int] | None:
    """When point-estimate thresholds first fail: (seconds after the first check, candidate
    requests by then), or None."""
    if not rec.snapshots:
        return None
    t0, origin = rec.snapshots[0]
    for t, snap in rec.snapshots[1:]:
        c = snap[candidate] - origin[candidate]
        b = snap[baseline] - origin[baseline]
        if c.requests == 0 or b.requests == 0:
            continue
        if c.error_rate > b.error_rate + 0.01 or c.latency.quantile(0.95) > 1.5 * b.latency.quantile(0.95) + 10:
            return t - t0, c.requests
    return None


def run_one(session: Any, name: str, uri: str, rate: float, rows: Any) -> dict[str, Any]:
    from kserve_nb.rollout.plan import RolloutPlan
    from kserve_nb.rollout.runner import Supervisor

    svc = session.service(name)
    if svc.exists():
        svc.delete()
        while svc.exists():
            time.sleep(0.1)
    svc.deploy(BASE)
    load = svc.generate_load(rows, rate=rate, concurrency=16, duration=120, progress=False)
    try:
        time.sleep(1.0)  # the baseline's first traffic
        rec = Recorder(session.metrics())
        plan = RolloutPlan.build(uri, steps="10,50,100", interval="10s", gates=GATES, min_requests=20, max_wait="60s")
        started = time.monotonic()
        result = Supervisor(svc, plan, rec, display=False).run()
        took = time.monotonic() - started
    finally:
        load.stop()
    cand, base = result.state.candidate or "", result.state.baseline or ""
    exposed = (rec.snapshots[-1][1][cand] - rec.snapshots[0][1][cand]).requests if rec.snapshots else 0
    return {
        "phase": result.phase, "seconds": took, "exposed": exposed,
        "flagger": flagger_fires(rec, cand, base), "checks": len(rec.snapshots),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=80.0, help="test requests per second (default 80)")
    ap.add_argument("--runs", type=int, default=2, help="rollouts per candidate (default 2)")
    args = ap.parse_args()

    from kserve_nb.local import manager
    from kserve_nb.session import connect
    from kserve_nb.widgets.samples import iris_rows

    rows = iris_rows(150)
    with tempfile.TemporaryDirectory(prefix="kserve-nb-bench-rollout-") as home:
        manager.up(home)
        try:
            session = connect(local=True, state_dir=home, namespace="bench-rollout")
            session.create_namespace("bench-rollout")
            session.metrics()  # start Prometheus before timing anything
            results: dict[str, list[dict[str, Any]]] = {}
            for label, uri in CANDIDATES.items():
                for i in range(args.runs):
                    out = run_one(session, f"bench-ro-{i}-{len(results)}", uri, args.rate, rows)
                    results.setdefault(label, []).append(out)
                    print(f"  {label} run {i + 1}: {out}", flush=True)
            session.close()
        finally:
            manager.down(home)

    print()
    print(f"autopilot on the local cluster: steps 10,50,100 × 10 s, {args.rate:g} req/s to the default host, "
          f"gates {', '.join(GATES)} (α=0.05), {args.runs} run(s) each")
    print(
        f"{'candidate':<16} {'our outcome':<22} {'s to end':>9} {'cand. requests':>15}   "
        "Flagger-style gate fires (same checks)"
    )
    for label, outs in results.items():
        phases = ", ".join(sorted({o["phase"] for o in outs}))
        secs = statistics.median(o["seconds"] for o in outs)
        exposed = statistics.median(o["exposed"] for o in outs)
        fires = [o["flagger"] for o in outs]
        fired = [f for f in fires if f is not None]
        flag = (
            f"{len(fired)}/{len(fires)} runs, median {statistics.median(f[0] for f in fired):.1f} s, "
            f"{statistics.median(f[1] for f in fired):.0f} requests" if fired else f"0/{len(fires)} runs"
        )
        print(f"{label:<16} {phases:<22} {secs:>9.1f} {exposed:>15.0f}   {flag:<26}")
    print("(on the good candidate, a Flagger-style firing is a false rollback; ours are bounded by α)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
