"""The release panel: ipywidgets bound to a :class:`~kserve_nb.widgets.controller.PanelController`.

Callbacks only hand work to the controller's worker thread (``controller.submit``) so the kernel
stays responsive; the controller reports back through :meth:`Panel._on_change`, which only sets
widget traits (safe from any thread) and never uses ``with output:`` from a thread.
Stable CSS classes (``kserve-nb-*``) let browser tests and users' CSS find the parts.
"""

from __future__ import annotations

import html
import json
import threading
from typing import TYPE_CHECKING, Any, Mapping

import ipywidgets as w

from kserve_nb.style import split_bar_html
from kserve_nb.widgets.controller import PanelController

if TYPE_CHECKING:  # pragma: no cover
    from kserve_nb.config import KServeNb
    from kserve_nb.service import Service
    from kserve_nb.status import ServiceStatus

LOG_LINES = 12


def _classed(widget: Any, *names: str) -> Any:
    for name in names:
        widget.add_class(name)
    return widget


def _button(label: str, css: str, style: str = "", tooltip: str = "") -> w.Button:
    return _classed(w.Button(description=label, button_style=style, tooltip=tooltip or label), css)


def _user_ns() -> Mapping[str, Any]:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return {}
    shell = get_ipython()
    return shell.user_ns if shell is not None else {}


