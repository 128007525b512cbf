"""The process that serves one revision: KServe's own model server with the sklearn runtime.

Two roles live here:

**The revision server** (:func:`serve_revision`): a real ``kserve.ModelServer`` with an
:class:`SKLearnModel` that mirrors KServe's ``sklearnserver``. It differs from ``python -m
sklearnserver`` only where the local cluster needs it to:

- it binds ``127.0.0.1`` on an ephemeral port (kserve's ``RESTServer`` hard-codes ``0.0.0.0``): we
  bind the socket ourselves and hand it to the RESTServer's uvicorn server; gRPC is off (it would
  bind all interfaces);
- it logs to a per-revision file at WARNING with no access log, and it silences the
  ``FastAPIDeprecationWarning`` that kserve 0.21 triggers on every request (see :func:`_quiet`);
- it reports its port, or why the model could not load, to the runtime over a pipe (one JSON line).

**The zygote** (:func:`zygote_main`): one long-lived process that has already imported kserve,
FastAPI, uvicorn, scikit-learn and joblib *and built kserve's FastAPI app and uvicorn config*
(:class:`_ServerTemplate`), and forks a revision server on request: a revision pays neither the
imports nor the app build, so it answers its readiness probe almost at once, and shares the
zygote's memory pages.

Why not a ``multiprocessing`` forkserver: CPython 3.11's ``forkserver.py`` has three misfits:
``Process.start()`` blocks the caller (the daemon's event loop) until the fork happened; every
child re-imports the parent's ``__main__``; and every child inherits the forkserver's "alive" pipe,
which the forkserver waits on to notice its parent's death, so after ``kill -9`` of the daemon the
forkserver would wait for its children and they for it. The zygote protocol is small (the client
side is ``runtime._Zygote``):

- the parent talks over a ``SOCK_SEQPACKET`` socket (one JSON message each way);
- a spawn request carries the write end of a status pipe (``SCM_RIGHTS``); only the child keeps it,
  so EOF on the read end means the child is gone, and the child writes its port or failure there;
- the zygote answers ``{"event": "started", "id", "pid"}`` and later ``{"event": "exited", "pid",
  "code"}`` (from ``SIGCHLD``);
- the zygote sets ``PR_SET_PDEATHSIG(SIGKILL)``: it dies with the daemon (it only serves the control
  plane, which forks new revisions). The revision servers do not: they are the data plane and keep
  serving when the daemon or the zygote dies (re-parented to init); a restarted daemon adopts them
  (:mod:`kserve_nb.local.dataplane`), ``local down`` stops them, and one whose state dir is deleted
  stops itself (:data:`STATE_DIR_CHECK_SECONDS`), so none is left behind for good.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
import json
import logging
import os
import selectors
import signal
import socket
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

# Everything below is imported in the zygote before it forks, so a revision process starts warm.
import joblib
import kserve
import uvloop
from kserve.errors import InferenceError
from kserve.protocol.rest.server import RESTServer
from kserve.utils.utils import get_predict_input, get_predict_response

from kserve_nb.local.storage import StorageError, find_model_file, resolve_storage_uri

ENV_PREDICT_PROBA = "PREDICT_PROBA"

#: Seconds uvicorn waits for in-flight requests after SIGTERM (kserve's default is 30).
GRACEFUL_SHUTDOWN_SECONDS = 2

#: Exit code of a revision process whose model could not load (already reported on the pipe).
EXIT_LOAD_FAILED = 3

#: How often a revision server checks that its state dir still exists (it stops once it doesn't:
#: its cluster was removed, and no daemon will ever adopt or stop it).
STATE_DIR_CHECK_SECONDS = 2.0

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


class SKLearnModel(kserve.Model):  # type: ignore[misc]  # kserve ships no type information
    """KServe's sklearn runtime (``sklearnserver.SKLearnModel``) reading from a local path.

    Parameters
    ----------
    name:
        The model name on the URL (``/v1/models/{name}``); KServe passes the isvc name.
    model_dir:
        A local directory holding exactly one ``.joblib``/``.pkl``/``.pickle`` file, or that file.
    """

    def __init__(self, name: str, model_dir: str | Path) -> None:
        super().__init__(name)
        self.name = name
        self.model_dir = Path(model_dir)
        self.ready = False
        self._model: Any = None

    def load(self) -> bool:
        """Load the single model file with joblib; raises :class:`StorageError` if it is absent."""
        model_file = find_model_file(self.model_dir)
        self._model = joblib.load(model_file)
        self.ready = True
        return self.ready

    def predict(
        self, payload: Any, headers: dict[str, str] | None = None
    ) -> Any:
        """V1 ``instances``/``inputs`` or a V2 ``InferRequest`` → ``predict`` (or ``predict_proba``)."""
        try:
            instances = get_predict_input(payload)
            if os.environ.get(ENV_PREDICT_PROBA, "false").lower() == "true" and hasattr(
                self._model, "predict_proba"
            ):
                result = self._model.predict_proba(instances)
            else:
                result = self._model.predict(instances)
            return get_predict_response(payload, result, self.name)
        except Exception as e:
            raise InferenceError(str(e)) from e


# --- the revision server --------------------------------------------------------------------


def serve_revision(request: dict[str, Any], status_fd: int, zygote_pid: int | None) -> int:
    """Run one revision's model server until SIGTERM; return the process exit code.

    ``request`` holds ``model_name``, ``storage_uri``, ``state_dir``, ``log_path`` and ``revision``.
    The outcome of startup is written to ``status_fd`` as one JSON line: ``{"event": "listening",
    "port": N}`` or ``{"event": "failed", "message": "Failed to load model from …: …"}``.
    """
    # No PDEATHSIG here: a revision outlives the daemon and the zygote (see the module docstring).
    _set_name(b"kserve-model")
    _redirect_output(Path(request["log_path"]))
    _quiet()
    uri = request["storage_uri"]
    _log_line(f"starting model server for revision {request.get('revision')} ({uri}), pid {os.getpid()}")
    try:
        model = SKLearnModel(request["model_name"], resolve_storage_uri(uri, Path(request["state_dir"])))
        model.load()
    except Exception as e:  # noqa: BLE001 - any load failure is deterministic: report it, don't crash-loop
        message = f"Failed to load model from {uri}: {_describe(e)}"
        _log_line(message)
        _report(status_fd, {"event": "failed", "message": message})
        return EXIT_LOAD_FAILED
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(_serve(model, status_fd, Path(request["state_dir"])))
    finally:
        loop.close()
    _log_line("model server stopped")
    return 0


async def _serve(model: SKLearnModel, status_fd: int, state_dir: Path) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    template = _TEMPLATE or _ServerTemplate()
    uvicorn_server = template.attach(model, port)
    task = asyncio.create_task(uvicorn_server.serve(sockets=[sock]))
    # uvicorn sets `started` once the listener is attached and lifespan startup ran.
    while not uvicorn_server.started and not task.done():
        await asyncio.sleep(0.001)
    if task.done():
        await task  # surfaces the startup error as a crash
        return
    _report(status_fd, {"event": "listening", "port": port})
    watchdog = asyncio.create_task(_stop_without_state_dir(uvicorn_server, state_dir))
    try:
        await task
    finally:
        watchdog.cancel()


async def _stop_without_state_dir(uvicorn_server: Any, state_dir: Path) -> None:
    """Stop serving (gracefully, like SIGTERM) once ``state_dir`` is gone."""
    while state_dir.is_dir():
        await asyncio.sleep(STATE_DIR_CHECK_SECONDS)
    _log_line(f"the state dir {state_dir} is gone: stopping")
    uvicorn_server.should_exit = True


class _ServerTemplate:
    """kserve's ``ModelServer`` + ``RESTServer`` + FastAPI app, built before any model exists.

    Building the app (18 FastAPI routes with pydantic adapters) and loading the uvicorn config
    is slow next to a fork; the zygote does it once and every revision process inherits the result, then only
    registers its model (:meth:`attach`). This is ``ModelServer.start()`` for one model, one worker,
    REST only, without kserve's own signal handlers (uvicorn's SIGTERM handling is what we want).
    """

    def __init__(self) -> None:
        from kserve.constants.constants import FASTAPI_APP_IMPORT_STRING

        self.server = kserve.ModelServer(
            http_port=0,
            enable_grpc=False,
            workers=1,
            enable_latency_logging=False,
            grace_period=GRACEFUL_SHUTDOWN_SECONDS,
            # sklearn predicts run on the event loop; the executor only serves sync FastAPI routes.
            max_asyncio_workers=2,
            event_loop="uvloop",
        )
        self.rest = RESTServer(
            FASTAPI_APP_IMPORT_STRING,
            self.server.dataplane,
            self.server.model_repository_extension,
            0,
            workers=1,
            grace_period=GRACEFUL_SHUTDOWN_SECONDS,
            event_loop="uvloop",
        )
        self.rest.create_application()
        config = self.rest.config
        config.access_log = False
        config.http = "httptools"
        config.ws = "none"  # kserve serves no websockets; skips importing a ws stack
        config.load()
        # Starlette builds its middleware stack on the first request; do it once, here.
        app = kserve.model_server.app
        if app.middleware_stack is None:
            app.middleware_stack = app.build_middleware_stack()

    def attach(self, model: SKLearnModel, port: int) -> Any:
        """Register ``model`` and return the uvicorn server to run (inside the running loop)."""
        self.server._register_and_check_atleast_one_model_is_ready([model])
        self.server.setup_event_loop()
        self.rest.config.port = port
        return self.rest._server


#: Built by the zygote before it forks (see :func:`_preload`); None in a process that didn't.
_TEMPLATE: _ServerTemplate | None = None


def _set_name(name: bytes) -> None:
    """Set the thread name (``ps -o comm``, ``top``) so a zygote and its revision servers can be
    told apart from each other: they share one command line."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, ctypes.c_char_p(name[:15]), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux
        pass


