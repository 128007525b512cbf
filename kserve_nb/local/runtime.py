"""Revision runtime: one KServe model-server process per live revision, supervised like a kubelet.

The controller says which revisions should run (:meth:`Runtime.ensure_running` /
:meth:`Runtime.stop`); the runtime starts each as a fork of a warm zygote (see
``modelserver.py``), counts it Ready once it reports that it listens (model loaded, HTTP server
started: Knative's default TCP readiness), kills it if ``GET /v1/models/{name}`` does not then answer
200 (at start-up, and later on every :data:`READINESS_PERIOD_SECONDS`), and reports every phase
change through ``on_change``:

``Starting`` → ``Ready``; a model that cannot load → ``Failed`` (deterministic: no restart loop); a
process that dies → ``Restarting`` at once (the gateway stops routing to it within milliseconds),
then a restart after an exponential back-off (0.1 s doubling to 10 s, reset once a process has been
ready for :data:`BACKOFF_RESET_SECONDS`) → ``Ready`` again with ``restarts`` incremented;
:meth:`Runtime.stop` → ``Stopped``.

Everything runs on the daemon's event loop: process exits are noticed through file descriptors
(``loop.add_reader``), never by polling.

The model servers are the data plane: they outlive the daemon and the zygote. What runs is recorded
in ``{state_dir}/runtime.json`` (0600; pid and start time, port, spec, restarts), and a restarted
daemon :meth:`Runtime.adopt` s every recorded server that is still the same process and answers its
readiness probe: same pid, same port, no restart. It watches an adopted process (not its child, nor
the new zygote's) through a pidfd; one that is gone or unhealthy is stopped and started afresh by
the controller.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kserve_nb.errors import LocalClusterError
from kserve_nb.local import dataplane
from kserve_nb.resources import now_rfc3339

log = logging.getLogger(__name__)

#: Model formats the local cluster can serve (KServe's sklearn runtime).
SUPPORTED_FORMATS = ("sklearn",)
#: Protocol versions the sklearn runtime serves over REST here (gRPC is off: it binds 0.0.0.0).
SUPPORTED_PROTOCOLS = ("v1", "v2")

BACKOFF_INITIAL_SECONDS = 0.1
BACKOFF_MAX_SECONDS = 10.0
#: A process that stayed ready this long resets the back-off (a kubelet uses 10 minutes).
BACKOFF_RESET_SECONDS = 30.0
#: How long a process may take to report its port (model load included) before it is killed.
START_TIMEOUT_SECONDS = 120.0
#: How long the HTTP check may take to get a 200 after the port was reported.
READY_TIMEOUT_SECONDS = 10.0
#: How often a ready revision's readiness is probed again (a kubelet's ``periodSeconds``).
READINESS_PERIOD_SECONDS = 2.0
#: Consecutive wrong probe answers (not 200, or a failed connection) that restart the process;
#: a probe that times out counts neither way.
READINESS_FAILURE_THRESHOLD = 3
#: SIGTERM → SIGKILL grace for stopped revisions.
STOP_GRACE_SECONDS = 3.0
#: How long :meth:`Runtime.start` waits for the zygote's imports.
ZYGOTE_START_TIMEOUT_SECONDS = 60.0
#: Readiness probes an adoption candidate gets (each bounded by the probe session's 2 s timeout).
ADOPT_PROBE_ATTEMPTS = 3
#: The fields of a :class:`RevisionSpec` in the runtime record.
_SPEC_FIELDS = ("namespace", "model_name", "revision", "storage_uri", "model_format", "protocol_version")


@dataclass(frozen=True)
class RevisionSpec:
    """What to run for one revision (immutable, like a Knative revision)."""

    namespace: str
    model_name: str  # the isvc name (KServe passes --model_name={{.Name}}), used in /v1/models/<name>
    revision: str  # e.g. "sklearn-iris-predictor-00002"
    storage_uri: str
    model_format: str  # "sklearn"; anything else → Failed
    protocol_version: str | None = None


@dataclass
class RevisionState:
    """The observed state of one revision's process; ``on_change`` receives a copy."""

    namespace: str
    revision: str
    phase: str  # "Starting" | "Ready" | "Failed" | "Restarting" | "Stopped"
    message: str | None  # why it failed / last crash reason
    host: str = "127.0.0.1"
    port: int | None = None
    pid: int | None = None
    restarts: int = 0
    started_at: str | None = None  # RFC3339 UTC of the current process start
    last_crash_at: str | None = None
    ever_ready: bool = False


