"""core/v1 Events as client-go's ``EventRecorder`` writes them (KServe's controller records through one).

An event names the object it is about (``involvedObject``), its ``type`` (Normal/Warning), a
``reason`` and a ``message``, and the reporting component (KServe's manager records as
``v1beta1Controllers``). Like client-go's ``EventCorrelator``, a repeat of the same event (same
source, object, type, reason and message) updates the first one's ``count`` and ``lastTimestamp``
instead of adding another; like the API server (``--event-ttl``), events expire after an hour.
``kubectl get events`` and the Events section of ``kubectl describe`` read them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from kserve_nb import resources as r
from kserve_nb.local import store as st
from kserve_nb.resources import parse_time

#: The component KServe's InferenceService controller records events as (cmd/manager/main.go).
KSERVE_COMPONENT = "v1beta1Controllers"
#: The API server's default ``--event-ttl``.
EVENT_TTL_SECONDS = 3600.0
#: How often expired events are looked for (a sweep lists the events of every namespace).
SWEEP_PERIOD_SECONDS = 60.0
#: Repeats remembered for aggregation (client-go keeps an LRU cache of 4096).
CACHE_SIZE = 4096


class EventRecorder:
    """Records events into the store on behalf of one component. Not thread-safe (event-loop use)."""

    def __init__(self, store: st.Store, component: str = KSERVE_COMPONENT,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.component = component
        self._clock = clock
        self._seen: OrderedDict[tuple[str, ...], tuple[str, str]] = OrderedDict()  # key -> (namespace, name)
        self._last_sweep = 0.0
        self._last_ns = 0

    def record(self, obj: Mapping[str, Any], etype: str, reason: str, message: str) -> dict[str, Any]:
        """Record an event about ``obj`` (a stored object); returns the stored event."""
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        involved = {
            "kind": obj.get("kind", ""),
            "namespace": namespace,
            "name": meta.get("name", ""),
            "uid": meta.get("uid", ""),
            "apiVersion": obj.get("apiVersion", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        now = r.now_rfc3339()
        self._sweep()
        key = (self.component, involved["kind"], namespace, involved["name"], involved["uid"],
               involved["apiVersion"], etype, reason, message)
        known = self._seen.get(key)
        if known is not None:
            existing = self.store.get(st.EVENTS, *known)
            if existing is not None:
                self._seen.move_to_end(key)
                updated = {**existing, "count": int(existing.get("count") or 1) + 1, "lastTimestamp": now}
                return self.store.update(st.EVENTS, updated, check_rv=False)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{involved['name']}.{self._unique_ns():x}", "namespace": namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "source": {"component": self.component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": etype,
            "eventTime": None,
            "reportingComponent": self.component,
            "reportingInstance": "",
        }
        created = self.store.create(st.EVENTS, event)
        self._seen[key] = (namespace, created["metadata"]["name"])
        while len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)
        return created

    def _unique_ns(self) -> int:
        # client-go names an event "<object>.<UnixNano in hex>"; two in one nanosecond must differ.
        stamp = max(int(self._clock() * 1e9), self._last_ns + 1)
        self._last_ns = stamp
        return stamp

    def _sweep(self) -> None:
        now = self._clock()
        if now - self._last_sweep < SWEEP_PERIOD_SECONDS:
            return
        self._last_sweep = now
        items, _ = self.store.list(st.EVENTS)
        for event in items:
            last = parse_time(event.get("lastTimestamp") or event.get("firstTimestamp"))
            if last is not None and now - last.timestamp() > EVENT_TTL_SECONDS:
                try:
                    self.store.delete(st.EVENTS, event["metadata"].get("namespace"), event["metadata"]["name"])
                except st.StoreNotFound:
                    pass
