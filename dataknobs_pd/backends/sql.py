"""What every SQL backend shares: quoting, the metadata table, WHERE and ORDER BY with bound values."""

from __future__ import annotations

from collections.abc import Callable

from .capabilities import IMAGE_COLUMNS

META = "_dk_schema"  # holds the dk schema (JSON) of every table
STAGE = "_dk_stage"  # per-connection temporary table that a chunk is loaded into
ROW = "_dk_row"  # the chunk position of each staged row
AFTER = "_dk_after"  # the hash of each staged row's written values (before-images)

_SQL_OPS = {"==": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def q(name: str) -> str:
    """Quote an identifier (double quotes doubled inside)."""
    return '"' + str(name).replace('"', '""') + '"'


def where_sql(
    where: list,
    encode: Callable[[str, list], list],
    param: str | Callable[[], str] = "?",
    column_sql: Callable[[str, str], str] | None = None,
    param_sql: Callable[[str, str], str] | None = None,
) -> tuple[str, list]:
    """Normalized filters as ' WHERE ...' with bound values; `encode(column, values)` stores values.

    `param` is the placeholder, or a callable giving the next one (numbered styles such as $1, $2).
    `column_sql(column, op)` may wrap a column for comparison (e.g. a CAST); it defaults to quoting.
    `param_sql(column, placeholder)` may wrap a placeholder (the value's SQL type); it defaults to none.
    """
    if not where:
        return "", []
    column_sql = column_sql or (lambda c, op: q(c))
    step = param if callable(param) else (lambda: param)
    params: list = []
    ors = []
    for group in where:
        ands = []
        for col, op, value in group:
            ref = column_sql(col, op)

            def mark(col=col) -> str:
                return param_sql(col, step()) if param_sql else step()

            if op in ("in", "not in"):
                present = [v for v in value if v is not None]
                vals = encode(col, present) if present else []
                has_null = len(present) < len(value)
                if not vals:
                    term = "1=0" if op == "in" else "1=1"
                else:
                    term = f"{ref} {'NOT IN' if op == 'not in' else 'IN'} ({', '.join(mark() for _ in vals)})"
                    params.extend(vals)
                if has_null:
                    term = f"({term} OR {q(col)} IS NULL)" if op == "in" else f"({term} AND {q(col)} IS NOT NULL)"
                elif op == "not in":  # as in Arrow: a null is "not in" a list without null
                    term = f"({term} OR {q(col)} IS NULL)"
            elif value is None:
                term = f"{q(col)} IS NULL" if op == "==" else f"{q(col)} IS NOT NULL"
            else:
                term = f"{ref} {_SQL_OPS[op]} {mark()}"
                params.append(encode(col, [value])[0])
            ands.append(term)
        ors.append("(" + " AND ".join(ands) + ")")
    return " WHERE " + " OR ".join(ors), params


def order_sql(
    order: list[tuple[str, bool]],
    key: list[str] | None,
    fallback: str | None,
    column_sql: Callable[[str], str] | None = None,
) -> str:
    """' ORDER BY ...': the order asked for, else the key, else `fallback` (insertion order).

    `column_sql(column)` may wrap a column for sorting (e.g. a CAST); it defaults to quoting.
    """
    ref = column_sql or q
    if order:
        return " ORDER BY " + ", ".join(f"{ref(c)} {'ASC' if asc else 'DESC'}" for c, asc in order)
    if key:
        return " ORDER BY " + ", ".join(ref(k) for k in key)
    return f" ORDER BY {fallback}" if fallback else ""


def key_match(key: list[str], left: str, right: str) -> str:
    """`left.k1 = right.k1 AND ...` for the key columns."""
    return " AND ".join(f"{left}.{q(k)} = {right}.{q(k)}" for k in key)


def copy_images(
    undo: str,
    table: str,
    stage: str,
    key: list[str],
    before: list[str],
    match: str,
    mode: str,
    adds: bool,
    marks,
    defaults: dict[str, str] | None = None,
) -> str:
    """INSERT ... SELECT of the before-images of the staged rows (capabilities.StoreImages) from `table` (alias
    d) into `undo`: the batch id and the written columns bound at `marks`, the keys from the stage (alias s),
    the stored values of `before` (physical columns) from the table. A delete keeps the rows it finds; an
    update or upsert also the rows it adds (`adds`), with the key alone; `defaults`: the value (SQL) a column
    of `before` takes there instead of NULL (a column the undo table has NOT NULL)."""
    batch, cols = marks
    if mode == "delete":
        action, after, join = "'delete'", "NULL", "JOIN"
    else:
        action = f"CASE WHEN d.{q(key[0])} IS NULL THEN 'insert' ELSE 'update' END"
        after, join = f"s.{q(AFTER)}", "LEFT JOIN" if adds else "JOIN"
    names = ", ".join(q(c) for c in (*IMAGE_COLUMNS, *key, *before))
    defaults = defaults or {}
    stored = [f"COALESCE(d.{q(c)}, {defaults[c]})" if c in defaults else f"d.{q(c)}" for c in before]
    picked = ", ".join([f"s.{q(k)}" for k in key] + stored)
    return (
        f"INSERT INTO {undo} ({names}) SELECT {batch}, {action}, {cols}, {after}, {picked}"
        f" FROM {stage} s {join} {table} d ON {match}"  # in the stage's order; no sort (PostgreSQL's spilled to disk)
    )
