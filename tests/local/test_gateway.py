"""Ingress gateway with real model servers: Host routing, content-type coercion, failures under load, HTTP/1.1.

Real revision processes (through the runtime), a real gateway on 127.0.0.1, real HTTP. Every test
runs against both data planes: the Python :class:`Gateway` alone, and nginx in front of it
(:class:`NginxIngress`, what the daemon uses when nginx is installed). The routing rule itself
(weights, weight 0, retry once, the error answers) is tested in ``test_routing.py``, on both too.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import psutil
import pytest
import uvloop

from kserve_nb.local.gateway import Gateway
from kserve_nb.local.nginx import NginxIngress, find_nginx
from kserve_nb.local.runtime import RevisionSpec, RevisionState, Runtime
from kserve_nb.local.storage import seed_mirror

T = TypeVar("T")
NS = "kserve-test"
ISVC = "sklearn-iris"
REV1 = f"{ISVC}-predictor-00001"
REV2 = f"{ISVC}-predictor-00002"
HOST = f"{ISVC}.{NS}.example.com"
PREDICTOR_HOST = f"{ISVC}-predictor.{NS}.example.com"
LATEST_HOST = f"latest-{ISVC}-predictor.{NS}.example.com"
PREV_HOST = f"prev-{ISVC}-predictor.{NS}.example.com"
IRIS_JSON = b'{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}'
PREDICT = f"/v1/models/{ISVC}:predict"


@dataclass
class Cluster:
    """Two Ready revisions, a gateway, and the events the runtime reported."""

    loop: asyncio.AbstractEventLoop
    runtime: Runtime
    gateway: Gateway | NginxIngress
    port: int
    events: list[tuple[float, RevisionState]]
    routes: dict[str, list[tuple[str, str, int]]]

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def endpoints(self) -> dict[tuple[str, str], tuple[str, int]]:
        return {
            key: (s.host, s.port)
            for key, s in self.runtime.states().items()
            if s.phase == "Ready" and s.port is not None
        }

    @property
    def nginx(self) -> bool:
        return isinstance(self.gateway, NginxIngress)

    def route(self, routes: dict[str, list[tuple[str, str, int]]]) -> None:
        """Program the gateway the way the daemon does: routes plus the runtime's ready endpoints."""
        self.routes = routes
        self.program(routes, self.endpoints())

    def program(
        self, routes: dict[str, list[tuple[str, str, int]]], endpoints: dict[tuple[str, str], tuple[str, int]]
    ) -> None:
        """``update`` and, for nginx, wait until it serves the table (the controller's status gate)."""
        self.gateway.update(routes, endpoints)
        if isinstance(self.gateway, NginxIngress):
            self.run(self.gateway.wait_programmed())

    def python_only(self, why: str) -> None:
        if self.nginx:
            pytest.skip(f"the Python gateway's own behaviour: {why}")

    def state(self, revision: str) -> RevisionState:
        return self.runtime.states()[(NS, revision)]

    async def until(self, revision: str, phase: str, restarts: int = 0, timeout: float = 10) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, s in self.events:
                if s.revision == revision and s.phase == phase and s.restarts >= restarts:
                    return at
            await asyncio.sleep(0.002)
        raise AssertionError(f"{revision} never reached {phase}")


