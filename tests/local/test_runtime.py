"""Revision runtime: real KServe model-server processes forked from the warm zygote.

Every test talks to real processes over 127.0.0.1. One runtime (one zygote) serves the module; the
tests that need a pristine one (close, kill -9 of the daemon) start their own.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import psutil
import pytest
import uvloop

from kserve_nb.local.runtime import RevisionSpec, RevisionState, Runtime
from kserve_nb.local.storage import seed_mirror

T = TypeVar("T")
NS = "kserve-test"
ISVC = "sklearn-iris"
MODEL_1 = "gs://kfserving-examples/models/sklearn/1.0/model"
IRIS = {"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}


class Harness:
    """A runtime on a private uvloop loop, with every on_change recorded (time, state)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.loop = uvloop.new_event_loop()
        self.events: list[tuple[float, RevisionState]] = []
        self.runtime = Runtime(state_dir, lambda s: self.events.append((time.monotonic(), s)))
        self.run(self.runtime.start(), timeout=60)
        self._revision = 0

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def spec(self, uri: str = MODEL_1, fmt: str = "sklearn", **kw: Any) -> RevisionSpec:
        self._revision += 1
        return RevisionSpec(NS, ISVC, f"{ISVC}-predictor-{self._revision:05d}", uri, fmt, **kw)

    async def until(self, revision: str, check: Callable[[RevisionState], bool], timeout: float = 5) -> RevisionState:
        """Wait (bounded) for an on_change of ``revision`` that satisfies ``check``."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for _, state in self.events[seen:]:
                if state.revision == revision and check(state):
                    return state
            seen = len(self.events)
            await asyncio.sleep(0.002)
        raise AssertionError(
            f"{revision}: no matching state in {[s for _, s in self.events if s.revision == revision]}"
        )

    def start_ready(self, spec: RevisionSpec) -> RevisionState:
        self.runtime.ensure_running(spec)
        return self.run(self.until(spec.revision, lambda s: s.phase == "Ready"))

    def close(self) -> None:
        self.run(self.runtime.close(), timeout=30)
        self.loop.close()


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("runtime")
    seed_mirror(d)
    return d


@pytest.fixture(scope="module")
def h(state_dir: Path) -> Iterator[Harness]:
    harness = Harness(state_dir)
    try:
        yield harness
    finally:
        harness.close()


@pytest.fixture(scope="module")
def ready(h: Harness) -> RevisionState:
    """One Ready revision of the walkthrough's first model, shared by the protocol tests."""
    return h.start_ready(h.spec())


