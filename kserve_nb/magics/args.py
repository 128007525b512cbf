"""Argument grammar of ``%kserve`` / ``%%kserve``: one argparse parser per subcommand.

argparse is used because it gives ``--help`` text and usage lines for free; what it does on
errors (print to stderr, ``sys.exit(2)``) is wrong inside a kernel, so :class:`Parser` turns
errors into one-line :class:`~kserve_nb.errors.ValidationError` s and ``--help`` into a
:class:`HelpShown` signal the dispatcher swallows.
"""

from __future__ import annotations

import argparse
import shlex
from typing import Any, NoReturn

from kserve_nb.errors import ValidationError

# argparse %-formats usage strings, and parse_intermixed_args re-formats an already formatted one,
# so "%kserve" cannot be the prog: the parsers say "kserve" and the magic prefix is added on output.
PROG = "kserve"

#: Subcommands in help order, with their one-line description.
SUMMARY: dict[str, str] = {
    "connect": "connect to a cluster: `local`, or --context/--kubeconfig",
    "status": "the release state of NAME, or the services table",
    "pods": "pods of NAME (or of the namespace)",
    "revisions": "every revision of NAME with its storageUri and traffic",
    "history": "release operations recorded for NAME",
    "deploy": "create NAME, or roll a new model out to 100%",
    "canary": "deploy a new model as a canary with --percent of the traffic",
    "traffic": "set canaryTrafficPercent of NAME",
    "promote": "send 100% to the latest ready revision",
    "rollback": "send 100% back to the previously rolled-out revision",
    "delete": "delete the InferenceService NAME",
    "apply": "%%kserve apply: create or update objects from a YAML manifest body",
    "predict": "one prediction request (-d @file.json | --data JSON | VARIABLE | %%kserve body)",
    "send": "send every row of INPUTS to latest and prev; one row per request",
    "compare": "send INPUTS to latest and prev and compare them",
    "panel": "the interactive release panel of NAME",
    "local": "the embedded local cluster: up | down | status",
    "namespace": "namespace create NAME",
}

EPILOG = """examples:
  %kserve connect local
  %kserve status sklearn-iris
  %kserve canary sklearn-iris --storage-uri gs://kfserving-examples/models/sklearn/1.0/model-2 --percent 10 --dry-run
  %kserve predict sklearn-iris --to latest -d @iris-input.json
  %kserve SUBCOMMAND --help   (options of one subcommand)"""

#: Subcommands that accept a cell body (``%%kserve …``).
CELL_COMMANDS = ("apply", "predict")


