"""Per-revision metrics of the local cluster: the ingress' exporters (nginx and the Python gateway),
the on-demand Prometheus scraping them, and PrometheusSource reading it — real processes throughout.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from kserve_nb import errors
from kserve_nb.local import manager, prometheus
from kserve_nb.local.exporter import LE_LABELS
from kserve_nb.local.nginx import INGRESS_ENV, find_nginx
from kserve_nb.metrics.prometheus import PrometheusSource
from kserve_nb.metrics.sample import LATENCY_BUCKETS_MS

from .test_daemon import BASE, M1, M2, api, manifest, ready, split, wait_for

ISVC = "metered"
REV1, REV2 = f"{ISVC}-predictor-00001", f"{ISVC}-predictor-00002"
HOST = f"{ISVC}.default.example.com"
PATH = f"/v1/models/{ISVC}:predict"
ROW = {"instances": [[6.8, 2.8, 4.8, 1.4]]}
BAD_ROW = {"instances": [[1.0, 2.0, 3.0]]}  # the model answers 500 (3 features, 4 expected)
LINE = re.compile(r'^(\w+)\{([^}]*)\} (\S+)$')


@dataclass
class Metered:
    """A local cluster with ``metered`` at a 30 % canary, and what this module sent through it."""

    cluster: manager.LocalCluster
    plane: str
    sent: dict[tuple[str, str], int] = field(default_factory=dict)  # (revision, code) -> requests
    client_ms: dict[str, float] = field(default_factory=dict)  # revision -> summed client latency

    @property
    def token(self) -> str:
        return (self.cluster.state_dir / "metrics.token").read_text().strip()

    def send(self, n: int, body: Any = ROW, **kw: Any) -> None:
        with httpx.Client(base_url=self.cluster.ingress, timeout=30) as gw:
            for _ in range(n):
                started = time.perf_counter()
                r = gw.post(PATH, headers={"Host": HOST, **kw.pop("headers", {})}, **({"json": body} | kw))
                elapsed = (time.perf_counter() - started) * 1000
                rev = r.headers["x-kserve-revision"]
                key = (rev, str(r.status_code))
                self.sent[key] = self.sent.get(key, 0) + 1
                self.client_ms[rev] = self.client_ms.get(rev, 0.0) + elapsed


@pytest.fixture(scope="module", params=["python", "nginx"])
def metered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Metered]:
    if request.param == "nginx" and find_nginx() is None:
        pytest.skip("nginx is not installed (make sysdeps installs it)")
    state_dir = tmp_path_factory.mktemp(f"metrics-{request.param}")
    before = os.environ.get(INGRESS_ENV)
    os.environ[INGRESS_ENV] = request.param  # the daemon inherits it
    try:
        cluster = manager.up(state_dir)
    finally:
        if before is None:
            os.environ.pop(INGRESS_ENV, None)
        else:
            os.environ[INGRESS_ENV] = before
    try:
        assert cluster.ingress_proxy == request.param
        with api(cluster) as client:
            client.post(BASE, json=manifest(ISVC, M1)).raise_for_status()
            wait_for(client, ISVC, ready, timeout=60)
            client.patch(f"{BASE}/{ISVC}", json=manifest(ISVC, M2, canary=30),
                         headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
            wait_for(client, ISVC, lambda o: ready(o) and dict(split(o)).get(REV2) == 30, timeout=60)
        yield Metered(cluster, request.param)
    finally:
        manager.down(state_dir)


def scrape(url: str, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.get(url, headers=headers, timeout=10)


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Exposition text → metric name → sorted label pairs → value."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        assert m, f"not exposition format: {line!r}"
        labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2))))
        out.setdefault(m.group(1), {})[labels] = float(m.group(3))
    return out


def exported(m: Metered) -> dict[str, dict[str, dict[tuple[tuple[str, str], ...], float]]]:
    """Each exporter's parsed metrics."""
    out = {}
    for name, port in m.cluster.metrics:
        r = scrape(f"http://127.0.0.1:{port}/metrics", m.token)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        out[name] = parse(r.text)
    return out


def counts(metrics: dict[str, dict[tuple[tuple[str, str], ...], float]]) -> dict[tuple[str, str], int]:
    """(revision, code) → requests, from ``revision_app_request_count``."""
    out: dict[tuple[str, str], int] = {}
    for labels, value in metrics.get("revision_app_request_count", {}).items():
        d = dict(labels)
        key = (d["revision_name"], d["response_code"])
        out[key] = out.get(key, 0) + int(value)
    return out


