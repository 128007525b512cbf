"""The one way a traffic split is written as text: ``90% …-00001 + 10% …-00002``.

Pure: history entries, progress lines, plans, the panel, runbooks and the demo all call
:func:`split_text`, so a split reads the same wherever it is shown.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def split_text(
    shares: Mapping[str, int] | Iterable[tuple[str, int]],
    *,
    empty: str = "no traffic",
    biggest_first: bool = False,
) -> str:
    """``90% A + 10% B`` from ``{label: percent}`` or ``(label, percent)`` pairs, in their order.

    A label is usually a revision name, optionally with what to say about it (``rev [prev]``,
    ``rev (gs://…)``). ``biggest_first`` orders by share (ties by label); ``empty`` is the text
    for no shares at all.
    """
    items = list(shares.items()) if isinstance(shares, Mapping) else list(shares)
    if biggest_first:
        items.sort(key=lambda kv: (-kv[1], kv[0]))
    return " + ".join(f"{pct}% {label}" for label, pct in items) or empty
