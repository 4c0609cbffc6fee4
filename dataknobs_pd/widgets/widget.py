"""The batch report widget: a live view of a BatchResult in Jupyter (ipywidgets).

A summary, the failures counted by stage and error, and the failing rows with their input
values, filtered (stage, error, text) and paged. Pages are built on demand from the failures
frame, so a million failures cost no more to show than ten. A button puts the rows in view
back into a notebook variable as a DataFrame, ready to fix and resubmit.
"""

from __future__ import annotations

import functools
import html
import keyword
import math
import os
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .changes_view import changes_view
from .diff import CSS as DIFF_CSS
from .diff import dry_run_note
from .report import CSS, groups_html, head_html, input_rows, is_quarantine, rows_html, rows_title

try:
    import ipywidgets as W
except ImportError:  # the static renderings still work; BatchReport needs `pip install 'dataknobs-pd[notebook]'`
    W = None

PAGE_SIZES = (10, 25, 50, 100)
ALL = ""  # the dropdown value meaning "no filter"


def in_kernel() -> bool:
    """True inside a Jupyter kernel (where a frontend can show widgets), False in a plain IPython or Python."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    return ip is not None and getattr(ip, "kernel", None) is not None


def live_widget(res):
    """A BatchReport for `res` when a kernel and ipywidgets are there (and DATAKNOBS_PD_WIDGET is not 0), else None."""
    if W is None or os.environ.get("DATAKNOBS_PD_WIDGET", "1") == "0" or not in_kernel():
        return None
    try:
        return BatchReport(res)
    except Exception as e:  # noqa: BLE001  (the static report is still shown; say why the live one is not)
        warnings.warn(
            f"dataknobs_pd: the batch report widget failed ({type(e).__name__}: {e}); showing the static report",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


def _user_ns() -> dict | None:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    ip = get_ipython()
    return ip.user_ns if ip is not None else None


def _name_of(obj, default: str = "res") -> str:
    """The notebook variable that holds `obj`, for the code hints."""
    ns = _user_ns() or {}
    for name, value in list(ns.items()):
        if value is obj and not name.startswith("_") and name.isidentifier():
            return name
    return default


def _as_text(s: pd.Series) -> pa.Array:
    """A column of the failures frame as Arrow text, for search (vectorized where Arrow can cast it)."""
    try:
        return pc.cast(pa.array(s.to_numpy(dtype=object), from_pandas=True), pa.large_string())
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):  # tuples, mixed types
        return pa.array([None if v is None else str(v) for v in s.to_numpy(dtype=object)], pa.large_string())


def _shows_errors(method):
    """A callback's error shows in the widget (a frontend would otherwise swallow it), then propagates."""

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as e:
            self.table.value = (
                f"<div class='dk-report'><mark>the report could not update: {type(e).__name__}: "
                f"{html.escape(str(e))}</mark></div>"
            )
            raise

    return run


_Base: Any = W.VBox if W is not None else object  # a widget only with ipywidgets installed


