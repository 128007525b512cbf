"""Per-revision request metrics of the local ingress, named and labelled as Knative's queue-proxy.

On a KServe Serverless cluster every revision pod's queue-proxy exports (Knative's "Metrics API"):

- ``revision_app_request_count`` — counter of requests routed to the user container;
- ``revision_app_request_latencies`` — histogram of their response time in milliseconds
  (``_bucket{le}``, ``_sum``, ``_count``);

both labelled ``namespace_name``, ``configuration_name``, ``service_name``, ``revision_name``,
``response_code`` and ``response_code_class``. KServe names the Knative Service and Configuration
of a predictor ``{isvc}-predictor``. The local ingress (nginx's Lua, or the Python gateway; each
counts only the requests it forwards to a revision itself, so none is counted twice) exports the
same series, so one PromQL text reads a real and the local cluster alike. Buckets are
:data:`~kserve_nb.metrics.sample.LATENCY_BUCKETS_MS`, a superset of Knative's.

This module holds the Python gateway's counters (:class:`RequestMetrics`), the exposition format
both data planes share (:func:`series_labels`, :data:`LE_LABELS`, the HELP/TYPE text) and a tiny
loopback HTTP endpoint that serves them behind a bearer token (:class:`MetricsServer`).
"""

from __future__ import annotations

import asyncio
import bisect
import hmac
import logging
import re
from collections.abc import Callable

from kserve_nb.metrics.sample import LATENCY_BUCKETS_MS

log = logging.getLogger(__name__)

REQUEST_COUNT = "revision_app_request_count"
REQUEST_LATENCIES = "revision_app_request_latencies"
#: Knative's own HELP texts.
HEADER_COUNT = (
    f"# HELP {REQUEST_COUNT} The number of requests that are routed to user-container\n"
    f"# TYPE {REQUEST_COUNT} counter\n"
)
HEADER_LATENCIES = (
    f"# HELP {REQUEST_LATENCIES} The response time in millisecond\n"
    f"# TYPE {REQUEST_LATENCIES} histogram\n"
)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: The name of the token file in the state dir that both exporters check and Prometheus sends.
TOKEN_FILE = "metrics.token"  # noqa: S105 - a file name, not a secret


def _le(bound: float) -> str:
    # One spelling for both exporters: PromQL groups ``le`` by its text, so "1" and "1.0" would
    # be two buckets. Go's FormatFloat(b, 'f', -1) (what Knative's exporter uses) writes "1", "0.5".
    text = repr(float(bound))
    return text[:-2] if text.endswith(".0") else text


#: ``le`` label values of the finite buckets, in order (``+Inf`` follows).
LE_LABELS: tuple[str, ...] = tuple(_le(b) for b in LATENCY_BUCKETS_MS)

_ESCAPE = re.compile(r'[\\"\n]')


def _escape(value: str) -> str:
    return _ESCAPE.sub(lambda m: {"\\": "\\\\", '"': '\\"', "\n": "\\n"}[m.group()], value)


def series_labels(namespace: str, revision: str) -> str:
    """The labels naming one revision, as exposition text (without braces).

    ``sklearn-iris-predictor-00002`` belongs to the Knative Configuration and Service
    ``sklearn-iris-predictor`` (KServe's names), which is the revision name without its number.
    """
    configuration = revision.rsplit("-", 1)[0] if re.search(r"-\d+$", revision) else revision
    return (
        f'namespace_name="{_escape(namespace)}",configuration_name="{_escape(configuration)}",'
        f'service_name="{_escape(configuration)}",revision_name="{_escape(revision)}"'
    )


class RequestMetrics:
    """Cumulative per-revision request counts and latency histograms (the Python gateway's).

    :meth:`observe` is on the gateway's hot path: one dict lookup, one bisect, three additions.
    Single-threaded (the gateway's event loop), so no lock.
    """

    def __init__(self) -> None:
        # (series labels, status code) -> [count, sum of ms, per-bucket counts (+Inf last)]
        self._series: dict[tuple[str, int], list] = {}  # type: ignore[type-arg]

    def observe(self, series: str, status: int, ms: float) -> None:
        """Count one request of the revision ``series`` (see :func:`series_labels`) answered with
        ``status`` after ``ms`` milliseconds."""
        entry = self._series.get((series, status))
        if entry is None:
            entry = self._series[(series, status)] = [0, 0.0, [0] * (len(LATENCY_BUCKETS_MS) + 1)]
        entry[0] += 1
        entry[1] += ms
        entry[2][bisect.bisect_left(LATENCY_BUCKETS_MS, ms)] += 1

    def render(self) -> str:
        """All series in Prometheus' text exposition format (0.0.4)."""
        counts, histograms = [HEADER_COUNT], [HEADER_LATENCIES]
        for (series, status), (count, total, buckets) in sorted(self._series.items()):
            labels = f'{series},response_code="{status}",response_code_class="{status // 100}xx"'
            counts.append(f"{REQUEST_COUNT}{{{labels}}} {count}\n")
            running = 0
            for le, n in zip(LE_LABELS, buckets):
                running += n
                histograms.append(f'{REQUEST_LATENCIES}_bucket{{{labels},le="{le}"}} {running}\n')
            histograms.append(f'{REQUEST_LATENCIES}_bucket{{{labels},le="+Inf"}} {count}\n')
            histograms.append(f"{REQUEST_LATENCIES}_sum{{{labels}}} {total!r}\n")
            histograms.append(f"{REQUEST_LATENCIES}_count{{{labels}}} {count}\n")
        return "".join(counts) + "".join(histograms)


class MetricsServer:
    """``GET /metrics`` on 127.0.0.1 behind ``Authorization: Bearer <token>``; nothing else.

    Prometheus scrapes it once a second at most, so a minimal HTTP/1.1 answer per connection
    (``Connection: close``) is all it needs.
    """

    def __init__(self, render: Callable[[], str], token: str, port: int = 0) -> None:
        self._render = render
        self._expected = f"Bearer {token}".encode()
        self._port = port
        self._server: asyncio.AbstractServer | None = None

    def __repr__(self) -> str:  # never shows the token
        return f"MetricsServer(port={self._port})"

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return self._port

    async def start(self) -> int:
        """Listen on 127.0.0.1 (``port``, or a free one when 0) and return the port."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self._port)
        self._port = int(self._server.sockets[0].getsockname()[1])
        return self._port

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            status, body = self._answer(head)
            writer.write(
                b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                % (status, b"OK" if status == 200 else b"Error", CONTENT_TYPE.encode(), len(body))
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()

    def _answer(self, head: bytes) -> tuple[int, bytes]:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[0] != b"GET" or parts[1].split(b"?", 1)[0] != b"/metrics":
            return 404, b"only GET /metrics is served here\n"
        authorization = b""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"authorization":
                authorization = value.strip()
        if not hmac.compare_digest(authorization, self._expected):
            return 401, b"a bearer token is required (the state dir's metrics.token)\n"
        return 200, self._render().encode()
