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

Performance: both HTTP edges are :mod:`kserve_nb.http1`'s (asyncio protocols on httptools' llhttp
parser, in the daemon's uvloop event loop): the client edge is its :class:`~kserve_nb.http1.Server`
with this gateway as the :class:`~kserve_nb.http1.App` (a small HTTP/1.1 server without
uvicorn's per-request ASGI machinery), the upstream side its :class:`~kserve_nb.http1.Pool`, the
same client the prediction client's bulk sender uses. A general-purpose server or client would be a
large share of the gateway's CPU per request against a fast upstream (``benchmarks/bench_gateway.py``
measures the gateway against a direct connection). The routing table is immutable and swapped whole by
:meth:`Gateway.update`, so a request never sees half an update and the hot path takes no locks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import posixpath
import re
import time
from urllib.parse import unquote

import httptools

from kserve_nb import http1
from kserve_nb.local import routing
from kserve_nb.local.exporter import RequestMetrics
from kserve_nb.local.routing import Endpoints, Route, Routes, Upstream

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
        self._table: dict[str, Route] = {}
        self._pool = http1.Pool(
            timeout=UPSTREAM_TIMEOUT_SECONDS, idle_seconds=UPSTREAM_IDLE_SECONDS, max_idle=UPSTREAM_MAX_IDLE
        )
        # The client edge: the package's one HTTP/1.1 server, answering with this gateway.
        self._edge = http1.Server(self, host, port, drop=_REQUEST_DROP, backlog=2048)
        #: Requests this gateway forwarded to a revision itself, by revision and status (Knative's
        #: queue-proxy metrics; nginx counts the ones it forwards, so none is counted twice).
        self.metrics = RequestMetrics()

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return self._edge.port

    @property
    def connections(self) -> int:
        """How many client connections are open."""
        return self._edge.connections

    async def start(self) -> int:
        """Bind (only ``host``), start serving in the running loop, and return the port."""
        return await self._edge.start()

    async def close(self) -> None:
        """Stop listening, let in-flight requests finish (bounded), close upstream connections."""
        await self._edge.close(grace=CLOSE_GRACE_SECONDS)
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

    # --- http1.App: what the client edge answers with ---

    @property
    def max_body(self) -> int:
        """The largest request body accepted (:data:`MAX_BODY_BYTES`, read when asked)."""
        return MAX_BODY_BYTES

    @property
    def idle_seconds(self) -> float:
        """How long an idle client keep-alive connection stays open (:data:`CLIENT_IDLE_SECONDS`, read when asked)."""
        return CLIENT_IDLE_SECONDS

    def error(self, status: int, message: str) -> _Response:
        """The JSON answer ``{"error": message}`` the edge gives itself (400, 413, 500)."""
        return _error(status, message, None)

    async def answer(self, request: http1.ServerRequest) -> _Response:
        """Route and forward one request; a request at fault is answered with its 4xx."""
        try:
            return await self._answer(request)
        except _Refused as refused:
            return _error(refused.status, refused.message, None)

    async def _answer(self, request: http1.ServerRequest) -> _Response:
        """Route and forward one request: the status, header lines and body to answer with."""
        if _is_model_repository(request.url):
            return _error(403, MODEL_REPOSITORY_REFUSAL, None)
        host = _host_name(request.host)
        route = self._table.get(host)
        if route is None:
            return _error(404, routing.no_route_message(host, list(self._table)), None)
        upstream = route.pick()
        if upstream is None:
            names = ",".join(name for name, _ in route.unready) or None
            return _error(503, routing.unready_message(route), names)
        body = b"".join(request.body)
        head, coerced = _request_head(request, body)
        is_head = request.method == b"HEAD"
        # Timed like queue-proxy's app latency: from handing the request on to having the answer.
        started = _clock()
        try:
            status, headers, data = await self._pool.request(upstream.endpoint, head, body, is_head=is_head)
        except http1.WireError as first:
            retry = route.pick(exclude=upstream.name) if first.retryable else None
            if retry is None:
                return self._failed(route, upstream, first, started)
            upstream = retry
            try:
                status, headers, data = await self._pool.request(upstream.endpoint, head, body, is_head=is_head)
            except http1.WireError as second:
                return self._failed(route, upstream, second, started)
            except asyncio.CancelledError:
                self.metrics.observe(upstream.series, 499, (_clock() - started) * 1000.0)
                raise
        except asyncio.CancelledError:  # the client hung up first: nginx's 499, counted alike
            self.metrics.observe(upstream.series, 499, (_clock() - started) * 1000.0)
            raise
        self.metrics.observe(upstream.series, status, (_clock() - started) * 1000.0)
        headers.append(upstream.revision_line)
        if coerced:
            headers.append(_COERCED_LINE)
        return status, headers, data

    def _failed(self, route: Route, upstream: Upstream, error: http1.WireError, started: float) -> _Response:
        """The error answer for a revision that could not answer, counted with its status."""
        response = _error(*_failure(route, upstream, error))
        self.metrics.observe(upstream.series, response[0], (_clock() - started) * 1000.0)
        return response


# --- helpers -----------------------------------------------------------------------------

_clock = time.perf_counter



def _host_name(value: bytes) -> str:
    """The Host header's name part, lower-case, without the port."""
    return routing.host_key(value.decode("latin-1"))


def _request_head(request: http1.ServerRequest, body: bytes) -> tuple[bytes, bool]:
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


def _failure(route: Route, upstream: Upstream, error: http1.WireError) -> tuple[int, str, str]:
    """Rules 5 and 6 of :mod:`~kserve_nb.local.routing`: the answer for an upstream that failed."""
    if error.retryable:
        return 503, routing.unreachable_message(route.host, upstream.name, error.reason), upstream.name
    if isinstance(error, http1.TimedOut):
        return 504, routing.timeout_message(upstream.name, UPSTREAM_TIMEOUT_SECONDS), upstream.name
    return 502, routing.failed_message(upstream.name, f"the model server {error.reason}"), upstream.name
