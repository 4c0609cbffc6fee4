"""How one value, one key and the index column show in the report's tables (failures and changes alike),
and how many rows a static rendering shows."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

MAX_ROWS = 20  # rows in a static rendering (failing or changed); the rest are counted
MAX_CELL = 80  # characters of one value before it is cut (the full text is in the tooltip)


def is_missing(v) -> bool:
    if v is None:
        return True
    if isinstance(v, (list, dict, tuple, bytes, np.ndarray)):
        return False
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def cell(v, mark: bool = False) -> str:
    """One value as HTML: missing values dimmed, long text cut (with the whole of it as a tooltip)."""
    if is_missing(v):
        text = {type(None): "None"}.get(type(v), "NaN" if isinstance(v, float) else str(v))
        out = f"<span class='dk-na'>{html.escape(text)}</span>"
    else:
        text = v if isinstance(v, str) else str(v)
        if text == "":
            out = "<span class='dk-na'>''</span>"
        elif len(text) > MAX_CELL:
            out = f"<span title='{html.escape(text)}'>{html.escape(text[: MAX_CELL - 1])}…</span>"
        else:
            out = html.escape(text)
    return f"<mark>{out}</mark>" if mark else out


def key_text(v) -> str:
    """A key as text: the values of a key of several columns (a tuple) joined by commas."""
    if isinstance(v, tuple):
        return ", ".join("None" if is_missing(x) else str(x) for x in v)
    return v


def show_index(res) -> bool:
    """The `index` column says something only when the input's index is not its row positions (an undo
    has no input frame: its rows are the table's, named by their key)."""
    if res.operation == "undo":
        return False
    frame = getattr(res, "_frame", None)
    if frame is None:
        return True
    idx = frame.index
    return not (isinstance(idx, pd.RangeIndex) and idx.start == 0 and idx.step == 1)
