"""The traffic generator: replay rows to a service at a steady rate, in the background.

Like Flagger's load tester, it is how a notebook or a runbook produces the traffic a canary needs:
rows of a DataFrame (optionally with their true labels) go to the service's weighted default host
at ``rate`` requests per second for ``duration`` seconds, so the split in place decides which
revision answers each one, and the ``x-kserve-revision`` response header (sent by the local
cluster's ingress) says which one did.

- **Open loop, capped.** Request *i* is due ``i / rate`` seconds after the start, whether or not
  earlier ones have answered, so a slow revision does not slow the traffic down (a closed loop
  would hide exactly the latency a canary must see). At most ``concurrency`` are in flight; when
  all are busy the next request waits for a slot and the schedule re-anchors instead of bursting
  to catch up, so ``rate`` is a ceiling and :meth:`LoadRun.summary` shows the achieved rate.
- **Bounded.** Nothing is sent after ``duration`` seconds or ``max_requests`` requests; requests
  still in flight then finish within the client's timeout.
- **Never blocks the caller.** It runs on the prediction client's private event loop thread
  (:meth:`PredictionClient.submit`), with the same senders as :meth:`PredictionClient.send`.
- **Failures are data.** A refused connection, a timeout or a 5xx from a dying revision is a
  recorded failed request, never an exception that ends the run.
"""

from __future__ import annotations

import asyncio
import html
import logging
import math
import numbers
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from kserve_nb.errors import PredictionError, ValidationError
from kserve_nb.predict.bulk import Job, JobResult
from kserve_nb.predict.client import PredictionClient, Target, encode_rows

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

#: Highest accepted ``rate`` (requests per second) and ``concurrency``.
MAX_RATE = 10_000.0
MAX_CONCURRENCY = 1024

#: Columns of :attr:`LoadRun.results` beyond the shared results columns.
LOAD_COLUMNS = ("label", "correct", "sent_s")

#: Seconds between progress updates.
_TICK = 0.5


class LoadRecord(NamedTuple):
    """One answered (or failed) request of a :class:`LoadRun`."""

    seq: int  #: position in the sending order
    row: int  #: which input row
    repeat: int  #: how many times the rows had been replayed before this one
    sent_s: float  #: seconds after the start of the run at which it was sent
    revision: str | None  #: revision that answered (None when nothing did, on the default host)
    prediction: Any
    status_code: int | None  #: None when no HTTP answer came (refused, reset, timed out)
    latency_ms: float
    error: str | None
    label: Any  #: the true label of the row (None without ``y``)
    correct: bool | None  #: prediction == label, for a successful answer to a labelled row


