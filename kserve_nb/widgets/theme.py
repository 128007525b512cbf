"""What theme the browser shows: a tiny invisible widget that reports JupyterLab's light/dark theme.

Plotly draws figures with literal colours, so the kernel must know the theme to pick a template
(:func:`kserve_nb.style.plotly_template`). JupyterLab marks its theme on ``<body>``
(``data-jp-theme-light``); the probe reads it when shown and again whenever the user switches theme,
and syncs it to :attr:`ThemeProbe.theme`. It is an ``anywidget`` (a dependency, for plotly's
FigureWidget too); should it be missing, :func:`theme_probe` returns None and the kernel falls back to
JupyterLab's settings file (:func:`kserve_nb.style.lab_theme_setting`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_ESM = """
function render({ model, el }) {
  el.style.display = "none";
  const body = document.body;
  const sync = () => {
    const light = body.dataset.jpThemeLight;
    const theme = light === "false" ? "dark" : light === "true" ? "light" : "";
    if (theme && model.get("theme") !== theme) { model.set("theme", theme); model.save_changes(); }
  };
  sync();
  const watcher = new MutationObserver(sync);
  watcher.observe(body, { attributes: true, attributeFilter: ["data-jp-theme-light"] });
  return () => watcher.disconnect();
}
export default { render };
"""


def theme_probe(on_change: Callable[[str], None]) -> Any:
    """An invisible widget calling ``on_change("light" | "dark")`` as the frontend reports its theme.

    Returns None when anywidget is not installed.
    """
    try:
        import anywidget
        import traitlets
    except ImportError:
        log.debug("anywidget is not installed: figures follow JupyterLab's theme setting only")
        return None

    class ThemeProbe(anywidget.AnyWidget):
        """Reports ``document.body.dataset.jpThemeLight`` as ``theme`` ("light", "dark" or "")."""

        _esm = _ESM
        theme = traitlets.Unicode("").tag(sync=True)

    probe = ThemeProbe()
    probe.add_class("kserve-nb-theme-probe")
    probe.layout.display = "none"

    def changed(change: dict[str, Any]) -> None:
        if change["new"]:
            on_change(change["new"])

    probe.observe(changed, names="theme")
    return probe
