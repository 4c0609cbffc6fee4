"""Renderings of a BatchResult: static HTML (nbconvert, GitHub), text, and the pieces the widget shares.

The static HTML and the live widget (widget.py) are built from the same pieces (`head_html`,
`groups_html`, `rows_html`) so that a notebook looks the same before and after it is run.
Every piece works on a slice of the failures frame: nothing here ever renders all failures.

Besides the writing calls, two reports come from elsewhere: `dk.quarantined` (operation "quarantined": the rows
still owed, one failure per row, with a `batch_id` column naming the call that sent it, and `failed_rows()` in
the same order as the failures) and `dk.undo` (operation "undo": the rows put back, and the conflicts).
"""

from __future__ import annotations

import html
import math
import re

import numpy as np
import pandas as pd

from ..failures import ROW_ERRORS
from . import diff
from .cells import MAX_CELL, MAX_ROWS, cell, key_text, show_index

MAX_VALUE_COLUMNS = 40  # input columns shown beside each failure
MAX_MESSAGE = 240  # characters of a message; on screen CSS shows two lines of it
VERBS = {"save": "saved", "update_batch": "updated", "delete": "deleted", "undo": "put back"}
QUARANTINE = "quarantined"  # the operation of the report dk.quarantined gives
_COLUMN_IN_MESSAGE = re.compile(r"column '([^']+)'")
_KEY_ERRORS = {"NullKey", "DuplicateKey", "KeyConflict", "AmbiguousKey", "MissingKey"}

