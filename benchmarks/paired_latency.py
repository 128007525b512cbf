"""Added latency at concurrency 1, measured request by request: ``python paired_latency.py SPEC N``.

``SPEC`` is JSON: ``[[label, port, host], ...]``, the first being the baseline (the model server
itself). One keep-alive connection per endpoint; each round sends the walkthrough's iris request to
every endpoint in turn (order alternating between rounds), so all of them see the same moment's
machine. Prints one JSON object: per label, the median latency and the median of the per-round
differences to the baseline, in ms.

Why not two wrk runs a second apart: on a shared 2-vCPU machine the model server's own speed
drifts by tens of percent between seconds, which swamps a difference of a tenth of a millisecond;
paired differences cancel that drift. Blocking sockets in a process of its own: nothing here
shares an interpreter with the proxy being measured.
"""

from __future__ import annotations

import json
import socket
import statistics
import sys
import time

BODY = b'{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}'
PATH = "/v1/models/sklearn-iris:predict"


def _request(host: str) -> bytes:
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    )
    return head.encode() + BODY


def _exchange(sock: socket.socket, request: bytes) -> int:
    """Send one request, read its whole answer; the round trip in ns."""
    started = time.perf_counter_ns()
    sock.sendall(request)
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed mid-answer")
        buf += chunk
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            continue
        head = buf[:end].lower()
        length = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        while len(buf) < end + 4 + length:
            buf += sock.recv(65536)
        if not head.startswith(b"http/1.1 200"):
            raise RuntimeError(f"unexpected answer: {buf[:200]!r}")
        return time.perf_counter_ns() - started


def measure(endpoints: list[tuple[str, int, str]], rounds: int) -> dict[str, dict[str, float]]:
    """Median latency and median paired difference to ``endpoints[0]`` per label, in ms."""
    conns = []
    for label, port, host in endpoints:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns.append((label, sock, _request(host)))
    times: dict[str, list[int]] = {label: [] for label, _, _ in conns}
    for _ in range(20):  # warm every path
        for _label, sock, request in conns:
            _exchange(sock, request)
    for i in range(rounds):
        for label, sock, request in conns if i % 2 == 0 else conns[::-1]:
            times[label].append(_exchange(sock, request))
    for _, sock, _ in conns:
        sock.close()
    base = times[endpoints[0][0]]
    return {
        label: {
            "p50_ms": statistics.median(t) / 1e6,
            "added_ms": statistics.median(a - b for a, b in zip(t, base)) / 1e6,
        }
        for label, t in times.items()
    }


if __name__ == "__main__":
    spec = [tuple(e) for e in json.loads(sys.argv[1])]
    print(json.dumps(measure(spec, int(sys.argv[2]))))  # type: ignore[arg-type]
