"""State and actions of the release panel, without any widget.

The view (:mod:`kserve_nb.widgets.view`) binds ipywidgets to a :class:`PanelController`; tests drive
the controller directly. Every action calls one :class:`~kserve_nb.service.Service` method, records
what happened in :attr:`PanelController.log`, and reports its progress and outcome as a
:class:`Notice` (which the view shows next to the control that caused it) instead of raising,
because in the panel actions run on a worker thread where an exception would be lost. Observers
(:meth:`PanelController.observe`) hear about every change, from whatever thread made it.

Guards: a traffic move larger than ``config.max_step`` is **refused**, not clamped: a
guard must never apply a percentage nobody chose, and the notice says how far one move may go.
Raising the canary above ``config.confirm_above`` waits for :meth:`confirm`; so do promote, rollback,
deploys above that percent, and — whatever the percent — a deploy that would send traffic to an
older model than the one serving now. Promote and rollback are refused (and their buttons disabled,
see :meth:`PanelController.promote_blocker`) when they would do nothing.

Nothing shown is stale without saying so: any release step clears the dry-run plan (its "before" is
gone), and a comparison made at another split carries :attr:`PanelController.comparison_stale`.

Standard (RawDeployment) mode works the same from the user's side: the slider sets the newest
canary's ``trafficPercent``, Promote makes it the stable, Roll back removes every canary, and Test
compares the stable with the newest canary on their own hosts.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from kserve_nb import resources as r
from kserve_nb import splits
from kserve_nb.errors import KServeNbError, NotFound, ValidationError
from kserve_nb.widgets.samples import IRIS_COLUMNS, IRIS_SOURCE, iris_rows

if TYPE_CHECKING:  # pragma: no cover
    from kserve_nb.config import KServeNb
    from kserve_nb.plan import Plan
    from kserve_nb.service import Service
    from kserve_nb.status import ServiceStatus

log = logging.getLogger(__name__)
T = TypeVar("T")

Outcome = Literal["applied", "needs_confirmation", "refused", "unchanged", "failed"]
Level = Literal["busy", "ok", "error", "refused", "confirm", "info"]
Observer = Callable[[str], None]
MAX_LOG = 200

#: Which part of the panel an action belongs to: its notice is shown there, beside its controls.
AREAS: dict[str, str] = {
    "traffic": "release", "promote": "release", "rollback": "release",
    "preview": "deploy", "deploy": "deploy",
    "send": "test",
    "refresh": "service",
}
_VERBS = {
    "traffic": "moving traffic", "promote": "promoting", "rollback": "rolling back", "preview": "planning",
    "deploy": "deploying", "send": "sending test traffic",
}


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

    @property
    def area(self) -> str:
        return AREAS.get(self.action, "release")


@dataclass(frozen=True)
class Notice:
    """The latest word on an action: running, done, refused, failed or waiting for Confirm."""

    action: str
    level: Level
    text: str
    time: str = field(default_factory=lambda: time.strftime("%H:%M:%S"))

    @property
    def area(self) -> str:
        """The part of the panel it belongs to (:data:`AREAS`)."""
        return AREAS.get(self.action, "release")


@dataclass(frozen=True)
class RevisionInfo:
    """One revision as the cluster reports it: its model, and whether (and why not) it is ready."""

    name: str
    storage_uri: str
    ready: str  # "True", "False", "Unknown" or "" (not reported yet)
    reason: str | None = None
    message: str | None = None

    @property
    def number(self) -> int:
        return r.revision_number(self.name)

    @property
    def failed(self) -> bool:
        return self.ready == "False"


@dataclass(frozen=True)
class Basis:
    """The traffic split a result was made at."""

    split: tuple[tuple[str, int], ...]
    generation: int

    @classmethod
    def of(cls, st: ServiceStatus) -> Basis:
        return cls(tuple(sorted(st.split().items())), st.generation)

    @property
    def text(self) -> str:
        return panel_split_text(dict(self.split))


def panel_split_text(split: Mapping[str, int]) -> str:
    """The panel's split: ``20% …-00002 + 80% …-00001``, biggest share first; ``no traffic`` when empty."""
    return splits.split_text(split, biggest_first=True)


