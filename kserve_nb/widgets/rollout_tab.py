"""The release panel's "Rollout" tab: the autopilot with buttons.

Preview shows the plan as a picture with the first patch and the resolved queries (nothing
applied); Start runs :meth:`Service.rollout` on a worker thread while the iris sample (or nothing)
is sent as test traffic, and the tab shows the step picture, the gate values and the timeline as
they change; Approve goes on from a ``pause`` step; Abort rolls back. Feedback sits on the line
beside the buttons. Closing the panel stops supervising: the rollout holds at its step and says so
in ``%kserve status``; running it again resumes it.

:class:`RolloutRunner` holds the state and the work (no ipywidgets); :class:`RolloutTab` binds it.
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from kserve_nb import errors

if TYPE_CHECKING:  # pragma: no cover
    from kserve_nb.rollout.state import RolloutState
    from kserve_nb.service import Service

log = logging.getLogger(__name__)

#: What the tab shows for each kind of notice.
_COLORS = {"ok": "var(--jp-success-color1, #1a7f37)", "error": "var(--jp-error-color1, #cf222e)",
           "busy": "var(--jp-ui-font-color2, #6e7781)"}


class RolloutRunner:
    """Runs one rollout at a time off the calling thread and reports every change to a listener.

    ``listener(kind, text, html)``: ``kind`` is ``"busy"``, ``"ok"`` or ``"error"``; ``text`` the
    one-line notice; ``html`` the rollout's picture (or "" to keep the last).
    """

    def __init__(self, service: Service, listener: Callable[[str, str, str], None]) -> None:
        self.service = service
        self.listener = listener
        self.cancel = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether a rollout is being supervised from here."""
        return self._thread is not None and self._thread.is_alive()

    def preview(self, uri: str, options: dict[str, Any]) -> None:
        """The dry run: the plan, the first patch, the queries."""
        try:
            preview = self.service.rollout(uri, dry_run=True, **options)
        except errors.KServeNbError as err:
            self.listener("error", str(err), "")
            return
        self.listener("ok", "preview of the rollout — nothing applied", preview._repr_html_())

    def start(self, uri: str, options: dict[str, Any]) -> None:
        """Start (or resume) the rollout on a worker thread."""
        if self.running:
            self.listener("error", "a rollout is already running from this panel; abort it or wait", "")
            return
        self.cancel = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(uri, options), name=f"kserve-nb-rollout-{self.service.name}", daemon=True
        )
        self.listener("busy", f"starting the rollout of {uri}…", "")
        self._thread.start()

    def _run(self, uri: str, options: dict[str, Any]) -> None:
        from kserve_nb.rollout.runner import rollout_html

        def update(state: RolloutState, evidence: Sequence[Any]) -> None:
            self.listener("busy", state.summary(), rollout_html(state.plan, state, evidence))

        try:
            result = self.service.rollout(uri, cancel=self.cancel, display=False, on_update=update, **options)
        except errors.KServeNbError as err:
            self.listener("error", str(err), "")
            return
        except Exception as err:  # a worker thread: never lose the reason
            log.exception("rollout of %s failed", uri)
            self.listener("error", f"{type(err).__name__}: {err}", "")
            return
        kind = "ok" if result.ok else ("busy" if result.state.live else "error")
        self.listener(kind, result.summary(), result._repr_html_())

    def approve(self) -> None:
        """Approve the pause step the rollout waits at."""
        try:
            state = self.service.approve_rollout()
        except errors.KServeNbError as err:
            self.listener("error", str(err), "")
            return
        self.listener("busy", f"approved step {state.step + 1}; the rollout goes on", "")

    def abort(self) -> None:
        """Abort the rollout (its supervisor rolls back, or this does when none is left)."""
        try:
            state = self.service.abort_rollout()
        except errors.KServeNbError as err:
            self.listener("error", str(err), "")
            return
        self.listener("error", state.summary(), state._repr_html_())

    def stop(self, timeout: float = 5.0) -> None:
        """Stop supervising (the rollout holds at its step), e.g. when the panel closes."""
        self.cancel.set()
        if self._thread is not None:
            self._thread.join(timeout)


