"""Progress of a wait: one live line in a notebook, log lines elsewhere."""

from __future__ import annotations

import html
import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)


def in_kernel() -> bool:
    """True inside a Jupyter kernel (not a plain IPython terminal or a script)."""
    try:
        from IPython import get_ipython
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
        self._handle: Any = None
        self._last = ""
        if enabled if enabled is not None else in_kernel():
            from IPython.display import HTML, display

            self._handle = display(HTML(self._html("starting…")), display_id=True)

    def _html(self, text: str, done: bool = False) -> str:
        icon = "✔" if done else "⏳"
        elapsed = time.monotonic() - self.start
        return (
            f'<div class="kserve-nb-progress" style="font-family:monospace">{icon} '
            f"<b>{html.escape(self.title)}</b>: {html.escape(text)} "
            f'<span style="color:#6e7781">({elapsed:.1f}s)</span></div>'
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

    def done(self, text: str) -> None:
        """Show the final state."""
        self._last = text
        if self._handle is not None:
            from IPython.display import HTML

            self._handle.update(HTML(self._html(text, done=True)))
        else:
            log.info("%s: %s", self.title, text)
