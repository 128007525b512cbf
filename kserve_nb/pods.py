"""A pod's READY, STATUS and RESTARTS the way ``kubectl get pod`` prints them.

One implementation of kubectl's ``printPod`` rules (``pkg/printers/internalversion``), used by the
client's pod rows (``Session.pods``) and by the local API server's Table output, so both say
``Running``, ``ContainerCreating``, ``CrashLoopBackOff``, ``Init:0/1``, ``Terminating``, ``Completed``
or ``Error`` for the same pod. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kserve_nb import resources as r


@dataclass(frozen=True)
class PodState:
    """The printed state of one pod."""

    ready: int
    #: Containers counted in READY's denominator: the app containers plus restartable (sidecar) init containers.
    total: int
    #: kubectl's STATUS column.
    status: str
    restarts: int
    #: When a container last ended before a restart (RESTARTS' "(2m ago)"), if known.
    last_restart: datetime | None

    @property
    def ready_text(self) -> str:
        """READY as kubectl prints it: ``1/2``."""
        return f"{self.ready}/{self.total}"

    def restarts_text(self, now: datetime) -> str:
        """RESTARTS as kubectl prints it: ``4 (2m ago)``, or ``0``."""
        if self.restarts != 0 and self.last_restart is not None:
            return f"{self.restarts} ({r.human_duration((now - self.last_restart).total_seconds())} ago)"
        return str(self.restarts)


def _is_restartable_init(container: Mapping[str, Any] | None) -> bool:
    return container is not None and container.get("restartPolicy") == "Always"


def _later(current: datetime | None, value: Any) -> datetime | None:
    when = r.parse_time(value)
    if when is None:
        return current
    return when if current is None or when > current else current


def pod_state(pod: Mapping[str, Any]) -> PodState:
    """READY, STATUS and RESTARTS of a pod dict (camelCase, as the API serves it)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    total = len(spec.get("containers") or []) + sum(1 for c in init_specs.values() if _is_restartable_init(c))
    ready = 0
    restarts = 0
    last_restart: datetime | None = None
    phase = status.get("phase") or ""
    reason = status.get("reason") or phase
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    init_statuses = status.get("initContainerStatuses") or []
    restartable_restarts = 0
    restartable_last: datetime | None = None
    initializing = False
    for index, cs in enumerate(init_statuses):
        restarts += int(cs.get("restartCount") or 0)
        last_term = (cs.get("lastState") or {}).get("terminated")
        if last_term:
            last_restart = _later(last_restart, last_term.get("finishedAt"))
        restartable = _is_restartable_init(init_specs.get(cs.get("name")))
        if restartable:
            restartable_restarts += int(cs.get("restartCount") or 0)
            if last_term:
                restartable_last = _later(restartable_last, last_term.get("finishedAt"))
        state = cs.get("state") or {}
        terminated = state.get("terminated")
        waiting = state.get("waiting")
        if terminated and int(terminated.get("exitCode") or 0) == 0:
            continue
        if restartable and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if terminated:
            if terminated.get("reason"):
                reason = "Init:" + terminated["reason"]
            elif terminated.get("signal"):
                reason = f"Init:Signal:{terminated['signal']}"
            else:
                reason = f"Init:ExitCode:{terminated.get('exitCode', 0)}"
        elif waiting and waiting.get("reason") and waiting.get("reason") != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{index}/{len(init_specs)}"
        initializing = True
        break

    initialized = any(
        c.get("type") == "Initialized" and c.get("status") == "True" for c in status.get("conditions") or []
    )
    if not initializing or initialized:
        restarts = restartable_restarts
        last_restart = restartable_last
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            restarts += int(cs.get("restartCount") or 0)
            last_term = (cs.get("lastState") or {}).get("terminated")
            if last_term:
                last_restart = _later(last_restart, last_term.get("finishedAt"))
            state = cs.get("state") or {}
            waiting, terminated = state.get("waiting"), state.get("terminated")
            if waiting and waiting.get("reason"):
                reason = waiting["reason"]
            elif terminated and terminated.get("reason"):
                reason = terminated["reason"]
            elif terminated:
                reason = (
                    f"Signal:{terminated['signal']}"
                    if terminated.get("signal")
                    else f"ExitCode:{terminated.get('exitCode', 0)}"
                )
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(
                c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
            )
            reason = "Running" if pod_ready else "NotReady"

    if meta.get("deletionTimestamp") and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif meta.get("deletionTimestamp") and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return PodState(ready, total, str(reason), restarts, last_restart)


#: Columns of :func:`pod_row`: ``kubectl get pod``'s plus the Knative revision.
POD_COLUMNS = ("NAME", "READY", "STATUS", "RESTARTS", "AGE", "REVISION")


def pod_row(pod: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """One row of :data:`POD_COLUMNS` for a pod dict (RESTARTS as a number, for a DataFrame)."""
    meta = pod.get("metadata") or {}
    state = pod_state(pod)
    return {
        "NAME": meta.get("name", ""),
        "READY": state.ready_text,
        "STATUS": state.status,
        "RESTARTS": state.restarts,
        "AGE": r.age(meta.get("creationTimestamp"), now),
        "REVISION": (meta.get("labels") or {}).get(r.REVISION_LABEL, ""),
    }
