"""nginx as the ingress data plane: its config, its process, and its place in the daemon.

Routing behaviour through nginx is tested in ``test_routing.py`` and ``test_gateway.py`` (every test
there runs against both data planes); this file covers what is nginx's own: the rendered config
(accepted by the real ``nginx -t``), the pushed table (no injection from object names), the control
endpoint's token, supervision, and the daemon's choice between nginx and the Python gateway.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest
import uvloop

from kserve_nb.local import manager
from kserve_nb.local.nginx import INGRESS_ENV, NginxIngress, find_nginx, render
from kserve_nb.local.routing import decode_table, encode_table

pytestmark = pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed (make sysdeps installs it)")

LONG_HOST = "latest-" + "a" * 50 + "-predictor." + "n" * 63 + ".example.com"


def nginx_test(conf: str, directory: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on a config text: what nginx itself thinks of it."""
    (directory / "tmp").mkdir(parents=True, exist_ok=True)
    path = directory / "nginx.conf"
    path.write_text(conf)
    found = find_nginx()
    assert found is not None
    return subprocess.run(
        [found[0], "-t", "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(path)],
        capture_output=True, text=True, timeout=30,
    )


def test_the_rendered_config_is_valid_and_loopback_only(tmp_path: Path) -> None:
    found = find_nginx()
    assert found is not None
    conf = render(listen=18080, control=18082, fallback=18081, token="t0k3n", directory=tmp_path, modules=found[1])
    result = nginx_test(conf, tmp_path)
    assert result.returncode == 0, result.stderr
    listens = [line.strip() for line in conf.splitlines() if line.strip().startswith("listen ")]
    assert listens == ["listen 127.0.0.1:18080 default_server;", "listen 127.0.0.1:18082;"]


def test_the_table_holds_only_ready_targets_with_traffic() -> None:
    table = encode_table(
        {
            "a.ns.example.com": [("ns", "r1", 90), ("ns", "r2", 10)],
            "B.NS.example.com:8080": [("ns", "r2", 0), ("ns", "r3", 100)],
            LONG_HOST: [("ns", "r1", 100)],
        },
        {("ns", "r1"): ("127.0.0.1", 20001), ("ns", "r2"): ("127.0.0.1", 20002)},
    )
    assert table.splitlines() == [
        "a.ns.example.com r1 20001 90 ns r2 20002 10 ns",
        # b: r2 has no traffic and r3 is not ready, so the Python gateway answers it (503, says why)
        f"{LONG_HOST} r1 20001 100 ns",
    ]


def test_a_table_decodes_to_the_routes_and_endpoints_it_encodes() -> None:
    routes = {"a.ns.example.com": [("ns", "r2", 30), ("ns", "r1", 70)], "prev-a.ns.example.com": [("ns", "r1", 100)]}
    endpoints = {("ns", "r1"): ("127.0.0.1", 4001), ("ns", "r2"): ("127.0.0.1", 4002)}
    assert decode_table(encode_table(routes, endpoints)) == (routes, endpoints)
    assert decode_table("\n") == ({}, {})


def test_names_that_are_not_dns_names_never_reach_the_table() -> None:
    evil = ["x.example.com r9 22 100\nevil.example.com", "y.example.com;", "z example.com", "w.example.com'"]
    routes = {host: [("ns", "r1", 100)] for host in evil}
    routes["ok.example.com"] = [("ns", "r1 6666 100", 100), ("ns", "r1", 100)]
    table = encode_table(routes, {("ns", "r1"): ("127.0.0.1", 20001), ("ns", "r1 6666 100"): ("127.0.0.1", 20002)})
    assert table == "ok.example.com r1 20001 100 ns\n"


def test_find_nginx_honours_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INGRESS_ENV, "python")
    assert find_nginx() is None
    monkeypatch.setenv(INGRESS_ENV, "nginx")
    assert find_nginx() is not None
    monkeypatch.setenv(INGRESS_ENV, "envoy")
    with pytest.raises(RuntimeError, match="use nginx, python or auto"):
        find_nginx()
    monkeypatch.setenv(INGRESS_ENV, "nginx")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    monkeypatch.setattr("kserve_nb.local.nginx.MODULE_DIRS", ("/nonexistent",))
    with pytest.raises(RuntimeError, match="apt-get install nginx libnginx-mod-http-lua"):
        find_nginx()


