"""Throughput and latency of the local ingress gateway against its revision model server.

Run: ``.venv/bin/python benchmarks/bench_gateway.py [--duration 3] [--concurrency 1 8 32]``

Starts one sklearn revision through :class:`~kserve_nb.local.runtime.Runtime` and a
:class:`~kserve_nb.local.gateway.Gateway` in this process (on uvloop, as in the daemon), then drives
both with ``wrk`` (POST of the walkthrough's iris JSON, ``Host`` header for the gateway) at each
concurrency, direct and through the gateway back to back, and prints req/s, their ratio, p50/p99
latency (plus what the gateway adds), and the gateway's CPU time per request (this process's CPU
time during the gateway runs: the one number that other load on the machine hardly moves).
Direct/gateway pairs are repeated ``--rounds`` times, interleaved, and the median round is shown.
Loopback only; each run lasts ``--duration`` seconds.

Targets (from the issue): >= 0.9x direct throughput at concurrency >= 8, <= 0.3 ms added p50 at
concurrency 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import uvloop

from kserve_nb.local.gateway import Gateway
from kserve_nb.local.runtime import RevisionSpec, RevisionState, Runtime
from kserve_nb.local.storage import seed_mirror

NAMESPACE = "kserve-test"
ISVC = "sklearn-iris"
REVISION = "sklearn-iris-predictor-00001"
HOST = f"{ISVC}.{NAMESPACE}.example.com"
BODY = '{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}'

LUA = f"""
wrk.method = "POST"
wrk.body = '{BODY}'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status, latency.mean, latency.max))
end
"""


@dataclass
class Run:
    """One wrk run's summary."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    cpu_us_per_request: float = 0.0  # this process's CPU per request (the gateway, when it's measured)


async def wrk(url: str, host: str | None, connections: int, duration: float, script: Path) -> Run:
    """Run wrk without blocking the loop (the gateway under test lives in it)."""
    args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "-s", str(script), "--latency"]
    args += ["-H", "Content-Type: application/json"]
    if host:
        args += ["-H", f"Host: {host}"]
    cpu_before = time.process_time()
    proc = await asyncio.create_subprocess_exec(
        *args, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=duration + 30)
    cpu = time.process_time() - cpu_before
    for line in out.decode().splitlines():
        if line.startswith("RESULT"):
            reqs, dur_us, p50, p99, sock_err, status_err, _mean, _max = map(int, line.split()[1:])
            cpu_per_req = 1e6 * cpu / reqs if reqs else 0.0
            return Run(reqs / (dur_us / 1e6), p50 / 1000, p99 / 1000, sock_err + status_err, reqs, cpu_per_req)
    raise RuntimeError(f"wrk printed no result: {out.decode()} {err.decode()}")


async def start_revision(state_dir: Path) -> tuple[Runtime, RevisionState]:
    """Start the walkthrough's first revision and wait until it is Ready."""
    ready: asyncio.Future[RevisionState] = asyncio.get_running_loop().create_future()

    def on_change(state: RevisionState) -> None:
        if state.phase in ("Ready", "Failed") and not ready.done():
            ready.set_result(state)

    runtime = Runtime(state_dir, on_change)
    await runtime.start()
    t0 = time.perf_counter()
    runtime.ensure_running(
        RevisionSpec(NAMESPACE, ISVC, REVISION, "gs://kfserving-examples/models/sklearn/1.0/model", "sklearn")
    )
    state = await asyncio.wait_for(ready, 30)
    if state.phase != "Ready":
        raise RuntimeError(f"revision failed: {state.message}")
    print(f"revision Ready {1000 * (time.perf_counter() - t0):.0f} ms after ensure_running (warm zygote)")
    return runtime, state


async def main(duration: float, concurrencies: list[int], rounds: int) -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp)
        seed_mirror(state_dir)
        script = state_dir / "post.lua"
        script.write_text(LUA)
        runtime, state = await start_revision(state_dir)
        gateway = Gateway()
        try:
            port = await gateway.start()
            assert state.port is not None
            gateway.update({HOST: [(NAMESPACE, REVISION, 100)]}, {(NAMESPACE, REVISION): (state.host, state.port)})
            path = f"/v1/models/{ISVC}:predict"
            direct_url = f"http://127.0.0.1:{state.port}{path}"
            gateway_url = f"http://127.0.0.1:{port}{path}"
            # Warm both paths (connection pools, first-request code paths).
            await wrk(direct_url, None, 8, 1, script)
            await wrk(gateway_url, HOST, 8, 1, script)
            load = os.getloadavg()[0]
            rows = []
            for c in concurrencies:
                pairs = []
                for _ in range(rounds):
                    direct = await wrk(direct_url, None, c, duration, script)
                    via = await wrk(gateway_url, HOST, c, duration, script)
                    pairs.append((direct, via))
                rows.append((c, *median_pair(pairs)))
        finally:
            await gateway.close()
            await runtime.close()
    print_table(rows, duration, rounds, load)


def median_pair(pairs: list[tuple[Run, Run]]) -> tuple[Run, Run]:
    """The round whose throughput ratio is the median (keeps each row's numbers consistent)."""
    ranked = sorted(pairs, key=lambda p: p[1].rps / p[0].rps)
    return ranked[len(ranked) // 2]


def print_table(rows: list[tuple[int, Run, Run]], duration: float, rounds: int, load: float) -> None:
    print(
        f"\nwrk -t1, {duration:g}s per run, median of {rounds} interleaved rounds, POST iris JSON "
        f"(2 instances), loopback; {os.cpu_count()} CPUs, load average {load:.2f} at start"
    )
    header = (
        f"{'conc':>4} | {'direct req/s':>12} {'gateway req/s':>13} {'ratio':>6} | "
        f"{'direct p50':>10} {'gw p50':>8} {'added':>8} | {'direct p99':>10} {'gw p99':>8} | "
        f"{'gw CPU/req':>10} | errors"
    )
    print(header)
    print("-" * len(header))
    for c, d, g in rows:
        print(
            f"{c:>4} | {d.rps:>12.0f} {g.rps:>13.0f} {g.rps / d.rps:>5.2f}x | "
            f"{d.p50_ms:>8.3f}ms {g.p50_ms:>6.3f}ms {g.p50_ms - d.p50_ms:>+6.3f}ms | "
            f"{d.p99_ms:>8.3f}ms {g.p99_ms:>6.3f}ms | {g.cpu_us_per_request:>8.0f}us | {d.errors}/{g.errors}"
        )
    ratios = [g.rps / d.rps for c, d, g in rows if c >= 8]
    added = [g.p50_ms - d.p50_ms for c, d, g in rows if c == 1]
    if ratios:
        print(f"throughput at concurrency >= 8: {min(ratios):.2f}x direct at worst (target >= 0.9x)")
    if added:
        print(f"added p50 at concurrency 1: {statistics.median(added):+.3f} ms (target <= 0.3 ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per wrk run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved direct/gateway pairs per concurrency")
    ns = parser.parse_args()
    uvloop.run(main(ns.duration, ns.concurrency, ns.rounds))
