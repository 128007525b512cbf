"""nginx as the local cluster's ingress data plane, with the Python :class:`Gateway` behind it.

Why: every proxied request costs a Python gateway ~0.25 ms of CPU on a 2-vCPU machine (two wake-ups
of an interpreter whose caches the model server has just evicted), which shows as ~0.4 ms added
latency at concurrency 1; nginx adds ~0.14 ms (measured paired, request by request, in
``benchmarks/bench_gateway.py``). So when an ``nginx`` binary exists (Debian's ``nginx`` package;
``KSERVE_NB_INGRESS=python`` opts out), the ingress port belongs to an nginx master process that this
module configures and supervises:

- each ready route becomes an ``upstream`` block with ``random`` weighted balancing over its ready
  revisions (what Istio's weighted clusters do), pooled keep-alive connections, and one retry on a
  connection error (nginx never re-sends a POST once it reached a model);
- ``map $host`` picks the route; ``map $upstream_addr`` names the revision in ``x-kserve-revision``
  (each revision has its own port);
- everything that is not a plain proxied request goes to the Python :class:`Gateway`, which listens
  on a private loopback port and always holds the newest table: unknown hosts (404 naming the known
  ones), routes without a ready revision (503 naming the cause), and bodies without a JSON content type
  (``curl -d``), which it coerces exactly as documented there;
- nginx's own failures (a revision that died mid-request, 400, 413) answer JSON, like the gateway.

Routing changes rewrite the config and send the master ``SIGHUP``; nginx swaps it atomically (old
workers finish their requests, new ones take new connections). :meth:`NginxIngress.update` returns at
once; the new table counts as programmed when a fresh connection sees the config's generation, and
``on_programmed`` is called then (the controller holds status that depends on it until then, as
Knative holds a Route's readiness until its ingress is programmed).
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Callable, Mapping, Sequence

import psutil

from kserve_nb.local.gateway import CLIENT_IDLE_SECONDS, MAX_BODY_BYTES, UPSTREAM_TIMEOUT_SECONDS, Gateway

log = logging.getLogger(__name__)

#: ``KSERVE_NB_INGRESS``: ``nginx`` (require it), ``python`` (never use it) or ``auto`` (the default).
INGRESS_ENV = "KSERVE_NB_INGRESS"
#: The Host the generation probe uses: ``.invalid`` can never be a real InferenceService's host.
PROBE_HOST = "kserve-nb-generation.invalid"
#: Bound on waiting for nginx to answer after a start or a reload.
PROGRAM_TIMEOUT_SECONDS = 10.0
#: Restart back-off after nginx dies on its own (it never should).
RESTART_DELAYS = (0.1, 0.5, 2.0, 5.0)

# Names that may appear in the config: DNS names and revision names (what admission allows anyway).
# Anything else is left out (and logged), so no object name can inject nginx syntax.
_SAFE_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")

Routes = Mapping[str, Sequence[tuple[str, str, int]]]
Endpoints = Mapping[tuple[str, str], tuple[str, int]]


def find_nginx() -> str | None:
    """The nginx binary to use, or ``None`` when there is none or ``KSERVE_NB_INGRESS=python``.

    Raises ``RuntimeError`` when ``KSERVE_NB_INGRESS=nginx`` but nginx is not installed.
    """
    choice = os.environ.get(INGRESS_ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", "nginx", "python"):
        raise RuntimeError(f"{INGRESS_ENV}={choice!r}: use nginx, python or auto")
    if choice == "python":
        return None
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None and choice == "nginx":
        raise RuntimeError(f"{INGRESS_ENV}=nginx but no nginx binary was found: apt-get install nginx")
    return found


def render(
    routes: Routes,
    endpoints: Endpoints,
    *,
    listen: int,
    fallback: int,
    directory: Path,
    generation: int,
    run_as_root: bool = False,
) -> str:
    """The whole nginx config for one routing table (a pure function of its arguments).

    ``routes`` and ``endpoints`` mean what they mean for :meth:`Gateway.update`; ``fallback`` is the
    Python gateway's port. Hosts whose targets have no ready endpoint are left to the fallback.
    """
    upstreams: list[str] = []
    host_map: list[str] = []
    revision_map: list[str] = []
    named: set[int] = set()
    for host, targets in sorted(routes.items()):
        host = host.lower().split(":", 1)[0]
        if not _SAFE_NAME.match(host):
            log.warning("nginx ingress: host %r left to the Python gateway (not a DNS name)", host)
            continue
        servers: list[str] = []
        for namespace, revision, percent in targets:
            endpoint = endpoints.get((namespace, revision))
            if percent <= 0 or endpoint is None or not _SAFE_NAME.match(revision):
                continue
            port = int(endpoint[1])
            # A refused connection (a standby revision; see update()) is retried on another target.
            # max_fails=0: nginx never benches a revision on its own; the runtime says when it's back.
            servers.append(f"    server 127.0.0.1:{port} weight={int(percent)} max_fails=0;")
            if port not in named:
                named.add(port)
                revision_map.append(f'    "~:{port}$" {revision};')
        if not servers:
            continue  # no ready target: the Python gateway answers 503 and says why
        upstream = f"kn_route_{len(upstreams)}"
        upstreams.append(f"  upstream {upstream} {{\n    random;\n" + "\n".join(servers) + "\n    keepalive 64;\n  }")
        host_map.append(f"    {host} {upstream};")
    user = "user root root;\n" if run_as_root else ""
    tmp = directory / "tmp"
    return f"""# Generated by kserve-nb for its local cluster; rewritten on every routing change.
