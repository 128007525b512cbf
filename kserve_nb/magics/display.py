"""Small presentational values the magics return when the façade returns nothing to show."""

from __future__ import annotations

import html
import json
from typing import Any

from kserve_nb.errors import ValidationError


class Note(str):
    """A one-line result (``namespace/x created``) that displays without quotes.

    It is a ``str`` so ``x = %kserve namespace create x`` still gives something usable.
    """

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return f'<pre class="kserve-nb-note">{html.escape(str(self))}</pre>'


class Banner:
    """Where a mutating magic is about to act: cluster, context, namespace and service.

    Shown before every change so that a re-run runbook makes its target obvious.
    """

    def __init__(self, session: Any, namespace: str, name: str | None) -> None:
        target = f"{namespace}/{name}" if name else f"namespace {namespace}"
        self.text = f"kserve-nb → {session.where} · {target}"
        self.local = bool(session.is_local)

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        color = "#1a7f37" if self.local else "#9a6700"
        return (
            f'<div class="kserve-nb-banner" style="border-left:4px solid {color};padding:1px 8px;'
            f'font-size:12px">{html.escape(self.text)}</div>'
        )


def load_json(text: str, source: str) -> Any:
    """Parse JSON; a syntax error becomes one line with its line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValidationError(
            f"malformed JSON in {source} at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from None