class LoadRun:
    """Traffic sent in the background by :func:`generate_load`; live while it runs.

    Read it at any time: :attr:`results` (one row per finished request), :meth:`summary` (per
    revision), ``repr``. Control it with :meth:`stop` and :meth:`wait`. Build one with
    :meth:`Service.generate_load <kserve_nb.service.Service.generate_load>` or
    :func:`generate_load`, not directly.
    """

    def __init__(
        self,
        client: PredictionClient,
        target: Target,
        rows: Any,
        *,
        y: Any = None,
        rate: float = 50,
        concurrency: int = 8,
        duration: float = 30,
        max_requests: int | None = None,
        protocol: str = "v1",
        service: str | None = None,
        namespace: str | None = None,
    ) -> None:
        self.rate = _positive_number("rate", rate, MAX_RATE, "requests per second")
        self.duration = _positive_number("duration", duration, math.inf, "seconds")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValidationError(
                f"concurrency must be a whole number from 1 to {MAX_CONCURRENCY}, got {concurrency!r}"
            )
        if max_requests is not None and (
            isinstance(max_requests, bool) or not isinstance(max_requests, int) or max_requests < 1
        ):
            raise ValidationError(f"max_requests must be a whole number ≥ 1 or None, got {max_requests!r}")
        if not isinstance(target, Target):
            raise ValidationError(f"target must be a Target, got {type(target).__name__}")
        self.concurrency = concurrency
        self.protocol = protocol
        self.target = target
        self.service = service
        self.namespace = namespace
        self._instances, self._bodies = encode_rows(rows, protocol)
        if not self._bodies:
            raise ValidationError("generate_load needs at least one input row")
        self._labels = _labels(y, len(self._bodies))
        by_time = math.ceil(self.rate * self.duration)
        #: Requests the run will send at most (``max_requests``, or what ``rate`` × ``duration`` allows).
        self.planned = min(max_requests, by_time) if max_requests is not None else by_time
        self.max_requests = max_requests
        self._client = client
        self._send = client.requester([target], protocol=protocol)
        self._lock = threading.Lock()
        self._records: list[LoadRecord] = []
        self._failures = 0
        self._by_revision: dict[str, int] = {}
        self._sent = 0
        self._late = 0
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waker: _Waker | None = None
        self._ended_at: float | None = None
        self._end_reason = ""
        self._started_at = time.monotonic()
        self.started = time.time()  #: wall-clock start (epoch seconds)
        self._progress: _Progress | None = None
        self._progress_shown = False
        self._future = client.submit(self._drive)

    # -- control ---------------------------------------------------------------------------

    def stop(self) -> LoadRun:
        """Send no more requests (those in flight still finish and are recorded). Returns at once."""
        self._stop.set()
        loop, waker = self._loop, self._waker
        if loop is not None and waker is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(waker.wake)
            except RuntimeError:  # the loop closed in between: nothing left to wake
                pass
        return self

    def wait(self, timeout: float | None = None) -> LoadRun:
        """Block until the run has ended (its in-flight requests included); returns the run.

        Interrupting the wait (the notebook's stop button) stops the run too.

        Raises
        ------
        PredictionError
            When ``timeout`` seconds pass first (the run goes on), or the run itself broke.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self.done:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise PredictionError(
                        f"the load run is still going after {timeout:g} s ({self._status_text()}); "
                        "wait longer, or stop() it"
                    )
                try:
                    self._future.result(timeout=min(0.2, left) if left is not None else 0.2)
                except TimeoutError:
                    continue
                except Exception:  # noqa: BLE001 - reported below, from the future itself
                    break
        except KeyboardInterrupt:
            self.stop()
            raise
        if self._future.done() and not self._future.cancelled() and self._future.exception() is not None:
            exc = self._future.exception()
            raise PredictionError(f"the load run broke: {type(exc).__name__}: {exc}") from exc
        return self

    # -- state -----------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        """True once nothing is in flight and nothing more will be sent."""
        return self._future.done() or self._client.closed

    @property
    def running(self) -> bool:
        """True while requests are being sent or awaited."""
        return not self.done

    @property
    def state(self) -> str:
        """``running``, ``stopping``, or how it ended: ``finished`` (duration or max_requests
        reached), ``stopped``, or ``failed: …``."""
        if self._future.cancelled() or (self._client.closed and not self._future.done()):
            return "stopped (the prediction client was closed)"
        if self._future.done():
            if self._future.exception() is not None:
                return f"failed: {self._future.exception()}"
            return self._end_reason or "finished"
        return "stopping" if self._stop.is_set() else "running"

    @property
    def sent(self) -> int:
        """Requests sent so far."""
        return self._sent

    @property
    def completed(self) -> int:
        """Requests finished so far (answered or failed)."""
        return len(self._records)

    @property
    def elapsed(self) -> float:
        """Seconds since the start (until the end, once ended)."""
        end = self._ended_at if self._ended_at is not None else time.monotonic()
        return end - self._started_at

    @property
    def achieved_rate(self) -> float:
        """Requests sent per second so far."""
        sending = min(self.elapsed, self.duration)
        return self._sent / sending if sending > 0 else 0.0

    def records(self, since: int = 0) -> list[LoadRecord]:
        """Finished requests in the order they finished, from position ``since`` on (thread-safe).

        The list only grows, so a reader that keeps its position reads each record once
        (this is how :class:`~kserve_nb.metrics.client.ClientSource` follows a run).
        """
        with self._lock:
            return self._records[since:]

    @property
    def results(self) -> pd.DataFrame:
        """One row per finished request, in sending order (a snapshot while running).

        The columns of :meth:`PredictionClient.send` (``target, revision, row, repeat, input,
        prediction, status_code, latency_ms, error``) plus ``label`` (the row's true label),
        ``correct`` (prediction == label for a successful answer to a labelled row, else None) and
        ``sent_s`` (seconds after the start).
        """
        import pandas as pd

        from kserve_nb.analysis.frames import results_frame

        recs = sorted(self.records(), key=lambda r: r.seq)
        cols: dict[str, list[Any]] = {
            "target": [self.target.name] * len(recs),
            "revision": [r.revision for r in recs],
            "row": [r.row for r in recs],
            "repeat": [r.repeat for r in recs],
            "input": [self._instances[r.row] for r in recs],
            "prediction": [r.prediction for r in recs],
            "status_code": [r.status_code for r in recs],
            "latency_ms": [r.latency_ms for r in recs],
            "error": [r.error for r in recs],
        }
        df = results_frame(cols)
        df["label"] = pd.Series([r.label for r in recs], dtype=object)
        df["correct"] = pd.Series([r.correct for r in recs], dtype=object)
        df["sent_s"] = pd.Series([r.sent_s for r in recs], dtype="float64")
        return df

    def summary(self) -> pd.DataFrame:
        """Per revision (and ``all``): requests, share, errors (5xx and no answer), error rate,
        p50/p95 latency in ms of the answered requests, labelled, accuracy. Requests no revision
        answered are under ``(unattributed)``."""
        import numpy as np
        import pandas as pd

        from kserve_nb.metrics.client import UNATTRIBUTED, is_server_error

        groups: dict[str, list[LoadRecord]] = {}
        recs = self.records()
        for r in recs:
            groups.setdefault(r.revision or UNATTRIBUTED, []).append(r)
        rows = []
        for name, rs in [*sorted(groups.items()), ("all", recs)]:
            lat = np.array([r.latency_ms for r in rs if r.status_code is not None and math.isfinite(r.latency_ms)])
            errors = sum(is_server_error(r.status_code) for r in rs)
            labelled = [r for r in rs if r.correct is not None]
            rows.append(
                {
                    "revision": name,
                    "requests": len(rs),
                    "share": len(rs) / len(recs) if recs else math.nan,
                    "errors": errors,
                    "error_rate": errors / len(rs) if rs else math.nan,
                    "p50_ms": float(np.percentile(lat, 50)) if lat.size else math.nan,
                    "p95_ms": float(np.percentile(lat, 95)) if lat.size else math.nan,
                    "labelled": len(labelled),
                    "accuracy": sum(bool(r.correct) for r in labelled) / len(labelled) if labelled else math.nan,
                }
            )
        return pd.DataFrame(rows).set_index("revision")

    # -- display ---------------------------------------------------------------------------

    def _status_text(self) -> str:
        # From running counters: this runs on the sending loop every tick, whatever the run's size.
        with self._lock:
            total, failures, by_rev = len(self._records), self._failures, dict(self._by_revision)
        split = ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in sorted(by_rev.items())) if total else "—"
        text = (
            f"{self._sent}/{self.planned} sent in {min(self.elapsed, self.duration):.1f}/{self.duration:g} s "
            f"({self.achieved_rate:.1f} of {self.rate:g} req/s), {failures} failed; answered by {split}"
        )
        if self._late and self._sent and self._late / self._sent > 0.05:
            text += f"; {self._late} sent late: all {self.concurrency} slots were busy (raise concurrency=)"
        return text

    def __repr__(self) -> str:
        return f"<LoadRun {self.state} → {self.target.name} ({self.target.host}): {self._status_text()}>"

    def _repr_html_(self) -> str:
        head = html.escape(f"LoadRun {self.state} → {self.target.name} ({self.target.host})")
        body = self.summary().to_html(border=0, float_format=lambda x: f"{x:.3g}", na_rep="—")
        return f"<div><b>{head}</b><br>{html.escape(self._status_text())}{body}</div>"

    # -- the run, on the client's loop ---------------------------------------------------------

    async def _drive(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        self._waker = waker = _Waker(loop)
        ticker = asyncio.ensure_future(self._tick())
        interval = 1.0 / self.rate
        start = time.monotonic()
        end = start + self.duration
        self._started_at = start
        in_flight: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            if len(in_flight) == self.concurrency - 1:  # a slot came free: the driver may wait for one
                waker.wake()

        due = start
        try:
            while True:
                now = time.monotonic()
                if self._stop.is_set():
                    self._end_reason = "stopped"
                    break
                if self._sent >= self.planned:
                    self._end_reason = "finished (max_requests)" if self.planned == self.max_requests else "finished"
                    break
                if now >= end:
                    self._end_reason = "finished"
                    break
                if len(in_flight) >= self.concurrency:
                    await waker.sleep(end - now)
                    continue
                if due > now:
                    await waker.sleep(min(due, end) - now)
                    continue
                if now - due > interval:  # slots were full: re-anchor rather than burst to catch up
                    self._late += 1
                    due = now
                due += interval
                task = asyncio.ensure_future(self._one(self._sent, now - start))
                self._sent += 1
                in_flight.add(task)
                task.add_done_callback(finished)
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
        finally:
            self._ended_at = time.monotonic()
            ticker.cancel()
            self._show_done()

    def _show_done(self) -> None:
        # Called by the run when it ends and by generate_load when the run ended before its
        # progress display existed: show the final state once.
        with self._lock:
            progress = self._progress
            if progress is None or self._progress_shown:
                return
            self._progress_shown = True
        try:
            progress.done(self)
        except Exception:  # a display problem must not hide the run's end
            log.debug("load progress display failed", exc_info=True)

    async def _one(self, index: int, sent_s: float) -> None:
        n = len(self._bodies)
        row, repeat = index % n, index // n
        body, single = self._bodies[row]
        try:
            o = await self._send(Job(0, row, repeat, body, single))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a request failure is data, never the end of the run
            o = JobResult(None, None, None, math.nan, f"{type(exc).__name__}: {exc}")
        label = self._labels[row] if self._labels is not None else None
        ok = o.error is None and o.status_code is not None and 200 <= o.status_code < 300
        correct = matches(o.prediction, label) if ok and label is not None else None
        record = LoadRecord(
            index, row, repeat, sent_s, o.revision or self.target.revision, o.prediction, o.status_code,
            o.latency_ms, o.error, label, correct,
        )
        key = _short(record.revision) if record.revision else "?"
        with self._lock:
            self._records.append(record)
            self._failures += _failed(record)
            self._by_revision[key] = self._by_revision.get(key, 0) + 1

    async def _tick(self) -> None:
        while True:
            if self._progress is not None:
                try:
                    self._progress.update(self)
                except Exception:  # a display problem must not stop the traffic
                    log.debug("load progress update failed", exc_info=True)
            await asyncio.sleep(_TICK)


class _Waker:
    """A sleep that :meth:`wake` ends early (stop(), a request finishing and freeing a slot).

    A bare future and a timer: cheaper per request than ``asyncio.wait_for`` on an Event, which
    makes a task each time. Only the loop's own thread touches it (stop() goes through
    ``call_soon_threadsafe``), so a wake-up between the driver's checks and its sleep cannot be
    lost: nothing else runs on the loop in between.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._future: asyncio.Future[None] | None = None

    def wake(self) -> None:
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    async def sleep(self, seconds: float) -> None:
        future = self._future = self._loop.create_future()
        timer = self._loop.call_later(max(0.0, seconds), self.wake)
        try:
            await future
        finally:
            timer.cancel()
            self._future = None


