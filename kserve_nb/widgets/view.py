"""The release panel: ipywidgets bound to a :class:`~kserve_nb.widgets.controller.PanelController`.

Layout, top to bottom: the header (where, READY, which model serves each side, failed revisions,
the split bar); the release row (traffic slider, Promote, Roll back) with its feedback line right
under it; then tabs — *Deploy* (storageUri, percent, Preview/Deploy, its feedback, the plan),
*Test* (inputs, Send, its feedback, the comparison and its figures) and *Log*. Every action's
notice lands in the feedback line of the area whose control caused it (:data:`~kserve_nb.widgets.
controller.AREAS`), with Confirm/Cancel there too, so the answer is where the user is looking.

More tabs: :meth:`Panel.add_tab` on one panel, or :func:`register_tab` for every new panel (e.g. a
live-metrics or rollout view); a tab is any widget, and is closed with the panel.

Callbacks only hand work to the controller's worker thread (``controller.submit``) so the kernel
stays responsive; the controller reports back through :meth:`Panel._on_change`, which only sets
widget traits (safe from any thread) and never uses ``with output:`` from a thread.
Stable CSS classes (``kserve-nb-*``) let browser tests and users' CSS find the parts.
"""

from __future__ import annotations

import html
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from kserve_nb import style
from kserve_nb.widgets.controller import Notice, PanelController, RevisionInfo, panel_split_text
from kserve_nb.widgets.theme import theme_probe

if TYPE_CHECKING:  # pragma: no cover
    from kserve_nb.config import KServeNb
    from kserve_nb.service import Service

log = logging.getLogger(__name__)

LOG_LINES = 30
#: Figures of a comparison the panel shows, in order (the split figure only when there is a split).
FIGURES = ("predictions", "latency", "agreement", "split")
FIGURE_HEIGHT = 360

#: Builds an extra tab for a new panel: ``(title, widget)``, or None to add nothing.
TabBuilder = Callable[["Panel"], "tuple[str, Any] | None"]
#: Tab builders run for every new :class:`Panel`, in order, after its own tabs (see :func:`register_tab`).
TAB_BUILDERS: list[TabBuilder] = []


def register_tab(builder: TabBuilder) -> TabBuilder:
    """Add a tab to every panel created from now on; usable as a decorator.

    ``builder(panel)`` returns ``(title, widget)`` or None; ``panel.controller`` has the service and
    its live state (``controller.observe`` to follow it). A builder that raises is logged in the
    panel's log, and the panel opens without that tab.

    Examples
    --------
    >>> @register_tab                                         # doctest: +SKIP
    ... def live(panel):
    ...     return "Live", LiveMetrics(panel.controller.service)
    """
    if builder not in TAB_BUILDERS:
        TAB_BUILDERS.append(builder)
    return builder


def _classed(widget: Any, *names: str) -> Any:
    for name in names:
        widget.add_class(name)
    return widget


def _button(label: str, css: str, style_: str = "", tooltip: str = "") -> w.Button:
    return _classed(w.Button(description=label, button_style=style_, tooltip=tooltip or label,
                             layout=w.Layout(width="auto", min_width="90px")), css)


def _row(*children: Any, css: str = "") -> w.HBox:
    box = w.HBox(list(children), layout=w.Layout(flex_flow="row wrap", align_items="center"))
    return _classed(box, "kserve-nb-row", *([css] if css else []))


def _user_ns() -> Mapping[str, Any]:
    try:
        from IPython.core.getipython import get_ipython
    except ImportError:  # pragma: no cover
        return {}
    shell = get_ipython()
    return shell.user_ns if shell is not None else {}