CSS = """
.dk-report{font-family:var(--jp-ui-font-family,-apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif);
 font-size:13px;line-height:1.45;color:var(--jp-ui-font-color1,#1f2328);white-space:normal;max-width:100%}
.dk-report .dk-head{display:flex;flex-wrap:wrap;align-items:center;gap:4px 12px;margin:0 0 10px}
.dk-report .dk-title{font-size:15px;font-weight:600}
.dk-report .dk-op{font-family:var(--jp-code-font-family,SFMono-Regular,Menlo,Consolas,monospace);font-weight:400;
 color:var(--jp-ui-font-color2,#59636e)}
.dk-report .dk-url{font-family:var(--jp-code-font-family,SFMono-Regular,Menlo,Consolas,monospace);font-size:12px;
 color:var(--jp-ui-font-color2,#59636e)}
.dk-report .dk-pill{display:inline-block;border-radius:999px;padding:1px 10px;font-size:12px;font-weight:600;
 line-height:20px}
.dk-report .dk-pill-ok{background:rgba(31,136,61,.13);color:var(--jp-success-color1,#1a7f37)}
.dk-report .dk-pill-failed{background:rgba(207,34,46,.12);color:var(--jp-error-color1,#cf222e)}
.dk-report .dk-pill-rolledback{background:rgba(191,135,0,.16);color:var(--jp-warn-color1,#9a6700)}
.dk-report .dk-stats{display:flex;flex-wrap:wrap;gap:6px 32px;margin:0 0 4px}
.dk-report .dk-stat{display:inline-block;color:var(--jp-ui-font-color2,#59636e);font-size:11px;font-weight:600;
 text-transform:uppercase;letter-spacing:.04em}
.dk-report .dk-stat b{display:block;font-size:22px;line-height:28px;font-weight:600;letter-spacing:0;
 text-transform:none;color:var(--jp-ui-font-color1,#1f2328);font-variant-numeric:tabular-nums}
.dk-report .dk-stat-failed.dk-nonzero b{color:var(--jp-error-color1,#cf222e)}
.dk-report .dk-stat-time b{font-weight:400}
.dk-report .dk-h{margin:16px 0 6px;font-size:11px;font-weight:600;text-transform:uppercase;letter-spacing:.04em;
 color:var(--jp-ui-font-color2,#59636e)}
.dk-report .dk-scroll{overflow-x:auto;max-width:100%}
.dk-report table.dk-table{border-collapse:collapse;border:none;font-size:12.5px;margin:0;table-layout:auto}
.dk-report table.dk-table th,.dk-report table.dk-table td{text-align:left;padding:4px 12px 4px 0;border:none;
 border-bottom:1px solid var(--jp-border-color2,#e6e9ed);vertical-align:top;background:none;
 font-variant-numeric:tabular-nums;max-width:none;line-height:1.45}
.dk-report table.dk-table th{font-weight:600;white-space:nowrap;border-bottom:1px solid var(--jp-border-color1,#c8ced6)}
.dk-report table.dk-table tbody tr:nth-child(odd),.dk-report table.dk-table tbody tr{background:none}
.dk-report table.dk-table tbody tr:hover td{background:var(--jp-layout-color2,#f6f8fa)}
.dk-report table.dk-table td.dk-num,.dk-report table.dk-table th.dk-num{text-align:right}
.dk-report table.dk-table th.dk-group{font-size:11px;font-weight:600;text-transform:uppercase;letter-spacing:.04em;
 color:var(--jp-ui-font-color2,#59636e);border-bottom:none;padding-bottom:0}
.dk-report table.dk-table .dk-first-value{border-left:1px solid var(--jp-border-color1,#c8ced6);padding-left:12px}
.dk-report table.dk-table td.dk-msg{min-width:16em;max-width:34em;white-space:normal;overflow-wrap:anywhere}
.dk-report .dk-clamp{display:-webkit-box;-webkit-line-clamp:2;-webkit-box-orient:vertical;overflow:hidden}
.dk-report .dk-sep{display:none}
.dk-report table.dk-table td.dk-val{white-space:nowrap}
.dk-report .dk-mute,.dk-report .dk-na{color:var(--jp-ui-font-color2,#59636e)}
.dk-report .dk-na{font-style:italic}
.dk-report mark{background:rgba(207,34,46,.12);color:var(--jp-error-color1,#cf222e);border-radius:3px;padding:0 3px}
.dk-report .dk-bar{display:inline-block;height:6px;border-radius:3px;background:var(--jp-error-color1,#cf222e);
 opacity:.5;vertical-align:middle;margin-right:6px}
.dk-report code{font-family:var(--jp-code-font-family,SFMono-Regular,Menlo,Consolas,monospace);font-size:12px;
 background:var(--jp-layout-color2,#f3f4f6);border-radius:4px;padding:1px 5px}
.dk-report .dk-foot{margin:8px 0 0;color:var(--jp-ui-font-color2,#59636e);font-size:12px}
.dk-report p{margin:0}
"""


# -- formatting ----------------------------------------------------------------------------
def fmt_int(n) -> str:
    return f"{int(n):,}"


def fmt_seconds(s: float) -> str:
    """0.0042 -> '4 ms', 3.84 -> '3.84 s', 125 -> '2 min 5 s'."""
    if s is None or not math.isfinite(s):
        return "—"
    if s < 0.001:
        return "<1 ms"
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.2f} s"
    m, sec = divmod(round(s), 60)
    return f"{m} min {sec} s"


def fmt_rate(r: float) -> str:
    if r is None or not math.isfinite(r):
        return "—"
    return f"{r:,.0f}"


def is_quarantine(res) -> bool:
    """A report of what is still owed (dk.quarantined), not of a call."""
    return res.operation == QUARANTINE


def _rows(n: int) -> str:
    return f"{n:,} {'row' if n == 1 else 'rows'}"


def calls_in(res) -> int:
    """How many calls the rows of a quarantine report came from."""
    f = res.failures
    return int(f["batch_id"].nunique()) if "batch_id" in f.columns else 0


def status(res) -> tuple[str, str]:
    """(css suffix, words) for the pill at the top of the report."""
    if is_quarantine(res):
        return ("failed", f"{_rows(res.failed)} still owed") if res.failed else ("ok", "Nothing owed")
    if getattr(res, "dry_run", False):
        return "rolledback", "Dry run: nothing written"
    if not res.committed:
        return "rolledback", "Rolled back: nothing written"
    undo = res.operation == "undo"
    if res.failed:
        return "failed", f"{_rows(res.failed)} {'not put back' if undo else 'failed'}"
    return "ok", "All rows put back" if undo else "All rows written"


