"""Throughput and latency of the local ingress against its revision model server.

Run: ``.venv/bin/python benchmarks/bench_gateway.py [--duration 3] [--concurrency 1 8 32]``

Starts one sklearn revision through :class:`~kserve_nb.local.runtime.Runtime`, the Python
:class:`~kserve_nb.local.gateway.Gateway` in this process (on uvloop, as in the daemon) and, when
nginx and its Lua module are installed, the :class:`~kserve_nb.local.nginx.NginxIngress` the daemon
then uses. Drives each with ``wrk`` (POST of the walkthrough's iris JSON, ``Host`` header for the proxies) at each
concurrency, direct and through each proxy back to back, and prints req/s, their ratio, p50/p99
latency (plus what the proxy adds), and the proxy's CPU time per request (this process's for the
Python gateway, nginx's workers' for nginx: the one number that other load hardly moves).
Direct/proxy runs are repeated ``--rounds`` times, interleaved, and the median round is shown.
Loopback only; each run lasts ``--duration`` seconds.

Then ``paired_latency.py`` measures the added p50 at concurrency 1 request by request (direct and
each proxy in turn on keep-alive connections), which cancels the drift between wrk runs that, on a
shared 2-vCPU machine, is larger than the difference being measured.

``--baseline PATH`` loads another version of ``gateway.py`` (e.g. a copy saved from git before a
change) as a second gateway on the same revision; every round then runs direct, baseline and current
back to back, and a second table shows the baseline, so a before/after comparison on a busy machine
compares runs seconds apart rather than minutes apart.

Targets: >= 0.9x direct throughput at concurrency >= 8, <= 0.3 ms added p50 at
concurrency 1.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil
import uvloop
from paired_latency import BODY  # this directory is on sys.path when a benchmark runs

from kserve_nb.local.gateway import Gateway
from kserve_nb.local.nginx import NginxIngress, find_nginx
from kserve_nb.local.runtime import RevisionSpec, RevisionState, Runtime
from kserve_nb.local.storage import seed_mirror

NAMESPACE = "kserve-test"
ISVC = "sklearn-iris"
REVISION = "sklearn-iris-predictor-00001"
HOST = f"{ISVC}.{NAMESPACE}.example.com"

LUA = f"""
wrk.method = "POST"
wrk.body = '{BODY.decode()}'
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


def nginx_cpu(plane: NginxIngress) -> Callable[[], float]:
    """CPU seconds used so far by nginx's worker processes (where its requests are handled)."""

    def cpu() -> float:
        assert plane.pid is not None
        total = 0.0
        for worker in psutil.Process(plane.pid).children():
            times = worker.cpu_times()
            total += times.user + times.system
        return total

    return cpu


async def wrk(
    url: str, host: str | None, connections: int, duration: float, script: Path,
    cpu: Callable[[], float] = time.process_time,
) -> Run:
    """Run wrk without blocking the loop (the gateway under test lives in it).

    ``cpu`` reads the CPU seconds of whatever proxies the requests (default: this process).
    """
    args = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "-s", str(script), "--latency"]
    args += ["-H", "Content-Type: application/json"]
    if host:
        args += ["-H", f"Host: {host}"]
    cpu_before = cpu()
    proc = await asyncio.create_subprocess_exec(
        *args, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=duration + 30)
    used = cpu() - cpu_before
    for line in out.decode().splitlines():
        if line.startswith("RESULT"):
            reqs, dur_us, p50, p99, sock_err, status_err, _mean, _max = map(int, line.split()[1:])
            cpu_per_req = 1e6 * used / reqs if reqs else 0.0
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


