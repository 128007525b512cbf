#!/usr/bin/env python
"""The traffic generator (``Service.generate_load``): does it keep its rate, and what does it cost?

On a fresh local cluster (nginx ingress when installed), one InferenceService split 50/50 between
the walkthrough's first model and ``iris-control`` (the same model under another URI). For each
target rate it runs ``generate_load`` to the default host for a few seconds and prints, side by side:

- achieved rate / target rate, and the gaps between consecutive sends (median and p99, next to
  the ideal ``1000 / rate`` ms): an even stream, not bursts;
- the canary's share of answers (the split is 50%: attribution by ``x-kserve-revision``);
- client CPU per request (this whole process: the generator's loop thread and everything else),
  next to the CPU per request of the bulk sender (``Service.send``, closed loop) for as many
  requests in the same run.

Examples
--------
    .venv/bin/python benchmarks/bench_load.py
    .venv/bin/python benchmarks/bench_load.py --rates 50,100 --seconds 3
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sklearn.datasets import load_iris

import kserve_nb
from kserve_nb.local import manager

M1 = "gs://kfserving-examples/models/sklearn/1.0/model"
CONTROL = "gs://kserve-nb-faults/sklearn/iris-control"


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="50,200,500", help="target rates, req/s (comma-separated)")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration of each run")
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    x, _ = load_iris(return_X_y=True)

    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        state = Path(tmp)
        manager.up(state)
        try:
            session = kserve_nb.connect(local=True, state_dir=state, namespace="bench")
            session.create_namespace("bench")
            svc = session.service("bench-load")
            svc.deploy(M1)
            svc.canary(CONTROL, 50)
            canary = svc.status().latest_revision
            svc.send(x[:20], to="default", warmup=0)  # connections and both revisions warm

            print(f"{'rate':>6} {'achieved':>9} {'ratio':>6} {'ideal gap':>9} {'gap p50':>8} {'gap p99':>8} "
                  f"{'canary':>7} {'failed':>6} {'CPU/req load':>13} {'CPU/req send':>13} {'load/send':>9}")
            for rate in rates:
                c0 = cpu()
                run = svc.generate_load(x, rate=rate, duration=args.seconds, concurrency=args.concurrency,
                                        progress=False).wait(timeout=args.seconds + 120)
                load_cpu = (cpu() - c0) / max(1, run.sent)
                df = run.results
                sent_at = sorted(df["sent_s"])
                gaps = [(b - a) * 1000 for a, b in zip(sent_at, sent_at[1:])]
                share = float((df["revision"] == canary).mean())
                failed = int(df["error"].notna().sum())

                c0 = cpu()
                sent = svc.send(
                    x, to="default", repeat=max(1, run.sent // len(x)), concurrency=args.concurrency, warmup=0
                )
                send_cpu = (cpu() - c0) / max(1, len(sent))

                q = statistics.quantiles(gaps, n=100)
                print(f"{rate:>6g} {run.achieved_rate:>9.1f} {run.achieved_rate / rate:>6.2f} {1000 / rate:>7.2f}ms "
                      f"{q[49]:>6.2f}ms {q[98]:>6.2f}ms "
                      f"{share:>7.2f} {failed:>6d} {load_cpu * 1e6:>11.0f}µs {send_cpu * 1e6:>11.0f}µs "
                      f"{load_cpu / send_cpu:>8.2f}×")
                time.sleep(0.5)
            session.close()
        finally:
            manager.down(state)
    return 0


if __name__ == "__main__":
    sys.exit(main())
