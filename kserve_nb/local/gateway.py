"""The local cluster's ingress gateway: Host-based, weighted routing to revision model servers.

It routes by the table and the rule of :mod:`kserve_nb.local.routing` (nginx's Lua does the same
in front of it), playing the part of Istio's ingress gateway + Knative's routing:

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

Performance: both HTTP edges are hand-written :class:`asyncio.Protocol` s on httptools (llhttp), in
the daemon's uvloop event loop. The client edge, :class:`_ClientConnection`, is a small HTTP/1.1
server without uvicorn's per-request ASGI machinery (scope dict, receive/send coroutines and message
dicts, header list conversions), which would be a large share of the gateway's CPU per request
against a fast upstream. Upstream requests go through :class:`kserve_nb.http1.Pool`, the project's one
HTTP/1.1 client (pooled keep-alive connections, llhttp's parser), for the same reason: a general-purpose client such as
aiohttp's costs several times more per request (``benchmarks/bench_gateway.py`` measures the
gateway against a direct connection). The routing table is immutable and swapped whole by
:meth:`Gateway.update`, so a request never sees half an update and the hot path takes no locks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import posixpath
import re
import time
from collections import deque
from http import HTTPStatus
from urllib.parse import unquote

import httptools

from kserve_nb import http1
from kserve_nb.local import routing
from kserve_nb.local.exporter import RequestMetrics
from kserve_nb.local.routing import Endpoints, Route, Routes, Target

log = logging.getLogger(__name__)

#: KServe's model repository API: a client that may send predictions must not unload the model
#: (the revision would answer 404 while its InferenceService stays Ready). nginx refuses it too,
#: with this text inside a single-quoted string: no quotes, backslashes or dollars in it.
MODEL_REPOSITORY_PATH = "/v2/repository"
MODEL_REPOSITORY_REFUSAL = (
    "the model repository API (/v2/repository/…) is not exposed through the ingress: the model of a "
    "revision is loaded and unloaded by its InferenceService"
)
NESTED_TOO_DEEP = (
    "the request body looks like JSON but is nested too deeply to parse; send model inputs as "
    "arrays of rows (Content-Type: application/json)"
)
COERCED_HEADER = (b"x-kserve-nb-content-type", b"coerced to application/json")
_COERCED_LINE = COERCED_HEADER[0] + b": " + COERCED_HEADER[1] + b"\r\n"
#: Seconds a request may take upstream; Knative's default revision timeout is 300 s.
UPSTREAM_TIMEOUT_SECONDS = 300.0
#: Idle upstream connections are closed after this long: below the model server's keep-alive
#: timeout (uvicorn in kserve: 65 s), so the server never closes one we are about to reuse.
UPSTREAM_IDLE_SECONDS = 30.0
#: Idle connections kept per revision endpoint.
UPSTREAM_MAX_IDLE = 256
#: Largest client request body accepted (413 beyond): the gateway buffers bodies in memory.
MAX_BODY_BYTES = 64 * 1024 * 1024
#: An idle client keep-alive connection is closed after this long (nginx's default keepalive_timeout).
CLIENT_IDLE_SECONDS = 75.0
#: How long :meth:`Gateway.close` lets in-flight requests finish before cutting their connections.
CLOSE_GRACE_SECONDS = 2.0
_COPY_LIMIT = http1.COPY_LIMIT

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


#: Status, response header lines as pieces for one ``b"".join`` (``name, b": ", value, b"\r\n"``…), body.
_Response = tuple[int, list[bytes], bytes]


# --- the client edge: a small HTTP/1.1 server -------------------------------------------------


class _Request:
    """One client request as parsed, and as it will be forwarded."""

    __slots__ = (
        "method", "url", "host", "headers", "content_type", "body", "size", "keep_alive", "http10", "expect_continue",
        "error",
    )

    def __init__(self) -> None:
        self.method = b""
        self.url = b""
        self.host = b""  # the first Host header
        self.headers: list[bytes] = []  # forwarded header lines as pieces for one b"".join
        self.content_type: bytes | None = None
        self.body: list[bytes] = []
        self.size = 0
        self.keep_alive = True
        self.http10 = False
        self.expect_continue = False  # a 100 Continue is still owed
        self.error: tuple[int, str] | None = None  # not forwarded: answered with this, then closed


def _rejected(status: int, message: str) -> _Request:
    request = _Request()
    request.error = (status, message)
    request.keep_alive = False
    return request


class _Rejected(Exception):
    """Raised in a parser callback to stop parsing a request the gateway refuses (413)."""


class _ClientConnection(asyncio.Protocol):
    """One client connection: requests parsed by httptools, answered one at a time, in order.

    Pipelined requests are parsed as they arrive and queued; while one is being answered, the
    connection stops reading after the data already received, so a client cannot make the gateway
    buffer more than one read's worth of requests. Answers are written with one ``transport.write``
    of head and body. A connection is served by one task per busy period, not one per request.
    """

    def __init__(self, gateway: Gateway, loop: asyncio.AbstractEventLoop) -> None:
        self._gateway = gateway
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._request: _Request | None = None  # being parsed
        self._queue: deque[_Request] = deque()  # parsed, waiting their turn
        self._task: asyncio.Task[None] | None = None  # answering the queue; None when idle
        self._closed = False
        self._discard = False  # stop parsing: what follows a malformed or upgrade request isn't HTTP/1.1
        self._reading = True
        self._drain: asyncio.Future[None] | None = None  # set while the transport's buffer is full
        self._active = True  # any traffic since the last idle sweep
        self._idle_since = 0.0

    # --- asyncio.Protocol ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._gateway._connections.add(self)
        if self._gateway._closing:  # accepted just before the listener closed
            self._close()

    def data_received(self, data: bytes) -> None:
        if self._discard:
            return
        self._active = True
        busy = self._task is not None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Upgrades (websocket, h2c) and CONNECT aren't proxied: the request is answered as plain
            # HTTP/1.1 and the connection closed, since the bytes after it are another protocol.
            self._stop_parsing(None)
        except httptools.HttpParserCallbackError:
            request = self._request
            error = request.error if request is not None and request.error else (400, "malformed HTTP request")
            self._stop_parsing(error)
        except httptools.HttpParserError as e:
            self._stop_parsing((400, f"malformed HTTP request: {e}"))
        if busy and self._reading and not self._discard:
            self._pause_reading()  # pipelined: read on once the queued requests are answered
        if self._task is None and self._queue:
            self._task = self._loop.create_task(self._serve())

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._discard = True
        self._gateway._connections.discard(self)
        if self._task is not None:
            # The client is gone (a FIN counts: like nginx and Envoy, and unlike a byte relay, the
            # gateway takes a half-close for a hang-up): stop waiting for, and close, its upstream.
            self._task.cancel()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_writing(self) -> None:
        if self._drain is None:
            self._drain = self._loop.create_future()

    def resume_writing(self) -> None:
        drain, self._drain = self._drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    # --- httptools callbacks ---

    def on_message_begin(self) -> None:
        self._request = _Request()

    def on_url(self, url: bytes) -> None:
        assert self._request is not None
        self._request.url += url  # may come in pieces when the request line spans reads

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self._request
        assert request is not None
        name = name.lower()
        if name not in _REQUEST_DROP:
            request.headers += (name, b": ", value, b"\r\n")
            if name == b"host" and not request.host:
                request.host = value
        elif name == b"content-type":
            request.content_type = value
        elif name == b"expect":
            request.expect_continue = value.lower() == b"100-continue"
        elif name == b"content-length" and value.isdigit() and int(value) > MAX_BODY_BYTES:
            self._refuse_body(request)

    def on_headers_complete(self) -> None:
        request = self._request
        assert request is not None and self._transport is not None
        parser = self._parser
        request.method = parser.get_method()
        request.keep_alive = parser.should_keep_alive()
        request.http10 = request.keep_alive and parser.get_http_version() == "1.0"
        if request.expect_continue and self._task is None and not self._queue:
            # Nothing ahead of it to answer: invite the body now (else _idle() does, in turn).
            request.expect_continue = False
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        request = self._request
        assert request is not None
        request.size += len(body)
        if request.size > MAX_BODY_BYTES:
            self._refuse_body(request)
        request.body.append(body)

    def on_message_complete(self) -> None:
        assert self._request is not None
        self._queue.append(self._request)
        self._request = None

    # --- answering ---

    async def _serve(self) -> None:
        """Answer the queued requests in order, then go idle."""
        try:
            while self._queue:
                if self._drain is not None:
                    await self._drain  # the client isn't reading its answers: don't make more
                request = self._queue.popleft()
                if request.error is not None:
                    response = _error(*request.error, None)
                else:
                    try:
                        response = await self._gateway._answer(request)
                    except _Refused as refused:  # the request itself is at fault: a 4xx, not a 500
                        response = _error(refused.status, refused.message, None)
                    except Exception:
                        log.exception("gateway: unexpected error answering %r", request.url)
                        response = _error(500, "internal gateway error (see the daemon's log)", None)
                        request.keep_alive = False
                if not self._respond(request, *response):
                    return
        finally:
            self._task = None
        self._idle()

    def _respond(self, request: _Request, status: int, headers: list[bytes], body: bytes) -> bool:
        """Write one answer; returns whether the connection stays open for the next request."""
        if self._closed or self._transport is None:
            return False
        keep_alive = request.keep_alive and not self._gateway._closing
        out = [_STATUS_LINES.get(status) or b"HTTP/1.1 %d \r\n" % status]
        out += headers
        out.append(b"content-length: %d\r\n" % len(body))
        if not keep_alive:
            out.append(b"connection: close\r\n")
        elif request.http10:
            out.append(b"connection: keep-alive\r\n")
        out.append(b"\r\n")
        if request.method == b"HEAD":
            body = b""
        if len(body) < _COPY_LIMIT:
            out.append(body)
            self._transport.write(b"".join(out))
        else:
            self._transport.write(b"".join(out))
            self._transport.write(body)
        self._active = True
        if not keep_alive:
            self._close()
        return keep_alive

    def _idle(self) -> None:
        """All answered: read on, and send a 100 Continue the request being received waits for."""
        if self._closed or self._transport is None:
            return
        if self._gateway._closing:
            self._close()
            return
        request = self._request
        if request is not None and request.expect_continue:
            request.expect_continue = False
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if not self._reading and not self._discard:
            self._reading = True
            self._transport.resume_reading()

    # --- refusing, closing ---

    def _refuse_body(self, request: _Request) -> None:
        request.error = (413, f"request body larger than {MAX_BODY_BYTES} bytes")
        raise _Rejected()

    def _stop_parsing(self, error: tuple[int, str] | None) -> None:
        """Parse nothing more on this connection; answer ``error`` (or the last request), then close."""
        self._discard = True
        self._request = None
        if self._reading:
            self._pause_reading()
        if error is not None:
            self._queue.append(_rejected(*error))
        elif self._queue:
            self._queue[-1].keep_alive = False

    def _pause_reading(self) -> None:
        assert self._transport is not None
        self._reading = False
        self._transport.pause_reading()

    def _close(self) -> None:
        """Close once the written answers are flushed."""
        self._discard = True
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def shutdown(self) -> None:
        """The gateway is closing: close now if idle, else after the answer in progress."""
        if self._task is None:
            self._close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def sweep(self, now: float) -> None:
        """Close the connection after :data:`CLIENT_IDLE_SECONDS` without traffic or work."""
        if self._active or self._task is not None:
            self._active = False
            self._idle_since = now
        elif now - self._idle_since >= CLIENT_IDLE_SECONDS:
            self._close()


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
        self._table: dict[str, Route] = {}
        self._pool = http1.Pool(
            timeout=UPSTREAM_TIMEOUT_SECONDS, idle_seconds=UPSTREAM_IDLE_SECONDS, max_idle=UPSTREAM_MAX_IDLE
        )
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[_ClientConnection] = set()
        self._closing = False
        self._sweeper: asyncio.TimerHandle | None = None
        #: Requests this gateway forwarded to a revision itself, by revision and status (Knative's
        #: queue-proxy metrics; nginx counts the ones it forwards, so none is counted twice).
        self.metrics = RequestMetrics()

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return self._port

    async def start(self) -> int:
        """Bind (only ``host``), start serving in the running loop, and return the port."""
        loop = asyncio.get_running_loop()
        self._closing = False
        self._server = await loop.create_server(
            lambda: _ClientConnection(self, loop), self._host, self._port, backlog=2048, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]
        self._sweeper = loop.call_later(1.0, self._sweep, loop)
        return self._port

    async def close(self) -> None:
        """Stop listening, let in-flight requests finish (bounded), close upstream connections."""
        if self._server is not None:
            loop = asyncio.get_running_loop()
            self._closing = True
            self._server.close()
            for conn in list(self._connections):
                conn.shutdown()
            deadline = loop.time() + CLOSE_GRACE_SECONDS
            while self._connections and loop.time() < deadline:
                await asyncio.sleep(0.01)
            for conn in list(self._connections):
                conn.abort()
            self._server = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._pool.close()

    def update(self, routes: Routes, endpoints: Endpoints) -> None:
        """Replace the whole routing table atomically.

        Parameters
        ----------
        routes:
            Host name → weighted targets ``(namespace, target, weight)``.
        endpoints:
            ``(namespace, target)`` → ``(host, port)`` of a *ready* model server. Targets without
            an endpoint get no traffic.

        The format and the rule it is routed by are :mod:`kserve_nb.local.routing`'s.
        """
        self._table = routing.build(routes, endpoints)
        self._pool.retain_only(frozenset((h, int(p)) for h, p in endpoints.values()))

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Once a second: close idle client connections (one timer, not one per request)."""
        now = loop.time()
        for conn in list(self._connections):
            conn.sweep(now)
        self._sweeper = loop.call_later(1.0, self._sweep, loop)

    async def _answer(self, request: _Request) -> _Response:
        """Route and forward one request: the status, header lines and body to answer with."""
        if _is_model_repository(request.url):
            return _error(403, MODEL_REPOSITORY_REFUSAL, None)
        host = _host_name(request.host)
        route = self._table.get(host)
        if route is None:
            return _error(404, routing.no_route_message(host, list(self._table)), None)
        target = route.pick()
        if target is None:
            names = ",".join(name for name, _ in route.unready) or None
            return _error(503, routing.unready_message(route), names)
        body = b"".join(request.body)
        head, coerced = _request_head(request, body)
        is_head = request.method == b"HEAD"
        # Timed like queue-proxy's app latency: from handing the request on to having the answer.
        started = _clock()
        try:
            status, headers, data = await self._pool.request(target.endpoint, head, body, is_head=is_head)
        except http1.WireError as first:
            retry = route.pick(exclude=target.name) if first.retryable else None
            if retry is None:
                return self._failed(route, target, first, started)
            target = retry
            try:
                status, headers, data = await self._pool.request(target.endpoint, head, body, is_head=is_head)
            except http1.WireError as second:
                return self._failed(route, target, second, started)
            except asyncio.CancelledError:
                self.metrics.observe(target.series, 499, (_clock() - started) * 1000.0)
                raise
        except asyncio.CancelledError:  # the client hung up first: nginx's 499, counted alike
            self.metrics.observe(target.series, 499, (_clock() - started) * 1000.0)
            raise
        self.metrics.observe(target.series, status, (_clock() - started) * 1000.0)
        headers.append(target.revision_line)
        if coerced:
            headers.append(_COERCED_LINE)
        return status, headers, data

    def _failed(self, route: Route, target: Target, error: http1.WireError, started: float) -> _Response:
        """The error answer for a revision that could not answer, counted with its status."""
        response = _error(*_failure(route, target, error))
        self.metrics.observe(target.series, response[0], (_clock() - started) * 1000.0)
        return response