# generation {generation}
{user}worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  server_tokens off;
  default_type application/json;
  map_hash_bucket_size 512;  # host names up to 253 characters
  map_hash_max_size 65536;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  client_max_body_size {MAX_BODY_BYTES};
  client_body_buffer_size 1m;
  keepalive_timeout {int(CLIENT_IDLE_SECONDS)}s;
  keepalive_requests 1000000;
  lingering_timeout 1s;  # after a refusal (413): how long to wait for the rest of a body nobody reads
  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host $http_host;
  proxy_connect_timeout 5s;
  proxy_read_timeout {int(UPSTREAM_TIMEOUT_SECONDS)}s;
  proxy_send_timeout {int(UPSTREAM_TIMEOUT_SECONDS)}s;
  proxy_next_upstream error timeout;
  proxy_next_upstream_tries 2;
  proxy_buffers 16 16k;

  upstream kn_fallback {{
    server 127.0.0.1:{fallback};
    keepalive 16;
  }}
{chr(10).join(upstreams)}

  map $host $kn_route {{
    default kn_fallback;
{chr(10).join(host_map)}
  }}
  # Requests with a body and a content type that isn't JSON go to the Python gateway, which forwards
  # a JSON body as application/json (what `curl -d @file.json` needs) and anything else unchanged.
  map "$http_content_type|$http_content_length$http_transfer_encoding" $kn_slow {{
    default 1;
    "~^[^|]*\\|0?$" 0;
    "~*^[^|]*json[^|]*\\|" 0;
  }}
  map $upstream_bytes_sent $kn_unsent {{
    default 0;
    "~^[0, :]*$" 1;
  }}
  map $upstream_addr $kn_revision {{
    default "";
{chr(10).join(revision_map)}
  }}

  server {{
    listen 127.0.0.1:{listen} default_server;
    error_page 413 = @kn_too_large;
    error_page 502 = @kn_upstream_failed;
    error_page 504 = @kn_timed_out;
    location / {{
      if ($kn_slow) {{
        proxy_pass http://kn_fallback;
      }}
      proxy_pass http://$kn_route;
      add_header x-kserve-revision $kn_revision always;
    }}
    location @kn_too_large {{
      return 413 '{{"error": "request body larger than {MAX_BODY_BYTES} bytes"}}';
    }}
    # Nothing reached a model (connections refused: the revision just died): the Python gateway
    # routes it on its up-to-the-moment table (another ready target, or a 503 that says why).
    # A request that did reach one is never sent twice.
    location @kn_upstream_failed {{
      if ($kn_unsent) {{
        proxy_pass http://kn_fallback;
      }}
      if ($kn_unsent = 0) {{
        add_header x-kserve-revision $kn_revision always;
        return 502 '{{"error": "revision $kn_revision stopped answering mid-request (it crashed or was stopped; a crashed revision is restarted and gets no traffic until it is ready again)"}}';
      }}
    }}
    location @kn_timed_out {{
      add_header x-kserve-revision $kn_revision always;
      return 504 '{{"error": "revision $kn_revision did not answer within {int(UPSTREAM_TIMEOUT_SECONDS)} s"}}';
    }}
  }}
  server {{
    listen 127.0.0.1:{listen};
    server_name {PROBE_HOST};
    location = /generation {{
      return 200 "{generation}";
    }}
  }}
}}
"""


class NginxIngress:
    """The ingress on ``port``: nginx in front, the Python :class:`Gateway` behind it.

    Same interface as :class:`Gateway` (``start``/``update``/``close``/``port``) plus
    ``on_programmed``, called with each routing table once nginx serves it.
    """

    def __init__(
        self,
        directory: Path,
        port: int = 0,
        *,
        binary: str | None = None,
        on_programmed: Callable[[Routes], None] | None = None,
    ) -> None:
        found = binary or find_nginx()
        if found is None:
            raise RuntimeError("nginx is not installed (apt-get install nginx) or KSERVE_NB_INGRESS=python")
        self.binary = found
        self.directory = directory
        self.on_programmed = on_programmed
        self._port = port
        self._fallback = Gateway("127.0.0.1", 0)
        self._process: subprocess.Popen[bytes] | None = None
        self._generation = 0
        self._confirmed = -1  # the newest generation seen served
        self._retiring: set[int] = set()  # workers of older configs that may still accept connections
        self._workers_seen: set[int] = set()  # every worker seen, to clean up after a killed master
        self._routes: Routes = {}
        self._endpoints: Endpoints = {}
        self._text = ""
        self._programmer: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    #: The ingress answers on a fresh connection with every update: the controller may hold status.
    programs_asynchronously = True

    @property
    def port(self) -> int:
        """The ingress port (after :meth:`start`)."""
        return self._port

    @property
    def pid(self) -> int | None:
        """The nginx master's pid while it runs."""
        return self._process.pid if self._process is not None and self._process.poll() is None else None

    async def start(self) -> int:
        """Start the fallback gateway and nginx on ``port`` (a free one when 0); return the port.

        Raises ``OSError`` when nginx cannot listen there (the caller may retry with port 0).
        """
        self._loop = asyncio.get_running_loop()
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.directory / "tmp").mkdir(exist_ok=True, mode=0o700)
        await self._fallback.start()
        if not self._port:
            self._port = _free_port()
        await self._launch()
        self._supervisor = self._loop.create_task(self._supervise(), name="kserve-nb-nginx")
        return self._port

    def update(self, routes: Routes, endpoints: Endpoints, standby: Endpoints | None = None) -> None:
        """Install a new routing table: at once in the fallback, and in nginx by a graceful reload.

        ``standby`` maps restarting revisions to the address they will listen on again. nginx keeps
        routing to it: connections are refused meanwhile, and nginx retries them on another target or
        hands them to the fallback, which knows the revision is not ready and says so. So a crash
        and restart need no reload (a reload closes idle keep-alive client connections).

        ``on_programmed`` follows once nginx serves it: at once when the config did not change (hosts
        without a ready revision live in the fallback only), else after the reload.
        """
        self._routes, self._endpoints = dict(routes), _with_standby(endpoints, standby or {})
        self._fallback.update(routes, endpoints)
        if self._process is None or self._closing or self._loop is None:
            return
        if self._write_config():
            self._retiring.update(self._workers())
            self._process.send_signal(signal.SIGHUP)
        elif self._confirmed == self._generation:
            if self.on_programmed is not None:
                self.on_programmed(self._routes)
            return
        if self._programmer is None or self._programmer.done():
            self._programmer = self._loop.create_task(self._confirm())

    async def wait_programmed(self, timeout: float = PROGRAM_TIMEOUT_SECONDS) -> None:
        """Wait until nginx serves the last :meth:`update` (for callers without ``on_programmed``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._confirmed != self._generation and self._process is not None:
            if loop.time() > deadline:
                raise TimeoutError(f"nginx did not take config generation {self._generation} in {timeout:g} s")
            await asyncio.sleep(0.002)

    async def close(self) -> None:
        """Stop nginx (gracefully, then by force after 2 s) and the fallback gateway."""
        self._closing = True
        for task in (self._supervisor, self._programmer):
            if task is not None:
                task.cancel()
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGQUIT)  # graceful: in-flight requests finish
            if not await _wait(process, 2.0):
                process.terminate()
                if not await _wait(process, 2.0):
                    process.kill()
                    await _wait(process, 2.0)
        await self._fallback.close()

    # --- internals ---

    def _write_config(self) -> bool:
        """Render the current table; write it (atomically) if it changed. Returns whether it did."""
        text = render(
            self._routes,
            self._endpoints,
            listen=self._port,
            fallback=self._fallback.port,
            directory=self.directory,
            generation=self._generation + 1,
            run_as_root=os.geteuid() == 0,
        )
        if _without_generation(text) == _without_generation(self._text):
            return False
        self._generation += 1
        self._text = text
        path = self.directory / "nginx.conf"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)  # nginx never reads half a file
        return True

    async def _launch(self) -> None:
        self._text = ""
        self._write_config()
        log_file = open(self.directory / "nginx.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            self._process = subprocess.Popen(
                [self.binary, "-p", str(self.directory), "-e", str(self.directory / "error.log"),
                 "-c", str(self.directory / "nginx.conf"), "-g", "daemon off;"],
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                preexec_fn=_die_with_parent, close_fds=True,
            )
        finally:
            log_file.close()
        try:
            await self._await_generation(self._generation)
            self._confirmed = self._generation
        except (TimeoutError, OSError) as e:
            process, self._process = self._process, None
            if process.poll() is None:
                process.kill()
            await _wait(process, 2.0)
            raise OSError(f"nginx did not start on 127.0.0.1:{self._port}: {self._error_tail() or e}") from e
        self._workers()
        log.info("nginx ingress (pid %d) on 127.0.0.1:%d, fallback gateway on %d",
                 self._process.pid, self._port, self._fallback.port)

    async def _confirm(self) -> None:
        """Wait until nginx serves the newest generation, then report the table it serves."""
        while not self._closing:
            generation = self._generation
            try:
                await self._await_generation(generation)
                await self._await_retired()
            except Exception as e:  # noqa: BLE001 - whatever it was, status must not wait forever
                # Report the table anyway (the fallback serves it exactly) and say loudly that nginx
                # did not take it.
                log.error("nginx did not take config generation %d: %r %s", generation, e, self._error_tail())
                if self.on_programmed is not None:
                    self.on_programmed(self._routes)
                return
            if generation == self._generation:  # else a newer config was written meanwhile: wait for it
                self._confirmed = generation
                self._workers()  # remember the new workers
                if self.on_programmed is not None:
                    self.on_programmed(self._routes)
                return

    def _workers(self) -> set[int]:
        """The master's current worker processes."""
        if self._process is None:
            return set()
        try:
            workers = {child.pid for child in psutil.Process(self._process.pid).children()}
        except psutil.Error:
            return set()
        self._workers_seen = {pid for pid in self._workers_seen if psutil.pid_exists(pid)} | workers
        return workers

    async def _await_retired(self) -> None:
        """Wait until the workers of older configs accept no more connections (bounded).

        nginx's master lets them go on accepting for 100 ms after a reload (it sleeps before telling
        them to shut down); a worker that shuts down closes its listening socket at once, then
        finishes its requests in flight, which belong to the old table anyway.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROGRAM_TIMEOUT_SECONDS
        while self._retiring:
            self._retiring = {pid for pid in self._retiring if _listens(pid, self._port)}
            if not self._retiring:
                return
            if loop.time() > deadline:
                raise TimeoutError(f"old nginx workers {sorted(self._retiring)} still accept connections")
            await asyncio.sleep(0.005)

    async def _await_generation(self, generation: int) -> None:
        """Poll a fresh connection until nginx answers ``generation`` (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PROGRAM_TIMEOUT_SECONDS
        while True:
            if self._process is None or self._process.poll() is not None:
                raise OSError("nginx exited")
            try:
                if await _probe(self._port) == generation:
                    return
            except OSError:
                pass
            if loop.time() > deadline:
                raise TimeoutError(f"no answer with config generation {generation} in {PROGRAM_TIMEOUT_SECONDS:g} s")
            await asyncio.sleep(0.002)  # a reload takes a few ms; a probe costs ~0.1 ms

    async def _supervise(self) -> None:
        """Restart nginx if it dies on its own (with back-off); the table is re-rendered."""
        failures = 0
        while not self._closing:
            await asyncio.sleep(0.2)
            process = self._process
            if process is None or process.poll() is None:
                continue
            log.error("nginx exited with %s: %s", process.returncode, self._error_tail())
            # Workers outlive a master killed outright (SIGKILL skips its shutdown) and keep the port.
            for pid in self._workers_seen:
                _kill_orphan(pid)
            self._workers_seen.clear()
            await asyncio.sleep(RESTART_DELAYS[min(failures, len(RESTART_DELAYS) - 1)])
            try:
                await self._launch()
                failures = 0
                if self.on_programmed is not None:
                    self.on_programmed(self._routes)
            except OSError as e:
                failures += 1
                log.error("restarting nginx failed: %s", e)

    def _error_tail(self) -> str:
        try:
            lines = (self.directory / "error.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""


def _with_standby(endpoints: Endpoints, standby: Endpoints) -> dict[tuple[str, str], tuple[str, int]]:
    """Ready endpoints plus standby ones whose port no ready revision listens on now."""
    ready_ports = {int(port) for _, port in endpoints.values()}
    merged = dict(endpoints)
    for key, endpoint in standby.items():
        if key not in merged and int(endpoint[1]) not in ready_ports:
            merged[key] = endpoint
    return merged


def _kill_orphan(pid: int) -> None:
    """SIGKILL ``pid`` if it is (still) an nginx process."""
    try:
        proc = psutil.Process(pid)
        if proc.name() == "nginx":
            proc.kill()
            proc.wait(2)
    except (psutil.Error, psutil.TimeoutExpired):
        pass


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` (alive) holds a listening socket on ``port``."""
    try:
        return any(
            c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in psutil.Process(pid).connections("tcp")
        )
    except psutil.Error:
        return False


def _without_generation(text: str) -> str:
    return re.sub(r"generation \d+|return 200 \"\d+\"", "", text)


async def _probe(port: int) -> int:
    """The config generation nginx answers on a new connection."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    try:
        writer.write(f"GET /generation HTTP/1.0\r\nHost: {PROBE_HOST}\r\n\r\n".encode())
        data = await asyncio.wait_for(reader.read(), 1.0)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise OSError(f"unexpected probe answer {head[:40]!r}")
    return int(body.strip() or b"-1")


async def _wait(process: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait (without blocking the loop) up to ``timeout`` for ``process`` to exit."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while process.poll() is None:
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    # nginx's master then shuts its workers down: nothing outlives a kill -9 of the daemon.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
