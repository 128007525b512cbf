"""Prediction client: call one side of a release through the ingress gateway.

Every request goes to the ingress base URL with the ``Host`` header of its :class:`Target`
(``sklearn-iris-predictor…`` for the weighted default route, ``latest-…``/``prev-…`` for the tag
routes) and the target's own extra headers, if any (an HTTPRoute header match), exactly like
``curl -H "Host: …" http://$INGRESS/v1/models/sklearn-iris:predict``.

- :meth:`PredictionClient.predict` is one call on an ``httpx.Client``; failures raise one-line errors.
- :meth:`PredictionClient.send` replays many inputs against several targets concurrently and returns
  one tidy row per request (failures are rows, not exceptions). It runs on a private event loop in
  a worker thread, through one engine (:func:`kserve_nb.predict.bulk.send_one`: retry once, circuit
  breaker) over one of two transports, chosen in :func:`choose_sender`: the fast HTTP/1.1 pool of
  :mod:`kserve_nb.http1`, or this client's httpx client when only httpx can apply what was asked
  (an injected transport or auth flow, a proxy from the environment).

Headers may carry bearer tokens: they are never logged and never shown in a repr.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.cookiejar
import logging
import os
import ssl
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import httpx

from kserve_nb import __version__
from kserve_nb.errors import IngressUnreachable, PredictionError, ValidationError
from kserve_nb.predict import protocol as proto
from kserve_nb.predict.bulk import (
    REVISION_HEADER,
    Http1Sender,
    HttpxSender,
    Job,
    JobResult,
    LoopThread,
    Sender,
    run_jobs,
    send_one,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

USER_AGENT = f"kserve-nb/{__version__}"

T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    """Where one side of the release answers.

    Parameters
    ----------
    name:
        ``"default"`` (the weighted route), ``"latest"`` or ``"prev"`` (the tag routes), or any label.
    host:
        ``Host`` header, e.g. ``"latest-sklearn-iris-predictor.kserve-test.example.com"``.
    revision:
        Revision the tag points at; None for the weighted default host (the gateway may still
        name the answering revision in an ``x-kserve-revision`` response header).
    headers:
        Extra headers every request to this side carries, e.g. ``{"x-kserve-side": "v2"}`` for an
        HTTPRoute rule that matches on it; they override the client's headers of the same name.
        Shown in the repr (they are routing headers), except credentials.
    """

    name: str
    host: str
    revision: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        headers = dict(self.headers or {})
        for key, value in headers.items():
            _check_header(key, value)
            if key.lower() in _TRANSPORT_HEADERS:
                raise ValidationError(f"a Target cannot set {key!r}: the client sends it (Host is the host argument)")
        # Read-only, so a frozen Target stays what it was when built.
        object.__setattr__(self, "headers", MappingProxyType(headers))

    def __repr__(self) -> str:
        extra = ""
        if self.headers:
            shown = {k: ("***" if k.lower() in _SECRET_HEADERS else v) for k, v in self.headers.items()}
            extra = f", headers={shown!r}"
        return f"Target(name={self.name!r}, host={self.host!r}, revision={self.revision!r}{extra})"

    @classmethod
    def from_url(cls, name: str, url: str, revision: str | None = None) -> Target:
        """Target from a status URL such as ``http://latest-sklearn-iris-predictor.kserve-test.example.com``."""
        host = urlsplit(url if "://" in url else f"http://{url}").hostname
        if not host:
            raise ValidationError(f"cannot read a host name from {url!r}")
        return cls(name=name, host=host, revision=revision)


#: Headers the client itself sends for every request; a Target may not replace them.
_TRANSPORT_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
#: Headers whose values a repr never shows.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