async def _post(url: str, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.post(url, json=body) as r:
        return r.status, await r.json(content_type=None)


def _base(state: RevisionState) -> str:
    return f"http://{state.host}:{state.port}"


# --- start and serve -------------------------------------------------------------------------


def test_a_revision_is_ready_well_under_a_second_from_the_warm_zygote(h: Harness) -> None:
    spec = h.spec()
    started = time.monotonic()
    h.runtime.ensure_running(spec)
    state = h.run(h.until(spec.revision, lambda s: s.phase == "Ready"))
    assert time.monotonic() - started < 0.5
    assert state.ever_ready and state.pid and state.port and state.started_at
    assert [s.phase for _, s in h.events if s.revision == spec.revision] == ["Starting", "Ready"]
    h.runtime.stop(NS, spec.revision)


def test_ensure_running_is_idempotent(h: Harness, ready: RevisionState) -> None:
    spec = RevisionSpec(NS, ISVC, ready.revision, MODEL_1, "sklearn")
    h.runtime.ensure_running(spec)
    h.run(asyncio.sleep(0.05))
    assert h.runtime.states()[(NS, ready.revision)].pid == ready.pid


def test_v1_predict_answers_like_kserve(h: Harness, ready: RevisionState) -> None:
    status, body = h.run(_post(f"{_base(ready)}/v1/models/{ISVC}:predict", IRIS))
    assert (status, body) == (200, {"predictions": [1, 1]})


def test_v2_infer_answers_like_kserve(h: Harness, ready: RevisionState) -> None:
    request = {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": IRIS["instances"]}]}
    status, body = h.run(_post(f"{_base(ready)}/v2/models/{ISVC}/infer", request))
    assert status == 200
    assert body["model_name"] == ISVC
    assert body["outputs"][0]["data"] == [1, 1]


def test_wrong_feature_count_is_a_500_with_sklearns_message(h: Harness, ready: RevisionState) -> None:
    status, body = h.run(_post(f"{_base(ready)}/v1/models/{ISVC}:predict", {"instances": [[1.0, 2.0, 3.0]]}))
    assert status == 500
    assert "X has 3 features, but SVC is expecting 4 features as input" in body["error"]


def test_the_model_server_listens_on_loopback_only(ready: RevisionState) -> None:
    listening = [c for c in psutil.Process(ready.pid).connections("inet") if c.status == psutil.CONN_LISTEN]
    assert listening, "the model server listens"
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}
    assert {c.laddr.port for c in listening} == {ready.port}  # no gRPC port


def _hammer(h: Harness, url: str, body: Any, n: int) -> None:
    async def go() -> None:
        async with aiohttp.ClientSession() as s:
            for _ in range(n):
                async with s.post(url, json=body) as r:
                    await r.read()

    h.run(go(), timeout=30)


def test_two_hundred_requests_leave_the_logs_and_stderr_empty(
    h: Harness, ready: RevisionState, state_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = state_dir / "logs" / NS / f"{ready.revision}.log"
    zygote_log = state_dir / "logs" / "zygote.log"
    sizes = (log.stat().st_size, zygote_log.stat().st_size)
    capfd.readouterr()
    _hammer(h, f"{_base(ready)}/v1/models/{ISVC}:predict", IRIS, 200)
    assert (log.stat().st_size, zygote_log.stat().st_size) == sizes
    assert log.stat().st_size < 1024, log.read_text()
    assert capfd.readouterr() == ("", "")


def test_a_bad_request_logs_one_line_without_a_traceback(
    h: Harness, ready: RevisionState, state_dir: Path
) -> None:
    log = state_dir / "logs" / NS / f"{ready.revision}.log"
    size = log.stat().st_size
    _hammer(h, f"{_base(ready)}/v1/models/{ISVC}:predict", {"instances": [[1.0]]}, 5)
    with open(log) as f:
        f.seek(size)
        added = f.read().splitlines()
    assert len(added) == 5
    assert all("InferenceError: X has 1 features, but SVC is expecting 4" in line for line in added)


# --- failures ----------------------------------------------------------------------------------


def test_a_missing_model_fails_with_a_clear_message_and_no_restart_loop(h: Harness) -> None:
    spec = h.spec(uri="gs://kfserving-examples/models/sklearn/1.0/model-x")
    h.runtime.ensure_running(spec)
    state = h.run(h.until(spec.revision, lambda s: s.phase == "Failed"))
    assert state.message is not None
    assert state.message.startswith("Failed to load model from gs://kfserving-examples/models/sklearn/1.0/model-x: ")
    assert "Copy your model dir to" in state.message
    h.run(asyncio.sleep(0.4))
    now = h.runtime.states()[(NS, spec.revision)]
    assert (now.phase, now.restarts, now.port) == ("Failed", 0, None)
    h.runtime.stop(NS, spec.revision)


def test_an_empty_model_directory_fails_like_kserve(h: Harness, tmp_path: Path) -> None:
    spec = h.spec(uri=f"file://{tmp_path}")
    h.runtime.ensure_running(spec)
    state = h.run(h.until(spec.revision, lambda s: s.phase == "Failed"))
    assert f"Missing model file in model directory {tmp_path}" in (state.message or "")
    h.runtime.stop(NS, spec.revision)


def test_a_broken_model_file_fails_with_the_unpickling_error(h: Harness, tmp_path: Path) -> None:
    (tmp_path / "model.joblib").write_bytes(b"not a pickle")
    spec = h.spec(uri=str(tmp_path))
    h.runtime.ensure_running(spec)
    state = h.run(h.until(spec.revision, lambda s: s.phase == "Failed"))
    assert (state.message or "").startswith(f"Failed to load model from {tmp_path}: ")
    h.runtime.stop(NS, spec.revision)


@pytest.mark.parametrize(
    ("fmt", "protocol", "expected"),
    [("xgboost", None, "model format 'xgboost' is not supported"), ("sklearn", "grpc-v2", "protocolVersion 'grpc-v2'")],
)
def test_unsupported_formats_fail_without_starting_a_process(
    h: Harness, fmt: str, protocol: str | None, expected: str
) -> None:
    spec = h.spec(fmt=fmt, protocol_version=protocol)
    h.runtime.ensure_running(spec)
    state = h.run(h.until(spec.revision, lambda s: s.phase == "Failed"))
    assert expected in (state.message or "") and "sklearn" in (state.message or "")
    assert state.pid is None
    h.runtime.stop(NS, spec.revision)


# --- crash, restart, stop ----------------------------------------------------------------------


def test_kill_9_is_reported_at_once_then_the_revision_restarts(h: Harness) -> None:
    spec = h.spec()
    first = h.start_ready(spec)

    async def kill_and_watch() -> tuple[float, RevisionState, RevisionState]:
        killed_at = time.monotonic()
        os.kill(first.pid, signal.SIGKILL)  # type: ignore[arg-type]
        crashed = await h.until(spec.revision, lambda s: s.phase == "Restarting")
        reported_at = next(t for t, s in h.events if s is crashed)
        back = await h.until(spec.revision, lambda s: s.phase == "Ready" and s.restarts == 1)
        return reported_at - killed_at, crashed, back

    delay, crashed, back = h.run(kill_and_watch())
    assert delay < 0.25, f"crash reported after {delay * 1000:.0f} ms"  # the kernel tears it down first
    assert crashed.port is None and crashed.last_crash_at is not None
    assert back.pid != first.pid and back.port is not None
    assert back.ever_ready and back.last_crash_at == crashed.last_crash_at
    status, body = h.run(_post(f"{_base(back)}/v1/models/{ISVC}:predict", IRIS))
    assert (status, body) == (200, {"predictions": [1, 1]})
    # The zygote's SIGCHLD report names the signal (it may land just after the first report).
    assert any(
        s.revision == spec.revision and "killed by SIGKILL" in (s.message or "") for _, s in h.events
    )
    h.runtime.stop(NS, spec.revision)


def test_stop_terminates_the_process_and_reports_stopped(h: Harness) -> None:
    spec = h.spec()
    state = h.start_ready(spec)
    h.runtime.stop(NS, spec.revision)
    stopped = h.run(h.until(spec.revision, lambda s: s.phase == "Stopped"))
    assert stopped.pid is None and (NS, spec.revision) not in h.runtime.states()
    h.run(_wait_gone([state.pid]))  # type: ignore[list-item]


def test_stop_while_starting_leaves_no_process(h: Harness) -> None:
    spec = h.spec()
    before = _descendants()
    h.runtime.ensure_running(spec)
    h.runtime.stop(NS, spec.revision)
    h.run(asyncio.sleep(0.3))
    h.run(_wait_gone(list(_descendants() - before)))


def test_a_dead_zygote_leaves_its_revisions_serving_and_is_replaced(h: Harness) -> None:
    kept, stopped = h.spec(), h.spec()
    first, second = h.start_ready(kept), h.start_ready(stopped)
    zygote = h.runtime._zygote
    assert zygote is not None and zygote.pid is not None
    os.kill(zygote.pid, signal.SIGKILL)  # its children are data plane: they keep serving
    h.run(asyncio.sleep(0.5))
    for state in (first, second):
        assert h.runtime.states()[(NS, state.revision)].phase == "Ready" and _alive(state.pid)  # type: ignore[arg-type]
        h.run(_predict_ok(state))
    # Stopping one whose zygote is gone: nobody reports its exit, a pidfd does.
    h.runtime.stop(NS, stopped.revision)
    h.run(_wait_gone([second.pid]))  # type: ignore[list-item]
    assert not h.runtime._dying
    # One that dies is still seen at once (its status pipe) and restarts from a new zygote, which
    # imports kserve and scikit-learn again: seconds.
    os.kill(first.pid, signal.SIGKILL)  # type: ignore[arg-type]
    h.run(h.until(kept.revision, lambda s: s.phase == "Restarting"))
    back = h.run(h.until(kept.revision, lambda s: s.phase == "Ready" and s.restarts == 1, timeout=60), timeout=60)
    assert back.pid != first.pid
    assert h.runtime._zygote is not None and h.runtime._zygote.pid != zygote.pid
    h.runtime.stop(NS, kept.revision)


def test_close_stops_every_process_and_the_zygote(h: Harness) -> None:
    # Runs last among the tests sharing `h` (pytest keeps file order); closing twice is harmless.
    for spec in (h.spec(), h.spec()):
        h.start_ready(spec)
    zygote = h.runtime._zygote
    assert zygote is not None and zygote.pid is not None
    mine = [zygote.pid] + [p.pid for p in psutil.Process(zygote.pid).children(recursive=True)]
    assert len(mine) >= 3
    h.run(h.runtime.close(), timeout=30)
    assert [pid for pid in mine if _alive(pid)] == []
    assert h.runtime.states() == {}


def test_kill_9_of_the_daemon_leaves_revisions_serving_for_the_next_runtime_to_adopt(
    state_dir: Path, tmp_path: Path
) -> None:
    # A state dir of its own: the record (runtime.json) of the shared runtime must not be adopted.
    shutil.copytree(state_dir / "storage", tmp_path / "storage", symlinks=True)
    state_dir = tmp_path
    script = textwrap.dedent(
        f"""
        import asyncio, json, sys, uvloop
        from pathlib import Path
        from kserve_nb.local.runtime import Runtime, RevisionSpec

        async def main():
            ready = asyncio.get_running_loop().create_future()
            rt = Runtime(Path({str(state_dir)!r}),
                         lambda s: s.phase == "Ready" and not ready.done() and ready.set_result(s))
            await rt.start()
            rt.ensure_running(RevisionSpec("ns", "m", "m-predictor-00001", {MODEL_1!r}, "sklearn"))
            state = await asyncio.wait_for(ready, 30)
            await asyncio.sleep(0.1)  # the record is written on the next loop turn
            print(json.dumps({{"zygote": rt._zygote.pid, "revision": state.pid, "port": state.port}}), flush=True)
            await asyncio.sleep(60)

        uvloop.run(main())
        """
    )
    daemon = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        line = _readline(daemon, timeout=60)
        pids = json.loads(line)
        assert _alive(pids["zygote"]) and _alive(pids["revision"])
    finally:
        daemon.kill()
        daemon.wait(10)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and _alive(pids["zygote"]):
        time.sleep(0.02)
    assert not _alive(pids["zygote"])  # the zygote dies with its daemon
    assert _alive(pids["revision"])  # the revision keeps serving

    async def adopt() -> None:
        rt = Runtime(state_dir, lambda s: None)
        await rt.start(wait=False)
        try:
            adopted = await rt.adopt()
            assert [(s.revision, s.pid, s.port, s.phase) for s in adopted] == [
                ("m-predictor-00001", pids["revision"], pids["port"], "Ready")
            ]
            # The same spec again: nothing to do, the adopted process serves it.
            rt.ensure_running(RevisionSpec("ns", "m", "m-predictor-00001", MODEL_1, "sklearn"))
            assert rt.states()[("ns", "m-predictor-00001")].pid == pids["revision"]
            async with aiohttp.ClientSession() as session:
                url = f"http://127.0.0.1:{pids['port']}/v1/models/m:predict"
                async with session.post(url, json=IRIS) as resp:
                    assert resp.status == 200
        finally:
            await rt.close()  # stops the adopted process too (not our child: watched by its pidfd)
        assert not _alive(pids["revision"])
        assert not (state_dir / "runtime.json").exists()

    uvloop.run(asyncio.wait_for(adopt(), 60))


# --- helpers -----------------------------------------------------------------------------------


async def _predict_ok(state: RevisionState) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{state.port}/v1/models/{ISVC}:predict", json=IRIS) as resp,
    ):
        assert resp.status == 200


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _descendants() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if _alive(p.pid)}


async def _wait_gone(pids: list[int], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"still running: {[p for p in pids if _alive(p)]}")


def _readline(proc: subprocess.Popen[bytes], timeout: float) -> str:
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline:
        chunk = proc.stdout.read()
        if chunk:
            buf += chunk
            if b"\n" in buf:
                return buf.split(b"\n", 1)[0].decode()
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    raise AssertionError(f"no line from the daemon script (exit {proc.poll()}): {buf!r}")