@pytest.fixture(scope="module", params=["python", "nginx"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if request.param == "nginx" and find_nginx() is None:
        pytest.skip("nginx is not installed (make sysdeps installs it)")
    state_dir = tmp_path_factory.mktemp("gateway")
    seed_mirror(state_dir)
    loop = uvloop.new_event_loop()
    events: list[tuple[float, RevisionState]] = []
    holder: list[Cluster] = []

    def on_change(state: RevisionState) -> None:
        events.append((time.monotonic(), state))
        if holder:  # the daemon's wiring: every runtime change reprograms the gateway at once
            holder[0].gateway.update(holder[0].routes, holder[0].endpoints())

    runtime = Runtime(state_dir, on_change)
    gateway: Gateway | NginxIngress = Gateway() if request.param == "python" else NginxIngress(state_dir / "ingress")
    c = Cluster(loop, runtime, gateway, 0, events, {})
    holder.append(c)
    try:
        c.run(runtime.start(), timeout=60)
        c.port = c.run(gateway.start())
        for rev, uri in ((REV1, "model"), (REV2, "model-2")):
            runtime.ensure_running(
                RevisionSpec(NS, ISVC, rev, f"gs://kfserving-examples/models/sklearn/1.0/{uri}", "sklearn")
            )
        c.run(c.until(REV1, "Ready"))
        c.run(c.until(REV2, "Ready"))
        yield c
    finally:
        c.run(gateway.close())
        c.run(runtime.close())
        loop.close()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    started: float = 0.0


async def _call(
    port: int,
    host: str,
    *,
    path: str = PREDICT,
    data: bytes = IRIS_JSON,
    content_type: str = "application/json",
    session: aiohttp.ClientSession | None = None,
) -> Answer:
    own = session is None
    s = session or aiohttp.ClientSession()
    started = time.monotonic()
    try:
        async with s.post(
            f"http://127.0.0.1:{port}{path}", data=data, headers={"Host": host, "Content-Type": content_type}
        ) as r:
            try:
                return Answer(r.status, dict(r.headers), await r.json(content_type=None), started)
            except aiohttp.ClientPayloadError:
                # Cut off after its head (nginx streams an answer on: a revision killed between
                # writing its head and its body). Status 0: failed, in flight on the named revision.
                return Answer(0, dict(r.headers), None, started)
    finally:
        if own:
            await s.close()


def call(c: Cluster, host: str, **kw: Any) -> Answer:
    return c.run(_call(c.port, host, **kw))


# --- routing -----------------------------------------------------------------------------------


def test_the_gateway_listens_on_loopback(cluster: Cluster) -> None:
    ports = {cluster.port} | ({cluster.gateway._fallback.port} if isinstance(cluster.gateway, NginxIngress) else set())
    listening = [c for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN and c.laddr.port in ports]
    assert {c.laddr.port for c in listening} == ports
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}


def test_host_header_routes_to_the_isvc_and_names_the_revision(cluster: Cluster) -> None:
    cluster.route({HOST: [(NS, REV1, 100)], PREDICTOR_HOST: [(NS, REV1, 100)]})
    for host in (HOST, PREDICTOR_HOST, f"{HOST.upper()}:8080"):
        a = call(cluster, host)
        assert (a.status, a.body) == (200, {"predictions": [1, 1]}), host
        assert a.headers["x-kserve-revision"] == REV1


def test_tag_hosts_reach_their_own_revision(cluster: Cluster) -> None:
    cluster.route({LATEST_HOST: [(NS, REV2, 100)], PREV_HOST: [(NS, REV1, 100)]})
    assert call(cluster, LATEST_HOST).headers["x-kserve-revision"] == REV2
    assert call(cluster, PREV_HOST).headers["x-kserve-revision"] == REV1


def test_model_errors_pass_through_with_the_revision_header(cluster: Cluster) -> None:
    cluster.route({HOST: [(NS, REV1, 100)]})
    a = call(cluster, HOST, data=b'{"instances": [[1.0, 2.0, 3.0]]}')
    assert a.status == 500
    assert "X has 3 features, but SVC is expecting 4 features" in a.body["error"]
    assert a.headers["x-kserve-revision"] == REV1


def test_v2_and_get_requests_are_forwarded(cluster: Cluster) -> None:
    cluster.route({HOST: [(NS, REV1, 100)]})

    async def go() -> tuple[int, Any, int, Any]:
        async with aiohttp.ClientSession() as s:
            body = {
                "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP32", "data": [[6.8, 2.8, 4.8, 1.4]]}]
            }
            async with s.post(
                f"http://127.0.0.1:{cluster.port}/v2/models/{ISVC}/infer", json=body, headers={"Host": HOST}
            ) as r:
                infer = (r.status, await r.json())
            async with s.get(f"http://127.0.0.1:{cluster.port}/v1/models/{ISVC}", headers={"Host": HOST}) as r:
                return (*infer, r.status, await r.json())

    infer_status, infer, get_status, meta = cluster.run(go())
    assert infer_status == 200 and infer["outputs"][0]["data"] == [1]
    assert (get_status, meta) == (200, {"name": ISVC, "ready": True})


