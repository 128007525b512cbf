"""One look across tables, the panel and figures: side colours, the split bar, and the theme.

Colours of text and surfaces come from JupyterLab's CSS variables (``--jp-ui-font-color1``…), with
fallbacks for frontends without them, so HTML follows the light and dark themes by itself. Plotly
draws its own SVG with literal colours, so figures get a template chosen from the theme instead:
:func:`theme` is what the frontend reported (:func:`set_theme`, called by the panel's theme probe),
else JupyterLab's own theme setting, else light.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

Theme = Literal["light", "dark"]

# prev blue, latest orange, default (the weighted host) green — in every figure and bar.
SIDE_COLORS: dict[str, str] = {"prev": "#4C78A8", "latest": "#F58518", "default": "#54A24B"}

#: Text colours by meaning, as JupyterLab theme variables (fallbacks: GitHub's light palette).
OK = "var(--jp-success-color1, #1a7f37)"
ERROR = "var(--jp-error-color1, #cf222e)"
WARN = "var(--jp-warn-color0, #9a6700)"  # color1 is too light on white for text
MUTED = "var(--jp-ui-font-color2, #57606a)"
TEXT = "var(--jp-ui-font-color1, #1f2328)"


def split_bar_html(traffic: Iterable[Any], width_px: int = 420, latest_percent: int | None = None) -> str:
    """An HTML bar of the traffic split: one cell per entry with percent > 0, labelled by tag.

    ``traffic`` holds objects with ``revision``, ``percent``, ``latest`` and ``tag`` attributes
    (:class:`kserve_nb.status.TrafficEntry`). The bar is at most ``width_px`` wide and shrinks
    with its container.
    """
    cells = "".join(
        f'<div title="{html.escape(e.tag or ("latest" if e.latest else "prev"))} {html.escape(e.revision)} '
        f'{e.percent}%" style="width:{e.percent}%;'
        f'background:{SIDE_COLORS["latest"] if e.latest else SIDE_COLORS["prev"]};color:white;'
        f'font-size:11px;line-height:18px;text-align:center;overflow:hidden;white-space:nowrap">'
        f'{_bar_label(e)}</div>'
        for e in traffic
        if e.percent > 0
    )
    data = "" if latest_percent is None else str(latest_percent)
    return (
        f'<div class="kserve-nb-split" data-latest="{data}" style="display:flex;width:100%;max-width:{width_px}px;'
        f'height:18px;margin:4px 0;background:var(--jp-layout-color3, #eaeef2)">{cells}</div>'
    )


def _bar_label(entry: Any) -> str:
    # A narrow cell shows its percent alone (the tag is in its tooltip) rather than a cut-off word.
    name = entry.tag or ("latest" if entry.latest else "prev")
    return f"{html.escape(name)} {entry.percent}%" if entry.percent >= 20 else f"{entry.percent}%"


# ---------------------------------------------------------------------- the panel's stylesheet

#: Scoped to the panel. Tables look like JupyterLab's rendered tables (no pandas ``border=1`` grid);
#: long URIs wrap instead of being clipped; plotly's SVG text and grid follow the theme even when
#: the user switches theme after the figure was drawn (``!important`` beats plotly's inline styles).
PANEL_CSS = """
.kserve-nb-panel { color: var(--jp-ui-font-color1); font-size: var(--jp-ui-font-size1, 13px);
  max-width: 100%; box-sizing: border-box; }
