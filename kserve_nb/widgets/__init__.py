"""The release panel: ``Panel(service)`` or ``%kserve panel NAME``.

:class:`~kserve_nb.widgets.controller.PanelController` holds the state and actions (no ipywidgets);
:class:`~kserve_nb.widgets.view.Panel` binds widgets to it.
"""

from __future__ import annotations

from kserve_nb.widgets.controller import PanelController
from kserve_nb.widgets.view import Panel

__all__ = ["Panel", "PanelController"]