def _die_with_parent(parent_pid: int | None, name: bytes) -> None:
    """Ask the kernel to SIGKILL us when our parent dies (the zygote dies with the daemon)."""
    _set_name(name)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: rely on the parent's cleanup
        return
    # The parent may have died between fork and prctl; then we were already re-parented.
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def _redirect_output(log_path: Path) -> None:
    """Point fds 1 and 2 at the revision's log file, so stray prints and tracebacks land there."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


class _OncePerMessage(logging.Filter):
    """Let each distinct warning text through once, whatever resets ``warnings``' registries."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text in self._seen:
            return False
        self._seen.add(text)
        return True


class _OneLineForClientErrors(logging.Filter):
    """kserve logs every error answer with a full traceback (~3 KB); keep one line for expected ones.

    Bad input and model errors (400/404/500 answers whose message the client already received) say
    all there is in their message; unexpected exceptions keep their traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and isinstance(exc, _expected_errors()):
            record.msg = f"{record.msg} {type(exc).__name__}: {exc}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


@functools.lru_cache(maxsize=1)
def _expected_errors() -> tuple[type[BaseException], ...]:
    from kserve import errors

    return (
        errors.InferenceError,
        errors.InvalidInput,
        errors.ModelNotFound,
        errors.ModelNotReady,
        errors.ServerNotReady,
        errors.ServerNotLive,
        errors.UnsupportedProtocol,
        NotImplementedError,
    )


def _quiet() -> None:
    """WARNING-level logging to stderr (the log file), no access log, no per-request warnings.

    kserve 0.21 on the current FastAPI emits ``FastAPIDeprecationWarning`` (ORJSONResponse) on every
    request: sklearn's ``check_array`` enters ``warnings.catch_warnings()``, which invalidates the
    "already shown" registries, so the default once-per-location rule never holds (~500 bytes per
    request). An ``ignore`` filter survives ``catch_warnings`` (it restores the filter list on exit),
    and routing every other warning through logging with a once-per-text filter keeps the log
    bounded even if someone else does reset the registries.
    """
    from fastapi.exceptions import FastAPIDeprecationWarning

    warnings.filterwarnings("ignore", category=FastAPIDeprecationWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    for name in ("kserve", "kserve.trace", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
        logger.setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("kserve").filters[:] = [_OneLineForClientErrors()]
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").filters[:] = [_OncePerMessage()]


def _log_line(message: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    sys.stderr.write(f"{stamp} kserve-nb {message}\n")
    sys.stderr.flush()


def _describe(e: BaseException) -> str:
    if isinstance(e, StorageError):
        return e.message
    return f"{type(e).__name__}: {e}"


def _report(fd: int, message: dict[str, Any]) -> None:
    # One write of one short line: atomic on a pipe (< PIPE_BUF), so the reader never sees half.
    try:
        os.write(fd, (json.dumps(message) + "\n").encode())
    except OSError:
        pass  # the runtime went away: a new daemon adopts or stops this process


# --- the zygote ------------------------------------------------------------------------------


def _preload() -> None:
    """Import what a revision process needs, so a fork of the zygote is ready without importing."""
    import fastapi  # noqa: F401
    import kserve.model_server  # noqa: F401  (builds kserve's FastAPI app object)
    import sklearn.ensemble  # common estimators: unpickling imports their modules
    import sklearn.linear_model
    import sklearn.neighbors
    import sklearn.pipeline
    import sklearn.preprocessing
    import sklearn.svm
    import sklearn.tree  # noqa: F401
    import uvicorn.lifespan.on
    import uvicorn.loops.uvloop
    import uvicorn.protocols.http.httptools_impl  # noqa: F401
    from fastapi.exceptions import FastAPIDeprecationWarning  # noqa: F401

    global _TEMPLATE
    _TEMPLATE = _ServerTemplate()


def zygote_main(ctl_fd: int, parent_pid: int | None = None) -> None:
    """Run the zygote: preload, say ``ready``, then fork a revision server per request.

    ``ctl_fd`` is a ``SOCK_SEQPACKET`` socket to the runtime (whose pid is ``parent_pid``). The
    zygote exits when that socket closes, or is killed when its parent dies.
    """
    _die_with_parent(parent_pid, b"kserve-zygote")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides when we stop
    ctl = socket.socket(fileno=ctl_fd)
    _quiet()  # before kserve configures its own INFO-level logging
    _preload()
    # Move everything imported so far out of the GC's reach: collections in the children then
    # don't touch (and copy) these pages.
    gc.collect()
    gc.freeze()
    _send(ctl, {"event": "ready", "pid": os.getpid()})
    _zygote_loop(ctl)


def _zygote_loop(ctl: socket.socket) -> None:
    sig_r, sig_w = os.pipe()
    os.set_blocking(sig_r, False)
    os.set_blocking(sig_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd fires
    signal.set_wakeup_fd(sig_w)
    with selectors.DefaultSelector() as sel:
        sel.register(ctl, selectors.EVENT_READ)
        sel.register(sig_r, selectors.EVENT_READ)
        while True:
            for key, _ in sel.select():
                if key.fileobj is sig_r:
                    _drain(sig_r)
                    _reap(ctl)
                elif not _handle_request(ctl, (sig_r, sig_w), sel):
                    return


def _handle_request(ctl: socket.socket, sig_fds: tuple[int, int], sel: selectors.BaseSelector) -> bool:
    try:
        data, fds, _flags, _addr = socket.recv_fds(ctl, 65536, 4)
    except InterruptedError:
        return True
    if not data:
        for fd in fds:
            os.close(fd)
        return False  # the runtime closed the socket: shut down
    request = json.loads(data)
    status_fd = fds[0]
    for extra in fds[1:]:
        os.close(extra)
    sys.stdout.flush()
    sys.stderr.flush()
    zygote_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        sel.close()
        _child(ctl, sig_fds, request, status_fd, zygote_pid)
    os.close(status_fd)
    _send(ctl, {"event": "started", "id": request["id"], "pid": pid})
    return True


def _child(
    ctl: socket.socket, sig_fds: tuple[int, int], request: dict[str, Any], status_fd: int, zygote_pid: int
) -> None:
    """In the forked child: drop the zygote's plumbing, serve, and never return to its loop."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # Closing our copy of the control socket lets the runtime see EOF if the zygote dies.
        ctl.close()
        for fd in sig_fds:
            os.close(fd)
        code = serve_revision(request, status_fd, zygote_pid)
    except BaseException:  # noqa: BLE001 - a child must never unwind into the zygote loop
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _reap(ctl: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(ctl, {"event": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _send(ctl: socket.socket, message: dict[str, Any]) -> None:
    try:
        ctl.send(json.dumps(message).encode())
    except OSError:
        pass  # the runtime is gone; we exit on the next read


