"""A new table loaded by many writers at once (capabilities.ParallelLoad): a table aside, keyed like the new
one plus each row's mark (its partition * PART + its position there), and a table of the partitions
written, so that a second try of a partition removes what a committed first try left."""

from __future__ import annotations

import uuid

import numpy as np
import pyarrow as pa

from ...schema import TableSchema
from ..sql import ROW, q
from .catalogue import MAX_COLUMNS, relation
from .connection import Conn
from .reading import fetch
from .session import Session
from .types import plan, plans, wire_table

PART = 1 << 40  # a row loaded aside is marked part * PART + its position in its partition


def open_aside(session: Session, nsp: str, table: str, schema: TableSchema, fillfactor: int) -> str | None:
    if not schema.key:  # a keyless table keeps its rows in the order one writer inserted them
        return None
    defs = [d for col in schema.columns for d in plan(col).ddl(col.nullable)] + [f"{q(ROW)} bigint NOT NULL"]
    if len(defs) > MAX_COLUMNS:  # its row mark, dropped when it is swapped in, would still count: one writer
        return None
    aside = f"_dk_aside_{uuid.uuid4().hex}"
    room = f" WITH (fillfactor = {fillfactor})" if fillfactor < 100 else ""
    with session.borrow() as c:  # committed at once: the writers are other connections
        c.run(f"CREATE TABLE {relation(nsp, aside)} ({', '.join(defs)}){room}", doing=f"creating a table for {table!r}")
        c.run(f"CREATE TABLE {relation(nsp, aside + '_parts')} (part integer PRIMARY KEY)", doing="creating a table")
    return aside


def clear_aside(c: Conn, nsp: str, aside: str, part: int) -> None:
    """A partition's rows are removed (a scan of the table aside) only when an earlier try of it
    committed, as the table of written partitions says; `c` is the partition's transaction's."""
    doing = "loading"
    c.run("SELECT pg_advisory_xact_lock(hashtextextended($1, $2))", (aside, part), doing=doing)
    parts = relation(nsp, aside + "_parts")
    if c.query(f"SELECT EXISTS (SELECT 1 FROM {parts} WHERE part = $1)", (part,))[0][0]:
        c.run(
            f"DELETE FROM {relation(nsp, aside)} WHERE {q(ROW)} >= $1 AND {q(ROW)} < $2",
            (part * PART, (part + 1) * PART),
            doing=doing,
        )
    else:
        c.run(f"INSERT INTO {parts} VALUES ($1)", (part,), doing=doing)


def write_aside(c: Conn, nsp: str, aside: str, part: int, data: pa.Table, schema: TableSchema, rows) -> None:
    marks = pa.array(np.asarray(rows, dtype=np.int64) + part * PART, type=pa.int64())
    c.copy(aside, wire_table(data, schema, {ROW: marks}), schema=nsp)


def take_aside(session: Session, nsp: str, aside: str, schema: TableSchema, part: int, rows) -> pa.Table:
    """Remove the partition's `rows` from the table aside, and return them."""
    p = plans(schema)
    selected = ", ".join(n for c in schema.names for n in p[c].selected)
    out = pa.schema([pa.field(n, schema.column(n).arrow) for n in schema.names])
    columns = [(schema.column(n), p[n]) for n in schema.names]
    taken = []
    marks = np.asarray(rows, dtype=np.int64) + part * PART
    for lo in range(0, len(marks), 10_000):  # bound values per statement are limited (65,535)
        params = [int(m) for m in marks[lo : lo + 10_000]]
        clause = f" WHERE {q(ROW)} IN ({', '.join(f'${i}' for i in range(1, len(params) + 1))})"
        bound = pa.record_batch([pa.array([v], pa.int64()) for v in params], names=[f"p{i}" for i in params])
        sql = f"SELECT {selected} FROM {relation(nsp, aside)}{clause}"
        taken += fetch(session, nsp, aside, sql, [(q(ROW), True)], None, bound, out, columns, len(params))
        with session.borrow() as c:
            c.run(f"DELETE FROM {relation(nsp, aside)}{clause}", params, doing="loading")
    return pa.concat_tables(taken) if taken else out.empty_table()


def rename_aside(c: Conn, nsp: str, aside: str, table: str) -> None:
    """The table aside becomes `table` (its row marks dropped); its dk schema and key are the caller's."""
    t = relation(nsp, aside)
    c.run(f"ALTER TABLE {t} DROP COLUMN {q(ROW)}", doing=f"creating table {table!r}")
    c.run(f"ALTER TABLE {t} RENAME TO {q(table)}", doing=f"creating table {table!r}")


def drop_aside(c: Conn, nsp: str, aside: str) -> None:
    c.run(f"DROP TABLE IF EXISTS {relation(nsp, aside)}, {relation(nsp, aside + '_parts')}", doing="removing a table")
