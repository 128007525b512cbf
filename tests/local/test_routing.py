"""The routing rule of :mod:`kserve_nb.local.routing`, observed from outside, on both data planes.

Every test runs twice: against the Python :class:`Gateway` alone (``KSERVE_NB_INGRESS=python``) and
against :class:`NginxIngress` (nginx's Lua in front, the Python gateway behind, what the daemon runs
when nginx is installed). Both are programmed with the same table and must answer alike: weights
respected, weight 0 never picked, a refused connection retried once on another target, the same
error statuses, bodies and ``x-kserve-revision`` headers.

The targets are stand-in model servers (loopback HTTP/1.1 servers that answer with their own name
and count what they receive), so the tests see exactly which target served each request.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import uvloop
from scipy.stats import binom

from kserve_nb.local import routing
from kserve_nb.local.gateway import Gateway
from kserve_nb.local.nginx import NginxIngress, find_nginx

T = TypeVar("T")
NS = "ns"
HOST = "m.ns.example.com"
BODY = b'{"instances": [[1.0, 2.0, 3.0, 4.0]]}'


class StandIn:
    """A model server stand-in: answers ``{"predictions": [NAME]}``, or hangs up after reading."""

    def __init__(self, name: str, *, hang_up: bool = False) -> None:
        self.name = name
        self.hang_up = hang_up
        self.requests = 0
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> tuple[str, int]:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return "127.0.0.1", int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).lower()
                length = head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0] if b"content-length:" in head else 0
                await reader.readexactly(int(length))
                self.requests += 1
                if self.hang_up:
                    break
                out = json.dumps({"predictions": [self.name]}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
                writer.write(b"content-length: %d\r\n\r\n" % len(out) + out)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def _refusing() -> tuple[str, int]:
    """A loopback endpoint nothing listens on (bound, then closed): connections are refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return "127.0.0.1", int(s.getsockname()[1])


@dataclass
class Answer:
    status: int
    revision: str | None
    body: Any


@dataclass
class Plane:
    """One data plane on its own loop, with stand-in targets started on demand."""

    kind: str
    loop: asyncio.AbstractEventLoop
    ingress: Gateway | NginxIngress
    port: int = 0
    stand_ins: dict[str, StandIn] = field(default_factory=dict)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def target(self, name: str, **kw: Any) -> tuple[str, int]:
        """The endpoint of a fresh stand-in named ``name`` (its request count starts at 0)."""
        stand_in = StandIn(name, **kw)
        self.stand_ins[name] = stand_in
        return self.run(stand_in.start())

    def program(self, routes: routing.Routes, endpoints: routing.Endpoints) -> None:
        """What the controller does: push the table, and wait until the data plane serves it."""
        self.ingress.update(routes, endpoints)
        if isinstance(self.ingress, NginxIngress):
            self.run(self.ingress.wait_programmed())

    def send(self, n: int, host: str = HOST, concurrency: int = 16) -> list[Answer]:
        async def go() -> list[Answer]:
            limit = asyncio.Semaphore(concurrency)
            async with aiohttp.ClientSession() as session:

                async def one() -> Answer:
                    async with limit, session.post(
                        f"http://127.0.0.1:{self.port}/v1/models/m:predict", data=BODY,
                        headers={"Host": host, "Content-Type": "application/json"},
                    ) as r:
                        return Answer(r.status, r.headers.get("x-kserve-revision"), await r.json(content_type=None))

                return await asyncio.gather(*(one() for _ in range(n)))

        return self.run(go())