class BatchReport(_Base):
    """The report widget. `BatchReport(res)`; `display(res)` builds one for you in a notebook.

    page_size: failing rows per page. variable: the default name the "copy" button assigns.
    """

    def __init__(self, result, page_size: int = 10, variable: str = "failed"):
        if W is None:
            raise ImportError("the batch report widget needs ipywidgets: pip install 'dataknobs-pd[notebook]'")
        self.result = result
        self.failures = result.failures
        self.page = 0
        self.page_size = int(page_size)
        self.copied: pd.DataFrame | None = None  # what the copy button last handed out
        self._positions_cache: np.ndarray | None = None
        self._haystack: list[pa.Array] | None = None
        note = dry_run_note(_name_of(result)) if result.dry_run else ""
        self.header = W.HTML(f"<div class='dk-report'><style>{CSS}{DIFF_CSS}</style>{head_html(result)}{note}</div>")
        self.header.add_class("dk-w-header")
        children = [self.header]
        failures = self._build_failures(variable) if result.failed else []
        self.changes_view = changes_view(result, W) if result.changes is not None else None
        if failures and self.changes_view is not None:  # two views, one at a time
            box = W.VBox(failures)
            self.views = W.ToggleButtons(
                options=[
                    (f"Failures ({result.failed:,})", "failures"),
                    (f"Changes ({len(result.changes):,})", "changes"),
                ]
            )
            self.views.add_class("dk-w-views")
            self.changes_view.layout.display = "none"
            view = self.changes_view

            def show(change):
                box.layout.display = "none" if change["new"] == "changes" else None
                view.layout.display = None if change["new"] == "changes" else "none"

            self.views.observe(show, "value")
            children += [self.views, box, self.changes_view]
        else:
            children += failures or ([self.changes_view] if self.changes_view is not None else [])
        super().__init__(children=children, layout=W.Layout(width="100%", padding="2px 0 6px"))
        self.add_class("dk-widget")
        if result.failed:
            self.render()

    # -- building ------------------------------------------------------------------------------
    def _build_failures(self, variable: str) -> list:
        f = self.failures
        self.summary = self.result.summary(changes=False)
        self._stage_codes, stages = pd.factorize(f["stage"], sort=True)
        self._error_codes, errors = pd.factorize(f["error"], sort=True)
        self._stage_of = {s: i for i, s in enumerate(stages)}
        self._error_of = {e: i for i, e in enumerate(errors)}

        self.groups = W.HTML(
            "<div class='dk-report'><div class='dk-h'>failures by stage and error</div>"
            + groups_html(self.summary, self.result.failed)
            + "</div>"
        )
        title = W.HTML(f"<div class='dk-report'><div class='dk-h'>{rows_title(self.result)}</div></div>")
        small = {"width": "auto"}
        self.stage = W.Dropdown(options=self._stage_options(), value=ALL, layout=W.Layout(**small, margin="0 6px 0 0"))
        self.error = W.Dropdown(
            options=self._error_options(ALL), value=ALL, layout=W.Layout(**small, margin="0 6px 0 0")
        )
        self.search = W.Text(
            placeholder="search key, index, message" + (", batch" if "batch_id" in f.columns else ""),
            continuous_update=False,
            layout=W.Layout(width="260px"),
        )
        self.stage.add_class("dk-w-stage")
        self.error.add_class("dk-w-error")
        self.search.add_class("dk-w-search")
        self.stage.observe(self._on_stage, "value")
        self.error.observe(self._on_filter, "value")
        self.search.observe(self._on_filter, "value")
        filters = W.HBox([self.stage, self.error, self.search], layout=W.Layout(margin="0 0 6px", flex_flow="row wrap"))

        self.table = W.HTML()
        self.table.add_class("dk-w-table")

        def button(icon, tip, delta):
            b = W.Button(icon=icon, tooltip=tip, layout=W.Layout(width="34px", margin="0 2px 0 0"))
            b.on_click(lambda _: self.go(delta))
            return b

        self.first_button = button("angle-double-left", "first page", "first")
        self.prev_button = button("angle-left", "previous page", -1)
        self.next_button = button("angle-right", "next page", +1)
        self.last_button = button("angle-double-right", "last page", "last")
        self.position = W.HTML()
        self.position.add_class("dk-w-position")
        self.size = W.Dropdown(
            options=[(f"{n} per page", n) for n in sorted({*PAGE_SIZES, self.page_size})],
            value=self.page_size,
            layout=W.Layout(width="auto", margin="0 0 0 12px"),
        )
        self.size.observe(self._on_size, "value")
        pager = W.HBox(
            [self.first_button, self.prev_button, self.next_button, self.last_button, self.position, self.size],
            layout=W.Layout(margin="6px 0 0", align_items="center", flex_flow="row wrap"),
        )

        self.variable = W.Text(value=variable, layout=W.Layout(width="110px", margin="0 6px 0 0"))
        self.copy_button = W.Button(
            icon="table",
            tooltip="put these rows into a notebook variable as a DataFrame",
            layout=W.Layout(width="auto"),
        )
        self.copy_button.add_class("dk-w-copy")
        self.copy_button.on_click(self._copy)
        self.copy_status = W.HTML()
        self.copy_status.add_class("dk-w-copy-status")
        name = _name_of(self.result)
        self.code_hint = W.HTML(
            "<div class='dk-report'><span class='dk-mute'>or in code: </span>"
            f"<code>{html.escape(variable)} = {html.escape(name)}.failed_rows()</code></div>",
            layout=W.Layout(margin="0 0 0 12px"),
        )
        label = W.HTML(
            "<div class='dk-report'><span class='dk-mute'>Fix and resubmit:</span></div>",
            layout=W.Layout(margin="0 8px 0 0"),
        )
        export = W.HBox(
            [label, self.variable, self.copy_button, self.code_hint],
            layout=W.Layout(margin="10px 0 0", align_items="center", flex_flow="row wrap"),
        )
        return [self.groups, title, filters, self.table, pager, export, self.copy_status]

    def _stage_options(self):
        counts = self.summary.groupby("stage", sort=True)["rows"].sum()
        return [(f"All stages ({self.result.failed:,})", ALL)] + [(f"{s} ({n:,})", s) for s, n in counts.items()]

    def _error_options(self, stage):
        s = self.summary if stage == ALL else self.summary[self.summary["stage"] == stage]
        counts = s.groupby("error", sort=True)["rows"].sum()
        total = int(counts.sum())
        return [(f"All errors ({total:,})", ALL)] + [(f"{e} ({n:,})", e) for e, n in counts.items()]

    # -- filtering and paging ------------------------------------------------------------------
    def positions(self) -> np.ndarray:
        """Positions (in `failures`) of the failures that pass the current filters."""
        if self._positions_cache is None:
            mask = None
            if self.stage.value != ALL:
                mask = self._stage_codes == self._stage_of[self.stage.value]
            if self.error.value != ALL:
                m = self._error_codes == self._error_of.get(self.error.value, -2)
                mask = m if mask is None else mask & m
            text = self.search.value.strip()
            if text:
                m = self._search(text)
                mask = m if mask is None else mask & m
            self._positions_cache = np.arange(len(self.failures)) if mask is None else np.flatnonzero(mask)
        return self._positions_cache

    def _search(self, text: str) -> np.ndarray:
        """Failures whose key, index, error or message (or batch id, in a quarantine) contains `text` (any case)."""
        if self._haystack is None:  # the text of key, index and message, built on the first search
            f = self.failures
            columns = (
                ("batch_id", "key", "index", "message") if "batch_id" in f.columns else ("key", "index", "message")
            )
            self._haystack = [_as_text(f[c]) for c in columns]
        hit = np.zeros(len(self.failures), dtype=bool)
        for part in self._haystack:
            hit |= pc.fill_null(pc.match_substring(part, text, ignore_case=True), False).to_numpy(zero_copy_only=False)
        errors = [i for e, i in self._error_of.items() if text.lower() in str(e).lower()]  # a handful of names
        if errors:
            hit |= np.isin(self._error_codes, errors)
        return hit

    @property
    def pages(self) -> int:
        return max(1, math.ceil(len(self.positions()) / self.page_size))

    @_shows_errors
    def go(self, delta) -> None:
        """Move to another page: +1, -1, "first" or "last" (the pager's buttons)."""
        if delta == "first":
            self.page = 0
        elif delta == "last":
            self.page = self.pages - 1
        else:
            self.page = self.page + int(delta)
        self.render()

    def current_page(self) -> pd.DataFrame:
        """The failures on the page in view."""
        pos = self.positions()
        lo = self.page * self.page_size
        return self.failures.iloc[pos[lo : lo + self.page_size]]

    def render(self) -> None:
        pos = self.positions()
        n = len(pos)
        self.page = min(max(self.page, 0), self.pages - 1)
        lo = self.page * self.page_size
        hi = min(n, lo + self.page_size)
        if n:
            body = rows_html(self.result, self.failures.iloc[pos[lo:hi]])
        else:
            body = "<p class='dk-foot'>No failing row matches these filters.</p>"
        self.table.value = f"<div class='dk-report'>{body}</div>"
        filtered = n != len(self.failures)
        of = f"<b>{n:,}</b> matching ({len(self.failures):,} in all)" if filtered else f"<b>{n:,}</b>"
        shown = f"<b>{lo + 1:,}–{hi:,}</b> of {of}" if n else f"<b>0</b> of {of}"
        self.position.value = (
            f"<div class='dk-report' style='margin-left:10px'>Rows {shown} "
            f"<span class='dk-mute'>· page {self.page + 1:,} of {self.pages:,}</span></div>"
        )
        at_start, at_end = self.page == 0, self.page >= self.pages - 1
        self.first_button.disabled = self.prev_button.disabled = at_start
        self.next_button.disabled = self.last_button.disabled = at_end
        rows = len(np.unique(self.failures["row"].to_numpy()[pos])) if filtered else self.result.failed
        noun = "row" if rows == 1 else "rows"
        self.copy_button.description = f"Copy {rows:,} matching {noun}" if filtered else f"Copy all {rows:,} {noun}"
        self.copy_button.disabled = n == 0

    @_shows_errors
    def _on_stage(self, change) -> None:
        with self.error.hold_trait_notifications():
            self.error.options = self._error_options(change["new"])
            self.error.value = ALL
        self._on_filter(None)

    @_shows_errors
    def _on_filter(self, _change) -> None:
        self._positions_cache = None
        self.page = 0
        self.render()

    @_shows_errors
    def _on_size(self, change) -> None:
        first = self.page * self.page_size  # keep the first row in view on screen
        self.page_size = int(change["new"])
        self.page = first // self.page_size
        self.render()

    # -- the rows back as a DataFrame ----------------------------------------------------------
    def selected_rows(self) -> pd.DataFrame:
        """The failed input rows that pass the current filters (all of them when none is set)."""
        if is_quarantine(self.result):  # one row per failure, in the order of the failures
            return self.result.failed_rows().iloc[self.positions()]
        rows = np.unique(self.failures["row"].to_numpy(dtype=np.int64)[self.positions()])
        return input_rows(self.result, rows)

    @_shows_errors
    def _copy(self, _button=None) -> None:
        name = self.variable.value.strip()
        if not name.isidentifier() or keyword.iskeyword(name):
            self.copy_status.value = (
                f"<div class='dk-report'><mark>{html.escape(name)!s} is not a valid Python name</mark></div>"
            )
            return
        rows = self.selected_rows()
        self.copied = rows
        ns = _user_ns()
        if ns is not None:
            ns[name] = rows
        where = f"<code>{html.escape(name)}</code>" if ns is not None else "<code>.copied</code> of this widget"
        if is_quarantine(self.result):
            then = (
                "(as they were sent: same index and dtypes); fix them and write them again "
                f"(<code>{html.escape(name)}.dk.save(…)</code>): the keys written leave the quarantine"
            )
        elif self.result.operation == "undo":
            then = "(the keys of the rows the undo left as they are: a later call changed them)"
        else:
            then = (
                "(same index and dtypes as the input); fix them and call "
                f"<code>{html.escape(name)}.dk.{html.escape(self._verb())}(…)</code> again"
            )
        self.copy_status.value = (
            f"<div class='dk-report' style='margin-top:4px'>✓ {where} holds {len(rows):,} "
            f"{'row' if len(rows) == 1 else 'rows'} × {rows.shape[1]:,} columns "
            f"<span class='dk-mute'>{then}</span></div>"
        )

    def _verb(self) -> str:
        return {"update_batch": "update_batch", "delete": "delete"}.get(self.result.operation, "save")
