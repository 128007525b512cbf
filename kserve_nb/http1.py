"""kserve-nb's one hand-written HTTP/1.1 module: a keep-alive client pool and a server connection.

Every HTTP/1.1 exchange the project drives itself goes through here: the bulk prediction sender
(:mod:`kserve_nb.predict.bulk`, in the notebook) and the local cluster's Python gateway, towards its
revisions (:class:`Pool`) and towards its clients (:class:`ServerConnection`). It lives outside both
packages so that the client never imports the local cluster. Everything else uses httpx.

The client side (:class:`Pool`) does this, and only this:

- writes a request head (:func:`request_head`); bodies are sent as given (a length is required:
  no chunked *requests*);
- parses answers with ``httptools`` (llhttp, the parser uvicorn uses): status, headers, a body
  framed by Content-Length, chunked transfer coding, or the end of the connection; interim 1xx
  answers are skipped; no body after a HEAD request;
- keeps connections alive between requests, one request at a time per connection (no pipelining),
  most recently used first, closing those idle for longer than ``idle_seconds``;
- bounds each request by ``timeout`` seconds (connecting included), with one sweep timer per pool
  rather than a timer per request (two timer handles per request would be a measurable share of
  the gateway's CPU).

Why not httpx or h11: both are far slower per request than a pre-encoded head on an asyncio
transport with llhttp's parser, and the callers of this module exist because their per-request CPU
matters (a shared 2-core machine runs the notebook, the gateway and the model servers); httpx
remains the client for everything else (single predictions, proxies, injected transports).

Failures raise :class:`WireError`; ``retryable`` is set only when the request certainly reached no
one who could act on it: the connection was refused, or a reused keep-alive connection was found
closed before any byte of an answer arrived (the server closed it while it sat idle).

The server side (:class:`ServerConnection`, one per accepted connection) parses requests with
llhttp, answers them one at a time and in order through a :class:`Handler` (pipelined requests
queue, reading pauses meanwhile), honours keep-alive, ``Connection: close``, HTTP/1.0, chunked and
``Expect: 100-continue`` request bodies and HEAD, refuses oversized bodies with a 413 and malformed
requests with a 400, and closes connections idle for too long when the handler sweeps them.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import NamedTuple, Protocol

import httptools

log = logging.getLogger(__name__)

#: ``(host, port)`` of a server.
Endpoint = tuple[str, int]

# Hop-by-hop headers (RFC 9110 §7.6.1) and the framing this module owns: never handed to callers.
HOP_BY_HOP = frozenset(
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

#: Bodies at least this large are written after their head rather than copied into one buffer.
COPY_LIMIT = 65536


class Response(NamedTuple):
    """One answer: the status, its end-to-end headers and the whole body.

    ``headers`` holds each header as four pieces (``name, b": ", value, b"\\r\\n"``) so that a proxy
    forwards them with one ``b"".join``; :func:`header` looks one up.
    """

    status: int
    headers: list[bytes]
    body: bytes


def header(headers: list[bytes], name: bytes) -> bytes | None:
    """The value of the first header ``name`` (lower case) in a :class:`Response`'s ``headers``."""
    for i in range(0, len(headers), 4):
        if headers[i].lower() == name:
            return headers[i + 2]
    return None


def request_head(method: bytes, target: bytes, headers: Iterable[bytes], length: int | None) -> bytes:
    """Request line and header block, ending with the empty line.

    ``headers`` are header lines, or pieces of them, each ending in CRLF once joined; ``length``
    adds a Content-Length (None: no body and no length, as for a GET).
    """
    parts = [method, b" ", target, b" HTTP/1.1\r\n", *headers]
    if length is not None:
        parts.append(b"content-length: %d\r\n" % length)
    parts.append(b"\r\n")
    return b"".join(parts)


def header_lines(headers: Mapping[str, str]) -> bytes:
    """``Name: value`` lines of ``headers`` (framing headers left out: this module sets them).

    The caller checks names and values (no CR/LF): they go on the wire as given.
    """
    skip = ("content-length", "transfer-encoding", "connection")
    return "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() not in skip).encode("latin-1")


