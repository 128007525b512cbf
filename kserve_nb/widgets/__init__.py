"""The release panel: ``Panel(service)`` or ``%kserve panel NAME``.

:class:`~kserve_nb.widgets.controller.PanelController` holds the state and actions (no ipywidgets);
:class:`~kserve_nb.widgets.view.Panel` binds widgets to it. More tabs: ``panel.add_tab(title, widget)``
on one panel, or :func:`~kserve_nb.widgets.view.register_tab` for every new panel. Every panel gets
the *Rollout* tab (the autopilot: preview, start, approve, abort) and the *Live* tab (per-revision
rate, errors, latency and weights, refreshed only while shown).
"""

from __future__ import annotations

from kserve_nb.widgets.controller import PanelController
from kserve_nb.widgets.live import LiveMetrics, live_tab
from kserve_nb.widgets.rollout_tab import RolloutTab, rollout_tab
from kserve_nb.widgets.view import TAB_BUILDERS, Panel, register_tab

register_tab(rollout_tab)
register_tab(live_tab)

__all__ = ["TAB_BUILDERS", "LiveMetrics", "Panel", "PanelController", "RolloutTab", "register_tab"]
