"""What one refresh of the live chart (``%kserve watch``) costs, and what updating in place saves.

Run: ``.venv/bin/python benchmarks/bench_live.py [--refreshes 30] [--window 300]``

On a fresh local cluster (temporary state dir, stopped at the end) with a 50% canary and steady
traffic on its weighted route, side by side in one run:

1. Time of one refresh, by part: the isvc status read, the Prometheus range query
   (``PrometheusSource.range_frame`` over the window) and the chart update (``LiveMetrics`` putting
   the new data into its existing traces). Medians and p95 over ``--refreshes`` refreshes.
2. Bytes sent to the browser per refresh: the in-place update (plotly's ``_py2js_update`` message
   of the ``batch_update``) next to the whole figure as JSON, which is what redrawing the chart
   (``clear_output`` + a new figure) would send every time, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

MODEL_1 = "gs://kfserving-examples/models/sklearn/1.0/model"
MODEL_2 = "gs://kfserving-examples/models/sklearn/1.0/model-2"
NAME = "bench-live"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refreshes", type=int, default=30)
    parser.add_argument("--window", type=float, default=300.0, help="seconds of history charted")
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args()

    import plotly.io as pio

    from kserve_nb.local import manager
    from kserve_nb.session import connect
    from kserve_nb.widgets.live import LiveMetrics
    from kserve_nb.widgets.samples import iris_rows

    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        state = Path(tmp)
        manager.up(state)
        session = connect(local=True, state_dir=state)
        done = threading.Event()
        try:
            svc = session.service(NAME)
            svc.deploy(MODEL_1)
            svc.canary(MODEL_2, 50)
            source = session.metrics()

            def traffic() -> None:
                rows = iris_rows(20)
                while not done.is_set():
                    svc.send(rows, to="default", concurrency=4)
                    done.wait(0.25)

            sender = threading.Thread(target=traffic, daemon=True)
            sender.start()
            live = LiveMetrics(svc, source=source, interval=args.interval, window=args.window, autostart=False)
            sent: list[int] = []
            live.figure.observe(
                lambda change: change["new"] and sent.append(len(json.dumps(change["new"], default=str))),
                names="_py2js_update",
            )
            # Warm up until Prometheus has rates for both revisions (the chart's steady state).
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                live.refresh()
                frame = live.frame
                if frame is not None and frame.dropna(subset=["rps"]).revision.nunique() >= 2:
                    break
                time.sleep(1)
            parts: dict[str, list[float]] = {"status read": [], "Prometheus range query": [], "chart update": []}
            full: list[int] = []
            del sent[:]
            for _ in range(args.refreshes):
                now = time.time()
                t0 = time.perf_counter()
                status = svc.status()
                t1 = time.perf_counter()
                frame = source.range_frame(svc.namespace, svc.name, now - live.window, now, live.step)
                t2 = time.perf_counter()
                with live._figure_lock:
                    live._apply(now, status, frame)
                t3 = time.perf_counter()
                for name, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2)):
                    parts[name].append(seconds * 1000)
                full.append(len(pio.to_json(live.figure)))
                time.sleep(args.interval)
            points = 0 if live.frame is None else len(live.frame)
            live.close()
        finally:
            done.set()
            session.close()
            manager.down(state)

    print(f"live chart of a 50% canary under steady traffic: {args.refreshes} refreshes, window "
          f"{args.window:g}s, step {max(args.interval, args.window / 300):g}s ({points} rows per range query)")
    print(f"{'part of one refresh':<26}{'median ms':>11}{'p95 ms':>9}")
    for name, values in parts.items():
        print(f"{name:<26}{statistics.median(values):>11.2f}{percentile(values, 0.95):>9.2f}")
    total = [sum(v) for v in zip(*parts.values())]
    print(f"{'whole refresh':<26}{statistics.median(total):>11.2f}{percentile(total, 0.95):>9.2f}")
    in_place, redraw = statistics.median(sent), statistics.median(full)
    print(f"\n{'bytes to the browser per refresh':<34}{'median':>10}")
    print(f"{'in place (batch_update)':<34}{in_place:>10,.0f}")
    print(f"{'redraw (whole figure JSON)':<34}{redraw:>10,.0f}")
    print(f"in place / redraw = {in_place / redraw:.2f}× (and no new plot element, so no flicker)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
