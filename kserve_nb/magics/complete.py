"""Tab completion for ``%kserve``: subcommands, the chosen subcommand's options and choices, and the
InferenceService names of the namespace the line acts on.

Everything is read from the argparse grammar (:func:`kserve_nb.magics.args.build_parser`), so a new
subcommand completes as soon as it is registered there. Service names come from the cluster: they
are fetched on a worker thread and kept for a few seconds, and completion waits for them only
briefly, so a slow or unreachable cluster never freezes the notebook's Tab key.
"""

from __future__ import annotations

import argparse
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from kserve_nb.magics.core import KServeMagics

log = logging.getLogger(__name__)

CACHE_SECONDS = 5.0  # services appear and disappear during a release; a few seconds is fresh enough
WAIT_SECONDS = 0.25  # how long one Tab press may wait for the cluster before answering without names

# `%kserve …`, `%%kserve …` (first line of a cell) and `x = %kserve …`: the text after the magic name.
_MAGIC = re.compile(r"(?:^|[\s=(])%{1,2}kserve\s+(?P<rest>.*)$")
_VARIABLE_METAVARS = ("INPUTS", "VARIABLE")


class ServiceNames:
    """InferenceService names per namespace, refreshed off the caller's thread."""

    def __init__(self, magics: KServeMagics) -> None:
        self._magics = magics
        self._lock = threading.Lock()
        self._names: dict[str, tuple[float, list[str]]] = {}
        self._fetching: dict[str, threading.Thread] = {}

    def get(self, namespace: str | None) -> list[str]:
        """Names in ``namespace`` (the session's when None); [] when not connected or not known yet."""
        if not self._magics.has_session:
            return []
        session = self._magics.session
        ns = namespace or session.namespace
        with self._lock:
            cached = self._names.get(ns)
            if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
                return cached[1]
            worker = self._fetching.get(ns)
            if worker is None:
                worker = threading.Thread(
                    target=self._fetch, args=(session, ns), name="kserve-nb-complete", daemon=True
                )
                self._fetching[ns] = worker
                worker.start()
        worker.join(WAIT_SECONDS)
        with self._lock:
            cached = self._names.get(ns)
        return cached[1] if cached is not None else []

    def _fetch(self, session: Any, namespace: str) -> None:
        try:
            names = sorted(str(i["metadata"]["name"]) for i in session.cluster.list_isvc(namespace))
        except Exception as err:  # noqa: BLE001 - completion must never raise: no names is the answer
            log.debug("listing services for completion failed: %s", err)
            names = []
        with self._lock:
            self._names[namespace] = (time.monotonic(), names)
            self._fetching.pop(namespace, None)


def candidates(
    parser: Any, rest: str, services: Callable[[str | None], list[str]], variables: Callable[[], list[str]]
) -> list[str] | None:
    """What may come next after ``%kserve `` + ``rest``; None when this is not for us to say (paths, URIs)."""
    words = rest.split()
    current = "" if not rest or rest[-1].isspace() else words.pop()
    subcommands: dict[str, argparse.ArgumentParser] = parser.subcommands
    if not words:
        return [name for name in subcommands if name.startswith(current)]
    sub = subcommands.get(words[0])
    if sub is None:
        return []
    options = {s: a for a in sub._actions for s in a.option_strings}
    args = words[1:]
    previous = options.get(args[-1]) if args else None
    if previous is not None and previous.nargs != 0:  # completing an option's value
        return _matching(previous.choices, current) if previous.choices else None
    if current.startswith("-"):
        used = {w for w in args if w in options}
        return sorted(s for s in options if s.startswith(current) and s not in used and s.startswith("--")) or sorted(
            s for s in options if s.startswith(current) and s not in used
        )
    positional = _positional_at(sub, args, options)
    if positional is None:
        return []
    if positional.choices:
        return _matching(positional.choices, current)
    if positional.metavar == "NAME" and "--namespace" in options:
        return [n for n in services(_namespace(args, options)) if n.startswith(current)]
    if positional.metavar in _VARIABLE_METAVARS:
        return [v for v in variables() if v.startswith(current)]
    return None


def _matching(choices: Any, current: str) -> list[str]:
    return [str(c) for c in choices if str(c).startswith(current)]


def _positional_at(
    sub: argparse.ArgumentParser, args: list[str], options: dict[str, argparse.Action]
) -> argparse.Action | None:
    """The positional argument the next word fills, skipping options and their values."""
    positionals = [a for a in sub._actions if not a.option_strings]
    count, skip = 0, False
    for word in args:
        if skip:
            skip = False
        elif word in options:
            skip = options[word].nargs != 0
        elif not word.startswith("-"):
            count += 1
    return positionals[count] if count < len(positionals) else None


def _namespace(args: list[str], options: dict[str, argparse.Action]) -> str | None:
    for flag, value in zip(args, args[1:]):
        if flag in options and options[flag].dest == "namespace":
            return value
    return None


def make_matcher(magics: KServeMagics) -> Callable[[Any], Any]:
    """An IPython completion matcher (API v2) for ``%kserve`` lines, bound to ``magics``."""
    from IPython.core.completer import SimpleCompletion, context_matcher

    names = ServiceNames(magics)

    def variables() -> list[str]:
        return sorted(k for k in magics.user_ns if not k.startswith("_") and k.isidentifier())

    def kserve_matcher(context: Any) -> dict[str, Any]:
        found = _MAGIC.search(context.text_until_cursor)
        if found is None:
            return {"completions": [], "suppress": False}
        try:
            words = candidates(magics.parser, found["rest"], names.get, variables)
        except Exception as err:  # noqa: BLE001 - a completion bug must never surface as an error in the notebook
            log.debug("%%kserve completion failed: %s", err)
            words = None
        rest = found["rest"]
        current = "" if not rest or rest[-1].isspace() else rest.split()[-1]
        if words is None or current != context.token:
            # A path, URI or JSON value (or a token IPython split differently): leave it to the others.
            return {"completions": [], "suppress": False}
        return {"completions": [SimpleCompletion(w, type="kserve") for w in words], "suppress": True}

    matcher: Callable[[Any], Any] = context_matcher()(kserve_matcher)
    return matcher