def generate_load(
    client: PredictionClient,
    target: Target,
    rows: Any,
    *,
    y: Any = None,
    rate: float = 50,
    concurrency: int = 8,
    duration: float = 30,
    max_requests: int | None = None,
    protocol: str = "v1",
    progress: bool | None = None,
    service: str | None = None,
    namespace: str | None = None,
) -> LoadRun:
    """Start sending ``rows`` to ``target`` in the background and return the live :class:`LoadRun`.

    Parameters
    ----------
    client:
        The prediction client (its ingress, headers, TLS and senders are used).
    target:
        Where to send: normally the service's default host, so the traffic split applies.
    rows:
        Inputs (list, numpy array, DataFrame), one request each, replayed in order and cycled.
    y:
        True labels, one per row: results then say which predictions were ``correct``.
    rate:
        Requests per second (open loop), at most :data:`MAX_RATE`.
    concurrency:
        Requests in flight at most.
    duration:
        Seconds to send for.
    max_requests:
        Requests to send at most (default: what ``rate`` × ``duration`` allows).
    protocol:
        ``"v1"`` or ``"v2"``.
    progress:
        Show a progress bar (a widget with a Stop button in Jupyter, a text line in a terminal,
        log lines otherwise); None shows it in Jupyter and terminals only.
    service, namespace:
        The InferenceService the target belongs to (lets a metric source check what it judges).
    """
    run = LoadRun(
        client, target, rows, y=y, rate=rate, concurrency=concurrency, duration=duration,
        max_requests=max_requests, protocol=protocol, service=service, namespace=namespace,
    )
    show = _Progress.create(run, progress)
    if show is not None:
        with run._lock:
            run._progress = show
        if run._ended_at is not None:  # a very short run may be over before its display existed
            run._show_done()
    return run


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def matches(prediction: Any, label: Any) -> bool:
    """Whether ``prediction`` is ``label``: a one-element list is its element, a probability
    vector is its argmax, numbers compare by value (``2 == 2.0``)."""
    p = prediction
    while isinstance(p, list) and len(p) == 1:
        p = p[0]
    if isinstance(p, list) and p and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p):
        p = max(range(len(p)), key=lambda i: p[i])
    if isinstance(p, (int, float)) and isinstance(label, (int, float)) and not isinstance(p, bool):
        return bool(p == label)
    return bool(p == label) or str(p) == str(label)