# --- helpers -----------------------------------------------------------------------------

_clock = time.perf_counter

_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}


def _host_name(value: bytes) -> str:
    """The Host header's name part, lower-case, without the port."""
    return routing.host_key(value.decode("latin-1"))


def _request_head(request: _Request, body: bytes) -> tuple[bytes, bool]:
    """The request line and headers for the revision, and whether the content type was coerced.

    The client's ``Host`` goes through unchanged (Knative routes on it; kserve ignores it).
    """
    url = request.url
    if not url.startswith(b"/") and url != b"*":  # absolute form (proxy style): forward path?query
        url = _origin_form(url)
    headers = request.headers
    content_type = request.content_type
    coerced = False
    if (content_type is None or b"json" not in content_type.lower()) and body and _parses_as_json(body):
        content_type, coerced = b"application/json", True
    if content_type is not None:
        headers = [*headers, b"content-type: ", content_type, b"\r\n"]
    length = len(body) if body or request.method in (b"POST", b"PUT", b"PATCH") else None
    return http1.request_head(request.method, url, headers, length), coerced


def _parses_as_json(body: bytes) -> bool:
    first = body.lstrip()[:1]
    if first not in (b"{", b"["):  # only objects and arrays: "a=1&b=2" forms stay forms
        return False
    try:
        json.loads(body)
    except ValueError:
        return False
    except RecursionError:  # JSON (probably) that no model input needs: refused, not a 500
        raise _Refused(400, NESTED_TOO_DEEP) from None
    return True


