"""State and actions of the release panel, without any widget.

The view (:mod:`kserve_nb.widgets.view`) binds ipywidgets to a :class:`PanelController`; tests drive
the controller directly. Every action calls one :class:`~kserve_nb.service.Service` method, records
what happened in :attr:`PanelController.log`, and reports failures in :attr:`PanelController.error`
instead of raising, because in the panel actions run on a worker thread where an exception would be
lost. Observers (:meth:`PanelController.observe`) hear about every change, from whatever thread made it.

Guards (peers §d.2): a traffic move larger than ``config.max_step`` is **refused**, not clamped: a
guard must never apply a percentage nobody chose, and the status line says how far one move may go.
Raising the canary above ``config.confirm_above`` waits for :meth:`confirm`; so do promote, rollback
and deploys above that percent.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

from kserve_nb.errors import KServeNbError, NotFound, ValidationError
from kserve_nb.widgets.samples import IRIS_COLUMNS, IRIS_SOURCE, iris_rows

if TYPE_CHECKING:  # pragma: no cover
    from kserve_nb.config import KServeNb
    from kserve_nb.plan import Plan
    from kserve_nb.service import Service
    from kserve_nb.status import ServiceStatus

log = logging.getLogger(__name__)

Outcome = Literal["applied", "needs_confirmation", "refused", "unchanged", "failed"]
Observer = Callable[[str], None]
MAX_LOG = 200


@dataclass(frozen=True)
class LogEntry:
    """One line of the panel's log: an action and what came of it."""

    time: str
    action: str
    outcome: str
    ok: bool = True

    def __str__(self) -> str:
        return f"{self.time} {self.action}: {self.outcome}"


@dataclass(frozen=True)
class Pending:
    """An action waiting for Confirm: what it is, what Confirm will do, and its arguments."""

    action: str
    message: str
    kwargs: dict[str, Any] = field(default_factory=dict)