# --- content type ------------------------------------------------------------------------------


def test_a_form_encoded_json_body_is_coerced_to_json_and_says_so(cluster: Cluster) -> None:
    cluster.route({HOST: [(NS, REV1, 100)]})
    form = "application/x-www-form-urlencoded"  # what `curl -d @iris-input.json` sends
    a = call(cluster, HOST, content_type=form)
    assert (a.status, a.body) == (200, {"predictions": [1, 1]})
    assert a.headers["x-kserve-nb-content-type"] == "coerced to application/json"
    # Why: kserve itself answers that request with a 500.
    direct_port = cluster.state(REV1).port
    assert direct_port is not None
    direct = cluster.run(_call(direct_port, HOST, content_type=form))
    assert direct.status == 500


def test_a_json_content_type_is_left_alone(cluster: Cluster) -> None:
    cluster.route({HOST: [(NS, REV1, 100)]})
    a = call(cluster, HOST)
    assert "x-kserve-nb-content-type" not in a.headers


def test_a_real_form_body_is_not_coerced(cluster: Cluster) -> None:
    cluster.route({HOST: [(NS, REV1, 100)]})
    a = call(cluster, HOST, data=b"a=1&b=2", content_type="application/x-www-form-urlencoded")
    assert "x-kserve-nb-content-type" not in a.headers
    assert a.status != 200


# --- failures under load -----------------------------------------------------------------------


def _refusing_port() -> int:
    """A loopback port that nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_kill_9_under_load_fails_only_requests_in_flight_on_the_dead_revision(cluster: Cluster) -> None:
    cluster.route({HOST: [(NS, REV2, 50), (NS, REV1, 50)]})
    victim = cluster.state(REV2)
    assert victim.pid is not None
    restarts = victim.restarts

    async def load() -> tuple[list[Answer], float, float, float]:
        answers: list[Answer] = []
        stop_at = time.monotonic() + 1.2

        async def worker(s: aiohttp.ClientSession) -> None:
            while time.monotonic() < stop_at:
                answers.append(await _call(cluster.port, HOST, session=s))

        async def killer() -> float:
            await asyncio.sleep(0.4)
            killed = time.monotonic()
            os.kill(victim.pid, signal.SIGKILL)  # type: ignore[arg-type]
            return killed

        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
            kill = asyncio.ensure_future(killer())
            await asyncio.gather(kill, *(worker(s) for _ in range(8)))
        killed = kill.result()
        reported = await cluster.until(REV2, "Restarting", restarts)
        back = await cluster.until(REV2, "Ready", restarts + 1)
        return answers, killed, reported, back

    answers, killed, reported, back = cluster.run(load())
    assert reported - killed < 0.25
    assert len(answers) > 100
    failed = [a for a in answers if a.status != 200]
    # Anything that failed was sent to the victim before the runtime reported its death…
    assert all(a.headers.get("x-kserve-revision") == REV2 and a.started < reported for a in failed), failed
    # At most one in flight per worker; nginx may also have just sent one on each of its idle
    # keep-alive connections to the victim (a POST that left is never re-sent, unlike a refused one).
    assert len(failed) <= (16 if cluster.nginx else 8)
    # …and nothing sent after the report reached it until it was Ready again.
    after = [a for a in answers if reported < a.started and a.started + 0.001 < back]
    assert after and all(a.headers["x-kserve-revision"] == REV1 for a in after)
    # Traffic returns to the restarted revision.
    cluster.run(asyncio.sleep(0.05))
    hits = Counter(call(cluster, HOST).headers["x-kserve-revision"] for _ in range(40))
    assert hits[REV2] > 0


# --- the HTTP/1.1 edge -------------------------------------------------------------------------
#
# Raw sockets, so that what goes over the wire is exactly what a test says: framing, pipelining,
# half-written requests. Runs in the cluster's loop (the gateway lives there).


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _response(reader: asyncio.StreamReader, *, head: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One response off the wire: status, headers (lower-case names), body (none after a HEAD)."""
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if line)}
    length = 0 if head else int(headers.get("content-length", "0"))
    return status, headers, await reader.readexactly(length)