class _Refused(Exception):
    """A request the gateway answers itself with a 4xx (``status``, ``message``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _origin_form(url: bytes) -> bytes:
    """``path?query`` of an absolute-form request target (``http://host/path``, proxy style)."""
    try:
        parsed = httptools.parse_url(url)
    except httptools.HttpParserInvalidURLError:
        raise _Refused(400, f"malformed request target {url[:100]!r}: send a path such as "
                            "/v1/models/NAME:predict") from None
    return (parsed.path or b"/") + (b"?" + parsed.query if parsed.query else b"")


def _is_model_repository(url: bytes) -> bool:
    """Whether ``url`` names KServe's model repository API (``/v2/repository/…``: load, unload),
    however it is spelled: the model server routes on the percent-decoded path."""
    if b"repository" not in url and b"%" not in url:  # the hot path: one scan, no decoding
        return False
    if not url.startswith(b"/"):  # absolute form
        url = _origin_form(url)
    path = unquote(url.split(b"?", 1)[0].decode("latin-1"))
    path = posixpath.normpath(re.sub("/+", "/", "/" + path))
    return path == MODEL_REPOSITORY_PATH or path.startswith(MODEL_REPOSITORY_PATH + "/")


def _error(status: int, message: str, revision: str | None) -> _Response:
    """A JSON error answer ``{"error": message}``, naming the revision if there is one."""
    headers = [b"content-type: application/json\r\n"]
    if revision:
        headers.append(routing.revision_line(revision))
    return status, headers, json.dumps({"error": message}).encode()


def _failure(route: Route, target: Target, error: http1.WireError) -> tuple[int, str, str]:
    """Rules 5 and 6 of :mod:`~kserve_nb.local.routing`: the answer for a target that failed."""
    if error.retryable:
        return 503, routing.unreachable_message(route.host, target.name, error.reason), target.name
    if isinstance(error, http1.TimedOut):
        return 504, routing.timeout_message(target.name, UPSTREAM_TIMEOUT_SECONDS), target.name
    return 502, routing.failed_message(target.name, f"the model server {error.reason}"), target.name