class HelpShown(Exception):
    """``--help`` was printed; the dispatcher returns None instead of exiting the kernel."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that never calls ``sys.exit``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: The subcommand parsers by name (filled on the top-level parser only).
        self.subcommands: dict[str, Parser] = {}

    def error(self, message: str) -> NoReturn:
        # One line: the problem, then the usage of the (sub)command it happened in.
        if message.startswith("argument SUBCOMMAND: invalid choice"):
            bad = message.split("invalid choice: ", 1)[1].split(" (choose", 1)[0]
            raise ValidationError(f"unknown subcommand {bad}; use one of {', '.join(SUMMARY)} (see %kserve --help)")
        usage = " ".join(_magic(self.format_usage()).split())
        raise ValidationError(f"{message}; {usage} (see %{self.prog} --help)")

    def print_help(self, file: Any = None) -> None:
        print(_magic(self.format_help()), file=file, end="")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        # Only reached after --help printed itself (errors go through error() above).
        raise HelpShown()


def _magic(text: str) -> str:
    return text.replace(f"usage: {PROG}", f"usage: %{PROG}", 1)


def tokenize(line: str) -> list[str]:
    """Split a magic line like a shell does (quotes group, nothing is expanded)."""
    try:
        return shlex.split(line, posix=True)
    except ValueError as err:  # "No closing quotation"
        raise ValidationError(f"cannot parse the %kserve line: {err}; check the quotes") from None


def _percent(text: str) -> int:
    # argparse shows "invalid _percent value" if this raises ValueError: say it better here.
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"percent must be a whole number from 0 to 100, got {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def _scope() -> Parser:
    # Options every service subcommand takes: where to act, and the safety check on where we are.
    p = Parser(add_help=False)
    p.add_argument("-n", "--namespace", help="namespace of the service (default: the session's)")
    p.add_argument(
        "--context", dest="expect_context", metavar="CONTEXT",
        help="refuse to act unless the session is on this kube context",
    )
    return p


def _release() -> Parser:
    p = Parser(add_help=False)
    p.add_argument("--dry-run", action="store_true", help="show the plan (patch and resulting traffic); change nothing")
    p.add_argument("--no-wait", action="store_true", help="return once applied, without waiting for the split")
    return p


def _model(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument(
        "--storage-uri", required=required, metavar="URI", help="the model: gs://…, s3://…, file://… or a path"
    )
    p.add_argument("--model-format", metavar="F", help="modelFormat.name (default: the current one, or sklearn)")
    p.add_argument(
        "--tag-routing", action=argparse.BooleanOptionalAction, default=None,
        help="add (or with --no-tag-routing remove) the latest-/prev- tag URLs",
    )


def _add(sub: Any, name: str, *parents: Parser) -> Parser:
    # argparse %-formats help strings ("100% to" would break it); descriptions are printed as they are.
    text = SUMMARY[name]
    parser: Parser = sub.add_parser(name, help=text.replace("%", "%%"), description=text, parents=list(parents))
    sub.top.subcommands[name] = parser
    return parser


def build_parser() -> Parser:
    """The whole ``%kserve`` grammar."""
    top = Parser(
        prog=PROG, description="Canary releases of KServe InferenceServices.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
    )
    sub = top.add_subparsers(dest="command", metavar="SUBCOMMAND", parser_class=Parser)
    sub.top = top  # type: ignore[attr-defined]  # so _add can register each subcommand parser
    scope, release = _scope(), _release()

    p = _add(sub, "connect")
    p.add_argument("target", nargs="?", choices=["local"], help="`local`: the embedded local cluster")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("--kubeconfig", metavar="PATH")
    p.add_argument("-n", "--namespace")
    p.add_argument("--state-dir", metavar="DIR", help="state dir of the local cluster")
    p.add_argument("--ingress", metavar="URL", help="base URL of the ingress gateway")

    p = _add(sub, "status", scope)
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("-A", "--all-namespaces", action="store_true")
    p = _add(sub, "pods", scope)
    p.add_argument("name", nargs="?", metavar="NAME")
    for name in ("revisions", "history"):
        _add(sub, name, scope).add_argument("name", metavar="NAME")

    p = _add(sub, "deploy", scope, release)
    p.add_argument("name", metavar="NAME")
    _model(p, required=True)
    p = _add(sub, "canary", scope, release)
    p.add_argument("name", metavar="NAME")
    _model(p, required=True)
    p.add_argument("--percent", required=True, type=_percent, metavar="P", help="canaryTrafficPercent, 0–100")
    p = _add(sub, "traffic", scope, release)
    p.add_argument("name", metavar="NAME")
    p.add_argument("percent", type=_percent, metavar="P", help="canaryTrafficPercent, 0–100")
    for name in ("promote", "rollback"):
        _add(sub, name, scope, release).add_argument("name", metavar="NAME")
    _add(sub, "delete", scope).add_argument("name", metavar="NAME")

    p = _add(sub, "apply")
    p.add_argument("-n", "--namespace", help="namespace for objects that name none")
    p.add_argument("-f", "--filename", metavar="FILE", help="manifest file (line form; the cell form reads the body)")

    p = _add(sub, "predict", scope)
    p.add_argument("name", metavar="NAME")
    p.add_argument("variable", nargs="?", metavar="VARIABLE", help="rows or a payload dict in the user namespace")
    p.add_argument("-d", "--data", metavar="JSON|@FILE", help="the payload as JSON text, or @path of a JSON file")
    _targets(p, default=None)
    for name in ("send", "compare"):
        p = _add(sub, name, scope)
        p.add_argument("name", metavar="NAME")
        p.add_argument("inputs", metavar="INPUTS", help="variable: list of rows, numpy array or DataFrame")
        p.add_argument("--repeat", type=_positive, default=1, metavar="K", help="send the whole set K times")
        p.add_argument("--protocol", choices=["v1", "v2"])
        if name == "send":
            p.add_argument("--to", default="latest,prev", help="comma-separated targets: latest, prev, default")
    _add(sub, "panel", scope).add_argument("name", metavar="NAME")

    p = _add(sub, "local")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--state-dir", metavar="DIR")
    p = _add(sub, "namespace")
    p.add_argument("action", choices=["create"])
    p.add_argument("name", metavar="NAME")
    return top


def _targets(p: argparse.ArgumentParser, default: str | None) -> None:
    p.add_argument("--to", choices=["default", "latest", "prev"], default=default or "default")
    p.add_argument("--protocol", choices=["v1", "v2"], help="inference protocol (default: %%config KServeNb.protocol)")


def parse(parser: Parser, line: str) -> argparse.Namespace:
    """Parse one magic line; a bare ``%kserve`` shows the help.

    The subcommand's own parser runs in intermixed mode, so positionals may follow options as
    they would in a shell (``%kserve predict NAME --to prev rows``); argparse's subparser action
    cannot do that.
    """
    tokens = tokenize(line) or ["--help"]
    if tokens[0] not in parser.subcommands:
        parser.parse_args(tokens[:1])  # --help, or the "unknown subcommand" error
        parser.error("a subcommand is required")
    args = parser.subcommands[tokens[0]].parse_intermixed_args(tokens[1:])
    args.command = tokens[0]
    return args
