"""The Changes view of the report widget: counts per action, and the changed rows filtered by action
and key, paged; each page is built from the slice in view, so a million changes stay responsive."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .diff import counts_html, diff_html

PAGE_SIZE = 10
ALL = ""


def _text(values) -> pa.Array:
    return pa.array([None if v is None else str(v) for v in values], pa.large_string())


def changes_view(result, widgets):
    """Build the view (`widgets` is the ipywidgets module); returns the VBox."""
    W = widgets
    ch = result.changes
    cats = ch["action"].astype("category")
    codes, actions = np.asarray(cats.cat.codes), list(cats.cat.categories)
    state: dict[str, Any] = {"page": 0, "positions": None, "keys": None}
    counts = W.HTML(f"<div class='dk-report'><div class='dk-h'>changes by action</div>{counts_html(ch)}</div>")
    default = "update" if "update" in actions else ALL
    action = W.Dropdown(
        options=[(f"All actions ({len(ch):,})", ALL)]
        + [
            (f"{a} ({int((ch['action'] == a).sum()):,})", a)
            for a in ("insert", "update", "unchanged", "delete")
            if a in actions
        ],
        value=default,
        layout=W.Layout(width="auto", margin="0 6px 0 0"),
    )
    action.add_class("dk-w-action")
    search = W.Text(placeholder="search key", continuous_update=False, layout=W.Layout(width="200px"))
    search.add_class("dk-w-change-search")
    table = W.HTML()
    table.add_class("dk-w-changes-table")
    position = W.HTML()
    position.add_class("dk-w-change-position")
    prev_b = W.Button(icon="angle-left", tooltip="previous page", layout=W.Layout(width="34px"))
    next_b = W.Button(icon="angle-right", tooltip="next page", layout=W.Layout(width="34px"))

    def positions() -> np.ndarray:
        if state["positions"] is None:
            mask = np.ones(len(ch), dtype=bool)
            if action.value != ALL:
                mask &= codes == actions.index(action.value)
            text = search.value.strip()
            if text:
                if state["keys"] is None:
                    state["keys"] = _text(ch["key"].tolist())
                mask &= pc.fill_null(pc.match_substring(state["keys"], text, ignore_case=True), False).to_numpy(
                    zero_copy_only=False
                )
            state["positions"] = np.flatnonzero(mask)
        return state["positions"]

    def render(*_):
        pos = positions()
        pages = max(1, math.ceil(len(pos) / PAGE_SIZE))
        state["page"] = min(max(state["page"], 0), pages - 1)
        lo = state["page"] * PAGE_SIZE
        hi = min(len(pos), lo + PAGE_SIZE)
        body = diff_html(result, ch.iloc[pos[lo:hi]]) if len(pos) else "<p class='dk-foot'>No row matches.</p>"
        table.value = f"<div class='dk-report'>{body}</div>"
        shown = f"<b>{lo + 1:,}–{hi:,}</b> of <b>{len(pos):,}</b>" if len(pos) else "<b>0</b>"
        position.value = (
            f"<div class='dk-report' style='margin-left:10px'>Rows {shown} "
            f"<span class='dk-mute'>· page {state['page'] + 1:,} of {pages:,}</span></div>"
        )
        prev_b.disabled = state["page"] == 0
        next_b.disabled = state["page"] >= pages - 1

    def refilter(_change):
        state["positions"], state["page"] = None, 0
        render()

    def turn(delta):
        state["page"] += delta
        render()

    action.observe(refilter, "value")
    search.observe(refilter, "value")
    prev_b.on_click(lambda _: turn(-1))
    next_b.on_click(lambda _: turn(+1))
    render()
    box = W.VBox(
        [
            counts,
            W.HBox([action, search], layout=W.Layout(margin="0 0 6px")),
            table,
            W.HBox([prev_b, next_b, position], layout=W.Layout(margin="6px 0 0", align_items="center")),
        ]
    )
    box.add_class("dk-w-changes")
    box.render, box.action, box.search, box.next_button = render, action, search, next_b
    return box
