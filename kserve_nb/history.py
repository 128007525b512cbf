"""Release history recorded cluster-side, in a ConfigMap beside the InferenceService.

Not in the InferenceService's annotations: KServe copies those into the Knative revision template,
so writing history there would itself create a revision. One ConfigMap per service
(``{name}-kserve-nb-history``), one data key per entry, appended with optimistic concurrency so two
notebooks releasing at once never lose each other's entries.
"""

from __future__ import annotations

import getpass
import json
import random
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd

from kserve_nb import errors
from kserve_nb import resources as r

MAX_ENTRIES = 500  # keeps the ConfigMap far below its 1 MiB limit

# The outcomes an entry records: the cluster settled as intended; the change was sent and not waited
# for; the step failed (its message in the entry's ``error``).
DONE, APPLIED, FAILED = "done", "applied", "failed"
# Words earlier entries (and other writers) used, in this vocabulary.
_OUTCOME_WORDS = {"ok": DONE, "succeeded": DONE, "success": DONE, "error": FAILED}
#: The outcome of an entry whose step was sent but has not recorded how it ended (yet, or ever:
#: its kernel or the control plane died in between).
PENDING = "pending"
#: How long a history write keeps retrying conflicts and an unreachable API before it gives up.
WRITE_DEADLINE_SECONDS = 30.0
BACKOFF_FIRST_SECONDS = 0.02
BACKOFF_MAX_SECONDS = 1.0
MANAGED_BY = {"app.kubernetes.io/managed-by": "kserve-nb"}


def history_configmap_name(isvc: str) -> str:
    """Name of the history ConfigMap of ``isvc``."""
    return f"{isvc}-kserve-nb-history"


def actor() -> str:
    """``user@host`` of whoever runs this kernel."""
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers  # pragma: no cover
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def new_entry(action: str, context: str | None, **fields: Any) -> dict[str, Any]:
    """A history entry stamped with time, actor and kube context."""
    entry = {
        "time": r.now_rfc3339(),
        "action": action,
        "actor": actor(),
        "context": context or "",
    }
    entry.update({k: v for k, v in fields.items() if v is not None})
    return entry


class HistoryWarning(UserWarning):
    """A release step went ahead but could not be recorded in the release history."""


class History:
    """Append and read release history of one InferenceService through a ``Cluster``."""

    def __init__(self, cluster: Any, name: str, namespace: str) -> None:
        self.cluster = cluster
        self.name = name
        self.namespace = namespace

    def append(self, entry: Mapping[str, Any]) -> str:
        """Append ``entry`` and return its key (for :meth:`update`).

        Optimistic concurrency: a concurrent writer makes the replace conflict, and the append is
        retried on the fresh ConfigMap after a jittered back-off (so two writers stop colliding)
        until :data:`WRITE_DEADLINE_SECONDS`; then it raises rather than losing the entry silently.
        """
        return self._write(lambda data: self._append_to(data, entry))

    def update(self, key: str, fields: Mapping[str, Any]) -> str:
        """Merge ``fields`` into the entry at ``key`` (appending it anew if it is gone); returns its key.

        A release step records its intent (``outcome: pending``) before it changes anything and
        its outcome here afterwards, so a step cut short (the kernel or the control plane died)
        still shows what was sent.
        """
        def merge(data: dict[str, str]) -> str:
            try:
                entry = json.loads(data[key])
            except (KeyError, ValueError):  # trimmed or hand-edited meanwhile
                entry = None
            if not isinstance(entry, dict):
                return self._append_to(data, dict(fields))
            entry.update({k: v for k, v in fields.items() if v is not None})
            data[key] = json.dumps(entry, sort_keys=True)
            return key

        return self._write(merge)

    def _append_to(self, data: dict[str, str], entry: Mapping[str, Any]) -> str:
        key = _key(max((int(k) for k in data if k.isdigit()), default=0) + 1)
        data[key] = json.dumps(dict(entry), sort_keys=True)
        for old in sorted(data)[:-MAX_ENTRIES]:
            del data[old]
        return key

    def _write(self, change: Callable[[dict[str, str]], str]) -> str:
        """Apply ``change`` to the ConfigMap's data (creating it if missing), retrying on conflicts
        and on an unreachable API (a restarting control plane) with jittered back-off."""
        cm_name = history_configmap_name(self.name)
        deadline = time.monotonic() + WRITE_DEADLINE_SECONDS
        delay = BACKOFF_FIRST_SECONDS
        attempts = 0
        while True:
            attempts += 1
            try:
                current = self.cluster.get_configmap(cm_name, self.namespace)
                data = dict((current or {}).get("data") or {})
                key = change(data)
                if current is None:
                    self.cluster.create_configmap(self._new_configmap(cm_name, data), self.namespace)
                else:
                    current["data"] = data
                    self.cluster.replace_configmap(current, self.namespace)
                return key
            except (errors.Conflict, errors.ConnectionFailed) as err:
                last = err
            # Full jitter: two writers that collided pick different moments to try again.
            pause = random.uniform(0, delay)  # noqa: S311 - timing, not security
            if time.monotonic() + pause > deadline:
                raise errors.Conflict(
                    f"could not record history for {self.name} in ConfigMap {cm_name} after {attempts} "
                    f"attempts in {WRITE_DEADLINE_SECONDS:.0f}s ({last}); check that the cluster answers and "
                    "that you may write ConfigMaps in this namespace",
                    status=getattr(last, "status", None),
                ) from last
            time.sleep(pause)
            delay = min(delay * 2, BACKOFF_MAX_SECONDS)

    def _new_configmap(self, cm_name: str, data: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": cm_name,
                "namespace": self.namespace,
                "labels": {**MANAGED_BY, r.ISVC_LABEL: self.name},
            },
            "data": data,
        }

    def entries(self) -> list[dict[str, Any]]:
        """All recorded entries, oldest first."""
        current = self.cluster.get_configmap(history_configmap_name(self.name), self.namespace)
        if current is None:
            return []
        data = current.get("data") or {}
        out = []
        for key in sorted(data):
            try:
                out.append(json.loads(data[key]))
            except ValueError:
                continue  # a hand-edited entry must not break reading the rest
        return out

    def frame(self) -> pd.DataFrame:
        """Entries as a table, oldest first (time, action, outcome, storageUri, percent, split, …).

        Shown whole (no cut URIs), with blanks for fields an entry does not have (never NaN), whole
        numbers as integers and outcomes in one vocabulary: done, applied or failed (+ error).
        """
        from kserve_nb.table import Table

        rows = [_readable(e) for e in self.entries()]
        columns = ["time", "action", "outcome", "storageUri", "percent", "split", "error", "actor", "context"]
        present = {k for row in rows for k in row}
        ordered = [c for c in columns if c in present or c in columns[:6]]
        ordered += sorted(present - set(ordered))
        return Table([{c: row.get(c, "") for c in ordered} for row in rows], columns=ordered, dtype=object)


def _key(n: int) -> str:
    return f"{n:06d}"


def _readable(entry: Mapping[str, Any]) -> dict[str, Any]:
    """One entry for display: outcome in the vocabulary, ``failed: why`` split into outcome and error."""
    out = {k: ("" if v is None else v) for k, v in entry.items()}
    outcome = str(out.get("outcome", ""))
    word, _, why = outcome.partition(":")
    word = word.strip().lower()
    if word in (FAILED, "error") and why and not out.get("error"):
        out["error"] = why.strip()
    if outcome:
        out["outcome"] = _OUTCOME_WORDS.get(word, word)
    percent = out.get("percent")
    if isinstance(percent, float) and percent.is_integer():
        out["percent"] = int(percent)
    return out