class Feedback(w.VBox):  # type: ignore[misc]  # ipywidgets ships no type information
    """The feedback of one area of the panel: its latest notice and, when asked, Confirm/Cancel."""

    def __init__(self, area: str) -> None:
        self.area = area
        self.line = _classed(w.HTML(), "kserve-nb-feedback", f"kserve-nb-feedback-{area}")
        self.confirm_text = _classed(w.HTML(), "kserve-nb-confirm-text")
        self.confirm_button = _button("Confirm", "kserve-nb-confirm", "warning")
        self.cancel_button = _button("Cancel", "kserve-nb-cancel")
        self.confirm_row = _classed(
            _row(self.confirm_text, self.confirm_button, self.cancel_button), "kserve-nb-confirm-row"
        )
        self.confirm_row.layout.display = "none"
        super().__init__([self.line, self.confirm_row])
        self.add_class(f"kserve-nb-area-{area}")

    def show(self, notice: Notice | None) -> None:
        # A question is asked once, in the confirm row beside its buttons, not repeated above them.
        self.line.value = notice_html(notice) if notice is not None and notice.level != "confirm" else ""

    def ask(self, message: str | None) -> None:
        self.confirm_text.value = f"<b>{html.escape(message)}</b>" if message else ""
        self.confirm_row.layout.display = "flex" if message else "none"