def headline(res) -> str:
    """The report's first line of text: the result's own line, or for a quarantine what is still owed."""
    if not is_quarantine(res):
        return str(res)
    if not res.failed:
        return f"quarantine of {res.table!r}: nothing owed"
    calls = calls_in(res)
    return f"quarantine of {res.table!r}: {_rows(res.failed)} still owed, from {calls:,} {'call' if calls == 1 else 'calls'}"


def _message(m) -> str:
    """A failure message: two lines at most on screen, all of it in the tooltip."""
    text = "" if m is None else str(m)
    shown = text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"
    return f"<div class='dk-clamp' title='{html.escape(text)}'>{html.escape(shown)}</div>"


# -- pieces shared with the widget ------------------------------------------------------------
def batch_html(res) -> str:
    """The call's batch id, for `dk.undo` and `dk.quarantined` (nothing when the result has none)."""
    batch_id = getattr(res, "batch_id", None)
    if batch_id is None:
        return ""
    if is_quarantine(res):
        tip = "only the rows of this call"
    elif res.operation == "undo" and res.committed:
        tip = "this undo's id in store.batches(table): dk.undo of it redoes the call"
    elif res.committed:
        tip = "this call's id in store.batches(table): dk.undo and dk.quarantined take it"
    else:
        tip = "this call's id; nothing was written, so the batch log does not keep it"
    return (  # styled as the URL beside it (inline: the CSS, which notebooks store with each report, stays as it was)
        f"<span class='dk-batch' style='{_BATCH_STYLE}' title='{html.escape(tip)}'>batch {html.escape(str(batch_id))}</span>"
    )


_BATCH_STYLE = (
    "font-family:var(--jp-code-font-family,SFMono-Regular,Menlo,Consolas,monospace);font-size:12px;"
    "color:var(--jp-ui-font-color2,#59636e)"
)


def _stats(res) -> list[tuple[str, str, str]]:
    """The counts of the head: (css suffix, number, label)."""
    failed = "failed" + (" dk-nonzero" if res.failed else "")
    if is_quarantine(res):  # what is owed, from how many calls: no rows were written by reading it
        calls = calls_in(res)
        return [
            (failed, fmt_int(res.failed), "still owed"),
            ("calls", fmt_int(calls), "call" if calls == 1 else "calls"),
            ("elapsed dk-stat-time", fmt_seconds(res.elapsed), "elapsed"),
        ]
    dry_run = getattr(res, "dry_run", False)
    if res.committed:
        verb = VERBS.get(res.operation, "written")
    elif dry_run:
        verb = "would be put back" if res.operation == "undo" else "would be written"
    else:
        verb = "valid"
    stats = [
        ("total", fmt_int(res.total), "rows"),
        ("succeeded", fmt_int(res.succeeded), verb),
        (failed, fmt_int(res.failed), "failed"),
    ]
    if getattr(res, "quarantined", 0):
        stats.append(("quarantined", fmt_int(res.quarantined), "quarantined"))
    return stats + [
        ("elapsed dk-stat-time", fmt_seconds(res.elapsed), "elapsed"),
        ("rate dk-stat-time", fmt_rate(res.rows_per_second), "rows/s"),
    ]