class Panel(w.VBox):
    """Interactive canary release of one InferenceService.

    Parameters
    ----------
    service:
        The service (``session.service("sklearn-iris")``).
    config:
        Settings (``max_step``, ``confirm_above``); default: the session's ``%config KServeNb``.
    user_ns:
        Where DataFrame inputs for test traffic are found; default: the notebook's namespace.
    poll_interval:
        Seconds between status refreshes (default: 1 s on the local cluster, more on real ones);
        ``0`` disables polling.

    Examples
    --------
    >>> panel = Panel(session.service("sklearn-iris"))   # doctest: +SKIP
    >>> panel.controller.request_traffic(20)             # doctest: +SKIP
    """

    def __init__(
        self,
        service: Service,
        *,
        config: KServeNb | None = None,
        user_ns: Mapping[str, Any] | None = None,
        poll_interval: float | None = None,
    ) -> None:
        self.controller = PanelController(service, config, user_ns=user_ns if user_ns is not None else _user_ns())
        self.closed = False
        self._quiet = threading.local()  # set while *we* move the slider, so it is not a user request
        self._slider_jobs = 0  # slider moves queued or running on the worker
        self._slider_lock = threading.Lock()
        self._build()
        super().__init__(children=self._layout())
        self.add_class("kserve-nb-panel")
        self.controller.observe(self._on_change)
        self.controller.refresh()
        self._render_all()
        if poll_interval != 0:
            self.controller.start_polling(poll_interval)

    # ------------------------------------------------------------------ construction

    def _build(self) -> None:
        self.header = _classed(w.HTML(), "kserve-nb-header")
        self.slider = _classed(
            w.IntSlider(value=0, min=0, max=100, step=1, description="canary %", continuous_update=False,
                        style={"description_width": "70px"}, layout=w.Layout(width="420px")),
            "kserve-nb-slider",
        )
        self.promote_button = _button("Promote", "kserve-nb-promote", "success", "100% to the latest ready revision")
        self.rollback_button = _button("Roll back", "kserve-nb-rollback", "danger", "100% to the previous revision")
        self.confirm_text = _classed(w.HTML(), "kserve-nb-confirm-text")
        self.confirm_button = _button("Confirm", "kserve-nb-confirm", "warning")
        self.cancel_button = _button("Cancel", "kserve-nb-cancel")
        self.confirm_row = _classed(
            w.HBox([self.confirm_text, self.confirm_button, self.cancel_button], layout=w.Layout(display="none")),
            "kserve-nb-confirm-row",
        )
        self.uri = _classed(w.Text(placeholder="gs://bucket/model", description="storageUri",
                                   layout=w.Layout(width="460px")), "kserve-nb-uri")
        self.percent = _classed(w.IntText(value=10, description="percent", layout=w.Layout(width="150px")),
                                "kserve-nb-percent")
        self.tag_routing = _classed(
            w.Checkbox(value=False, description="tag routing", indent=False), "kserve-nb-tag-routing"
        )
        self.preview_button = _button("Preview", "kserve-nb-preview", "info", "dry run: show the plan, change nothing")
        self.deploy_button = _button("Deploy", "kserve-nb-deploy", "primary")
        self.plan_html = _classed(w.HTML(), "kserve-nb-plan")
        self.n_rows = _classed(w.BoundedIntText(value=20, min=1, max=10_000, description="n",
                                                layout=w.Layout(width="140px")), "kserve-nb-n")
        self.source = _classed(w.Dropdown(options=self.controller.input_sources(), description="inputs"),
                               "kserve-nb-source")
        self.send_button = _button("Send", "kserve-nb-send", "primary", "send n rows to latest and prev")
        self.summary_html = _classed(w.HTML(), "kserve-nb-summary")
        self.figures = _classed(w.Output(), "kserve-nb-figures")
        self.log_html = _classed(w.HTML(), "kserve-nb-log")
        self.status_line = _classed(w.HTML(), "kserve-nb-status")
        self._bind()

    def _layout(self) -> list[Any]:
        def section(title: str) -> w.HTML:
            return w.HTML(f"<b>{html.escape(title)}</b>")

        return [
            self.header,
            w.HBox([self.slider, self.promote_button, self.rollback_button]),
            self.confirm_row,
            section("Deploy a new model"),
            w.HBox([self.uri, self.percent, self.tag_routing]),
            w.HBox([self.preview_button, self.deploy_button]),
            self.plan_html,
            section("Test traffic"),
            w.HBox([self.n_rows, self.source, self.send_button]),
            self.summary_html,
            self.figures,
            section("Log"),
            self.log_html,
            self.status_line,
        ]

    def _bind(self) -> None:
        c = self.controller
        self.slider.observe(self._on_slider, names="value")
        self.promote_button.on_click(lambda _: c.submit("promote"))
        self.rollback_button.on_click(lambda _: c.submit("rollback"))
        self.confirm_button.on_click(lambda _: c.submit("confirm"))
        self.cancel_button.on_click(lambda _: c.submit("cancel"))
        self.preview_button.on_click(
            lambda _: c.submit("preview_deploy", self.uri.value.strip(), self.percent.value, self.tag_routing.value)
        )
        self.deploy_button.on_click(
            lambda _: c.submit("deploy", self.uri.value.strip(), self.percent.value, self.tag_routing.value)
        )
        self.send_button.on_click(self._on_send)

    # ------------------------------------------------------------------ user → controller

    def _on_slider(self, change: Mapping[str, Any]) -> None:
        # continuous_update=False: this fires once per release (or key press), never per pixel.
        if getattr(self._quiet, "active", False):
            return
        with self._slider_lock:
            self._slider_jobs += 1
        future = self.controller.submit_traffic(int(change["new"]))
        future.add_done_callback(self._slider_done)

    def _slider_done(self, _: Any) -> None:
        with self._slider_lock:
            self._slider_jobs -= 1
        self._render_slider()

    def _on_send(self, _: Any) -> None:
        self.source.options = self.controller.input_sources()  # new DataFrames since the panel opened
        self.controller.submit("send_test", self.n_rows.value, self.source.value)

    # ------------------------------------------------------------------ controller → widgets

    def _on_change(self, what: str) -> None:
        render = {
            "status": self._render_status,
            "revision_uris": self._render_header,
            "pending": self._render_pending,
            "log": self._render_log,
            "error": self._render_statusline,
            "busy": self._render_statusline,
            "plan": self._render_plan,
            "comparison": self._render_comparison,
            "results": self._render_results,
        }.get(what)
        if render is not None:
            render()

    def _render_all(self) -> None:
        self._render_status()
        self._render_pending()
        self._render_log()
        self._render_statusline()
        st = self.controller.status
        self.tag_routing.value = bool(st and st.tag_routing)
        if st is not None and st.storage_uri:
            self.uri.value = st.storage_uri

    def _render_status(self) -> None:
        self._render_header()
        self._render_slider()

    def _render_header(self) -> None:
        self.header.value = header_html(self.controller)

    def _render_slider(self) -> None:
        c = self.controller
        live = c.live_percent
        self.slider.disabled = live is None
        # Leave the slider where the user put it while their move is queued or awaits Confirm.
        waiting = c.pending is not None and c.pending.action == "traffic"
        if live is None or waiting or self._slider_jobs > 0 or self.slider.value == live:
            return
        self._quiet.active = True
        try:
            self.slider.value = live
        finally:
            self._quiet.active = False

    def _render_pending(self) -> None:
        pending = self.controller.pending
        self.confirm_text.value = f"<b>{html.escape(pending.message)}</b>" if pending else ""
        self.confirm_row.layout.display = "flex" if pending else "none"
        if pending is None:
            self._render_slider()  # a cancelled move: back to the live value

    def _render_log(self) -> None:
        lines = self.controller.log[-LOG_LINES:]
        body = "\n".join(
            f'<span style="color:{"#1f2328" if e.ok else "#cf222e"}">{html.escape(str(e))}</span>' for e in lines
        )
        self.log_html.value = f'<pre style="margin:0;font-size:12px;line-height:1.3">{body}</pre>'

    def _render_statusline(self) -> None:
        c = self.controller
        if c.error:
            text, color = f"⚠ {c.error}", "#cf222e"
        elif c.busy:
            text, color = f"⏳ {c.busy}…", "#9a6700"
        else:
            text, color = "✔ ready", "#1a7f37"
        self.status_line.value = f'<div style="color:{color}">{html.escape(text)}</div>'
        self._render_slider()  # a refused move snaps back

    def _render_plan(self) -> None:
        plan = self.controller.plan
        self.plan_html.value = plan._repr_html_() if plan is not None else ""

    def _render_comparison(self) -> None:
        comparison = self.controller.comparison
        self.summary_html.value = comparison._repr_html_() if hasattr(comparison, "_repr_html_") else ""
        self.figures.outputs = tuple(figure_output(f) for f in comparison.figures().values())

    def _render_results(self) -> None:
        frame = self.controller.results
        self.figures.outputs = ()
        self.summary_html.value = frame.head(20).to_html(index=False) if frame is not None else ""

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stop background work, then close the widgets."""
        if self.closed:
            return
        self.closed = True
        self.controller.stop()
        for child in _descendants(self):
            child.close()
        super().close()


def figure_output(figure: Any) -> dict[str, Any]:
    """A plotly figure as one Output entry, ready for ``Output.outputs``.

    Not ``Output.append_display_data(figure)``: plotly figures display themselves through
    ``_ipython_display_``, so IPython's formatter returns an empty bundle for them. The JSON
    round trip turns numpy arrays into lists the widget protocol can carry.
    """
    import plotly.io as pio

    return {
        "output_type": "display_data",
        "data": {
            "application/vnd.plotly.v1+json": json.loads(pio.to_json(figure)),
            "text/plain": f"<plotly figure: {figure.layout.title.text or ''}>",
        },
        "metadata": {},
    }


def _descendants(widget: Any) -> list[Any]:
    out = []
    for child in getattr(widget, "children", ()):
        out.extend(_descendants(child))
        out.append(child)
    return out


# ---------------------------------------------------------------------- header


def header_html(c: PanelController) -> str:
    """The panel header: where we are, READY, URL, both revisions with their models, the split."""
    svc, session = c.service, c.service.session
    kind = "local cluster" if session.is_local else "cluster"
    banner = f"{kind} · context {session.context or '(in-cluster)'} · {svc.namespace}/{svc.name}"
    st = c.status
    if st is None:
        state = "does not exist yet: deploy a model below" if c.exists is False else "status unknown"
        return f'<div class="kserve-nb-banner">{html.escape(banner)}</div><div>{html.escape(state)}</div>'
    ready = st.ready or "?"
    color = {"True": "#1a7f37", "False": "#cf222e"}.get(ready, "#9a6700")
    sides = (("latest", st.latest_revision, st.latest_percent), ("prev", st.prev_revision, st.prev_percent))
    rows = "".join(
        _revision_row(role, rev, pct, c.revision_uris.get(rev or "", "")) for role, rev, pct in sides if rev
    )
    failure = f'<div style="color:#cf222e">{html.escape(st.failure)}</div>' if st.failure else ""
    return (
        f'<div class="kserve-nb-banner" style="font-size:12px;color:#57606a">{html.escape(banner)}</div>'
        f'<div><span class="kserve-nb-ready" style="color:{color};font-weight:bold">READY {html.escape(ready)}</span> '
        f'<code class="kserve-nb-url">{html.escape(st.url or "")}</code></div>'
        f'<table style="font-size:12px">{rows}</table>{_split_bar(st)}{failure}'
    )


def _revision_row(role: str, revision: str | None, percent: int | None, uri: str) -> str:
    return (
        f"<tr><td><b>{role}</b></td><td><code>{html.escape(revision or '')}</code></td>"
        f"<td><code>{html.escape(uri)}</code></td><td>{'' if percent is None else f'{percent}%'}</td></tr>"
    )


def _split_bar(st: ServiceStatus) -> str:
    return split_bar_html(st.traffic, latest_percent=st.latest_percent)
