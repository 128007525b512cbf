"""Start, find and stop the local cluster daemon from another process (CLI, notebook, tests).

The daemon runs detached from the caller (its own session), so a notebook kernel restart or a
closed terminal does not take the cluster with it. ``up`` is idempotent: a healthy daemon on the
same state dir is reused.

Prometheus is not part of ``up`` (it would add seconds to every start): :func:`ensure_prometheus`
starts it the first time metrics are asked for, and :func:`down` stops it with the cluster.

The data plane (nginx, the model servers) outlives a killed daemon; ``up`` starts a daemon that
adopts it, and :func:`down` stops it whether a daemon runs or not.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from kserve_nb.errors import LocalClusterError
from kserve_nb.resources import DEFAULT_DOMAIN

if TYPE_CHECKING:
    from kserve_nb.local.prometheus import LocalPrometheus

UP_TIMEOUT = 60.0
DOWN_TIMEOUT = 15.0


@dataclass(frozen=True)
class LocalCluster:
    """Where a running local cluster answers. Its repr never shows the token."""

    state_dir: Path
    pid: int
    api: str
    ingress_host: str
    ingress_port: int
    kubeconfig: Path
    domain: str = DEFAULT_DOMAIN
    ingress_proxy: str = "python"  # what serves the ingress port: "nginx" or "python" (the Gateway alone)
    #: The ingress' metrics endpoints (exporter name → loopback port; ``/metrics``, metrics token).
    metrics: tuple[tuple[str, int], ...] = ()

    @property
    def ingress(self) -> str:
        """Base URL of the ingress gateway."""
        return f"http://{self.ingress_host}:{self.ingress_port}"

    def env(self) -> dict[str, str]:
        """The environment a shell needs to use this cluster with kubectl and curl."""
        return {
            "KUBECONFIG": str(self.kubeconfig),
            "INGRESS_HOST": self.ingress_host,
            "INGRESS_PORT": str(self.ingress_port),
        }


def default_state_dir() -> Path:
    """``$KSERVE_NB_HOME``, else the user's data dir (``~/.local/share/kserve-nb``)."""
    env = os.environ.get("KSERVE_NB_HOME")
    if env:
        return Path(env).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_data_dir("kserve-nb", appauthor=False))


def _resolve(state_dir: Path | str | None) -> Path:
    return Path(state_dir).expanduser().resolve() if state_dir else default_state_dir()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child that exited) is not alive.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _read_endpoint(state_dir: Path) -> dict[str, Any] | None:
    try:
        endpoint: dict[str, Any] = json.loads((state_dir / "endpoint.json").read_text())
        return endpoint
    except (OSError, ValueError):
        return None


def _healthy(info: dict[str, Any], token: str, state_dir: Path) -> bool:
    try:
        api = httpx.get(
            info["api"] + "/readyz",
            headers={"Authorization": f"Bearer {token}"},
            timeout=2.0,
            # the cluster's own CA: verification stays on
            verify=ssl.create_default_context(cafile=str(state_dir / "ca.crt")),
        )
        ingress = httpx.get(f"http://127.0.0.1:{info['ingress_port']}/", timeout=2.0)
    except httpx.HTTPError:
        return False
    # Any answer from the ingress (404 for an unknown host) proves it is serving.
    return api.status_code == 200 and ingress.status_code < 500


def _token(state_dir: Path) -> str:
    try:
        return (state_dir / "token").read_text().strip()
    except OSError:
        return ""


def status(state_dir: Path | str | None = None) -> LocalCluster | None:
    """The running local cluster on ``state_dir``, or None when none is running and healthy."""
    sd = _resolve(state_dir)
    info = _read_endpoint(sd)
    if not info or not _pid_alive(int(info["pid"])):
        return None
    if not _healthy(info, _token(sd), sd):
        return None
    return _cluster(sd, info)


def _cluster(sd: Path, info: dict[str, Any]) -> LocalCluster:
    return LocalCluster(
        state_dir=sd,
        pid=int(info["pid"]),
        api=info["api"],
        ingress_host=info["ingress_host"],
        ingress_port=int(info["ingress_port"]),
        kubeconfig=Path(info["kubeconfig"]),
        domain=info.get("domain", DEFAULT_DOMAIN),
        ingress_proxy=info.get("ingress_proxy", "python"),
        metrics=tuple(sorted((str(k), int(v)) for k, v in (info.get("metrics") or {}).items())),
    )


