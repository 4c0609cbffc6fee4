"""Static renderings of a BatchResult: HTML (nbconvert, GitHub) and text."""

from __future__ import annotations

import html

MAX_ROWS = 20  # failing rows shown in a static rendering; the rest are counted


def render_text(res) -> str:
    lines = [str(res), f"store: {res.url}"]
    if res.failed:
        lines.append("failures by stage and error:")
        for _, r in res.summary().iterrows():
            lines.append(f"  {r['stage']:<9} {r['error']:<16} {r['rows']:>10,}")
        shown = res.failures.head(MAX_ROWS)
        lines.append(shown[["row", "index", "key", "stage", "error", "message"]].to_string(index=False))
        if res.failed > MAX_ROWS:
            lines.append(f"... and {res.failed - MAX_ROWS:,} more (res.failures has them all)")
    return "\n".join(lines)


def render_html(res) -> str:
    e = html.escape
    status = "ok" if res.ok else ("rolled back" if not res.committed else "with failures")
    head = (
        f"<div class='dk-report'><b>{e(res.operation)}</b> <code>{e(res.table)}</code> "
        f"<span style='color:#666'>{e(res.url)}</span> &mdash; {e(status)}<br>"
        f"{res.total:,} rows: <b>{res.succeeded:,}</b> succeeded, "
        f"<b style='color:{'#b00' if res.failed else 'inherit'}'>{res.failed:,}</b> failed, "
        f"{res.elapsed:.2f}s ({res.rows_per_second:,.0f} rows/s)"
    )
    if not res.failed:
        return head + "</div>"
    summary = res.summary().to_html(index=False, border=0)
    shown = res.failures.head(MAX_ROWS)[["row", "index", "key", "stage", "error", "message"]]
    more = f"<p>... and {res.failed - MAX_ROWS:,} more</p>" if res.failed > MAX_ROWS else ""
    return head + summary + shown.to_html(index=False, border=0) + more + "</div>"
