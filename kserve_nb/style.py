"""One look across tables, the panel and figures: side colours and the traffic split bar."""

from __future__ import annotations

import html
from typing import Any, Iterable

# prev blue, latest orange, default (the weighted host) green — in every figure and bar.
SIDE_COLORS: dict[str, str] = {"prev": "#4C78A8", "latest": "#F58518", "default": "#54A24B"}


def split_bar_html(traffic: Iterable[Any], width_px: int = 420, latest_percent: int | None = None) -> str:
    """An HTML bar of the traffic split: one cell per entry with percent > 0, labelled by tag.

    ``traffic`` holds objects with ``revision``, ``percent``, ``latest`` and ``tag`` attributes
    (:class:`kserve_nb.status.TrafficEntry`).
    """
    cells = "".join(
        f'<div title="{html.escape(e.revision)} {e.percent}%" style="width:{e.percent}%;'
        f'background:{SIDE_COLORS["latest"] if e.latest else SIDE_COLORS["prev"]};color:white;'
        f'font-size:11px;line-height:18px;text-align:center;overflow:hidden;white-space:nowrap">'
        f'{html.escape(e.tag or ("latest" if e.latest else "prev"))} {e.percent}%</div>'
        for e in traffic
        if e.percent > 0
    )
    data = "" if latest_percent is None else str(latest_percent)
    return (
        f'<div class="kserve-nb-split" data-latest="{data}" style="display:flex;width:{width_px}px;'
        f'height:18px;margin:4px 0;background:#eaeef2">{cells}</div>'
    )
