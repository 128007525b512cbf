"""The release panel: ``Panel(service)`` or ``%kserve panel NAME``.

:class:`~kserve_nb.widgets.controller.PanelController` holds the state and actions (no ipywidgets);
:class:`~kserve_nb.widgets.view.Panel` binds widgets to it. More tabs: ``panel.add_tab(title, widget)``
on one panel, or :func:`~kserve_nb.widgets.view.register_tab` for every new panel.
"""

from __future__ import annotations

from kserve_nb.widgets.controller import PanelController
from kserve_nb.widgets.view import TAB_BUILDERS, Panel, register_tab

__all__ = ["TAB_BUILDERS", "Panel", "PanelController", "register_tab"]
