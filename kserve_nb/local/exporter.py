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

A Standard-mode (RawDeployment) target is the process serving one pod template of a Deployment, so
its ``revision_name`` (and ``configuration_name``) is the ReplicaSet-like
``{deployment}-{pod-template-hash}``: :data:`~kserve_nb.metrics.prometheus.STANDARD_LOCAL` sums
those by Deployment — a side — with ``label_replace``, as the real-cluster Standard queries sum pods.

This module holds the Python gateway's counters (:class:`RequestMetrics`), the exposition format
both data planes share (:func:`series_labels`, :data:`LE_LABELS`, the HELP/TYPE text) and a tiny
loopback HTTP endpoint that serves them behind a bearer token (:class:`MetricsServer`, on
:mod:`kserve_nb.http1`'s server connection).
"""

from __future__ import annotations

import bisect
import hmac
import logging
import re
from collections.abc import Callable

from kserve_nb import http1
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

    An :class:`kserve_nb.http1.Server` answering with itself (its :class:`~kserve_nb.http1.App`).
    """

    #: A scrape request has no body; anything larger is refused (413).
    MAX_BODY = 64 * 1024
    #: Idle connections (Prometheus keeps one per target) are closed after this long.
    IDLE_SECONDS = 75.0

    def __init__(self, render: Callable[[], str], token: str, port: int = 0) -> None:
        self._render = render
        self._expected = f"Bearer {token}".encode()
        self._server = http1.Server(self, "127.0.0.1", port)

    def __repr__(self) -> str:  # never shows the token
        return f"MetricsServer(port={self._server.port})"

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return self._server.port

    async def start(self) -> int:
        """Listen on 127.0.0.1 (``port``, or a free one when 0) and return the port."""
        return await self._server.start()

    async def close(self) -> None:
        """Stop listening and close the connections."""
        await self._server.close()

    # --- http1.App ---

    @property
    def max_body(self) -> int:
        """The largest request body accepted."""
        return self.MAX_BODY

    @property
    def idle_seconds(self) -> float:
        """How long an idle connection stays open."""
        return self.IDLE_SECONDS

    def error(self, status: int, message: str) -> http1.Answer:
        """A plain-text error answer."""
        return status, [b"content-type: text/plain; charset=utf-8\r\n"], (message + "\n").encode()

    async def answer(self, request: http1.ServerRequest) -> http1.Answer:
        """The exposition, for ``GET /metrics`` with the bearer token."""
        if request.method not in (b"GET", b"HEAD") or request.url.split(b"?", 1)[0] != b"/metrics":
            return self.error(404, "only GET /metrics is served here")
        authorization = http1.header(request.headers, b"authorization") or b""
        if not hmac.compare_digest(authorization.strip(), self._expected):
            return self.error(401, "a bearer token is required (the state dir's metrics.token)")
        return 200, [b"content-type: " + CONTENT_TYPE.encode() + b"\r\n"], self._render().encode()