def head_html(res) -> str:
    """The title line (status, operation, table, store, batch id) and the counts."""
    e = html.escape
    kind, words = status(res)
    stats = _stats(res)
    # the separators read well where there is no CSS (GitHub); with it, the numbers stand in a row
    cards = "<span class='dk-sep'> · </span>".join(
        f"<span class='dk-stat dk-stat-{c}'><b>{n}</b> {label}</span>" for c, n, label in stats
    )
    if is_quarantine(res):
        title = f"<span class='dk-op'>quarantine</span> of {e(str(res.table))}"
    else:
        title = f"<span class='dk-op'>{e(res.operation)}</span> → {e(str(res.table))}"
    return (
        "<div class='dk-head'>"
        f"<span class='dk-pill dk-pill-{kind}'>{e(words)}</span>"
        f"<span class='dk-title'>{title}</span>"
        f"<span class='dk-url' title='store URL (password masked)'>{e(res.url)}</span>"
        f"{batch_html(res)}"
        "</div>"
        f"<div class='dk-stats'>{cards}</div>"
    )


def groups_html(summary: pd.DataFrame, total_failed: int) -> str:
    """Failures counted by stage and error, with what each error means."""
    if summary.empty:
        return ""
    rows = []
    for stage, error, n in summary[["stage", "error", "rows"]].itertuples(index=False, name=None):
        share = n / total_failed if total_failed else 0
        width = max(2, round(share * 80))
        meaning = re.sub(r"\s*\([^)]*\)$", "", ROW_ERRORS.get(error, ""))
        rows.append(
            f"<tr><td>{html.escape(str(stage))}</td><td><strong>{html.escape(str(error))}</strong></td>"
            f"<td class='dk-num'>{n:,}</td>"
            f"<td class='dk-mute'><span class='dk-bar' style='width:{width}px'></span>{share:.0%}</td>"
            f"<td class='dk-mute'>{html.escape(meaning)}</td></tr>"
        )
    return (
        "<table class='dk-table dk-groups'><thead><tr><th>stage</th><th>error</th><th class='dk-num'>rows</th>"
        "<th>share</th><th>meaning</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def value_columns(res) -> list:
    """The input columns shown beside each failure (key columns are already in `key`)."""
    frame = getattr(res, "_frame", None)
    if frame is None and is_quarantine(res):  # the rows as they were sent, kept in the store
        frame = res.failed_rows()
    if frame is None:
        return []
    keys = set(res.key or [])
    return [c for c in frame.columns if str(c) not in keys][:MAX_VALUE_COLUMNS]


def input_rows(res, positions: np.ndarray) -> pd.DataFrame:
    """The input rows at `positions` (row numbers in the input frame), without copying the rest."""
    frame = getattr(res, "_frame", None)
    if frame is not None:
        return frame.iloc[positions]
    rows = res.failed_rows()
    return rows.iloc[np.searchsorted(np.unique(res.failures["row"].to_numpy()), positions)]


def rows_of(res, at: np.ndarray) -> pd.DataFrame:
    """The input rows of the failures at positions `at` of `res.failures`, one per failure, in that order.

    A quarantine holds rows of several calls, whose `row` numbers repeat: its `failed_rows()` has one row
    per failure, in the order of the failures."""
    if is_quarantine(res):
        return res.failed_rows().iloc[at]
    return input_rows(res, res.failures["row"].to_numpy(dtype=np.int64)[at])


def _positions_in(res, failures: pd.DataFrame) -> np.ndarray:
    """Where the rows of `failures` (a slice of `res.failures`) stand in it."""
    at = res.failures.index.get_indexer(failures.index)
    if (at < 0).any():  # not a slice of res.failures: take it as the first rows
        return np.arange(len(failures))
    return at


def exact_keys(res, values: pd.DataFrame) -> list | None:
    """The key of each of `values` (input rows) as the input holds it, dtype and all: a scalar, or a
    tuple for a key of several columns. None when the input rows do not carry the key."""
    keys = res.key or []
    if not keys:
        return None
    parts = []
    for k in keys:
        if k in values.columns:
            parts.append(values[k].tolist())
        elif k in [n for n in values.index.names if n is not None]:
            parts.append(values.index.get_level_values(k).tolist())
        else:
            return None
    return parts[0] if len(parts) == 1 else list(zip(*parts))


def rows_html(res, failures: pd.DataFrame) -> str:
    """A table of some failures (a page: a few dozen rows) with the offending input values beside them."""
    cols = value_columns(res)
    with_index = show_index(res)
    with_key = bool(res.key)
    with_batch = "batch_id" in failures.columns  # a quarantine: the call each row came in
    values = rows_of(res, _positions_in(res, failures))
    names = [str(c) for c in cols]
    n_fail = with_batch + 3 + with_index + with_key + 1  # [batch] row [index] [key] stage error message
    head1 = f"<tr><th class='dk-group' colspan='{n_fail}'>failure</th>"
    if cols:
        extra = len(values.columns) - len(cols) - len(set(res.key or []) & set(map(str, values.columns)))
        more = f" <span class='dk-mute'>(first {len(cols)}; {extra:,} more)</span>" if extra > 0 else ""
        head1 += f"<th class='dk-group dk-first-value' colspan='{len(cols)}'>input row{more}</th>"
    head1 += "</tr>"
    head2 = "<tr>" + ("<th>batch</th>" if with_batch else "") + "<th class='dk-num'>row</th>"
    head2 += "<th>index</th>" if with_index else ""
    head2 += f"<th>key <span class='dk-mute'>({html.escape(', '.join(res.key))})</span></th>" if with_key else ""
    head2 += "<th>stage</th><th>error</th><th>message</th>"
    head2 += "".join(
        ("<th class='dk-first-value'>" if i == 0 else "<th>") + f"{html.escape(n)}</th>" for i, n in enumerate(names)
    )
    head2 += "</tr>"
    body = []
    vals = [values.iloc[:, values.columns.get_loc(c)].tolist() for c in cols] if cols else []
    keys = exact_keys(res, values) if with_key else None
    if keys is None:
        keys = failures["key"].tolist()
    batches = failures["batch_id"].tolist() if with_batch else None
    for i, f in enumerate(failures[["row", "index", "key", "stage", "error", "message"]].itertuples(index=False)):
        found = _COLUMN_IN_MESSAGE.search(str(f.message or ""))
        bad_col = found.group(1) if found else None
        tr = [f"<td class='dk-batch-id dk-val dk-mute'>{cell(batches[i])}</td>"] if batches is not None else []
        tr.append(f"<td class='dk-num'>{int(f.row):,}</td>")
        if with_index:
            tr.append(f"<td>{cell(f.index)}</td>")
        if with_key:
            tr.append(f"<td class='dk-key'>{cell(key_text(keys[i]), mark=f.error in _KEY_ERRORS)}</td>")
        tr.append(
            f"<td class='dk-stage dk-mute'>{html.escape(str(f.stage))}</td>"
            f"<td class='dk-error'>{html.escape(str(f.error))}</td>"
        )
        tr.append(f"<td class='dk-msg'>{_message(f.message)}</td>")
        for j, name in enumerate(names):
            cls = "dk-val dk-first-value" if j == 0 else "dk-val"
            tr.append(f"<td class='{cls}'>{cell(vals[j][i], mark=name == bad_col)}</td>")
        body.append("<tr>" + "".join(tr) + "</tr>")
    return (
        "<div class='dk-scroll'><table class='dk-table dk-rows'><thead>"
        + head1
        + head2
        + "</thead><tbody>"
        + "".join(body)
        + "</tbody></table></div>"
    )


def rows_title(res) -> str:
    """What the table of failing rows is called."""
    return "quarantined rows" if is_quarantine(res) else "failing rows"


def wrap(inner: str) -> str:
    return f"<div class='dk-report'><style>{CSS}{diff.CSS}</style>{inner}</div>"


# -- the static renderings ----------------------------------------------------------------------
def render_html(res, max_rows: int = MAX_ROWS) -> str:
    """The report as one HTML block: summary, failures by stage and error, the first failing rows,
    and with tracked changes the counts per action and the first changed rows."""
    parts = [head_html(res)]
    quarantine = is_quarantine(res)
    if res.dry_run:
        parts.append(diff.dry_run_note())
    if res.failed:
        parts.append("<div class='dk-h'>failures by stage and error</div>")
        parts.append(groups_html(res.summary(changes=False), res.failed))
        shown = min(max_rows, res.failed)
        parts.append(
            f"<div class='dk-h'>{rows_title(res)} ({'all' if shown == res.failed else f'first {shown:,} of'} "
            f"{res.failed:,})</div>"
        )
        parts.append(rows_html(res, res.failures.iloc[:shown]))
        if quarantine:
            parts.append(
                "<p class='dk-foot'>All of them: <code>res.failures</code> (why, and the call that sent each) and "
                "<code>res.failed_rows()</code> (the rows as sent, with their frame's dtypes and index): fix them "
                "and write them again, and their keys leave the quarantine. Run the notebook to filter and page "
                "them.</p>"
            )
        elif res.operation == "undo":
            parts.append(
                "<p class='dk-foot'>All of them: <code>res.failures</code> (why) and <code>res.failed_rows()</code> "
                "(the keys of the rows left as they are); <code>res.changes</code> lists what was put back.</p>"
            )
        else:
            parts.append(
                "<p class='dk-foot'>All of them: <code>res.failures</code> (why) and <code>res.failed_rows()</code> "
                "(the input rows, ready to fix and resubmit). Run the notebook to filter and page them.</p>"
            )
    elif quarantine:
        parts.append(f"<p class='dk-foot'>The quarantine of {html.escape(repr(res.table))} is empty.</p>")
    elif not res.committed and not res.dry_run:
        parts.append("<p class='dk-foot'>errors='raise' and a row failed, so nothing was written.</p>")
    if res.changes is not None:
        parts.append(diff.static_html(res, max_rows))
    return wrap("".join(parts))


def render_text(res, max_rows: int = MAX_ROWS) -> str:
    """The report as plain text (terminals, logs, text-only viewers)."""
    lines = [headline(res), f"store: {res.url}"]
    if getattr(res, "batch_id", None) is not None:
        lines.append(f"batch: {res.batch_id}")
    if res.failed:
        lines.append("failures by stage and error:")
        for stage, error, n in res.summary(changes=False)[["stage", "error", "rows"]].itertuples(
            index=False, name=None
        ):
            lines.append(f"  {stage:<9} {error:<16} {n:>10,}")
        columns = ["row", "index", "key", "stage", "error", "message"]
        if "batch_id" in res.failures.columns:
            columns.insert(0, "batch_id")
        shown = res.failures.head(max_rows)[columns].copy()
        keys = exact_keys(res, rows_of(res, np.arange(len(shown))))
        if keys is not None:
            shown["key"] = pd.Series(keys, index=shown.index, dtype=object)
        if not show_index(res):
            shown = shown.drop(columns="index")
        shown["message"] = [m if len(str(m)) <= MAX_CELL else str(m)[: MAX_CELL - 1] + "…" for m in shown["message"]]
        lines.append(
            f"{rows_title(res)} ({'all' if len(shown) == res.failed else f'first {len(shown):,} of'} {res.failed:,}):"
        )
        lines.extend(_text_table(shown))
        if res.failed > max_rows:
            lines.append(
                f"... and {res.failed - max_rows:,} more: res.failures has them all, res.failed_rows() the input rows"
            )
    if res.changes is not None:
        lines.extend(diff.text_lines(res, max_rows))
    return "\n".join(lines)


def _text_table(df: pd.DataFrame) -> list[str]:
    """Columns of text, numbers to the right and words to the left (pandas right-aligns both)."""
    cols = []
    for name in df.columns:
        cells = [str(name)] + ["None" if v is None else str(v) for v in df[name].tolist()]
        width = max(map(len, cells))
        right = name == "row"
        cols.append([c.rjust(width) if right else c.ljust(width) for c in cells])
    return ["  " + "  ".join(parts).rstrip() for parts in zip(*cols)]