class RolloutTab(w.VBox):  # type: ignore[misc]  # ipywidgets ships no type information
    """The "Rollout" tab of one service's panel."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.uri = w.Text(placeholder="candidate storageUri, e.g. gs://…/model-2", description="model",
                          layout=w.Layout(width="100%"))
        self.steps = w.Text(value="10,50,100", description="steps", layout=w.Layout(width="260px"))
        self.interval = w.Text(value="30s", description="bake", layout=w.Layout(width="160px"))
        self.gates = w.Textarea(value="error_rate<=prev+0.01\np95<=1.2*prev", description="gates",
                                layout=w.Layout(width="100%", height="54px"))
        self.traffic = w.Checkbox(value=True, description="send iris test traffic", indent=False)
        self.rate = w.BoundedFloatText(value=20.0, min=1.0, max=1000.0, step=5.0, description="req/s",
                                       layout=w.Layout(width="160px"))
        self.preview_button = w.Button(description="Preview", tooltip="the plan, the first patch, the queries")
        self.start_button = w.Button(description="Start", button_style="primary",
                                     tooltip="run the rollout; a failed gate rolls back by itself")
        self.approve_button = w.Button(description="Approve", tooltip="go on from a pause step")
        self.abort_button = w.Button(description="Abort", button_style="danger", tooltip="stop and roll back")
        self.feedback = w.HTML()
        self.feedback.add_class("kserve-nb-feedback-rollout")
        self.view = w.HTML()
        self.view.add_class("kserve-nb-rollout-view")
        buttons = w.HBox([self.preview_button, self.start_button, self.approve_button, self.abort_button],
                         layout=w.Layout(flex_flow="row wrap"))
        super().__init__([
            self.uri, w.HBox([self.steps, self.interval], layout=w.Layout(flex_flow="row wrap")), self.gates,
            w.HBox([self.traffic, self.rate], layout=w.Layout(flex_flow="row wrap")),
            buttons, self.feedback, self.view,
        ])
        self.add_class("kserve-nb-rollout-tab")
        self.runner = RolloutRunner(service, self._show)
        self.preview_button.on_click(lambda _: self._background(self.runner.preview, self.uri.value, self.options()))
        self.start_button.on_click(lambda _: self.runner.start(self.uri.value, self.options()))
        self.approve_button.on_click(lambda _: self._background(self.runner.approve))
        self.abort_button.on_click(lambda _: self._background(self.runner.abort))
        state = service.rollout_state() if service.exists() else None
        if state is not None:  # what the cluster says about the last rollout, at once
            self.view.value = state._repr_html_()
            if state.live:
                self.uri.value = state.plan.storage_uri

    def options(self) -> dict[str, Any]:
        """The form as ``Service.rollout`` options."""
        gates = [g.strip() for g in self.gates.value.replace(";", "\n").splitlines() if g.strip()]
        opts: dict[str, Any] = {"steps": self.steps.value, "interval": self.interval.value, "gates": gates}
        if self.traffic.value:
            from kserve_nb.runbook import labelled_inputs

            rows, labels = labelled_inputs()
            opts.update(load=rows, y=labels, rate=float(self.rate.value))
        return opts

    def _background(self, fn: Callable[..., None], *args: Any) -> None:
        # Button callbacks run on the kernel thread: cluster calls go to a worker.
        self._show("busy", "working…", "")
        threading.Thread(target=fn, args=args, daemon=True).start()

    def _show(self, kind: str, text: str, picture: str) -> None:
        color = _COLORS.get(kind, _COLORS["busy"])
        self.feedback.value = (
            f'<div class="kserve-nb-notice" data-kind="{kind}" style="color:{color}">{html.escape(text)}</div>'
        )
        if picture:
            self.view.value = picture

    def close(self) -> None:
        """Stop supervising (the rollout holds, visibly) and close the widgets."""
        self.runner.stop(timeout=2.0)
        super().close()


def rollout_tab(panel: Any) -> tuple[str, RolloutTab]:
    """A "Rollout" tab for the release panel (``register_tab(rollout_tab)``)."""
    return "Rollout", RolloutTab(panel.controller.service)