def _post(host: str = HOST, body: bytes = IRIS_JSON, *, version: str = "1.1", extra: str = "") -> bytes:
    return (
        f"POST {PREDICT} HTTP/{version}\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


async def _closed_by_peer(reader: asyncio.StreamReader, timeout: float = 5) -> bool:
    return await asyncio.wait_for(reader.read(), timeout) == b""


def test_keep_alive_serves_many_requests_over_one_connection(cluster: Cluster) -> None:
    cluster.route({HOST: [(NS, REV1, 100)]})

    async def go() -> list[tuple[int, dict[str, str], bytes]]:
        reader, writer = await _connect(cluster.port)
        answers = []
        for _ in range(5):
            writer.write(_post())
            answers.append(await _response(reader))
        writer.close()
        return answers

    answers = cluster.run(go())
    assert [a[0] for a in answers] == [200] * 5
    assert all(b'"predictions":[1,1]' in a[2].replace(b" ", b"") for a in answers)
    # HTTP/1.1: keep-alive by default (nginx says so, the Python gateway doesn't)
    assert all(a[1].get("connection", "keep-alive") == "keep-alive" for a in answers)


def test_http_1_0_closes_unless_asked_to_keep_alive(cluster: Cluster) -> None:
    cluster.route({HOST: [(NS, REV1, 100)]})

    async def go() -> tuple[str, bool, list[str]]:
        reader, writer = await _connect(cluster.port)
        writer.write(_post(version="1.0"))
        status, headers, _ = await _response(reader)
        assert status == 200
        closed = await _closed_by_peer(reader)
        writer.close()
        reader, writer = await _connect(cluster.port)
        kept = []
        for _ in range(2):
            writer.write(_post(version="1.0", extra="Connection: keep-alive\r\n"))
            kept.append((await _response(reader))[1]["connection"])
        writer.close()
        return headers["connection"], closed, kept

    assert cluster.run(go()) == ("close", True, ["keep-alive", "keep-alive"])


def test_connection_close_is_honoured(cluster: Cluster) -> None:
    cluster.route({HOST: [(NS, REV1, 100)]})

    async def go() -> tuple[int, str, bool]:
        reader, writer = await _connect(cluster.port)
        writer.write(_post(extra="Connection: close\r\n"))
        status, headers, _ = await _response(reader)
        return status, headers["connection"], await _closed_by_peer(reader)

    assert cluster.run(go()) == (200, "close", True)


def test_a_chunked_request_body_is_forwarded_whole(cluster: Cluster) -> None:
    cluster.route({HOST: [(NS, REV1, 100)]})
    first, second = IRIS_JSON[:20], IRIS_JSON[20:]

    async def go() -> tuple[int, bytes]:
        reader, writer = await _connect(cluster.port)
        writer.write(f"POST {PREDICT} HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        writer.write(b"%x\r\n%s\r\n" % (len(first), first))
        await writer.drain()
        await asyncio.sleep(0.05)  # the second chunk in a later read
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(second), second))
        status, headers, body = await _response(reader)
        writer.close()
        assert headers["x-kserve-nb-content-type"] == "coerced to application/json"  # no content type sent
        return status, body.replace(b" ", b"")

    assert cluster.run(go()) == (200, b'{"predictions":[1,1]}')


