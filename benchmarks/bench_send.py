#!/usr/bin/env python
"""Throughput of ``PredictionClient.send`` next to wrk, curl and httpx against the same endpoint.

By default it starts a real KServe model server (``kserve.ModelServer``, one uvicorn worker) with a
trivial sklearn iris model on 127.0.0.1 in a subprocess, and measures in one run:

- ``wrk``: Lua POST script, 32 connections, fixed duration (the ceiling of the endpoint);
- ``PredictionClient.send``: 2,000 V1 predictions over two Targets (latest/prev Host headers);
- a sequential ``httpx.Client`` loop and a sequential ``curl`` loop (one process per request).

wrk and send alternate for ``--rounds`` rounds because a shared 2-core machine drifts; the ratio
reported is the median of the per-round ratios (send / the wrk run next to it). Point it at any
gateway with ``--ingress URL --host HOST [--prev-host HOST] --model NAME``.

The model is a fitted LogisticRegression whose predict is done in numpy (argmax of X·W + b): the
point is to measure the client, and sklearn's per-call input validation (~0.45 ms on this machine)
would make the server the bottleneck sooner. Pass ``--sklearn-predict`` to call ``clf.predict``.

Examples
--------
    .venv/bin/python benchmarks/bench_send.py
    .venv/bin/python benchmarks/bench_send.py --ingress http://127.0.0.1:31380 \\
        --host latest-sklearn-iris-predictor.kserve-test.example.com \\
        --prev-host latest-sklearn-iris-predictor.kserve-test.example.com --model sklearn-iris

Through a gateway, give ``--prev-host`` the same host as ``--host`` for a like-for-like ratio: with
the real ``prev-`` host, send spreads over two revisions' model servers while wrk loads one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from kserve_nb.predict import PredictionClient, Target

ROW = [6.8, 2.8, 4.8, 1.4]
BODY = json.dumps({"instances": [ROW]}, separators=(",", ":"))

SERVER = textwrap.dedent(
    '''
    import logging, os, sys
    import numpy as np
    import uvicorn

    class _Loopback(uvicorn.Config):  # kserve hard-codes host="0.0.0.0"
        def __init__(self, *a, **kw):
            kw["host"] = "127.0.0.1"
            super().__init__(*a, **kw)

    uvicorn.Config = _Loopback

    import kserve
    from kserve.errors import InferenceError
    from kserve.utils.utils import get_predict_input, get_predict_response

    SKLEARN = os.environ.get("BENCH_SKLEARN_PREDICT") == "1"

    class Iris(kserve.Model):
        def load(self):
            from sklearn.datasets import load_iris
            from sklearn.linear_model import LogisticRegression
            X, y = load_iris(return_X_y=True)
            self.clf = LogisticRegression(max_iter=500).fit(X, y)
            self.W, self.b = self.clf.coef_.T, self.clf.intercept_
            self.ready = True
            return True

        def predict(self, payload, headers=None, response_headers=None):
            try:
                x = np.asarray(get_predict_input(payload), dtype=float)
                out = self.clf.predict(x) if SKLEARN else np.argmax(x @ self.W + self.b, axis=1)
            except Exception as e:
                raise InferenceError(str(e))
            return get_predict_response(payload, out, self.name)

    port, name = int(sys.argv[1]), sys.argv[2]
    model = Iris(name)
    model.load()
    server = kserve.ModelServer(http_port=port, enable_grpc=False, workers=1, enable_latency_logging=False)
    for n in ("uvicorn.access", "kserve.trace"):  # per-request logging would bench the logger
        logging.getLogger(n).setLevel(logging.WARNING)
    server.start([model])
    '''
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def local_model_server(model: str, *, sklearn_predict: bool) -> Iterator[str]:
    """Start the trivial iris model server on 127.0.0.1; yield its base URL; always stop it."""
    tmp = Path(tempfile.mkdtemp(prefix="kserve-nb-bench-"))
    script = tmp / "iris_server.py"
    script.write_text(SERVER)
    port = free_port()
    env = {**os.environ, "BENCH_SKLEARN_PREDICT": "1" if sklearn_predict else "0"}
    with open(tmp / "server.log", "w+b") as log:
        proc = subprocess.Popen(
            [sys.executable, str(script), str(port), model], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise SystemExit(f"model server exited ({proc.returncode}):\n{log.read().decode()[-3000:]}")
                try:
                    if httpx.get(f"{url}/v1/models/{model}", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("model server not ready after 60 s")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            shutil.rmtree(tmp, ignore_errors=True)


# -- the contenders ---------------------------------------------------------------------------


def run_wrk(url: str, host: str, *, duration: float, connections: int) -> dict[str, Any]:
    """wrk with a Lua POST script; returns req/s and the count of non-2xx answers."""
    lua = textwrap.dedent(
        f"""
        wrk.method = "POST"
        wrk.body = '{BODY}'
        wrk.headers["Content-Type"] = "application/json"
        wrk.headers["Host"] = "{host}"
        """
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "-s", f.name, url],
            capture_output=True, text=True, check=True, timeout=duration + 60,
        ).stdout
    finally:
        os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "rps": rps,
        "requests": total,
        "errors": int(bad.group(1)) if bad else 0,
        "cpu_us": cpu / max(total, 1) * 1e6,
    }


def run_send(client: PredictionClient, targets: list[Target], *, n: int, concurrency: int) -> dict[str, Any]:
    """``n`` predictions in total, spread over ``targets`` (n / len(targets) inputs each)."""
    inputs = [ROW] * (n // len(targets))
    c0, t0 = time.process_time(), time.perf_counter()
    df = client.send(targets, inputs, concurrency=concurrency)
    dt = time.perf_counter() - t0
    # process_time covers every thread of this process (the send loop thread included) and not the
    # server subprocess: the client's own cost, which contention on a shared box hardly changes.
    cpu_us = (time.process_time() - c0) / len(df) * 1e6
    return {
        "rps": len(df) / dt,
        "requests": len(df),
        "seconds": dt,
        "errors": int(df["error"].notna().sum()),
        "cpu_us": cpu_us,
    }


def run_httpx(url: str, host: str, *, n: int) -> dict[str, Any]:
    """Sequential ``httpx.Client`` posts on one keep-alive connection."""
    headers = {"Host": host, "Content-Type": "application/json"}
    errors = 0
    with httpx.Client() as c:
        c.post(url, content=BODY, headers=headers)  # connect outside the timing
        t0 = time.perf_counter()
        for _ in range(n):
            errors += c.post(url, content=BODY, headers=headers).status_code >= 300
        dt = time.perf_counter() - t0
    return {"rps": n / dt, "requests": n, "seconds": dt, "errors": errors}


def run_curl(url: str, host: str, *, n: int) -> dict[str, Any]:
    """A sequential shell loop of ``curl`` (one process and connection per request), as in the docs."""
    script = (
        f'for i in $(seq {n}); do curl -s -o /dev/null -w "%{{http_code}}\\n" '
        f'-H "Host: {host}" -H "Content-Type: application/json" -d \'{BODY}\' {url}; done'
    )
    t0 = time.perf_counter()
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    dt = time.perf_counter() - t0
    codes = out.split()
    return {"rps": n / dt, "requests": n, "seconds": dt, "errors": sum(c != "200" for c in codes)}


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--ingress", help="base URL of an existing gateway/model server (default: start a local one)")
    p.add_argument(
        "--host",
        default="latest-sklearn-iris-predictor.kserve-test.example.com",
        help="Host header (wrk, curl, httpx, first Target)",
    )
    p.add_argument(
        "--prev-host", help="Host header of the second Target (default: --host with latest- replaced by prev-)"
    )
    p.add_argument("--model", default="sklearn-iris", help="model name on the URL")
    p.add_argument("--requests", type=int, default=2000, help="predictions per send run (over both Targets)")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight for send and connections for wrk")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=5, help="alternating wrk/send rounds")
    p.add_argument("--httpx-requests", type=int, default=500)
    p.add_argument("--curl-requests", type=int, default=300)
    p.add_argument("--sklearn-predict", action="store_true", help="local server calls clf.predict (slower server)")
    p.add_argument("--min-ratio", type=float, default=None, help="exit 1 if send/wrk falls below this")
    p.add_argument("--json", dest="json_out", help="also write the numbers to this JSON file")
    args = p.parse_args(argv)

    if not shutil.which("wrk") or not shutil.which("curl"):
        print("wrk and curl must be on PATH (apt-get install wrk curl)", file=sys.stderr)
        return 2
    prev_host = args.prev_host or args.host.replace("latest-", "prev-", 1)

    @contextmanager
    def endpoint() -> Iterator[str]:
        if args.ingress:
            yield args.ingress.rstrip("/")
        else:
            with local_model_server(args.model, sklearn_predict=args.sklearn_predict) as url:
                yield url

    with endpoint() as base:
        url = f"{base}/v1/models/{args.model}:predict"
        targets = [Target("latest", args.host), Target("prev", prev_host)]
        print(f"endpoint {url}  ({os.cpu_count()} CPUs, {args.rounds} rounds, concurrency {args.concurrency})")
        with PredictionClient(base, model=args.model) as client:
            client.send(targets, [ROW] * 64, concurrency=args.concurrency)  # warm up connections and imports
            run_wrk(url, args.host, duration=1, connections=args.concurrency)  # warm up the server
            wrks, sends = [], []
            for r in range(args.rounds):
                wrks.append(run_wrk(url, args.host, duration=args.duration, connections=args.concurrency))
                sends.append(run_send(client, targets, n=args.requests, concurrency=args.concurrency))
                print(f"  round {r + 1}: wrk {wrks[-1]['rps']:7.0f} req/s   send {sends[-1]['rps']:7.0f} req/s"
                      f"   ratio {sends[-1]['rps'] / wrks[-1]['rps']:.2f}"
                      f"   client CPU/request: send {sends[-1]['cpu_us']:.0f} µs, wrk {wrks[-1]['cpu_us']:.0f} µs")
        hx = run_httpx(url, args.host, n=args.httpx_requests)
        curl = run_curl(url, args.host, n=args.curl_requests)

    wrk_med = statistics.median(w["rps"] for w in wrks)
    send_med = statistics.median(s["rps"] for s in sends)
    ratio = statistics.median(s["rps"] / w["rps"] for s, w in zip(sends, wrks))
    # send's ratio is the median of per-round ratios (each send next to its own wrk run), which is
    # robust to the machine drifting; the sequential clients are compared with the median wrk.
    rows = [
        (
            f"wrk ({args.concurrency} connections, {args.duration:g} s)",
            wrk_med,
            1.0,
            sum(w["requests"] for w in wrks),
            sum(w["errors"] for w in wrks),
        ),
        (
            f"PredictionClient.send ({args.requests} over 2 targets, {args.concurrency} in flight)",
            send_med,
            ratio,
            sum(s["requests"] for s in sends),
            sum(s["errors"] for s in sends),
        ),
        ("httpx.Client, sequential", hx["rps"], hx["rps"] / wrk_med, hx["requests"], hx["errors"]),
        (
            "curl loop, sequential (a process per request)",
            curl["rps"],
            curl["rps"] / wrk_med,
            curl["requests"],
            curl["errors"],
        ),
    ]
    cpu = statistics.median(s["cpu_us"] for s in sends)
    print()
    print(f"{'client (median of rounds)':<62} {'req/s':>8} {'× wrk':>6} {'requests':>9} {'errors':>7}")
    for name, rps, x, n, err in rows:
        print(f"{name:<62} {rps:8.0f} {x:6.2f} {n:9d} {err:7d}")
    wrk_cpu = statistics.median(w["cpu_us"] for w in wrks)
    print(f"\nsend / wrk = {ratio:.2f} (median of per-round ratios)")
    print(f"client CPU per request: send {cpu:.0f} µs, wrk {wrk_cpu:.0f} µs (independent of other load on the box)")
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps(
                {
                    "wrk": wrks,
                    "send": sends,
                    "httpx": hx,
                    "curl": curl,
                    "wrk_median_rps": wrk_med,
                    "send_median_rps": send_med,
                    "ratio": ratio,
                    "send_cpu_us": cpu,
                    "wrk_cpu_us": wrk_cpu,
                },
                indent=2,
            )
        )
    if args.min_ratio is not None and ratio < args.min_ratio:
        print(f"FAIL: ratio {ratio:.2f} < {args.min_ratio}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
