"""The release engine every release step runs through, in both KServe modes.

A step (:class:`Step`) says how it patches and what state it waits for; :class:`Engine` does the
rest the same way for every step: read the live object, build the patch, return a dry-run
:class:`~kserve_nb.plan.Plan` or send the patch guarded by the object's ``resourceVersion``
(retried after a conflict only when the concurrent change left what the step touches alone),
record it in the release history, wait with a deadline, a cancel event and a progress line until
the cluster reports the intended state, and explain a failure instead of waiting it out.

The engine takes what it needs explicitly (the cluster, the service's name and namespace, a status
reader, the mode's checks); :class:`~kserve_nb.service.Service` builds one per operation.
"""

from __future__ import annotations

import html
import logging
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kserve_nb import errors
from kserve_nb import semantics_standard as std
from kserve_nb.history import APPLIED, DONE, FAILED, PENDING, History, HistoryWarning, new_entry
from kserve_nb.plan import Plan, plan
from kserve_nb.progress import Progress
from kserve_nb.splits import split_text
from kserve_nb.status import ServiceStatus

if TYPE_CHECKING:  # pragma: no cover
    from kserve_nb.cluster import Cluster

CONFLICT_RETRIES = 3
#: Seconds an InvalidSpec model status must persist before a wait gives up on it.
SPEC_FAILURE_GRACE_SECONDS = 2.0

#: ``settled(status, new_revision)``: whether the cluster reports the state a step asked for.
Settled = Callable[[ServiceStatus, "str | None"], bool]


@dataclass(frozen=True)
class Release:
    """The outcome of a release operation: what was sent and the status it settled into."""

    action: str
    service: str
    namespace: str
    patch: dict[str, Any]
    status: ServiceStatus
    new_revision: str | None = None
    seconds: float = 0.0
    waited: bool = True
    #: Where it happened, e.g. ``local cluster · context kserve-nb-local`` (see ``Session.where``).
    where: str = ""
    #: Standard mode: the canary the step acted on (None: every canary, e.g. a rollback, or Knative mode).
    canary: str | None = None

    def summary(self) -> str:
        """One line describing the outcome."""
        rev = f" (new revision {self.new_revision})" if self.new_revision else ""
        if self.canary:
            rev = f" (canary {self.canary}: Deployment {std.predictor_service_name(self.service, self.canary)})"
        state = "applied" if not self.waited else f"done in {self.seconds:.1f}s"
        return f"{self.action} {self.namespace}/{self.service}{rev} {state}: {self.status.summary()}"

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return f"<Release {self.summary()}>"

    def _repr_html_(self) -> str:
        # One headline (what, where, how long), then the settled state as the status shows it below
        # its own headline: the split is told once, by the bar and the tables.
        rev = f" → new revision <code>{html.escape(self.new_revision)}</code>" if self.new_revision else ""
        if self.canary:
            deployment = std.predictor_service_name(self.service, self.canary)
            rev = (
                f" → canary <code>{html.escape(self.canary)}</code> "
                f"(Deployment <code>{html.escape(deployment)}</code>)"
            )
        state = "applied, not waited for" if not self.waited else f"done in {self.seconds:.1f}s"
        where = f' <span style="opacity:0.7">· {html.escape(self.where)}</span>' if self.where else ""
        return (
            f'<div class="kserve-nb-release"><b>{html.escape(self.action)} '
            f"{html.escape(self.namespace)}/{html.escape(self.service)}</b>{rev}: {state}{where}"
            f"{self.status.details_html()}</div>"
        )


@dataclass
class Step:
    """How one release operation patches and what state it waits for."""

    action: str
    patch: Callable[[Mapping[str, Any]], dict[str, Any]]
    settled: Settled
    touches: tuple[str, ...] = ()
    fields: dict[str, Any] = field(default_factory=dict)
    #: Standard mode: the canary this step adds or moves (its failure fails the wait), if any.
    canary: str | None = None
    #: A Standard-mode step (``spec.canary[]``); every other step writes ``canaryTrafficPercent``.
    standard: bool = False


def safe_to_retry(old: Mapping[str, Any], new: Mapping[str, Any], step: Step) -> bool:
    """Whether ``step`` may be sent again on ``new`` after a conflict on ``old``."""
    # Retrying is safe only if the concurrent change left what this step reads and writes alone;
    # otherwise we would silently overwrite someone else's release decision.
    def pick(obj: Mapping[str, Any], path: str) -> Any:
        cur: Any = obj
        for part in path.split("."):
            cur = cur.get(part) if isinstance(cur, Mapping) else None
        return cur

    watched = step.touches + ("metadata.annotations",)
    return all(pick(old, p) == pick(new, p) for p in watched)


