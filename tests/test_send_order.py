"""What ``send`` puts on the wire: warm-up requests first and unrecorded, then the targets interleaved.

A small HTTP/1.1 server on 127.0.0.1 records every request in arrival order (Host header and body)
and answers with the row it was sent, so the test sees exactly what went out and in which order.
With ``concurrency=1`` the arrival order is the sending order.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kserve_nb.predict import PredictionClient, Target

ROWS = [[float(i), 0.0, 0.0, 0.0] for i in range(5)]
A = Target("latest", "latest-m.ns.example.com", "m-00002")
B = Target("prev", "prev-m.ns.example.com", "m-00001")


class Recorder:
    """An HTTP/1.1 keep-alive server in a thread, recording ``(host, first feature)`` per request."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, float]] = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._main, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(5)

    def _main(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {
                    k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
                }
                body = json.loads(await reader.readexactly(int(headers["content-length"])))
                x = body["instances"][0][0]
                self.seen.append((headers["host"], x))
                out = json.dumps({"predictions": [x]}).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(out) + out)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    srv = Recorder()
    yield srv
    srv.close()


def _sent(recorder: Recorder, **kwargs: Any) -> tuple[list[tuple[str, int]], Any]:
    recorder.seen.clear()
    with PredictionClient(f"http://127.0.0.1:{recorder.port}", model="m", **kwargs.pop("client", {})) as c:
        df = c.send([A, B], ROWS, concurrency=1, **kwargs)
    side = {A.host: "A", B.host: "B"}
    return [(side[h], int(x)) for h, x in recorder.seen], df


def test_warmup_goes_first_to_every_target_and_is_not_recorded(recorder: Recorder) -> None:
    sent, df = _sent(recorder, warmup=2)
    assert sent[:4] == [("A", 0), ("B", 0), ("B", 1), ("A", 1)]  # rows 0 and 1, interleaved
    assert len(sent) == 4 + 2 * len(ROWS)
    assert len(df) == 2 * len(ROWS) and df.attrs["warmup"] == 4
    assert (df["repeat"] >= 0).all()


def test_targets_alternate_row_by_row_and_take_turns_going_first(recorder: Recorder) -> None:
    sent, _ = _sent(recorder, warmup=0, repeat=2)
    assert sent == [
        (side, row)
        for step, (rep, row) in enumerate((r, i) for r in range(2) for i in range(len(ROWS)))
        for side in (("A", "B") if step % 2 == 0 else ("B", "A"))
    ]


def test_results_stay_in_repeat_row_target_order_with_the_right_answers(recorder: Recorder) -> None:
    _, df = _sent(recorder, warmup=1, repeat=2)
    assert df[["repeat", "row", "target"]].values.tolist() == [
        [r, i, t] for r in range(2) for i in range(len(ROWS)) for t in ("latest", "prev")
    ]
    # Each row's answer is its own input echoed back, whatever order it was sent in.
    assert df["prediction"].tolist() == [float(i) for _ in range(2) for i in range(len(ROWS)) for _t in "AB"]
    assert set(df.loc[df.target == "prev", "revision"]) == {B.revision}


def test_warmup_zero_sends_nothing_extra(recorder: Recorder) -> None:
    sent, df = _sent(recorder, warmup=0)
    assert len(sent) == len(df) == 2 * len(ROWS) and df.attrs["warmup"] == 0


def test_the_httpx_path_warms_up_and_interleaves_the_same_way(recorder: Recorder) -> None:
    sent, df = _sent(recorder, warmup=1, client={"transport": httpx.HTTPTransport()})
    assert sent[:2] == [("A", 0), ("B", 0)]
    assert [s for s, _ in sent[2:6]] == ["A", "B", "B", "A"]
    assert len(df) == 2 * len(ROWS) and df.attrs["warmup"] == 2


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_bad_warmup_is_refused_before_sending(recorder: Recorder, bad: Any) -> None:
    from kserve_nb.errors import ValidationError

    recorder.seen.clear()
    with (
        PredictionClient(f"http://127.0.0.1:{recorder.port}", model="m") as c,
        pytest.raises(ValidationError, match="warmup"),
    ):
        c.send([A, B], ROWS, warmup=bad)
    assert recorder.seen == []
