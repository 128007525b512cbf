"""What the local cluster's data plane runs, recorded so that a restarted daemon can adopt it.

The data plane (nginx with its pushed routing table, and one model server per revision) outlives
the daemon, as a cluster's pods and ingress outlive its control plane: after ``kill -9`` of the
daemon, requests to ready revisions keep being answered. The daemon records what runs in the state
dir (0600 files: pids, process start times, ports, the routing table); the next daemon adopts
what it finds healthy, and ``local down`` stops it even when no daemon runs.

A pid alone is not an identity (pids are reused): a recorded process is only ever signalled when
its start time and its command line still match the record, and never when it is a zombie. Process
handles from psutil check the start time again before each signal.

``runtime.json``          the model servers (:mod:`kserve_nb.local.runtime`)
``ingress/ingress.json``  nginx: master, workers, ports, control token, routing table
                          (:mod:`kserve_nb.local.nginx`)
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger(__name__)

RUNTIME_RECORD = "runtime.json"
INGRESS_RECORD = Path("ingress") / "ingress.json"
#: In the command line of the zygote and of every model server (a fork shares its parent's).
MODEL_SERVER_MARKER = "kserve_nb.local.modelserver"
#: SIGTERM → SIGKILL grace when stopping a recorded process.
STOP_GRACE_SECONDS = 3.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now, for a data-plane process to bind."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def started_at(pid: int) -> float | None:
    """The start time of process ``pid`` (psutil's ``create_time``), or None when it is gone."""
    try:
        created: float = psutil.Process(pid).create_time()
        return created
    except psutil.Error:
        return None


def verified(pid: Any, started: Any, marker: str | None = None, name: str | None = None) -> psutil.Process | None:
    """The live process ``pid`` if it is the one recorded, else None (gone, reused, a zombie).

    It must have started at ``started`` (within 10 ms: psutil's clock-tick resolution), have
    ``marker`` in its command line and ``name`` as its name, when given.
    """
    try:
        proc = psutil.Process(int(pid))
        if abs(proc.create_time() - float(started)) > 0.01:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if name is not None and proc.name() != name:
            return None
        if marker is not None and marker not in " ".join(proc.cmdline()):
            return None
        return proc
    except (psutil.Error, TypeError, ValueError):
        return None


def alive(proc: psutil.Process) -> bool:
    """Whether ``proc`` still runs (a zombie does not: it only waits to be reaped)."""
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


class AdoptedProcess:
    """A process a previous daemon started: the part of ``subprocess.Popen`` that supervision uses.

    It is not our child, so its exit code is unknown (``returncode`` is -1 once it is gone).
    """

    def __init__(self, proc: psutil.Process) -> None:
        self._proc = proc
        self.pid = proc.pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """None while it runs, else -1."""
        if self.returncode is None and not alive(self._proc):
            self.returncode = -1
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Signal it (psutil checks first that the pid was not reused)."""
        if self.poll() is None:
            try:
                self._proc.send_signal(sig)
            except psutil.Error:
                pass

    def kill(self) -> None:
        """SIGKILL it."""
        self.send_signal(signal.SIGKILL)


def read(path: Path) -> dict[str, Any] | None:
    """A record, or None when there is none (or it is unreadable: nothing is adopted then)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write(path: Path, data: dict[str, Any]) -> None:
    """Write a record atomically, 0600 (the ingress record holds nginx's control token)."""
    from kserve_nb.local.daemon import write_private

    try:
        write_private(path, json.dumps(data, indent=1, sort_keys=True))
    except OSError as e:  # the state dir was removed under us: nothing left to adopt anyway
        log.warning("could not record the data plane in %s: %s", path, e)


def recorded_processes(state_dir: Path) -> list[psutil.Process]:
    """Every recorded data-plane process that still runs and is still the one recorded."""
    found: list[psutil.Process] = []
    runtime = read(state_dir / RUNTIME_RECORD) or {}
    for entry in runtime.get("revisions") or []:
        proc = verified(entry.get("pid"), entry.get("started"), marker=MODEL_SERVER_MARKER)
        if proc is not None:
            found.append(proc)
    ingress = read(state_dir / INGRESS_RECORD) or {}
    master = verified(ingress.get("pid"), ingress.get("started"), marker=str(state_dir / "ingress"), name="nginx")
    if master is not None:
        found.append(master)
        try:
            found.extend(p for p in master.children() if alive(p))
        except psutil.Error:
            pass
    for pid, started in ingress.get("workers") or []:
        proc = verified(pid, started, name="nginx")  # workers orphaned by a killed master
        if proc is not None and all(p.pid != proc.pid for p in found):
            found.append(proc)
    return found


def stop(procs: Iterable[psutil.Process], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM each process, SIGKILL what still runs after ``grace``; return once all are gone."""
    procs = list(procs)
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in procs):
        time.sleep(0.02)
    for proc in procs:
        if alive(proc):
            try:
                proc.kill()
            except psutil.Error:
                pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(alive(p) for p in procs):
        time.sleep(0.02)


def stop_recorded(state_dir: Path) -> bool:
    """Stop the data plane a daemon left running (it was killed); True if anything was running.

    Only processes that match their record are signalled. The records are removed.
    """
    procs = recorded_processes(state_dir)
    if procs:
        log.info("stopping the data plane left running: %s", sorted(p.pid for p in procs))
        stop(procs)
    for name in (RUNTIME_RECORD, INGRESS_RECORD):
        try:
            os.unlink(state_dir / name)
        except OSError:
            pass
    return bool(procs)