class PanelController:
    """The release panel's state (status, pending action, log, last comparison, error) and actions.

    Parameters
    ----------
    service:
        The InferenceService to release.
    config:
        Settings (``max_step``, ``confirm_above``, ``poll_interval``…); default: the session's.
    user_ns:
        The notebook namespace, where :meth:`send_test` finds DataFrame inputs by name.
    """

    def __init__(
        self, service: Service, config: KServeNb | None = None, *, user_ns: Mapping[str, Any] | None = None
    ) -> None:
        self.service = service
        self.config = config if config is not None else service.session.config
        self.user_ns: Mapping[str, Any] = user_ns if user_ns is not None else {}
        self.status: ServiceStatus | None = None
        self.exists: bool | None = None
        self.revision_uris: dict[str, str] = {}
        self.pending: Pending | None = None
        self.log: list[LogEntry] = []
        self.plan: Plan | None = None
        self.comparison: Any = None
        self.results: Any = None
        self.error: str | None = None
        self.busy: str | None = None
        self._observers: list[Observer] = []
        self._lock = threading.RLock()
        self._stop = threading.Event()
        # Set by stop(): a release waiting for its split stops waiting instead of outliving the panel.
        self._cancel = threading.Event()
        self._poller: threading.Thread | None = None
        self._worker: threading.Thread | None = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._traffic_ticket = 0

    # ------------------------------------------------------------------ observers

    def observe(self, callback: Observer) -> None:
        """Call ``callback(what)`` after every change, from the thread that made it.

        ``what`` names the attribute that changed: ``status``, ``exists``, ``revision_uris``,
        ``pending``, ``log``, ``error``, ``busy``, ``plan``, ``comparison`` or ``results``.
        """
        self._observers.append(callback)

    def _notify(self, what: str) -> None:
        for callback in list(self._observers):
            try:
                callback(what)
            except Exception:  # a broken view must not break the action that triggered it
                log.exception("panel observer failed on %r", what)

    def _set(self, what: str, value: Any) -> None:
        with self._lock:
            setattr(self, what, value)
        self._notify(what)

    def _record(self, action: str, outcome: str, ok: bool = True) -> None:
        with self._lock:
            self.log.append(LogEntry(time.strftime("%H:%M:%S"), action, outcome, ok))
            del self.log[:-MAX_LOG]
        self._notify("log")

    def _fail(self, action: str, err: BaseException) -> None:
        message = str(err) if isinstance(err, KServeNbError) else f"{type(err).__name__}: {err}"
        if not isinstance(err, KServeNbError):
            log.exception("panel action %s failed", action, exc_info=err)
        self._record(action, message, ok=False)
        self._set("error", f"{action} failed: {message}")

    def _run(self, action: str, fn: Callable[[], Any]) -> Any:
        """Run one façade call with busy/log/error bookkeeping; never raises."""
        self._set("busy", action)
        self._set("error", None)
        self._cancel.clear()
        try:
            return fn()
        except Exception as err:  # lands in the error field: in a worker thread it would be lost
            self._fail(action, err)
            return None
        finally:
            self._set("busy", None)

    # ------------------------------------------------------------------ reading

    def refresh(self) -> ServiceStatus | None:
        """Re-read the live status (and the revisions' storageUris when new revisions appeared).

        Returns None when the service does not exist (:attr:`exists` is then False) or the read
        failed (the reason is in :attr:`error`).
        """
        try:
            return self._read()
        except Exception as err:  # polled from a thread: report, never raise
            self._set("error", f"refresh failed: {err}")
            return None

    def _read(self) -> ServiceStatus | None:
        try:
            st = self.service.status()
        except NotFound:
            self._set("exists", False)
            self._set("status", None)
            self._set("revision_uris", {})  # a service re-created under this name starts over
            return None
        needed = {n for n in (st.latest_revision, st.prev_revision, st.latest_created_revision) if n}
        if not needed <= set(self.revision_uris):
            uris = self.service.revisions().set_index("revision")["storageUri"].to_dict()
            self._set("revision_uris", {str(k): str(v) for k, v in uris.items()})
        self._set("exists", True)
        self._set("status", st)
        if self.error and self.error.startswith("refresh failed"):
            self._set("error", None)  # the API is back: the old read failure is no longer news
        return st

    @property
    def live_percent(self) -> int | None:
        """The LATEST column: percent of traffic on the latest ready revision."""
        st = self.status
        return None if st is None else st.latest_percent

    # ------------------------------------------------------------------ deploy

    def preview_deploy(self, storage_uri: str, percent: int, tag_routing: bool | None = None) -> Plan | None:
        """Dry run of :meth:`deploy`: the exact patch and the traffic it would settle into."""
        plan = self._run("preview", lambda: self._deploy_call(storage_uri, percent, tag_routing, dry_run=True))
        if plan is not None:
            self._set("plan", plan)
            self._record("preview", plan.summary())
        return plan

    def deploy(self, storage_uri: str, percent: int, tag_routing: bool | None = None) -> Outcome:
        """Deploy ``storage_uri`` as a canary with ``percent`` (creates the service if needed)."""
        if percent > self.config.confirm_above and self.exists is not False:
            return self._ask(
                "deploy", f"deploy {storage_uri} with {percent}% of the traffic?",
                storage_uri=storage_uri, percent=percent, tag_routing=tag_routing,
            )
        return self._deploy_now(storage_uri, percent, tag_routing)

    def _deploy_call(self, uri: str, percent: int, tag_routing: bool | None, dry_run: bool) -> Any:
        # A panel opened before the service exists creates it; afterwards Deploy means "canary".
        if self.exists is None:
            self._read()
        # ``cancel``: stop() ends a release's wait instead of leaving its thread behind.
        if self.exists is False:
            return self.service.deploy(uri, tag_routing=tag_routing, dry_run=dry_run, cancel=self._cancel)
        return self.service.canary(uri, percent, tag_routing=tag_routing, dry_run=dry_run, cancel=self._cancel)

    def _deploy_now(self, uri: str, percent: int, tag_routing: bool | None) -> Outcome:
        release = self._run("deploy", lambda: self._deploy_call(uri, percent, tag_routing, dry_run=False))
        return self._applied("deploy", release)

    def _applied(self, action: str, release: Any) -> Outcome:
        if release is None:
            self.refresh()
            return "failed"
        self._record(action, release.summary())
        self.refresh()
        return "applied"

    # ------------------------------------------------------------------ traffic

    def request_traffic(self, percent: int) -> Outcome:
        """A slider release: apply ``percent`` now, refuse it, or ask for confirmation.

        Returns ``"applied"``, ``"needs_confirmation"`` (see :meth:`confirm`), ``"refused"`` (step
        larger than ``config.max_step``, or no service), ``"unchanged"`` or ``"failed"``.
        """
        if self.status is None:
            self.refresh()
        current = self.live_percent
        if current is None:
            return self._refuse("traffic", f"{self.service.name} has no traffic split yet; deploy it first")
        if percent == current:
            return "unchanged"
        step, limit = abs(percent - current), self.config.max_step
        if step > limit:
            nearest = current + limit if percent > current else current - limit
            return self._refuse(
                "traffic",
                f"{current}% → {percent}% is a move of {step} points; one move may change at most {limit} "
                f"(%config KServeNb.max_step): move to {nearest}% first",
            )
        if percent > current and percent > self.config.confirm_above:
            return self._ask("traffic", f"send {percent}% of the traffic to the canary?", percent=percent)
        return self._traffic_now(percent)

    def _traffic_now(self, percent: int) -> Outcome:
        release = self._run("traffic", lambda: self.service.set_traffic(percent, cancel=self._cancel))
        return self._applied("traffic", release)

    def _refuse(self, action: str, reason: str) -> Outcome:
        self._record(action, f"refused: {reason}", ok=False)
        self._set("error", f"{action} refused: {reason}")
        return "refused"

    # ------------------------------------------------------------------ promote / rollback

    def promote(self) -> Outcome:
        """Ask to promote (Confirm sends 100% to the latest ready revision)."""
        return self._ask("promote", f"promote {self.service.name}: 100% to {self._latest_name()}?")

    def rollback(self) -> Outcome:
        """Ask to roll back (Confirm sends 100% to the previously rolled-out revision)."""
        return self._ask("rollback", f"roll back {self.service.name}: 100% to {self._previous_name()}?")

    def _latest_name(self) -> str:
        st = self.status
        return (st.latest_ready_revision if st else None) or "the latest ready revision"

    def _previous_name(self) -> str:
        st = self.status
        if st is None:
            return "the previous revision"
        return st.prev_revision or st.previous_rolledout_revision or "the previous revision"

    # ------------------------------------------------------------------ confirmation

    def _ask(self, action: str, message: str, **kwargs: Any) -> Outcome:
        self._set("pending", Pending(action, message, kwargs))
        self._record(action, f"waiting for confirmation: {message}")
        return "needs_confirmation"

    def confirm(self) -> Outcome:
        """Carry out the pending action."""
        with self._lock:
            pending, self.pending = self.pending, None
        self._notify("pending")
        if pending is None:
            return "unchanged"
        kw = pending.kwargs
        if pending.action == "traffic":
            return self._traffic_now(kw["percent"])
        if pending.action == "deploy":
            return self._deploy_now(kw["storage_uri"], kw["percent"], kw["tag_routing"])
        call = self.service.promote if pending.action == "promote" else self.service.rollback
        return self._applied(pending.action, self._run(pending.action, lambda: call(cancel=self._cancel)))

    def cancel(self) -> None:
        """Drop the pending action."""
        with self._lock:
            pending, self.pending = self.pending, None
        self._notify("pending")
        if pending is not None:
            self._record(pending.action, "cancelled")

    # ------------------------------------------------------------------ test traffic

    def input_sources(self) -> list[str]:
        """Input choices for :meth:`send_test`: the iris sample and the notebook's DataFrames."""
        names = [IRIS_SOURCE]
        for name, value in list(self.user_ns.items()):
            if not name.startswith("_") and type(value).__name__ == "DataFrame":
                names.append(name)
        return names

    def _inputs(self, n: int, source: Any) -> Any:
        if isinstance(source, str) and source == IRIS_SOURCE:
            return iris_rows(n)
        frame = self.user_ns.get(source) if isinstance(source, str) else source
        if frame is None:
            raise ValidationError(f"no DataFrame {source!r} in the notebook; pick another input source")
        return frame.head(n) if hasattr(frame, "head") else list(frame)[:n]

    def send_test(self, n: int = 20, source: Any = IRIS_SOURCE) -> Any:
        """Send ``n`` rows of ``source`` to both sides and compare them.

        With tag routing the rows go to ``latest`` and ``prev`` and the result is a Comparison
        (also in :attr:`comparison`); without it they sample the weighted ``default`` route and the
        result is the per-request DataFrame (in :attr:`results`).
        """
        if n < 1:
            return self._refuse("send", f"send at least 1 row, got {n}")

        def call() -> Any:
            inputs = self._inputs(n, source)
            st = self.status or self.refresh()
            if st is not None and st.tag_url("latest") and st.tag_url("prev"):
                return self.service.compare(inputs)
            return self.service.send(inputs, to="default")

        result = self._run("send", call)
        if result is None:
            return None
        if hasattr(result, "figures"):
            self._set("comparison", result)
            self._record("send", f"{n} rows to latest and prev: {_one_line(result)}")
        else:
            self._set("results", result)
            self._record("send", f"{n} rows to the default route (enable tag routing to compare both sides)")
        return result

    # ------------------------------------------------------------------ background work

    def submit(self, method: str | Callable[..., Any], *args: Any) -> Future[Any]:
        """Run action ``method`` (a method name, or a callable) on the panel's worker thread.

        Actions run one at a time, in order. The returned Future resolves to the action's
        outcome; failures are in :attr:`error`.
        """
        future: Future[Any] = Future()
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._queue = queue.Queue()  # each worker its own queue: a stopped one keeps its sentinel
                self._worker = threading.Thread(
                    target=self._work, args=(self._queue,), name="kserve-nb-panel-worker", daemon=True
                )
                self._worker.start()
            self._queue.put((future, method, args))
        return future

    def _work(self, jobs: queue.Queue[Any]) -> None:
        while True:
            item = jobs.get()
            if item is None:
                return
            future, method, args = item
            if not future.set_running_or_notify_cancel():
                continue
            action = method if isinstance(method, str) else getattr(method, "__name__", "action")
            try:
                future.set_result((getattr(self, method) if isinstance(method, str) else method)(*args))
            except Exception as err:  # an action that escaped _run: still reported, never lost
                self._fail(action, err)
                future.set_result(None)

    def submit_traffic(self, percent: int) -> Future[Any]:
        """Queue a slider release; releases queued behind it supersede it (only the last one runs)."""
        with self._lock:
            self._traffic_ticket += 1
            ticket = self._traffic_ticket
        return self.submit("_traffic_if_current", ticket, percent)

    def _traffic_if_current(self, ticket: int, percent: int) -> Outcome:
        if ticket != self._traffic_ticket:
            return "unchanged"  # a later slider release is queued: it alone matters
        return self.request_traffic(percent)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until every action submitted so far has finished; False on timeout."""
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                return True
        try:
            self.submit("_noop").result(timeout=timeout)
        except TimeoutError:
            return False
        return True

    def _noop(self) -> None:
        return None

    def start_polling(self, interval: float | None = None) -> None:
        """Refresh the status every ``interval`` seconds on a daemon thread until :meth:`stop`."""
        if self._poller is not None and self._poller.is_alive():
            return
        every = interval if interval is not None else max(self.service.session.poll_interval, 1.0)
        self._stop.clear()
        self._poller = threading.Thread(target=self._poll, args=(every,), name="kserve-nb-panel-poll", daemon=True)
        self._poller.start()

    def _poll(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.refresh()
            except Exception as err:  # keep polling: a blip of the API must not end the live view
                self._set("error", f"refresh failed: {err}")

    @property
    def polling(self) -> bool:
        return self._poller is not None and self._poller.is_alive()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop polling and the worker thread; queued actions are cancelled.

        A release already waiting for its split stops waiting (the change stays applied); this
        waits at most ``timeout`` seconds for the threads and returns False if one is still running
        (its thread is a daemon, so it never keeps the kernel alive).
        """
        self._stop.set()
        self._cancel.set()
        deadline = time.monotonic() + timeout
        with self._lock:
            poller, self._poller = self._poller, None
            worker, self._worker = self._worker, None
            jobs, self._queue = self._queue, queue.Queue()
        while not jobs.empty():
            item = jobs.get_nowait()
            if item is not None:
                item[0].cancel()
        jobs.put(None)
        for thread in (poller, worker):
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        return all(t is None or not t.is_alive() for t in (poller, worker))


def _one_line(comparison: Any) -> str:
    """Agreement and recommendation of a Comparison, for the log."""
    parts = []
    rate = getattr(getattr(comparison, "agreement", None), "rate", None)
    if rate is not None:
        parts.append(f"agreement {rate:.1%}")
    try:
        parts.append(f"recommendation {comparison.verdict().recommendation}")
    except Exception:  # the log line is only a summary; the full comparison is on the panel
        pass
    return "; ".join(parts) or "compared"


__all__ = ["IRIS_COLUMNS", "IRIS_SOURCE", "LogEntry", "Outcome", "PanelController", "Pending"]