class WireError(Exception):
    """One exchange failed. ``reason`` reads after the server's name ("refused the connection").

    ``retryable``: the request certainly reached no one who could have acted on it.
    """

    def __init__(self, reason: str, *, retryable: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class ConnectFailed(WireError):
    """No connection could be made (``cause`` is the ``OSError``); retryable when refused."""

    def __init__(self, reason: str, cause: OSError) -> None:
        super().__init__(reason, retryable=isinstance(cause, ConnectionRefusedError))
        self.cause = cause


class TimedOut(WireError):
    """No complete answer within the pool's timeout."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, pool: Pool, endpoint: Endpoint) -> None:
        self._pool = pool
        self.endpoint = endpoint
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.deadline = 0.0  # loop time by which the current answer must be complete
        self.idle_since = 0.0
        self._waiter: asyncio.Future[Response] | None = None
        # One parser per connection: llhttp parses consecutive keep-alive answers.
        self._parser = httptools.HttpResponseParser(self)
        self._reset(head=False)

    def _reset(self, head: bool) -> None:
        self._head = head
        self._status = 0
        self._headers: list[bytes] = []
        self._body: list[bytes] = []
        self._received = False
        self._framed = False  # content-length or chunked: the end is known without EOF
        self._keep_alive = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the connection is out of step
            self.close()
            return
        self._received = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(WireError(f"sent an invalid HTTP response ({e})"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool._forget(self)
        if self._waiter is None or self._waiter.done():
            return
        if self._status and not self._framed:
            self._finish()  # HTTP/1.0-style body delimited by the end of the connection
            return
        if self._received:
            self._fail(WireError("closed the connection mid-answer"))
        else:
            self._fail(WireError("closed the connection before answering", retryable=self.reused))

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self._waiter is None:  # a second answer to one request: never pipelined, so corrupt
            self._keep_alive = False
            raise WireError("sent more than one answer")
        self._headers = []
        self._framed = False

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower in HOP_BY_HOP:
            if lower == b"content-length" or (lower == b"transfer-encoding" and b"chunked" in value.lower()):
                self._framed = True
        else:
            self._headers += (name, b": ", value, b"\r\n")

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            return  # interim answer (100 Continue): the real one follows
        self._status = status
        self._keep_alive = self._parser.should_keep_alive()
        if self._head:  # no body follows a HEAD answer, whatever content-length says
            self._keep_alive = False
            self._finish()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._status:  # else the end of an interim answer
            self._finish()

    # request/response
    def request(self, head: bytes, body: bytes, is_head: bool, deadline: float) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._reset(is_head)
        self._waiter = self._pool._loop.create_future()
        self.deadline = deadline
        if len(body) < COPY_LIMIT:
            self.transport.write(head + body)
        else:
            self.transport.write(head)
            self.transport.write(body)
        return self._waiter

    def _finish(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(Response(self._status, self._headers, b"".join(self._body)))
        if not self._keep_alive:
            self.close()

    def _fail(self, error: WireError) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    @property
    def reusable(self) -> bool:
        return not self.closed and self._keep_alive and self._waiter is None

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True


class Pool:
    """Keep-alive HTTP/1.1 connections per endpoint, on the running event loop.

    Parameters
    ----------
    timeout:
        Seconds a request may take, connecting included (checked by a sweep every
        ``min(1, timeout / 4)`` seconds, so it fires within a quarter of the timeout after it).
    idle_seconds:
        Idle connections older than this are closed: keep it below the servers' own keep-alive
        timeout (uvicorn's is 65 s), so a server never closes one this pool is about to reuse.
    max_idle:
        Idle connections kept per endpoint.
    ssl_context:
        TLS for every connection of this pool (certificates checked against the endpoint's host
        name unless the context says otherwise); None for plain TCP.
    """

    def __init__(
        self,
        *,
        timeout: float,
        idle_seconds: float = 30.0,
        max_idle: int = 256,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.timeout = timeout
        self.idle_seconds = idle_seconds
        self.max_idle = max_idle
        self._ssl = ssl_context
        self._tick = min(1.0, timeout / 4)
        self._idle: dict[Endpoint, list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._wanted: frozenset[Endpoint] | None = None  # None: keep connections to any endpoint
        self._closed = False
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # bound on first use

    async def request(self, endpoint: Endpoint, head: bytes, body: bytes = b"", *, is_head: bool = False) -> Response:
        """Send one request to ``endpoint`` and return the answer; raises :class:`WireError`.

        A cancelled request closes its connection: its answer would arrive out of step.
        """
        loop = self._loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        conn = await self._acquire(endpoint, loop)
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._tick, self._sweep)
        waiter = conn.request(head, body, is_head, deadline)
        self._busy.add(conn)
        try:
            response = await waiter
        except asyncio.CancelledError:
            conn.close()
            raise
        finally:
            self._busy.discard(conn)
        self._release(conn, loop)
        return response

    async def _acquire(self, endpoint: Endpoint, loop: asyncio.AbstractEventLoop) -> _Connection:
        idle = self._idle.get(endpoint)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        tls = self._ssl
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(self, endpoint), endpoint[0], endpoint[1],
                    ssl=tls, server_hostname=endpoint[0] if tls is not None else None,
                ),
                self.timeout,
            )
        except ConnectionRefusedError as e:
            raise ConnectFailed("refused the connection", e) from e
        except TimeoutError as e:
            raise ConnectFailed(f"did not accept a connection within {self.timeout:g} s", TimeoutError()) from e
        except ssl.SSLError as e:
            raise ConnectFailed(f"failed the TLS handshake: {e.reason or e}", e) from e
        except OSError as e:
            raise ConnectFailed(f"could not be reached: {e.strerror or e}", e) from e
        return conn

    def _release(self, conn: _Connection, loop: asyncio.AbstractEventLoop) -> None:
        idle = self._idle.setdefault(conn.endpoint, [])
        wanted = self._wanted is None or conn.endpoint in self._wanted
        if not conn.reusable or self._closed or not wanted or len(idle) >= self.max_idle:
            conn.close()
            return
        conn.reused = True
        conn.idle_since = loop.time()
        idle.append(conn)

    def _sweep(self) -> None:
        """Fail the requests past their deadline, close connections idle for too long."""
        now = self._loop.time()
        for conn in [c for c in self._busy if c.deadline <= now]:
            conn._fail(TimedOut(f"did not answer within {self.timeout:g} s"))
            conn.close()
        for idle in self._idle.values():
            for conn in [c for c in idle if now - c.idle_since >= self.idle_seconds]:
                conn.close()  # connection_lost → _forget() drops it from the list
        # Sleep while there is nothing to watch (a client's pool between runs).
        watching = self._busy or any(self._idle.values())
        self._sweeper = self._loop.call_later(self._tick, self._sweep) if watching and not self._closed else None

    def _forget(self, conn: _Connection) -> None:
        """A connection closed: drop it from the idle list at once (not at its next use)."""
        idle = self._idle.get(conn.endpoint)
        if idle and conn in idle:
            idle.remove(conn)

    def retain_only(self, endpoints: frozenset[Endpoint]) -> None:
        """Keep connections only to ``endpoints`` from now on; close idle ones to the others."""
        self._wanted = endpoints
        for endpoint in [e for e in self._idle if e not in endpoints]:
            for conn in self._idle.pop(endpoint):
                conn.close()

    def close(self, *, abort_busy: bool = False) -> None:
        """Close the idle connections (and, with ``abort_busy``, those in use); keep none after."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self.retain_only(frozenset())
        if abort_busy:
            for conn in list(self._busy):
                conn._fail(WireError("the client was closed"))
                if conn.transport is not None:
                    conn.transport.abort()
                conn.closed = True


# --- the server side: one connection of an HTTP/1.1 server --------------------------------------

#: Status, header lines as pieces for one ``b"".join`` (``name, b": ", value, b"\r\n"``…), body.
Answer = tuple[int, list[bytes], bytes]

_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}


class App(Protocol):
    """What a :class:`Server` answers requests with (the local gateway, the metrics exporter).

    ``answer`` turns a parsed request into ``(status, header pieces, body)``; ``error`` builds the
    answers a connection gives itself (400 malformed, 413 too large, 500 when ``answer`` raised).
    ``max_body`` bounds a request body (413 beyond) and ``idle_seconds`` how long an idle keep-alive
    connection stays open; both are read when needed, so an app may derive them from settings.
    """

    @property
    def max_body(self) -> int: ...

    @property
    def idle_seconds(self) -> float: ...

    async def answer(self, request: ServerRequest) -> Answer: ...

    def error(self, status: int, message: str) -> Answer: ...


class Server:
    r"""A listening HTTP/1.1 server: its :class:`ServerConnection`\ s, their idle sweep, a graceful close.

    The one server loop of the package; what it answers is its :class:`App`. It is the
    :class:`Handler` of every connection it accepts.
    """

    def __init__(
        self, app: App, host: str = "127.0.0.1", port: int = 0, *,
        drop: frozenset[bytes] = HOP_BY_HOP, backlog: int = 100,
    ) -> None:
        self._app = app
        self._host = host
        self._port = port
        self._drop = drop
        self._backlog = backlog
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[ServerConnection] = set()
        self._closing = False
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`; the one asked for before)."""
        return self._port

    @property
    def connections(self) -> int:
        """How many client connections are open."""
        return len(self._connections)

    async def start(self) -> int:
        """Bind ``host`` (``port``, or a free one when 0) in the running loop and return the port."""
        loop = asyncio.get_running_loop()
        self._closing = False
        self._server = await loop.create_server(
            lambda: ServerConnection(self, loop, self._drop), self._host, self._port,
            backlog=self._backlog, reuse_address=True,
        )
        self._port = int(self._server.sockets[0].getsockname()[1])
        self._sweeper = loop.call_later(1.0, self._sweep, loop)
        return self._port

    async def close(self, grace: float = 0.0) -> None:
        """Stop listening; connections close after their answer in progress, and after ``grace``
        seconds those still busy are cut."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._server is None:
            return
        loop = asyncio.get_running_loop()
        self._closing = True
        self._server.close()
        for conn in list(self._connections):
            conn.shutdown()
        deadline = loop.time() + grace
        while self._connections and loop.time() < deadline:
            await asyncio.sleep(0.01)
        for conn in list(self._connections):
            conn.abort()
        self._server = None

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        # One timer a second for every connection, not one per request.
        now = loop.time()
        idle = self._app.idle_seconds
        for conn in list(self._connections):
            conn.sweep(now, idle)
        self._sweeper = loop.call_later(1.0, self._sweep, loop)

    # --- Handler: what the connections call ---

    @property
    def closing(self) -> bool:
        """True once :meth:`close` began: connections close after their answer in progress."""
        return self._closing

    @property
    def max_body(self) -> int:
        """The app's request body bound."""
        return self._app.max_body

    def register(self, conn: ServerConnection) -> None:
        """A connection opened."""
        self._connections.add(conn)

    def unregister(self, conn: ServerConnection) -> None:
        """A connection closed."""
        self._connections.discard(conn)

    async def answer(self, request: ServerRequest) -> Answer:
        """The app's answer."""
        return await self._app.answer(request)

    def error(self, status: int, message: str) -> Answer:
        """The app's error answer."""
        return self._app.error(status, message)


class Handler(Protocol):
    """What a :class:`ServerConnection` serves (implemented by :class:`Server`).

    ``answer`` turns a parsed request into ``(status, header pieces, body)``; ``error`` builds the
    answers the connection gives itself (400 malformed, 413 too large, 500 when ``answer`` raised).
    ``closing`` makes every connection close after its answer in progress; ``max_body`` bounds a
    request body (413 beyond). ``register``/``unregister`` track the open connections.
    """

    @property
    def closing(self) -> bool: ...

    @property
    def max_body(self) -> int: ...

    def register(self, conn: ServerConnection) -> None: ...

    def unregister(self, conn: ServerConnection) -> None: ...

    async def answer(self, request: ServerRequest) -> Answer: ...

    def error(self, status: int, message: str) -> Answer: ...


class ServerRequest:
    """One request as a :class:`ServerConnection` parsed it (headers as pieces for one ``b"".join``)."""

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


def _rejected(status: int, message: str) -> ServerRequest:
    request = ServerRequest()
    request.error = (status, message)
    request.keep_alive = False
    return request


class _Rejected(Exception):
    """Raised in a parser callback to stop parsing a request the server refuses (413)."""


class ServerConnection(asyncio.Protocol):
    """One client connection of an HTTP/1.1 server: requests parsed by httptools, answered one at a
    time, in order, by a :class:`Handler`.

    Pipelined requests are parsed as they arrive and queued; while one is being answered, the
    connection stops reading after the data already received, so a client cannot make the server
    buffer more than one read's worth of requests. Answers are written with one ``transport.write``
    of head and body. A connection is served by one task per busy period, not one per request.

    ``drop``: lower-case names of request headers left out of :attr:`ServerRequest.headers` (a
    proxy passes its hop-by-hop set); the framing headers and the content type are always left out
    (the body arrives whole; the content type is :attr:`ServerRequest.content_type`).
    """

    def __init__(self, handler: Handler, loop: asyncio.AbstractEventLoop, drop: frozenset[bytes] = HOP_BY_HOP) -> None:
        self._handler = handler
        # Never forwarded as they came: framing is recomputed, the content type is read apart.
        self._drop = drop | {b"content-length", b"transfer-encoding", b"expect", b"content-type"}
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._request: ServerRequest | None = None  # being parsed
        self._queue: deque[ServerRequest] = deque()  # parsed, waiting their turn
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
        self._handler.register(self)
        if self._handler.closing:  # accepted just before the listener closed
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
        self._handler.unregister(self)
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
        self._request = ServerRequest()

    def on_url(self, url: bytes) -> None:
        assert self._request is not None
        self._request.url += url  # may come in pieces when the request line spans reads

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self._request
        assert request is not None
        name = name.lower()
        if name not in self._drop:
            request.headers += (name, b": ", value, b"\r\n")
            if name == b"host" and not request.host:
                request.host = value
        elif name == b"content-type":
            request.content_type = value
        elif name == b"expect":
            request.expect_continue = value.lower() == b"100-continue"
        elif name == b"content-length" and value.isdigit() and int(value) > self._handler.max_body:
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
        if request.size > self._handler.max_body:
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
                    response = self._handler.error(*request.error)
                else:
                    try:
                        response = await self._handler.answer(request)
                    except Exception:
                        log.exception("unexpected error answering %r", request.url)
                        response = self._handler.error(500, "internal error (see the daemon's log)")
                        request.keep_alive = False
                if not self._respond(request, *response):
                    return
        finally:
            self._task = None
        self._idle()

    def _respond(self, request: ServerRequest, status: int, headers: list[bytes], body: bytes) -> bool:
        """Write one answer; returns whether the connection stays open for the next request."""
        if self._closed or self._transport is None:
            return False
        keep_alive = request.keep_alive and not self._handler.closing
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
        if len(body) < COPY_LIMIT:
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
        if self._handler.closing:
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

    def _refuse_body(self, request: ServerRequest) -> None:
        request.error = (413, f"request body larger than {self._handler.max_body} bytes")
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

    def sweep(self, now: float, idle_seconds: float) -> None:
        """Close the connection after ``idle_seconds`` without traffic or work."""
        if self._active or self._task is not None:
            self._active = False
            self._idle_since = now
        elif now - self._idle_since >= idle_seconds:
            self._close()