def total(per_exporter: dict[str, Any]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for metrics in per_exporter.values():
        for key, n in counts(metrics).items():
            out[key] = out.get(key, 0) + n
    return out


# --- the exporters -------------------------------------------------------------------------------


def test_exporters_are_listed_loopback_only_and_want_the_token(metered: Metered) -> None:
    names = dict(metered.cluster.metrics)
    assert set(names) == ({"gateway", "nginx"} if metered.plane == "nginx" else {"gateway"})
    token_file = metered.cluster.state_dir / "metrics.token"
    assert token_file.stat().st_mode & 0o777 == 0o600
    for port in names.values():
        url = f"http://127.0.0.1:{port}/metrics"
        assert scrape(url, None).status_code == 401
        assert scrape(url, "not-the-token").status_code == 401
        assert scrape(url, metered.token).status_code == 200
        listening = [c.laddr.ip for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == port]
        assert listening == ["127.0.0.1"], listening
    # Prometheus finds them through the file the daemon wrote.
    groups = json.loads((metered.cluster.state_dir / "prometheus" / "targets.json").read_text())
    assert sorted(g["targets"][0] for g in groups) == sorted(f"127.0.0.1:{p}" for p in names.values())


def test_every_request_is_counted_once_under_its_revision_code_and_latency(metered: Metered) -> None:
    before = total(exported(metered))
    metered.send(120)
    metered.send(6, BAD_ROW)  # the model answers 500: counted with its code
    # A JSON body sent as a form (curl -d): nginx hands it to the Python gateway, which counts it.
    metered.send(4, content=json.dumps(ROW).encode(), headers={"Content-Type": "application/x-www-form-urlencoded"})
    after = exported(metered)
    delta = {k: v - before.get(k, 0) for k, v in total(after).items() if v - before.get(k, 0)}
    assert delta == {k: v for k, v in metered.sent.items()}, (delta, metered.sent)
    assert {rev for rev, _ in delta} == {REV1, REV2}  # both sides of the split
    assert sum(n for (_, code), n in delta.items() if code == "500") == 6
    if metered.plane == "nginx":
        # nginx forwarded the JSON requests itself; the Python gateway only the 4 form-encoded ones
        assert sum(counts(after["gateway"]).values()) == 4

    for name, metrics in after.items():
        buckets = metrics.get("revision_app_request_latencies_bucket", {})
        for labels, n in metrics.get("revision_app_request_count", {}).items():
            d = dict(labels)
            assert d["namespace_name"] == "default"
            assert d["configuration_name"] == d["service_name"] == f"{ISVC}-predictor"
            assert d["response_code_class"] == d["response_code"][0] + "xx"
            # this series' buckets, in exposition order
            series = [(dict(k)["le"], v) for k, v in buckets.items() if {x for x in k if x[0] != "le"} == set(labels)]
            les = [le for le, _ in series]
            assert les == list(LE_LABELS) + ["+Inf"], f"{name}: buckets {les}"
            values = [v for _, v in series]
            assert values == sorted(values) and values[-1] == n
            assert metrics["revision_app_request_latencies_count"][labels] == n
    # The ingress times the revision's part of each request: more than nothing, less than the client saw.
    for rev in (REV1, REV2):
        ms = sum(
            v
            for metrics in after.values()
            for k, v in metrics.get("revision_app_request_latencies_sum", {}).items()
            if dict(k)["revision_name"] == rev
        )
        assert 0 < ms < metered.client_ms[rev], (rev, ms, metered.client_ms[rev])


def test_the_buckets_are_the_shared_contracts() -> None:
    assert [float(le) for le in LE_LABELS] == [float(b) for b in LATENCY_BUCKETS_MS]
    assert "1" in LE_LABELS and "1.0" not in LE_LABELS  # one spelling across exporters


# --- the local Prometheus ------------------------------------------------------------------------


def test_prometheus_starts_on_demand_scrapes_and_matches_what_was_sent(metered: Metered) -> None:
    if prometheus.find_prometheus() is None:
        pytest.skip("prometheus is not installed (apt-get install --no-install-recommends prometheus)")
    sd = metered.cluster.state_dir
    assert manager.prometheus_status(sd) is None  # not part of `local up`
    import kserve_nb

    session = kserve_nb.connect(kubeconfig=metered.cluster.kubeconfig)
    try:
        source = session.metrics()
        assert source is session.metrics()  # cached
        running = manager.prometheus_status(sd)
        assert running is not None and running.url.startswith("http://127.0.0.1:")
        assert running.password and running.password not in repr(running) + repr(source) + source.name
        directory = sd / "prometheus"
        assert directory.stat().st_mode & 0o777 == 0o700
        for name in ("prometheus.yml", "web.yml", "password", "targets.json", "running.json"):
            assert (directory / name).stat().st_mode & 0o777 == 0o600, name

        metered.send(40)
        metered.send(3, BAD_ROW)
        want = total(exported(metered))
        n = sum(want.values())
        snap = source.wait_for("default", ISVC, [REV1, REV2], n, timeout=30)
        got = {(rev, code): k for rev, s in snap.items() for code, k in s.codes.items()}
        assert got == want
        for rev, s in snap.items():
            assert s.source == "prometheus"
            assert s.requests == sum(k for (r, _), k in want.items() if r == rev)
            assert s.errors == sum(k for (r, c), k in want.items() if r == rev and c.startswith("5"))
            assert s.latency.total == s.requests and 0 < s.latency.quantile(0.5) < 1000
            assert 'revision_name=~"metered-predictor-00001|metered-predictor-00002"' in s.queries["requests"]
        # A revision never seen is all zero, and differences line up with it.
        none = source.snapshot("default", ISVC, ["metered-predictor-00009"])["metered-predictor-00009"]
        assert none.requests == 0 and (snap[REV1] - none).requests == snap[REV1].requests

        deadline = time.monotonic() + 30
        while True:  # a rate needs two scrapes after the traffic
            now = time.time()
            frame = source.range_frame("default", ISVC, now - 60, now, 1.0)
            if set(frame["revision"]) == {REV1, REV2} or time.monotonic() > deadline:
                break
            metered.send(5)
            time.sleep(0.5)
        assert list(frame.columns) == ["time", "revision", "rps", "error_rate", "p50_ms", "p95_ms"]
        assert set(frame["revision"]) == {REV1, REV2}
        assert frame["rps"].max() > 0 and frame["p95_ms"].dropna().gt(0).any()

        shown = source.explain("default", ISVC, [REV1, REV2])
        assert set(shown["quantity"]) == {"requests", "rps", "error_rate", "p50_ms", "p95_ms"}
        requests_row = shown[(shown.quantity == "requests") & (shown.revision == REV1)].iloc[0]
        assert requests_row["value"] == snap[REV1].requests and "revision_app_request_count" in requests_row["query"]

        # One-line errors: a bad query, wrong credentials, nothing listening.
        with pytest.raises(errors.ValidationError, match="Prometheus rejected the query"):
            source.query("sum(")
        with pytest.raises(errors.AccessDenied, match="refused"):
            PrometheusSource(running.url, auth=("kserve-nb", "wrong")).query("up")
        with pytest.raises(errors.ConnectionFailed, match="cannot reach Prometheus"):
            PrometheusSource(f"http://127.0.0.1:{_closed_port()}").query("up")
        # Its own API binds loopback only.
        port = int(running.url.rsplit(":", 1)[1])
        listening = [c.laddr.ip for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == port]
        assert listening == ["127.0.0.1"]
        assert "prometheus" in _cli("local", "status", "--state-dir", str(sd))
    finally:
        session.close()


def test_local_down_leaves_nothing_running(tmp_path: Path) -> None:
    if prometheus.find_prometheus() is None:
        pytest.skip("prometheus is not installed")
    sd = tmp_path / "state"
    cluster = manager.up(sd)
    try:
        out = _cli("local", "prometheus", "--state-dir", str(sd))
        assert "Prometheus http://127.0.0.1:" in out and "password in" in out
        running = manager.prometheus_status(sd)
        assert running is not None and running.password not in out
        assert manager.ensure_prometheus(sd).pid == running.pid  # reused, not a second one
    finally:
        assert manager.down(sd)
    assert not psutil.pid_exists(cluster.pid) or psutil.Process(cluster.pid).status() == psutil.STATUS_ZOMBIE
    assert not _alive(running.pid)
    assert not [p.pid for p in psutil.process_iter(["cmdline"]) if str(sd) in " ".join(p.info["cmdline"] or [])]
    assert manager.prometheus_status(sd) is None


def test_the_prometheus_config_names_only_loopback(tmp_path: Path) -> None:
    prometheus.write_targets(tmp_path, {"nginx": 1234, "gateway": 2345})
    config = prometheus.render_config(tmp_path)
    targets = (tmp_path / "prometheus" / "targets.json").read_text()
    hosts = re.findall(r"\b(\d+\.\d+\.\d+\.\d+|localhost|0\.0\.0\.0|\[::\]?)", config + targets)
    assert set(hosts) == {"127.0.0.1"}
    assert "credentials_file" in config and "scrape_interval: 1s" in config
    # no secret is written into the config itself
    assert "Bearer " not in config


def test_without_prometheus_a_session_says_how_to_configure_one(tmp_path: Path) -> None:
    import kserve_nb

    # A session on a cluster without a Prometheus Service: the local one's API, seen as a real cluster.
    cluster = manager.up(tmp_path / "state")
    try:
        from kserve_nb.cluster import Cluster
        from kserve_nb.session import Session

        session = Session(Cluster.from_kubeconfig(cluster.kubeconfig))
        with pytest.raises(errors.ConfigError, match="no Prometheus found .*connect\\(prometheus="):
            session.metrics()
        explicit = kserve_nb.connect(kubeconfig=cluster.kubeconfig, prometheus="http://127.0.0.1:9")
        assert explicit.metrics().url == "http://127.0.0.1:9"
        with pytest.raises(errors.ConfigError, match="must start with http"):
            PrometheusSource("127.0.0.1:9090")
    finally:
        manager.down(tmp_path / "state")


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _cli(*args: str) -> str:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "kserve_nb.cli", *args], capture_output=True, text=True, timeout=120)
    return proc.stdout + proc.stderr



