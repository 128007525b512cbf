"""The local cluster's ingress gateway: Host-based, weighted routing to revision model servers.

It plays the part of Istio's ingress gateway + Knative's routing in the canary walkthrough:

- ``Host: sklearn-iris.kserve-test.example.com`` (or ``…-predictor…``) → the weighted split of the
  InferenceService's traffic block; ``latest-…`` / ``prev-…`` → one tagged revision;
- a revision that is not ready gets no traffic (the split is renormalised over the live ones);
- every answer names the revision that served it in ``x-kserve-revision`` (a local extension;
  Knative keeps revision names out of responses, see knative/serving#13149);
- ``curl -d @iris-input.json`` sends ``application/x-www-form-urlencoded``, which kserve's V1 endpoint
  answers with a 500; a body that parses as a JSON object or array is forwarded as
  ``application/json`` instead, and ``x-kserve-nb-content-type`` says so;
- a request that never reached a model (connection *refused*: the revision just died; or a pooled
  keep-alive connection found closed before any byte of an answer) is retried once on another ready
  target of the same route.

Performance: uvicorn (httptools) runs a bare ASGI callable in the daemon's event loop; upstream
requests go through :class:`_UpstreamPool`, a minimal HTTP/1.1 client (httptools' response parser on
pooled keep-alive connections). aiohttp's client was the first choice and cost ~0.3–0.6 ms per request
on the 2-vCPU machine this was measured on (its ``transport.write`` path alone ~0.2 ms); the pool adds
about what a byte-level TCP relay adds. The routing table is immutable and swapped whole by
:meth:`Gateway.update`, so a request never sees half an update and the hot path takes no locks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping, Sequence

import httptools

log = logging.getLogger(__name__)

ASGIReceive = Callable[[], Awaitable[dict[str, Any]]]
ASGISend = Callable[[dict[str, Any]], Awaitable[None]]

REVISION_HEADER = b"x-kserve-revision"
COERCED_HEADER = (b"x-kserve-nb-content-type", b"coerced to application/json")
#: Seconds a request may take upstream; Knative's default revision timeout is 300 s.
UPSTREAM_TIMEOUT_SECONDS = 300.0
#: Idle upstream connections are closed after this long: below the model server's keep-alive
#: timeout (uvicorn in kserve: 65 s), so the server never closes one we are about to reuse.
UPSTREAM_IDLE_SECONDS = 30.0
#: Idle connections kept per revision endpoint.
UPSTREAM_MAX_IDLE = 256

# Hop-by-hop headers (RFC 9110 §7.6.1) and the ones recomputed for the buffered body.
_REQUEST_DROP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
        b"expect",
        b"content-type",  # re-added by _request_head (possibly coerced)
    }
)
_RESPONSE_DROP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
    }
)


# --- routing table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    revision: str
    revision_header: bytes
    endpoint: tuple[str, int]
    weight: int  # the traffic percent


@dataclass(frozen=True)
class _Route:
    host: str
    live: tuple[_Target, ...]  # ready targets with percent > 0
    total: int  # sum of the live weights: the split is renormalised over the ready targets
    unready: tuple[tuple[str, int], ...]  # (revision, percent) with traffic but no ready endpoint

    def pick(self, exclude: str | None = None) -> _Target | None:
        """Weighted random choice among the live targets, optionally excluding one revision."""
        live, total = self.live, self.total
        if exclude is not None:
            live = tuple(t for t in live if t.revision != exclude)
            total = sum(t.weight for t in live)
        if not live:
            return None
        if len(live) == 1:
            return live[0]
        x = random.random() * total
        for target in live:
            x -= target.weight
            if x < 0:
                return target
        return live[-1]


def _build_table(
    routes: Mapping[str, Sequence[tuple[str, str, int]]],
    endpoints: Mapping[tuple[str, str], tuple[str, int]],
) -> dict[str, _Route]:
    table: dict[str, _Route] = {}
    for host, targets in routes.items():
        live: list[_Target] = []
        unready: list[tuple[str, int]] = []
        for namespace, revision, percent in targets:
            if percent <= 0:
                continue
            endpoint = endpoints.get((namespace, revision))
            if endpoint is None:
                unready.append((revision, percent))
            else:
                live.append(_Target(revision, revision.encode(), (endpoint[0], int(endpoint[1])), percent))
        key = host.lower().split(":", 1)[0]
        table[key] = _Route(key, tuple(live), sum(t.weight for t in live), tuple(unready))
    return table


# --- upstream HTTP/1.1 client ------------------------------------------------------------------


class UpstreamError(Exception):
    """An upstream request failed; ``retryable`` when the request certainly reached no model."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


