"""Renderings of the batch report: the live widget (widget.py, needs ipywidgets) and static HTML/text (report.py)."""

from .report import render_html, render_text

__all__ = ["BatchReport", "mimebundle", "render_html", "render_text"]


def __getattr__(name):
    if name == "BatchReport":  # imported on first use: ipywidgets is an optional dependency
        from .widget import BatchReport

        return BatchReport
    raise AttributeError(name)


def mimebundle(res) -> dict:
    """What Jupyter shows for a BatchResult: the live widget when a kernel and ipywidgets are there,
    always with the static HTML and the text beside it for viewers without a kernel."""
    bundle = {"text/plain": render_text(res), "text/html": render_html(res)}
    from .widget import live_widget  # needs ipywidgets, an optional dependency

    w = live_widget(res)
    if w is not None:
        view = w._repr_mimebundle_()
        view = view[0] if isinstance(view, tuple) else view
        if "application/vnd.jupyter.widget-view+json" in view:
            bundle["application/vnd.jupyter.widget-view+json"] = view["application/vnd.jupyter.widget-view+json"]
    return bundle
