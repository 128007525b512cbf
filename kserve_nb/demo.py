"""``make demo`` (``python -m kserve_nb.demo``): run the release runbook headless on the local cluster.

Starts the embedded local cluster (state in ``$KSERVE_NB_HOME``), executes
``notebooks/03-release-runbook.ipynb`` with papermill (by default releasing the walkthrough's
``model-2`` over ``model``), prints the steps and the verdict from the runbook's JSON record, and
leaves an HTML report of the executed runbook whose plotly figures work offline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from kserve_nb.splits import split_text

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = ROOT / "notebooks" / "03-release-runbook.ipynb"
PROGRESSIVE = ROOT / "notebooks" / "03b-progressive-runbook.ipynb"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
MODELS = "gs://kfserving-examples/models/sklearn/1.0"


class DemoError(Exception):
    """A step of the demo failed; the message is the one line the user sees."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kserve_nb.demo",
        description="Run the release runbook (notebooks/03-release-runbook.ipynb) headless on the local cluster.",
    )
    p.add_argument("--service", default="sklearn-iris-demo", help="InferenceService to release (default: %(default)s)")
    p.add_argument("--namespace", default="kserve-demo", help="namespace (default: %(default)s)")
    p.add_argument(
        "--baseline", default=f"{MODELS}/model", metavar="URI", help="baseline storageUri (default: %(default)s)"
    )
    p.add_argument(
        "--candidate", default=f"{MODELS}/model-2", metavar="URI", help="candidate storageUri (default: %(default)s)"
    )
    p.add_argument("--percent", type=int, default=10, help="canaryTrafficPercent while judging (default: %(default)s)")
    p.add_argument("-n", "--predictions", type=int, default=150, help="test inputs per side (default: %(default)s)")
    p.add_argument("--max-error-rate", type=float, default=0.01, help="default: %(default)s")
    p.add_argument(
        "--max-p95-ms", type=float, default=1000.0, help="highest candidate p95 latency in ms (default: %(default)s)"
    )
    p.add_argument("--min-agreement", type=float, default=0.9, help="default: %(default)s")
    p.add_argument(
        "--keep", action="store_true",
        help="release over the existing service instead of re-creating it from --baseline",
    )
    p.add_argument("--state-dir", default=None, help="local cluster state dir (default: $KSERVE_NB_HOME)")
    p.add_argument(
        "--output-dir", default=None,
        help="where the executed runbook, its HTML report and record go (default: <state dir>/demo)",
    )
    p.add_argument("--strict", action="store_true", help="exit 3 unless the candidate was promoted (for CI)")
    p.add_argument(
        "--progressive", action="store_true",
        help="run the progressive variant (notebooks/03b-progressive-runbook.ipynb): traffic steps, gates "
        "judged on live metrics, automatic rollback; try --candidate gs://kserve-nb-faults/sklearn/iris-errors",
    )
    p.add_argument(
        "--steps", default="10,50,100", help="with --progressive: candidate share per step (default: %(default)s)"
    )
    p.add_argument("--interval", default="5s", help="with --progressive: bake time of each step (default: %(default)s)")
    p.add_argument(
        "--gate", action="append", dest="gates", metavar="EXPR",
        help="with --progressive: a gate, repeatable (default: the runbook's: error rate, p95, accuracy)",
    )
    return p


def say(text: str = "") -> None:
    print(text, flush=True)


# ---------------------------------------------------------------------- steps


def start_cluster(state_dir: str | None) -> Any:
    from kserve_nb.local import manager

    started = time.monotonic()
    cluster = manager.up(state_dir)
    say(f"✔ local cluster running ({time.monotonic() - started:.1f}s): API {cluster.api}, ingress {cluster.ingress}")
    say(f"  state: {cluster.state_dir}")
    return cluster


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """Send this process's stderr (and so the kernel's, which inherits it) to ``path`` for a while.

    The kernel writes start-up chatter to stderr that would read like an error in a demo's output.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def run_runbook(parameters: dict[str, Any], executed: Path, runbook: Path = RUNBOOK) -> float:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    started = time.monotonic()
    try:
        with stderr_to(executed.with_suffix(".kernel.log")):
            papermill.execute_notebook(
                str(runbook), str(executed), parameters=parameters, cwd=str(runbook.parent),
                kernel_name="python3", progress_bar=False, log_output=False, execution_timeout=600,
            )
    except PapermillExecutionError as err:
        raise DemoError(
            f"the runbook stopped in cell {err.exec_count}: {err.ename}: {err.evalue} (see {executed})"
        ) from err
    return time.monotonic() - started


def report(executed: Path, html_path: Path) -> Path:
    """The executed runbook as one self-contained HTML file (plotly.js inlined, figures rendered)."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(executed, as_version=4)
    figures = add_plotly_html(nb)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    if figures:
        body = inline_plotly_js(body)
    html_path.write_text(body, encoding="utf-8")
    return html_path


def add_plotly_html(nb: Any) -> int:
    """Give every plotly output an HTML rendering (nbconvert shows none for the plotly mimetype)."""
    import plotly.io as pio

    count = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data") or {}
            if PLOTLY_MIME in data and "text/html" not in data:
                data["text/html"] = pio.to_html(dict(data[PLOTLY_MIME]), include_plotlyjs=False, full_html=False)
                count += 1
    return count


