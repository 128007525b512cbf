"""What counting every request costs the ingress: with and without the per-revision metrics.

Run: ``.venv/bin/python benchmarks/bench_metrics.py [--duration 3] [--rounds 5] [--concurrency 1 8]``

Three measurements, each side by side in one run, loopback only:

1. nginx: two nginx ingresses rendered by :func:`kserve_nb.local.nginx.render`, one as shipped and
   one with the metrics taken out of its config (the log-phase handler and the balancer's start
   time), both in front of one static upstream (a third nginx answering a fixed JSON body, so the
   upstream costs next to nothing). ``wrk`` drives them in interleaved rounds; the table shows
   req/s and the nginx workers' CPU per request (the number other load on a shared machine moves
   least), and their difference: the µs a request's counting costs nginx.
2. The same Lua, timed inside nginx: what the balancer and the log phase add to a request (two
   clock reads, ``ngx.ctx`` and ``ngx.status``, ``kn.observe``), in a loop of 100,000.
3. The Python gateway's part: the two clock reads and :meth:`RequestMetrics.observe` per request
   (``timeit``), next to the gateway's whole CPU per request measured by ``bench_gateway.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

import httpx
import psutil

from kserve_nb.local.exporter import RequestMetrics, series_labels
from kserve_nb.local.nginx import find_nginx, render

HOST = "sklearn-iris.kserve-test.example.com"
REVISION = "sklearn-iris-predictor-00001"
BODY = '{"instances": [[6.8, 2.8, 4.8, 1.4]]}'
TOKEN = "bench-control-token"
METRICS_TOKEN = "bench-metrics-token"

LUA = f"""
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Host"] = "{HOST}"
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d\\n", summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
      + summary.errors.status))
end
"""

# Appended to the control server of the "with metrics" config: the Lua of one counted request,
# timed in a loop (benchmark only; the shipped config has no such location).
LUA_LOOP = """
    location = /bench-observe {
      content_by_lua_block {
        local series = 'namespace_name="kserve-test",configuration_name="sklearn-iris-predictor",'
          .. 'service_name="sklearn-iris-predictor",revision_name="sklearn-iris-predictor-00001"'
        local n = 100000
        ngx.status = 200
        ngx.ctx.target = { "sklearn-iris-predictor-00001", 1, 100, series }
        local t = kn.clock()
        for i = 1, n do
          ngx.ctx.t0 = kn.clock()  -- what the balancer adds
          local ctx = ngx.ctx  -- what the log phase does
          local target = ctx.target
          kn.observe(target[4], ngx.status, (kn.clock() - ctx.t0) * 1000)
        end
        ngx.say(string.format("%.4f", (kn.clock() - t) / n * 1e6))
      }
    }
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def without_metrics(conf: str) -> str:
    """The shipped config with the counting taken out (what the ingress was before it counted)."""
    stripped = re.sub(r"\n    log_by_lua_block \{.*?\n    \}\n", "\n", conf, count=1, flags=re.S)
    stripped = stripped.replace("              ctx.t0 = kn.clock()\n", "")
    assert "log_by_lua_block" not in stripped and "ctx.t0" not in stripped, "the config's shape changed"
    return stripped


class Nginx:
    """One nginx master process on a config text, in its own directory."""

    def __init__(self, binary: str, directory: Path, conf: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "tmp").mkdir(exist_ok=True)
        (directory / "nginx.conf").write_text(conf)
        self.proc = subprocess.Popen(
            [binary, "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(directory / "nginx.conf"),
             "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def cpu(self) -> float:
        total = 0.0
        for worker in psutil.Process(self.proc.pid).children():
            t = worker.cpu_times()
            total += t.user + t.system
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing answers on 127.0.0.1:{port}")


def upstream_conf(directory: Path, modules: Path, port: int) -> str:
    user = "user root root;\n" if os.geteuid() == 0 else ""
    return f"""{user}worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {directory}/tmp/body;
  proxy_temp_path {directory}/tmp/proxy;
  fastcgi_temp_path {directory}/tmp/fastcgi;
  uwsgi_temp_path {directory}/tmp/uwsgi;
  scgi_temp_path {directory}/tmp/scgi;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{ default_type application/json; return 200 '{{"predictions": [1]}}'; }}
  }}
}}
"""


def wrk(port: int, connections: int, duration: float, script: Path, cpu: Nginx) -> tuple[float, float, int]:
    """req/s, nginx worker CPU µs per request, errors."""
    before = cpu.cpu()
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "-s", str(script), f"http://127.0.0.1:{port}/v1/models/m:predict"],
        capture_output=True, text=True, timeout=duration + 30,
    ).stdout
    used = cpu.cpu() - before
    for line in out.splitlines():
        if line.startswith("RESULT"):
            reqs, dur_us, errors = map(int, line.split()[1:])
            return reqs / (dur_us / 1e6), 1e6 * used / reqs if reqs else 0.0, errors
    raise RuntimeError(f"wrk printed no result: {out}")


