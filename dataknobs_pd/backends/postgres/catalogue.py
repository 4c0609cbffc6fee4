"""The store's tables in PostgreSQL: their names through the store's schema, the listing, the table of
dk schemas, and the DDL that creates a table or adds columns within PostgreSQL's limit on columns.

The store's schema is the first of the search_path, found at connect; every statement names tables
through it, so that no temporary or catalogue table stands in for a user's table.
"""

from __future__ import annotations

from ...errors import DataKnobsError, InvalidArgumentError, SchemaMismatchError, StorageError, TableExistsError
from ...schema import Column, TableSchema
from ...urls import mask
from ..sql import META, q
from .connection import Conn
from .foreign import foreign_schema
from .types import SEQ, plan

MAX_COLUMNS = 1600  # PostgreSQL's limit on a table's columns (MaxHeapAttributeNumber), dropped ones included


def relation(nsp: str, table: str) -> str:
    """The table's name in SQL: quoted, through the store's schema."""
    return f"{q(nsp)}.{q(table)}"


def find_schema(c: Conn, url: str) -> str:
    """The store's schema, with its table of dk schemas (created when missing and this user may)."""
    nsp = c.query("SELECT current_schema()")[0][0]
    if nsp is None:
        path = c.query("SELECT current_setting('search_path')")[0][0]
        raise StorageError(
            f"{mask(url)}: no schema of the search_path ({path}) exists to hold tables, or this user may "
            f"not use it; create it or grant USAGE on it first"
        )
    meta = relation(nsp, META)
    if c.query("SELECT to_regclass($1) IS NULL", (meta,))[0][0]:  # a reader may not create it
        try:
            c.run(
                f"CREATE TABLE IF NOT EXISTS {meta} (name text PRIMARY KEY, schema text NOT NULL)",
                doing="creating the table of dk schemas",
            )
        except DataKnobsError:  # another process created it at the same moment
            if c.query("SELECT to_regclass($1) IS NULL", (meta,))[0][0]:
                raise
    return nsp


def tables(c: Conn, nsp: str) -> list[str]:
    """The store's tables (dataknobs' own left out)."""
    rows = c.query(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
        (nsp,),
    )
    return sorted(r[0] for r in rows if not r[0].startswith("_dk_"))


def read_schema(c: Conn, nsp: str, table: str) -> TableSchema | None:
    """The dk schema stored with the table, else one read from the table's columns, else None (no table)."""
    rows = c.query(f"SELECT schema FROM {relation(nsp, META)} WHERE name = $1", (table,))
    if rows:
        return TableSchema.from_json(rows[0][0], table)
    return foreign_schema(lambda sql, params: c.query(sql, params), relation(nsp, table))


def store_schema(c: Conn, nsp: str, table: str, schema: TableSchema) -> None:
    c.run(
        f"INSERT INTO {relation(nsp, META)} (name, schema) VALUES ($1, $2)"
        f" ON CONFLICT (name) DO UPDATE SET schema = EXCLUDED.schema",
        (table, schema.to_json()),
        doing=f"storing the schema of {table!r}",
    )


def drop(c: Conn, nsp: str, table: str) -> None:
    """Drop the table and its dk schema."""
    c.run(f"DROP TABLE IF EXISTS {relation(nsp, table)}", doing=f"dropping {table!r}")
    c.run(f"DELETE FROM {relation(nsp, META)} WHERE name = $1", (table,), doing=f"dropping {table!r}")


def create_sql(nsp: str, table: str, schema: TableSchema, fillfactor: int, url: str) -> str:
    """The CREATE TABLE of a new table (a keyless one gets _dk_seq, its insertion order), refused before
    anything is written when it needs more columns than PostgreSQL allows."""
    defs = [d for col in schema.columns for d in plan(col).ddl(col.nullable)]
    if not schema.key:
        defs.append(f"{q(SEQ)} bigint GENERATED ALWAYS AS IDENTITY")
    check_width(table, schema, len(defs), url)
    room = f" WITH (fillfactor = {fillfactor})" if schema.key and fillfactor < 100 else ""
    return f"CREATE TABLE {relation(nsp, table)} ({', '.join(defs)}){room}"


def create(c: Conn, nsp: str, table: str, sql: str) -> None:
    """Run `sql`, the table's create_sql."""
    try:
        c.run(sql, doing=f"creating table {table!r}")
    except TableExistsError as e:
        raise TableExistsError(
            f"cannot create table {table!r}: schema {nsp!r} already holds a relation of that name (an "
            f"index, a sequence, or a table another program created meanwhile) ({e})"
        ) from e


def add_columns(c: Conn, nsp: str, table: str, columns: list[Column], url: str) -> None:
    """Add nullable columns to the table, when it has room for them (its dropped columns still count)."""
    added = [d for col in columns for d in plan(col).ddl(True)]
    defs = ", ".join(f"ADD COLUMN {d}" for d in added)
    (has, dropped), *_ = c.query(
        "SELECT count(*), count(*) FILTER (WHERE attisdropped) FROM pg_attribute"
        " WHERE attrelid = to_regclass($1) AND attnum > 0",
        (relation(nsp, table),),
    )
    if has + len(added) > MAX_COLUMNS:
        names = [col.name for col in columns]
        shown = f"{names}" if len(names) <= 10 else f"{names[:10]} and {len(names) - 10:,} more"
        gone = f", {dropped:,} of them dropped ones, which still count" if dropped else ""
        raise SchemaMismatchError(
            f"cannot add the column(s) {shown} to table {table!r} in {mask(url)}: PostgreSQL allows at "
            f"most {MAX_COLUMNS:,} columns in a table, it has {has:,}{gone}, and they need {len(added):,}; "
            f"nothing was written. Save the new columns to a table of their own, with the key"
            + (" (or save the table again, if_exists='replace': a new table has no dropped columns)" if dropped else "")
        )
    c.run(f"ALTER TABLE {relation(nsp, table)} {defs}", doing=f"adding columns to {table!r}")


def check_width(table: str, schema: TableSchema, physical: int, url: str) -> None:
    """Refuse a new table that needs more columns than PostgreSQL allows, before anything is written:
    the frame's own (index levels included), and the hidden ones the table would get (a companion per
    nanosecond timestamp column, _dk_seq for insertion order without a key)."""
    if physical <= MAX_COLUMNS:
        return
    own = len(schema.columns)
    seq = 0 if schema.key else 1
    extra = []
    if physical - own - seq:
        extra.append(f"{physical - own - seq:,} hidden one(s) that keep the nanoseconds of timestamp columns")
    if seq:
        extra.append(f"the hidden {SEQ!r}, which keeps a table without a key in insertion order")
    needs = f"{own:,} of the frame (index levels included)" + (f", plus {' and '.join(extra)}" if extra else "")
    hint = " (with a key, key=..., it needs no hidden column)" if seq and physical - 1 <= MAX_COLUMNS else ""
    raise InvalidArgumentError(
        f"table {table!r} cannot be created in {mask(url)}: PostgreSQL allows at most {MAX_COLUMNS:,} "
        f"columns in a table, and this one needs {physical:,}: {needs}{hint}; nothing was written. Split the "
        f"frame's columns over tables that share a key, or use a store without this limit (e.g. parquet://)"
    )
