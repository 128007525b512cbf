"""How :class:`~kserve_nb.predict.client.PredictionClient` sends many requests: one engine, two transports.

One request of a bulk run (:meth:`PredictionClient.send`) or of a paced stream (the traffic
generator) goes through :func:`send_one`, whatever carries it. It owns the semantics every
transport shares:

- **retry once** when the transport says the request certainly reached no model
  (:attr:`SendError.retryable`: a reused keep-alive connection found closed before any answer);
- **circuit breaker** (bulk runs only): after ``max(8, concurrency)`` connection failures in a row
  the remaining requests become ``not sent: …`` rows at once instead of each waiting for its own
  refusal or timeout; a paced stream has none, so an ingress that comes back is used again;
- failures are :class:`JobResult` rows with one-line errors (``connection failed: …``,
  ``timed out after …``), never exceptions; answers are read by :func:`interpret`.

A transport is a :class:`Sender` (the protocol below). There are two:

- :class:`Http1Sender`: pre-encoded request heads on the pooled keep-alive connections of
  :mod:`kserve_nb.http1`. Client CPU per request is what limits ``send`` on a shared 2-core
  machine (the kernel, the gateway and the model servers share it), and this is several times
  cheaper than httpx or aiohttp (``benchmarks/bench_send.py`` measures it next to wrk).
- :class:`HttpxSender`: the client's ``httpx.Client`` on a thread pool, for what only httpx does:
  an injected transport or auth flow, and HTTP(S)_PROXY from the environment.

The client picks one in a single place, :func:`kserve_nb.predict.client.choose_sender`.

Why a private loop in a worker thread: in Jupyter the kernel thread already runs an event loop, so
``asyncio.run()`` there fails and nesting loops breaks widgets. One daemon thread per client owns a
loop and the connections (keep-alive connections survive between ``send`` calls); callers hand it
coroutines with ``run_coroutine_threadsafe`` and either block (``send``) or await (``asend``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar
from urllib.parse import urlsplit

from kserve_nb import http1
from kserve_nb.errors import PredictionError
from kserve_nb.predict.protocol import error_text, loads, parse_response

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

T = TypeVar("T")

REVISION_HEADER = "x-kserve-revision"


@dataclass(frozen=True)
class Job:
    """One request of a bulk run.

    ``slot`` indexes the target's precomputed headers; ``single`` means the body holds one instance
    built by us, so a one-element prediction list is unwrapped to that instance's prediction.
    """

    slot: int
    row: int
    repeat: int
    body: bytes
    single: bool


class JobResult(NamedTuple):
    """What came back for one :class:`Job` (a tuple: thousands are made per run)."""

    revision: str | None
    prediction: Any
    status_code: int | None
    latency_ms: float
    error: str | None


def interpret(
    status: int, content: bytes, revision: str | None, latency_ms: float, *, protocol: str, single: bool
) -> JobResult:
    """Turn an HTTP answer into a :class:`JobResult` (whichever transport carried it)."""
    try:
        body: Any = loads(content) if content else None
    except ValueError:
        body = content.decode(errors="replace")
    if not 200 <= status < 300:
        return JobResult(revision, None, status, latency_ms, error_text(status, body))
    try:
        preds = parse_response(body, protocol)
    except PredictionError as exc:
        return JobResult(revision, None, status, latency_ms, f"invalid response: {exc.message}")
    pred = preds[0] if single and len(preds) == 1 else preds
    return JobResult(revision, pred, status, latency_ms, None)


class LoopThread:
    """A private asyncio loop in a daemon thread, started on first use.

    Parameters
    ----------
    name:
        Thread name (shows in ``threading.enumerate()`` and py-spy dumps).
    """

    def __init__(self, name: str = "kserve-nb-predict") -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def running(self) -> bool:
        """True while the loop thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise PredictionError("this PredictionClient is closed; create a new one")
            if self._loop is None:
                loop = _new_loop()
                ready = threading.Event()

                def _main() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=_main, name=self._name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def submit(self, factory: Callable[[], Awaitable[T]]) -> concurrent.futures.Future[T]:
        """Schedule ``factory()`` on the private loop; return a thread-safe future."""
        loop = self._ensure()

        async def _wrap() -> T:
            return await factory()

        return asyncio.run_coroutine_threadsafe(_wrap(), loop)

    def run(self, factory: Callable[[], Awaitable[T]]) -> T:
        """Run ``factory()`` on the private loop and block the calling thread until it is done.

        Safe from a thread that has a running loop of its own (the Jupyter kernel): that loop is
        never touched. A KeyboardInterrupt (the notebook's stop button) cancels the work.
        """
        if self._thread is not None and threading.current_thread() is self._thread:
            # Blocking the loop on work scheduled onto itself would deadlock.
            raise PredictionError("send() was called on the client's own event loop; await asend() instead")
        fut = self.submit(factory)
        try:
            return fut.result()
        except BaseException:
            fut.cancel()
            raise

    def stop(self, cleanup: Callable[[], Coroutine[Any, Any, None]] | None = None, timeout: float = 5.0) -> None:
        """Cancel the work still on the loop (a background load run), run ``cleanup()``, then stop
        and join the thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def finish() -> None:
            # Cancelled tasks run their finally blocks now, on a live loop, instead of being
            # destroyed pending when the loop closes.
            me = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not me]
            for t in tasks:
                t.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            if cleanup is not None:
                await cleanup()

        if thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(finish(), loop).result(timeout)
            except Exception:  # closing must not raise
                log.debug("cleanup on the prediction loop failed", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop when installed (it comes with uvicorn[standard]): less client CPU per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


# --------------------------------------------------------------------------------------------
# The sender protocol and its two transports
# --------------------------------------------------------------------------------------------


class Reply(NamedTuple):
    """What a transport brings back for one request."""

    status: int
    revision: str | None  #: the ``x-kserve-revision`` response header
    content: bytes


class SendError(Exception):
    """One request failed below HTTP. ``reason`` is the one-line text of the error row.

    ``connect``: no connection could be made (counts towards the circuit breaker).
    ``retryable``: the request certainly reached no model; :func:`send_one` sends it once more.
    ``timeout``: no complete answer in time.
    """

    def __init__(self, reason: str, *, connect: bool = False, retryable: bool = False, timeout: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.connect = connect
        self.retryable = retryable
        self.timeout = timeout


class Sender(Protocol):
    """A transport for :func:`send_one`: sends one request, once, and says how it went.

    ``prepare`` turns the URL and each target's headers (``headers[slot]``) into whatever the
    transport reuses for every request of a run; ``exchange`` sends ``body`` with the headers of
    ``slot`` and returns the answer, or raises :class:`SendError`. Retrying, circuit-breaking and
    reading the answer are :func:`send_one`'s, the same for every transport.
    """

    timeout: float

    def prepare(self, url: str, headers: Sequence[Mapping[str, str]]) -> Any: ...

    async def exchange(self, prepared: Any, slot: int, body: bytes) -> Reply: ...

    async def aclose(self) -> None: ...


class Http1Sender:
    """The fast transport: pre-encoded heads on :class:`kserve_nb.http1.Pool` connections.

    Parameters
    ----------
    timeout:
        Seconds per request, connecting included.
    ssl_context:
        For https ingresses: a context (certificates checked against the ingress host name),
        True for the default one, or False when the user turned verification off.
    """

    def __init__(self, *, timeout: float, ssl_context: ssl.SSLContext | bool) -> None:
        self.timeout = timeout
        self._ssl = ssl_context
        self._pools: dict[bool, http1.Pool] = {}

    def _pool(self, tls: bool) -> http1.Pool:
        pool = self._pools.get(tls)
        if pool is None:
            ctx: ssl.SSLContext | None = None
            if tls:
                if isinstance(self._ssl, ssl.SSLContext):
                    ctx = self._ssl
                else:
                    ctx = ssl.create_default_context()
                    if self._ssl is False:
                        ctx.check_hostname = False
                        ctx.verify_mode = ssl.CERT_NONE
            # Concurrency is bounded by the caller's workers: keep an idle connection for each.
            pool = self._pools[tls] = http1.Pool(timeout=self.timeout, max_idle=4096, ssl_context=ctx)
        return pool

    def prepare(self, url: str, headers: Sequence[Mapping[str, str]]) -> tuple[http1.Pool, http1.Endpoint, list[bytes]]:
        """The pool, the endpoint and each target's request head up to its Content-Length."""
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        endpoint = (parts.hostname or "", parts.port or (443 if tls else 80))
        target = ((parts.path or "/") + (f"?{parts.query}" if parts.query else "")).encode("latin-1")
        heads = [b"POST " + target + b" HTTP/1.1\r\n" + http1.header_lines(h) for h in headers]
        return self._pool(tls), endpoint, heads

    async def exchange(self, prepared: tuple[http1.Pool, http1.Endpoint, list[bytes]], slot: int, body: bytes) -> Reply:
        pool, endpoint, heads = prepared
        head = heads[slot] + b"content-length: %d\r\n\r\n" % len(body)
        try:
            r = await pool.request(endpoint, head, body)
        except http1.WireError as e:
            raise SendError(
                f"{endpoint[0]}:{endpoint[1]} {e.reason}",
                connect=isinstance(e, http1.ConnectFailed),
                retryable=e.retryable and not isinstance(e, http1.ConnectFailed),
                timeout=isinstance(e, http1.TimedOut),
            ) from e
        revision = http1.header(r.headers, b"x-kserve-revision")
        return Reply(r.status, revision.decode("latin-1") if revision is not None else None, r.body)

    async def aclose(self) -> None:
        for pool in self._pools.values():
            pool.close(abort_busy=True)
        self._pools.clear()