@dataclass(frozen=True)
class PredictionResult:
    """The answer to one :meth:`PredictionClient.predict` call.

    Attributes
    ----------
    target:
        Target name the request was sent to.
    revision:
        Revision that answered (response header ``x-kserve-revision`` if present, else the
        target's revision, else None).
    predictions:
        One prediction per instance sent.
    status_code:
        HTTP status (2xx; errors raise instead).
    latency_ms:
        Wall time from sending to having read the whole body.
    response:
        Decoded response body, for anything the parsed predictions leave out.
    """

    target: str
    revision: str | None
    predictions: list[Any]
    status_code: int
    latency_ms: float
    response: Any = field(repr=False, default=None)

    #: Predictions a repr shows before eliding the rest (the full list stays in ``predictions``).
    SHOWN = 10

    def _shown(self) -> str:
        head = ", ".join(repr(p) for p in self.predictions[: self.SHOWN])
        more = f", … {len(self.predictions) - self.SHOWN} more" if len(self.predictions) > self.SHOWN else ""
        return f"[{head}{more}]"

    def summary(self) -> str:
        """One line: which side and revision answered, what, and how fast."""
        who = f"{self.target} → {self.revision}" if self.revision else self.target
        return f"{who}: {self._shown()} (HTTP {self.status_code}, {self.latency_ms:.1f} ms)"

    def __repr__(self) -> str:
        return f"<PredictionResult {self.summary()}>"

    def _repr_html_(self) -> str:
        import html

        who = html.escape(self.target) + (f" → <code>{html.escape(self.revision)}</code>" if self.revision else "")
        return (
            f'<div class="kserve-nb-prediction"><b>{who}</b>: <code>{html.escape(self._shown())}</code> '
            f'<span style="opacity:0.7">HTTP {self.status_code} · {self.latency_ms:.1f} ms</span></div>'
        )


def _ssl_context(verify: bool | str | ssl.SSLContext) -> ssl.SSLContext | bool:
    """One context for both transports, so they trust the same CAs."""
    if verify is False:
        return False
    if isinstance(verify, ssl.SSLContext):
        return verify
    if isinstance(verify, (str, os.PathLike)):
        path = os.fspath(verify)
        if os.path.isdir(path):
            return ssl.create_default_context(capath=path)
        if not os.path.exists(path):
            raise ValidationError(f"verify={path!r}: no such CA bundle file or directory")
        return ssl.create_default_context(cafile=path)
    return httpx.create_ssl_context()  # certifi, httpx's default trust store