class Panel(w.VBox):  # type: ignore[misc]  # ipywidgets ships no type information
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
    >>> panel.add_tab("Notes", ipywidgets.Textarea())    # doctest: +SKIP
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
        self._add_registered_tabs()
        if poll_interval != 0:
            self.controller.start_polling(poll_interval)

    # ------------------------------------------------------------------ construction

    def _build(self) -> None:
        self.css = w.HTML(style.panel_style_html(), layout=w.Layout(display="none"))
        self.probe = theme_probe(self._on_theme)
        self.header = _classed(w.HTML(), "kserve-nb-header")
        self.slider = _classed(
            w.IntSlider(value=0, min=0, max=100, step=1, description="canary %", continuous_update=False,
                        style={"description_width": "initial"},
                        layout=w.Layout(width="auto", flex="1 1 280px", max_width="460px")),
            "kserve-nb-slider",
        )
        self.promote_button = _button("Promote", "kserve-nb-promote", "success", "100% to the latest ready revision")
        self.rollback_button = _button("Roll back", "kserve-nb-rollback", "danger", "100% to the previous revision")
        self.feedback = {area: Feedback(area) for area in ("release", "deploy", "test")}
        self.uri = _classed(
            w.Text(value="", placeholder="storageUri of the new model, e.g. gs://bucket/models/v2",
                   description="storageUri", style={"description_width": "initial"},
                   layout=w.Layout(width="100%", max_width="640px")),
            "kserve-nb-uri",
        )
        self.percent = _classed(
            # continuous_update: the kernel has the typed value even if Deploy is clicked before the box blurs.
            w.BoundedIntText(value=10, min=0, max=100, description="percent", style={"description_width": "initial"},
                             continuous_update=True, layout=w.Layout(width="140px")),
            "kserve-nb-percent",
        )
        self.tag_routing = _classed(
            w.Checkbox(value=False, description="tag routing", indent=False, layout=w.Layout(width="auto")),
            "kserve-nb-tag-routing",
        )
        self.preview_button = _button("Preview", "kserve-nb-preview", "info", "dry run: show the plan, change nothing")
        self.deploy_button = _button("Deploy", "kserve-nb-deploy", "primary",
                                     "deploy the model as a canary with this percent")
        self.plan_html = _classed(w.HTML(), "kserve-nb-plan")
        self.n_rows = _classed(w.BoundedIntText(value=20, min=1, max=10_000, description="n", continuous_update=True,
                                                style={"description_width": "initial"},
                                                layout=w.Layout(width="110px")), "kserve-nb-n")
        self.source = _classed(w.Dropdown(options=self.controller.input_sources(), description="inputs",
                                          style={"description_width": "initial"}, layout=w.Layout(width="240px")),
                               "kserve-nb-source")
        self.send_button = _button("Send", "kserve-nb-send", "primary", "send n rows to both sides and compare")
        self.summary_html = _classed(w.HTML(), "kserve-nb-summary")
        self.figures = _classed(
            w.GridBox([], layout=w.Layout(grid_template_columns="repeat(auto-fit, minmax(420px, 1fr))",
                                          grid_gap="4px", width="100%")),
            "kserve-nb-figures",
        )
        self.log_html = _classed(w.HTML(layout=w.Layout(max_height="260px", overflow="auto")), "kserve-nb-log")
        self.tabs = _classed(w.Tab(layout=w.Layout(width="100%")), "kserve-nb-tabs")
        self._bind()

    def _layout(self) -> list[Any]:
        deploy = w.VBox([
            self.uri,
            _row(self.percent, self.tag_routing, self.preview_button, self.deploy_button),
            self.feedback["deploy"],
            self.plan_html,
        ])
        test = w.VBox([_row(self.n_rows, self.source, self.send_button), self.feedback["test"],
                       self.summary_html, self.figures])
        self.tabs.children = (deploy, test, w.VBox([self.log_html]))
        self.tabs.titles = ("Deploy", "Test", "Log")
        children = [self.css, self.header, _row(self.slider, self.promote_button, self.rollback_button,
                                                 css="kserve-nb-release"),
                    self.feedback["release"], self.tabs]
        if self.probe is not None:
            children.insert(1, self.probe)
        return children

    def _bind(self) -> None:
        c = self.controller
        self.slider.observe(self._on_slider, names="value")
        self.promote_button.on_click(lambda _: c.submit("promote"))
        self.rollback_button.on_click(lambda _: c.submit("rollback"))
        for fb in self.feedback.values():
            fb.confirm_button.on_click(lambda _: c.submit("confirm"))
            fb.cancel_button.on_click(lambda _: c.submit("cancel"))
        self.preview_button.on_click(
            lambda _: c.submit("preview_deploy", self.uri.value, self.percent.value, self.tag_routing.value)
        )
        self.deploy_button.on_click(
            lambda _: c.submit("deploy", self.uri.value, self.percent.value, self.tag_routing.value)
        )
        self.send_button.on_click(self._on_send)

    # ------------------------------------------------------------------ tabs

    def add_tab(self, title: str, widget: Any, *, select: bool = False) -> int:
        """Add ``widget`` as a tab titled ``title`` (after the others); returns its index.

        The widget is closed with the panel (give it a ``close()`` that stops its own threads).
        """
        self.tabs.children = (*self.tabs.children, widget)
        self.tabs.titles = (*self.tabs.titles[: len(self.tabs.children) - 1], title)
        index = len(self.tabs.children) - 1
        if select:
            self.tabs.selected_index = index
        return index

    def select_tab(self, title: str) -> None:
        """Show the tab titled ``title``."""
        self.tabs.selected_index = list(self.tabs.titles).index(title)

    def _add_registered_tabs(self) -> None:
        for builder in list(TAB_BUILDERS):
            name = getattr(builder, "__name__", repr(builder))
            try:
                built = builder(self)
            except Exception as err:  # one broken extension must not take the panel down
                log.exception("panel tab builder %s failed", name)
                self.controller._record("tab", f"{name} failed: {type(err).__name__}: {err}", ok=False)
                continue
            if built is not None:
                self.add_tab(*built)

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

    def _on_theme(self, theme: str) -> None:
        style.set_theme("dark" if theme == "dark" else "light")
        if self.controller.comparison is not None:
            self._render_figures()  # plotly colours are baked in: draw again with the new template

    # ------------------------------------------------------------------ controller → widgets

    def _on_change(self, what: str) -> None:
        render = {
            "status": self._render_status,
            "revisions": self._render_header,
            "pending": self._render_pending,
            "log": self._render_log,
            "notice": self._render_notice,
            "busy": self._render_buttons,
            "plan": self._render_plan,
            "comparison": self._render_comparison,
        }.get(what)
        if render is not None:
            render()

    def _render_all(self) -> None:
        self._render_status()
        self._render_pending()
        self._render_log()
        st = self.controller.status
        self.tag_routing.value = bool(st and st.tag_routing)
        # The deploy box stays empty: pre-filling the serving model would make "Deploy" a silent
        # no-op at best, and at worst send the canary's share back to an older model.

    def _render_status(self) -> None:
        self._render_header()
        self._render_slider()
        self._render_buttons()
        self._render_plan()  # staleness follows the live status
        if self.controller.comparison is not None:
            self._render_summary()

    def _render_header(self) -> None:
        self.header.value = header_html(self.controller)

    def _render_buttons(self) -> None:
        c = self.controller
        busy = c.busy is not None
        for button, blocker, what in (
            (self.promote_button, c.promote_blocker(), "100% to the latest ready revision"),
            (self.rollback_button, c.rollback_blocker(), "100% back to the previous revision"),
        ):
            button.disabled = busy or blocker is not None
            button.tooltip = blocker or (f"busy: {c.busy}…" if busy else what)
        self.slider.disabled = c.traffic_blocker() is not None

    def _render_slider(self) -> None:
        c = self.controller
        live = c.live_percent
        self.slider.disabled = c.traffic_blocker() is not None
        # Leave the slider where the user put it while their move is queued or awaits Confirm.
        waiting = c.pending is not None and c.pending.action == "traffic"
        if live is None or waiting or self._slider_jobs > 0 or self.slider.value == live:
            return
        self._quiet.active = True
        try:
            self.slider.value = live
        finally:
            self._quiet.active = False

    def _render_notice(self) -> None:
        notice = self.controller.notice
        if notice is None:
            return
        if notice.area == "service":
            self._render_header()
            return
        self.feedback[notice.area].show(notice)
        if notice.level in ("refused", "error"):
            self._render_slider()  # a refused or failed move snaps back
        if notice.level != "busy" and notice.area in ("deploy", "test"):
            self.select_tab("Deploy" if notice.area == "deploy" else "Test")

    def _render_pending(self) -> None:
        pending = self.controller.pending
        for area, fb in self.feedback.items():
            fb.ask(pending.message if pending is not None and pending.area == area else None)
        if pending is None:
            self._render_slider()  # a cancelled move: back to the live value

    @property
    def confirm_button(self) -> w.Button:
        """The Confirm button showing now (of the area whose action waits), else the release area's."""
        return self._asking().confirm_button

    @property
    def cancel_button(self) -> w.Button:
        """The Cancel button beside :attr:`confirm_button`."""
        return self._asking().cancel_button

    def _asking(self) -> Feedback:
        pending = self.controller.pending
        return self.feedback.get(pending.area if pending else "release", self.feedback["release"])

    def _render_log(self) -> None:
        lines = self.controller.log[-LOG_LINES:]
        body = "\n".join(
            f'<span style="color:{style.TEXT if e.ok else style.ERROR}">{html.escape(str(e))}</span>'
            for e in reversed(lines)  # newest first: the log tab opens on the latest action
        )
        self.log_html.value = (
            f'<pre style="margin:0;font-size:12px;line-height:1.35;white-space:pre-wrap;'
            f'overflow-wrap:anywhere;background:none">{body or "nothing yet"}</pre>'
        )

    def _render_plan(self) -> None:
        c = self.controller
        plan = c.plan
        if plan is None:
            self.plan_html.value = ""
            return
        stale = c.plan_stale
        note = f'<div class="kserve-nb-stale-note">⚠ {html.escape(stale)}</div>' if stale else ""
        body = plan_html(plan)
        self.plan_html.value = note + (f'<div class="kserve-nb-stale-body">{body}</div>' if stale else body)

    def _render_comparison(self) -> None:
        self._render_summary()
        self._render_figures()

    def _render_summary(self) -> None:
        c = self.controller
        if c.comparison is None:
            self.summary_html.value = ""
            return
        stale = c.comparison_stale
        note = f'<div class="kserve-nb-stale-note">⚠ {html.escape(stale)}</div>' if stale else ""
        body = comparison_html(c.comparison, c.comparison_basis.text if c.comparison_basis else None)
        self.summary_html.value = note + (f'<div class="kserve-nb-stale-body">{body}</div>' if stale else body)
        self.figures.layout.opacity = "0.55" if stale else "1"

    def _render_figures(self) -> None:
        comparison = self.controller.comparison
        if comparison is None:
            self.figures.children = ()
            return
        figures = comparison.figures()
        shown = [name for name in FIGURES if name in figures and self._worth_drawing(name, comparison)]
        outs = []
        for name in shown:
            figure = figures[name]
            # Legend under the plot: beside it, long "target · revision" names squeeze the plot.
            # Plotly never wraps a title: break the long ones after their first colon, or they are cut off.
            title = str(figure.layout.title.text or "")
            if len(title) > 48 and ": " in title:
                figure.update_layout(title_text=title.replace(": ", "<br>", 1))
            figure.update_layout(height=FIGURE_HEIGHT, margin=dict(l=50, r=10, t=56, b=10), title_font_size=12,
                                 legend=dict(font_size=10, orientation="h", yanchor="top", y=-0.18, x=0,
                                             title_text=""))
            out = _classed(w.Output(layout=w.Layout(min_width="0")), f"kserve-nb-figure-{name}")
            out.outputs = (figure_output(figure),)
            outs.append(out)
        old = self.figures.children
        self.figures.children = tuple(outs)
        for out in old:
            out.close()

    def _worth_drawing(self, name: str, comparison: Any) -> bool:
        if name != "split":
            return True
        # The split figure compares observed with configured shares: only with a split to compare.
        basis = self.controller.comparison_basis
        split = getattr(comparison, "split", None)
        serving = [p for _, p in basis.split if p > 0] if basis else []
        observed = split is not None and len(split) and int(split["observed_n"].sum()) > 0
        return len(serving) > 1 and bool(observed)

    # ------------------------------------------------------------------ static view

    def snapshot_html(self) -> str:
        """The panel's current state as static HTML (for readers without the live widget)."""
        c = self.controller
        notices = "".join(
            f"<div>{fb.line.value}</div>" for fb in self.feedback.values() if fb.line.value
        )
        pending = f"<div><b>waiting for Confirm:</b> {html.escape(c.pending.message)}</div>" if c.pending else ""
        plan = f"<h4>Plan (dry run)</h4>{plan_html(c.plan)}" if c.plan is not None else ""
        comparison = ""
        if c.comparison is not None:
            stale = c.comparison_stale
            comparison = (
                "<h4>Test traffic</h4>"
                + (f"<div><b>⚠ {html.escape(stale)}</b></div>" if stale else "")
                + comparison_html(c.comparison, c.comparison_basis.text if c.comparison_basis else None)
            )
        recent = "".join(f"<li>{html.escape(str(e))}</li>" for e in reversed(c.log[-8:]))
        log_part = f"<h4>Log (newest first)</h4><ul style='margin:0'>{recent}</ul>" if recent else ""
        return (
            '<div class="kserve-nb-panel-snapshot" style="border:1px solid #8c959f;padding:6px;max-width:820px">'
            "<div><i>Release panel — a static view of its state when this output was saved; "
            "run the notebook (trusted, with a kernel) for the live panel.</i></div>"
            f"{header_html(c)}{notices}{pending}{plan}{comparison}{log_part}</div>"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        # A frontend without the live widget (GitHub, nbviewer, an untrusted notebook in JupyterLab)
        # picks the static HTML; JupyterLab with a kernel prefers the widget view.
        if isinstance(bundle, dict):
            bundle["text/html"] = self.snapshot_html()
        return bundle

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Stop background work, then close the widgets (added tabs included)."""
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


# ---------------------------------------------------------------------- HTML pieces

# Glyphs every common UI font has (DejaVu, too): emoji fonts are missing on many Linux desktops.
_ICONS = {"busy": "◌", "ok": "✔", "error": "✘", "refused": "⊘", "confirm": "?", "info": "ℹ"}
_COLORS = {"busy": style.WARN, "ok": style.OK, "error": style.ERROR, "refused": style.ERROR,
           "confirm": style.WARN, "info": style.TEXT}


def notice_html(notice: Notice) -> str:
    """One notice as a line: coloured icon and edge, time, text (in colour for outcomes only)."""
    color = _COLORS[notice.level]
    text_color = color if notice.level in ("ok", "error", "refused") else style.TEXT
    return (
        f'<span class="kserve-nb-toast" data-level="{notice.level}" style="color:{color}">'
        f"<b>{_ICONS[notice.level]}</b> <span style=\"color:{style.MUTED}\">{notice.time}</span> "
        f'<span style="color:{text_color}">{html.escape(notice.text)}</span></span>'
    )


def header_html(c: PanelController) -> str:
    """The panel header: where we are, READY, URL, the model serving each side, failed revisions, the split."""
    svc, session = c.service, c.service.session
    kind = "local cluster" if session.is_local else "cluster"
    banner = f"{kind} · context {session.context or '(in-cluster)'} · {svc.namespace}/{svc.name}"
    read_error = c.notice if c.notice is not None and c.notice.area == "service" and c.notice.level == "error" else None
    problem = f"<div>{notice_html(read_error)}</div>" if read_error and c.error else ""
    head = f'<div class="kserve-nb-banner" style="font-size:12px;color:{style.MUTED}">{html.escape(banner)}</div>'
    st = c.status
    if st is None:
        state = "does not exist yet: deploy a model in the Deploy tab" if c.exists is False else "status unknown"
        return f"{head}<div class=\"kserve-nb-state\">{html.escape(state)}</div>{problem}"
    cond = st.condition("Ready")
    ready = cond.status if cond is not None else "Unknown"
    color = {"True": style.OK, "False": style.ERROR}.get(ready, style.WARN)
    if st.standard:
        return head + _standard_header(st, ready, color) + problem
    rows = [_side_row(c, role, rev, pct) for role, rev, pct in (
        ("latest", st.latest_revision, st.latest_percent), ("prev", st.prev_revision, st.prev_percent)
    ) if rev]
    shown = {st.latest_revision, st.prev_revision}
    created = c.revisions.get(st.latest_created_revision or "")
    if created is not None and created.name not in shown and not created.failed:
        rows.append(_info_row("starting", created, "not ready yet: no traffic"))
        shown.add(created.name)
    failed = "".join(_failed_line(info) for info in c.failed_revisions[:3] if info.name not in shown)
    table = (
        '<table class="kserve-nb-serving"><thead><tr><th>side</th><th>revision</th><th>model (storageUri)</th>'
        f"<th>traffic</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    return (
        f"{head}<div><span class=\"kserve-nb-ready\" style=\"color:{color};font-weight:bold\">READY {ready}</span> "
        f'<code class="kserve-nb-url">{html.escape(st.url or "")}</code></div>'
        f"{table}{failed}{style.split_bar_html(st.traffic, latest_percent=st.latest_percent)}{problem}"
    )


def _standard_header(st: Any, ready: str, color: str) -> str:
    """Standard mode: no revisions — each side's Deployment, model and the share the route sends it
    (a canary not ready yet is said so: its configured share stays with the stable)."""
    newest = st.newest_canary
    rows = []
    for side in st.sides:
        role = "prev" if side.role == "stable" else "latest"  # the palette: stable blue, canaries orange
        serving = bool(side.routed)
        if side.routed is not None:
            share = f"{side.routed}%" + ("" if serving else " (no traffic)")
        else:
            share = f"0% — not ready yet ({side.percent}% configured)"
        warn = "" if side.ready else f' style="color:{style.WARN}"'
        rows.append(
            f'<tr class="kserve-nb-side kserve-nb-side-{html.escape(side.name)}" data-serving="{str(serving).lower()}">'
            f'<td class="kserve-nb-nowrap"><span style="display:inline-block;width:9px;height:9px;margin-right:4px;'
            f'background:{style.SIDE_COLORS[role]}"></span><b>{html.escape(side.name)}</b></td>'
            f"<td><code>{html.escape(side.deployment)}</code></td>"
            f'<td><code class="kserve-nb-model">{html.escape(side.storage_uri or "")}</code></td>'
            f'<td class="kserve-nb-nowrap"{warn}>{html.escape(share)}</td></tr>'
        )
    table = (
        '<table class="kserve-nb-serving"><thead><tr><th>side</th><th>Deployment</th><th>model (storageUri)</th>'
        f"<th>traffic</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    return (
        f"<div><span class=\"kserve-nb-ready\" style=\"color:{color};font-weight:bold\">READY {ready}</span> "
        f'<code class="kserve-nb-url">{html.escape(st.url or "")}</code> '
        f'<span style="color:{style.MUTED}">Standard mode</span></div>'
        f"{table}{style.split_bar_html(st.traffic, latest_percent=newest.routed if newest else None)}"
    )


def _failed_line(info: RevisionInfo) -> str:
    # One line each (the reason's words, the model and message one click away): a failure that
    # grew the header by a paragraph pushed the Deploy box's own feedback off a 900 px screen.
    color = style.ERROR
    detail = html.escape(info.message or "")
    return (
        f'<details class="kserve-nb-side kserve-nb-failed"><summary><b style="color:{color}">failed</b> '
        f"<code>{html.escape(info.name)}</code> — "
        f'<span class="kserve-nb-failed-reason" style="color:{color}">{html.escape(info.reason or "failed")}</span>'
        f'</summary><div><code class="kserve-nb-model">{html.escape(info.storage_uri)}</code></div>'
        f'<div style="color:{color}">{detail}</div></details>'
    )


def _side_row(c: PanelController, role: str, revision: str, percent: int | None) -> str:
    uri = c.revision_uris.get(revision, "")
    pct = "" if percent is None else f"{percent}%"
    serving = bool(percent)
    side_color = style.SIDE_COLORS.get(role, style.TEXT)
    return (
        f'<tr class="kserve-nb-side kserve-nb-side-{role}" data-serving="{str(serving).lower()}">'
        # The side's colour on a swatch, the word in the text colour: orange text fails contrast on white.
        f'<td class="kserve-nb-nowrap"><span style="display:inline-block;width:9px;height:9px;margin-right:4px;'
        f'background:{side_color}"></span><b>{role}</b></td><td><code>{html.escape(revision)}</code></td>'
        f'<td><code class="kserve-nb-model">{html.escape(uri)}</code></td>'
        f"<td class=\"kserve-nb-nowrap\">{pct}{'' if serving else ' (no traffic)'}</td></tr>"
    )


def _info_row(role: str, info: RevisionInfo, detail: str) -> str:
    # A revision still starting: its model, and why it has no traffic yet, on a row of its own
    # across the table so a long message never squeezes the columns.
    color = style.WARN
    return (
        f'<tr class="kserve-nb-side kserve-nb-{role}">'
        f'<td class="kserve-nb-nowrap"><b style="color:{color}">{role}</b></td>'
        f"<td><code>{html.escape(info.name)}</code></td>"
        f'<td><code class="kserve-nb-model">{html.escape(info.storage_uri)}</code></td><td>0%</td></tr>'
        f'<tr class="kserve-nb-{role}-reason"><td></td>'
        f'<td colspan="3" style="color:{color}">{html.escape(detail)}</td></tr>'
    )


def plan_html(plan: Any) -> str:
    """A dry-run plan, compactly: what changes, the patch, and the traffic before → after."""
    if plan.standard:
        return _standard_plan_html(plan)
    before, after = plan.before.split(), plan.after.split()
    revs = sorted(set(before) | set(after), key=lambda rv: -_number(rv))
    rows = "".join(
        f"<tr><td><code>{html.escape(rv)}</code></td><td>{before.get(rv, '–') if rv in before else '–'}"
        f"{'%' if rv in before else ''}</td><td>{after.get(rv, 0)}%</td></tr>"
        for rv in revs
    )
    new = f"new revision <code>{html.escape(plan.new_revision)}</code>" if plan.new_revision else "no new revision"
    canary = plan.after.canary_traffic_percent
    pct = f" with {canary}%" if canary is not None else ""
    patch = html.escape(json.dumps(plan.patch, sort_keys=True))
    return (
        f"<div class=\"kserve-nb-plan-body\"><div><b>Dry run of {html.escape(plan.action)}</b> "
        f"<code class=\"kserve-nb-plan-uri\">{html.escape(plan.after.storage_uri or '')}</code>{pct}: {new}; "
        f"nothing is applied until Deploy.</div>"
        f"<table><thead><tr><th>revision</th><th>traffic now</th><th>after</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        f"<details><summary>patch</summary><code>{patch}</code></details></div>"
    )


def _standard_plan_html(plan: Any) -> str:
    before = {s.deployment: s for s in plan.before.sides}
    after = {s.deployment: s for s in plan.after.sides}
    rows = "".join(
        f"<tr><td>{html.escape((after.get(d) or before[d]).name)}</td><td><code>{html.escape(d)}</code></td>"
        f"<td>{_routed(before.get(d))}</td><td>{_routed(after.get(d))}</td></tr>"
        for d in [*before, *(d for d in after if d not in before)]
    )
    made = ", ".join(plan.new_deployments)
    new = f"new Deployment <code>{html.escape(made)}</code>" if made else "no new Deployment"
    patch = html.escape(json.dumps(plan.patch, sort_keys=True))
    return (
        f"<div class=\"kserve-nb-plan-body\"><div><b>Dry run of {html.escape(plan.action)}</b>: {new}; "
        f"traffic as if every canary were ready; nothing is applied until Deploy.</div>"
        f"<table><thead><tr><th>side</th><th>Deployment</th><th>traffic now</th><th>after</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
        f"<details><summary>patch</summary><code>{patch}</code></details></div>"
    )


def _routed(side: Any) -> str:
    if side is None:
        return "–"
    return "0% (not ready)" if side.routed is None else f"{side.routed}%"


def _number(revision: str) -> int:
    tail = revision.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def comparison_html(comparison: Any, basis: str | None) -> str:
    """The comparison, compactly: headline, per-side latency and errors, agreement, verdict; details folded."""
    res = comparison.results
    n = len(res)
    sides = ", ".join(str(t) for t in res["target"].dropna().unique())
    head = f"<h4>{n:,} requests to {html.escape(sides or 'no target')}" + (
        f" at {html.escape(basis)}</h4>" if basis else "</h4>"
    )
    summary = comparison.summary
    cols = [col for col in ("target", "revision", "n", "errors", "p50_ms", "p95_ms") if col in summary.columns]
    table = ""
    if len(summary):
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_cell(row[col]))}</td>" for col in cols) + "</tr>"
            for _, row in summary.iterrows()
        )
        heads = "".join(f"<th>{html.escape(col.replace('_ms', ' ms'))}</th>" for col in cols)
        table = f"<table><thead><tr>{heads}</tr></thead><tbody>{body}</tbody></table>"
    ag = comparison.agreement
    agreement = (
        f"<div><b>Agreement:</b> {html.escape(str(ag.candidate))} agrees with {html.escape(str(ag.baseline))} "
        f"on {ag.rate:.1%} of {ag.n_pairs:,} paired inputs.</div>"
        if ag.rate is not None else ""
    )
    try:
        verdict = comparison.verdict()
        verdict_line = f"<div><b>Verdict:</b> {html.escape(str(verdict.recommendation))}</div>"
    except Exception:  # noqa: BLE001 - a verdict needs both sides; the rest of the comparison still stands
        verdict_line = ""
    details = ""
    if hasattr(comparison, "_repr_html_"):
        details = (
            '<details><summary>all statistics and tests</summary><div class="kserve-nb-scroll">'
            f"{comparison._repr_html_()}</div></details>"
        )
    return f'<div class="kserve-nb-comparison-body">{head}{table}{agreement}{verdict_line}{details}</div>'


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "–" if value != value else f"{value:.1f}"
    return str(value)


__all__ = ["FIGURES", "TAB_BUILDERS", "Feedback", "Panel", "TabBuilder", "figure_output", "header_html",
           "panel_split_text", "register_tab"]