def load_gateway_class(path: Path) -> type[Gateway]:
    """``Gateway`` from another copy of ``gateway.py`` (the ``--baseline``)."""
    spec = importlib.util.spec_from_file_location("bench_baseline_gateway", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    cls: type[Gateway] = module.Gateway
    return cls


async def main(
    duration: float, concurrencies: list[int], rounds: int, baseline: Path | None, pair_rounds: int
) -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    with tempfile.TemporaryDirectory() as tmp:
        state_dir = Path(tmp)
        seed_mirror(state_dir)
        script = state_dir / "post.lua"
        script.write_text(LUA)
        runtime, state = await start_revision(state_dir)
        planes: list[tuple[str, Gateway | NginxIngress]] = [("python gateway", Gateway())]
        if find_nginx():
            planes.append(("nginx ingress", NginxIngress(state_dir / "ingress")))
        if baseline:
            planes.append((f"baseline {baseline}", load_gateway_class(baseline)()))
        try:
            assert state.port is not None
            path = f"/v1/models/{ISVC}:predict"
            direct_url = f"http://127.0.0.1:{state.port}{path}"
            ports = []
            for _, plane in planes:
                ports.append(await plane.start())
                plane.update({HOST: [(NAMESPACE, REVISION, 100)]}, {(NAMESPACE, REVISION): (state.host, state.port)})
                if isinstance(plane, NginxIngress):
                    await plane.wait_programmed()
            urls = [f"http://127.0.0.1:{port}{path}" for port in ports]
            cpus = [nginx_cpu(p) if isinstance(p, NginxIngress) else time.process_time for _, p in planes]
            # Warm every path (connection pools, first-request code paths).
            await wrk(direct_url, None, 8, 1, script)
            for url in urls:
                await wrk(url, HOST, 8, 1, script)
            load = os.getloadavg()[0]
            tables: list[list[tuple[int, Run, Run]]] = [[] for _ in urls]
            paired: list[tuple[int, list[tuple[Run, Run]], list[tuple[Run, Run]]]] = []
            for c in concurrencies:
                rounds_by_plane: list[list[tuple[Run, Run]]] = [[] for _ in urls]
                for r in range(rounds):
                    direct = await wrk(direct_url, None, c, duration, script)
                    # Alternate the order, so no proxy always follows the direct run.
                    order = list(range(len(urls)))
                    if r % 2:
                        order.reverse()
                    for i in order:
                        via = await wrk(urls[i], HOST, c, duration, script, cpus[i])
                        rounds_by_plane[i].append((direct, via))
                for table, pairs in zip(tables, rounds_by_plane):
                    table.append((c, *median_pair(pairs)))
                if baseline:
                    paired.append((c, rounds_by_plane[0], rounds_by_plane[-1]))
            spec = [["direct", state.port, HOST]] + [[label, port, HOST] for (label, _), port in zip(planes, ports)]
            probe = await asyncio.create_subprocess_exec(
                sys.executable, str(Path(__file__).with_name("paired_latency.py")), json.dumps(spec), str(pair_rounds),
                stdout=asyncio.subprocess.PIPE,
            )
            out, _ = await probe.communicate()
            added = json.loads(out)
        finally:
            for _, plane in planes:
                await plane.close()
            await runtime.close()
    for (label, _plane), table in zip(planes, tables):
        print_table(table, duration, rounds, load, label)
    if baseline:
        print_comparison(paired)
    print(f"\nadded p50 at concurrency 1, paired request by request ({pair_rounds} rounds, medians; target <= 0.3 ms)")
    for label, numbers in added.items():
        if label != "direct":
            print(
                f"  {label:<15} {numbers['added_ms']:+.3f} ms   "
                f"(p50 {numbers['p50_ms']:.3f} ms, direct {added['direct']['p50_ms']:.3f} ms)"
            )


def median_pair(pairs: list[tuple[Run, Run]]) -> tuple[Run, Run]:
    """The round whose throughput ratio is the median (keeps each row's numbers consistent).

    Its gateway CPU per request is replaced by the median over all rounds: that number hardly
    depends on which round it came from, and the median of all is the steadier estimate.
    """
    ranked = sorted(pairs, key=lambda p: p[1].rps / p[0].rps)
    direct, via = ranked[len(ranked) // 2]
    cpu = statistics.median(v.cpu_us_per_request for _, v in pairs)
    return direct, dataclasses.replace(via, cpu_us_per_request=cpu)


def print_comparison(paired: list[tuple[int, list[tuple[Run, Run]], list[tuple[Run, Run]]]]) -> None:
    """Current vs baseline: medians over all rounds, and of the per-round differences."""
    print("\ncurrent vs baseline, medians over all rounds (per-round differences: each round ran both)")
    header = (
        f"{'conc':>4} | {'CPU/req now':>11} {'baseline':>8} {'change':>7} | {'p50 now':>8} {'baseline':>8} "
        f"{'diff':>8} | {'req/s now':>9} {'baseline':>8}"
    )
    print(header)
    print("-" * len(header))
    for c, now, base in paired:
        cpu_now = statistics.median(v.cpu_us_per_request for _, v in now)
        cpu_base = statistics.median(v.cpu_us_per_request for _, v in base)
        p50_diff = statistics.median(n.p50_ms - b.p50_ms for (_, n), (_, b) in zip(now, base))
        print(
            f"{c:>4} | {cpu_now:>9.0f}us {cpu_base:>6.0f}us {100 * (cpu_now / cpu_base - 1):>+6.0f}% | "
            f"{statistics.median(v.p50_ms for _, v in now):>6.3f}ms "
            f"{statistics.median(v.p50_ms for _, v in base):>6.3f}ms "
            f"{p50_diff:>+6.3f}ms | {statistics.median(v.rps for _, v in now):>9.0f} "
            f"{statistics.median(v.rps for _, v in base):>8.0f}"
        )


def print_table(rows: list[tuple[int, Run, Run]], duration: float, rounds: int, load: float, title: str) -> None:
    print(
        f"\n{title}: wrk -t1, {duration:g}s per run, median of {rounds} interleaved rounds, POST iris JSON "
        f"(2 instances), loopback; {os.cpu_count()} CPUs, load average {load:.2f} at start"
    )
    header = (
        f"{'conc':>4} | {'direct req/s':>12} {'gateway req/s':>13} {'ratio':>6} | "
        f"{'direct p50':>10} {'gw p50':>8} {'added':>8} | {'direct p99':>10} {'gw p99':>8} | "
        f"{'proxy CPU/req':>13} | errors"
    )
    print(header)
    print("-" * len(header))
    for c, d, g in rows:
        print(
            f"{c:>4} | {d.rps:>12.0f} {g.rps:>13.0f} {g.rps / d.rps:>5.2f}x | "
            f"{d.p50_ms:>8.3f}ms {g.p50_ms:>6.3f}ms {g.p50_ms - d.p50_ms:>+6.3f}ms | "
            f"{d.p99_ms:>8.3f}ms {g.p99_ms:>6.3f}ms | {g.cpu_us_per_request:>11.0f}us | {d.errors}/{g.errors}"
        )
    ratios = [g.rps / d.rps for c, d, g in rows if c >= 8]
    added = [g.p50_ms - d.p50_ms for c, d, g in rows if c == 1]
    if ratios:
        print(f"throughput at concurrency >= 8: {min(ratios):.2f}x direct at worst (target >= 0.9x)")
    if added:
        print(f"added p50 at concurrency 1 (wrk runs a second apart): {statistics.median(added):+.3f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=2.0, help="seconds per wrk run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved direct/gateway pairs per concurrency")
    parser.add_argument("--baseline", type=Path, help="another gateway.py to measure interleaved with this one")
    parser.add_argument("--pair-rounds", type=int, default=2000, help="rounds of the paired concurrency-1 probe")
    ns = parser.parse_args()
    uvloop.run(main(ns.duration, ns.concurrency, ns.rounds, ns.baseline, ns.pair_rounds))