# --- failures are counted with their code, once -----------------------------------------------------


@pytest.mark.parametrize("plane", ["python", "nginx"])
def test_failed_revisions_count_as_502_and_503_once(plane: str, tmp_path: Path) -> None:
    """A revision that hangs up mid-request is a 502, one that refuses connections a 503 (nginx
    hands that one to the Python gateway, which answers and counts it): each counted once."""
    import asyncio

    import uvloop

    from kserve_nb.local.exporter import MetricsServer
    from kserve_nb.local.gateway import Gateway
    from kserve_nb.local.nginx import NginxIngress

    if plane == "nginx" and find_nginx() is None:
        pytest.skip("nginx is not installed")

    async def go() -> dict[tuple[str, str], int]:
        async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")  # read the request, never answer
            writer.close()

        server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
        hanging = server.sockets[0].getsockname()[1]
        refused = _closed_port()
        ingress: Gateway | NginxIngress = (
            Gateway() if plane == "python" else NginxIngress(tmp_path / "ingress", metrics_token="tok")
        )
        await ingress.start()
        exporter = MetricsServer(ingress.metrics.render, "tok")
        await exporter.start()
        try:
            routes = {
                "h.ns.example.com": [("ns", "h-predictor-00001", 100)],
                "r.ns.example.com": [("ns", "r-predictor-00001", 100)],
            }
            ingress.update(
                routes,
                {
                    ("ns", "h-predictor-00001"): ("127.0.0.1", hanging),
                    ("ns", "r-predictor-00001"): ("127.0.0.1", refused),
                },
            )
            if isinstance(ingress, NginxIngress):
                await ingress.wait_programmed()
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ingress.port}", timeout=30) as client:
                for host, code in (("h.ns.example.com", 502), ("r.ns.example.com", 503)):
                    for _ in range(3):
                        r = await client.post("/v1/models/x:predict", json=ROW, headers={"Host": host})
                        assert r.status_code == code, r.text
                ports = [exporter.port] + ([ingress.metrics_port] if isinstance(ingress, NginxIngress) else [])
                found: dict[tuple[str, str], int] = {}
                for port in ports:
                    r = await client.get(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": "Bearer tok"})
                    for key, n in counts(parse(r.text)).items():
                        found[key] = found.get(key, 0) + n
                return found
        finally:
            await exporter.close()
            await ingress.close()
            server.close()

    found = uvloop.run(go())
    assert found == {("h-predictor-00001", "502"): 3, ("r-predictor-00001", "503"): 3}