def python_cost() -> float:
    """µs per request of the Python gateway's counting: two clock reads and one observe."""
    metrics = RequestMetrics()
    series = series_labels("kserve-test", REVISION)
    clock = time.perf_counter

    def one() -> None:
        started = clock()
        metrics.observe(series, 200, (clock() - started) * 1000.0)

    n = 100_000
    return min(timeit.repeat(one, number=n, repeat=5)) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved with/without rounds per concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    found = find_nginx()
    if found is None or not shutil.which("wrk"):
        print("needs nginx with its Lua module, and wrk (make sysdeps)", file=sys.stderr)
        return 2
    binary, modules = found
    with tempfile.TemporaryDirectory(prefix="kserve-nb-bench-metrics-") as tmp:
        root = Path(tmp)
        script = root / "post.lua"
        script.write_text(LUA)
        up_port = free_port()
        planes: dict[str, tuple[Nginx, int, int]] = {}
        upstream = Nginx(binary, root / "upstream", upstream_conf(root / "upstream", modules, up_port))
        try:
            wait_port(up_port)
            for name in ("with metrics", "without"):
                directory = root / name.replace(" ", "-")
                listen, control = free_port(), free_port()
                conf = render(listen=listen, control=control, fallback=up_port, token=TOKEN, directory=directory,
                              modules=modules, run_as_root=os.geteuid() == 0, metrics_token=METRICS_TOKEN)
                if name == "without":
                    conf = without_metrics(conf)
                else:
                    conf = conf.replace("    location = /metrics {", LUA_LOOP + "    location = /metrics {", 1)
                planes[name] = (Nginx(binary, directory, conf), listen, control)
            for nginx, listen, control in planes.values():
                wait_port(listen)
                wait_port(control)
                table = f"{HOST} {REVISION} {up_port} 100 kserve-test\n"
                r = httpx.post(
                    f"http://127.0.0.1:{control}/routes", content=table, headers={"X-Kserve-Nb-Token": TOKEN}
                )
                r.raise_for_status()
                # warm up: keep-alive pools, the Lua table parse
                wrk(listen, 2, 1, script, nginx)

            load = os.getloadavg()[0]
            print(f"nginx ingress with vs without per-revision metrics, static upstream; wrk -t1, {args.duration:g}s "
                  f"runs, median of {args.rounds} interleaved rounds; {os.cpu_count()} CPUs, load {load:.2f} at start")
            print("conc | req/s with  without  ratio | nginx CPU/req with  without   added | errors")
            print("-" * 82)
            for c in args.concurrency:
                runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in planes}
                for _ in range(args.rounds):
                    for name, (nginx, listen, _) in planes.items():
                        runs[name].append(wrk(listen, c, args.duration, script, nginx))
                w, wo = runs["with metrics"], runs["without"]
                rps_w, rps_wo = statistics.median(r[0] for r in w), statistics.median(r[0] for r in wo)
                cpu_w, cpu_wo = statistics.median(r[1] for r in w), statistics.median(r[1] for r in wo)
                added = statistics.median(a[1] - b[1] for a, b in zip(w, wo))  # per round: both ran back to back
                errors = sum(r[2] for r in w + wo)
                print(f"{c:>4} | {rps_w:>10.0f} {rps_wo:>8.0f} {rps_w / rps_wo:>6.2f}x | "
                      f"{cpu_w:>14.1f}us {cpu_wo:>6.1f}us {added:>+6.1f}us | {errors}")
            # The counted requests are visible, exactly once each.
            _, _, control = planes["with metrics"]
            text = httpx.get(
                f"http://127.0.0.1:{control}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
            ).text
            counted = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("revision_app_request_count{")
            )
            print(f"requests counted by the metrics ingress: {counted:.0f}")
            loop_us = httpx.get(f"http://127.0.0.1:{control}/bench-observe", timeout=60).text.strip()
            print(
                f"\nLua per counted request, timed inside nginx (balancer + log-phase Lua, 100,000 loops): {loop_us} us"
            )
        finally:
            for nginx, _, _ in planes.values():
                nginx.stop()
            upstream.stop()
    py = python_cost()
    print(f"Python gateway per counted request (2 perf_counter reads + RequestMetrics.observe): {py:.2f} us "
          f"(its whole CPU per proxied request: ~250 us, bench_gateway.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
