"""Reading a table: Arrow record batches, with columns, filters, order and limit in the SQL; values kept
in an encoding (columns.py) are decoded as they come."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from ...schema import TableSchema
from ..sql import order_sql, q, where_sql
from .columns import Plan, params, plan
from .connection import Connections, Tx


def select(table: str, schema: TableSchema, columns, where, order, limit) -> tuple[str, list, list[Plan], pa.Schema]:
    """The SELECT of `columns` (filtered, ordered, limited), its bound values, each column's plan, and the
    Arrow schema of what it returns."""
    cols = [schema.column(c) for c in columns]
    plans = [plan(c) for c in cols]

    def compare(col, op="<"):  # e.g. decimals kept as text compare as numbers
        return plan(schema.column(col)).compare.format(q(col)) if op not in ("==", "!=", "in", "not in") else q(col)

    clause, bound = where_sql(where, lambda col, values: params(schema.column(col), values), column_sql=compare)
    selected = ", ".join(f"{p.select.format(q(c.name))} AS {q(c.name)}" for c, p in zip(cols, plans))
    # Without a key, no ORDER BY: DuckDB returns rows in insertion order (preserve_insertion_order).
    sql = f"SELECT {selected} FROM {q(table)}{clause}{order_sql(order, schema.key, None, compare)}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql, bound, plans, pa.schema([pa.field(c.name, c.arrow) for c in cols])


def stream(db: Connections, tx: Tx | None, table: str, sql: str, bound, plans: list[Plan], names, batch_rows):
    """The rows of `sql` in batches: in the open transaction `tx` (whose writes the read sees), else on a
    connection of its own (a caller reading in chunks may use this thread's meanwhile)."""
    if tx is not None:
        db.run(tx, "SELECT 1", doing=f"reading {table!r}")  # BEGIN: the read sees this call's writes
        cur = tx.cur
    else:
        cur = db.new_cursor()
    reader = None
    try:
        try:
            reader = cur.sql(sql, params=bound or None).to_arrow_reader(batch_rows)
            for batch in reader:
                cols = [p.back(batch.column(i)) if p.back else batch.column(i) for i, p in enumerate(plans)]
                yield pa.table(cols, names=names)
        except duckdb.Error as e:
            raise db.fail(e, f"reading {table!r}", tx) from e
    finally:  # a caller may stop early: the connection must not keep a pending result
        if reader is not None:
            reader.close()
        if tx is None:
            cur.close()