class HttpxSender:
    """The httpx transport: the client's ``httpx.Client`` on a small thread pool.

    Used when something only httpx applies is in play: an injected ``httpx`` transport or auth
    flow, or a proxy from the environment. The client's own headers (content type, user agent,
    the user's) apply; each request adds its target's ``Host`` and extra headers.
    """

    #: Threads beyond ~16 only add GIL contention.
    WORKERS = 16

    def __init__(self, client: httpx.Client, *, timeout: float) -> None:
        self.timeout = timeout
        self._client = client
        self._pool = ThreadPoolExecutor(max_workers=self.WORKERS, thread_name_prefix="kserve-nb-send")

    def prepare(self, url: str, headers: Sequence[Mapping[str, str]]) -> tuple[str, list[dict[str, str]]]:
        return url, [dict(h) for h in headers]

    async def exchange(self, prepared: tuple[str, list[dict[str, str]]], slot: int, body: bytes) -> Reply:
        url, heads = prepared
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._post, url, heads[slot], body)

    def _post(self, url: str, headers: Mapping[str, str], body: bytes) -> Reply:
        import httpx

        where = f"{urlsplit(url).hostname}:{urlsplit(url).port or ''}".rstrip(":")
        try:
            r = self._client.post(url, content=body, headers=headers)
        except httpx.ConnectTimeout as e:
            raise SendError(f"{where} did not accept a connection within {self.timeout:g} s", connect=True) from e
        except httpx.TimeoutException as e:
            raise SendError(f"{where} did not answer within {self.timeout:g} s", timeout=True) from e
        except httpx.ConnectError as e:
            refused = isinstance(e.__context__, ConnectionRefusedError) or "refused" in str(e).lower()
            raise SendError(f"{where} refused the connection" if refused else f"{where} could not be reached: {e}",
                            connect=True) from e
        except httpx.RemoteProtocolError as e:
            if "without sending a response" in str(e):
                raise SendError(f"{where} closed the connection before answering", retryable=True) from e
            raise SendError(f"{where} sent an invalid HTTP response ({e})") from e
        except httpx.HTTPError as e:
            raise SendError(f"{where}: {type(e).__name__}: {e}") from e
        return Reply(r.status_code, r.headers.get(REVISION_HEADER), r.content)

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------------------------
# The engine: the same retry and circuit breaker whatever the transport
# --------------------------------------------------------------------------------------------