@pytest.fixture(scope="module", params=["python", "nginx"])
def plane(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    if request.param == "nginx" and find_nginx() is None:
        pytest.skip("nginx is not installed (make sysdeps installs it)")
    loop = uvloop.new_event_loop()
    directory: Path = tmp_path_factory.mktemp("routing")
    ingress: Gateway | NginxIngress = Gateway() if request.param == "python" else NginxIngress(directory / "ingress")
    p = Plane(request.param, loop, ingress)
    try:
        p.port = p.run(ingress.start())
        yield p
    finally:
        for stand_in in p.stand_ins.values():
            stand_in.close()
        p.run(ingress.close())
        loop.close()


def _within(count: int, n: int, p: float) -> bool:
    """``count`` of ``n`` is a plausible draw of probability ``p`` (99.9 % binomial interval)."""
    low, high = binom.interval(0.999, n, p)
    return bool(low <= count <= high)


# --- weights ---------------------------------------------------------------------------------


def test_weights_are_respected_and_weight_0_is_never_picked(plane: Plane) -> None:
    endpoints = {(NS, name): plane.target(name) for name in ("a", "b", "c", "zero")}
    plane.program({HOST: [(NS, "a", 20), (NS, "b", 30), (NS, "c", 50), (NS, "zero", 0)]}, endpoints)
    n = 1000
    answers = plane.send(n)
    assert {a.status for a in answers} == {200}
    # The header names the target that served the request (the stand-in says who it is).
    assert all(a.revision == a.body["predictions"][0] for a in answers)
    served = Counter(a.revision for a in answers)
    for name, p in (("a", 0.2), ("b", 0.3), ("c", 0.5)):
        assert _within(served[name], n, p), (name, served)
    assert served["zero"] == 0 and plane.stand_ins["zero"].requests == 0


def test_the_split_is_renormalised_over_the_ready_targets(plane: Plane) -> None:
    endpoints = {(NS, name): plane.target(name) for name in ("a", "b")}
    # "gone" has most of the weight but no ready endpoint: a and b share all the traffic, 1:3.
    plane.program({HOST: [(NS, "gone", 60), (NS, "a", 10), (NS, "b", 30)]}, endpoints)
    n = 400
    answers = plane.send(n)
    assert {a.status for a in answers} == {200}
    served = Counter(a.revision for a in answers)
    assert set(served) == {"a", "b"} and _within(served["a"], n, 0.25), served


def test_weights_are_relative_and_the_host_is_matched_without_case_or_port(plane: Plane) -> None:
    plane.program({HOST: [(NS, "a", 1)]}, {(NS, "a"): plane.target("a")})
    answers = plane.send(5, host=HOST.upper() + ":8080")
    assert [(a.status, a.revision) for a in answers] == [(200, "a")] * 5


# --- retry once on a refused connection -------------------------------------------------------


def test_a_refused_connection_is_retried_on_another_target(plane: Plane) -> None:
    plane.program({HOST: [(NS, "dead", 50), (NS, "a", 50)]}, {(NS, "dead"): _refusing(), (NS, "a"): plane.target("a")})
    answers = plane.send(100)
    assert [(a.status, a.revision) for a in answers] == [(200, "a")] * 100
    assert plane.stand_ins["a"].requests == 100


def test_a_refused_request_is_retried_once_not_more(plane: Plane) -> None:
    # Two dead targets and one live, equal weights. Retried once, a request succeeds when its first
    # pick is the live one (1/3) or its second is (2/3 × 1/2): 2/3. Never retried: 1/3; always: 1.
    endpoints = {(NS, "dead1"): _refusing(), (NS, "dead2"): _refusing(), (NS, "a"): plane.target("a")}
    plane.program({HOST: [(NS, "dead1", 1), (NS, "dead2", 1), (NS, "a", 1)]}, endpoints)
    n = 300
    answers = plane.send(n)
    ok = [a for a in answers if a.status == 200]
    assert _within(len(ok), n, 2 / 3), len(ok)
    assert {a.revision for a in ok} == {"a"} and plane.stand_ins["a"].requests == len(ok)
    # A failure names the second dead target it tried, and says why.
    for a in answers:
        if a.status != 200:
            assert a.status == 503 and a.revision in ("dead1", "dead2"), a
            assert a.body == {"error": routing.unreachable_message(HOST, a.revision, "refused the connection")}


def test_a_request_that_reached_a_model_is_never_sent_again(plane: Plane) -> None:
    plane.program({HOST: [(NS, "crash", 50), (NS, "a", 50)]}, {(NS, "crash"): plane.target("crash", hang_up=True),
                                                               (NS, "a"): plane.target("a")})
    answers = plane.send(100)
    crashed = [a for a in answers if a.status != 200]
    assert crashed and len(crashed) == plane.stand_ins["crash"].requests  # each arrived once, and failed
    assert plane.stand_ins["a"].requests == 100 - len(crashed)
    for a in crashed:
        assert (a.status, a.revision) == (502, "crash")
        assert a.body["error"].startswith(routing.failed_message("crash", "")), a.body


# --- the error answers ---------------------------------------------------------------------------


def test_an_unknown_host_is_a_404_naming_the_known_hosts(plane: Plane) -> None:
    plane.program({HOST: [(NS, "a", 100)], "other.ns.example.com": [(NS, "a", 100)]}, {(NS, "a"): plane.target("a")})
    [a] = plane.send(1, host="nope.ns.example.com")
    assert (a.status, a.revision) == (404, None)
    assert a.body == {"error": routing.no_route_message("nope.ns.example.com", [HOST, "other.ns.example.com"])}


def test_a_route_without_a_ready_target_is_a_503_naming_them(plane: Plane) -> None:
    plane.program({HOST: [(NS, "u1", 70), (NS, "u2", 30), (NS, "off", 0)]}, {(NS, "off"): plane.target("off")})
    [a] = plane.send(1)
    assert (a.status, a.revision) == (503, "u1,u2")
    assert a.body == {"error": "no ready revision for host 'm.ns.example.com': u1 (70%), u2 (30%) are not ready"}
    assert plane.stand_ins["off"].requests == 0


def test_a_refused_only_target_is_a_503_naming_it(plane: Plane) -> None:
    plane.program({HOST: [(NS, "dead", 100)]}, {(NS, "dead"): _refusing()})
    [a] = plane.send(1)
    assert (a.status, a.revision) == (503, "dead")
    assert a.body == {"error": routing.unreachable_message(HOST, "dead", "refused the connection")}
