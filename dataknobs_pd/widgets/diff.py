"""Renderings of BatchResult.changes (a dry run, or track_changes=True): counts per action and the
changed rows with old → new per cell. Shared by the static report and the live widget; every
piece works on a slice (a page) of the changes frame, never on all of it."""

from __future__ import annotations

import html

import pandas as pd

from ..changes import ACTIONS
from .cells import MAX_ROWS, cell, key_text, show_index

MAX_DIFF_COLUMNS = 12  # changed columns shown side by side on one page

CSS = """
.dk-report .dk-act{display:inline-block;border-radius:4px;padding:0 6px;font-size:11.5px;font-weight:600}
.dk-report .dk-act-insert{background:rgba(31,136,61,.13);color:var(--jp-success-color1,#1a7f37)}
.dk-report .dk-act-update{background:rgba(9,105,218,.12);color:var(--jp-brand-color1,#0969da)}
.dk-report .dk-act-unchanged{background:var(--jp-layout-color2,#f3f4f6);color:var(--jp-ui-font-color2,#59636e)}
.dk-report .dk-act-delete{background:rgba(207,34,46,.12);color:var(--jp-error-color1,#cf222e)}
.dk-report del{color:var(--jp-error-color1,#cf222e);text-decoration:line-through;opacity:.85}
.dk-report ins{color:var(--jp-success-color1,#1a7f37);text-decoration:none;font-weight:600}
.dk-report td.dk-changed{background:rgba(9,105,218,.06)}
"""


def counts(changes: pd.DataFrame) -> dict[str, int]:
    """Rows per action, in the order insert, update, unchanged, delete (absent actions left out)."""
    c = changes["action"].value_counts()
    return {a: int(c[a]) for a in ACTIONS if a in c}


def counts_html(changes: pd.DataFrame) -> str:
    """The actions as badges with their counts."""
    parts = [
        f"<span class='dk-stat'><b>{n:,}</b> <span class='dk-act dk-act-{a}'>{a}</span></span>"
        for a, n in counts(changes).items()
    ]
    return (
        "<div class='dk-stats dk-actions'>" + "".join(parts) + "</div>"
        if parts
        else "<p class='dk-foot'>No row would be written.</p>"
    )


def diff_html(res, page: pd.DataFrame) -> str:
    """A page of changes: row, [index], key, action, then one column per changed column with old → new."""
    with_index = show_index(res)
    columns: list = []
    for cols in page["changed"]:
        for c in cols:
            if c not in columns:
                columns.append(c)
    more = len(columns) - MAX_DIFF_COLUMNS
    columns = columns[:MAX_DIFF_COLUMNS]
    head = "<tr><th class='dk-num'>row</th>" + ("<th>index</th>" if with_index else "")
    head += f"<th>key <span class='dk-mute'>({html.escape(', '.join(res.key or []))})</span></th><th>action</th>"
    head += "".join(
        ("<th class='dk-first-value'>" if i == 0 else "<th>") + f"{html.escape(str(c))}</th>"
        for i, c in enumerate(columns)
    )
    head += "</tr>"
    body = []
    for r in page[["row", "index", "key", "action", "before", "after"]].itertuples(index=False):
        tr = [f"<td class='dk-num'>{int(r.row):,}</td>"]
        if with_index:
            tr.append(f"<td>{cell(r.index)}</td>")
        tr.append(f"<td class='dk-key'>{cell(key_text(r.key))}</td>")
        tr.append(f"<td><span class='dk-act dk-act-{r.action}'>{r.action}</span></td>")
        for j, c in enumerate(columns):
            first = " dk-first-value" if j == 0 else ""
            if c in r.after:
                tr.append(
                    f"<td class='dk-val dk-changed{first}'><del>{cell(r.before.get(c))}</del> → "
                    f"<ins>{cell(r.after[c])}</ins></td>"
                )
            else:
                tr.append(f"<td class='dk-val{first}'></td>")
        body.append("<tr>" + "".join(tr) + "</tr>")
    note = f"<p class='dk-foot'>{more:,} more changed columns are in <code>res.changes</code>.</p>" if more > 0 else ""
    return (
        "<div class='dk-scroll'><table class='dk-table dk-diff'><thead>"
        + head
        + "</thead><tbody>"
        + "".join(body)
        + "</tbody></table></div>"
        + note
    )


def dry_run_note(name: str = "res") -> str:
    """What a dry run's report says first: nothing was written, and how to write it."""
    return (
        f"<p class='dk-foot dk-dry'><b>Dry run: nothing was written.</b> To write it: "
        f"<code>{html.escape(name)}.commit()</code></p>"
    )


def static_html(res, max_rows: int = MAX_ROWS) -> str:
    """The changes section of the static report: counts per action, then the first changed rows."""
    ch = res.changes
    parts = ["<div class='dk-h'>changes by action</div>", counts_html(ch)]
    changed = ch[ch["action"] != "unchanged"]
    if len(changed):
        shown = changed.iloc[:max_rows]
        parts.append(
            f"<div class='dk-h'>changed rows ({'all' if len(shown) == len(changed) else f'first {len(shown):,} of'} "
            f"{len(changed):,})</div>"
        )
        parts.append(diff_html(res, shown))
    return "".join(parts)


def text_lines(res, max_rows: int = MAX_ROWS) -> list[str]:
    """The changes as plain text: counts per action and the first updated rows."""
    lines = ["changes: " + ", ".join(f"{n:,} {a}" for a, n in counts(res.changes).items())]
    updated = res.changes[res.changes["action"] == "update"].head(max_rows)
    for r in updated[["row", "key", "before", "after"]].itertuples(index=False):
        cells = "; ".join(f"{c}: {r.before.get(c)!r} -> {v!r}" for c, v in r.after.items())
        lines.append(f"  row {int(r.row):,} key {key_text(r.key)}: {cells}")
    return lines
