"""Run every benchmark, one after the other, and print their tables (``make bench``).

Each script measures its comparisons side by side within its own run, on loopback only:

- bench_gateway.py   ingress (nginx, Python gateway) vs direct to the model server (req/s ratio, added p50/p99)
- bench_send.py      Service.send/PredictionClient.send vs curl loop, httpx, wrk (req/s ratios)
- bench_cluster.py   cold start, API GET/PATCH latency, apply → canary serving, kubectl
- bench_load_ext.py  %load_ext kserve_nb vs importing pandas + plotly
- bench_canary_judge.py  anytime-valid gates vs Flagger-style and fixed-horizon tests on simulated rollouts
- bench_load.py      the traffic generator: achieved vs asked rate, client CPU vs the bulk sender
- bench_metrics.py   what counting Knative's per-revision metrics adds to a proxied request
- bench_live.py      the live chart's refresh cost
- bench_rollout.py   the autopilot on the local cluster: time and requests to roll back a bad candidate
- bench_hostile.py   what a hostile YAML body costs the API server's loop, ours vs plain PyYAML
- bench_restart.py   requests answered while the daemon is killed and restarted (the data plane stays up)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "bench_gateway.py", "bench_send.py", "bench_cluster.py", "bench_load_ext.py", "bench_canary_judge.py",
    "bench_load.py", "bench_metrics.py", "bench_live.py", "bench_rollout.py", "bench_hostile.py",
    "bench_restart.py",
]


def main() -> int:
    failed = []
    for script in SCRIPTS:
        print(f"\n=== {script} ===", flush=True)
        proc = subprocess.run([sys.executable, str(HERE / script)], timeout=900)
        if proc.returncode != 0:
            failed.append(script)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