@dataclass
class Engine:
    """Runs release steps on one InferenceService; built per operation from the live session."""

    cluster: Cluster
    name: str
    namespace: str
    #: The kube context recorded with each history entry.
    context: str | None
    #: Where a change lands (``Release.where``).
    where: str
    #: The service's status from a live object (Standard mode reads the HTTPRoute too).
    status_of: Callable[[Mapping[str, Any]], ServiceStatus]
    #: Refuses a Knative-mode step on a service whose mode ignores it (raises ValidationError).
    check_mode: Callable[[ServiceStatus], None]
    #: Standard mode's failure explanation for the wait (the canary a step moves, or None).
    side_failure: Callable[[ServiceStatus, str | None], str | None]
    wait_timeout: float
    poll_interval: float

    def get(self) -> dict[str, Any]:
        return self.cluster.get_isvc(self.name, self.namespace)

    def status(self) -> ServiceStatus:
        return self.status_of(self.get())

    def run(
        self, step: Step, dry_run: bool, wait: bool, timeout: float | None, cancel: threading.Event | None = None
    ) -> Release | Plan:
        """Plan, send, record and wait for ``step`` (see the module docstring)."""
        started = time.monotonic()
        isvc = self.get()
        if not step.standard:
            self.check_mode(ServiceStatus.from_isvc(isvc))
        # The intent is recorded before the patch and settled after it: a step cut short (kernel or
        # control plane gone) still shows in the history as sent, with its outcome ``pending``.
        intent: str | None = None
        recorded = False
        try:
            for attempt in range(CONFLICT_RETRIES):
                body = step.patch(isvc)
                preview = plan(step.action, isvc, body, before=self.status_of(isvc))
                if dry_run:
                    return preview
                if not recorded:
                    before_text = preview.before.summary()
                    intent = self.record(new_entry(step.action, self.context, outcome=PENDING,
                                                   **step.fields, before=before_text))
                    recorded = True
                guard = {"resourceVersion": isvc["metadata"]["resourceVersion"]}
                guarded = {**body, "metadata": {**body.get("metadata", {}), **guard}}
                try:
                    self.cluster.patch_isvc(self.name, self.namespace, guarded)
                    break
                except errors.Conflict as err:
                    fresh = self.get()
                    if not safe_to_retry(isvc, fresh, step) or attempt == CONFLICT_RETRIES - 1:
                        raise errors.Conflict(
                            f"{self.name} was changed by someone else while you were releasing "
                            f"(now: {ServiceStatus.from_isvc(fresh).summary()}); nothing was applied — "
                            "look at the new status and run the step again",
                            status=409,
                        ) from err
                    isvc = fresh
        except errors.KServeNbError as err:
            if recorded:
                self.settle(intent, new_entry(step.action, self.context, outcome=FAILED, error=str(err),
                                              **step.fields))
            raise
        before = preview.before
        entry_fields = {**step.fields, "before": before.summary()}
        try:
            final = (
                self.wait(step.action, step.settled, preview.new_revision, timeout, cancel, before, canary=step.canary)
                if wait
                else self.status()
            )
        except errors.KServeNbError as err:
            failed = new_entry(step.action, self.context, outcome=FAILED, error=str(err), **entry_fields)
            self.settle(intent, failed)
            raise
        self.settle(
            intent,
            new_entry(
                step.action, self.context,
                outcome=DONE if wait else APPLIED,
                split=split_of(final),
                **entry_fields,
            ),
        )
        return Release(step.action, self.name, self.namespace, body, final, preview.new_revision,
                       time.monotonic() - started, wait, self.where, canary=step.canary)

    def wait(
        self,
        action: str,
        settled: Settled,
        new_revision: str | None,
        timeout: float | None,
        cancel: threading.Event | None = None,
        before: ServiceStatus | None = None,
        *,
        canary: str | None = None,
    ) -> ServiceStatus:
        """Poll until ``settled``; raise RolloutError on a failure, the deadline or ``cancel``."""
        limit = timeout if timeout is not None else self.wait_timeout
        cancel = cancel or threading.Event()
        deadline = time.monotonic() + limit
        progress = Progress(f"{action} {self.namespace}/{self.name}")
        st = self.status()
        invalid_since: float | None = None
        while True:
            if settled(st, new_revision):
                # The outcome's headline is the returned Release; this line only closes the wait.
                progress.done(f"settled on {split_of(st)}")
                return st
            failure = self.failure(st, new_revision, before, canary=canary)
            # KServe reports a spec it cannot serve (no such runtime) only in modelStatus, and Ready
            # never turns False: without this the wait would run to its deadline. It must persist
            # for a moment, since the status read right after a patch may still be the old one's.
            invalid_since = (invalid_since or time.monotonic()) if st.spec_failure else None
            persisted = invalid_since is not None and time.monotonic() - invalid_since >= SPEC_FAILURE_GRACE_SECONDS
            if not failure and persisted:
                failure = (
                    f"KServe cannot serve {self.name} as specified ({st.spec_failure}); "
                    "fix the runtime or the model format"
                )
            if failure:
                progress.done(failure, ok=False)
                raise errors.RolloutError(failure)
            if time.monotonic() > deadline:
                msg = (
                    f"{action} of {self.name} did not settle within {limit:.0f}s; now: {st.summary()}. "
                    f"The cluster keeps trying: check `%kserve status {self.name}` and `%kserve pods`"
                )
                progress.done(msg, ok=False)
                raise errors.RolloutError(msg)
            progress.update(waiting_text(st, new_revision, canary))
            if cancel.wait(self.poll_interval):
                msg = (
                    f"stopped waiting for {action} of {self.name}; the change is applied and the cluster "
                    f"keeps converging (now: {st.summary()})"
                )
                progress.done(msg, ok=None)
                raise errors.RolloutError(msg)
            st = self.status()

    def failure(
        self,
        st: ServiceStatus,
        new_revision: str | None,
        before: ServiceStatus | None = None,
        *,
        canary: str | None = None,
    ) -> str | None:
        """Why the step can no longer settle, in one sentence, or None while it still can."""
        predictor_ready = st.condition("PredictorReady")
        if predictor_ready is not None and predictor_ready.reason == "ReconcileFailed":
            return f"the cluster rejected the change to {self.name}: {predictor_ready.message}"
        if st.standard:
            return self.side_failure(st, canary)
        # Only the revision this step created can fail it: a rollback or a traffic change must
        # still go through while an older canary revision is failed.
        if st.failure and new_revision is not None and st.latest_created_revision == new_revision:
            # Say where traffic settled, not where we hoped: the canary percent applies to the
            # latest *ready* revision, so a failed canary can still move traffic (e.g. 0% → 10%).
            def split(s: ServiceStatus) -> str:  # per revision: two tags on one revision are one share
                return split_text(s.split(), empty="nothing")

            moved = before is not None and before.split() != st.split()
            where = f"traffic moved from {split(before)} to {split(st)}" if moved and before else ""
            where = where or f"traffic stays on {split(st)}"
            return (
                f"{st.latest_created_revision} failed: {st.failure} — it serves nothing; {where}; "
                f"fix the model and run the canary again, or roll back"
            )
        return None

    # ------------------------------------------------------------------ history

    def record(self, entry: Mapping[str, Any]) -> str | None:
        """Append ``entry`` to the history; its key, or None (with a warning) if it could not be."""
        try:
            return History(self.cluster, self.name, self.namespace).append(entry)
        except errors.KServeNbError as err:
            self._history_failed(entry, err)
            return None

    def settle(self, intent: str | None, outcome: Mapping[str, Any]) -> None:
        """Complete the intent entry ``intent`` with how the step ended (it keeps its start time)."""
        if intent is None:  # the intent could not be written (and said so): record the outcome alone
            self.record(outcome)
            return
        try:
            History(self.cluster, self.name, self.namespace).update(
                intent, {k: v for k, v in outcome.items() if k != "time"})
        except errors.KServeNbError as err:
            self._history_failed(outcome, err)

    def _history_failed(self, entry: Mapping[str, Any], err: errors.KServeNbError) -> None:
        # History is evidence, not the release itself: the release goes on, but the user is told
        # (a warning shows in the notebook; the log keeps it too).
        message = f"{entry.get('action', 'the step')} of {self.name} is missing from its release history: {err}"
        logging.getLogger(__name__).warning("%s", message)
        warnings.warn(message, HistoryWarning, stacklevel=5)  # past the engine, to the Service method


def split_of(st: ServiceStatus) -> str:
    """The status's traffic block as one line (``rev-1 90% · rev-2 10%``), for history and progress."""
    return split_text(((e.revision, e.percent) for e in st.traffic), empty="no traffic yet")


def waiting_text(st: ServiceStatus, new_revision: str | None, canary: str | None = None) -> str:
    """The progress line while a wait goes on: what it waits for, READY and the traffic."""
    if st.standard:
        side = st.side(canary) if canary else None
        wait = f"waiting for canary {canary} to be ready; " if side is not None and not side.ready else ""
        return f"{wait}READY {st.ready_status}; traffic {st._standard_split_text()}"
    rev = f"waiting for {new_revision} " if new_revision and st.latest_ready_revision != new_revision else ""
    return f"{rev}READY {st.ready_status}; traffic {split_of(st)}"
