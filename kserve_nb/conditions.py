"""Knative-style status conditions, as KServe and Knative write them: pure helpers shared by the
Knative-mode (:mod:`kserve_nb.semantics`) and Standard-mode (:mod:`kserve_nb.semantics_standard`)
rules."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any


def make(
    ctype: str, status: str, reason: str | None = None, message: str | None = None,
    info: Collection[str] = (),
) -> dict[str, Any]:
    """One condition; types in ``info`` carry ``severity: Info`` (they never make Ready False)."""
    cond: dict[str, Any] = {"type": ctype, "status": status}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    if ctype in info:
        cond["severity"] = "Info"
    return cond


def combine(*conds: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    """Knative's living condition set: False beats Unknown beats True; the first unhappy one
    explains (its reason and message)."""
    for wanted in ("False", "Unknown"):
        for cond in conds:
            if cond["status"] == wanted:
                return wanted, cond.get("reason"), cond.get("message")
    return "True", None, None


def merge(old: Sequence[Mapping[str, Any]] | None, new: Sequence[Mapping[str, Any]], now: str) -> list[dict[str, Any]]:
    """``new`` with ``lastTransitionTime`` kept from ``old`` where a condition's status did not
    change (``now`` where it did), sorted by type as Knative keeps them."""
    previous = {c.get("type"): c for c in old or []}
    merged = []
    for cond in new:
        out = dict(cond)
        before = previous.get(out["type"])
        if before is not None and before.get("status") == out["status"] and before.get("lastTransitionTime"):
            out["lastTransitionTime"] = before["lastTransitionTime"]
        else:
            out["lastTransitionTime"] = now
        merged.append(out)
    return sorted(merged, key=lambda c: str(c["type"]))
