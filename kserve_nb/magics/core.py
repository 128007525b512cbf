"""The ``%kserve`` / ``%%kserve`` magic: registration, the owned Session, and dispatch.

Loading must stay cheap (no pandas, plotly, kubernetes or httpx): the parser is built on first use
and every heavy module is imported by the subcommand that needs it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from IPython.core.magic import Magics, line_cell_magic, magics_class

from kserve_nb.config import KServeNb
from kserve_nb.errors import ValidationError

if TYPE_CHECKING:  # pragma: no cover
    from kserve_nb.session import Session

log = logging.getLogger(__name__)


@magics_class
class KServeMagics(Magics):
    """Owns the extension's state: the configurable, the lazily created Session and open panels."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)  # type: ignore[no-untyped-call]  # IPython's Magics is untyped
        # parent=shell: settings from ipython_config.py (c.KServeNb.…) apply too.
        self.settings = KServeNb(parent=shell)
        self._session: Session | None = None
        self._parser: Any = None
        self._panels: list[Any] = []
        #: The Tab completer registered with the shell (see :mod:`kserve_nb.magics.complete`).
        self.matcher: Any = None

    # ------------------------------------------------------------------ session

    @property
    def has_session(self) -> bool:
        return self._session is not None

    @property
    def session(self) -> Session:
        """The Session, created on first use from ``connect()`` defaults and ``%config KServeNb``."""
        if self._session is None:
            from kserve_nb.session import connect

            self._session = connect(config=self.settings)
        return self._session

    def connect(self, **kwargs: Any) -> Session:
        """Replace the Session (closing the old one's clients) and return the new one."""
        from kserve_nb.session import connect

        session = connect(config=self.settings, **kwargs)
        self.close_session()
        self._session = session
        return session

    def close_session(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    @property
    def user_ns(self) -> dict[str, Any]:
        """The notebook's namespace (where INPUTS and VARIABLE names are looked up)."""
        assert self.shell is not None  # registered magics always have their shell
        namespace: dict[str, Any] = self.shell.user_ns
        return namespace

    def evaluate(self, expr: str) -> Any:
        """Evaluate ``expr`` in the notebook's namespace, as a cell would."""
        assert self.shell is not None
        return self.shell.ev(expr)

    def track_panel(self, panel: Any) -> Any:
        """Remember ``panel`` so unloading the extension stops its background work."""
        self._panels = [p for p in self._panels if not getattr(p, "closed", False)] + [panel]
        return panel

    def shutdown(self) -> None:
        """Stop every panel and close the Session (``%unload_ext``)."""
        for panel in self._panels:
            try:
                panel.close()
            except Exception:  # one broken panel must not keep the others (or the session) open
                log.exception("closing a kserve-nb panel failed")
        self._panels.clear()
        self.close_session()

    # ------------------------------------------------------------------ the magic

    @property
    def parser(self) -> Any:
        if self._parser is None:
            from kserve_nb.magics.args import build_parser

            self._parser = build_parser()
        return self._parser

    @line_cell_magic  # type: ignore[untyped-decorator]  # IPython's decorators are untyped
    def kserve(self, line: str, cell: str | None = None) -> Any:
        """Canary releases of KServe InferenceServices: %kserve --help lists the subcommands."""
        from kserve_nb.magics.args import CELL_COMMANDS, HelpShown, parse
        from kserve_nb.magics.commands import COMMANDS

        try:
            args = parse(self.parser, line)
        except HelpShown:
            return None
        if cell is not None and args.command not in CELL_COMMANDS:
            raise ValidationError(
                f"%%kserve {args.command} takes no cell body; only %%kserve apply and %%kserve predict do"
            )
        return COMMANDS[args.command](self, args, cell)


def _magic_doc() -> str:
    """What ``%kserve?`` shows: every subcommand with its summary and an example.

    IPython's inspector asks an object's ``getdoc()`` before its ``__doc__``; answering there keeps
    building the parser out of ``%load_ext``.
    """
    from kserve_nb.magics.args import build_parser, overview

    return overview(build_parser())


KServeMagics.kserve.getdoc = _magic_doc


def load(ipython: Any) -> None:
    """Register the magics and the ``KServeNb`` configurable with ``ipython``."""
    magics = KServeMagics(ipython)
    ipython.register_magics(magics)
    completer = getattr(ipython, "Completer", None)
    if completer is not None:  # a shell without completion (e.g. a bare kernel app) still gets the magic
        from kserve_nb.magics.complete import make_matcher

        magics.matcher = make_matcher(magics)
        completer.custom_matchers.append(magics.matcher)
    # So that `%config KServeNb.namespace = "…"` finds and updates our instance.
    ipython.configurables.append(magics.settings)


def unload(ipython: Any) -> None:
    """Stop panels, close the Session and unregister everything :func:`load` registered."""
    manager = ipython.magics_manager
    magics = manager.registry.pop(KServeMagics.__name__, None)
    for kind in ("line", "cell"):
        manager.magics[kind].pop("kserve", None)
    if magics is None:
        return
    completer = getattr(ipython, "Completer", None)
    if completer is not None and magics.matcher in completer.custom_matchers:
        completer.custom_matchers.remove(magics.matcher)
    magics.shutdown()
    if magics.settings in ipython.configurables:
        ipython.configurables.remove(magics.settings)