_Response = tuple[int, list[tuple[bytes, bytes]], bytes]


class _Connection(asyncio.Protocol):
    """One keep-alive connection to a model server; one request at a time."""

    def __init__(self, pool: _UpstreamPool, endpoint: tuple[str, int]) -> None:
        self._pool = pool
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.deadline = 0.0  # loop time by which the current answer must be complete
        self.idle_since = 0.0
        self._waiter: asyncio.Future[_Response] | None = None
        # One parser per connection: llhttp parses consecutive keep-alive answers.
        self._parser = httptools.HttpResponseParser(self)
        self._reset_response(head=False)

    def _reset_response(self, head: bool) -> None:
        self._head = head
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._received = False
        self._framed = False  # content-length or chunked: the end is known without EOF
        self._keep_alive = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(UpstreamError(f"invalid HTTP response from the model server: {e}"))
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        if self._waiter is None or self._waiter.done():
            return
        if self._status and not self._framed:
            self._finish()  # HTTP/1.0-style body delimited by EOF
            return
        retryable = self.reused and not self._received
        why = "closed the connection before answering" if not self._received else "closed the connection mid-answer"
        self._fail(UpstreamError(f"the model server {why}", retryable=retryable))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True
        if lower not in _RESPONSE_DROP:
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._keep_alive = self._parser.should_keep_alive()
        if self._head:  # no body follows a HEAD answer, whatever content-length says
            self._keep_alive = False
            self._finish()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._finish()

    # request/response
    def request(self, head: bytes, body: bytes, is_head: bool, loop: asyncio.AbstractEventLoop) -> asyncio.Future[_Response]:
        assert self.transport is not None
        self._reset_response(is_head)
        self._waiter = loop.create_future()
        self.deadline = loop.time() + UPSTREAM_TIMEOUT_SECONDS
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)
        return self._waiter

    def _finish(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result((self._status, self._headers, b"".join(self._body)))
        if not self._keep_alive:
            self._close()

    def _fail(self, error: UpstreamError) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    @property
    def reusable(self) -> bool:
        return not self.closed and self._keep_alive and self._waiter is None

    def _close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True


class _UpstreamPool:
    """Keep-alive connections per ``(host, port)``, most recently used first.

    Request deadlines and idle expiry are enforced by one sweep per second rather than a timer per
    request: two timer handles per request were a measurable share of the gateway's cost.
    """

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._wanted: frozenset[tuple[str, int]] = frozenset()
        self._closed = False
        self._sweeper: asyncio.TimerHandle | None = None

    async def request(self, endpoint: tuple[str, int], head: bytes, body: bytes, is_head: bool) -> _Response:
        """Send one request; raises :class:`UpstreamError` (``retryable`` if no model saw it)."""
        conn = await self._acquire(endpoint)
        loop = asyncio.get_running_loop()
        if self._sweeper is None:
            self._sweeper = loop.call_later(1.0, self._sweep, loop)
        waiter = conn.request(head, body, is_head, loop)
        self._busy.add(conn)
        try:
            response = await waiter
        except asyncio.CancelledError:
            conn._close()  # the client went away mid-request: this connection is unusable
            raise
        finally:
            self._busy.discard(conn)
        self._release(conn, loop)
        return response

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for conn in [c for c in self._busy if c.deadline <= now]:
            self._time_out(conn)
        for idle in self._idle.values():
            for conn in [c for c in idle if now - c.idle_since >= UPSTREAM_IDLE_SECONDS]:
                conn._close()  # connection_lost → forget() drops it from the list
        self._sweeper = None if self._closed else loop.call_later(1.0, self._sweep, loop)

    async def _acquire(self, endpoint: tuple[str, int]) -> _Connection:
        idle = self._idle.get(endpoint)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: _Connection(self, endpoint), *endpoint)
        except ConnectionRefusedError as e:
            raise UpstreamError("the model server refused the connection", retryable=True) from e
        except OSError as e:
            raise UpstreamError(f"could not connect to the model server: {e}") from e
        return conn

    def _release(self, conn: _Connection, loop: asyncio.AbstractEventLoop) -> None:
        idle = self._idle.setdefault(conn.endpoint, [])
        if not conn.reusable or self._closed or conn.endpoint not in self._wanted or len(idle) >= UPSTREAM_MAX_IDLE:
            conn._close()
            return
        conn.reused = True
        conn.idle_since = loop.time()
        idle.append(conn)

    def _time_out(self, conn: _Connection) -> None:
        conn._fail(UpstreamError(f"the model server did not answer within {UPSTREAM_TIMEOUT_SECONDS:g}s"))
        conn._close()

    def forget(self, conn: _Connection) -> None:
        """A connection closed: drop it from the idle list at once (not at its next use)."""
        idle = self._idle.get(conn.endpoint)
        if idle and conn in idle:
            idle.remove(conn)

    def retain_only(self, endpoints: frozenset[tuple[str, int]]) -> None:
        """Close idle connections to endpoints no longer routed to (a stopped or dead revision)."""
        self._wanted = endpoints
        for endpoint in [e for e in self._idle if e not in endpoints]:
            for conn in self._idle.pop(endpoint):
                conn._close()

    def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self.retain_only(frozenset())


