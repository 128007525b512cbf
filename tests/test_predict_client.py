"""PredictionClient against a real KServe model server (kserve.ModelServer, sklearn iris) on 127.0.0.1.

The server runs in a subprocess on an ephemeral port for the whole module and is torn down after.
Its model copies a request header ``x-echo-revision`` into the response header ``x-kserve-revision``,
standing in for the local gateway's revision attribution.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from kserve_nb.analysis import RESULT_COLUMNS, compare
from kserve_nb.errors import IngressUnreachable, PredictionError, ValidationError
from kserve_nb.predict import PredictionClient, Target

pytest.importorskip("kserve")
pytest.importorskip("sklearn")

MODEL = "sklearn-iris"
ROWS = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6], [5.1, 3.5, 1.4, 0.2]]

SERVER = textwrap.dedent(
    '''
    import logging, sys
    import uvicorn

    class _Loopback(uvicorn.Config):  # kserve hard-codes host="0.0.0.0"; tests stay on loopback
        def __init__(self, *a, **kw):
            kw["host"] = "127.0.0.1"
            super().__init__(*a, **kw)

    uvicorn.Config = _Loopback

    import kserve
    from kserve.errors import InferenceError
    from kserve.utils.utils import get_predict_input, get_predict_response

    class Iris(kserve.Model):
        def __init__(self, name):
            super().__init__(name, return_response_headers=True)

        def load(self):
            from sklearn.datasets import load_iris
            from sklearn.linear_model import LogisticRegression
            X, y = load_iris(return_X_y=True)
            self.clf = LogisticRegression(max_iter=500).fit(X, y)
            self.ready = True
            return True

        def predict(self, payload, headers=None, response_headers=None):
            try:
                out = self.clf.predict(get_predict_input(payload))
            except Exception as e:
                raise InferenceError(str(e))
            rev = (headers or {}).get("x-echo-revision")
            if rev and response_headers is not None:
                response_headers["x-kserve-revision"] = rev
            return get_predict_response(payload, out, self.name)

    port, name = int(sys.argv[1]), sys.argv[2]
    model = Iris(name)
    model.load()
    server = kserve.ModelServer(http_port=port, enable_grpc=False, workers=1, enable_latency_logging=False)
    for n in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(n).setLevel(logging.WARNING)
    server.start([model])
    '''
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a running kserve model server serving ``sklearn-iris``."""
    script = tmp_path_factory.mktemp("server") / "iris_server.py"
    script.write_text(SERVER)
    port = free_port()
    log = open(script.with_suffix(".log"), "w+b")  # noqa: SIM115 - the server writes to it until the fixture ends
    proc = subprocess.Popen(
        [sys.executable, str(script), str(port), MODEL], stdout=log, stderr=subprocess.STDOUT, cwd=script.parent
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"model server exited with {proc.returncode}:\n{log.read().decode()[-3000:]}")
            try:
                if httpx.get(f"{url}/v1/models/{MODEL}", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("model server did not become ready within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture()
def client(server: str) -> Iterator[PredictionClient]:
    with PredictionClient(server, model=MODEL) as c:
        yield c


LATEST = Target("latest", "latest-sklearn-iris-predictor.kserve-test.example.com", "sklearn-iris-predictor-00002")
PREV = Target("prev", "prev-sklearn-iris-predictor.kserve-test.example.com", "sklearn-iris-predictor-00001")
DEFAULT = Target("default", "sklearn-iris-predictor.kserve-test.example.com", None)


# -- predict ---------------------------------------------------------------------------------


def test_predict_v1_returns_one_class_per_row(client: PredictionClient) -> None:
    res = client.predict(LATEST, ROWS)
    assert len(res.predictions) == 3 and res.predictions[2] == 0  # the last row is a setosa
    assert all(isinstance(p, int) for p in res.predictions)
    assert res.status_code == 200 and res.latency_ms > 0
    assert res.target == "latest" and res.revision == LATEST.revision


def test_predict_v2_matches_v1(client: PredictionClient) -> None:
    v1 = client.predict(LATEST, ROWS).predictions
    v2 = client.predict(LATEST, np.array(ROWS, dtype=np.float32), protocol="v2").predictions
    assert v2 == v1


def test_predict_accepts_dataframe_and_ready_payload(client: PredictionClient) -> None:
    df = pd.DataFrame(ROWS, columns=["sl", "sw", "pl", "pw"])
    assert client.predict(LATEST, df).predictions == client.predict(LATEST, {"instances": ROWS}).predictions


def test_predict_wrong_feature_count_says_what_the_model_expects(client: PredictionClient) -> None:
    with pytest.raises(PredictionError) as err:
        client.predict(LATEST, [[1.0, 2.0, 3.0]])
    msg = str(err.value)
    assert "expects 4 features" in msg and "got 3" in msg
    assert "500" in msg and "latest" in msg
    assert err.value.status == 500 and "error" in err.value.body
    assert "\n" not in msg


def test_predict_unknown_model_is_a_404_with_a_hint(server: str) -> None:
    with PredictionClient(server, model="nope") as c, pytest.raises(PredictionError) as err:
        c.predict(LATEST, ROWS)
    assert err.value.status == 404
    assert "404" in str(err.value) and "'nope'" in str(err.value) and "InferenceService name" in str(err.value)


def test_predict_v2_schema_error_is_explained(client: PredictionClient) -> None:
    broken = {"inputs": [{"name": "input-0", "datatype": "FP32", "data": ROWS[0]}]}  # no shape
    with pytest.raises(PredictionError) as err:
        client.predict(LATEST, broken, protocol="v2")
    assert err.value.status == 422
    assert "V2 schema" in str(err.value) and "shape" in str(err.value)


def test_predict_v1_payload_on_v2_is_refused_before_sending(client: PredictionClient) -> None:
    with pytest.raises(ValidationError, match="protocol='v1'"):
        client.predict(LATEST, {"instances": ROWS}, protocol="v2")


def test_connection_refused_asks_whether_the_cluster_is_up() -> None:
    with (
        PredictionClient(f"http://127.0.0.1:{free_port()}", model=MODEL) as c,
        pytest.raises(IngressUnreachable) as err,
    ):
        c.predict(LATEST, ROWS)
    assert "is the cluster up?" in str(err.value)
    assert isinstance(err.value.__cause__, httpx.ConnectError)


def test_revision_header_wins_over_the_target_revision(server: str) -> None:
    with PredictionClient(server, model=MODEL, headers={"x-echo-revision": "sklearn-iris-predictor-00007"}) as c:
        assert c.predict(LATEST, ROWS).revision == "sklearn-iris-predictor-00007"
        df = c.send([LATEST, DEFAULT], ROWS)
    assert set(df["revision"]) == {"sklearn-iris-predictor-00007"}


# -- send ------------------------------------------------------------------------------------


def test_send_returns_one_row_per_request_and_target(client: PredictionClient) -> None:
    df = client.send([LATEST, PREV], ROWS, repeat=2)
    assert list(df.columns) == list(RESULT_COLUMNS)
    assert len(df) == len(ROWS) * 2 * 2
    assert df["error"].isna().all() and (df["status_code"] == 200).all()
    assert (df["latency_ms"] > 0).all()
    # order: repeat -> row -> target
    assert df[["repeat", "row", "target"]].head(4).values.tolist() == [
        [0, 0, "latest"],
        [0, 0, "prev"],
        [0, 1, "latest"],
        [0, 1, "prev"],
    ]
    assert set(df.loc[df.target == "prev", "revision"]) == {PREV.revision}
    single = client.predict(LATEST, ROWS).predictions
    assert df[(df.target == "latest") & (df.repeat == 0)]["prediction"].tolist() == single
    assert df["input"].iloc[0] == ROWS[0]


def test_send_keeps_going_when_one_request_fails(client: PredictionClient) -> None:
    rows = [ROWS[0], [1.0, 2.0, 3.0], ROWS[1]]
    df = client.send([LATEST], rows)
    assert df["status_code"].tolist() == [200, 500, 200]
    bad = df.iloc[1]
    assert bad["prediction"] is None and "HTTP 500" in bad["error"] and "4 features" in bad["error"]
    assert df.iloc[[0, 2]]["error"].isna().all()


def test_send_v2_gives_the_same_predictions(client: PredictionClient) -> None:
    v1 = client.send([LATEST], ROWS)["prediction"].tolist()
    v2 = client.send([LATEST], ROWS, protocol="v2")["prediction"].tolist()
    assert v1 == v2


def test_send_to_a_dead_ingress_fills_error_rows() -> None:
    with PredictionClient(f"http://127.0.0.1:{free_port()}", model=MODEL, timeout=5) as c:
        df = c.send([LATEST, PREV], ROWS)
    assert len(df) == 6
    assert df["status_code"].isna().all()
    assert df["error"].str.startswith("connection failed").all()


def test_send_from_inside_a_running_event_loop(client: PredictionClient) -> None:
    # The Jupyter kernel runs cells while its own asyncio loop is running.
    async def cell() -> pd.DataFrame:
        asyncio.get_running_loop()
        return client.send([LATEST, PREV], ROWS)

    df = asyncio.run(cell())
    assert len(df) == 6 and df["error"].isna().all()


def test_asend_leaves_the_callers_loop_free(client: PredictionClient) -> None:
    async def main() -> tuple[pd.DataFrame, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        df = await client.asend([LATEST, PREV], ROWS * 30)
        task.cancel()
        return df, ticks

    df, ticks = asyncio.run(main())
    assert len(df) == 180 and df["error"].isna().all()
    assert ticks > 1


def test_send_through_an_injected_httpx_transport(server: str) -> None:
    with PredictionClient(server, model=MODEL, transport=httpx.HTTPTransport()) as c:
        df = c.send([LATEST, PREV], ROWS + [[1.0]])
    assert len(df) == 8
    assert df["error"].isna().tolist() == [True] * 6 + [False] * 2


def test_send_feeds_compare(client: PredictionClient) -> None:
    df = client.send([LATEST, PREV], ROWS, repeat=3)
    cmp = compare(df)
    assert cmp.agreement.rate == 1.0 and cmp.agreement.n_pairs == 9
    assert cmp.verdict(max_error_rate=0.0, min_agreement=0.99).promote


def test_send_validates_arguments(client: PredictionClient) -> None:
    with pytest.raises(ValidationError):
        client.send([], ROWS)
    with pytest.raises(ValidationError, match="unique"):
        client.send([LATEST, LATEST], ROWS)
    with pytest.raises(ValidationError):
        client.send([LATEST], ROWS, concurrency=0)


# -- on the wire, whichever transport sends ----------------------------------------------------
#
# ``send`` reaches the ingress through the fast HTTP/1.1 transport or through httpx (chosen in
# ``choose_sender``); every test here runs against both (``via``) and asserts what the server
# received and what came back, never which class did the sending.


class WireServer:
    """A real HTTP/1.1 server on 127.0.0.1 whose behaviour is picked by the Host header.

    It exists to exercise framings and failures that kserve's uvicorn never produces (chunked
    bodies, close-delimited bodies, interim 100 answers, garbage, stalls, dropped keep-alives),
    and records every request it reads: ``(request line, headers, body)``.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.connections = 0
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()
        self.ready.wait(5)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    def close(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append((lines[0], headers, body))
                served += 1
                mode = headers.get("host", "").split(".")[0]
                ok = b'{"predictions":[7]}'
                if mode == "chunked":
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 b"8;ext=1\r\n" + ok[:8] + b"\r\n" + b"%x\r\n" % (len(ok) - 8) + ok[8:] + b"\r\n"
                                 b"0\r\nX-Trailer: 1\r\n\r\n")
                elif mode == "close":
                    writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(ok) + ok)
                    await writer.drain()
                    break
                elif mode == "eof":
                    writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + ok)
                    await writer.drain()
                    break
                elif mode == "continue":
                    writer.write(
                        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(ok) + ok
                    )
                elif mode == "garbage":
                    writer.write(b"SPDY/9 banana\r\n\r\n")
                elif mode == "slow":
                    await asyncio.sleep(2)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(ok) + ok)
                elif mode == "dropsecond" and served == 2:
                    break  # read the request, answer nothing, close: a keep-alive that went stale
                elif mode == "echo":
                    echoed = json.dumps({"predictions": [{"headers": headers, "body": body.decode()}]}).encode()
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(echoed) + echoed)
                elif mode == "html":
                    page = b"<html><body>upstream connect error</body></html>"
                    writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: %d\r\n\r\n" % len(page) + page)
                else:
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nx-kserve-revision: rev-wire\r\nContent-Length: %d\r\n\r\n" % len(ok) + ok
                    )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture(scope="module")
def wire() -> Iterator[WireServer]:
    srv = WireServer()
    yield srv
    srv.close()


#: How ``send`` is made to go through each transport: the fast one is the default; an injected
#: httpx transport selects httpx (as an auth flow or a proxy from the environment would).
TRANSPORTS = {"http1": dict[str, Any](), "httpx": {"transport": "httpx"}}


@pytest.fixture(params=list(TRANSPORTS))
def via(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Client options selecting one transport (a fresh httpx transport per test)."""
    return {k: httpx.HTTPTransport() for k in TRANSPORTS[request.param]}


def _wire_send(wire: WireServer, mode: str, via: dict[str, Any], n: int = 3, **kw: Any) -> pd.DataFrame:
    opts = {"concurrency": kw.pop("concurrency", 2)}
    with PredictionClient(f"http://127.0.0.1:{wire.port}", model=MODEL, **via, **kw) as c:
        return c.send([Target("latest", f"{mode}.example.com")], [ROWS[0]] * n, **opts)


@pytest.mark.parametrize("mode", ["chunked", "close", "eof", "continue", "plain"])
def test_send_reads_every_framing(wire: WireServer, via: dict[str, Any], mode: str) -> None:
    df = _wire_send(wire, mode, via, n=5)
    assert df["error"].isna().all(), df["error"].tolist()
    assert df["prediction"].tolist() == [7] * 5


def test_send_prefers_the_revision_header(wire: WireServer, via: dict[str, Any]) -> None:
    df = _wire_send(wire, "plain", via)
    assert set(df["revision"]) == {"rev-wire"}


def test_send_reports_garbage_and_html_errors_as_rows(wire: WireServer, via: dict[str, Any]) -> None:
    bad = _wire_send(wire, "garbage", via, n=2)
    assert bad["status_code"].isna().all() and bad["error"].str.contains("invalid HTTP response").all()
    html = _wire_send(wire, "html", via, n=2)
    assert html["status_code"].tolist() == [503, 503]
    assert html["error"].str.startswith("HTTP 503: <html>").all()


def test_send_times_out_one_request_without_losing_the_rest(wire: WireServer, via: dict[str, Any]) -> None:
    t0 = time.monotonic()
    df = _wire_send(wire, "slow", via, n=2, timeout=0.3, concurrency=2)
    assert time.monotonic() - t0 < 1.5
    assert df["error"].tolist() == ["timed out after 0.3 s"] * 2


def test_send_resends_once_when_a_keepalive_went_stale(wire: WireServer, via: dict[str, Any]) -> None:
    wire.requests.clear()
    df = _wire_send(wire, "dropsecond", via, n=4, concurrency=1)
    assert df["error"].isna().all(), df["error"].tolist()
    # The server drops the second request of every connection unanswered: requests 2, 3 and 4
    # each arrive twice (the second on one connection, then the first on a new one), never more.
    assert len(wire.requests) == 1 + 2 + 2 + 2


def test_send_puts_the_method_path_host_content_type_and_user_headers_on_the_wire(
    wire: WireServer, via: dict[str, Any]
) -> None:
    wire.requests.clear()
    df = _wire_send(wire, "echo", via, n=1, headers={"Authorization": "Bearer t"})
    assert df["error"].isna().all()
    [(line, headers, body)] = wire.requests
    assert line == f"POST /v1/models/{MODEL}:predict HTTP/1.1"
    assert headers["host"] == "echo.example.com"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert headers["authorization"] == "Bearer t"
    assert headers["user-agent"].startswith("kserve-nb/")
    assert headers["content-length"] == str(len(body))
    assert json.loads(body) == {"instances": [ROWS[0]]}
    assert "cookie" not in headers


def test_send_reuses_connections_between_sends(wire: WireServer, via: dict[str, Any]) -> None:
    with PredictionClient(f"http://127.0.0.1:{wire.port}", model=MODEL, **via) as c:
        target = [Target("latest", "plain.example.com")]
        c.send(target, ROWS, concurrency=1)
        before = wire.connections
        c.send(target, ROWS * 3, concurrency=1)
        assert wire.connections == before


async def _other_tasks() -> int:
    return len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()])


def _settled(c: PredictionClient) -> int:
    deadline = time.monotonic() + 2
    while (n := c._loop.run(_other_tasks)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return n


def test_interrupting_send_cancels_its_requests(wire: WireServer) -> None:
    # The notebook's stop button raises KeyboardInterrupt in the kernel thread.
    def interrupt(*_: Any) -> None:
        raise KeyboardInterrupt

    with PredictionClient(f"http://127.0.0.1:{wire.port}", model=MODEL) as c:
        old = signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        t0 = time.monotonic()
        try:
            with pytest.raises(KeyboardInterrupt):
                c.send([Target("latest", "slow.example.com")], ROWS)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        assert time.monotonic() - t0 < 1.5
        assert _settled(c) == 0
        assert c.send([Target("latest", "plain.example.com")], ROWS)["error"].isna().all()


def test_cancelling_asend_cancels_its_requests(wire: WireServer) -> None:
    with PredictionClient(f"http://127.0.0.1:{wire.port}", model=MODEL) as c:

        async def main() -> None:
            task = asyncio.create_task(c.asend([Target("latest", "slow.example.com")], ROWS))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        assert _settled(c) == 0


def test_dead_ingress_trips_the_breaker_instead_of_dialling_every_row(via: dict[str, Any]) -> None:
    with PredictionClient(f"http://127.0.0.1:{free_port()}", model=MODEL, **via) as c:
        df = c.send([LATEST], ROWS * 100, concurrency=2)
    assert len(df) == 300
    refused = df["error"].str.match(r"connection failed: 127\.0\.0\.1:\d+ refused the connection$")
    # The breaker's threshold is max(8, concurrency) failures in a row; the other worker may be
    # dialling already when it trips.
    assert 8 <= refused.sum() <= 9
    assert df["error"].str.match(r"not sent: \d connection attempts in a row failed").sum() == 300 - refused.sum()


def test_a_paced_stream_has_no_breaker_and_retries_the_same_way(wire: WireServer, via: dict[str, Any]) -> None:
    from kserve_nb.predict.bulk import Job

    def jobs(n: int) -> list[Job]:
        return [Job(0, i, 0, b'{"instances": [[1.0]]}', True) for i in range(n)]

    with PredictionClient(f"http://127.0.0.1:{free_port()}", model=MODEL, **via) as dead:
        send = dead.requester([LATEST])
        outcomes = [dead.submit(lambda job=job: send(job)).result(10) for job in jobs(12)]
    assert all(o.error is not None and "refused the connection" in o.error for o in outcomes)
    wire.requests.clear()
    with PredictionClient(f"http://127.0.0.1:{wire.port}", model=MODEL, **via) as c:
        send = c.requester([Target("latest", "dropsecond.example.com")])
        outcomes = [c.submit(lambda job=job: send(job)).result(10) for job in jobs(3)]
    assert [o.prediction for o in outcomes] == [7, 7, 7]
    assert len(wire.requests) == 1 + 2 + 2  # requests 2 and 3 dropped unanswered once, sent again once


def test_basic_auth_goes_on_the_wire_of_predict_and_send(wire: WireServer) -> None:
    with PredictionClient(f"http://127.0.0.1:{wire.port}", model=MODEL, auth=("ann", "pw")) as c:
        assert "pw" not in repr(c)
        df = c.send([Target("latest", "echo.example.com")], ROWS[:1])
        one = c.predict(Target("latest", "echo.example.com"), ROWS[:1])
    expected = "Basic YW5uOnB3"
    assert df["prediction"].iloc[0]["headers"]["authorization"] == expected
    assert one.predictions[0]["headers"]["authorization"] == expected


def test_an_httpx_auth_flow_routes_send_through_httpx(wire: WireServer) -> None:
    class Token(httpx.Auth):
        def auth_flow(self, request: httpx.Request) -> Iterator[httpx.Request]:
            request.headers["Authorization"] = "Bearer from-flow"
            yield request

    with PredictionClient(f"http://127.0.0.1:{wire.port}", model=MODEL, auth=Token()) as c:
        df = c.send([Target("latest", "echo.example.com")], ROWS[:2])
    assert [p["headers"]["authorization"] for p in df["prediction"]] == ["Bearer from-flow"] * 2


def test_header_injection_is_refused() -> None:
    with pytest.raises(ValidationError, match="line breaks"):
        PredictionClient("http://127.0.0.1:1", model=MODEL, headers={"X-A": "ok\r\nX-Evil: 1"})
    with PredictionClient("http://127.0.0.1:1", model=MODEL) as c, pytest.raises(ValidationError):
        c.send([Target("latest", "h\r\nX-Evil: 1")], ROWS)


def test_both_transports_give_the_same_rows_from_a_real_model_server(server: str) -> None:
    frames = []
    for via in ({}, {"transport": httpx.HTTPTransport()}):
        with PredictionClient(server, model=MODEL, headers={"x-echo-revision": "r-x"}, **via) as c:
            frames.append(c.send([LATEST, PREV], ROWS + [[1.0]]))
    cols = ["target", "revision", "row", "prediction", "status_code", "error"]
    assert frames[0][cols].equals(frames[1][cols])


@pytest.mark.parametrize(
    ("env", "proxied"),
    [
        ({"HTTP_PROXY": "PROXY"}, True),
        ({"HTTP_PROXY": "PROXY", "NO_PROXY": "127.0.0.1"}, False),
        ({"HTTPS_PROXY": "PROXY"}, False),
        ({}, False),
    ],
)
def test_a_proxy_from_the_environment_carries_send_and_predict(
    monkeypatch: pytest.MonkeyPatch, wire: WireServer, env: dict[str, str], proxied: bool
) -> None:
    # A second recording server plays the proxy: a proxied request arrives there in absolute form.
    proxy = WireServer()
    try:
        for k in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
            monkeypatch.delenv(k, raising=False)
            monkeypatch.delenv(k.lower(), raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v.replace("PROXY", f"http://127.0.0.1:{proxy.port}"))
        wire.requests.clear()
        ingress = f"http://127.0.0.1:{wire.port}"
        with PredictionClient(ingress, model=MODEL) as c:
            df = c.send([Target("latest", "plain.example.com")], ROWS[:2])
            one = c.predict(Target("latest", "plain.example.com"), ROWS[:1])
        assert df["prediction"].tolist() == [7, 7] and one.predictions == [7]
        through, direct = (proxy.requests, wire.requests) if proxied else (wire.requests, proxy.requests)
        assert len(through) == 3 and direct == []
        path = f"/v1/models/{MODEL}:predict"
        assert {line for line, _, _ in through} == {f"POST {ingress + path if proxied else path} HTTP/1.1"}
        assert {h["host"] for _, h, _ in through} == {"plain.example.com"}
    finally:
        proxy.close()


# -- hygiene ---------------------------------------------------------------------------------


def test_headers_never_show_in_repr_or_logs(server: str, caplog: pytest.LogCaptureFixture) -> None:
    token = "Bearer sup3r-s3cret-t0ken"
    caplog.set_level(logging.DEBUG)
    with PredictionClient(server, model=MODEL, headers={"Authorization": token}) as c:
        assert "s3cret" not in repr(c)
        c.predict(LATEST, ROWS)
        c.send([LATEST], ROWS)
    assert "s3cret" not in caplog.text


def test_https_verifies_certificates_by_default() -> None:
    c = PredictionClient("https://127.0.0.1:1", model=MODEL)
    try:
        assert isinstance(c._ssl, ssl.SSLContext) and c._ssl.verify_mode == ssl.CERT_REQUIRED
    finally:
        c.close()


def test_close_is_idempotent_and_stops_the_loop_thread(server: str) -> None:
    c = PredictionClient(server, model=MODEL)
    c.send([LATEST], ROWS)
    thread = c._loop._thread
    assert thread is not None and thread.is_alive()
    c.close()
    c.close()
    assert not thread.is_alive() and c.closed and "closed" in repr(c)
    with pytest.raises(PredictionError, match="closed"):
        c.send([LATEST], ROWS)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        (
            "http://latest-sklearn-iris-predictor.kserve-test.example.com",
            "latest-sklearn-iris-predictor.kserve-test.example.com",
        ),
        ("https://prev-m-predictor.ns.example.com:8443/x", "prev-m-predictor.ns.example.com"),
        ("m-predictor.ns.example.com", "m-predictor.ns.example.com"),
    ],
)
def test_target_from_status_url(url: str, host: str) -> None:
    assert Target.from_url("latest", url, "r1") == Target("latest", host, "r1")


def test_bad_ingress_is_rejected() -> None:
    with pytest.raises(ValidationError, match="base URL"):
        PredictionClient("127.0.0.1:31380", model=MODEL)
