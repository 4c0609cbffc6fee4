"""The store's tables in DuckDB: the listing, the table of dk schemas beside them (`_dk_schema`), the schema
of a table made elsewhere, and the DDL that creates a table, adds columns or widens an ENUM."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from ...errors import SchemaMismatchError
from ...schema import Column, TableSchema
from ..sql import META, STAGE, q
from .columns import foreign_column, literal, plan
from .connection import Connections, Tx, staged

Where = tuple[str, str]  # the store's database and schema, found at connect


def create_meta(db: Connections) -> None:
    """Make the table of dk schemas, if missing."""
    db.cursor().execute(f"CREATE TABLE IF NOT EXISTS {q(META)} (name VARCHAR NOT NULL, schema VARCHAR NOT NULL)")


def catalogue_rows(db: Connections, where: Where, table: str) -> list[tuple]:
    """The table's row in DuckDB's catalogue: none when there is no such table."""
    d, nsp = where
    return db.query(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = ?"
        " AND table_name = ? AND NOT temporary",
        [d, nsp, table],
    )


def tables(db: Connections, where: Where) -> list[str]:
    """The store's tables (dataknobs' own left out)."""
    d, nsp = where
    rows = db.query(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND NOT temporary",
        [d, nsp],
    )
    return sorted(r[0] for r in rows if not r[0].lower().startswith("_dk_"))


def stored_schema(db: Connections, table: str) -> TableSchema | None:
    """The dk schema stored with the table, if any."""
    rows = db.query(f"SELECT schema FROM {q(META)} WHERE name = ?", [table])
    return TableSchema.from_json(rows[0][0], table) if rows else None


def foreign_schema(db: Connections, where: Where, table: str) -> TableSchema:
    """A schema for a table this package did not create, from the types DuckDB reads its columns as."""
    d, nsp = where
    cols = db.query(
        "SELECT column_name, is_nullable FROM duckdb_columns() WHERE database_name = ?"
        " AND schema_name = ? AND table_name = ? ORDER BY column_index",
        [d, nsp, table],
    )
    keys = db.query(
        "SELECT constraint_column_names FROM duckdb_constraints() WHERE database_name = ?"
        " AND schema_name = ? AND table_name = ? AND constraint_type = 'PRIMARY KEY'",
        [d, nsp, table],
    )
    key = list(keys[0][0]) if keys else None
    names = ", ".join(q(c) for c, _ in cols)
    tx = db.tx
    try:
        cur = tx.cur if tx is not None else db.cursor()
        if tx is not None and not tx.begun:
            db.run(tx, "SELECT 1")
        arrow = cur.sql(f"SELECT {names} FROM {q(table)} LIMIT 0").to_arrow_table().schema
    except duckdb.Error as e:
        raise db.fail(e, f"reading the columns of {table!r}", tx) from e
    return TableSchema(
        columns=[foreign_column(c, arrow.field(c).type, bool(n) and c not in (key or [])) for c, n in cols], key=key
    )


def check_case(table: str, schema: TableSchema) -> None:
    """Refuse columns whose names differ only by case: DuckDB's column names are case-insensitive."""
    folded: dict[str, str] = {}
    for c in schema.columns:
        other = folded.setdefault(c.name.casefold(), c.name)
        if other != c.name:
            raise SchemaMismatchError(
                f"columns {other!r} and {c.name!r} of table {table!r} differ only by case, "
                f"which DuckDB cannot keep apart; rename one of them"
            )


def create_table(db: Connections, tx: Tx, table: str, schema: TableSchema) -> None:
    """CREATE TABLE with DuckDB's own types, and a comment on each column stored in an encoding."""
    defs, notes = [], []
    for c in schema.columns:
        p = plan(c)
        sql = p.sql or type_of(db, tx, c.arrow)
        defs.append(f"{q(c.name)} {sql}{'' if c.nullable else ' NOT NULL'}")
        if p.comment:
            notes.append((c.name, p.comment))
    db.run(tx, f"CREATE TABLE {q(table)} ({', '.join(defs)})", doing=f"creating table {table!r}")
    for name, note in notes:
        db.run(tx, f"COMMENT ON COLUMN {q(table)}.{q(name)} IS {literal(note)}", doing=f"creating table {table!r}")


def add_columns(db: Connections, tx: Tx, table: str, names: list[str], columns: list[Column]) -> None:
    """Add `columns` to the table, whose columns are `names`."""
    have = {c.casefold(): c for c in names}
    for c in columns:
        other = have.setdefault(c.name.casefold(), c.name)
        if other != c.name:
            raise SchemaMismatchError(
                f"column {c.name!r} differs only by case from column {other!r} of "
                f"table {table!r}, which DuckDB cannot keep apart; rename it"
            )
        p = plan(c)
        db.run(
            tx,
            f"ALTER TABLE {q(table)} ADD COLUMN {q(c.name)} {p.sql or type_of(db, tx, c.arrow)}",
            doing=f"adding column {c.name!r} to {table!r}",
        )
        if p.comment:
            db.run(
                tx,
                f"COMMENT ON COLUMN {q(table)}.{q(c.name)} IS {literal(p.comment)}",
                doing=f"adding column {c.name!r} to {table!r}",
            )


def type_of(db: Connections, tx: Tx, t: pa.DataType) -> str:
    """The type DuckDB gives an Arrow type (nested ones with parts columns.py does not name)."""
    with staged(tx.cur, pa.table({"c": pa.array([], type=t)})):
        return db.run(tx, f"DESCRIBE SELECT c FROM {q(STAGE)}")[0][1]


def retype(db: Connections, tx: Tx, table: str, old: TableSchema | None, schema: TableSchema) -> None:
    """Alter the columns whose DuckDB type changes with the schema: an ENUM whose categories grew (or a
    column that became one)."""
    for c in schema.columns:
        was = old.get(c.name) if old is not None else None
        new = plan(c).sql
        if was is not None and new is not None and plan(was).sql != new:
            db.run(
                tx,
                f"ALTER TABLE {q(table)} ALTER COLUMN {q(c.name)} SET DATA TYPE {new}",
                doing=f"adding categories to column {c.name!r} of {table!r}",
            )


def store_schema(db: Connections, tx: Tx, table: str, schema: TableSchema) -> None:
    db.run(tx, f"DELETE FROM {q(META)} WHERE name = ?", [table], doing=f"storing the schema of {table!r}")
    db.run(
        tx,
        f"INSERT INTO {q(META)} VALUES (?, ?)",
        [table, schema.to_json()],
        doing=f"storing the schema of {table!r}",
    )


def drop(db: Connections, tx: Tx, table: str, meta: bool) -> None:
    """Drop the table, and its dk schema when the table of dk schemas exists (`meta`)."""
    db.run(tx, f"DROP TABLE IF EXISTS {q(table)}", doing=f"dropping {table!r}")
    if meta:
        db.run(tx, f"DELETE FROM {q(META)} WHERE name = ?", [table], doing=f"dropping {table!r}")
