"""nginx as the ingress data plane: its config, its process, and its place in the daemon.

Routing behaviour through nginx is tested in ``test_gateway.py`` (every test there runs against both
data planes); this file covers what is nginx's own: the rendered config (accepted by the real
``nginx -t``, no injection from object names), the reload confirmation, supervision, and the
daemon's choice between nginx and the Python gateway.
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

pytestmark = pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed (make sysdeps installs it)")

LONG_HOST = "latest-" + "a" * 50 + "-predictor." + "n" * 63 + ".example.com"


def nginx_test(conf: str, directory: Path) -> subprocess.CompletedProcess[str]:
    """``nginx -t`` on a config text: what nginx itself thinks of it."""
    (directory / "tmp").mkdir(parents=True, exist_ok=True)
    path = directory / "nginx.conf"
    path.write_text(conf)
    binary = find_nginx()
    assert binary is not None
    return subprocess.run(
        [binary, "-t", "-p", str(directory), "-e", str(directory / "error.log"), "-c", str(path)],
        capture_output=True, text=True, timeout=30,
    )


def test_the_rendered_config_is_valid_for_many_long_hosts(tmp_path: Path) -> None:
    routes = {f"h{i}-{LONG_HOST}": [("ns", f"rev-{i}", 90), ("ns", "rev-x", 10)] for i in range(200)}
    endpoints = {("ns", f"rev-{i}"): ("127.0.0.1", 20000 + i) for i in range(200)}
    endpoints[("ns", "rev-x")] = ("127.0.0.1", 30000)
    conf = render(routes, endpoints, listen=18080, fallback=18081, directory=tmp_path, generation=7)
    result = nginx_test(conf, tmp_path)
    assert result.returncode == 0, result.stderr
    assert conf.count("upstream kn_route_") == 200
    assert "server 127.0.0.1:20003 weight=90" in conf and "server 127.0.0.1:30000 weight=10" in conf
    assert '"~:20003$" rev-3;' in conf  # x-kserve-revision by port
    assert "listen 127.0.0.1:18080" in conf and "0.0.0.0" not in conf


def test_routes_without_a_ready_target_are_left_to_the_python_gateway(tmp_path: Path) -> None:
    conf = render(
        {"a.ns.example.com": [("ns", "r1", 100)], "b.ns.example.com": [("ns", "r2", 0), ("ns", "r3", 100)]},
        {("ns", "r1"): ("127.0.0.1", 20001), ("ns", "r2"): ("127.0.0.1", 20002)},
        listen=18080, fallback=18081, directory=tmp_path, generation=1,
    )
    assert "a.ns.example.com kn_route_0;" in conf
    assert "b.ns.example.com" not in conf  # r2 has no traffic, r3 is not ready: the fallback says why
    assert "default kn_fallback;" in conf and "server 127.0.0.1:18081;" in conf


def test_names_that_are_not_dns_names_never_reach_the_config(tmp_path: Path) -> None:
    evil = [
        "x.example.com; } server { listen 0.0.0.0:80",
        "y.example.com\n  include /etc/passwd;",
        "z.example.com'",
    ]
    routes = {host: [("ns", "r1", 100)] for host in evil}
    routes["ok.example.com"] = [("ns", "r1; evil", 100), ("ns", "r1", 100)]
    conf = render(routes, {("ns", "r1"): ("127.0.0.1", 20001), ("ns", "r1; evil"): ("127.0.0.1", 20002)},
                  listen=18080, fallback=18081, directory=tmp_path, generation=1)
    assert "0.0.0.0" not in conf and "passwd" not in conf and "evil" not in conf and "'" not in conf.split("map $host")[1].split("}")[0]
    assert "ok.example.com kn_route_0;" in conf and "20002" not in conf
    assert nginx_test(conf, tmp_path).returncode == 0


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
    with pytest.raises(RuntimeError, match="apt-get install nginx"):
        find_nginx()


def test_updates_are_confirmed_then_reported_and_a_dead_nginx_is_restarted(tmp_path: Path) -> None:
    async def go() -> None:
        reported: list[dict] = []
        ingress = NginxIngress(tmp_path / "ingress", on_programmed=lambda t: reported.append(dict(t)))
        port = await ingress.start()
        try:
            assert stat_mode(tmp_path / "ingress") == 0o700
            routes = {"a.ns.example.com": [("ns", "r1", 100)]}
            ingress.update(routes, {("ns", "r1"): ("127.0.0.1", 9)})
            assert reported == []  # nginx reloads first
            await ingress.wait_programmed()
            assert reported == [routes]
            # The old worker no longer accepts: every new connection gets the new config.
            async with httpx.AsyncClient() as client:
                for _ in range(20):
                    r = await client.get(f"http://127.0.0.1:{port}/", headers={"Host": "nope.example.com"})
                    assert r.status_code == 404 and "a.ns.example.com" in r.json()["error"]
            # The same table again: nothing to reload, reported at once.
            ingress.update(routes, {("ns", "r1"): ("127.0.0.1", 9)})
            assert len(reported) == 2
            # nginx killed behind our back: restarted on the same port with the same table.
            master = ingress.pid
            assert master is not None
            os.kill(master, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and (ingress.pid in (None, master) or len(reported) < 3):
                await asyncio.sleep(0.05)
            assert ingress.pid not in (None, master)
            async with httpx.AsyncClient() as client:
                r = await client.get(f"http://127.0.0.1:{port}/", headers={"Host": "nope.example.com"})
            assert r.status_code == 404
        finally:
            pid = ingress.pid
            await ingress.close()
        assert pid is not None and not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE

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