def inline_plotly_js(page: str) -> str:
    """Put plotly.js into the page's head, before require.js, so ``window.Plotly`` exists offline."""
    from plotly.offline import get_plotlyjs

    script = (
        "<script type=\"text/javascript\">window.PlotlyConfig = {MathJaxConfig: 'local'};</script>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n'
    )
    head = page.find("<head>")
    if head < 0:
        return script + page
    at = head + len("<head>")
    return page[:at] + "\n" + script + page[at:]


def show_record(record: dict[str, Any]) -> None:
    say("Steps:")
    for step in record.get("steps", []):
        say(f"  {step['time']}  {step['step']}: {step['detail']}")
    rollout = record.get("rollout") or {}
    if rollout:
        say("Rollout timeline:")
        for event in rollout.get("timeline", []):
            at = time.strftime("%H:%M:%S", time.gmtime(float(event["time"])))
            say(f"  {at}  step {int(event['step']) + 1} ({event['percent']}%)  {event['event']}: {event['message']}")
        say("Gates at the last check:")
        for gate in rollout.get("gates", []):
            say(f"  [{gate.get('decision')}] {gate.get('statement')}")
    checks = (record.get("verdict") or {}).get("checks") or []
    if checks:
        say("Checks:")
        for c in checks:
            mark = {True: "pass", False: "FAIL", None: "skip"}[c["passed"]]
            say(f"  [{mark}] {c['check']}: {c['detail']}")
    decision = record.get("decision") or {}
    outcome = record.get("outcome") or {}
    headlines = {"promote": "PROMOTED", "rollback": "ROLLED BACK", "none": "NO CHANGE"}
    headline = headlines.get(str(decision.get("action")), "?")
    if not outcome.get("consistent"):
        headline = f"FAILED TO {str(decision.get('action')).upper()}"
    say()
    say(f"RELEASE VERDICT: {headline}")
    for reason in decision.get("reasons", []):
        say(f"  - {reason}")
    served = split_text(((f"{s['revision']} ({s['storageUri']})", s["percent"]) for s in outcome.get("serving", [])),
                        empty="nothing")
    say(f"  now serving: {served}")


# ---------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return demo(args)
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
        return 130
    except DemoError as err:
        print(f"demo failed: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - one line, never a traceback, for a make target
        from kserve_nb.errors import KServeNbError

        kind = "" if isinstance(err, KServeNbError) else f"{type(err).__name__}: "
        print(f"demo failed: {kind}{err}", file=sys.stderr)
        return 1


def demo(args: argparse.Namespace) -> int:
    say("kserve-nb demo: a canary release decided by the runbook, on the embedded local KServe cluster")
    cluster = start_cluster(args.state_dir)
    out = Path(args.output_dir or cluster.state_dir / "demo").expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    executed = out / "release-runbook.ipynb"
    html_path = out / "release-runbook.html"
    record_path = out / "release-record.json"
    record_path.unlink(missing_ok=True)
    parameters: dict[str, Any] = {
        "service": args.service,
        "namespace": args.namespace,
        "baseline_uri": args.baseline,
        "candidate_uri": args.candidate,
        "state_dir": str(cluster.state_dir),
        "record_path": str(record_path),
        "reset": not args.keep,
    }
    runbook = PROGRESSIVE if args.progressive else RUNBOOK
    if args.progressive:
        parameters.update(steps=args.steps, interval=args.interval)
        if args.gates:
            parameters["gates"] = args.gates
        how = f"step by step ({args.steps}, {args.interval} each), gates judged on live metrics"
    else:
        parameters.update(
            canary_percent=args.percent, n_predictions=args.predictions, max_error_rate=args.max_error_rate,
            max_p95_latency_ms=args.max_p95_ms, min_agreement=args.min_agreement,
        )
        how = f"as a {args.percent}% canary"
    say(f"▶ running {runbook.relative_to(ROOT)} with papermill: release {args.candidate}")
    say(f"  over {args.baseline} {how} of {args.namespace}/{args.service}")
    failure: DemoError | None = None
    try:
        took = run_runbook(parameters, executed, runbook)
        say(f"✔ runbook executed in {took:.1f}s")
    except DemoError as err:
        failure = err
    if executed.exists():
        report(executed, html_path)
    if not record_path.exists():
        raise failure or DemoError(f"the runbook wrote no record at {record_path}")
    record = json.loads(record_path.read_text())
    say()
    show_record(record)
    say()
    say(f"Evidence record:  {record_path}")
    say(f"Executed runbook: {executed}")
    if html_path.exists():
        say(f"HTML report:      {html_path}   (self-contained, opens offline in any browser)")
    say()
    say("Next: open the notebooks in JupyterLab with `make lab` (01 the walkthrough, 02 the panel, 03 this runbook,")
    say("03b the progressive rollout, 05 the same release in KServe's Standard mode). Watch a bad model roll itself")
    say("back: python -m kserve_nb.demo --progressive \\")
    say("  --candidate gs://kserve-nb-faults/sklearn/iris-errors")
    say("The local cluster keeps running for them; stop it with `make local-down`.")
    if failure is not None:
        raise failure
    if args.strict and (record.get("decision") or {}).get("action") != "promote":
        print("demo: the candidate was not promoted (--strict)", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