@dataclass(eq=False)
class _Revision:
    """Runtime bookkeeping for one revision (the state plus its process plumbing)."""

    spec: RevisionSpec
    state: RevisionState
    log_path: Path
    generation: int = 0  # bumped per process start: callbacks of older processes are ignored
    status_fd: int | None = None
    status_buf: bytes = b""
    exit_code: int | None = None
    process_gone: bool = True
    load_failed: bool = False
    kill_reason: str | None = None  # why the runtime killed the current process, if it did
    ready_since: float | None = None
    backoff: float = BACKOFF_INITIAL_SECONDS
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None
    proc_started: float | None = None  # start time of the current process (its identity in the record)
    exit_fd: int | None = None  # pidfd of an adopted process: neither our child nor the zygote's


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "model server process exited unexpectedly"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"model server process was killed by {name}"
    return f"model server process exited with code {code}"


class _Zygote:
    """Client of the zygote process: spawn requests out, ``started``/``exited`` events in."""

    def __init__(
        self,
        log_path: Path,
        on_exit: Callable[[int, int], None],
        on_lost: Callable[[], None],
    ) -> None:
        self._log_path = log_path
        self._on_exit = on_exit
        self._on_lost = on_lost
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready: asyncio.Future[int] | None = None
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._next_id = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self.pid: int | None = None

    @property
    def alive(self) -> bool:
        return self._sock is not None and self.pid is not None

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._log_path, "ab") as logf:
            code = (
                "from kserve_nb.local.modelserver import zygote_main; "
                f"zygote_main({child.fileno()}, {os.getpid()})"
            )
            self._proc = subprocess.Popen(
                [sys.executable, "-c", code],
                env=_zygote_env(),
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=logf,
                # Own session: a Ctrl-C aimed at the daemon's terminal must not hit the model servers.
                start_new_session=True,
            )
        child.close()
        parent.setblocking(False)
        self._sock = parent
        self._ready = loop.create_future()
        loop.add_reader(parent.fileno(), self._on_readable)
        try:
            self.pid = await asyncio.wait_for(asyncio.shield(self._ready), ZYGOTE_START_TIMEOUT_SECONDS)
        except (TimeoutError, LocalClusterError) as e:
            await self.close()
            raise LocalClusterError(
                f"the model-server zygote did not start: {e or 'timed out'}; see {self._log_path}"
            ) from e

    async def spawn(self, request: dict[str, Any], status_w: int) -> int:
        """Ask the zygote to fork a revision server; returns its pid."""
        if self._sock is None:
            raise LocalClusterError("the model-server zygote is not running")
        self._next_id += 1
        rid = self._next_id
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        data = json.dumps({**request, "id": rid}).encode()
        try:
            socket.send_fds(self._sock, [data], [status_w])
        except OSError as e:
            self._pending.pop(rid, None)
            raise LocalClusterError(f"could not reach the model-server zygote: {e}") from e
        return await fut

    def _on_readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(65536)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            self._dispatch(json.loads(data))

    def _dispatch(self, msg: dict[str, Any]) -> None:
        event = msg.get("event")
        if event == "started":
            fut = self._pending.pop(msg["id"], None)
            if fut is not None and not fut.done():
                fut.set_result(msg["pid"])
        elif event == "exited":
            self._on_exit(msg["pid"], msg["code"])
        elif event == "ready" and self._ready is not None and not self._ready.done():
            self._ready.set_result(msg["pid"])

    def _lost(self) -> None:
        was_alive = self.alive
        self._detach()
        if self._proc is not None and self._loop is not None:  # reap it soon, no zombie
            self._loop.call_later(0.5, self._proc.poll)
        err = LocalClusterError("the model-server zygote exited")
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(err)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        self._pending.clear()
        if was_alive:
            self._on_lost()

    def _detach(self) -> None:
        if self._sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        self.pid = None

    async def close(self) -> None:
        """Close the control socket (the zygote exits on EOF) and reap it."""
        self._detach()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        deadline = time.monotonic() + 2.0
        while proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if proc.poll() is None:
            proc.kill()
            await asyncio.sleep(0)
            proc.wait(timeout=2.0)