.kserve-nb-panel .kserve-nb-header, .kserve-nb-panel .kserve-nb-card {
  border: 1px solid var(--jp-border-color2, #d0d7de); border-radius: 4px; padding: 6px 8px;
  background: var(--jp-layout-color1, transparent); }
.kserve-nb-panel code, .kserve-nb-panel .kserve-nb-uri-text {
  font-family: var(--jp-code-font-family, monospace); font-size: 12px; overflow-wrap: anywhere;
  word-break: break-all; color: var(--jp-content-font-color1, inherit); background: none; }
.kserve-nb-panel table { border-collapse: collapse; border: none; border-spacing: 0; font-size: 12px;
  color: var(--jp-ui-font-color1); table-layout: auto; max-width: 100%; margin: 2px 0; }
.kserve-nb-panel th, .kserve-nb-panel td { border: none; padding: 2px 8px 2px 0; text-align: left;
  vertical-align: top; }
.kserve-nb-panel thead th, .kserve-nb-panel tr:first-child th {
  border-bottom: 1px solid var(--jp-border-color1, #8c959f); font-weight: bold; }
.kserve-nb-panel tbody tr:nth-child(odd) { background: var(--jp-rendermime-table-row-background, transparent); }
.kserve-nb-panel tbody tr:hover { background: var(--jp-rendermime-table-row-hover-background, transparent); }
.kserve-nb-panel .kserve-nb-scroll { overflow-x: auto; max-width: 100%; }
.kserve-nb-panel h4 { margin: 4px 0; font-size: 13px; }
.kserve-nb-panel .kserve-nb-stale-note { color: var(--jp-warn-color0, #9a6700); font-weight: bold; }
.kserve-nb-panel .kserve-nb-stale-body { opacity: 0.55; }
.kserve-nb-panel .kserve-nb-feedback { min-height: 20px; line-height: 20px; overflow-wrap: anywhere; }
.kserve-nb-panel .kserve-nb-feedback .kserve-nb-toast { display: inline-block; padding: 1px 6px;
  border-radius: 3px; border-left: 3px solid currentColor; background: var(--jp-layout-color1, transparent); }
/* ipywidgets gives HTML the height of an input row (28 px) per line: wrapped text would sprawl. */
.kserve-nb-panel .widget-html-content { overflow-wrap: anywhere; line-height: 1.45; }
.kserve-nb-panel .kserve-nb-feedback .widget-html-content { padding: 2px 0; }
.kserve-nb-panel .kserve-nb-row { gap: 4px 8px; }
.kserve-nb-panel .kserve-nb-nowrap, .kserve-nb-panel th { white-space: nowrap; }
.kserve-nb-panel .kserve-nb-header code { word-break: normal; }
.kserve-nb-panel .js-plotly-plot .main-svg .bg { fill: transparent !important; }
.kserve-nb-panel .js-plotly-plot .main-svg text:not(.hoverlayer text) {
  fill: var(--jp-ui-font-color1) !important; }
.kserve-nb-panel .js-plotly-plot .main-svg .gridlayer path,
.kserve-nb-panel .js-plotly-plot .main-svg .zerolinelayer path {
  stroke: var(--jp-border-color2) !important; }
"""


def panel_style_html() -> str:
    """The panel's stylesheet as an HTML ``<style>`` element."""
    return f"<style>{PANEL_CSS}</style>"


# ---------------------------------------------------------------------- theme

_reported: Theme | None = None


def set_theme(value: Theme | None) -> None:
    """Record the frontend's theme (``"light"``/``"dark"``; None forgets it)."""
    global _reported
    if value not in (None, "light", "dark"):
        raise ValueError(f"theme must be 'light' or 'dark', got {value!r}")
    _reported = value


def theme() -> Theme:
    """The theme figures are drawn for: reported by the frontend, else JupyterLab's setting, else light."""
    return _reported or lab_theme_setting() or "light"


def lab_theme_setting(settings_dir: Path | None = None) -> Theme | None:
    """The theme in JupyterLab's user settings (``themes.jupyterlab-settings``), if one is set.

    The kernel runs beside the server that wrote the file, so it can read it; a theme following the
    operating system (``adaptive-theme``) is only known in the browser, hence None.
    """
    path = (settings_dir or _settings_dir()) / "@jupyterlab" / "apputils-extension" / "themes.jupyterlab-settings"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    if re.search(r'"adaptive-theme"\s*:\s*true', text):
        return None
    found = re.search(r'"theme"\s*:\s*("(?:[^"\\]|\\.)*")', text)  # JSON5: comments allowed, so no json.loads
    if not found:
        return None
    name = str(json.loads(found.group(1)))
    return "dark" if "dark" in name.lower() else "light"


def _settings_dir() -> Path:
    explicit = os.environ.get("JUPYTERLAB_SETTINGS_DIR")
    if explicit:
        return Path(explicit)
    try:
        from jupyter_core.paths import jupyter_config_dir
    except ImportError:  # pragma: no cover - jupyter_core ships with ipykernel
        return Path.home() / ".jupyter" / "lab" / "user-settings"
    return Path(jupyter_config_dir()) / "lab" / "user-settings"


def plotly_template(which: Theme | None = None) -> Any:
    """The plotly template for ``which`` theme (default: :func:`theme`), on a transparent background.

    ``plotly_white`` or ``plotly_dark`` with see-through paper and plot area, so a figure sits on
    the notebook's own background (JupyterLab's light, dark or any custom shade).
    """
    return _template(which or theme())


@lru_cache(maxsize=2)
def _template(which: Theme) -> Any:
    import plotly.graph_objects as go
    import plotly.io as pio

    template = go.layout.Template(pio.templates["plotly_dark" if which == "dark" else "plotly_white"])
    template.layout.paper_bgcolor = "rgba(0,0,0,0)"
    template.layout.plot_bgcolor = "rgba(0,0,0,0)"
    return template
