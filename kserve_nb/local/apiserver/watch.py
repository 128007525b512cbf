"""Watch streams: store events as Kubernetes watch events (JSON lines or Tables), with bookmarks."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any, Protocol, cast

import orjson
from aiohttp import web

from kserve_nb.local import tables
from kserve_nb.local.apiserver.codec import JSON, negotiate
from kserve_nb.local.apiserver.failures import ApiError, bad_request, too_large_resource_version
from kserve_nb.local.apiserver.requests import ResourcePath, parse_go_duration, query_flag
from kserve_nb.local.apiserver.selectors import Selection
from kserve_nb.local.store import Store, StoreGone, WatchEvent

log = logging.getLogger(__name__)

DEFAULT_WATCH_TIMEOUT = 1800.0
_UINT64_MAX = 2**64 - 1
BOOKMARK_INTERVAL = 60.0


class Subscription(Protocol):
    """A store subscription (``Store.subscribe``): its queue receives every matching event."""

    @property
    def queue(self) -> asyncio.Queue[WatchEvent]: ...


class OpenWatches:
    """The watches an API server has open, so that stopping it ends them without waiting for clients."""

    def __init__(self) -> None:
        self._subscriptions: dict[int, Subscription] = {}
        self.closing = False

    def __len__(self) -> int:
        return len(self._subscriptions)

    def add(self, sub: Subscription) -> None:
        """Register the subscription of a watch that started."""
        self._subscriptions[id(sub)] = sub

    def discard(self, sub: Subscription) -> None:
        """Forget the subscription of a watch that ended."""
        self._subscriptions.pop(id(sub), None)

    def close(self) -> None:
        """End every open watch now; a watch that starts later ends after its initial events."""
        self.closing = True
        for sub in list(self._subscriptions.values()):
            # None is the end-of-stream sentinel each stream's queue reader understands.
            cast("asyncio.Queue[WatchEvent | None]", sub.queue).put_nowait(None)


class WatchStream:
    """One watch request: initial state or resumption, then live events until timeout/disconnect.

    ``selection`` is the request's label and field selector; ``watches`` the server's register of
    open watches, which ends this one when the server stops.
    """

    def __init__(
        self, store: Store, watches: OpenWatches, request: web.Request, resource: ResourcePath, selection: Selection
    ) -> None:
        self.store = store
        self.watches = watches
        self.request = request
        self.resource = resource
        self.rt = resource.rt
        self.namespace = resource.namespace if resource.rt.namespaced else None
        params = request.query
        self.selection = selection
        self.form = negotiate(request.headers.get("Accept"))
        self.include = params.get("includeObject") or "Metadata"
        self.bookmarks = query_flag(params, "allowWatchBookmarks")
        self.send_initial = query_flag(params, "sendInitialEvents")
        self.rv_param = params.get("resourceVersion", "")
        self.timeout = _watch_timeout(params)
        self.headers_sent = False
        self.visible: set[tuple[str, str]] = set()  # objects this watcher has seen as selected
        self.last_rv = 0

    async def run(self) -> web.StreamResponse:
        """Serve the watch; returns when it times out, the client leaves or the server stops."""
        # sendInitialEvents (streaming list) always starts from the current state, like rv "" or "0".
        if self.rv_param not in ("", "0") and not self.send_initial:
            start_rv = _resource_version(self.rv_param)
            current = self.store.resource_version
            if start_rv > current:
                # Nothing would ever be delivered before the store reached it (never, past int64).
                raise too_large_resource_version(start_rv, current)
        else:
            start_rv = None
        sub = self.store.subscribe(self.rt, self.namespace)
        self.watches.add(sub)
        response: web.StreamResponse | None = None
        try:
            # No await between subscribing and reading the backlog: nothing can slip in between.
            backlog, gone = self._backlog(start_rv)
            response = web.StreamResponse(status=200)
            response.headers["Content-Type"] = self.form.content_type if self.form.form == "table" else JSON
            response.headers["Cache-Control"] = "no-cache, private"
            response.enable_chunked_encoding()
            await response.prepare(self.request)
            if gone is not None:
                await self._send(response, {"type": "ERROR", "object": gone.status()})
                return await self._finish(response)
            for etype, obj in backlog:
                await self._send_object(response, etype, obj)
            if start_rv is None and self.send_initial and self.bookmarks:
                await self._send_bookmark(response, initial_end=True)
            await self._follow(response, sub)
            return await self._finish(response)
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception as exc:  # the status line is sent: end with an ERROR event
            if response is None or not response.prepared:
                raise
            if not isinstance(exc, ApiError):
                log.exception("watch of %s failed", self.request.path)
                exc = ApiError(500, "InternalError", "Internal error occurred: unexpected server error")
            try:
                await self._send(response, {"type": "ERROR", "object": exc.status()})
            except ConnectionError:
                pass
            return await self._finish(response)
        finally:
            self.store.unsubscribe(sub)
            self.watches.discard(sub)

    async def _finish(self, response: web.StreamResponse) -> web.StreamResponse:
        try:
            await response.write_eof()
        except ConnectionError:
            pass
        return response

    def _backlog(self, start_rv: int | None) -> tuple[list[tuple[str, dict[str, Any]]], ApiError | None]:
        if start_rv is None:
            items, rv = self.store.list(self.rt, self.namespace)
            self.last_rv = rv
            return [("ADDED", o) for o in items if self.selection.matches(o)], None
        try:
            events = self.store.events_since(start_rv, self.rt, self.namespace)
        except StoreGone as exc:
            return [], ApiError(410, "Expired", str(exc))
        self.last_rv = max([start_rv] + [e.rv for e in events])
        return [(e.type, e.obj) for e in events], None

    async def _follow(self, response: web.StreamResponse, sub: Subscription) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        next_bookmark = loop.time() + BOOKMARK_INTERVAL
        transport = self.request.transport
        while not self.watches.closing:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                event: WatchEvent | None = await asyncio.wait_for(sub.queue.get(), min(remaining, 1.0))
            except TimeoutError:
                if transport is None or transport.is_closing():
                    return  # the client went away
                if self.bookmarks and loop.time() >= next_bookmark:
                    await self._send_bookmark(response)
                    next_bookmark = loop.time() + BOOKMARK_INTERVAL
                continue
            if event is None:
                return  # server shutdown
            if event.rv <= self.last_rv:
                continue  # already covered by the backlog
            self.last_rv = event.rv
            await self._send_object(response, event.type, event.obj)

    async def _send_object(self, response: web.StreamResponse, etype: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        selected = self.selection.matches(obj)
        if not selected:
            if key in self.visible and etype != "DELETED":
                # It left the selection: to this watcher it was deleted.
                self.visible.discard(key)
                await self._send(response, {"type": "DELETED", "object": self._present(obj)})
            return
        if etype == "DELETED":
            self.visible.discard(key)
        else:
            if etype == "MODIFIED" and key not in self.visible and self.selection.labels:
                etype = "ADDED"  # it entered the selection
            self.visible.add(key)
        await self._send(response, {"type": etype, "object": self._present(obj)})

    def _present(self, obj: dict[str, Any]) -> dict[str, Any]:
        if self.form.form == "table":
            table = tables.to_table(self.rt, [obj], include_object=self.include, headers=not self.headers_sent,
                                    api_version=self.form.api_version,
                                    resource_version=(obj.get("metadata") or {}).get("resourceVersion"))
            self.headers_sent = True
            return table
        if self.form.form == "partial":
            return tables.partial_object_metadata(obj, self.form.api_version)
        return obj

    async def _send_bookmark(self, response: web.StreamResponse, *, initial_end: bool = False) -> None:
        meta: dict[str, Any] = {"resourceVersion": str(max(self.last_rv, 0))}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        bookmark = {"kind": self.rt.kind, "apiVersion": self.rt.api_version, "metadata": meta}
        await self._send(response, {"type": "BOOKMARK", "object": bookmark})

    async def _send(self, response: web.StreamResponse, event: dict[str, Any]) -> None:
        await response.write(orjson.dumps(event) + b"\n")


def _watch_timeout(params: Any) -> float:
    """Seconds the watch may last: ``timeoutSeconds`` (an int64, as the API server parses it), else
    the client's ``timeout`` (a Go duration), else the default. Raises a 400 ApiError."""
    raw = params.get("timeoutSeconds")
    if raw:
        try:
            seconds = int(raw)
        except ValueError:
            raise bad_request(f"invalid timeoutSeconds: {raw!r}: it must be a whole number of seconds") from None
        if not -(2**63) <= seconds < 2**63:
            raise bad_request(f"invalid timeoutSeconds: {raw!r}: out of range")
        return float(seconds)
    raw = params.get("timeout")
    if raw:
        try:
            seconds_f = parse_go_duration(raw)
        except ValueError:
            raise bad_request(f"invalid timeout: {raw!r}: use a duration such as 30s or 5m") from None
        if not math.isfinite(seconds_f):
            raise bad_request(f"invalid timeout: {raw!r}: out of range")
        return seconds_f
    return DEFAULT_WATCH_TIMEOUT


def _resource_version(raw: str) -> int:
    """A resourceVersion parameter as the API server's storage parses it (a uint64)."""
    if not raw.isascii() or not raw.isdigit() or int(raw) > _UINT64_MAX:
        raise bad_request(f"invalid resource version: {raw}")
    return int(raw)