def _zygote_env() -> dict[str, str]:
    """The daemon's environment, with single-threaded BLAS/OpenMP unless the user chose otherwise.

    numpy's and scipy's OpenBLAS each start a worker thread pool at import; a zygote should fork
    from a single-threaded process, and a model server answering small requests gains nothing from
    BLAS threads while several revisions share the machine's cores.
    """
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    return env


class Runtime:
    """Runs and supervises one model-server process per live revision.

    Parameters
    ----------
    state_dir:
        The local cluster's state directory; logs go to ``{state_dir}/logs/{namespace}/{revision}.log``
        and ``storageUri`` mirrors are read from ``{state_dir}/storage``.
    on_change:
        Called on the event-loop thread with a copy of a revision's state whenever its phase, port
        or message changes.

    All methods must be called on the thread of the event loop that ran :meth:`start` (from its
    callbacks and tasks, or between its runs).
    """

    def __init__(
        self,
        state_dir: Path,
        on_change: Callable[[RevisionState], None],
        prerequisite: asyncio.Future[Any] | None = None,
    ) -> None:
        # ``prerequisite``: something every launch waits for first (the daemon seeds the storage
        # mirror in the background while the API already answers).
        self._prerequisite = prerequisite
        self._state_dir = Path(state_dir)
        self._on_change = on_change
        self._revisions: dict[tuple[str, str], _Revision] = {}
        self._by_pid: dict[int, tuple[_Revision, int]] = {}  # pid → (revision, generation)
        self._starting: set[asyncio.Task[None]] = set()
        self._dying: dict[int, asyncio.Future[int | None]] = {}
        self._zygote: _Zygote | None = None
        self._zygote_starting: asyncio.Task[None] | None = None
        self._http: Any = None  # aiohttp.ClientSession for readiness probes
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._record_scheduled = False

    # --- public API ---------------------------------------------------------------------

    async def start(self, wait: bool = True) -> None:
        """Start the warm zygote (it imports kserve and scikit-learn, which takes a while).

        With ``wait=False`` the zygote warms up in the background: the cluster answers at once and
        the first revision start waits for the zygote instead.
        """
        import aiohttp

        self._loop = asyncio.get_running_loop()
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
            timeout=aiohttp.ClientTimeout(total=2.0),
        )
        if wait:
            await self._ensure_zygote()
            return
        warm = self._loop.create_task(self._ensure_zygote())
        # A failure is reported on the first revision that needs the zygote; log it here too.
        warm.add_done_callback(_log_warm_up_failure)

    async def adopt(self) -> list[RevisionState]:
        """Adopt the model servers a previous runtime on this state dir left running; return them.

        Call after :meth:`start`, before any :meth:`ensure_running`. A recorded server is adopted
        (Ready, same pid and port, its restart count kept) when it is still the recorded process
        (start time and command line) and answers its readiness probe; one that is not ready or
        does not answer is killed (the controller starts a new one); anything else recorded is left
        alone: a pid that now belongs to another process is never signalled. No ``on_change`` is
        sent: the caller reads :meth:`states`.
        """
        record = dataplane.read(self._state_dir / dataplane.RUNTIME_RECORD) or {}
        entries = [e for e in record.get("revisions") or [] if isinstance(e, dict)]
        adopted = await asyncio.gather(*(self._adopt_one(entry) for entry in entries))
        self._schedule_record()
        return [state for state in adopted if state is not None]

    async def _adopt_one(self, entry: dict[str, Any]) -> RevisionState | None:
        try:
            fields: dict[str, Any] = {k: entry.get(k) for k in _SPEC_FIELDS}
            spec = RevisionSpec(**fields)
            pid, started = int(entry["pid"]), float(entry["started"])
        except (KeyError, TypeError, ValueError):
            return None
        if not all(isinstance(getattr(spec, k), str) for k in _SPEC_FIELDS[:5]):
            return None
        key = (spec.namespace, spec.revision)
        if dataplane.verified(pid, started, marker=dataplane.MODEL_SERVER_MARKER) is None:
            log.info("revision %s/%s: process %d is gone (or another process has its pid): not adopted", *key, pid)
            return None
        try:
            exit_fd = os.pidfd_open(pid)
        except (OSError, AttributeError):  # gone meanwhile, or no pidfds (not Linux): nothing to watch it with
            found = dataplane.verified(pid, started, marker=dataplane.MODEL_SERVER_MARKER)
            if found is not None:
                await self._get_loop().run_in_executor(None, dataplane.stop, [found])
            return None
        # Verified again while the pidfd is held: it is the recorded process, not a reuse of its pid.
        if dataplane.verified(pid, started, marker=dataplane.MODEL_SERVER_MARKER) is None:
            os.close(exit_fd)
            return None
        port = entry.get("port")
        problem: str | None
        if entry.get("phase") != "Ready" or not isinstance(port, int):
            problem = "it had not become ready"
        else:
            problem = await self._probe_adoptee(spec, port)
        if problem is None and key in self._revisions:
            problem = "the revision runs already"
        if problem is not None:
            log.warning("revision %s/%s: not adopting process %d: %s; stopping it", *key, pid, problem)
            _pidfd_signal(exit_fd, signal.SIGKILL)
            os.close(exit_fd)
            return None
        assert isinstance(port, int)
        rev = _Revision(
            spec=spec,
            state=RevisionState(
                spec.namespace, spec.revision, "Ready", entry.get("message"), port=port, pid=pid,
                restarts=int(entry.get("restarts") or 0), started_at=entry.get("started_at"),
                last_crash_at=entry.get("last_crash_at"), ever_ready=True,
            ),
            log_path=self._state_dir / "logs" / spec.namespace / f"{spec.revision}.log",
            generation=1,
            process_gone=False,
            ready_since=time.monotonic(),
            proc_started=started,
            exit_fd=exit_fd,
        )
        self._revisions[key] = rev
        self._get_loop().add_reader(exit_fd, self._on_adopted_exit, rev, rev.generation)
        url = f"http://{rev.state.host}:{port}/v1/models/{spec.model_name}"
        self._spawn_task(rev, self._keep_probing(rev, rev.generation, url))
        log.info("revision %s/%s: adopted process %d on port %d", *key, pid, port)
        return dataclasses.replace(rev.state)

    async def _probe_adoptee(self, spec: RevisionSpec, port: int) -> str | None:
        """None when the server on ``port`` serves ``spec``'s model, else what is wrong."""
        url = f"http://127.0.0.1:{port}/v1/models/{spec.model_name}"
        problem = "no answer"
        for attempt in range(ADOPT_PROBE_ATTEMPTS):
            if attempt:
                await asyncio.sleep(0.2)
            try:
                async with self._http.get(url) as resp:
                    if resp.status == 200:
                        return None
                    problem = f"GET {url} answered {resp.status}"
            except Exception as e:  # noqa: BLE001 - any failure to answer is a failed probe
                problem = f"GET {url} failed: {e!r}"
        return problem

    def _on_adopted_exit(self, rev: _Revision, gen: int) -> None:
        self._on_gone(rev, gen, "model server process exited (adopted from an earlier daemon: exit code unknown)")

    def ensure_running(self, spec: RevisionSpec) -> None:
        """Make sure a process serves ``spec`` (idempotent; a changed spec replaces the process)."""
        if self._closed:
            # Shutting down: close() stopping a revision notifies the controller, whose reconcile
            # would otherwise start it again — a server nobody stops, since model servers
            # outlive the daemon.
            return
        key = (spec.namespace, spec.revision)
        rev = self._revisions.get(key)
        if rev is not None and rev.spec == spec:
            return
        if rev is not None:
            self.stop(spec.namespace, spec.revision)
        rev = _Revision(
            spec=spec,
            state=RevisionState(spec.namespace, spec.revision, "Starting", None),
            log_path=self._state_dir / "logs" / spec.namespace / f"{spec.revision}.log",
        )
        self._revisions[key] = rev
        problem = _unsupported(spec)
        if problem is not None:
            rev.load_failed = True
            rev.state.phase, rev.state.message = "Failed", problem
            self._notify_soon(rev)
            return
        self._notify_soon(rev)
        self._launch(rev)

    def stop(self, namespace: str, revision: str) -> None:
        """Terminate a revision's process (SIGTERM, SIGKILL after a short grace) and forget it."""
        rev = self._revisions.pop((namespace, revision), None)
        if rev is None:
            return
        exit_fd = self._take_exit_fd(rev)  # kept open: it tells when an adopted process is gone
        self._release(rev)
        pid = rev.state.pid
        if pid is not None and not rev.process_gone:
            self._terminate(pid, exit_fd)
        elif exit_fd is not None:
            os.close(exit_fd)
        rev.state.phase, rev.state.port, rev.state.pid = "Stopped", None, None
        self._notify_soon(rev)

    def states(self) -> dict[tuple[str, str], RevisionState]:
        """Snapshot of every revision the runtime is responsible for, keyed by (namespace, revision)."""
        return {k: dataclasses.replace(r.state) for k, r in self._revisions.items()}

    async def close(self) -> None:
        """Stop every process this runtime started, then the zygote; nothing is left behind."""
        self._closed = True
        for key in list(self._revisions):
            self.stop(*key)
        if self._starting:
            await asyncio.wait(list(self._starting), timeout=ZYGOTE_START_TIMEOUT_SECONDS)
        if self._dying:
            await asyncio.wait(list(self._dying.values()), timeout=STOP_GRACE_SECONDS + 1.0)
        if self._zygote is not None:
            await self._zygote.close()
            self._zygote = None
        if self._http is not None:
            await self._http.close()
            self._http = None
        self._write_record()  # nothing runs any more: the record goes

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise LocalClusterError("Runtime.start() must be awaited before revisions are managed")
        return self._loop

    # --- zygote -------------------------------------------------------------------------

    async def _ensure_zygote(self) -> None:
        if self._zygote is not None and self._zygote.alive:
            return
        if self._zygote_starting is None or self._zygote_starting.done():
            self._zygote_starting = self._get_loop().create_task(self._start_zygote())
        await asyncio.shield(self._zygote_starting)

    async def _start_zygote(self) -> None:
        zygote = _Zygote(self._state_dir / "logs" / "zygote.log", self._on_process_exit, self._on_zygote_lost)
        await zygote.start()
        self._zygote = zygote

    def _on_zygote_lost(self) -> None:
        # Its children keep serving (re-parented to init; their status pipes still report their
        # exit, without a code). The next revision start starts a new zygote.
        log.warning("model-server zygote exited; it is restarted with the next revision start")
        self._by_pid.clear()
        # Processes being stopped: their exit is no longer reported; watch each through a pidfd.
        for pid, fut in list(self._dying.items()):
            try:
                exit_fd = os.pidfd_open(pid)
            except (OSError, AttributeError):
                exit_fd = None
            if exit_fd is None:
                del self._dying[pid]
                if not fut.done():
                    fut.set_result(None)
            else:
                self._watch_dying(pid, exit_fd, fut)

    # --- process lifecycle --------------------------------------------------------------

    def _launch(self, rev: _Revision) -> None:
        if self._closed:
            return  # nothing starts once close() began (it waits only for forks already in flight)
        rev.generation += 1
        rev.exit_code = None
        rev.kill_reason = None
        rev.process_gone = False
        rev.state.started_at = now_rfc3339()
        # Not cancellable by stop(): a fork in flight must be seen through, then terminated.
        task = self._get_loop().create_task(self._start_process(rev, rev.generation))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    def _is_current(self, rev: _Revision, gen: int) -> bool:
        return gen == rev.generation and self._revisions.get(_key(rev)) is rev and not self._closed

    async def _start_process(self, rev: _Revision, gen: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._prerequisite is not None:
                await asyncio.shield(self._prerequisite)
            await self._ensure_zygote()
            assert self._zygote is not None
        except Exception as e:  # noqa: BLE001 - reported on the revision, retried with back-off
            self._on_gone(rev, gen, f"could not start the model-server zygote: {e}")
            return
        status_r, status_w = os.pipe()
        try:
            pid = await self._zygote.spawn(self._request(rev), status_w)
        except LocalClusterError as e:
            os.close(status_r)
            self._on_gone(rev, gen, str(e))
            return
        finally:
            os.close(status_w)
        if not self._is_current(rev, gen):
            os.close(status_r)  # stopped while it was being forked
            self._terminate(pid)
            return
        rev.state.pid = pid
        rev.proc_started = dataplane.started_at(pid)
        self._by_pid[pid] = (rev, gen)
        self._schedule_record()
        os.set_blocking(status_r, False)
        rev.status_fd = status_r
        rev.status_buf = b""
        loop.add_reader(status_r, self._on_status, rev, gen)
        rev.timer = loop.call_later(START_TIMEOUT_SECONDS, self._start_timed_out, rev, gen)

    def _request(self, rev: _Revision) -> dict[str, Any]:
        return {
            "model_name": rev.spec.model_name,
            "revision": rev.spec.revision,
            "storage_uri": rev.spec.storage_uri,
            "state_dir": str(self._state_dir),
            "log_path": str(rev.log_path),
        }

    def _on_status(self, rev: _Revision, gen: int) -> None:
        assert rev.status_fd is not None
        try:
            chunk = os.read(rev.status_fd, 65536)
        except BlockingIOError:
            return
        if not chunk:  # the only writer was the child: it is gone
            self._on_gone(rev, gen, _describe_exit(rev.exit_code))
            return
        rev.status_buf += chunk
        *lines, rev.status_buf = rev.status_buf.split(b"\n")
        for line in lines:
            if line.strip():
                self._on_child_event(rev, gen, json.loads(line))

    def _on_child_event(self, rev: _Revision, gen: int, msg: dict[str, Any]) -> None:
        if msg.get("event") == "failed":
            rev.load_failed = True
            self._cancel_timer(rev)
            rev.state.phase, rev.state.message, rev.state.port = "Failed", msg["message"], None
            self._notify(rev)
        elif msg.get("event") == "listening":
            self._cancel_timer(rev)
            rev.state.port = int(msg["port"])
            self._ready(rev)
            self._spawn_task(rev, self._probe(rev, gen))

    async def _probe(self, rev: _Revision, gen: int) -> None:
        """Confirm that a process that reported ``listening`` answers HTTP; kill it if it doesn't.

        The revision is Ready from the ``listening`` report on: the model is loaded and uvicorn has
        started, which is what Knative's default (TCP) readiness probe checks. Then readiness keeps
        being probed for the life of the process (:meth:`_keep_probing`).
        """
        url = f"http://{rev.state.host}:{rev.state.port}/v1/models/{rev.spec.model_name}"
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if gen != rev.generation or rev.process_gone:
                return
            try:
                async with self._http.get(url) as resp:
                    if resp.status == 200:
                        await self._keep_probing(rev, gen, url)
                        return
            except Exception:  # noqa: BLE001, S110 - not answering yet; the deadline bounds this loop
                pass
            await asyncio.sleep(0.01)
        if gen == rev.generation and rev.state.pid is not None:
            rev.kill_reason = f"model server did not answer GET {url} within {READY_TIMEOUT_SECONDS:g}s"
            self._kill(rev)

    async def _keep_probing(self, rev: _Revision, gen: int, url: str) -> None:
        """Re-probe a ready process periodically; restart it once it keeps answering wrong.

        A server can stay up and still stop serving its model (its model repository API unloads
        it): the revision would answer 404 forever while its InferenceService stays Ready. After
        :data:`READINESS_FAILURE_THRESHOLD` consecutive wrong answers the process is killed, so
        it restarts (``Restarting`` at once: no traffic) and loads the model again.
        """
        import aiohttp

        failures = 0
        while True:
            await asyncio.sleep(READINESS_PERIOD_SECONDS)
            if gen != rev.generation or rev.process_gone:
                return
            try:
                async with self._http.get(url) as resp:
                    wrong = None if resp.status == 200 else f"answered {resp.status}"
            except TimeoutError:
                continue  # slow is not broken: a busy server must not lose the requests it serves
            except aiohttp.ClientError as e:
                wrong = f"failed: {e}"
            failures = failures + 1 if wrong else 0
            if failures >= READINESS_FAILURE_THRESHOLD and rev.state.pid is not None:
                rev.kill_reason = (
                    f"readiness probe failed {failures} times in a row (GET {url} {wrong}); "
                    "the model server was restarted"
                )
                self._kill(rev)
                return

    def _ready(self, rev: _Revision) -> None:
        # `message` keeps the last crash reason (a pod's lastState), if there was one.
        rev.state.phase, rev.state.ever_ready = "Ready", True
        rev.ready_since = time.monotonic()
        self._notify(rev)

    def _start_timed_out(self, rev: _Revision, gen: int) -> None:
        if gen == rev.generation and rev.state.pid is not None and not rev.process_gone:
            rev.kill_reason = f"model server did not report a port within {START_TIMEOUT_SECONDS:g}s"
            self._kill(rev)

    def _on_process_exit(self, pid: int, code: int) -> None:
        """Zygote report (SIGCHLD): finishes stops, and gives crashes their exit code."""
        fut = self._dying.pop(pid, None)
        if fut is not None and not fut.done():
            fut.set_result(code)
        entry = self._by_pid.pop(pid, None)
        if entry is None:
            return
        rev, gen = entry
        if gen != rev.generation:
            return
        rev.exit_code = code
        if not rev.process_gone:
            self._on_gone(rev, gen, _describe_exit(code))
        elif rev.state.phase == "Restarting" and rev.state.message == _describe_exit(None):
            # The pipe's EOF (reported at once) usually beats the zygote's SIGCHLD report by a
            # fraction of a millisecond; now we know how it ended ("killed by SIGKILL": OOM?).
            rev.state.message = _describe_exit(code)
            self._notify(rev)

    def _on_gone(self, rev: _Revision, gen: int, reason: str) -> None:
        """The current process of ``rev`` is gone: Failed stays Failed, anything else restarts."""
        if gen != rev.generation or rev.process_gone:
            return
        rev.process_gone = True
        self._release(rev)
        if not self._is_current(rev, gen):
            return
        rev.state.port, rev.state.pid = None, None
        if rev.load_failed:
            return  # already reported as Failed
        rev.state.message = rev.kill_reason or reason
        rev.state.phase = "Restarting"
        rev.state.last_crash_at = now_rfc3339()
        delay = self._next_backoff(rev)
        self._notify(rev)
        log.warning("revision %s/%s: %s; restarting in %.1fs", *_key(rev), rev.state.message, delay)
        rev.timer = self._get_loop().call_later(delay, self._restart, rev)

    def _next_backoff(self, rev: _Revision) -> float:
        if rev.ready_since is not None and time.monotonic() - rev.ready_since >= BACKOFF_RESET_SECONDS:
            rev.backoff = BACKOFF_INITIAL_SECONDS
        rev.ready_since = None
        delay = rev.backoff
        rev.backoff = min(rev.backoff * 2, BACKOFF_MAX_SECONDS)
        return delay

    def _restart(self, rev: _Revision) -> None:
        rev.timer = None
        if self._revisions.get(_key(rev)) is not rev or self._closed:
            return
        rev.state.restarts += 1
        self._launch(rev)

    # --- plumbing -----------------------------------------------------------------------

    def _release(self, rev: _Revision) -> None:
        """Detach the current process's reader, timer and probe (not the process itself)."""
        self._cancel_timer(rev)
        for task in list(rev.tasks):
            if task is not asyncio.current_task(self._get_loop()):
                task.cancel()
        if rev.status_fd is not None:
            self._get_loop().remove_reader(rev.status_fd)
            os.close(rev.status_fd)
            rev.status_fd = None
        exit_fd = self._take_exit_fd(rev)
        if exit_fd is not None:
            os.close(exit_fd)

    def _take_exit_fd(self, rev: _Revision) -> int | None:
        """Stop watching an adopted process's pidfd and hand it over (the caller closes it)."""
        exit_fd, rev.exit_fd = rev.exit_fd, None
        if exit_fd is not None:
            self._get_loop().remove_reader(exit_fd)
        return exit_fd

    def _cancel_timer(self, rev: _Revision) -> None:
        if rev.timer is not None:
            rev.timer.cancel()
            rev.timer = None

    def _spawn_task(self, rev: _Revision, coro: Any) -> None:
        task = self._get_loop().create_task(coro)
        rev.tasks.add(task)
        task.add_done_callback(rev.tasks.discard)

    def _terminate(self, pid: int, exit_fd: int | None = None) -> None:
        """SIGTERM now, SIGKILL after the grace period unless the process is known to be gone.

        The zygote reports the exit of its children; an adopted process, or one whose zygote is
        gone, is watched (and signalled) through a pidfd (``exit_fd``, or one opened here), which
        is closed once the process is gone.
        """
        loop = self._get_loop()
        self._by_pid.pop(pid, None)
        if exit_fd is None and (self._zygote is None or not self._zygote.alive):
            # Its zygote is gone, so nobody would report its exit: watch it through a pidfd.
            try:
                exit_fd = os.pidfd_open(pid)
            except (OSError, AttributeError):
                self._signal(pid, signal.SIGKILL)  # gone already, or no pidfds: no grace
                return
        if exit_fd is not None:
            fut = self._dying.setdefault(pid, loop.create_future())
            self._watch_dying(pid, exit_fd, fut)
            _pidfd_signal(exit_fd, signal.SIGTERM)

            def kill_now() -> None:
                if not fut.done():
                    _pidfd_signal(exit_fd, signal.SIGKILL)

            kill = loop.call_later(STOP_GRACE_SECONDS, kill_now)
            fut.add_done_callback(lambda _f: kill.cancel())
            return
        fut = self._dying.setdefault(pid, loop.create_future())
        self._signal(pid, signal.SIGTERM)
        handle = loop.call_later(STOP_GRACE_SECONDS, self._signal, pid, signal.SIGKILL, fut)
        fut.add_done_callback(lambda _f: handle.cancel())

    def _watch_dying(self, pid: int, exit_fd: int, fut: asyncio.Future[int | None]) -> None:
        """Resolve ``fut`` (and close ``exit_fd``) once the process of pidfd ``exit_fd`` is gone."""
        loop = self._get_loop()

        def gone() -> None:
            loop.remove_reader(exit_fd)
            os.close(exit_fd)
            if self._dying.get(pid) is fut:
                del self._dying[pid]
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(exit_fd, gone)

    def _kill(self, rev: _Revision) -> None:
        if rev.exit_fd is not None:
            _pidfd_signal(rev.exit_fd, signal.SIGKILL)
        elif rev.state.pid is not None:
            self._signal(rev.state.pid, signal.SIGKILL)

    def _signal(self, pid: int, sig: int, fut: asyncio.Future[Any] | None = None) -> None:
        if fut is not None and fut.done():
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def _schedule_record(self) -> None:
        """Write the runtime record soon (once per burst of changes)."""
        if not self._record_scheduled and self._loop is not None:
            self._record_scheduled = True
            self._loop.call_soon(self._write_record)

    def _write_record(self) -> None:
        """Record every running process (see :mod:`kserve_nb.local.dataplane`); none: no record."""
        self._record_scheduled = False
        path = self._state_dir / dataplane.RUNTIME_RECORD
        running = [
            {
                **{k: getattr(r.spec, k) for k in _SPEC_FIELDS},
                "pid": r.state.pid, "started": r.proc_started, "port": r.state.port, "phase": r.state.phase,
                "restarts": r.state.restarts, "started_at": r.state.started_at,
                "last_crash_at": r.state.last_crash_at, "message": r.state.message,
            }
            for r in self._revisions.values()
            if r.state.pid is not None and r.proc_started is not None and not r.process_gone
        ]
        if self._closed and not running:
            path.unlink(missing_ok=True)
            return
        dataplane.write(path, {"version": 1, "revisions": running})

    def _notify(self, rev: _Revision) -> None:
        self._schedule_record()
        try:
            self._on_change(dataclasses.replace(rev.state))
        except Exception:  # a listener bug must not break supervision
            log.exception("on_change failed for %s/%s", *_key(rev))

    def _notify_soon(self, rev: _Revision) -> None:
        # Public methods report asynchronously so a caller is never re-entered from its own call.
        snapshot = dataclasses.replace(rev.state)
        self._schedule_record()

        def deliver() -> None:
            try:
                self._on_change(snapshot)
            except Exception:
                log.exception("on_change failed for %s/%s", snapshot.namespace, snapshot.revision)

        self._get_loop().call_soon(deliver)


def _log_warm_up_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("zygote warm-up failed: %s", task.exception())


def _pidfd_signal(pidfd: int, sig: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:
        pass


def _key(rev: _Revision) -> tuple[str, str]:
    return (rev.spec.namespace, rev.spec.revision)


def _unsupported(spec: RevisionSpec) -> str | None:
    fmt = (spec.model_format or "").lower()
    if fmt not in SUPPORTED_FORMATS:
        return (
            f"model format '{spec.model_format}' is not supported by the local cluster: it runs "
            f"KServe's sklearn runtime only (modelFormat.name: sklearn)"
        )
    proto = spec.protocol_version
    if proto is not None and proto.lower() not in SUPPORTED_PROTOCOLS:
        return (
            f"protocolVersion '{proto}' is not supported by the local cluster: its sklearn runtime "
            f"serves REST v1 and v2 (gRPC is off)"
        )
    return None
