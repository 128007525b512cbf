"""The ``kserve-nb`` command line: ``kserve-nb local up|down|status|env|prometheus``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kserve_nb.errors import KServeNbError
from kserve_nb.resources import LOCAL_CONTEXT


def _local(args: argparse.Namespace) -> int:
    from kserve_nb.local import manager

    if args.action == "up":
        cluster = manager.up(args.state_dir)
        print(f"local cluster running (pid {cluster.pid})")
        print(f"  API      {cluster.api}   (context {LOCAL_CONTEXT})")
        print(f"  ingress  {cluster.ingress}   ({cluster.ingress_proxy})")
        print(f"  state    {cluster.state_dir}")
        print('use it from a shell:  eval "$(kserve-nb local env)"')
        return 0
    if args.action == "down":
        stopped = manager.down(args.state_dir)
        print("local cluster stopped" if stopped else "no local cluster was running")
        return 0
    if args.action == "prometheus":
        prom = manager.ensure_prometheus(args.state_dir)
        print(f"Prometheus {prom.url}   (pid {prom.pid}; scrapes the ingress every second)")
        if prom.auth:
            print(f"  basic auth: user {prom.username}, password in {prom.directory / 'password'}")
        return 0
    running = manager.status(args.state_dir)
    if args.action == "env":
        if running is None:
            print("no local cluster is running: start one with `kserve-nb local up`", file=sys.stderr)
            return 1
        print(manager.shell_env(running))
        return 0
    # status
    if running is None:
        left = manager.data_plane_left(args.state_dir)
        print(f"stopped; its data plane still serves (pids {', '.join(map(str, left))}): `kserve-nb local up` "
              "adopts it, `kserve-nb local down` stops it" if left else "stopped")
        return 1
    print(
        f"running (pid {running.pid})  API {running.api}  ingress {running.ingress} ({running.ingress_proxy})  "
        f"state {running.state_dir}"
    )
    watching = manager.prometheus_status(args.state_dir)
    if watching:
        print(f"prometheus {watching.url} (pid {watching.pid})")
    else:
        print("prometheus not running (started on demand: `kserve-nb local prometheus`)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``kserve-nb`` command."""
    parser = argparse.ArgumentParser(
        prog="kserve-nb", description="Canary releases of KServe InferenceServices, and a local KServe cluster."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    local = sub.add_parser("local", help="the embedded local KServe cluster")
    local.add_argument(
        "action", choices=["up", "down", "status", "env", "prometheus"],
        help="prometheus: start the cluster's Prometheus if needed and print its URL",
    )
    local.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the cluster keeps its state (default: $KSERVE_NB_HOME or the user data dir)",
    )
    local.set_defaults(func=_local)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; errors print one line and exit non-zero."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KServeNbError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
