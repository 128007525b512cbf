"""Progress of a wait: one live line in a notebook, log lines elsewhere."""

from __future__ import annotations

import html
import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

#: Final icon and colour per outcome: ✔ only for success, so a failed step never looks done.
#: Colours are JupyterLab's theme variables (with fallbacks for other frontends).
_OUTCOMES: dict[bool | None, tuple[str, str]] = {
    True: ("✔", "var(--jp-success-color1, #1a7f37)"),
    False: ("✘", "var(--jp-error-color1, #cf222e)"),
    None: ("⏹", "var(--jp-warn-color1, #9a6700)"),
}


def in_kernel() -> bool:
    """True inside a Jupyter kernel (not a plain IPython terminal or a script)."""
    try:
        from IPython.core.getipython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    # Off the kernel thread (a panel's worker) a display would land in whatever cell runs now.
    on_main = threading.current_thread() is threading.main_thread()
    return on_main and shell is not None and getattr(shell, "kernel", None) is not None


class Progress:
    """A single updating status line: an IPython display handle in a kernel, logging otherwise."""

    def __init__(self, title: str, enabled: bool | None = None) -> None:
        self.title = title
        self.start = time.monotonic()
        self.outcome: bool | None = None
        self._handle: Any = None
        self._last = ""
        if enabled if enabled is not None else in_kernel():
            from IPython.display import HTML, display

            self._handle = display(HTML(self._html("starting…")), display_id=True)

    def _html(self, text: str, final: bool = False, ok: bool | None = True) -> str:
        icon, color = _OUTCOMES[ok] if final else ("⏳", "inherit")
        elapsed = time.monotonic() - self.start
        return (
            f'<div class="kserve-nb-progress" data-outcome="{_outcome_name(ok) if final else "running"}" '
            f'style="font-family:var(--jp-code-font-family, monospace)">'
            f'<span style="color:{color}">{icon}</span> '
            f"<b>{html.escape(self.title)}</b>: {html.escape(text)} "
            f'<span style="color:var(--jp-ui-font-color2, #6e7781)">({elapsed:.1f}s)</span></div>'
        )

    def update(self, text: str) -> None:
        """Show ``text`` as the current state (repeats are skipped)."""
        if text == self._last:
            return
        self._last = text
        if self._handle is not None:
            from IPython.display import HTML

            self._handle.update(HTML(self._html(text)))
        else:
            log.info("%s: %s", self.title, text)

    def done(self, text: str, ok: bool | None = True) -> None:
        """Show the final state: ``ok`` True (✔), False for a failure (✘), None when stopped early (⏹)."""
        self._last = text
        self.outcome = ok
        if self._handle is not None:
            from IPython.display import HTML

            self._handle.update(HTML(self._html(text, final=True, ok=ok)))
        else:  # the caller raises or returns the outcome itself: a log line, not a second message
            log.info("%s %s: %s", self.title, _outcome_name(ok), text)


def _outcome_name(ok: bool | None) -> str:
    return {True: "done", False: "failed", None: "stopped"}[ok]