def _labels(y: Any, n: int) -> list[Any] | None:
    if y is None:
        return None
    values = y.tolist() if hasattr(y, "tolist") else list(y) if not isinstance(y, (str, bytes)) else None
    if values is None:
        raise ValidationError("y must be a list, array or Series of labels, one per row")
    if len(values) != n:
        raise ValidationError(f"y has {len(values)} labels but there are {n} rows; give one label per row")
    out = []
    for v in values:
        while isinstance(v, list) and len(v) == 1:  # a one-column frame's .tolist()
            v = v[0]
        out.append(v)
    return out


def _positive_number(name: str, value: Any, upper: float, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) or value <= 0:
        raise ValidationError(f"{name} must be a positive number of {unit}, got {value!r}")
    number = float(value)
    if number > upper:
        raise ValidationError(f"{name} may be at most {upper:g} {unit}, got {value!r}")
    return number


def _failed(r: LoadRecord) -> bool:
    return r.error is not None or r.status_code is None or not 200 <= r.status_code < 300


def _short(revision: str) -> str:
    # "sklearn-iris-predictor-00002" -> "00002": the number is what tells revisions apart.
    tail = revision.rsplit("-", 1)[-1]
    return tail if tail.isdigit() else revision


class _Progress:
    """How a run shows its progress: a widget in Jupyter, a text line in a terminal, or log lines."""

    @staticmethod
    def create(run: LoadRun, enabled: bool | None) -> _Progress | None:
        from kserve_nb.progress import in_kernel

        if enabled is False:
            return None
        if in_kernel():
            try:
                return _WidgetProgress(run)
            except ImportError:  # ipywidgets missing: fall back to log lines
                return _LogProgress(run)
        if _plain_terminal():
            return _LineProgress(run)
        return _LogProgress(run) if enabled else None

    def update(self, run: LoadRun) -> None:
        raise NotImplementedError

    def done(self, run: LoadRun) -> None:
        raise NotImplementedError