def _basic_auth(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _check_header(name: str, value: str) -> None:
    # CR/LF in a header would let a value inject headers or requests on the raw wire path.
    if not isinstance(name, str) or not isinstance(value, str):
        raise ValidationError(
            f"header names and values must be strings, got {type(name).__name__}: {type(value).__name__}"
        )
    if not name or any(c in name for c in " \t\r\n:") or any(c in value for c in "\r\n\0"):
        raise ValidationError(f"invalid header {name!r}: names are tokens, values may not contain line breaks")


def _proxied(url: str) -> bool:
    """True when HTTP(S)_PROXY/ALL_PROXY applies to ``url`` (and NO_PROXY does not exempt it)."""
    import urllib.request

    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if parts.scheme not in proxies and "all" not in proxies:
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


def _no_cookies() -> httpx.Cookies:
    # A jar that refuses every cookie: gateway affinity cookies would make the traffic split sticky.
    jar = http.cookiejar.CookieJar(policy=http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return httpx.Cookies(jar)


class PredictionClient:
    """Send predictions to the sides of a canary release through the ingress gateway.

    Parameters
    ----------
    ingress:
        Base URL of the ingress gateway, e.g. ``"http://127.0.0.1:31380"``.
    model:
        Model name on the URL; for an InferenceService it is the isvc name.
    headers:
        Extra request headers (e.g. ``Authorization``). Never logged, never shown in the repr.
    timeout:
        Seconds per request.
    verify:
        TLS verification for https ingresses: True (default, certifi CAs), a CA bundle path, an
        ``ssl.SSLContext``, or False. Certificates are checked against the ingress host name.
    transport:
        An ``httpx.BaseTransport`` to use instead of the network (then ``send`` goes through it too).
    auth:
        ``(user, password)`` for HTTP basic auth (sent as a header by every transport), or any
        ``httpx.Auth`` flow (then ``send`` goes through httpx, like ``transport``).

    Notes
    -----
    HTTP(S)_PROXY / NO_PROXY from the environment apply to every request (``send`` then goes
    through httpx). Cookies are never kept, so a gateway's affinity cookie cannot make a sampled
    traffic split sticky.

    Examples
    --------
    >>> with PredictionClient("http://127.0.0.1:31380", model="sklearn-iris") as client:  # doctest: +SKIP
    ...     latest = Target("latest", "latest-sklearn-iris-predictor.kserve-test.example.com")
    ...     client.predict(latest, [[6.8, 2.8, 4.8, 1.4]]).predictions
    [2]
    """

    def __init__(
        self,
        ingress: str,
        *,
        model: str,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        verify: bool | str | ssl.SSLContext = True,
        transport: httpx.BaseTransport | None = None,
        auth: tuple[str, str] | httpx.Auth | None = None,
    ) -> None:
        parts = urlsplit(ingress)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValidationError(
                f"ingress must be a base URL like 'http://127.0.0.1:31380', got {ingress!r}"
            )
        if timeout <= 0:
            raise ValidationError(f"timeout must be positive, got {timeout!r}")
        proto.model_path(model)  # validates the name
        self.ingress = ingress.rstrip("/")
        self.model = model
        self.timeout = float(timeout)
        for name, value in (headers or {}).items():
            _check_header(name, value)
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            **dict(headers or {}),
        }
        if isinstance(auth, tuple):
            self._headers["Authorization"] = _basic_auth(*auth)
            auth = None
        self._ssl = _ssl_context(verify) if parts.scheme == "https" else True
        self._http = httpx.Client(
            base_url=self.ingress,
            headers=self._headers,
            timeout=self.timeout,
            verify=self._ssl if parts.scheme == "https" else True,
            transport=transport,
            auth=auth,
            cookies=_no_cookies(),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )
        self._loop = LoopThread()
        self._sender = choose_sender(
            self.ingress, self._http, timeout=self.timeout, ssl_context=self._ssl,
            httpx_only=transport is not None or auth is not None,
        )
        # Stop the loop thread even when the user never calls close(); references the parts, not self.
        self._finalizer = weakref.finalize(self, _shutdown, self._loop, self._sender, self._http)

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Close connections and stop the background loop. Idempotent."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return not self._finalizer.alive

    def __enter__(self) -> PredictionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        # Deliberately no headers: they may hold bearer tokens.
        state = " closed" if self.closed else ""
        return f"<PredictionClient ingress={self.ingress!r} model={self.model!r}{state}>"

    # -- one call --------------------------------------------------------------------------

    def url(self, protocol: str = "v1") -> str:
        """Full URL of the model's inference endpoint on the ingress."""
        return self.ingress + proto.model_path(self.model, protocol)

    def predict(self, target: Target, payload: Any, *, protocol: str = "v1") -> PredictionResult:
        """Send one request to ``target`` and return its predictions.

        Parameters
        ----------
        target:
            The side to call.
        payload:
            Rows (list, numpy array, DataFrame) or a ready V1/V2 dict.
        protocol:
            ``"v1"`` or ``"v2"``.

        Raises
        ------
        PredictionError
            On any HTTP error or an unreadable answer, with the server's message, the status, the
            target and what to do.
        IngressUnreachable
            When the ingress cannot be reached at all.
        """
        self._check_open()
        _check_header("Host", target.host)
        body = proto.build_request(payload, protocol)
        content = proto.dumps(body)
        path = proto.model_path(self.model, protocol)
        t0 = time.perf_counter()
        try:
            resp = self._http.post(path, content=content, headers={**target.headers, "Host": target.host})
        except httpx.ConnectError as exc:
            raise IngressUnreachable(
                f"cannot reach the ingress at {self.ingress} ({exc}); is the cluster up? "
                "Start the local one with `kserve-nb local up` or check the ingress address"
            ) from exc
        except httpx.TimeoutException as exc:
            raise PredictionError(
                f"{target.name} ({target.host}) did not answer within {self.timeout:g} s; the revision may be "
                "scaling from zero or overloaded: retry, or raise timeout="
            ) from exc
        except httpx.HTTPError as exc:
            raise PredictionError(f"request to {target.name} ({target.host}) failed: {exc}") from exc
        latency = (time.perf_counter() - t0) * 1000.0
        data = _decode(resp.content)
        if resp.status_code >= 400:
            raise PredictionError(
                proto.describe_http_error(
                    resp.status_code, data, target=target.name, host=target.host, model=self.model, protocol=protocol
                ),
                status=resp.status_code,
                body=data,
            )
        try:
            preds = proto.parse_response(data, protocol)
        except PredictionError as exc:
            raise PredictionError(
                f"{target.name} ({target.host}) answered {resp.status_code} but {exc.message}",
                status=resp.status_code,
                body=data,
            ) from exc
        revision = resp.headers.get(REVISION_HEADER) or target.revision
        return PredictionResult(target.name, revision, preds, resp.status_code, latency, data)

    # -- many calls ------------------------------------------------------------------------

    def send(
        self,
        targets: Sequence[Target],
        inputs: Any,
        *,
        repeat: int = 1,
        concurrency: int = 32,
        protocol: str = "v1",
        warmup: int = 0,
    ) -> pd.DataFrame:
        """Send every input to every target, concurrently; one row per request.

        Each instance is its own request (so each row gets its own latency and revision).
        Requests are interleaved across the targets, row by row (repeat → row → target), so both
        sides see the same load over time; the target that goes first rotates from row to row
        (A B, B A, A B … for two), so neither side is always the one sent just after the other.
        The returned rows are in repeat → row → target order whatever the sending order was.

        Parameters
        ----------
        targets:
            Sides to call, e.g. ``[latest, prev]`` for a paired replay or ``[default]`` to sample
            the weighted split.
        inputs:
            Rows (list, numpy array, DataFrame), or V1/V2 payload dicts sent as they are.
        repeat:
            How many times to send the whole set.
        concurrency:
            Requests in flight at once.
        protocol:
            ``"v1"`` or ``"v2"``.
        warmup:
            Unrecorded requests sent to each target first (the first rows, interleaved the same
            way), so connection set-up and a revision's first, slow predictions are not measured.
            0 (the default here; :meth:`Service.send <kserve_nb.service.Service.send>` warms up)
            sends none.

        Returns
        -------
        pandas.DataFrame
            Columns ``target, revision, row, repeat, input, prediction, status_code, latency_ms,
            error`` (see :mod:`kserve_nb.analysis.frames`). A failed request is a row whose
            ``error`` says why; the batch always completes. ``df.attrs["warmup"]`` holds how many
            warm-up requests were sent before (and left out).

        Notes
        -----
        Blocks the calling thread but never touches its event loop, so it is safe in a Jupyter
        cell; use :meth:`asend` from a coroutine to keep that loop running meanwhile.
        """
        self._check_open()
        batch = self._batch(targets, inputs, repeat=repeat, concurrency=concurrency, protocol=protocol, warmup=warmup)
        t0 = time.perf_counter()
        outcomes = self._loop.run(lambda: self._run_batch(batch, concurrency))
        log.debug("sent %d requests in %.2f s", len(batch.jobs), time.perf_counter() - t0)
        return batch.frame(outcomes)

    async def asend(
        self,
        targets: Sequence[Target],
        inputs: Any,
        *,
        repeat: int = 1,
        concurrency: int = 32,
        protocol: str = "v1",
        warmup: int = 0,
    ) -> pd.DataFrame:
        """Awaitable :meth:`send`: the work runs on the client's own loop thread, the caller's loop stays free."""
        self._check_open()
        batch = self._batch(targets, inputs, repeat=repeat, concurrency=concurrency, protocol=protocol, warmup=warmup)
        fut = self._loop.submit(lambda: self._run_batch(batch, concurrency))
        try:
            outcomes = await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            fut.cancel()
            raise
        return batch.frame(outcomes)

    # -- paced streams (the traffic generator) ---------------------------------------------

    def submit(self, factory: Callable[[], Awaitable[T]]) -> concurrent.futures.Future[T]:
        """Run ``factory()`` on the client's private loop thread without waiting for it.

        For background work such as :mod:`kserve_nb.predict.load`; the coroutine may call the
        function returned by :meth:`requester`. Closing the client stops the loop, so a coroutine
        still running then never finishes: check :attr:`closed` while waiting on the future.
        """
        self._check_open()
        return self._loop.submit(factory)

    def requester(self, targets: Sequence[Target], *, protocol: str = "v1") -> Callable[[Job], Awaitable[JobResult]]:
        """An async function sending one :class:`~kserve_nb.predict.bulk.Job` to ``targets[job.slot]``.

        It must be awaited on this client's loop (from a coroutine given to :meth:`submit`). It goes
        the same way :meth:`send` does (same transport, same retry) except for the circuit breaker:
        a paced stream keeps dialling at its own rate, so an ingress that comes back is used again.
        It never raises for a failed request: timeouts, refused connections and error answers come
        back as a :class:`JobResult` with ``error`` set.
        """
        self._check_open()
        proto.check_protocol(protocol)
        targets = list(targets)
        for t in targets:
            _check_header("Host", t.host)
        sender = self._sender
        prepared = sender.prepare(self.url(protocol), [self._headers_for(t) for t in targets])

        async def one(job: Job) -> JobResult:
            return await send_one(sender, prepared, job, protocol=protocol)

        return one

    # -- internals -------------------------------------------------------------------------

    def _headers_for(self, target: Target) -> dict[str, str]:
        """Every header of a request to ``target``: the client's, then the target's (replacing a
        client header of the same name, whatever its case), then its Host."""
        own = {k.lower() for k in target.headers}
        return {**{k: v for k, v in self._headers.items() if k.lower() not in own}, **target.headers,
                "Host": target.host}

    def _check_open(self) -> None:
        if self.closed:
            raise PredictionError("this PredictionClient is closed; create a new one")

    async def _run_batch(self, batch: _Batch, concurrency: int) -> list[JobResult]:
        """Warm-up (outcomes dropped), then the recorded jobs, on the private loop."""
        prepared = self._sender.prepare(batch.url, batch.headers)
        if batch.warmup:
            await run_jobs(self._sender, prepared, batch.warmup, protocol=batch.protocol, concurrency=concurrency)
        return await run_jobs(self._sender, prepared, batch.jobs, protocol=batch.protocol, concurrency=concurrency)

    def _batch(
        self, targets: Sequence[Target], inputs: Any, *, repeat: int, concurrency: int, protocol: str, warmup: int = 0
    ) -> _Batch:
        proto.check_protocol(protocol)
        if isinstance(targets, Target):
            targets = [targets]
        targets = list(targets)
        if not targets:
            raise ValidationError("send needs at least one Target")
        for t in targets:
            if not isinstance(t, Target):
                raise ValidationError(f"targets must be Target objects, got {type(t).__name__}")
            _check_header("Host", t.host)
        names = [t.name for t in targets]
        if len(set(names)) != len(names):
            raise ValidationError(f"target names must be unique, got {names}")
        if repeat < 1 or concurrency < 1:
            raise ValidationError(f"repeat and concurrency must be ≥ 1, got repeat={repeat}, concurrency={concurrency}")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ValidationError(f"warmup must be a whole number ≥ 0 (requests per target), got {warmup!r}")
        instances, bodies = encode_rows(inputs, protocol)
        k = len(targets)
        # Interleave the targets row by row and rotate which one goes first (A B, B A, …): an
        # ordering effect (a warm cache, a connection just freed) then falls on both sides alike.
        jobs: list[Job] = []
        for step, (rep, row) in enumerate((rep, row) for rep in range(repeat) for row in range(len(bodies))):
            body, single = bodies[row]
            jobs.extend(Job((step + j) % k, row, rep, body, single) for j in range(k))
        warm = [
            Job((w + j) % k, w % len(bodies), -1, *bodies[w % len(bodies)])
            for w in range(warmup if bodies else 0)
            for j in range(k)
        ]
        headers = [self._headers_for(t) for t in targets]
        return _Batch(targets, instances, jobs, self.url(protocol), headers, protocol, warm)


@dataclass
class _Batch:
    """The jobs of one :meth:`PredictionClient.send` call, encoded and ordered, and how to frame their results."""

    targets: list[Target]
    instances: list[Any]
    jobs: list[Job]  # in sending order
    url: str
    headers: list[dict[str, str]]
    protocol: str
    warmup: list[Job] = field(default_factory=list)  # sent first, never recorded

    def frame(self, outcomes: Sequence[JobResult]) -> pd.DataFrame:
        from kserve_nb.analysis.frames import RESULT_COLUMNS, results_frame  # lazy: pandas

        if len(outcomes) != len(self.jobs):
            raise PredictionError(f"internal error: {len(outcomes)} answers for {len(self.jobs)} requests")
        # Rows in repeat → row → target order, whatever order they were sent in.
        order = sorted(range(len(self.jobs)), key=lambda i: (self.jobs[i].repeat, self.jobs[i].row, self.jobs[i].slot))
        cols: dict[str, list[Any]] = {c: [] for c in RESULT_COLUMNS}
        for job, o in ((self.jobs[i], outcomes[i]) for i in order):
            t = self.targets[job.slot]
            cols["target"].append(t.name)
            cols["revision"].append(o.revision or t.revision)
            cols["row"].append(job.row)
            cols["repeat"].append(job.repeat)
            cols["input"].append(self.instances[job.row])
            cols["prediction"].append(o.prediction)
            cols["status_code"].append(o.status_code)
            cols["latency_ms"].append(o.latency_ms)
            cols["error"].append(o.error)
        df = results_frame(cols)
        df.attrs["warmup"] = len(self.warmup)
        return df


def encode_rows(inputs: Any, protocol: str) -> tuple[list[Any], list[tuple[bytes, bool]]]:
    """Split ``inputs`` into instances and encode each as one request body, once.

    Returns the instances and, per instance, ``(body, single)`` where ``single`` says the body
    holds that one instance (so a one-element answer is unwrapped to its prediction).
    """
    proto.check_protocol(protocol)
    instances = proto.to_instances(inputs)
    if isinstance(instances, dict):  # one ready payload
        instances = [instances]
    return instances, _bodies(instances, inputs, protocol)


def _bodies(instances: list[Any], original: Any, protocol: str) -> list[tuple[bytes, bool]]:
    """Encode each instance once (it is reused for every target and repeat)."""
    dt: str | None = None
    if protocol == "v2":
        # One datatype for the whole set, so row 3 = [5, 3, 1, 0] is not INT64 while the rest are FP64.
        dt = proto._numpy_datatype(original)
        if dt is None:
            flat = [v for inst in instances if not isinstance(inst, dict) for v in _leaves(inst)]
            try:
                dt = proto.infer_datatype(flat) if flat else None
            except ValidationError:
                dt = None
    out = []
    for inst in instances:
        if proto.is_v1_payload(inst) or proto.is_v2_payload(inst):
            if protocol == "v1" and proto.is_v2_payload(inst):
                raise ValidationError("a V2 payload was given but protocol='v1'; pass protocol='v2'")
            out.append((proto.dumps(inst), False))
        elif protocol == "v1":
            out.append((proto.dumps({"instances": [inst]}), True))
        else:
            out.append((proto.dumps(proto.v2_request([inst], datatype=dt)), True))
    return out


def _leaves(v: Any) -> list[Any]:
    if isinstance(v, (list, tuple)):
        return [x for i in v for x in _leaves(i)]
    return [v]


def _decode(content: bytes) -> Any:
    if not content:
        return None
    try:
        return proto.loads(content)
    except ValueError:
        return content.decode(errors="replace")


def choose_sender(
    ingress: str, http: httpx.Client, *, timeout: float, ssl_context: ssl.SSLContext | bool, httpx_only: bool
) -> Sender:
    """The one place that decides how :meth:`PredictionClient.send` reaches the ingress.

    httpx (``http``, the client ``predict`` uses) when only httpx can apply what is asked: an
    injected transport or auth flow (``httpx_only``), or a proxy from the environment that covers
    ``ingress``. Otherwise the fast HTTP/1.1 transport. Both go through the same engine
    (:func:`kserve_nb.predict.bulk.send_one`), so retries and the circuit breaker do not depend
    on the choice.
    """
    if httpx_only or _proxied(ingress):
        return HttpxSender(http, timeout=timeout)
    return Http1Sender(timeout=timeout, ssl_context=ssl_context)


def _shutdown(loop: LoopThread, sender: Sender, client: httpx.Client) -> None:
    loop.stop(cleanup=sender.aclose)
    client.close()