def up(state_dir: Path | str | None = None, *, timeout: float = UP_TIMEOUT) -> LocalCluster:
    """Start the local cluster (or reuse the running one) and return once API and ingress answer."""
    sd = _resolve(state_dir)
    running = status(sd)
    if running is not None:
        return running
    sd.mkdir(parents=True, exist_ok=True, mode=0o700)
    (sd / "logs").mkdir(exist_ok=True)
    stale = _read_endpoint(sd)
    if stale and _pid_alive(int(stale["pid"])):
        # Alive but not healthy: still starting (another `up` raced us), or wedged. Wait for it.
        return _wait_healthy(sd, int(stale["pid"]), None, timeout)
    (sd / "endpoint.json").unlink(missing_ok=True)
    out = open(sd / "logs" / "daemon.out", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        [sys.executable, "-m", "kserve_nb.local.daemon", "--state-dir", str(sd)],
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # detached: survives the caller
        close_fds=True,
        cwd=str(sd),
    )
    out.close()
    return _wait_healthy(sd, proc.pid, proc, timeout)


def _wait_healthy(
    sd: Path, pid: int, proc: subprocess.Popen[bytes] | None, timeout: float
) -> LocalCluster:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise LocalClusterError(
                f"the local cluster exited during start-up (code {proc.returncode}); "
                f"see {sd / 'logs' / 'daemon.out'} and {sd / 'logs' / 'daemon.log'}"
            )
        info = _read_endpoint(sd)
        if info and int(info["pid"]) == pid and _healthy(info, _token(sd), sd):
            return _cluster(sd, info)
        time.sleep(0.05)
    raise LocalClusterError(
        f"the local cluster did not answer within {timeout:.0f}s; "
        f"see {sd / 'logs' / 'daemon.log'}, or run `kserve-nb local down` and try again"
    )


def ensure_prometheus(state_dir: Path | str | None = None) -> LocalPrometheus:
    """The local cluster's Prometheus (its URL and API credentials), started now if not running.

    Needs the local cluster running on ``state_dir``; raises :class:`LocalClusterError` otherwise, or
    when Prometheus is not installed.
    """
    from kserve_nb.local import prometheus

    sd = _resolve(state_dir)
    if status(sd) is None:
        raise LocalClusterError(f"no local cluster is running on {sd}: start it with `kserve-nb local up`")
    return prometheus.ensure(sd)


def prometheus_status(state_dir: Path | str | None = None) -> LocalPrometheus | None:
    """The local cluster's Prometheus if it runs (never starts it)."""
    from kserve_nb.local import prometheus

    return prometheus.status(_resolve(state_dir))


def down(state_dir: Path | str | None = None, *, timeout: float = DOWN_TIMEOUT) -> bool:
    """Stop the local cluster and every process it started. Returns False if none was running.

    That includes a data plane a killed daemon left serving (only processes that match their record
    are signalled: see :mod:`kserve_nb.local.dataplane`).
    """
    from kserve_nb.local import dataplane, prometheus

    sd = _resolve(state_dir)
    prometheus.stop(sd)  # the daemon stops it too; here also when the daemon died without doing so
    info = _read_endpoint(sd)
    pid = int(info["pid"]) if info else _pid_from_lock(sd)
    if not pid or not _pid_alive(pid):
        (sd / "endpoint.json").unlink(missing_ok=True)
        return dataplane.stop_recorded(sd)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.05)
    if _pid_alive(pid):
        # It did not stop in time: kill it, then stop the data plane it leaves serving.
        os.kill(pid, signal.SIGKILL)
        while _pid_alive(pid) and time.monotonic() < deadline + 5:
            time.sleep(0.05)
    dataplane.stop_recorded(sd)
    (sd / "endpoint.json").unlink(missing_ok=True)
    return True


def data_plane_left(state_dir: Path | str | None = None) -> list[int]:
    """The pids of a data plane (nginx, model servers) that a killed daemon left serving."""
    from kserve_nb.local import dataplane

    sd = _resolve(state_dir)
    info = _read_endpoint(sd)
    if info and _pid_alive(int(info["pid"])):
        return []  # its daemon runs (or starts): not left behind
    return sorted(p.pid for p in dataplane.recorded_processes(sd))


def _pid_from_lock(sd: Path) -> int | None:
    # No endpoint.json (crashed during start-up): find the daemon by its command line.
    try:
        import psutil
    except ImportError:  # pragma: no cover
        return None
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if "kserve_nb.local.daemon" in cmd and str(sd) in cmd:
            return int(proc.info["pid"])
    return None


def shell_env(cluster: LocalCluster) -> str:
    """``export KUBECONFIG=… INGRESS_HOST=… INGRESS_PORT=…`` for ``eval "$(kserve-nb local env)"``."""
    import shlex

    return "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in cluster.env().items())