def _plain_terminal() -> bool:
    # A live \r line only where nothing else reads the prompt line: a script on a terminal, not
    # IPython's interactive prompt (a background write there would garble the input line).
    try:
        from IPython.core.getipython import get_ipython

        if get_ipython() is not None:
            return False
    except ImportError:  # pragma: no cover
        pass
    return sys.stderr.isatty()


class _WidgetProgress(_Progress):
    def __init__(self, run: LoadRun) -> None:
        import ipywidgets as w
        from IPython.display import display

        self.bar = w.IntProgress(value=0, min=0, max=max(1, run.planned), bar_style="info",
                                 layout=w.Layout(width="220px"))
        self.label = w.HTML(value="starting…")
        self.button = w.Button(description="Stop", icon="stop", button_style="warning",
                               layout=w.Layout(width="80px"))
        self.button.on_click(lambda _b: run.stop())
        self.box = w.HBox([self.bar, self.button, self.label])
        display(self.box)

    def update(self, run: LoadRun) -> None:
        self.bar.value = min(run.sent, self.bar.max)
        self.label.value = f"<code>{html.escape(run._status_text())}</code>"

    def done(self, run: LoadRun) -> None:
        self.update(run)
        self.bar.bar_style = "success" if run.state.startswith("finished") else "warning"
        self.button.disabled = True
        self.label.value = f"<code>✔ {html.escape(run.state)}: {html.escape(run._status_text())}</code>"


class _LineProgress(_Progress):
    def __init__(self, run: LoadRun) -> None:
        self.title = f"load → {run.target.host}"

    def update(self, run: LoadRun) -> None:
        sys.stderr.write(f"\r\x1b[K{self.title}: {run._status_text()}")
        sys.stderr.flush()

    def done(self, run: LoadRun) -> None:
        sys.stderr.write(f"\r\x1b[K{self.title}: {run.state}: {run._status_text()}\n")
        sys.stderr.flush()


class _LogProgress(_Progress):
    _EVERY = 10.0  # seconds between log lines

    def __init__(self, run: LoadRun) -> None:
        self.title = f"load → {run.target.host}"
        self.last = 0.0

    def update(self, run: LoadRun) -> None:
        now = time.monotonic()
        if now - self.last >= self._EVERY:
            self.last = now
            log.info("%s: %s", self.title, run._status_text())

    def done(self, run: LoadRun) -> None:
        log.info("%s: %s: %s", self.title, run.state, run._status_text())


__all__ = ["LOAD_COLUMNS", "LoadRecord", "LoadRun", "generate_load", "matches"]
