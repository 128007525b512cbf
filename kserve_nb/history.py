"""Release history recorded cluster-side, in a ConfigMap beside the InferenceService.

Not in the InferenceService's annotations: KServe copies those into the Knative revision template,
so writing history there would itself create a revision. One ConfigMap per service
(``{name}-kserve-nb-history``), one data key per entry, appended with optimistic concurrency so two
notebooks releasing at once never lose each other's entries.
"""

from __future__ import annotations

import getpass
import json
import socket
from datetime import datetime, timezone
from typing import Any, Mapping

import pandas as pd

from kserve_nb import errors
from kserve_nb import resources as r

MAX_ENTRIES = 500  # keeps the ConfigMap far below its 1 MiB limit

# The outcomes an entry records: the cluster settled as intended; the change was sent and not waited
# for; the step failed (its message in the entry's ``error``).
DONE, APPLIED, FAILED = "done", "applied", "failed"
# Words earlier entries (and other writers) used, in this vocabulary.
_OUTCOME_WORDS = {"ok": DONE, "succeeded": DONE, "success": DONE, "error": FAILED}
APPEND_RETRIES = 5
MANAGED_BY = {"app.kubernetes.io/managed-by": "kserve-nb"}


def configmap_name(isvc: str) -> str:
    """Name of the history ConfigMap of ``isvc``."""
    return f"{isvc}-kserve-nb-history"


def actor() -> str:
    """``user@host`` of whoever runs this kernel."""
    try:
        user = getpass.getuser()
    except Exception:  # pragma: no cover - no passwd entry in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def new_entry(action: str, context: str | None, **fields: Any) -> dict[str, Any]:
    """A history entry stamped with time, actor and kube context."""
    entry = {
        "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "action": action,
        "actor": actor(),
        "context": context or "",
    }
    entry.update({k: v for k, v in fields.items() if v is not None})
    return entry


class History:
    """Append and read release history of one InferenceService through a ``Cluster``."""

    def __init__(self, cluster: Any, name: str, namespace: str) -> None:
        self.cluster = cluster
        self.name = name
        self.namespace = namespace

    def append(self, entry: Mapping[str, Any]) -> None:
        """Append ``entry``; retries on a concurrent append instead of overwriting it."""
        cm_name = configmap_name(self.name)
        for _ in range(APPEND_RETRIES):
            current = self.cluster.get_configmap(cm_name, self.namespace)
            if current is None:
                body = {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": cm_name,
                        "namespace": self.namespace,
                        "labels": {**MANAGED_BY, r.ISVC_LABEL: self.name},
                    },
                    "data": {_key(1): json.dumps(dict(entry), sort_keys=True)},
                }
                try:
                    self.cluster.create_configmap(body, self.namespace)
                    return
                except errors.Conflict:
                    continue
            data = dict(current.get("data") or {})
            next_number = max((int(k) for k in data if k.isdigit()), default=0) + 1
            data[_key(next_number)] = json.dumps(dict(entry), sort_keys=True)
            for old in sorted(data)[:-MAX_ENTRIES]:
                del data[old]
            current["data"] = data
            try:
                self.cluster.replace_configmap(current, self.namespace)
                return
            except errors.Conflict:
                continue
        raise errors.Conflict(
            f"could not record history for {self.name}: the history ConfigMap kept changing; try again"
        )

    def entries(self) -> list[dict[str, Any]]:
        """All recorded entries, oldest first."""
        current = self.cluster.get_configmap(configmap_name(self.name), self.namespace)
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