def test_updates_are_pushed_then_reported_and_a_dead_nginx_is_restarted(tmp_path: Path) -> None:
    async def go() -> None:
        reported: list[dict] = []
        ingress = NginxIngress(tmp_path / "ingress", on_programmed=lambda t: reported.append(dict(t)))
        port = await ingress.start()
        try:
            assert stat_mode(tmp_path / "ingress") == 0o700
            assert stat_mode(tmp_path / "ingress" / "nginx.conf") == 0o600  # it holds the control token
            assert ingress._token not in repr(ingress)
            routes = {"a.ns.example.com": [("ns", "r1", 100)]}
            ingress.update(routes, {("ns", "r1"): ("127.0.0.1", 9)})
            assert reported == []  # pushed asynchronously
            await ingress.wait_programmed()
            assert reported == [routes]
            async with httpx.AsyncClient() as client:
                r = await client.get(f"http://127.0.0.1:{port}/", headers={"Host": "nope.example.com"})
                assert r.status_code == 404 and "a.ns.example.com" in r.json()["error"]
                # The control endpoint wants its token.
                control = f"http://127.0.0.1:{ingress._control}/routes"
                assert (await client.post(control, content=b"evil.example.com r 1 100\n")).status_code == 401
            # The same table again: nothing to push, reported at once.
            ingress.update(routes, {("ns", "r1"): ("127.0.0.1", 9)})
            assert len(reported) == 2
            # nginx killed behind our back: restarted on the same port, and the table pushed again.
            master = ingress.pid
            assert master is not None
            os.kill(master, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (ingress.pid in (None, master) or len(reported) < 3):
                await asyncio.sleep(0.05)
            assert ingress.pid not in (None, master) and len(reported) == 3
            async with httpx.AsyncClient() as client:
                r = await client.get(f"http://127.0.0.1:{port}/", headers={"Host": "nope.example.com"})
            assert r.status_code == 404
        finally:
            pid = ingress.pid
            workers = ingress._workers_seen | ingress._workers()
            await ingress.close()
        assert pid is not None and workers
        assert not [
            p for p in [pid, *workers] if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        ]

    uvloop.run(go())


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_the_daemon_uses_nginx_when_installed_and_the_python_gateway_when_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for choice in ("nginx", "python"):
        monkeypatch.setenv(INGRESS_ENV, choice)
        state = tmp_path / choice
        cluster = manager.up(state)
        try:
            assert cluster.ingress_proxy == choice
            children = psutil.Process(cluster.pid).children(recursive=True)
            assert any(p.name() == "nginx" for p in children) == (choice == "nginx")
            r = httpx.get(cluster.ingress + "/", headers={"Host": "nope.example.com"}, timeout=10)
            assert r.status_code == 404 and r.json()["error"].startswith("no route for host")
        finally:
            manager.down(state)
        gone, alive = psutil.wait_procs(children, timeout=10)  # the zygote follows its parent
        assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_a_restarted_daemon_adopts_the_running_nginx_with_its_port_and_table(tmp_path: Path) -> None:
    """nginx outlives its daemon: the next ingress on the directory adopts it (no new process)."""
    directory = tmp_path / "ingress"

    async def revision(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A stand-in model server: answers every request with 200 and keeps the connection.
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).lower()
                length = (
                    int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0]) if b"content-length:" in head else 0
                )
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def abandon(ingress: NginxIngress) -> None:
        # What kill -9 of the daemon does to an ingress: its Python side is gone, nginx is not.
        assert ingress._supervisor is not None
        ingress._supervisor.cancel()
        await ingress._fallback.close()

    async def go() -> None:
        upstream = await asyncio.start_server(revision, "127.0.0.1", 0)
        upstream_port = upstream.sockets[0].getsockname()[1]
        routes = {"a.ns.example.com": [("ns", "r1", 100)]}
        endpoints = {("ns", "r1"): ("127.0.0.1", upstream_port)}
        first = NginxIngress(directory, metrics_token="metrics")
        port = await first.start()
        first.update(routes, endpoints)
        await first.wait_programmed()
        master = first.pid
        assert master is not None and stat_mode(directory / "ingress.json") == 0o600
        await abandon(first)
        survivors: list[NginxIngress] = []
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                assert (await client.post("/", json={}, headers={"Host": "a.ns.example.com"})).status_code == 200
                down = await client.get("/", headers={"Host": "nope.example.com"})
                assert down.status_code == 503 and "kserve-nb local up" in down.json()["error"]

                reported: list[dict] = []
                second = NginxIngress(
                    directory, metrics_token="metrics", on_programmed=lambda t: reported.append(dict(t))
                )
                survivors.append(second)
                assert await second.start() == port and second.pid == master
                # Before any update the gateway behind nginx serves nginx's table (a body nginx
                # hands to it: not JSON).
                slow = await client.post(
                    "/", content=b"x", headers={"Host": "a.ns.example.com", "Content-Type": "text/plain"}
                )
                assert slow.status_code == 200 and slow.headers["x-kserve-revision"] == "r1"
                second.update(routes, endpoints)
                assert reported == [routes]  # nginx holds this table already: nothing pushed
                assert (await client.get("/", headers={"Host": "nope.example.com"})).status_code == 404

                # The gateway's port is taken meanwhile: nginx is reloaded (same master, same port)
                # to send its fallback requests to the new one.
                await abandon(second)
                with socket_on(second._fallback.port):
                    third = NginxIngress(directory, metrics_token="metrics")
                    survivors.append(third)
                    assert await third.start() == port and third.pid == master
                    assert third._fallback.port != second._fallback.port
                    assert (await client.post("/", json={}, headers={"Host": "a.ns.example.com"})).status_code == 200
                    # A new connection goes to a new worker, which sends fallback requests to the new gateway.
                    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as fresh:
                        assert (await fresh.get("/", headers={"Host": "nope.example.com"})).status_code == 404
        finally:
            workers = {w for s in [first, *survivors] for w in s._workers_seen | s._workers()}
            await survivors[-1].close() if survivors else await first.close()
            upstream.close()
        assert not [
            p for p in [master, *workers] if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
        ]
        assert not (directory / "ingress.json").exists()

    uvloop.run(go())


def test_a_record_naming_another_process_is_not_adopted(tmp_path: Path) -> None:
    directory = tmp_path / "ingress"
    directory.mkdir()
    # This test process under the recorded pid (right start time, but not nginx of this directory).
    me = psutil.Process()
    (directory / "ingress.json").write_text(
        f'{{"pid": {me.pid}, "started": {me.create_time()}, "port": 1, "control": 1, "fallback": 1, "token": "x"}}'
    )

    async def go() -> None:
        ingress = NginxIngress(directory)
        await ingress.start()
        try:
            assert ingress.pid not in (None, me.pid)
        finally:
            await ingress.close()

    uvloop.run(go())


class socket_on:
    """Hold 127.0.0.1:port (listening) for the duration of a ``with`` block."""

    def __init__(self, port: int) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(1)

    def __enter__(self) -> socket_on:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