class Breaker:
    """Stop dialling a dead ingress: after ``threshold`` connection failures in a row the remaining
    requests become error rows at once instead of each waiting for its own refusal or timeout."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self.failures = 0
        self.reason = ""

    @property
    def open(self) -> bool:
        """True once it tripped: nothing more is sent."""
        return self.failures >= self.threshold

    def success(self) -> None:
        """A connection was made."""
        self.failures = 0

    def failure(self, reason: str) -> None:
        """A connection attempt failed."""
        self.failures += 1
        self.reason = f"{self.failures} connection attempts in a row failed ({reason})"


async def send_one(
    sender: Sender, prepared: Any, job: Job, *, protocol: str, breaker: Breaker | None = None
) -> JobResult:
    """Send ``job`` through ``sender``: one retry when it reached no model, the breaker, the answer read."""
    if breaker is not None and breaker.open:
        return JobResult(None, None, None, math.nan, f"not sent: {breaker.reason}")
    t0 = time.perf_counter()
    for attempt in (1, 2):
        try:
            reply = await sender.exchange(prepared, job.slot, job.body)
        except SendError as e:
            if breaker is not None and e.connect:
                breaker.failure(e.reason)
            elif breaker is not None:
                breaker.success()
            if e.timeout:
                return JobResult(None, None, None, _ms(t0), f"timed out after {sender.timeout:g} s")
            if e.retryable and attempt == 1:
                continue
            return JobResult(None, None, None, _ms(t0), f"connection failed: {e.reason}")
        if breaker is not None:
            breaker.success()
        return interpret(reply.status, reply.content, reply.revision, _ms(t0), protocol=protocol, single=job.single)
    raise AssertionError("unreachable: the second attempt always returns")  # pragma: no cover


async def run_jobs(
    sender: Sender, prepared: Any, jobs: Sequence[Job], *, protocol: str, concurrency: int
) -> list[JobResult]:
    """Send every job with at most ``concurrency`` in flight, behind one breaker; outcomes in job order."""
    out: list[JobResult | None] = [None] * len(jobs)
    pending = iter(range(len(jobs)))
    breaker = Breaker(threshold=max(8, concurrency))

    async def worker() -> None:
        # A fixed pool of workers pulling from one iterator: cheaper than a task plus a semaphore
        # per request, and never more than `concurrency` connections.
        for i in pending:
            out[i] = await send_one(sender, prepared, jobs[i], protocol=protocol, breaker=breaker)

    n = max(1, min(concurrency, len(jobs)))
    await asyncio.gather(*(worker() for _ in range(n)))
    return [o for o in out if o is not None]


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0