def test_expect_100_continue_is_answered_before_the_body(cluster: Cluster) -> None:
    cluster.route({HOST: [(NS, REV1, 100)]})

    async def go() -> tuple[int, int]:
        reader, writer = await _connect(cluster.port)
        head = _post(extra="Expect: 100-continue\r\n")[: -len(IRIS_JSON)]
        writer.write(head)
        interim, _, _ = await asyncio.wait_for(_response(reader), 5)  # no body sent yet
        writer.write(IRIS_JSON)
        final, _, _ = await _response(reader)
        writer.close()
        return interim, final

    assert cluster.run(go()) == (100, 200)


def test_an_oversized_body_is_a_413_and_closes(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    import kserve_nb.local.gateway as gateway_module

    cluster.route({HOST: [(NS, REV1, 100)]})

    async def declared() -> tuple[int, bool]:
        # Content-Length says too much: refused from the headers, before any 100 Continue or body.
        reader, writer = await _connect(cluster.port)
        length = gateway_module.MAX_BODY_BYTES + 1
        writer.write(
            f"POST {PREDICT} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {length}\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        status, _, _ = await _response(reader)
        return status, await _closed_by_peer(reader)

    assert cluster.run(declared()) == (413, True)
    cluster.python_only("the limit is patched in-process; nginx's is its client_max_body_size")

    monkeypatch.setattr(gateway_module, "MAX_BODY_BYTES", 1000)

    async def chunked() -> tuple[int, bytes, bool]:
        # A chunked body has no declared size: refused once the chunks add up to too much.
        reader, writer = await _connect(cluster.port)
        writer.write(f"POST {PREDICT} HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        for _ in range(3):
            writer.write(b"200\r\n" + b"x" * 512 + b"\r\n")
        status, _, body = await _response(reader)
        return status, body, await _closed_by_peer(reader)

    status, body, closed = cluster.run(chunked())
    assert (status, closed) == (413, True)
    assert b"larger than 1000 bytes" in body
    monkeypatch.undo()
    assert call(cluster, HOST).status == 200


def test_a_malformed_request_is_a_400_and_closes(cluster: Cluster) -> None:
    async def go(request: bytes) -> tuple[int, bool]:
        reader, writer = await _connect(cluster.port)
        writer.write(request)
        status, _, body = await _response(reader)
        assert cluster.nginx or b"malformed HTTP request" in body  # nginx answers its own 400 page
        return status, await _closed_by_peer(reader)

    assert cluster.run(go(b"GARBAGE\r\n\r\n")) == (400, True)
    assert cluster.run(go(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")) == (400, True)
    cluster.route({HOST: [(NS, REV1, 100)]})
    assert call(cluster, HOST).status == 200


def test_pipelined_requests_are_answered_in_order(cluster: Cluster) -> None:
    cluster.route({LATEST_HOST: [(NS, REV2, 100)], PREV_HOST: [(NS, REV1, 100)]})

    async def go() -> list[tuple[int, str | None]]:
        reader, writer = await _connect(cluster.port)
        # The 404 in the middle is known at once; it must still wait for the model's answer ahead of it.
        writer.write(_post(LATEST_HOST) + _post("nope.example.com") + _post(PREV_HOST) + _post(LATEST_HOST))
        answers = []
        for _ in range(4):
            status, headers, _ = await _response(reader)
            answers.append((status, headers.get("x-kserve-revision")))
        writer.close()
        return answers

    assert cluster.run(go()) == [(200, REV2), (404, None), (200, REV1), (200, REV2)]


def test_a_head_answer_has_no_body(cluster: Cluster) -> None:
    cluster.route({HOST: [(NS, REV1, 100)]})

    async def go() -> tuple[int, int]:
        reader, writer = await _connect(cluster.port)
        writer.write(f"HEAD /v1/models/{ISVC} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode() + _post())
        head_status, _, _ = await _response(reader, head=True)
        # Were there a body after the HEAD answer, this would parse it as a status line and fail.
        status, _, _ = await _response(reader)
        writer.close()
        return head_status, status

    head_status, status = cluster.run(go())
    assert status == 200 and head_status < 600


class SlowModel:
    """A stand-in model server that answers ``{}`` after ``delay`` seconds, and counts hang-ups."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.hung_up = 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> tuple[str, int]:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return "127.0.0.1", self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).lower()
                length = (
                    int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0]) if b"content-length:" in head else 0
                )
                await reader.readexactly(length)
                await asyncio.sleep(self.delay)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.hung_up += 1
        finally:
            writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def test_clients_vanishing_mid_request_do_not_disturb_the_gateway(cluster: Cluster) -> None:
    slow = SlowModel(0.3)
    endpoints = cluster.endpoints()
    endpoints[(NS, "slow")] = cluster.run(slow.start())
    cluster.program({HOST: [(NS, REV1, 100)], "slow.example.com": [(NS, "slow", 100)]}, endpoints)

    async def go() -> None:
        # Half a request line, half a body, and a whole request whose answer is still being computed.
        for partial in (b"POST /v1/mod", _post()[:-10], _post("slow.example.com")):
            _, writer = await _connect(cluster.port)
            writer.write(partial)
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.transport.abort()  # gone without a word (a FIN, as when a client is killed)
        await asyncio.sleep(0.4)  # the slow model notices a hang-up once it has answered

    try:
        cluster.run(go())
        # The abandoned request's upstream connection was closed (as Envoy cancels upstream requests),
        # not returned to the pool.
        assert slow.hung_up == 1
        answers = [call(cluster, HOST) for _ in range(3)]
        assert [a.status for a in answers] == [200] * 3
        cluster.run(asyncio.sleep(0.1))
        if isinstance(cluster.gateway, Gateway):
            assert cluster.gateway.connections == 0  # every client connection was let go
    finally:
        slow.close()


def test_idle_keep_alive_connections_are_closed(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    import kserve_nb.local.gateway as gateway_module

    cluster.python_only("the timeout is patched in-process; nginx's is its keepalive_timeout")
    monkeypatch.setattr(gateway_module, "CLIENT_IDLE_SECONDS", 0.5)
    cluster.route({HOST: [(NS, REV1, 100)]})

    async def go() -> tuple[int, bool]:
        reader, writer = await _connect(cluster.port)
        writer.write(_post())
        status, _, _ = await _response(reader)
        return status, await _closed_by_peer(reader, timeout=4)  # the sweep runs once a second

    assert cluster.run(go()) == (200, True)


def test_close_lets_the_request_in_flight_finish_and_stops_listening(cluster: Cluster, tmp_path: Path) -> None:
    slow = SlowModel(0.3)

    async def go() -> tuple[int, str, bool, bool]:
        gateway = NginxIngress(tmp_path / "ingress") if cluster.nginx else Gateway()
        port = await gateway.start()
        gateway.update({HOST: [(NS, "slow", 100)]}, {(NS, "slow"): await slow.start()})
        if isinstance(gateway, NginxIngress):
            await gateway.wait_programmed()
        idle_reader, _ = await _connect(port)
        reader, writer = await _connect(port)
        writer.write(_post())
        await asyncio.sleep(0.1)  # the request is waiting for the model
        closing = asyncio.ensure_future(gateway.close())
        status, headers, _ = await _response(reader)
        await closing
        idle_closed = await _closed_by_peer(idle_reader)
        try:
            await _connect(port)
            refused = False
        except OSError:
            refused = True
        return status, headers["connection"], idle_closed, refused

    try:
        assert cluster.run(go()) == (200, "close", True, True)
    finally:
        slow.close()
