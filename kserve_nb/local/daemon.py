"""The local cluster's process: API server + controller + revision runtime + ingress gateway.

Started detached by ``kserve-nb local up`` (see :mod:`kserve_nb.local.manager`); runs until
SIGTERM/SIGINT, then stops every process it started. The data plane (nginx and the model servers)
outlives a daemon that is killed, and keeps serving; the next daemon on the state dir adopts it
(:mod:`kserve_nb.local.dataplane`). One state directory holds everything:

``store.sqlite``  objects, revisions, status (survives ``kill -9``)
``token``         the API bearer token (0600)
``metrics.token`` the bearer token of the ingress' metrics endpoints (0600; Prometheus sends it)
``ca.crt`` ``tls.crt`` ``tls.key``  the API server's private CA and certificate (0600)
``kubeconfig``    context ``kserve-nb-local`` (0600)
``endpoint.json`` pid and ports of the running daemon (0600); absent when stopped
``runtime.json``  the running model servers: pid, start time, port, revision (0600)
``ingress/``      nginx: its config, logs, and ``ingress.json`` (0600): master and worker pids and
                  start times, ports, control token, the routing table it holds
``daemon.lock``   held while running, so two daemons never share a state dir
``storage/``      the local storage mirror (gs://, s3://, https:// URIs)
``prometheus/``   the on-demand Prometheus (:mod:`kserve_nb.local.prometheus`): its config, data and
                  ``targets.json``, the metrics endpoints this daemon serves (rewritten at each start)
``logs/``         daemon.log and one log per revision
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import logging
import os
import secrets
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import yaml

from kserve_nb.resources import DEFAULT_DOMAIN, LOCAL_CONTEXT

log = logging.getLogger("kserve_nb.local")


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600 (it may hold the token)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_or_create_token(state_dir: Path, name: str = "token") -> str:
    """The API token of this state dir (or another secret file ``name``), created on first start."""
    path = state_dir / name
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    write_private(path, token + "\n")
    return token


def load_or_create_tls(state_dir: Path) -> Any:
    """The API server's CA and certificate, created once per state dir so kubeconfigs stay valid.

    kubectl sends a kubeconfig's bearer token only over TLS, so the loopback API speaks HTTPS with a
    private CA that the kubeconfig trusts through ``certificate-authority-data``.
    """
    from kserve_nb.local.apiserver import TlsMaterial, self_signed_tls

    paths = [state_dir / "ca.crt", state_dir / "tls.crt", state_dir / "tls.key"]
    if all(p.exists() for p in paths):
        return TlsMaterial(*(p.read_bytes() for p in paths))
    tls = self_signed_tls()
    for path, pem in zip(paths, (tls.ca_pem, tls.cert_pem, tls.key_pem)):
        write_private(path, pem.decode())
    return tls


def _bind(port: int) -> socket.socket:
    # Loopback only. Try the port we had last time so an existing kubeconfig keeps working.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    sock.setblocking(False)
    return sock


def _previous_ports(state_dir: Path) -> dict[str, Any]:
    try:
        ports: dict[str, Any] = json.loads((state_dir / "ports.json").read_text())
        return ports
    except (OSError, ValueError):
        return {}


async def _start_ingress(state_dir: Path, port: int, metrics_token: str) -> tuple[Any, int]:
    """nginx in front of the Python gateway when nginx is installed, else the Python gateway alone.

    The previous run's port is tried first (clients keep their ``INGRESS_PORT``), then a free one.
    """
    from kserve_nb.local.gateway import Gateway
    from kserve_nb.local.nginx import NginxIngress, find_nginx

    found = find_nginx()
    for candidate in dict.fromkeys((port, 0)):
        gateway: Gateway | NginxIngress = (
            NginxIngress(state_dir / "ingress", candidate, found=found, metrics_token=metrics_token)
            if found else Gateway("127.0.0.1", candidate)
        )
        try:
            return gateway, await gateway.start()
        except OSError as e:
            await gateway.close()
            if candidate == 0:
                raise
            log.info("ingress port %d is taken (%s): picking another", candidate, e)
    raise AssertionError("unreachable")


async def serve(state_dir: Path, domain: str = DEFAULT_DOMAIN) -> None:
    """Run the local cluster until SIGTERM/SIGINT."""
    from aiohttp import web

    from kserve_nb.local import prometheus, storage
    from kserve_nb.local.apiserver import create_app, kubeconfig
    from kserve_nb.local.controller import Controller
    from kserve_nb.local.exporter import TOKEN_FILE, MetricsServer
    from kserve_nb.local.nginx import NginxIngress
    from kserve_nb.local.runtime import Runtime
    from kserve_nb.local.store import Store
    from kserve_nb.semantics import Settings

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    token = load_or_create_token(state_dir)
    tls = load_or_create_tls(state_dir)
    store = Store(state_dir / "store.sqlite")
    following: Controller | None = None  # runtime changes reach the controller once it starts

    def on_change(state: Any) -> None:
        if following is not None:
            following.on_runtime_change(state)

    # Seeding the mirror trains two small models (it imports scikit-learn) and the zygote imports
    # kserve: both run concurrently with the API's start-up; launches wait for them.
    seeded = loop.run_in_executor(None, storage.seed_mirror, state_dir)
    runtime = Runtime(state_dir, on_change, prerequisite=seeded)
    await runtime.start(wait=False)
    # Before the controller's first pass: the revisions still serving are running already (same
    # pid and port), so it restarts none of them and the routing table it computes is unchanged.
    adopted = await runtime.adopt()
    if adopted:
        log.info("adopted %d running model server(s): %s", len(adopted),
                 ", ".join(f"{s.namespace}/{s.revision} (pid {s.pid}, port {s.port})" for s in adopted))
    previous = _previous_ports(state_dir)
    metrics_token = load_or_create_token(state_dir, TOKEN_FILE)
    gateway, ingress_port = await _start_ingress(state_dir, int(previous.get("ingress", 0)), metrics_token)
    # The Python gateway's counters (behind nginx, or alone); nginx serves its own on its control port.
    exporter = MetricsServer(gateway.metrics.render, metrics_token)
    try:
        await exporter.start()
    except OSError:
        await gateway.close()
        raise
    exporters = {"gateway": exporter.port}
    if isinstance(gateway, NginxIngress):
        exporters["nginx"] = gateway.metrics_port
    # Rewritten at every start: a running Prometheus follows the new ports (file-based discovery).
    prometheus.write_targets(state_dir, exporters)
    controller = Controller(store, runtime, gateway, Settings(domain=domain))
    # The service proxy reaches a Service's pods: the controller knows its ready processes.
    app = create_app(store, token, endpoints=controller)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    api_sock = _bind(int(previous.get("api", 0)))
    site = web.SockSite(runner, api_sock, ssl_context=tls.server_context())
    await site.start()
    api_port = api_sock.getsockname()[1]

    if isinstance(gateway, NginxIngress):
        gateway.on_programmed = controller.on_ingress_programmed
    following = controller
    await controller.start()
    # Announce the cluster only once the seeded models exist: a client's pre-flight check of a
    # seeded storageUri must never race the seeding. The zygote keeps warming meanwhile.
    await seeded

    server = f"https://127.0.0.1:{api_port}"
    config = kubeconfig(server, token, tls.ca_pem, context=LOCAL_CONTEXT, namespace="default")
    write_private(state_dir / "kubeconfig", yaml.safe_dump(config, sort_keys=False))
    write_private(state_dir / "ports.json", json.dumps({"api": api_port, "ingress": ingress_port}))
    endpoint = {
        "pid": os.getpid(),
        "api": server,
        "ingress_host": "127.0.0.1",
        "ingress_port": ingress_port,
        "ingress_proxy": "nginx" if isinstance(gateway, NginxIngress) else "python",
        "domain": domain,
        "kubeconfig": str(state_dir / "kubeconfig"),
        "metrics": exporters,
    }
    write_private(state_dir / "endpoint.json", json.dumps(endpoint, indent=2))
    log.info("local cluster up: api %s, ingress 127.0.0.1:%d (%s)", server, ingress_port, endpoint["ingress_proxy"])

    try:
        await stop.wait()
    finally:
        log.info("shutting down")
        (state_dir / "endpoint.json").unlink(missing_ok=True)
        await controller.stop()
        await runtime.close()
        await gateway.close()
        await exporter.close()
        # The on-demand Prometheus lives as long as the cluster it watches.
        await loop.run_in_executor(None, prometheus.stop, state_dir)
        await runner.cleanup()
        store.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the daemon process (``python -m kserve_nb.local.daemon``)."""
    parser = argparse.ArgumentParser(prog="kserve-nb-local-daemon")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--domain", default=DEFAULT_DOMAIN)
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir.expanduser().resolve()
    # Everything the daemon and its children (zygote, model servers, nginx) create is private.
    os.umask(0o077)
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    (state_dir / "logs").mkdir(exist_ok=True)
    from kserve_nb.local.store import tighten_state_dir

    tighten_state_dir(state_dir)
    logging.basicConfig(
        filename=state_dir / "logs" / "daemon.log",
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    lock = open(state_dir / "daemon.lock", "a")  # noqa: SIM115 - held for the process lifetime
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another local cluster is already running on {state_dir}", file=sys.stderr)
        return 3
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        pass
    try:
        asyncio.run(serve(state_dir, args.domain))
    except Exception:
        log.exception("local cluster crashed")
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
