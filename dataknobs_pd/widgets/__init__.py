"""Renderings of the batch report: the live widget (widget.py, needs ipywidgets) and static HTML/text (report.py)."""

from .report import render_html, render_text

__all__ = ["BatchReport", "render_html", "render_text"]


def __getattr__(name):
    if name == "BatchReport":  # imported on first use: ipywidgets is an optional dependency
        from .widget import BatchReport

        return BatchReport
    raise AttributeError(name)
