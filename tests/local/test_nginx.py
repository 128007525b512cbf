"""nginx as the ingress data plane: its config, its process, and its place in the daemon.

Routing behaviour through nginx is tested in ``test_gateway.py`` (every test there runs against both
data planes); this file covers what is nginx's own: the rendered config (accepted by the real
``nginx -t``), the pushed table (no injection from object names), the control endpoint's token,
supervision, and the daemon's choice between nginx and the Python gateway.
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
from kserve_nb.local.nginx import INGRESS_ENV, NginxIngress, encode_table, find_nginx, render

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
        assert not [p for p in [pid, *workers] if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]

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