# --- the gateway -------------------------------------------------------------------------------


class Gateway:
    """Loopback ingress gateway with Host-based weighted routing.

    Parameters
    ----------
    host, port:
        Where to listen; the default is an ephemeral port on 127.0.0.1.

    Use it inside the daemon's running event loop::

        gw = Gateway()
        port = await gw.start()
        gw.update(
            {"sklearn-iris.kserve-test.example.com": [("kserve-test", "sklearn-iris-predictor-00001", 100)]},
            {("kserve-test", "sklearn-iris-predictor-00001"): ("127.0.0.1", 41234)},
        )
        ...
        await gw.close()
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._table: dict[str, _Route] = {}
        self._pool = _UpstreamPool()
        self._server: Any = None  # uvicorn.Server
        self._serve_task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return self._port

    async def start(self) -> int:
        """Bind, start serving in the running loop, and return the port once listening."""
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._host, self._port))
        sock.listen(2048)
        sock.setblocking(False)
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self,
            http="httptools",
            ws="none",
            lifespan="off",
            access_log=False,
            log_config=None,
            server_header=False,
            date_header=False,
            proxy_headers=False,
            timeout_keep_alive=75,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        # The daemon owns SIGINT/SIGTERM: uvicorn must not swap in its handlers while serving.
        self._server.capture_signals = _no_signals  # type: ignore[method-assign]
        self._serve_task = asyncio.ensure_future(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._serve_task.done():
                self._serve_task.result()
                raise RuntimeError("the gateway stopped during startup")
            await asyncio.sleep(0.001)
        return self._port

    async def close(self) -> None:
        """Stop listening, let in-flight requests finish (bounded), close upstream connections."""
        if self._server is not None and self._serve_task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(self._serve_task, timeout=5.0)
            except asyncio.TimeoutError:
                self._serve_task.cancel()
        self._server = self._serve_task = None
        self._pool.close()

    def update(
        self,
        routes: Mapping[str, Sequence[tuple[str, str, int]]],
        endpoints: Mapping[tuple[str, str], tuple[str, int]],
    ) -> None:
        """Replace the whole routing table atomically.

        Parameters
        ----------
        routes:
            Lower-case host name (no port) → weighted targets ``(namespace, revision, percent)``.
        endpoints:
            ``(namespace, revision)`` → ``(host, port)`` of a *ready* model server. Targets without
            an endpoint get no traffic.
        """
        self._table = _build_table(routes, endpoints)
        self._pool.retain_only(frozenset((h, int(p)) for h, p in endpoints.values()))

    # --- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            return
        host = _host_of(scope["headers"])
        route = self._table.get(host)
        if route is None:
            await _send_error(send, 404, _no_route_message(host, self._table), None)
            return
        body = await _read_body(receive)
        target = route.pick()
        if target is None:
            names = ",".join(rev for rev, _ in route.unready) or None
            await _send_error(send, 503, _unready_message(route), names)
            return
        head, coerced = _request_head(scope, body)
        is_head = scope["method"] == "HEAD"
        try:
            status, headers, data = await self._pool.request(target.endpoint, head, body, is_head)
        except UpstreamError as first:
            retry = route.pick(exclude=target.revision) if first.retryable else None
            if retry is None:
                await _send_error(send, *_failure(route, target, first))
                return
            target = retry
            try:
                status, headers, data = await self._pool.request(target.endpoint, head, body, is_head)
            except UpstreamError as second:
                await _send_error(send, *_failure(route, target, second))
                return
        headers.append((b"content-length", str(len(data)).encode()))
        headers.append((REVISION_HEADER, target.revision_header))
        if coerced:
            headers.append(COERCED_HEADER)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})


# --- helpers -----------------------------------------------------------------------------


class _NoSignals:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _no_signals() -> _NoSignals:
    return _NoSignals()


def _host_of(headers: Sequence[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"host":
            host = value.decode("latin-1").strip().lower()
            if host.startswith("["):  # [::1]:8080
                return host.split("]", 1)[0] + "]"
            return host.split(":", 1)[0]
    return ""


async def _read_body(receive: ASGIReceive) -> bytes:
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while message.get("more_body", False):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


def _request_head(scope: dict[str, Any], body: bytes) -> tuple[bytes, bool]:
    """The request line and headers for the revision, and whether the content type was coerced.

    The client's ``Host`` goes through unchanged (Knative routes on it; kserve ignores it).
    """
    target = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string")
    if query:
        target += b"?" + query
    parts = [scope["method"].encode(), b" ", target, b" HTTP/1.1\r\n"]
    content_type: bytes | None = None
    for name, value in scope["headers"]:
        if name in _REQUEST_DROP:
            if name == b"content-type":
                content_type = value
            continue
        parts += (name, b": ", value, b"\r\n")
    coerced = False
    if (content_type is None or b"json" not in content_type.lower()) and body and _parses_as_json(body):
        content_type, coerced = b"application/json", True
    if content_type is not None:
        parts += (b"content-type: ", content_type, b"\r\n")
    if body or scope["method"] in ("POST", "PUT", "PATCH"):
        parts += (b"content-length: ", str(len(body)).encode(), b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts), coerced


def _parses_as_json(body: bytes) -> bool:
    first = body.lstrip()[:1]
    if first not in (b"{", b"["):  # only objects and arrays: "a=1&b=2" forms stay forms
        return False
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


async def _send_error(send: ASGISend, status: int, message: str, revision: str | None) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if revision:
        headers.append((REVISION_HEADER, revision.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _failure(route: _Route, target: _Target, error: UpstreamError) -> tuple[int, str, str]:
    if error.retryable:
        message = (
            f"no ready revision for host '{route.host}': {target.revision} {error} "
            f"(it is restarting) and no other target is ready"
        )
        return 503, message, target.revision
    return 502, f"revision {target.revision} failed to answer: {error}", target.revision


def _no_route_message(host: str, table: Mapping[str, _Route]) -> str:
    known = sorted(table)
    hint = (", ".join(known[:8]) + (", …" if len(known) > 8 else "")) if known else "none yet"
    return (
        f"no route for host '{host}': no InferenceService answers to it. Send a Host header such as "
        f"'<isvc>.<namespace>.example.com' (known hosts: {hint})"
    )


def _unready_message(route: _Route) -> str:
    if route.unready:
        listed = ", ".join(f"{rev} ({pct}%)" for rev, pct in route.unready)
        verb = "is" if len(route.unready) == 1 else "are"
        return f"no ready revision for host '{route.host}': {listed} {verb} not ready"
    return f"no ready revision for host '{route.host}': the route has no traffic targets"
