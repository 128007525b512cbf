"""One small function per ``%kserve`` subcommand: read the parsed arguments, call the façade once.

Every function has the signature ``(magics, args, cell) -> value``; the value is what the magic
returns, so ``x = %kserve status NAME`` works and a bare last-line magic displays it once through
its ``_repr_html_``. Nothing here decides anything about a release: that is the Session's job.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kserve_nb import resources as r
from kserve_nb.errors import ValidationError
from kserve_nb.magics.display import Banner, Note, load_json

if TYPE_CHECKING:  # pragma: no cover
    from kserve_nb.magics.core import KServeMagics
    from kserve_nb.service import Service

Command = Callable[["KServeMagics", argparse.Namespace, "str | None"], Any]


# ---------------------------------------------------------------------- helpers


def _display(obj: Any) -> None:
    from IPython.display import display

    display(obj)


def _service(m: KServeMagics, args: argparse.Namespace) -> Service:
    """The service named on the line, after checking the declared context."""
    session = m.session
    expected = getattr(args, "expect_context", None)
    if expected and expected != session.context:
        raise ValidationError(
            f"this cell declares context {expected!r} but the session is on {session.context!r}; "
            f"nothing was done — run %kserve connect --context {expected} first"
        )
    return session.service(args.name, args.namespace)


def _announced(svc: Service, value: Any) -> Any:
    """Show where a change happened (cluster, context, namespace/name) above its result.

    Shown after the call, not before, so that a refused change is still exactly one error line. A
    Release names where it happened in its own headline, and a dry run changes nothing: neither
    gets a second line saying so.
    """
    from kserve_nb.plan import Plan
    from kserve_nb.service import Release

    if not isinstance(value, (Release, Plan)):
        _display(Banner(svc.session, svc.namespace, svc.name))
    return value


def _release_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"dry_run": args.dry_run, "wait": not args.no_wait}


def _lookup(m: KServeMagics, expr: str, what: str) -> Any:
    """A variable (or a simple expression such as ``df.head(20)``) of the user namespace."""
    ns = m.user_ns
    if expr in ns:
        return ns[expr]
    try:
        return m.evaluate(expr)
    except Exception as err:  # noqa: BLE001 - the user's expression: any error is theirs to fix, in one line
        raise ValidationError(
            f"{what} {expr!r} is not a variable of this notebook ({type(err).__name__}: {err}); "
            "pass the name of a list of rows, numpy array or DataFrame"
        ) from None


def _payload(m: KServeMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """Exactly one of: the cell body, ``-d @file`` / ``--data JSON``, or a VARIABLE."""
    given = [x for x in (cell if cell and cell.strip() else None, args.data, args.variable) if x is not None]
    if len(given) != 1:
        raise ValidationError(
            "predict needs exactly one payload: -d @file.json, --data JSON, a VARIABLE, "
            "or a JSON body in %%kserve predict"
        )
    if cell is not None and cell.strip():
        return load_json(cell, "the cell body")
    if args.data is not None:
        if args.data.startswith("@"):
            return load_json(_read(args.data[1:]), args.data[1:])
        return load_json(args.data, "--data")
    return _lookup(m, args.variable, "VARIABLE")


def _read(path: str) -> str:
    try:
        return Path(path).expanduser().read_text()
    except OSError as err:
        raise ValidationError(f"cannot read {path}: {err.strerror or err}") from None


def _state_dir(m: KServeMagics, args: argparse.Namespace) -> Any:
    if args.state_dir:
        return args.state_dir
    if m.has_session and m.session.local is not None:
        return m.session.local.state_dir
    return m.settings.local_state_dir or None


# ---------------------------------------------------------------------- connection


def connect(m: KServeMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """``%kserve connect [local | --context C] [--kubeconfig PATH] [-n N] [--state-dir DIR]``."""
    if args.target == "local" and (args.context or args.kubeconfig):
        raise ValidationError("connect takes either `local` or --context/--kubeconfig, not both")
    return m.connect(
        kubeconfig=args.kubeconfig,
        context=args.context,
        namespace=args.namespace,
        local=True if args.target == "local" else None,
        ingress=args.ingress,
        state_dir=args.state_dir,
    )


def local(m: KServeMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """``%kserve local up|down|status [--state-dir DIR]``."""
    from kserve_nb.local import manager

    state_dir = _state_dir(m, args)
    if args.action == "up":
        return manager.up(state_dir)
    if args.action == "status":
        running = manager.status(state_dir)
        where = state_dir or manager.default_state_dir()
        return running if running is not None else Note(f"no local cluster is running on {where}")
    if m.has_session and m.session.is_local:
        m.close_session()  # its clients point at the cluster we are stopping
    stopped = manager.down(state_dir)
    return Note("local cluster stopped" if stopped else "no local cluster was running")


def namespace(m: KServeMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """``%kserve namespace create NAME``."""
    created = m.session.create_namespace(args.name)
    return Note(f"namespace/{args.name} {'created' if created else 'unchanged'}")


# ---------------------------------------------------------------------- reading


def status(m: KServeMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """``%kserve status [NAME] [-n NS | -A]``: a ServiceStatus, or the services table."""
    if args.name is None:
        return m.session.services(args.namespace, all_namespaces=args.all_namespaces)
    svc = _service(m, args)
    st = svc.status()
    rollout = svc.rollout_state()
    if rollout is not None and rollout.live:  # a rollout in progress, or held by a dead supervisor
        _display(Note(rollout.summary()))
    return st


def pods(m: KServeMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """``%kserve pods [NAME]``."""
    if args.name is None:
        return m.session.pods(args.namespace)
    return _service(m, args).pods()


def revisions(m: KServeMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """``%kserve revisions NAME``."""
    return _service(m, args).revisions()


def history(m: KServeMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """``%kserve history NAME``."""
    return _service(m, args).history()


# ---------------------------------------------------------------------- releasing


def apply(m: KServeMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """``%%kserve apply [-n NS]`` with a manifest body, or ``%kserve apply -f FILE``."""
    if (cell is None) == (args.filename is None):
        raise ValidationError("apply needs one manifest: a %%kserve apply cell body, or -f FILE on the line")
    body = cell if cell is not None else _read(args.filename)
    session = m.session
    results = session.apply(body, namespace=args.namespace)
    _display(Banner(session, args.namespace or session.namespace, None))
    return results


def deploy(m: KServeMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """``%kserve deploy NAME --storage-uri URI [--model-format F] [--tag-routing] [--dry-run] [--no-wait]``."""
    # Only pass a format when given: the façade then keeps the current one (or sklearn on create).
    fmt = {"model_format": args.model_format} if args.model_format else {}
    svc = _service(m, args)
    return _announced(svc, svc.deploy(args.storage_uri, tag_routing=args.tag_routing, **fmt, **_release_kwargs(args)))


def canary(m: KServeMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """``%kserve canary NAME --storage-uri URI --percent P [--tag-routing] [--dry-run] [--no-wait]``."""
    svc = _service(m, args)
    release = svc.canary(
        args.storage_uri, args.percent, tag_routing=args.tag_routing, model_format=args.model_format,
        name=args.canary, **_release_kwargs(args),
    )
    return _announced(svc, release)


def traffic(m: KServeMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """``%kserve traffic NAME P``."""
    svc = _service(m, args)
    return _announced(svc, svc.set_traffic(args.percent, canary=args.canary, **_release_kwargs(args)))


def promote(m: KServeMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """``%kserve promote NAME``."""
    svc = _service(m, args)
    return _announced(svc, svc.promote(canary=args.canary, **_release_kwargs(args)))


def rollback(m: KServeMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """``%kserve rollback NAME``."""
    svc = _service(m, args)
    return _announced(svc, svc.rollback(canary=args.canary, **_release_kwargs(args)))


def delete(m: KServeMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """``%kserve delete NAME``."""
    svc = _service(m, args)
    svc.delete()
    return _announced(svc, Note(f"{r.KUBECTL_RESOURCE}/{args.name} deleted"))


# ---------------------------------------------------------------------- predictions


def predict(m: KServeMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """``%kserve predict NAME [--to T] [--protocol v1|v2] (-d @f.json | --data JSON | VARIABLE)``."""
    payload = _payload(m, args, cell)
    return _service(m, args).predict(payload, to=args.to, protocol=args.protocol or m.settings.protocol)


def send(m: KServeMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """``%kserve send NAME INPUTS [--to latest,prev] [--repeat K]``."""
    inputs = _lookup(m, args.inputs, "INPUTS")
    targets = [t.strip() for t in args.to.split(",") if t.strip()]
    return _service(m, args).send(
        inputs, to=targets, repeat=args.repeat, concurrency=m.settings.concurrency,
        protocol=args.protocol or m.settings.protocol,
    )


def compare(m: KServeMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """``%kserve compare NAME INPUTS [--repeat K]``: shows the figures, returns the Comparison.

    The figures are displayed here; the summary shows through the returned Comparison's
    ``_repr_html_`` (so a bare magic shows it once, and ``c = %kserve compare …`` keeps it).
    """
    inputs = _lookup(m, args.inputs, "INPUTS")
    result = _service(m, args).compare(
        inputs, repeat=args.repeat, protocol=args.protocol or m.settings.protocol, canary=args.canary
    )
    for figure in result.figures().values():
        _display(figure)
    return result


def panel(m: KServeMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """``%kserve panel NAME``: the release panel widget (stopped by ``%unload_ext``)."""
    from kserve_nb.widgets import Panel

    return m.track_panel(Panel(_service(m, args), user_ns=m.user_ns))


def watch(m: KServeMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """``%kserve watch NAME [--interval S] [--window W] [--duration D]``: the live chart widget
    (stopped after D, by ``.stop()``, on close and by ``%unload_ext``)."""
    from kserve_nb.widgets.live import LiveMetrics

    svc = _service(m, args)
    svc.status()  # a missing service is one NotFound line, not a chart that never fills
    return m.track_panel(LiveMetrics(svc, interval=args.interval, window=args.window, max_duration=args.duration))


def rollout(m: KServeMagics, args: argparse.Namespace, cell: str | None) -> Any:
    """``%kserve rollout NAME --storage-uri URI [--steps …] [--interval …] [--gate …]…``, or
    ``--approve`` / ``--abort`` / ``--state`` of the rollout in progress."""
    svc = _service(m, args)
    if args.approve:
        return _announced(svc, svc.approve_rollout())
    if args.abort:
        return _announced(svc, svc.abort_rollout())
    if args.state:
        state = svc.rollout_state()
        return state if state is not None else Note(f"{svc.name} has had no rollout")
    if not args.storage_uri:
        raise ValidationError(
            "rollout needs --storage-uri URI (the candidate), or --approve, --abort or --state; "
            "see %kserve rollout --help"
        )
    from kserve_nb.rollout.plan import DEFAULT_GATES

    load = _lookup(m, args.load, "--load") if args.load else None
    labels = _lookup(m, args.labels, "--labels") if args.labels else None
    result = svc.rollout(
        args.storage_uri, steps=args.steps, interval=args.interval,
        gates=args.gates or DEFAULT_GATES,
        alpha=args.alpha, min_requests=args.min_requests, max_wait=args.max_wait,
        on_inconclusive=args.on_inconclusive, require_pass=args.require_pass, metrics=args.metrics,
        load=load, y=labels, rate=args.rate, tag_routing=args.tag_routing, dry_run=args.dry_run,
    )
    return _announced(svc, result)


COMMANDS: dict[str, Command] = {
    "connect": connect, "local": local, "namespace": namespace,
    "status": status, "pods": pods, "revisions": revisions, "history": history,
    "apply": apply, "deploy": deploy, "canary": canary, "traffic": traffic,
    "promote": promote, "rollback": rollback, "delete": delete,
    "predict": predict, "send": send, "compare": compare, "rollout": rollout, "panel": panel,
    "watch": watch,
}