class PanelController:
    """The release panel's state (status, revisions, pending action, notices, log, plan, comparison).

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
        self.revisions: dict[str, RevisionInfo] = {}
        self.pending: Pending | None = None
        self.log: list[LogEntry] = []
        self.plan: Plan | None = None
        self.comparison: Any = None
        self.comparison_basis: Basis | None = None
        self.results: Any = None
        self.error: str | None = None
        self.busy: str | None = None
        self.notice: Notice | None = None
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

        ``what`` names the attribute that changed: ``status``, ``exists``, ``revisions``,
        ``pending``, ``log``, ``error``, ``busy``, ``notice``, ``plan``, ``comparison`` or ``results``.
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

    def _say(self, action: str, level: Level, text: str) -> None:
        self._set("notice", Notice(action, level, text))

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
        self._say(action, "error", f"{action} failed: {message}")

    def _run(self, action: str, fn: Callable[[], T], what: str = "") -> T | None:
        """Run one façade call with busy/notice/log/error bookkeeping; never raises.

        ``what`` names the arguments in the busy notice ("deploying URI with 30%…"), so the user
        sees exactly what the panel acts on.
        """
        self._set("busy", action)
        self._set("error", None)
        self._say(action, "busy", f"{_VERBS.get(action, action)}{' ' + what if what else ''}…")
        self._cancel.clear()
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - lands in the error field: in a worker thread it would be lost
            self._fail(action, err)
            return None
        finally:
            self._set("busy", None)

    # ------------------------------------------------------------------ reading

    def refresh(self) -> ServiceStatus | None:
        """Re-read the live status (and the revisions when they may have changed).

        Returns None when the service does not exist (:attr:`exists` is then False) or the read
        failed (the reason is in :attr:`error` and a ``refresh`` notice).
        """
        try:
            return self._read()
        except Exception as err:  # noqa: BLE001 - polled from a thread: report, never raise
            text = f"refresh failed: {err}"
            if self.error != text:
                self._set("error", text)
                self._say("refresh", "error", f"cannot read {self.service.name}: {err}")
            return None

    def _read(self) -> ServiceStatus | None:
        try:
            st = self.service.status()
        except NotFound:
            self._set("exists", False)
            self._set("status", None)
            self._set("revisions", {})  # a service re-created under this name starts over
            return None
        if self._revisions_outdated(st):
            self._set("revisions", self._list_revisions())
        self._set("exists", True)
        self._set("status", st)
        if self.error and self.error.startswith("refresh failed"):
            self._set("error", None)  # the API is back: the old read failure is no longer news
            self._say("refresh", "info", "reading the service again")
        return st

    def _revisions_outdated(self, st: ServiceStatus) -> bool:
        if st.standard:
            return False  # no revisions: the status itself names each side's Deployment and model
        named = {n for n in (st.latest_revision, st.prev_revision, st.latest_created_revision, *st.split()) if n}
        if not named <= set(self.revisions):
            return True
        # A revision still starting may yet fail: keep reading until it is ready or failed.
        created = self.revisions.get(st.latest_created_revision or "")
        return created is not None and created.ready not in ("True", "False")

    def _list_revisions(self) -> dict[str, RevisionInfo]:
        out = {}
        for obj in self.service.session.cluster.list_revisions(self.service.name, self.service.namespace):
            meta = obj.get("metadata") or {}
            status = obj.get("status") or {}
            ready: dict[str, Any] = next(
                (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
            )
            uri = (meta.get("annotations") or {}).get(r.STORAGE_URI_ANNOTATION) or status.get("modelStorageUri") or ""
            name = str(meta.get("name"))
            out[name] = RevisionInfo(
                name, str(uri), str(ready.get("status") or ""), ready.get("reason"), ready.get("message")
            )
        return out

    @property
    def revision_uris(self) -> dict[str, str]:
        """storageUri per revision name: the model each revision actually serves."""
        return {name: info.storage_uri for name, info in self.revisions.items()}

    @property
    def failed_revisions(self) -> list[RevisionInfo]:
        """Revisions whose Ready condition is False, newest first."""
        return sorted((i for i in self.revisions.values() if i.failed), key=lambda i: -i.number)

    @property
    def live_percent(self) -> int | None:
        """The LATEST column: percent of traffic on the latest ready revision (Standard mode: the
        newest canary's configured ``trafficPercent``, what the slider sets)."""
        st = self.status
        if st is not None and st.standard:
            newest = st.newest_canary
            return None if newest is None else newest.percent
        return None if st is None else st.latest_percent

    # ------------------------------------------------------------------ what is possible now

    def traffic_blocker(self) -> str | None:
        """Why the slider cannot move now, or None."""
        st = self.status
        if st is None:
            return self._missing()
        if st.standard:
            if st.newest_canary is None:
                return f"{self.service.name} has no canary, so there is no split to move: deploy one first"
            return None
        if not st.latest_rolledout_revision or st.latest_percent is None:
            return f"{self.service.name} has no rolled-out revision yet, so there is no split to move"
        return None

    def promote_blocker(self) -> str | None:
        """Why Promote would do nothing (or be refused) now, or None when it would act."""
        st = self.status
        if st is None:
            return self._missing()
        if st.standard:
            newest = st.newest_canary
            if newest is None:
                return f"nothing to promote: {self.service.name} has no canary"
            if not newest.ready:
                return f"canary {newest.name} ({newest.deployment}) is not ready yet; wait, or roll it back"
            return None
        if not st.latest_ready_revision:
            return f"{self.service.name} has no ready revision to promote yet"
        if st.failure and st.latest_created_revision != st.latest_ready_revision:
            return (
                f"the latest revision {st.latest_created_revision} failed; deploy a fixed model or roll back"
            )
        if st.canary_traffic_percent is None and st.latest_percent == 100 and len(st.traffic) == 1:
            return f"nothing to promote: {st.latest_ready_revision} already serves 100%"
        return None

    def rollback_blocker(self) -> str | None:
        """Why Roll back would do nothing (or be refused) now, or None when it would act."""
        st = self.status
        if st is None:
            return self._missing()
        if st.standard:
            if not st.canaries:
                return (
                    f"nothing to roll back: {self.service.name} has no canary (after a promotion, deploy the "
                    "previous model as a new canary to go back)"
                )
            return None
        has_target = st.previous_rolledout_revision or (
            st.latest_rolledout_revision and st.latest_created_revision != st.latest_rolledout_revision
        )
        if not has_target:
            only = st.latest_rolledout_revision or "no revision"
            return f"nothing to roll back to: {self.service.name} has only ever rolled out {only}"
        if st.latest_percent == 0 and st.prev_percent == 100:
            return f"already rolled back: {st.prev_revision} serves 100%"
        return None

    def _missing(self) -> str:
        if self.exists is False:
            return f"{self.service.name} does not exist yet: deploy a model first"
        return f"the status of {self.service.name} is not known yet"

    # ------------------------------------------------------------------ staleness

    @property
    def plan_stale(self) -> str | None:
        """Why the dry-run plan no longer describes the service (changed elsewhere), or None."""
        plan, st = self.plan, self.status
        if plan is None or st is None or plan.before.generation == st.generation:
            return None
        return (
            f"planned against generation {plan.before.generation}; the service has changed since "
            f"(now {panel_split_text(st.split())}): preview again"
        )

    @property
    def comparison_stale(self) -> str | None:
        """Why the last comparison belongs to an earlier split, or None while it is current."""
        basis, st = self.comparison_basis, self.status
        if self.comparison is None or basis is None:
            return None
        if st is None:
            return f"sent at {basis.text}; the service is gone"
        if Basis.of(st).split == basis.split:
            return None
        return f"sent at an earlier split ({basis.text}); now {panel_split_text(st.split())}: send again"

    def _clear_plan(self) -> None:
        if self.plan is not None:
            self._set("plan", None)

    # ------------------------------------------------------------------ deploy

    def preview_deploy(self, storage_uri: str, percent: int, tag_routing: bool | None = None) -> Plan | None:
        """Dry run of :meth:`deploy`: the exact patch and the traffic it would settle into."""
        uri = (storage_uri or "").strip()
        refused = self._check_deploy_input("preview", uri, percent)
        if refused:
            self._clear_plan()
            return None
        plan = self._run("preview", lambda: self._deploy_call(uri, percent, tag_routing, dry_run=True),
                         f"{uri} with {percent}%")
        self._set("plan", plan)  # a failed preview clears the old plan: it answered another question
        if plan is not None:
            older = self._older_model(uri, plan)
            self._record("preview", plan.summary())
            note = f"; note: {older} (Deploy will ask)" if older else ""
            self._say("preview", "info" if older else "ok", f"plan ready below: {_split_after(plan)}{note}")
        return plan

    def deploy(self, storage_uri: str, percent: int, tag_routing: bool | None = None) -> Outcome:
        """Deploy ``storage_uri`` as a canary with ``percent`` (creates the service if needed).

        Asks first when the deploy would send traffic to an older model than the newest one serving
        (whatever the percent), and when ``percent`` is above ``config.confirm_above``.
        """
        uri = (storage_uri or "").strip()
        refused = self._check_deploy_input("deploy", uri, percent)
        if refused:
            return refused
        if self.exists is None:
            self.refresh()
        if self.exists is False:
            return self._deploy_now(uri, percent, tag_routing)
        plan = self._run("deploy", lambda: self._deploy_call(uri, percent, tag_routing, dry_run=True),
                         f"{uri} with {percent}%")
        if plan is None:
            self._clear_plan()
            return "failed"
        older = self._older_model(uri, plan)
        if older:
            return self._ask("deploy", f"{older}. Deploy {uri} with {percent}% anyway?",
                             storage_uri=uri, percent=percent, tag_routing=tag_routing)
        if percent > self.config.confirm_above:
            return self._ask("deploy", f"deploy {uri} with {percent}% of the traffic?",
                             storage_uri=uri, percent=percent, tag_routing=tag_routing)
        return self._deploy_now(uri, percent, tag_routing)

    def _check_deploy_input(self, action: str, uri: str, percent: Any) -> Outcome | None:
        if not uri:
            return self._refuse(action, "enter the storageUri of the model to deploy")
        if not isinstance(percent, int) or not 0 <= percent <= 100:
            return self._refuse(action, f"percent must be 0–100, got {percent!r}")
        return None

    def _deploy_call(self, uri: str, percent: int, tag_routing: bool | None, dry_run: bool) -> Any:
        # A panel opened before the service exists creates it; afterwards Deploy means "canary".
        if self.exists is None:
            self._read()
        # ``cancel``: stop() ends a release's wait instead of leaving its thread behind.
        if self.exists is False:
            return self.service.deploy(uri, tag_routing=tag_routing, dry_run=dry_run, cancel=self._cancel)
        return self.service.canary(uri, percent, tag_routing=tag_routing, dry_run=dry_run, cancel=self._cancel)

    def _older_model(self, uri: str, plan: Plan) -> str | None:
        """Why ``plan`` sends traffic to an older model than the newest serving one, or None."""
        serving = [rev for rev, pct in plan.before.split().items() if pct > 0]
        if not serving:
            return None
        newest = max(serving, key=r.revision_number)
        newest_uri = self.revision_uris.get(newest, "?")
        before, after = plan.before.split(), plan.after.split()
        for rev, pct in sorted(after.items(), key=lambda kv: -kv[1]):
            if pct > before.get(rev, 0) and r.revision_number(rev) < r.revision_number(newest):
                return (
                    f"this sends {pct}% to {rev} ({self.revision_uris.get(rev, '?')}), an older model than "
                    f"{newest} ({newest_uri}) which serves now"
                )
        if plan.new_revision and uri != newest_uri:
            for info in sorted(self.revisions.values(), key=lambda i: i.number):
                if info.number < r.revision_number(newest) and info.storage_uri == uri:
                    return f"{uri} is an older model: {info.name} served it before {newest} ({newest_uri})"
        return None

    def _deploy_now(self, uri: str, percent: int, tag_routing: bool | None) -> Outcome:
        release = self._run("deploy", lambda: self._deploy_call(uri, percent, tag_routing, dry_run=False),
                            f"{uri} with {percent}%")
        return self._applied("deploy", release)

    def _applied(self, action: str, release: Any) -> Outcome:
        # Whatever happened, the cluster may have moved: the plan's "before" is gone.
        self._clear_plan()
        if release is None:
            self.refresh()
            return "failed"
        self._record(action, release.summary())
        st = self.refresh() or release.status
        # "settled at", not "now": the line stays while later changes (polled) may move the split.
        self._say(action, "ok", f"{action} done in {release.seconds:.1f}s, settled at {panel_split_text(st.split())}")
        return "applied"

    # ------------------------------------------------------------------ traffic

    def request_traffic(self, percent: int) -> Outcome:
        """A slider release: apply ``percent`` now, refuse it, or ask for confirmation.

        Returns ``"applied"``, ``"needs_confirmation"`` (see :meth:`confirm`), ``"refused"`` (step
        larger than ``config.max_step``, out of range, or no split to move), ``"unchanged"`` or
        ``"failed"``.
        """
        if self.status is None:
            self.refresh()
        blocker = self.traffic_blocker()
        if blocker:
            return self._refuse("traffic", blocker)
        current = self.live_percent
        assert current is not None  # traffic_blocker checked it
        if not 0 <= percent <= 100:
            return self._refuse("traffic", f"percent must be 0–100, got {percent}")
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
        release = self._run("traffic", lambda: self.service.set_traffic(percent, cancel=self._cancel), f"to {percent}%")
        return self._applied("traffic", release)

    def _refuse(self, action: str, reason: str) -> Outcome:
        self._record(action, f"refused: {reason}", ok=False)
        self._set("error", f"{action} refused: {reason}")
        self._say(action, "refused", f"{action} refused: {reason}")
        return "refused"

    # ------------------------------------------------------------------ promote / rollback

    def promote(self) -> Outcome:
        """Ask to promote (Confirm sends 100% to the latest ready revision); refused if it would do nothing."""
        if self.status is None:
            self.refresh()
        blocker = self.promote_blocker()
        if blocker:
            return self._refuse("promote", blocker)
        st = self.status
        assert st is not None
        if st.standard and st.newest_canary is not None:
            c = st.newest_canary
            return self._ask(
                "promote",
                f"promote {self.service.name}: canary {c.name} ({c.storage_uri}) becomes the stable, 100% on "
                f"{c.deployment}?",
            )
        assert st.latest_ready_revision
        rev = st.latest_ready_revision
        uri = self.revision_uris.get(rev, "")
        return self._ask("promote", f"promote {self.service.name}: 100% to {rev} ({uri})?")

    def rollback(self) -> Outcome:
        """Ask to roll back (Confirm sends 100% to the previous revision); refused if it would do nothing."""
        if self.status is None:
            self.refresh()
        blocker = self.rollback_blocker()
        if blocker:
            return self._refuse("rollback", blocker)
        st = self.status
        assert st is not None
        if st.standard and st.stable is not None:
            names = ", ".join(c.name for c in st.canaries)
            return self._ask(
                "rollback",
                f"roll back {self.service.name}: remove canary {names}; 100% to the stable "
                f"{st.stable.deployment} ({st.stable.storage_uri})?",
            )
        rev = st.prev_revision or st.previous_rolledout_revision or st.latest_rolledout_revision or "?"
        uri = self.revision_uris.get(rev, "")
        return self._ask("rollback", f"roll back {self.service.name}: 100% to {rev} ({uri})?")

    # ------------------------------------------------------------------ confirmation

    def _ask(self, action: str, message: str, **kwargs: Any) -> Outcome:
        self._set("pending", Pending(action, message, kwargs))
        self._record(action, f"waiting for confirmation: {message}")
        self._say(action, "confirm", message)
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
            self._say(pending.action, "info", f"{pending.action} cancelled; nothing changed")

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
        """Send ``n`` rows of ``source`` and compare what answered; returns the Comparison.

        With tag routing the rows go to ``latest`` and to ``prev`` (paired); without it they sample
        the weighted ``default`` route, compared against the configured split. The result is in
        :attr:`comparison` (the raw rows in :attr:`results`), with the split it was made at in
        :attr:`comparison_basis`.
        """
        if n < 1:
            return self._refuse("send", f"send at least 1 row, got {n}")

        def call() -> tuple[Any, Basis | None, bool]:
            from kserve_nb.analysis import compare

            inputs = self._inputs(n, source)
            st = self._read()
            if st is None:
                raise ValidationError(f"{self.service.name} does not exist: deploy a model first")
            if (st.standard and st.newest_canary is not None and st.newest_canary.ready) or (
                st.tag_url("latest") and st.tag_url("prev")
            ):
                return self.service.compare(inputs), Basis.of(st), True
            results = self.service.send(inputs, to="default")
            return compare(results, configured_split=st.split()), Basis.of(st), False

        out = self._run("send", call, f"{n} rows of {source if isinstance(source, str) else 'the inputs'}")
        if out is None:
            return None
        comparison, basis, paired = out
        self._set("comparison_basis", basis)
        self._set("results", comparison.results)
        self._set("comparison", comparison)
        if paired:
            text = f"{n} rows to {comparison.candidate} and {comparison.baseline}: {_one_line(comparison)}"
        else:
            text = f"{n} rows to the weighted route at {basis.text if basis else '?'} (tag routing compares both sides)"
        self._record("send", text)
        self._say("send", "ok", text)
        return comparison

    # ------------------------------------------------------------------ background work

    def submit(self, method: str | Callable[..., Any], *args: Any) -> Future[Any]:
        """Run action ``method`` (a method name, or a callable) on the panel's worker thread.

        Actions run one at a time, in order. The returned Future resolves to the action's
        outcome; failures are in :attr:`error` and :attr:`notice`.
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
            except Exception as err:  # noqa: BLE001 - an action that escaped _run: still reported, never lost
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
            except Exception as err:  # noqa: BLE001 - keep polling: a blip of the API must not end the live view
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


def _split_after(plan: Plan) -> str:
    if plan.standard:
        made = f"new Deployment {', '.join(plan.new_deployments)}, " if plan.new_deployments else "no new Deployment, "
        return made + "traffic → " + panel_split_text(plan.after.split())
    rev = f"new revision {plan.new_revision}, " if plan.new_revision else "no new revision, "
    return rev + "traffic → " + panel_split_text(plan.after.split())


def _one_line(comparison: Any) -> str:
    """Agreement and recommendation of a Comparison, for the log."""
    parts = []
    rate = getattr(getattr(comparison, "agreement", None), "rate", None)
    if rate is not None:
        parts.append(f"agreement {rate:.1%}")
    try:
        parts.append(f"recommendation {comparison.verdict().recommendation}")
    except Exception:  # noqa: BLE001, S110 - the log line is only a summary; the full comparison is on the panel
        pass
    return "; ".join(parts) or "compared"


__all__ = [
    "AREAS", "Basis", "IRIS_COLUMNS", "IRIS_SOURCE", "LogEntry", "Notice", "Outcome", "PanelController",
    "Pending", "RevisionInfo", "panel_split_text",
]
