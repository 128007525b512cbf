"""Argument grammar of ``%kserve`` / ``%%kserve``: one argparse parser per subcommand.

argparse is used because it gives ``--help`` text and usage lines for free; what it does on
errors (print to stderr, ``sys.exit(2)``) is wrong inside a kernel, so :class:`Parser` turns
errors into one-line :class:`~kserve_nb.errors.ValidationError` s and ``--help`` into a
:class:`HelpShown` signal the dispatcher swallows.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shlex
from typing import Any, NoReturn

from kserve_nb.errors import ValidationError

# argparse %-formats usage strings, and parse_intermixed_args re-formats an already formatted one,
# so "%kserve" cannot be the prog: the parsers say "kserve" and the magic prefix is added on output.
PROG = "kserve"

#: Subcommands in help order, with their one-line description. A subcommand registered here, in
#: :func:`build_parser` and in ``commands.COMMANDS`` gets help, ``%kserve?`` and completion for free.
SUMMARY: dict[str, str] = {
    "connect": "connect to a cluster: local, or --context/--kubeconfig",
    "status": "the release state of NAME, or the services table",
    "pods": "pods of NAME (or of the namespace)",
    "revisions": "every revision of NAME with its storageUri and traffic",
    "history": "release operations recorded for NAME",
    "deploy": "create NAME, or roll a new model out to 100%",
    "canary": "deploy a new model as a canary with --percent of the traffic",
    "traffic": "set the canary's share of NAME (Knative: canaryTrafficPercent; Standard: its trafficPercent)",
    "promote": "send 100% to the latest ready revision (Standard: the canary becomes the stable)",
    "rollback": "send 100% back to the previously rolled-out revision (Standard: remove the canary)",
    "delete": "delete the InferenceService NAME",
    "apply": "%%kserve apply: create or update objects from a YAML manifest body",
    "predict": "one prediction request (-d @file.json | --data JSON | VARIABLE | %%kserve body)",
    "send": "send every row of INPUTS to latest and prev (Standard: the newest canary and stable)",
    "compare": "send INPUTS to both sides and compare them",
    "rollout": "progressive rollout of a new model: steps, gates judged each interval, automatic rollback",
    "panel": "the interactive release panel of NAME",
    "watch": "live per-revision request rate, errors, latency and traffic weights of NAME",
    "local": "the embedded local cluster: up | down | status",
    "namespace": "namespace create NAME",
}

#: Examples per subcommand, shown at the end of its ``--help`` and in ``%kserve?``. A subcommand
#: without an entry gets one made from its required arguments (see :func:`_derived_example`).
EXAMPLES: dict[str, tuple[str, ...]] = {
    "connect": ("%kserve connect local", "%kserve connect --context prod -n models"),
    "status": ("%kserve status sklearn-iris", "%kserve status -A"),
    "pods": ("%kserve pods sklearn-iris",),
    "revisions": ("%kserve revisions sklearn-iris",),
    "history": ("%kserve history sklearn-iris",),
    "deploy": ("%kserve deploy sklearn-iris --storage-uri gs://kfserving-examples/models/sklearn/1.0/model",),
    "canary": (
        "%kserve canary sklearn-iris --storage-uri gs://kfserving-examples/models/sklearn/1.0/model-2 "
        "--percent 10 --tag-routing --dry-run",
        "%kserve canary sklearn-iris --storage-uri gs://kfserving-examples/models/sklearn/1.0/model-2 "
        "--percent 10 --canary v2   (Standard mode: names the spec.canary entry)",
    ),
    "traffic": ("%kserve traffic sklearn-iris 50", "%kserve traffic sklearn-iris 50 --canary v2   (Standard mode)"),
    "promote": ("%kserve promote sklearn-iris",),
    "rollback": ("%kserve rollback sklearn-iris --dry-run",),
    "delete": ("%kserve delete sklearn-iris",),
    "apply": ("%%kserve apply -n kserve-test   (the cell body is the YAML manifest)", "%kserve apply -f isvc.yaml"),
    "predict": (
        "%kserve predict sklearn-iris --to latest -d @iris-input.json",
        """%kserve predict sklearn-iris --data '{"instances": [[6.8, 2.8, 4.8, 1.4]]}'""",
    ),
    "send": ("results = %kserve send sklearn-iris rows --repeat 3",),
    "compare": ("cmp = %kserve compare sklearn-iris rows",),
    "rollout": (
        "%kserve rollout sklearn-iris --storage-uri gs://kfserving-examples/models/sklearn/1.0/model-2 "
        "--steps 5,10,25,50,100 --interval 30s --gate 'error_rate<=prev+0.01' --gate 'p95<=1.2*prev' --dry-run",
        "%kserve rollout sklearn-iris --approve   (go on from a pause step; --abort rolls back)",
    ),
    "panel": ("%kserve panel sklearn-iris",),
    "watch": ("%kserve watch sklearn-iris --interval 2s --window 5m --duration 10m",),
    "local": ("%kserve local status",),
    "namespace": ("%kserve namespace create kserve-test",),
}

#: Subcommands that accept a cell body (``%%kserve …``).
CELL_COMMANDS = ("apply", "predict")


class Suggested(tuple[str, ...]):
    """Choices that Tab completion offers but argparse does not enforce: an open set.

    ``--to`` takes ``default``/``latest``/``prev`` in both modes and, in Standard mode, ``stable`` or
    any canary's name, which only the live service knows; the façade checks the value.
    """

    def __contains__(self, item: object) -> bool:
        return True


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
        if message.startswith("unrecognized arguments: "):
            message += self._suggest_options(message.removeprefix("unrecognized arguments: ").split())
        usage = " ".join(_magic(self.format_usage()).split())
        raise ValidationError(f"{message}; {usage} (see %{self.prog} --help)")

    def _suggest_options(self, unknown: list[str]) -> str:
        known = [o for o in self._option_string_actions if o.startswith("--")]
        for token in unknown:
            close = closest(token.split("=", 1)[0], known) if token.startswith("--") else None
            if close:
                return f" (did you mean {close}?)"
        return ""

    def format_help(self) -> str:
        if self.subcommands:  # the top level: the same overview as %kserve?
            return overview(self) + "\n"
        return super().format_help()

    def print_help(self, file: Any = None) -> None:
        print(_magic(self.format_help()), file=file, end="")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        # Only reached after --help printed itself (errors go through error() above).
        raise HelpShown()


def _magic(text: str) -> str:
    return text.replace(f"usage: {PROG}", f"usage: %{PROG}", 1)


def strip_comment(line: str) -> str:
    """``line`` without its shell comment: from an unquoted ``#`` that starts a word to the end.

    As in a shell, ``#`` inside quotes or inside a word (``model#2``) is not a comment. shlex's own
    comment handling cannot be used: it also cuts words at a ``#`` in their middle.
    """
    quote: str | None = None
    escaped = False
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif ch == "\\" and quote != "'":
            escaped = True
        elif quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i]
    return line


def tokenize(line: str) -> list[str]:
    """Split a magic line like a shell does (quotes group, ``# …`` is a comment, nothing is expanded)."""
    try:
        return shlex.split(strip_comment(line), posix=True)
    except ValueError as err:  # "No closing quotation"
        raise ValidationError(f"cannot parse the %kserve line: {err}; check the quotes") from None


def closest(word: str, known: list[str]) -> str | None:
    """The known word ``word`` most likely misspells: the longest shared start of 3+ letters, else difflib's."""
    prefix = {k: len(os.path.commonprefix([word, k])) for k in known}
    best = max(known, key=lambda k: prefix[k], default=None)
    if best is not None and prefix[best] >= 3:
        return best
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_subcommand(name: str, known: list[str]) -> ValidationError:
    """``unknown subcommand 'stauts'; did you mean status?`` (or the list when nothing is close)."""
    close = closest(name, known)
    if close:
        return ValidationError(f"unknown subcommand {name!r}; did you mean {close}? (%kserve? lists them all)")
    return ValidationError(f"unknown subcommand {name!r}; use one of {', '.join(known)} (%kserve? lists them all)")


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


def _duration(text: str) -> float:
    """``2``, ``2.5s``, ``500ms``, ``5m``, ``1h`` → seconds (positive), for argparse."""
    from kserve_nb.durations import parse_duration

    try:
        return parse_duration(text)
    except ValidationError as err:  # argparse shows it as "argument --x: …"
        raise argparse.ArgumentTypeError(str(err)) from None


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
    parser: Parser = sub.add_parser(
        name, help=text.replace("%", "%%"), description=text, parents=list(parents),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub.top.subcommands[name] = parser
    return parser


def examples(name: str, parser: argparse.ArgumentParser) -> tuple[str, ...]:
    """The examples of subcommand ``name``: from :data:`EXAMPLES`, else made from its arguments."""
    return EXAMPLES.get(name) or (_derived_example(name, parser),)


#: Sample values for argument metavars, for examples made from a parser.
_SAMPLE = {"NAME": "sklearn-iris", "P": "10", "URI": "gs://kfserving-examples/models/sklearn/1.0/model-2",
           "INPUTS": "rows", "VARIABLE": "payload", "K": "3", "N": "10"}


def _derived_example(name: str, parser: argparse.ArgumentParser) -> str:
    words = [f"%kserve {name}"]
    for action in parser._actions:
        if action.option_strings and not action.required:
            continue
        if isinstance(action, argparse._HelpAction) or action.nargs in ("?", "*"):
            continue
        metavar = str(action.metavar or action.dest.upper())
        value = str(list(action.choices)[0]) if action.choices else _SAMPLE.get(metavar, metavar.lower())
        words.append(f"{action.option_strings[-1]} {value}" if action.option_strings else value)
    return " ".join(words)


def overview(parser: Parser) -> str:
    """Every subcommand with its one-line summary and first example (``%kserve?``, ``%kserve --help``)."""
    width = max(len(n) for n in parser.subcommands)
    lines = [
        "usage: %kserve SUBCOMMAND [ARGS]   (%%kserve apply and %%kserve predict also take a cell body)",
        "",
        "Canary releases of KServe InferenceServices from a notebook.",
        "",
        "subcommands:",
    ]
    for name, sub in parser.subcommands.items():
        lines.append(f"  {name:<{width}}  {sub.description or SUMMARY.get(name, '')}")
        lines.append(f"  {'':<{width}}    e.g. {examples(name, sub)[0]}")
    lines += [
        "",
        "%kserve SUBCOMMAND --help shows the options of one subcommand. A value is returned, so",
        "st = %kserve status NAME keeps it; # starts a comment, as in a shell.",
    ]
    return "\n".join(lines)


def build_parser() -> Parser:
    """The whole ``%kserve`` grammar."""
    top = Parser(
        prog=PROG, description="Canary releases of KServe InferenceServices.",
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
    )
    sub = top.add_subparsers(dest="command", metavar="SUBCOMMAND", parser_class=Parser)
    sub.top = top  # type: ignore[attr-defined]  # so _add can register each subcommand parser
    scope, release = _scope(), _release()

    p = _add(sub, "connect")
    p.add_argument("target", nargs="?", choices=["local"], help="local: the embedded local cluster")
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
    p.add_argument("--percent", required=True, type=_percent, metavar="P", help="the canary's share, 0–100")
    p.add_argument("--canary", metavar="C", help="Standard mode: the canary's name (default: the next free vN)")
    p = _add(sub, "traffic", scope, release)
    p.add_argument("name", metavar="NAME")
    p.add_argument("percent", type=_percent, metavar="P", help="the canary's share, 0–100")
    p.add_argument("--canary", metavar="C", help="Standard mode: which canary (default: the newest)")
    for name, which in (("promote", "the newest"), ("rollback", "every canary")):
        p = _add(sub, name, scope, release)
        p.add_argument("name", metavar="NAME")
        p.add_argument("--canary", metavar="C", help=f"Standard mode: which canary (default: {which})")
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
            p.add_argument(
                "--to", default="latest,prev",
                help="comma-separated targets: latest, prev, default (Standard mode also: stable, a canary's name)",
            )
        else:
            p.add_argument("--canary", metavar="C", help="Standard mode: the canary to compare (default: the newest)")
    p = _add(sub, "rollout", scope)
    p.add_argument("name", metavar="NAME")
    p.add_argument("--storage-uri", metavar="URI", help="the candidate model (to start or resume a rollout)")
    p.add_argument("--steps", default="5,10,25,50,100", help="rising percents, 'pause' waits for --approve")
    p.add_argument("--interval", default="30s", metavar="D", help="how long each step bakes (default 30s)")
    p.add_argument("--gate", action="append", dest="gates", metavar="EXPR",
                   help="e.g. 'error_rate<=prev+0.01', 'p95<=1.2*prev', 'p99<=250ms' (repeatable)")
    p.add_argument("--alpha", type=float, default=0.05, help="false-rollback budget of the whole rollout")
    p.add_argument("--min-requests", type=_positive, default=50, metavar="N", help="candidate requests a step needs")
    p.add_argument("--max-wait", default="5m", metavar="D", help="extra wait for enough requests (default 5m)")
    p.add_argument("--on-inconclusive", choices=["rollback", "pause"], default="rollback")
    p.add_argument("--require-pass", action="store_true", help="advance only when every gate passes")
    p.add_argument("--metrics", choices=["prometheus", "client"], help="where the gates' numbers come from")
    p.add_argument("--load", metavar="INPUTS", help="variable of rows to send as test traffic while it runs")
    p.add_argument("--labels", metavar="Y", help="variable of true labels of --load (enables accuracy gates)")
    p.add_argument("--rate", type=float, default=20.0, help="test requests per second (with --load)")
    p.add_argument("--tag-routing", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--dry-run", action="store_true", help="show the plan, the first patch and the queries")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--approve", action="store_true", help="approve the pause step the rollout waits at")
    action.add_argument("--abort", action="store_true", help="stop the rollout and roll back")
    action.add_argument("--state", action="store_true", help="show the saved state of the rollout")
    _add(sub, "panel", scope).add_argument("name", metavar="NAME")
    p = _add(sub, "watch", scope)
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--interval", type=_duration, default=2.0, metavar="S", help="seconds between refreshes (default 2s)"
    )
    p.add_argument(
        "--window", type=_duration, default=300.0, metavar="W", help="history shown, e.g. 90s, 5m (default 5m)"
    )
    p.add_argument(
        "--duration", type=_duration, default=600.0, metavar="D", help="stop refreshing after D (default 10m)"
    )

    p = _add(sub, "local")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--state-dir", metavar="DIR")
    p = _add(sub, "namespace")
    p.add_argument("action", choices=["create"])
    p.add_argument("name", metavar="NAME")
    _finish(top, sub)
    return top


def _finish(top: Parser, sub: Any) -> None:
    # Every subparser, however it was added, is known to the top level and ends its --help with examples.
    for name, parser in sub.choices.items():
        top.subcommands.setdefault(name, parser)
        lines = examples(name, parser)
        parser.epilog = ("example:\n" if len(lines) == 1 else "examples:\n") + "\n".join(f"  {x}" for x in lines)
        parser.formatter_class = argparse.RawDescriptionHelpFormatter


def _targets(p: argparse.ArgumentParser, default: str | None) -> None:
    p.add_argument(
        "--to", default=default or "default", metavar="TARGET", choices=Suggested(("default", "latest", "prev")),
        help="default, latest or prev (Standard mode: default, stable, latest, prev or a canary's name)",
    )
    p.add_argument("--protocol", choices=["v1", "v2"], help="inference protocol (default: %%config KServeNb.protocol)")


def parse(parser: Parser, line: str) -> argparse.Namespace:
    """Parse one magic line; a bare ``%kserve`` shows the help.

    The subcommand's own parser runs in intermixed mode, so positionals may follow options as
    they would in a shell (``%kserve predict NAME --to prev rows``); argparse's subparser action
    cannot do that.
    """
    tokens = tokenize(line) or ["--help"]
    if tokens[0] not in parser.subcommands:
        if tokens[0] in ("-h", "--help"):
            parser.print_help()
            raise HelpShown()
        if tokens[0].startswith("-"):
            raise ValidationError(f"a subcommand comes first, got {tokens[0]!r}; %kserve? lists them all")
        raise unknown_subcommand(tokens[0], list(parser.subcommands))
    args = parser.subcommands[tokens[0]].parse_intermixed_args(tokens[1:])
    args.command = tokens[0]
    return args
